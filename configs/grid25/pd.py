"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of
Diffusion Models") on grid25: a DDIM student distilled from the exact 25-mode mixture, halving
64 -> 1 steps in 6 stages (1333 + 5 x 533 updates), the paper's settings otherwise
(jaxdistill/objectives/progressive.py; the paper starts at 1024 steps).

Arguments: none (the benchmark budget) or `smoke` (seconds: 8 -> 1 steps in 3 stages).
Usage: jaxdistill train --config configs/grid25/pd.py[:smoke] --workdir runs/grid25/pd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the stages set the step counts
    # Departure from the paper: the student starts from scratch, not the teacher (the exact mixture has no weights).
    c = grid25.student("pd", arg)
    if is_smoke:  # seconds, not minutes, for the protocol and CLI tests
        c.pd.start_steps = 8
        c.data.size = 4096
    # Stage 0 also learns the denoiser from scratch, so it gets a third of the updates; the later stages share the
    # rest (smoke: equal stages).
    c.pd.first_stage_steps = 0 if is_smoke else c.train.num_steps // 3
    benchmarks.optimiser_per_stage(c)  # each stage restarts the optimiser: decay over the longest stage, warm-up within a tenth
    c.ema_decay = 0.995  # an EMA of ~200 updates forgets a stage's start within the stage
    c.eval.nfes = (1, 2, 4)  # the students of the last three stages
    return c
