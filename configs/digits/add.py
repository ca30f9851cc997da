"""Adversarial Diffusion Distillation (Sauer, Lorenz, Blattmann & Rombach 2023, "Adversarial Diffusion Distillation")
on digits: the paper's 4-step student, starting from the trained digits UNet teacher's (runs/digits/teacher) weights as
in the paper, trained with a hinge GAN against heads on frozen features (the teacher's at a small noise level, our
stand-in for DINOv2) plus the paper's distillation loss (lambda = 2.5, R1 gamma = 1e-5); scored at 1 and 4 NFE.

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI); the student has the paper's 4 steps,
so there is no `<K>step` argument.
Usage: jaxdistill train --config configs/digits/add.py[:smoke] --workdir runs/digits/add
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # the paper's 4-step student only: no `<K>step` argument
    c = digits.student("add", arg)  # the paper's settings; the student starts from the teacher's weights
    # A head at every feature position, as ADD's heads score every DINOv2 token: with heads on position-averaged
    # features the student collapsed onto one blurred pattern (docs/methods/add.md).
    c.adversarial.head_per_position = True
    return benchmarks.few_step(c, c.adversarial.generator_steps)  # the paper's 4 steps, scored at 1 and 4 NFE
