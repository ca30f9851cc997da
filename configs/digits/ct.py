"""Consistency Training (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models", Alg. 3) on digits: a
consistency model trained on the digits data alone, from scratch as in the paper (the trained digits UNet teacher at
runs/digits/teacher is not queried), with the paper's CIFAR-10 curriculum (s0 = 2, s1 = 150, mu0 = 0.9).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/ct.py[:smoke] --workdir runs/digits/ct
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("ct", arg)  # the paper's settings; the student starts from scratch, as in the paper
    c.eval.nfes = (1, 2, 4)  # the multistep consistency sampler (Alg. 1), scored at 1, 2 and 4 NFE
    return c
