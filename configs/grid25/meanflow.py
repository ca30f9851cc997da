"""MeanFlow (Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative Modeling") on
grid25: an average-velocity network on the rectified flow, distilling the exact 25-mode mixture's
velocity (our distillation variant; the paper trains from data), the paper's settings otherwise
(jaxdistill/objectives/meanflow.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/meanflow.py[:smoke] --workdir runs/grid25/meanflow
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    c = grid25.student("meanflow", arg)  # from scratch, as in the paper
    c.process.name = "rectified_flow"  # the paper's flow, x_t = (1 - t) x0 + t eps
    c.meanflow.target = "teacher"  # v is the teacher's velocity, not eps - x0: distillation
    c.eval.nfes = (1, 2, 4)  # MeanFlow samples on any uniform grid of steps
    return c
