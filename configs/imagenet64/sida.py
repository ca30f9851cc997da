"""Adversarial Score identity Distillation (Zhou et al. 2025, ICLR) on ImageNet-64: a one-step class-conditional
generator distilled from EDM's ImageNet-64 ADM teacher (Karras et al. 2022) with SiD's loss (alpha = 1) plus a GAN
whose discriminator is a head on the critic's features, trained on the ImageNet images (jaxdistill/objectives/sid.py);
generator and critic start from the teacher's weights.

lambda_D = 1 (the code's lsd; our critic loss divides the GAN term by d, as the code's DSM sum over d
outweighs it, so the code's balance holds at any image size) and lambda_G = 1e-4 (lsg_gan / lsg).

Optimisation, from the paper's code (github.com/mingyuanzhou/SiD, run_sida.sh "imagenet64-cond"): batch 8192, Adam
lr 4e-6 with betas (0, 0.999), EMA half-life 2 Mimg, dropout 0.1, fp16, 300 Mimg (36.6k updates). Reported one-step
FID (abstract, its best run, fine-tuning a pre-distilled SiD generator, "SiD^2A"): 1.110. Ours starts from the
teacher's weights (SiDA from scratch). The EDM teacher: 1.36 at 511 NFE.

Arguments: none (the paper's budget), `smoke` (seconds, offline; tests and CI), `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/imagenet64/sida.py[:smoke] --workdir runs/imagenet64/sida
Teacher: checkpoints/edm-imagenet-64x64-cond-adm.npz (jaxdistill/benchmarks/imagenet64.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import imagenet64, images


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = imagenet64.student("sida", arg)  # the paper's settings; generator and critic start from the teacher's weights
    c.optim.b1 = 0.0  # SiD's Adam betas (0, 0.999)
    if not is_smoke:
        c.batch_size = 8192
        c.optim.lr = 4e-6
        c.ema_decay = images.ema_decay(2e6, c.batch_size)
        c.train.num_steps = 300_000_000 // 8192
        c.train.checkpoint_every = 2_000
    return benchmarks.few_step(c, steps)
