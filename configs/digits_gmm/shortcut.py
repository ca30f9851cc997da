"""Shortcut models (Frans, Hafner, Levine & Abbeel 2025, ICLR, "One Step Diffusion via Shortcut
Models") on digits_gmm: a class-conditional, step-size-conditioned velocity network on the
rectified flow, distilling the velocity of the exact class-conditional 64-D digits mixture (our
distillation variant; the paper trains from data), the paper's settings otherwise
(jaxdistill/objectives/shortcut.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/shortcut.py[:smoke] --workdir runs/digits_gmm/shortcut
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    c = digits_gmm.student("shortcut", arg)  # from scratch, as in the paper
    c.process.name = "rectified_flow"  # the paper's flow, x_t = (1 - t) x0 + t eps
    c.shortcut.target = "teacher"  # flow matching regresses the teacher's velocity, not eps - x0: distillation
    # Departure from the paper: self-consistency targets from the live weights, not the EMA, whose ~1000-update lag
    # per bootstrap level is too slow for a 4000-update budget (docs/methods/shortcut.md).
    c.shortcut.target_ema = False
    c.eval.nfes = (1, 2, 4)  # a shortcut model samples at any step size
    return c
