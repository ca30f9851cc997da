"""Consistency Trajectory Models (Kim et al. 2024, ICLR, "Consistency Trajectory Model: Learning Probability Flow ODE
Trajectory of Diffusion") on CIFAR-10: a class-conditional jump G(x_t, t, s) distilled from EDM's conditional CIFAR-10
teacher (Karras et al. 2022) by soft consistency matching along its Heun steps, plus the DSM and GAN terms, starting
from the teacher's weights (the s-embedding at zero), with the paper's CIFAR-10 settings (N = 18, up to 17 Heun steps
with p(k) ∝ k, target EMA 0.999, adaptive DSM and GAN weights).

Optimisation, from the authors' CIFAR-10 code (github.com/Kim-Dongjun/ctm-cifar10, cm/script_util.py and
commands/cond_CTM+DSM+GAN_command.sh): batch 528, lr 4e-4, student EMA 0.9999 (the second of ema_rate 0.999,0.9999),
discriminator lr 2e-3, the GAN term on; 600k updates (total_training_steps; the released command resumes a
27k-update run). Reported FID (sony/ctm README): 1.73 at 1 NFE (class-conditional).
Departures: the distance is squared L2 (the paper's LPIPS needs a VGG download); the discriminator is a head on the
teacher's features (the paper's: StyleGAN-XL's projected discriminator on DeiT and EfficientNet, with augmentation);
the head updates once per student update (the code alternates them); adaptive weights from whole-network gradient
norms (the code: the last layer's).

Arguments: none (the paper's budget) or `smoke` (seconds, offline; tests and CI).
Usage: jaxdistill train --config configs/cifar10/ctm.py[:smoke] --workdir runs/cifar10/ctm
Teacher: checkpoints/edm-cifar10-32x32-cond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # gamma-sampling takes any NFE: no `<K>step` argument
    c = cifar10.student("ctm", arg, conditional=True)  # the paper's settings; the student starts from the teacher
    c.ctm.gan_weight = 1.0  # the paper's best FIDs train with the GAN term (CTM+DSM+GAN)
    c.eval.nfes = (1, 2)
    if not is_smoke:
        c.batch_size = 528
        c.optim.lr = 4e-4
        c.ema_decay = 0.9999
        c.train.num_steps = 600_000
        c.train.checkpoint_every = 10_000
    return c
