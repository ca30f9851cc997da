"""MeanFlow (Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative Modeling") on
digits_gmm: a class-conditional average-velocity network on the rectified flow, distilling the
velocity of the exact class-conditional 64-D digits mixture (our distillation variant; the paper
trains from data), the paper's settings otherwise (jaxdistill/objectives/meanflow.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/meanflow.py[:smoke] --workdir runs/digits_gmm/meanflow
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    c = digits_gmm.student("meanflow", arg)  # from scratch, as in the paper
    c.process.name = "rectified_flow"  # the paper's flow, x_t = (1 - t) x0 + t eps
    c.meanflow.target = "teacher"  # v is the teacher's velocity, not eps - x0: distillation
    c.eval.nfes = (1, 2, 4)  # MeanFlow samples on any uniform grid of steps
    return c
