"""ECT (see jaxdistill/objectives/consistency.py for the paper and its constants) on digits_gmm.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits_gmm/ect.py[:smoke] --workdir runs/digits_gmm/ect
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_gmm_consistency("ect", arg)
