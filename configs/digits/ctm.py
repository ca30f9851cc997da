"""Consistency Trajectory Models (Kim et al. 2024, ICLR, "Consistency Trajectory Model: Learning Probability Flow
ODE Trajectory of Diffusion") on digits: a jump G(x_t, t, s) distilled from the trained digits UNet teacher
(runs/digits/teacher) by soft consistency matching along its Heun ODE steps plus the DSM term, starting from the
teacher's weights as in the paper, with the paper's CIFAR-10 settings (N = 18, up to 17 Heun steps, target EMA 0.999).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/ctm.py[:smoke] --workdir runs/digits/ctm
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # gamma-sampling takes any NFE: no `<K>step` argument
    # Departures from the paper: squared L2 distance, not LPIPS (8x8 images; LPIPS needs a VGG download); no GAN term.
    c = digits.student("ctm", arg)
    c.eval.nfes = (1, 2, 4)  # gamma-sampling (gamma = 0: deterministic jumps along the ODE)
    return c
