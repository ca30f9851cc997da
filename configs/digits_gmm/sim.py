"""Score Implicit Matching (Luo et al. 2024, NeurIPS): a one-step generator distilled from the exact 64-D digits mixture
(see jaxdistill/objectives/sid.py for the method and its constants).

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI); add
`4step` (`:4step`, `:smoke,4step`) for a 4-step generator evaluated at 1 and 4 NFE.
Usage: jaxdistill train --config configs/digits_gmm/sim.py[:smoke] --workdir runs/digits_gmm/sim
"""
from jaxdistill import presets


def get_config(arg=None):
    preset, steps = presets.split_steps(arg)
    return presets.few_step(presets.digits_gmm_sim(preset), steps)
