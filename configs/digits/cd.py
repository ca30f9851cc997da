"""Consistency Distillation (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models", Alg. 2) on digits: a
consistency model distilled from the trained digits UNet teacher (runs/digits/teacher) along its Heun ODE steps,
starting from the teacher's weights as in the paper, with the paper's CIFAR-10 settings (N = 18, target EMA 0.95).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/cd.py[:smoke] --workdir runs/digits/cd
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("cd", arg)  # the paper's settings; the student starts from the teacher's weights
    c.eval.nfes = (1, 2, 4)  # the multistep consistency sampler (Alg. 1), scored at 1, 2 and 4 NFE
    return c
