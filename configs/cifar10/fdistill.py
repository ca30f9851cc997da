"""f-distill (Xu et al. 2025, "One-step Diffusion Models with f-Divergence Distribution Matching") on CIFAR-10: a
one-step generator distilled from EDM's class-conditional CIFAR-10 teacher (Karras et al. 2022) with DMD2's setup
and its score difference reweighted by the Jensen-Shannon weight h(r) = r / (1 + r), the paper's best one-step
choice; generator and critic start from the teacher's weights.

f-distill builds on DMD2's training setup; its own CIFAR-10 batch, learning rates and run length were not checked
here, so these are DMD2's (configs/cifar10/dmd2.py: batch 280, lr 2e-6, five critic updates per generator update,
gradient-norm clip 10, 200k updates). Its reported CIFAR-10 FIDs are in the paper's tables (arXiv:2502.15681);
they are not copied here because they were not checked against the paper. The EDM teacher: 1.79 at 35 NFE.

Arguments: none (the budget above), `smoke` (seconds, offline; tests and CI), and `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/cifar10/fdistill.py[:smoke] --workdir runs/cifar10/fdistill
Teacher: checkpoints/edm-cifar10-32x32-cond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = cifar10.student("fdistill", arg)  # the paper's settings (JS weight); generator and critic from the teacher
    if not is_smoke:
        c.batch_size = 280  # DMD2's
        c.optim.lr = 2e-6
        c.optim.grad_clip = 10.0
        c.train.num_steps = 200_000
        c.train.checkpoint_every = 5_000
    return benchmarks.few_step(c, steps)
