"""Consistency Trajectory Models (Kim et al. 2024, ICLR, "Consistency Trajectory Model: Learning Probability Flow ODE
Trajectory of Diffusion") on ImageNet-64: a class-conditional jump G(x_t, t, s) distilled from EDM's ImageNet-64 ADM
teacher (Karras et al. 2022) by soft consistency matching along its Heun steps, plus the DSM and GAN terms, starting
from the teacher's weights (the s-embedding at zero), with the paper's ImageNet-64 settings (N = 40, target EMA 0.999).

Optimisation, from the paper's code (github.com/sony/ctm, commands/CTM+DSM+GAN_command.sh, the fine-tuning stage
behind the reported FID): batch 4224, lr 8e-6, up to 20 Heun steps (num_heun_step=20), target EMA 0.999, student EMA
0.999, discriminator lr 2e-3, the GAN term on; 600k updates (total_training_steps; the command resumes a CTM+DSM run,
commands/CTM+DSM_command.sh: batch 1440, lr 4e-4). Reported FID (sony/ctm README): 1.92 at 1 NFE.
Departures: squared L2 distance (LPIPS needs a VGG download); the discriminator is a head on the teacher's features
(the paper's: StyleGAN-XL's projected discriminator), updated once per student update (the code alternates); one
stage from the teacher instead of CTM+DSM then GAN fine-tuning; adaptive weights from whole-network gradient norms.

Arguments: none (the paper's budget) or `smoke` (seconds, offline; tests and CI).
Usage: jaxdistill train --config configs/imagenet64/ctm.py[:smoke] --workdir runs/imagenet64/ctm
Teacher: checkpoints/edm-imagenet-64x64-cond-adm.npz (jaxdistill/benchmarks/imagenet64.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import imagenet64


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # gamma-sampling takes any NFE: no `<K>step` argument
    c = imagenet64.student("ctm", arg)  # the paper's settings; the student starts from the teacher's weights
    c.ctm.num_scales = 40  # the paper's ImageNet-64 N (code start_scales)
    c.ctm.gan_weight = 1.0  # CTM+DSM+GAN, the reported FID
    c.eval.nfes = (1, 2)
    if not is_smoke:
        c.ctm.max_solver_steps = 20  # the GAN stage's num_heun_step
        c.batch_size = 4224
        c.optim.lr = 8e-6
        c.ema_decay = 0.999
        c.train.num_steps = 600_000
        c.train.checkpoint_every = 10_000
    return c
