"""Improved Consistency Training (Song & Dhariwal 2023, "Improved Techniques for Training
Consistency Models") on digits_gmm: a class-conditional consistency model trained from scratch on
50,000 samples of the exact class-conditional 64-D digits mixture (iCT uses no teacher ODE), the
paper's settings otherwise (jaxdistill/objectives/consistency.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/ict.py[:smoke] --workdir runs/digits_gmm/ict
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    c = digits_gmm.student("ict", arg)  # from scratch, as in the paper
    c.eval.nfes = (1, 2, 4)  # consistency models also sample in a few steps (the multistep sampler)
    return c
