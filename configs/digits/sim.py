"""Score Implicit Matching (Luo et al. 2024, NeurIPS, "One-Step Diffusion Distillation through Score Implicit
Matching") on digits: a one-step generator distilled from the trained digits UNet teacher (runs/digits/teacher) with
the pseudo-Huber score distance (c = 1e-3) and SiD's setup otherwise (jaxdistill/objectives/sid.py); generator and
critic start from the teacher's weights, as in the paper.

Arguments: none (the benchmark budget), `smoke` (seconds, for tests and CI), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits/sim.py[:smoke] --workdir runs/digits/sim
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    _, steps = benchmarks.parse_arg(arg, generator=True)
    c = digits.student("sim", arg)  # the paper's settings; generator and critic start from the teacher's weights
    return benchmarks.few_step(c, steps)
