"""Latent Adversarial Diffusion Distillation (Sauer et al. 2024, "Fast High-Resolution Image Synthesis with Latent
Adversarial Diffusion Distillation") on digits: the paper's 4-step student, starting from the trained digits UNet
teacher's (runs/digits/teacher) weights as in the paper, trained against heads on the teacher's features of noised
samples (noise ln(s / sigma_data) ~ N(1, 1)), with the benchmark's teacher ODE samples (Heun, 17 evaluations) as the
paper's synthetic "real" data; no distillation loss and no R1 term; scored at 1 and 4 NFE.

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI); the student has the paper's 4 steps,
so there is no `<K>step` argument.
Usage: jaxdistill train --config configs/digits/ladd.py[:smoke] --workdir runs/digits/ladd
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # the paper's 4-step student only: no `<K>step` argument
    c = digits.student("ladd", arg)  # the paper's settings; the student starts from the teacher's weights
    return benchmarks.few_step(c, c.adversarial.generator_steps)  # the paper's 4 steps, scored at 1 and 4 NFE
