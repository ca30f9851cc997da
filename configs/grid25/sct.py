"""sCT (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models") on grid25: a
TrigFlow consistency model trained on the grid's data, its tangent following the conditional velocity cos(t) z -
sin(t) x0 through the exact jax.jvp, the paper's settings otherwise (jaxdistill/objectives/scm.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/sct.py[:smoke] --workdir runs/grid25/sct
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    # Departure from the paper: the student starts from scratch, not a pretrained diffusion model (the exact mixture has no weights).
    c = grid25.student("sct", arg)
    c.process.name, c.process.sigma_data = "trigflow", c.sigma_data  # the paper's process, sd = the grid's std 2.8
    # Departure (budget): the tangent warm-up spans a quarter of the run, not 10k updates.
    c.scm.tangent_warmup_steps = c.train.num_steps // 4
    c.eval.nfes = (1, 2, 4)  # the paper's 1- and 2-step samplers, and 4 steps
    return c
