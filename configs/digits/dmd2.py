"""DMD2 (Yin et al. 2024, NeurIPS, "Improved Distribution Matching Distillation") on digits: a one-step generator
distilled from the trained digits UNet teacher (runs/digits/teacher), DMD2's paper settings (five critic updates per
generator update, GAN head on the critic with lambda_D = 1e-2, lambda_G = 3e-3, no regression loss); generator and
critic start from the teacher's weights, as in the paper.

Arguments: none (the benchmark budget), `smoke` (seconds, for tests and CI), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits/dmd2.py[:smoke] --workdir runs/digits/dmd2
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    _, steps = benchmarks.parse_arg(arg, generator=True)
    c = digits.student("dmd2", arg)  # the paper's settings; generator and critic start from the teacher's weights
    return benchmarks.few_step(c, steps)
