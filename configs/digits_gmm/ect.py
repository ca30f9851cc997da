"""Easy Consistency Tuning (Geng, Pokle, Luo, Lin & Kolter 2024, "Consistency Models Made Easy")
on digits_gmm: a class-conditional consistency model trained on 50,000 samples of the exact
class-conditional 64-D digits mixture (ECT uses no teacher ODE), the paper's settings otherwise
(jaxdistill/objectives/consistency.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/ect.py[:smoke] --workdir runs/digits_gmm/ect
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    # Departure from the paper: tuning starts from scratch, not the teacher (the exact mixture has no weights).
    c = digits_gmm.student("ect", arg)
    c.eval.nfes = (1, 2, 4)  # consistency models also sample in a few steps (the multistep sampler)
    return c
