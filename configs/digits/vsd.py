"""Variational score distillation / Diff-Instruct (Wang et al. 2023, "ProlificDreamer"; Luo et al. 2023,
"Diff-Instruct") on digits: a one-step generator distilled from the trained digits UNet teacher (runs/digits/teacher)
by matching its noised samples to the teacher's marginals through a fake-score critic; generator and critic start from
the teacher's weights, as in the papers.

Arguments: none (the benchmark budget), `smoke` (seconds, for tests and CI), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits/vsd.py[:smoke] --workdir runs/digits/vsd
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    _, steps = benchmarks.parse_arg(arg, generator=True)
    c = digits.student("vsd", arg)  # the papers' settings; generator and critic start from the teacher's weights
    return benchmarks.few_step(c, steps)
