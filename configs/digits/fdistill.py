"""f-distill (Xu et al. 2025, "One-step Diffusion Models with f-Divergence Distribution Matching") on digits: a
one-step generator distilled from the trained digits UNet teacher (runs/digits/teacher) with DMD2's setup and its
score difference reweighted by the Jensen-Shannon weight h(r) = r / (1 + r), the paper's best one-step choice;
generator and critic start from the teacher's weights, as in the paper.

Arguments: none (the benchmark budget), `smoke` (seconds, for tests and CI), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits/fdistill.py[:smoke] --workdir runs/digits/fdistill
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    _, steps = benchmarks.parse_arg(arg, generator=True)
    c = digits.student("fdistill", arg)  # the paper's settings; generator and critic start from the teacher's weights
    return benchmarks.few_step(c, steps)
