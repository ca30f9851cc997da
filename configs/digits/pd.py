"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models") on
digits: the trained digits UNet teacher's (runs/digits/teacher) 32-step DDIM sampler halved to one step in 5 stages
of 300 updates, each student starting from its teacher's weights as in the paper (stage 0 from the digits teacher).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/pd.py[:smoke] --workdir runs/digits/pd
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("pd", arg)  # the paper's settings; equal stages, the first student starts from the teacher
    c.pd.start_steps = 8 if is_smoke else 32  # departure (paper: 1024): 5 halvings fit the budget (smoke: 3)
    c.eval.nfes = (1, 2, 4)  # the students of the last three stages, scored at their 1, 2 and 4 steps
    benchmarks.optimiser_per_stage(c)  # each stage restarts the optimiser: decay over the longest stage, warm-up within a tenth
    c.ema_decay = 0.99  # ~100-update horizon: a stage's EMA (the next stage's teacher) forgets the stage's start
    return c
