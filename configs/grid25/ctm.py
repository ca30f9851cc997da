"""Consistency Trajectory Models (Kim et al. 2024, ICLR, "Consistency Trajectory Model: Learning Probability Flow
ODE Trajectory of Diffusion") on grid25: an anytime-to-anytime jump G(x_t, t, s) distilled from the exact 25-mode
mixture's probability-flow ODE by soft consistency matching plus the DSM term, the paper's CIFAR-10 settings
otherwise (N = 18, up to 17 Heun steps, target EMA 0.999; jaxdistill/objectives/ctm.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/ctm.py[:smoke] --workdir runs/grid25/ctm
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: gamma-sampling takes any NFE
    # Departures from the paper: the student starts from scratch, not the teacher (the exact mixture has no
    # weights); the distance is squared L2, not LPIPS (no images); no GAN term (its default in the paper's code).
    c = grid25.student("ctm", arg)
    c.eval.nfes = (1, 2, 4)  # gamma-sampling (gamma = 0: deterministic jumps along the ODE)
    return c
