"""Adversarial Score identity Distillation (Zhou et al. 2025, ICLR, "Adversarial Score identity Distillation: Rapidly
Surpassing the Teacher in One Step") on CIFAR-10: a one-step generator distilled from EDM's class-conditional
CIFAR-10 teacher (Karras et al. 2022) with SiD's loss (alpha = 1) plus a GAN whose discriminator is a head on the
critic's features, trained on the CIFAR-10 images (lambda_D = 1, lambda_G = 1e-4 in our per-dimension units:
the code's lsd = 1, lsg_gan / lsg = 0.01 / 100; jaxdistill/objectives/sid.py); generator and critic start from the
teacher's weights.

Optimisation, from the paper's code (github.com/mingyuanzhou/SiD, sida_train.py and run_sida.sh): batch 256,
generator and critic Adam lr 1e-5 with betas (0, 0.999), EMA half-life 0.5 Mimg, 300 Mimg (sida_train.py's
CIFAR-10 example; 1.17M updates). Reported one-step FID (abstract, its best runs, which fine-tune a pre-distilled
SiD generator, "SiD^2A"): 1.396 conditional, 1.499 unconditional; the EDM teacher 1.79 at 35 NFE. Not here:
starting from a pre-distilled SiD generator; ours starts from the teacher's weights (SiDA from scratch).

Arguments: none (the paper's budget), `smoke` (seconds, offline; tests and CI), and `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/cifar10/sida.py[:smoke] --workdir runs/cifar10/sida
Teacher: checkpoints/edm-cifar10-32x32-cond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10, images


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = cifar10.student("sida", arg)  # the paper's settings (adv_critic_weight 1 at CIFAR-10's d = 3072)
    c.optim.b1 = 0.0  # SiD's Adam betas (0, 0.999), generator and critic
    if not is_smoke:
        c.batch_size = 256
        c.optim.lr = 1e-5
        c.ema_decay = images.ema_decay(0.5e6, c.batch_size)
        c.train.num_steps = 300_000_000 // 256
        c.train.checkpoint_every = 10_000
    return benchmarks.few_step(c, steps)
