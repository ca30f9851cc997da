"""Distribution Matching Distillation (Yin et al. 2024, CVPR) on digits: a one-step generator distilled from the
trained digits UNet teacher (runs/digits/teacher) by distribution matching through a fake-score critic, plus the
paper's regression loss (lambda_reg = 0.25, L2 rather than LPIPS) on the benchmark's teacher ODE pairs (Heun, 17
evaluations); generator and critic start from the teacher's weights, as in the paper.

Arguments: none (the benchmark budget), `smoke` (seconds, for tests and CI), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits/dmd.py[:smoke] --workdir runs/digits/dmd
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    _, steps = benchmarks.parse_arg(arg, generator=True)
    c = digits.student("dmd", arg)  # the paper's settings; generator and critic start from the teacher's weights
    return benchmarks.few_step(c, steps)
