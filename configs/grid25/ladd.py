"""Latent Adversarial Diffusion Distillation (Sauer et al. 2024, "Fast High-Resolution Image
Synthesis with Latent Adversarial Diffusion Distillation") on grid25: the paper's 4-step student
distilled from the exact 25-mode mixture against heads on the teacher's features of noised samples,
with 16,384 teacher ODE samples (Heun, 31 evaluations) as its data, the paper's settings otherwise
except the discriminator's noise levels and updates (jaxdistill/objectives/adversarial.py).

Arguments: none (the benchmark budget) or `smoke` (seconds); the student has the paper's 4 steps,
evaluated at 1 and 4 NFE, so there is no `<K>step`.
Usage: jaxdistill train --config configs/grid25/ladd.py[:smoke] --workdir runs/grid25/ladd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: the paper's student has 4 steps
    c = grid25.student("ladd", arg)  # the student from scratch: the exact mixture has no weights
    # Departures from the paper, for a student trained from scratch (docs/methods/ladd.md):
    c.adversarial.init_sigma = benchmarks.FROM_SCRATCH_INIT_SIGMA  # SiD's input level 2.5, not t_max: a broad start
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD  # N(0, 1) label table (no labels here; as everywhere)
    # Discriminator noise ln(s / sigma_data) ~ N(-1, 1), not N(1, 1): at the paper's levels the modes blur into one blob.
    c.adversarial.noise_mean = -1.0
    # 5 discriminator updates per student update (TTUR, as DMD2's critic), not 1: with one the heads trail the student.
    c.adversarial.critic_schedule = ((0, 5),)
    return benchmarks.few_step(c, c.adversarial.generator_steps)  # the paper's 4-step student, read at 1 and 4 NFE
