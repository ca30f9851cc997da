"""Consistency Trajectory Models (Kim et al. 2024, ICLR, "Consistency Trajectory Model: Learning Probability Flow
ODE Trajectory of Diffusion") on digits_gmm: a class-conditional jump G(x_t, t, s) distilled from the probability-flow
ODE of the exact class-conditional 64-D digits mixture by soft consistency matching plus the DSM term, the paper's
CIFAR-10 settings otherwise (N = 18, up to 17 Heun steps, target EMA 0.999; jaxdistill/objectives/ctm.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/ctm.py[:smoke] --workdir runs/digits_gmm/ctm
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: gamma-sampling takes any NFE
    # Departures from the paper: the student starts from scratch, not the teacher (the exact mixture has no
    # weights); the distance is squared L2, not LPIPS; no GAN term (its default in the paper's code).
    c = digits_gmm.student("ctm", arg)
    c.eval.nfes = (1, 2, 4)  # gamma-sampling (gamma = 0: deterministic jumps along the ODE)
    return c
