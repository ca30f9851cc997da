"""Shortcut model (Frans et al. 2025) distilling the velocity of the exact grid25 mixture on the rectified flow.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/grid25/shortcut.py[:smoke] --workdir runs/grid25/shortcut
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.grid25_shortcut(arg)
