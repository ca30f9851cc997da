"""sCD (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models", ICLR 2025) on
ImageNet-64: a class-conditional TrigFlow consistency model distilled from EDM's class-conditional ImageNet-64 ADM
teacher (Karras et al. 2022) along its PF-ODE velocity, through the exact jax.jvp tangent, with the paper's
ImageNet-64 proposal tau ~ N(-0.8, 1.6^2) and its other settings (tangent normalisation c = 0.1, warm-up over 10k
updates, adaptive weighting, the 2-step sampler's t_mid = 1.1).

Reported FID (paper, abstract): 1.48 at 2 NFE for its best ImageNet-64 model (an EDM2-XL-size network; the per-method,
per-size 1- and 2-step figures are in its Table 2).
Departures: the paper's teachers are its own TrigFlow EDM2 networks (time input t), ours EDM's published ADM, read with
EDM's time input log(sd tan t) / 4 (scm.time_input="edm", exact: paper Sec. 3), so the student starts as the teacher.
Batch 2048, EMA 0.9999432 and 600k updates are the ImageNet-64 CD config's, lr 1e-4 ours: not the paper's App. G
values (not checked here).

Arguments: none (the benchmark budget) or `smoke` (seconds, offline; tests and CI).
Usage: jaxdistill train --config configs/imagenet64/scd.py[:smoke] --workdir runs/imagenet64/scd
Teacher: checkpoints/edm-imagenet-64x64-cond-adm.npz (jaxdistill/benchmarks/imagenet64.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import imagenet64


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a few-step sampler, not a K-step generator: no `<K>step` argument
    c = imagenet64.student("scd", arg)  # the paper's settings; the student starts from the teacher (Alg. 1)
    c.process.name, c.process.sigma_data = "trigflow", c.sigma_data  # the paper's process, sd = 0.5
    c.scm.time_input = "edm"  # departure: EDM's teacher (above)
    c.scm.p_mean, c.scm.p_std = -0.8, 1.6  # the paper's ImageNet-64 proposal (App. G)
    c.eval.nfes = (1, 2)  # the paper's 1- and 2-step FIDs
    if not is_smoke:
        c.batch_size = 2048
        c.optim.lr = 1e-4
        c.ema_decay = 0.9999432189950708
        c.train.num_steps = 600_000
        c.train.checkpoint_every = 10_000
    else:
        c.scm.tangent_warmup_steps = 1  # the smoke run's 2 updates pass through the warm-up
    return c
