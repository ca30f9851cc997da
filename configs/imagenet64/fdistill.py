"""f-distill (Xu et al. 2025, "One-step Diffusion Models with f-Divergence Distribution Matching") on ImageNet-64: a
one-step class-conditional generator distilled from EDM's ImageNet-64 ADM teacher (Karras et al. 2022) with DMD2's
setup and its score difference reweighted by the Jensen-Shannon weight h(r) = r / (1 + r), the paper's best one-step
choice (the abstract: state-of-the-art one-step ImageNet-64); generator and critic start from the teacher's weights.

f-distill builds on DMD2's ImageNet-64 setup; its own batch, learning rates and run length were not checked here, so
these are DMD2's (configs/imagenet64/dmd2.py: batch 280, lr 2e-6, five critic updates per generator update,
gradient-norm clip 10, 200k updates). Its reported ImageNet-64 FID is in the paper's tables (arXiv:2502.15681); it is
not copied here because it was not checked against the paper. The EDM teacher: 1.36 at 511 NFE.

Arguments: none (the budget above), `smoke` (seconds, offline; tests and CI), `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/imagenet64/fdistill.py[:smoke] --workdir runs/imagenet64/fdistill
Teacher: checkpoints/edm-imagenet-64x64-cond-adm.npz (jaxdistill/benchmarks/imagenet64.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import imagenet64


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = imagenet64.student("fdistill", arg)  # the paper's settings (JS weight); generator and critic from the teacher
    if not is_smoke:
        c.batch_size = 280
        c.optim.lr = 2e-6
        c.optim.grad_clip = 10.0
        c.train.num_steps = 200_000
        c.train.checkpoint_every = 5_000
    return benchmarks.few_step(c, steps)
