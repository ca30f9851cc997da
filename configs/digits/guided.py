"""Guided distillation (Meng, Rombach, Gao, Kingma, Ermon, Ho & Salimans 2023, "On Distillation of Guided Diffusion
Models") on digits: a w-conditioned student learns the trained digits UNet teacher's (runs/digits/teacher)
classifier-free guided model for w in [1, 5] (stage one, 300 updates), then is progressively distilled from 16 DDIM
steps to one in 4 stages of 300 updates; it starts from the teacher's weights as in the paper. Guidance convention
(ours, everywhere in jaxdistill): x_u + w (x_c - x_u), so our w = the paper's w + 1 (jaxdistill/objectives/guided.py).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/guided.py[:smoke] --workdir runs/digits/guided
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
Sampling guidance: --config.eval.guidance=W (within guided.w_min..w_max).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("guided", arg)  # the paper's settings; stage one gets an equal share with each PD stage
    c.guided.start_steps = 8 if is_smoke else 16  # departure (paper: 1024): stage one and 4 halvings fit the budget
    c.eval.nfes = (1, 2, 4)  # the students of the last three stages, scored at their 1, 2 and 4 steps
    c.eval.guidance = 2.0  # sampled at our w = 2 (the paper's w = 1)
    benchmarks.optimiser_per_stage(c)  # each stage restarts the optimiser: decay over the longest stage, warm-up within a tenth
    c.ema_decay = 0.99  # ~100-update horizon: a stage's EMA (the next stage's teacher) forgets the stage's start
    return c
