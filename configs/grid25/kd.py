"""Knowledge distillation (Luhman & Luhman 2021) of the exact grid25 mixture teacher into a one-step MLP.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/grid25/kd.py[:smoke] --workdir runs/grid25/kd
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.grid25_kd(arg)
