"""Progressive distillation (Salimans & Ho 2022; see jaxdistill/objectives/progressive.py for the
method and its constants) on digits_gmm.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits_gmm/pd.py[:smoke] --workdir runs/digits_gmm/pd
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_gmm_pd(arg)
