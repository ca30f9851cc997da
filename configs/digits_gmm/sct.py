"""sCT (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models") on digits_gmm: a
class-conditional TrigFlow consistency model trained on 50,000 samples of the exact class-conditional 64-D digits
mixture (the tangent from the conditional velocity of (x0, z)), through the exact jax.jvp tangent, the paper's
settings otherwise (jaxdistill/objectives/scm.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/sct.py[:smoke] --workdir runs/digits_gmm/sct
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: no `<K>step`, the sampler takes any NFE
    # Departure from the paper: the student starts from scratch (the exact mixture has no weights).
    c = digits_gmm.student("sct", arg)
    c.process.name, c.process.sigma_data = "trigflow", c.sigma_data  # the paper's process, sd = the run's sigma_data
    # Departure (budget): the tangent warm-up spans a quarter of the run, not 10k updates.
    c.scm.tangent_warmup_steps = c.train.num_steps // 4
    c.eval.nfes = (1, 2, 4)  # the paper's 1- and 2-step samplers, and 4 steps
    return c
