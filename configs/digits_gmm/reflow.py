"""Reflow (Liu, Gong & Liu 2023, "Flow Straight and Fast") with the improved recipe of Lee, Lin & Fanti (2024,
"Improving the Training of Rectified Flows") on digits_gmm: a class-conditional velocity MLP on the rectified flow fitted to the straight
interpolations of 16,384 (noise, teacher ODE end point) couplings of the exact class-conditional 64-D digits mixture (Heun, 31
evaluations), U-shaped times and the pseudo-Huber distance (jaxdistill/objectives/reflow.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/reflow.py[:smoke] --workdir runs/digits_gmm/reflow
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the flow samples with any number of Euler steps
    c = digits_gmm.student("reflow", arg)  # departure: from scratch, as the exact mixture has no weights to start from
    c.process.name = "rectified_flow"  # the papers' flow, x_t = (1 - t) x + t z
    c.eval.nfes = (1, 2, 4)  # Euler steps of the 2-rectified flow
    return c
