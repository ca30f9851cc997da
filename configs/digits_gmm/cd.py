"""Consistency Distillation (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models", Alg. 2)
on digits_gmm: a class-conditional consistency model distilled from the probability-flow ODE of
the exact class-conditional 64-D digits mixture (one Heun step per target), the paper's settings
otherwise (jaxdistill/objectives/consistency.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/cd.py[:smoke] --workdir runs/digits_gmm/cd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    # Departure from the paper: the student starts from scratch, not the teacher (the exact mixture has no weights).
    c = digits_gmm.student("cd", arg)
    c.eval.nfes = (1, 2, 4)  # consistency models also sample in a few steps (the multistep sampler, Alg. 1)
    return c
