"""Consistency Distillation (Song, Dhariwal, Chen & Sutskever 2023, ICML, "Consistency Models", Alg. 2) on CIFAR-10:
a consistency model distilled from EDM's unconditional CIFAR-10 teacher (Karras et al. 2022) along its Heun ODE
steps, starting from the teacher's weights as in the paper, with the paper's CIFAR-10 settings (N = 18, target EMA
mu = 0.95, Heun).

Optimisation (paper, Table 3 / App. C, and github.com/openai/consistency_models_cifar10): batch 512, lr 4e-4, EMA
0.9999, 800k updates. Reported FID (paper, LPIPS distance): 3.55 at 1 NFE, 2.93 at 2 NFE (with L2: 1-step worse).
Departures: the distance is L2 (LPIPS needs a VGG download; our `feature` distance uses the teacher's features
instead); the paper's teacher is its own EDM-trained NCSN++, ours EDM's published DDPM++ (FID 1.97 at 35 NFE);
optimiser Adam (the paper's CIFAR-10 code: RAdam).

Arguments: none (the paper's budget) or `smoke` (seconds, offline; tests and CI; the tiny teacher is conditional).
Usage: jaxdistill train --config configs/cifar10/cd.py[:smoke] --workdir runs/cifar10/cd
Teacher: checkpoints/edm-cifar10-32x32-uncond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = cifar10.student("cd", arg, conditional=False)  # the paper's settings; the student starts from the teacher
    c.eval.nfes = (1, 2)  # the multistep consistency sampler (Alg. 1), the paper's 1- and 2-step FIDs
    if not is_smoke:
        c.batch_size = 512
        c.optim.lr = 4e-4
        c.ema_decay = 0.9999
        c.train.num_steps = 800_000
        c.train.checkpoint_every = 10_000
    return c
