"""Adversarial Diffusion Distillation (Sauer, Lorenz, Blattmann & Rombach 2023, "Adversarial
Diffusion Distillation") on digits_gmm: the paper's 4-step class-conditional student distilled from
the exact class-conditional 64-D digits mixture with a hinge GAN whose heads score the teacher's
features (our stand-in for DINOv2), the paper's settings otherwise except the distillation term and
the learning rate (jaxdistill/objectives/adversarial.py).

Arguments: none (the benchmark budget) or `smoke` (seconds); the student has the paper's 4 steps,
evaluated at 1 and 4 NFE, so there is no `<K>step`.
Usage: jaxdistill train --config configs/digits_gmm/add.py[:smoke] --workdir runs/digits_gmm/add
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: the paper's student has 4 steps
    c = digits_gmm.student("add", arg)  # the student from scratch: the exact mixture has no weights
    # Departures from the paper, for a student trained from scratch (docs/methods/add.md):
    c.adversarial.init_sigma = benchmarks.FROM_SCRATCH_INIT_SIGMA  # SiD's input level 2.5, not t_max: a broad start
    # ADM's N(0, 1) label table, not DiT's 0.02, with which a generator from scratch learns to ignore its labels.
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD
    # No distillation term (paper: lambda = 2.5): the teacher's denoising of a student far from it averages over modes.
    c.adversarial.distill_weight = 0.0
    # Student and discriminator heads at 1e-4, not the benchmark's 1e-3, at which the student's residual stream blows up
    # and it ignores its labels (the same rate for ADD and LADD).
    c.optim.lr = 1e-4
    return benchmarks.few_step(c, c.adversarial.generator_steps)  # the paper's 4-step student, read at 1 and 4 NFE
