"""Class-conditional UNet teacher on scikit-learn digits (8x8), EDM preconditioning.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits/teacher.py[:smoke] --workdir runs/digits/teacher
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_teacher(arg)
