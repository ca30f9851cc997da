"""Distribution Matching Distillation (Yin et al. 2024, CVPR, "One-step Diffusion with Distribution
Matching Distillation") on grid25: a one-step generator distilled from the exact 25-mode mixture,
DMD's paper settings otherwise (the normalised score difference plus lambda_reg = 0.25 times an L2
regression, not LPIPS, on 16,384 teacher ODE pairs; jaxdistill/objectives/dmd.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/grid25/dmd.py[:smoke] --workdir runs/grid25/dmd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    c = grid25.student("dmd", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # The generator keeps the paper's input at t_max: its regression pairs are teacher ODE solutions from the prior there.
    # Departure from the paper, for a generator trained from scratch (docs/methods/dmd.md):
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD  # N(0, 1) label table (no labels here; as everywhere)
    return benchmarks.few_step(c, steps)
