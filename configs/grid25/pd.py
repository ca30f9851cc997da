"""Progressive distillation (Salimans & Ho 2022; see jaxdistill/objectives/progressive.py for the
method and its constants) on grid25.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/grid25/pd.py[:smoke] --workdir runs/grid25/pd
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.grid25_pd(arg)
