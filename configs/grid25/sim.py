"""Score Implicit Matching (Luo et al. 2024, NeurIPS, "One-Step Diffusion Distillation through Score
Implicit Matching") on grid25: a one-step generator distilled from the exact 25-mode mixture, the
paper's settings otherwise (pseudo-Huber distance, generator input level 2.5;
jaxdistill/objectives/sid.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/grid25/sim.py[:smoke] --workdir runs/grid25/sim
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    c = grid25.student("sim", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # Departure from the paper, for a generator trained from scratch (docs/methods/sim.md):
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD  # N(0, 1) label table (no labels here; as everywhere)
    return benchmarks.few_step(c, steps)
