"""CD (see jaxdistill/objectives/consistency.py for the paper and its constants) on grid25.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/grid25/cd.py[:smoke] --workdir runs/grid25/cd
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.grid25_consistency("cd", arg)
