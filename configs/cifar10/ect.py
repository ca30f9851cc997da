"""Easy Consistency Tuning (Geng et al. 2024, "Consistency Models Made Easy") on CIFAR-10: EDM's unconditional CIFAR-10
teacher (Karras et al. 2022) tuned into a consistency model, starting from its weights as in the paper, with the
paper's settings (continuous t, ln t ~ N(-1.1, 2^2), sigmoid mapping q = 2, k = 8, b = 1, pseudo-Huber with c = 0).

Optimisation, from the paper's code (github.com/locuslab/ect, run_ecm.sh and ct_train.py): unconditional, batch 128,
lr 1e-4 (RAdam there, Adam here: optim has no RAdam), betas (0.9, 0.999), dropout 0.2, no augmentation, EMA 0.9999,
the gap t - r halved every 3.2 Mimg (--double 250 ticks of 12.8 kimg: 25,000 updates), 400k updates.
Reported FID (README, "ECM (400k)"): 3.60 at 1 NFE, 2.11 at 2 NFE (200k updates: 3.86 / 2.15); the EDM teacher
1.97 at 35 NFE. Not here: the 2-step sampler's intermediate t = 0.821 (ours: the Karras grid's middle level).

Arguments: none (the paper's budget) or `smoke` (seconds, offline; tests and CI; the tiny teacher is conditional).
Usage: jaxdistill train --config configs/cifar10/ect.py[:smoke] --workdir runs/cifar10/ect
Teacher: checkpoints/edm-cifar10-32x32-uncond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = cifar10.student("ect", arg, conditional=False)  # the paper's settings; the student starts from the teacher
    c.eval.nfes = (1, 2)  # the paper's 1- and 2-step FIDs
    if not is_smoke:
        c.network.dropout = 0.2  # ECT's CIFAR-10 dropout (EDM trained the teacher with 0.13)
        c.batch_size = 128
        c.optim.lr = 1e-4
        c.ema_decay = 0.9999
        c.consistency.stage_steps = 25_000  # 3.2 Mimg at batch 128
        c.train.num_steps = 400_000
        c.train.checkpoint_every = 10_000
    return c
