"""DMD2 (Yin et al. 2024, NeurIPS, "Improved Distribution Matching Distillation for Fast Image Synthesis") on
ImageNet-64: a one-step class-conditional generator distilled from EDM's ImageNet-64 ADM teacher (Karras et al. 2022),
generator and critic starting from its weights as in the paper, with the paper's settings (five critic updates per
generator update, GAN head on the critic with lambda_D = 1e-2, lambda_G = 3e-3, no regression loss).

Optimisation, from the paper's code (github.com/tianweiy/DMD2, experiments/imagenet/
imagenet_gan_classifier_genloss3e-3_diffusion1000_lr2e-6_scratch.sh, main/edm/train_edm.py): batch 280 (40 x 7
GPUs), generator and critic lr 2e-6, constant, gradient-norm clip 10, bf16; its README gives FID 1.51 after 200k
updates of this script. The paper's 1.28 (abstract) resumes the no-GAN run's best checkpoint for 140k more updates
at lr 5e-7. EMA: the script sets none; ours is the base's 0.999. The EDM teacher: 1.36 at 511 NFE.

Arguments: none (the paper's budget), `smoke` (seconds, offline; tests and CI), `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/imagenet64/dmd2.py[:smoke] --workdir runs/imagenet64/dmd2
Teacher: checkpoints/edm-imagenet-64x64-cond-adm.npz (jaxdistill/benchmarks/imagenet64.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import imagenet64


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = imagenet64.student("dmd2", arg)  # the paper's settings; generator and critic start from the teacher's weights
    if not is_smoke:
        c.batch_size = 280
        c.optim.lr = 2e-6  # generator and critic (dmd.critic_lr = 0: optim.lr)
        c.optim.grad_clip = 10.0
        c.train.num_steps = 200_000
        c.train.checkpoint_every = 5_000
    return benchmarks.few_step(c, steps)
