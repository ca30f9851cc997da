"""Adversarial Score identity Distillation (Zhou et al. 2025, ICLR, "Adversarial Score identity
Distillation: Rapidly Surpassing the Teacher in One Step") on digits_gmm: a one-step
class-conditional generator distilled from the exact class-conditional 64-D digits mixture with a
GAN head on the critic (real data: the benchmark's 50,000 mixture samples), the paper's settings
otherwise except the critic-side GAN weight (jaxdistill/objectives/sid.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits_gmm/sida.py[:smoke] --workdir runs/digits_gmm/sida
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    c = digits_gmm.student("sida", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # Departures from the paper (docs/methods/sida.md):
    # the critic-side GAN weight 1 (CIFAR-10, d = 3072) scaled by d / 3072 (d = 64 here) keeps the paper's balance of
    # the GAN and denoising terms in the critic's loss.
    c.sid.adv_critic_weight = 64 / 3072
    # ADM's N(0, 1) label table, not DiT's 0.02, with which a generator from scratch learns to ignore its labels.
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD
    # Generator and critic at 1e-4, not the benchmark's 1e-3, at which the generator's residual stream blows up and its
    # samples ignore their labels (measured with SiD; the same rate for SiD, SiDA and SIM).
    c.optim.lr = 1e-4
    return benchmarks.few_step(c, steps)
