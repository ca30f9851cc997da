"""Improved Consistency Training (Song & Dhariwal 2023, "Improved Techniques for Training Consistency Models") on
digits: a consistency model trained on the digits data alone, from scratch as in the paper (the trained digits UNet
teacher at runs/digits/teacher is not queried), with the paper's settings (no EMA target, pseudo-Huber distance,
lognormal step sampling, doubling curriculum s0 = 10, s1 = 1280).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/ict.py[:smoke] --workdir runs/digits/ict
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("ict", arg)  # the paper's settings; the student starts from scratch, as in the paper
    c.eval.nfes = (1, 2, 4)  # the multistep consistency sampler, scored at 1, 2 and 4 NFE
    return c
