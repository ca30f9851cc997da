"""sCD (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models") on grid25: a
TrigFlow consistency model distilling the exact 25-mode mixture's PF-ODE velocity through the exact tangent
(jax.jvp), the paper's settings otherwise (jaxdistill/objectives/scm.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/grid25/scd.py[:smoke] --workdir runs/grid25/scd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    # Departure from the paper: the student starts from scratch, not the teacher (the exact mixture has no weights).
    c = grid25.student("scd", arg)
    c.process.name, c.process.sigma_data = "trigflow", c.sigma_data  # the paper's process, sd = the grid's std 2.8
    # Departure (budget): the tangent warm-up spans a quarter of the run, not 10k updates.
    c.scm.tangent_warmup_steps = c.train.num_steps // 4
    c.eval.nfes = (1, 2, 4)  # the paper's 1- and 2-step samplers, and 4 steps
    return c
