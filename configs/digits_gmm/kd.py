"""Knowledge distillation of the exact 64-D class-conditional digits mixture into a one-step MLP.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits_gmm/kd.py[:smoke] --workdir runs/digits_gmm/kd
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_gmm_kd(arg)
