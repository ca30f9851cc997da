"""EDM teacher (Karras et al. 2022, NeurIPS, "Elucidating the Design Space of Diffusion-Based
Generative Models") on grid25: a 3x128 MLP denoiser trained on 200,000 samples of the 25-mode
grid, the benchmark's trained-teacher option (students of grid25 distil the exact mixture).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/teacher.py[:smoke] --workdir runs/grid25/teacher
"""
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    return grid25.teacher(arg)  # data, network, batch, optimiser and budget are the benchmark's (BENCHMARKS.md)
