"""Knowledge distillation (Luhman & Luhman 2021, "Knowledge Distillation in Iterative Generative
Models for Improved Sampling Speed") on grid25: a one-step MLP regressing a fixed set of 16,384
(noise, teacher ODE output) pairs of the exact 25-mode mixture (Heun, 31 evaluations).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/kd.py[:smoke] --workdir runs/grid25/kd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: KD's student is a one-step map, no `<K>step`
    return grid25.student("kd", arg)  # the benchmark's budget is KD's; the student starts from scratch, as in the paper
