"""Score identity Distillation (Zhou et al. 2024, ICML) on ImageNet-64: a one-step class-conditional generator
distilled from EDM's ImageNet-64 ADM teacher (Karras et al. 2022), generator and critic starting from its weights,
with the paper's settings (alpha = 1.2, generator input sigma 2.5, t up to 800 of 1000, one critic update per
generator update; jaxdistill/objectives/sid.py).

Optimisation, from the paper's code (github.com/mingyuanzhou/SiD, run_sid.sh "imagenet64-cond", sid_train.py):
batch 8192, generator and critic Adam lr 4e-6 with betas (0, 0.999), EMA half-life 2 Mimg, dropout 0.1, fp16,
1000 Mimg at alpha = 1.2 (122k updates). Reported one-step FID (paper): 1.524. The EDM teacher: 1.36 at 511 NFE.

Arguments: none (the paper's budget), `smoke` (seconds, offline; tests and CI), `<K>step` (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/imagenet64/sid.py[:smoke] --workdir runs/imagenet64/sid
Teacher: checkpoints/edm-imagenet-64x64-cond-adm.npz (jaxdistill/benchmarks/imagenet64.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import imagenet64, images


def get_config(arg=None):
    is_smoke, steps = benchmarks.parse_arg(arg, generator=True)
    c = imagenet64.student("sid", arg)  # the paper's settings; generator and critic start from the teacher's weights
    c.optim.b1 = 0.0  # SiD's Adam betas (0, 0.999), generator and critic
    if not is_smoke:
        c.batch_size = 8192
        c.optim.lr = 4e-6
        c.ema_decay = images.ema_decay(2e6, c.batch_size)  # half-life 2 Mimg
        c.train.num_steps = 1_000_000_000 // 8192
        c.train.checkpoint_every = 2_000
    return benchmarks.few_step(c, steps)
