"""Score identity Distillation (Zhou et al. 2024, ICML, "Score identity Distillation: Exponentially Fast Distillation
of Pretrained Diffusion Models for One-Step Generation") on digits: a one-step generator distilled from the trained
digits UNet teacher (runs/digits/teacher), the paper's settings (alpha = 1.2, generator input sigma = 2.5, one critic
update per generator update; jaxdistill/objectives/sid.py); generator and critic start from the teacher's weights,
as in the paper.

Arguments: none (the benchmark budget), `smoke` (seconds, for tests and CI), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits/sid.py[:smoke] --workdir runs/digits/sid
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    _, steps = benchmarks.parse_arg(arg, generator=True)
    c = digits.student("sid", arg)  # the paper's settings; generator and critic start from the teacher's weights
    return benchmarks.few_step(c, steps)
