"""Adversarial Diffusion Distillation (Sauer, Lorenz, Blattmann & Rombach 2023, "Adversarial
Diffusion Distillation") on grid25: the paper's 4-step student distilled from the exact 25-mode
mixture with a hinge GAN whose heads score the teacher's features (our stand-in for DINOv2), the
paper's settings otherwise except the distillation term (jaxdistill/objectives/adversarial.py).

Arguments: none (the benchmark budget) or `smoke` (seconds); the student has the paper's 4 steps,
evaluated at 1 and 4 NFE, so there is no `<K>step`.
Usage: jaxdistill train --config configs/grid25/add.py[:smoke] --workdir runs/grid25/add
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: the paper's student has 4 steps
    c = grid25.student("add", arg)  # the student from scratch: the exact mixture has no weights
    # Departures from the paper, for a student trained from scratch (docs/methods/add.md):
    c.adversarial.init_sigma = benchmarks.FROM_SCRATCH_INIT_SIGMA  # SiD's input level 2.5, not t_max: a broad start
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD  # N(0, 1) label table (no labels here; as everywhere)
    # No distillation term (paper: lambda = 2.5): the teacher's denoising of a student far from it averages over modes.
    c.adversarial.distill_weight = 0.0
    return benchmarks.few_step(c, c.adversarial.generator_steps)  # the paper's 4-step student, read at 1 and 4 NFE
