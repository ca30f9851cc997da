"""Guided distillation (Meng, Rombach, Gao, Kingma, Ermon, Ho & Salimans 2023, "On Distillation of
Guided Diffusion Models") on digits_gmm: a w-conditioned class-conditional student learns the
classifier-free-guided exact class-conditional 64-D digits mixture (stage one, 1333 updates), then
is progressively distilled 32 -> 1 steps in 5 stages of 533 updates, the paper's settings otherwise
(jaxdistill/objectives/guided.py; the paper starts at 1024 steps). Guidance is our convention,
x_u + w (x_c - x_u): our w = the paper's w + 1.

Arguments: none (the benchmark budget) or `smoke` (seconds: stage one, then 8 -> 1 steps in 3 stages).
Usage: jaxdistill train --config configs/digits_gmm/guided.py[:smoke] --workdir runs/digits_gmm/guided
Sampling guidance: --config.eval.guidance=W (default 2.0, within guided.w_min..w_max).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the stages set the step counts
    # Departure from the paper: the student starts from scratch, not the teacher (the exact mixture has no weights).
    c = digits_gmm.student("guided", arg)
    if is_smoke:  # seconds, not minutes, for the protocol and CLI tests
        c.guided.start_steps = 8
        c.data.size = 4096
        c.network.width = 128
    else:
        # 32 -> 1 steps: stage one and 5 PD stages make the 6 phases of PD's 64 -> 1 (pd.py) in the same budget.
        c.guided.start_steps = 32
        # Stage one also learns the denoiser from scratch, so it gets a third of the updates; the PD stages share the rest.
        c.guided.stage_one_steps = c.train.num_steps // 3
    benchmarks.optimiser_per_stage(c)  # each stage restarts the optimiser: decay over the longest stage, warm-up within a tenth
    c.ema_decay = 0.995  # an EMA of ~200 updates forgets a stage's start within the stage
    c.eval.guidance = 2.0  # sampled at our w = 2, the paper's w = 1
    c.eval.nfes = (1, 2, 4)  # the students of the last three stages
    return c
