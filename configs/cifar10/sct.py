"""sCT (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models", ICLR 2025) on
CIFAR-10: a TrigFlow consistency model trained on CIFAR-10 (the tangent from the conditional velocity of (x0, z)),
starting from EDM's unconditional CIFAR-10 network as Algorithm 1 starts from a pretrained diffusion model, through
the exact jax.jvp tangent, with the paper's CIFAR-10 settings (tau ~ N(-1.0, 1.4^2), tangent normalisation c = 0.1,
tangent warm-up over 10k updates, adaptive weighting, the 2-step sampler's t_mid = 1.1).

Reported FID (paper, Table 1, unconditional CIFAR-10): sCT 2.97 at 1 NFE, 2.06 at 2 NFE (the 2-step figure is the abstract's).
Departures: the paper's teacher is its own TrigFlow diffusion model (time input c_noise(t) = t, Sec. 4.1), ours EDM's
published VP network, read with EDM's time input log(sd tan t) / 4 (scm.time_input="edm": an EDM network is exactly a
TrigFlow network, paper Sec. 3), so the student starts as the teacher. Batch 128, lr 1e-4, EMA 0.9999, 400k updates
and the warm-up are ECT's CIFAR-10 budget (configs/cifar10/ect.py), not the paper's App. G values (not checked here).

Arguments: none (the benchmark budget) or `smoke` (seconds, offline; tests and CI; the tiny teacher is conditional).
Usage: jaxdistill train --config configs/cifar10/sct.py[:smoke] --workdir runs/cifar10/sct
Teacher: checkpoints/edm-cifar10-32x32-uncond-vp.npz (jaxdistill/benchmarks/cifar10.py; smoke: docs/launch.md).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import cifar10


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a few-step sampler, not a K-step generator: no `<K>step` argument
    c = cifar10.student("sct", arg, conditional=False)  # the paper's settings; the student starts from the teacher (Alg. 1)
    c.process.name, c.process.sigma_data = "trigflow", c.sigma_data  # the paper's process, sd = 0.5
    c.scm.time_input = "edm"  # departure: EDM's teacher (above)
    c.eval.nfes = (1, 2)  # the paper's 1- and 2-step FIDs
    if not is_smoke:
        c.batch_size = 128
        c.optim.lr = 1e-4
        c.ema_decay = 0.9999
        c.train.num_steps = 400_000
        c.train.checkpoint_every = 10_000
    else:
        c.scm.tangent_warmup_steps = 1  # the smoke run's 2 updates pass through the warm-up
    return c
