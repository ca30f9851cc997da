"""Score identity Distillation (Zhou et al. 2024, ICML, "Score identity Distillation: Exponentially
Fast Distillation of Pretrained Diffusion Models for One-Step Generation") on grid25: a one-step
generator distilled from the exact 25-mode mixture, the paper's settings otherwise except alpha
(generator input level 2.5, one critic update per generator update; jaxdistill/objectives/sid.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/grid25/sid.py[:smoke] --workdir runs/grid25/sid
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    c = grid25.student("sid", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # Departures from the paper (docs/methods/sid.md):
    c.sid.alpha = 1.0  # SiDA's alpha, not SiD's 1.2: lower SW2 and fuller mode coverage on grid25 over 3 seeds
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD  # N(0, 1) label table (no labels here; as everywhere)
    return benchmarks.few_step(c, steps)
