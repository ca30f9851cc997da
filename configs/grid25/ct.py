"""Consistency Training (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models", Alg. 3) on
grid25: a consistency model trained from scratch on the grid's data, with the exact 25-mode mixture
as the benchmark's teacher (CT uses no teacher ODE), the paper's settings otherwise
(jaxdistill/objectives/consistency.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/ct.py[:smoke] --workdir runs/grid25/ct
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    c = grid25.student("ct", arg)  # from scratch, as in the paper
    c.eval.nfes = (1, 2, 4)  # consistency models also sample in a few steps (the multistep sampler, Alg. 1)
    return c
