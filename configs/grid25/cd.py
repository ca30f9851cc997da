"""Consistency Distillation (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models", Alg. 2)
on grid25: a consistency model distilled from the exact 25-mode mixture's probability-flow ODE
(one Heun step per target), the paper's settings otherwise (jaxdistill/objectives/consistency.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/cd.py[:smoke] --workdir runs/grid25/cd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    # Departure from the paper: the student starts from scratch, not the teacher (the exact mixture has no weights).
    c = grid25.student("cd", arg)
    c.eval.nfes = (1, 2, 4)  # consistency models also sample in a few steps (the multistep sampler, Alg. 1)
    return c
