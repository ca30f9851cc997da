"""EDM teacher (Karras et al. 2022, NeurIPS, "Elucidating the Design Space of Diffusion-Based Generative Models") on
digits: a class-conditional UNet (~0.4M parameters) trained on scikit-learn's 1797 8x8 digits, with label dropout 0.1
so that it also learns the unconditional model for classifier-free guidance. The configs/digits students distil it.

Arguments: none (the benchmark budget: 2500 updates of 128 samples) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/teacher.py[:smoke] --workdir runs/digits/teacher
"""
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    return digits.teacher(arg)  # the benchmark's teacher: data, UNet, optimiser, budget and evaluation
