"""f-distill (Xu et al. 2025), Jensen-Shannon weighting: a one-step generator distilled from the exact grid25 mixture.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI); add
`4step` (`:4step`, `:smoke,4step`) for a 4-step generator evaluated at 1 and 4 NFE.
Usage: jaxdistill train --config configs/grid25/fdistill.py[:smoke] --workdir runs/grid25/fdistill
"""
from jaxdistill import presets


def get_config(arg=None):
    preset, steps = presets.split_steps(arg)
    return presets.few_step(presets.grid25_distribution_matching("fdistill", preset), steps)
