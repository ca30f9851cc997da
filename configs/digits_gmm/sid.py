"""Score identity Distillation (Zhou et al. 2024, ICML, "Score identity Distillation: Exponentially
Fast Distillation of Pretrained Diffusion Models for One-Step Generation") on digits_gmm: a
one-step class-conditional generator distilled from the exact class-conditional 64-D digits
mixture, the paper's settings otherwise (alpha = 1.2, generator input level 2.5, one critic update
per generator update; jaxdistill/objectives/sid.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits_gmm/sid.py[:smoke] --workdir runs/digits_gmm/sid
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    c = digits_gmm.student("sid", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # Departures from the paper, for a generator trained from scratch (docs/methods/sid.md):
    # ADM's N(0, 1) label table, not DiT's 0.02, with which a generator from scratch learns to ignore its labels.
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD
    # Generator and critic at 1e-4, not the benchmark's 1e-3, at which the generator's residual stream blows up and its
    # samples ignore their labels.
    c.optim.lr = 1e-4
    return benchmarks.few_step(c, steps)
