"""Knowledge distillation (Luhman & Luhman 2021, "Knowledge Distillation in Iterative Generative
Models for Improved Sampling Speed") on digits_gmm: a one-step class-conditional MLP regressing a
fixed set of 16,384 (noise, teacher ODE output) pairs of the exact class-conditional 64-D digits
mixture (Heun, 31 evaluations).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/kd.py[:smoke] --workdir runs/digits_gmm/kd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: KD's student is a one-step map, no `<K>step`
    return digits_gmm.student("kd", arg)  # the benchmark's budget is KD's; the student starts from scratch, as in the paper
