"""Easy Consistency Tuning (Geng, Pokle, Luo, Lin & Kolter 2024, "Consistency Models Made Easy")
on grid25: a consistency model trained on the grid's data (ECT uses no teacher ODE), the paper's
settings otherwise (jaxdistill/objectives/consistency.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/ect.py[:smoke] --workdir runs/grid25/ect
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    # Departure from the paper: tuning starts from scratch, not the teacher (the exact mixture has no weights).
    c = grid25.student("ect", arg)
    c.eval.nfes = (1, 2, 4)  # consistency models also sample in a few steps (the multistep sampler)
    return c
