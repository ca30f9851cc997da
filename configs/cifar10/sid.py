"""Score identity Distillation (Zhou et al. 2024, ICML, "Score identity Distillation: Exponentially Fast Distillation
of Pretrained Diffusion Models for One-Step Generation") on CIFAR-10: a one-step generator distilled from EDM's
class-conditional CIFAR-10 teacher (Karras et al. 2022), generator and critic starting from its weights, with the
paper's settings (alpha = 1.2, generator input sigma 2.5, t up to 800 of 1000, one critic update per generator
update; jaxdistill/objectives/sid.py).

Optimisation, from the paper's code (github.com/mingyuanzhou/SiD, run_sid.sh "cifar10-cond" and sid_train.py):
batch 256, generator and critic Adam lr 1e-5 with betas (0, 0.999), EMA half-life 0.5 Mimg, 800 Mimg of generator
images for conditional CIFAR-10 at alpha = 1.2 (3.125M updates; the script's comment: 500 Mimg elsewhere).
Reported one-step FID (paper): 1.710 conditional, 1.923 unconditional (`cifar10.student("sid", conditional=False)`);
the EDM teacher 1.79 at 35 NFE. Not here: fp32 loss scaling knobs (ls, lsg: our losses are per-dimension means).

Arguments: none (the paper's budget), `smoke` (seconds, offline; tests and CI), and `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/cifar10/sid.py[:smoke] --workdir runs/cifar10/sid
Teacher: checkpoints/edm-cifar10-32x32-cond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10, images


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = cifar10.student("sid", arg)  # the paper's settings; generator and critic start from the teacher's weights
    c.optim.b1 = 0.0  # SiD's Adam betas (0, 0.999), generator and critic
    if not is_smoke:
        c.batch_size = 256
        c.optim.lr = 1e-5  # generator and critic (SiD's glr = lr)
        c.ema_decay = images.ema_decay(0.5e6, c.batch_size)  # EDM's half-life of 0.5 Mimg, per update
        c.train.num_steps = 800_000_000 // 256
        c.train.checkpoint_every = 10_000
    return benchmarks.few_step(c, steps)
