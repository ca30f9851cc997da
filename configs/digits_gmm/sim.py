"""Score Implicit Matching (Luo et al. 2024, NeurIPS, "One-Step Diffusion Distillation through Score
Implicit Matching") on digits_gmm: a one-step class-conditional generator distilled from the exact
class-conditional 64-D digits mixture, the paper's settings otherwise (pseudo-Huber distance,
generator input level 2.5; jaxdistill/objectives/sid.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits_gmm/sim.py[:smoke] --workdir runs/digits_gmm/sim
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    c = digits_gmm.student("sim", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # Departures from the paper, for a generator trained from scratch (docs/methods/sim.md):
    # ADM's N(0, 1) label table, not DiT's 0.02, with which a generator from scratch learns to ignore its labels.
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD
    # Generator and critic at 1e-4, not the benchmark's 1e-3, at which the generator's residual stream blows up and its
    # samples ignore their labels (measured with SiD; the same rate for SiD, SiDA and SIM).
    c.optim.lr = 1e-4
    return benchmarks.few_step(c, steps)
