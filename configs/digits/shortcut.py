"""Shortcut models (Frans, Hafner, Levine & Abbeel 2025, ICLR, "One Step Diffusion via Shortcut Models") on digits:
a step-size-conditioned velocity network on the rectified flow, distilling the velocity of the trained digits UNet
teacher (runs/digits/teacher; its EDM denoiser is re-parameterised onto the flow), trained from scratch as in the
paper, with the paper's settings otherwise (M = 128, a quarter of each batch self-consistency).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/shortcut.py[:smoke] --workdir runs/digits/shortcut
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a few-step sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("shortcut", arg)  # the paper's settings; the student starts from scratch, as in the paper
    c.process.name = "rectified_flow"  # the paper's process; the EDM teacher is read as a velocity on it
    c.shortcut.target = "teacher"  # departure (distillation): flow matching regresses the teacher's velocity, not data's
    # Departure (docs/methods/shortcut.md): self-consistency targets from the live weights, not the official code's EMA,
    # whose lag at every bootstrap level is too slow for the benchmark budget.
    c.shortcut.target_ema = False
    c.eval.nfes = (1, 2, 4)  # Euler steps of size 1/NFE, scored at 1, 2 and 4 NFE
    return c
