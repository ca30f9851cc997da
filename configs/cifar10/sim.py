"""Score Implicit Matching (Luo et al. 2024, NeurIPS, "One-Step Diffusion Distillation through Score Implicit
Matching") on CIFAR-10: a one-step generator distilled from EDM's class-conditional CIFAR-10 teacher (Karras et al.
2022) with the pseudo-Huber score distance (c = 1e-3) and SiD's setup otherwise (jaxdistill/objectives/sid.py);
generator and critic start from the teacher's weights.

The paper gives no optimisation table of its own; SIM follows SiD's CIFAR-10 setup (SIM repository issue #4), so
these are SiD's (github.com/mingyuanzhou/SiD): batch 256, Adam lr 1e-5 with betas (0, 0.999), EMA half-life
0.5 Mimg; the run length is SiD's conditional CIFAR-10 one (800 Mimg), not a number from the SIM paper.
Reported one-step FID (abstract): 1.96 conditional, 2.06 unconditional; the EDM teacher 1.79 at 35 NFE.

Arguments: none (the budget above), `smoke` (seconds, offline; tests and CI), and `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/cifar10/sim.py[:smoke] --workdir runs/cifar10/sim
Teacher: checkpoints/edm-cifar10-32x32-cond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10, images


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = cifar10.student("sim", arg)  # the paper's settings; generator and critic start from the teacher's weights
    c.optim.b1 = 0.0  # SiD's Adam betas (0, 0.999)
    if not is_smoke:
        c.batch_size = 256
        c.optim.lr = 1e-5
        c.ema_decay = images.ema_decay(0.5e6, c.batch_size)
        c.train.num_steps = 800_000_000 // 256
        c.train.checkpoint_every = 10_000
    return benchmarks.few_step(c, steps)
