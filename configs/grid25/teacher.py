"""MLP diffusion teacher trained on the 25-mode 2-D grid mixture.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/grid25/teacher.py[:smoke] --workdir runs/grid25/teacher
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.grid25_teacher(arg)
