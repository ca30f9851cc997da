"""DMD2 (Yin et al. 2024, NeurIPS, "Improved Distribution Matching Distillation for Fast Image Synthesis") on
CIFAR-10: a one-step generator distilled from EDM's class-conditional CIFAR-10 teacher (Karras et al. 2022), generator
and critic starting from its weights as in the paper, with the paper's method settings (five critic updates per
generator update, GAN head on the critic with lambda_D = 1e-2, lambda_G = 3e-3, no regression loss).

DMD2 reports no CIFAR-10 result, so the optimisation settings are its ImageNet-64 run's (github.com/tianweiy/DMD2,
experiments/imagenet/imagenet_gan_classifier_genloss3e-3_diffusion1000_lr2e-6_scratch.sh and main/edm/train_edm.py):
batch 280 (40 x 7 GPUs), generator and critic lr 2e-6, constant, gradient-norm clip 10, 200k generator updates.
EMA: the script sets none; ours is the base's 0.999. For comparison: DMD (Yin et al. 2024, CVPR) reports one-step FID
2.66 on conditional CIFAR-10 (3.77 unconditional); the EDM teacher 1.79 at 35 NFE.

Arguments: none (the paper's budget), `smoke` (seconds, offline: mock data, a tiny teacher; for tests and CI), and
`<K>step` for a K-step generator evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/cifar10/dmd2.py[:smoke] --workdir runs/cifar10/dmd2
Teacher: checkpoints/edm-cifar10-32x32-cond-vp.npz (jaxdistill/benchmarks/cifar10.py says how to convert it; smoke:
checkpoints/smoke/edm-ddpmpp-tiny-8x8-cond.npz, docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = cifar10.student("dmd2", arg)  # the paper's settings; generator and critic start from the teacher's weights
    if not is_smoke:
        c.batch_size = 280  # DMD2's ImageNet-64 batch (no CIFAR-10 run in the paper)
        c.optim.lr = 2e-6  # generator; the critic's lr is the same (dmd.critic_lr = 0: optim.lr), as DMD2's guidance_lr
        c.optim.grad_clip = 10.0  # DMD2's max_grad_norm
        c.train.num_steps = 200_000
        c.train.checkpoint_every = 5_000
    return benchmarks.few_step(c, steps)
