"""Adversarial Score identity Distillation (Zhou et al. 2025, ICLR, "Adversarial Score identity Distillation: Rapidly
Surpassing the Teacher in One Step") on digits: a one-step generator distilled from the trained digits UNet teacher
(runs/digits/teacher) with SiD's loss (alpha = 1) plus a GAN whose discriminator is a head on the critic's features,
trained on the digits data (jaxdistill/objectives/sid.py); generator and critic start from the teacher's weights, as
in the paper.

Arguments: none (the benchmark budget), `smoke` (seconds, for tests and CI), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits/sida.py[:smoke] --workdir runs/digits/sida
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    _, steps = benchmarks.parse_arg(arg, generator=True)
    c = digits.student("sida", arg)  # the paper's settings; generator and critic start from the teacher's weights
    # Departure from the paper (docs/methods/sida.md): its critic-side GAN weight, 1 at CIFAR-10's d = 3072, scaled by
    # d / 3072 (d = 64 here) to keep its balance of GAN and denoising terms in the critic's loss.
    c.sid.adv_critic_weight = 64 / 3072
    return benchmarks.few_step(c, steps)
