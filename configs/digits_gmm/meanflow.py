"""MeanFlow (Geng et al. 2025) distilling the velocity of the exact 64-D digits mixture on the rectified flow.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits_gmm/meanflow.py[:smoke] --workdir runs/digits_gmm/meanflow
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_gmm_meanflow(arg)
