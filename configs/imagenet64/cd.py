"""Consistency Distillation (Song, Dhariwal, Chen & Sutskever 2023, ICML, "Consistency Models", Alg. 2) on
ImageNet-64: a class-conditional consistency model distilled from EDM's ImageNet-64 ADM teacher (Karras et al. 2022)
along its Heun ODE steps, starting from the teacher's weights as in the paper, with the paper's ImageNet-64
settings (N = 40, target EMA mu = 0.95, Heun).

Optimisation, from the paper's code (github.com/openai/consistency_models, scripts/launch.sh, CD with LPIPS on
ImageNet-64): batch 2048, lr 8e-6, constant, EMA 0.9999432 (the evaluated rate of ema_rate 0.999,0.9999,
0.9999432189950708), student dropout 0, 600k updates. Reported FID (abstract; paper's table): 6.20 at 1 NFE, 4.70
at 2 NFE. Departures: L2 distance (LPIPS needs a VGG download); the paper's teacher is its own EDM-trained ADM
(edm_imagenet64_ema.pt), ours EDM's published one (FID 1.36 at 511 NFE).

Arguments: none (the paper's budget) or `smoke` (seconds, offline; tests and CI).
Usage: jaxdistill train --config configs/imagenet64/cd.py[:smoke] --workdir runs/imagenet64/cd
Teacher: checkpoints/edm-imagenet-64x64-cond-adm.npz (jaxdistill/benchmarks/imagenet64.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import imagenet64


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = imagenet64.student("cd", arg)  # the paper's settings; the student starts from the teacher's weights
    c.eval.nfes = (1, 2)
    if not is_smoke:
        c.consistency.num_scales = 40  # the paper's ImageNet-64 N
        c.network.dropout = 0.0
        c.batch_size = 2048
        c.optim.lr = 8e-6
        c.ema_decay = 0.9999432189950708
        c.train.num_steps = 600_000
        c.train.checkpoint_every = 10_000
    return c
