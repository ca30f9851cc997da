"""Progressive distillation (Salimans & Ho 2022, ICLR, "Progressive Distillation for Fast Sampling of Diffusion
Models") on CIFAR-10: EDM's unconditional CIFAR-10 teacher's (Karras et al. 2022) deterministic sampler halved stage
by stage down to one step, each student starting from its teacher's weights as in the paper.

Reported FID (paper, unconditional CIFAR-10): 9.12 at 1 step, 4.51 at 2, 3.00 at 4 (abstract: "3.0 in 4 steps").
The paper starts from 8192 DDIM steps of its own v-prediction teacher; ours is EDM's DDPM++ (FID 1.97 at 35 NFE),
whose Heun sampler needs far fewer steps, so the first teacher here is 1024 steps (10 halvings). Batch 128, lr 1e-4
and 50k updates per halving are our reading of the paper's appendix, not checked against it here; the
optimiser restarts every stage (cosine decay over a stage, warm-up within a tenth). EMA 0.9999 (the paper's).

Arguments: none (the budget above) or `smoke` (seconds, offline; tests and CI).
Usage: jaxdistill train --config configs/cifar10/pd.py[:smoke] --workdir runs/cifar10/pd
Teacher: checkpoints/edm-cifar10-32x32-uncond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = cifar10.student("pd", arg, conditional=False)  # the paper's settings; each stage starts from its teacher
    c.eval.nfes = (1, 2, 4)  # the students of the last three stages
    if is_smoke:
        c.pd.start_steps = 2  # one halving in the 2 smoke updates
    else:
        c.pd.start_steps = 1024  # departure (paper: 8192 of its own teacher): see the docstring
        c.pd.steps_per_stage = 50_000
        c.batch_size = 128
        c.optim.lr = 1e-4
        c.ema_decay = 0.9999
        c.train.num_steps = 10 * 50_000
        c.train.checkpoint_every = 10_000
    benchmarks.optimiser_per_stage(c)  # each stage restarts the optimiser: decay over the longest stage, warm-up within a tenth
    return c
