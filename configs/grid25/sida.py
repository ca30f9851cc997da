"""Adversarial Score identity Distillation (Zhou et al. 2025, ICLR, "Adversarial Score identity
Distillation: Rapidly Surpassing the Teacher in One Step") on grid25: a one-step generator distilled
from the exact 25-mode mixture with a GAN head on the critic (real data: the grid's samples), the
paper's settings otherwise except the critic-side GAN weight (jaxdistill/objectives/sid.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/grid25/sida.py[:smoke] --workdir runs/grid25/sida
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    c = grid25.student("sida", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # Departures from the paper (docs/methods/sida.md):
    # the critic-side GAN weight 1 (CIFAR-10, d = 3072) scaled by d / 3072 (d = 2 here) keeps the paper's balance of the
    # GAN and denoising terms in the critic's loss; at weight 1 the GAN term swamps the denoising loss.
    c.sid.adv_critic_weight = 2 / 3072
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD  # N(0, 1) label table (no labels here; as everywhere)
    return benchmarks.few_step(c, steps)
