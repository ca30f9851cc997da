"""sCD (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models") on digits: a
TrigFlow consistency model distilling the trained digits UNet teacher (runs/digits/teacher; its EDM denoiser read on
TrigFlow) along its PF-ODE velocity, through the exact jax.jvp tangent, with the paper's settings otherwise (tangent
normalisation c = 0.1, adaptive weighting, tau ~ N(-1.0, 1.4^2)).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/scd.py[:smoke] --workdir runs/digits/scd
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a few-step sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("scd", arg)  # the paper's settings; the student starts from the teacher's weights (Alg. 1)
    c.process.name, c.process.sigma_data = "trigflow", c.sigma_data  # the paper's process; sd = the teacher's sigma_data
    # Departure: the teacher is an EDM network, so the student takes EDM's time input log(sd tan t) / 4 (the paper's
    # TrigFlow teachers take t); with it the teacher's weights are exactly a TrigFlow network (paper Sec. 3).
    c.scm.time_input = "edm"
    # Departure (budget): the tangent warm-up spans a quarter of the run, not 10k updates.
    c.scm.tangent_warmup_steps = c.train.num_steps // 4
    c.eval.nfes = (1, 2, 4)  # the paper's 1- and 2-step samplers, and 4 steps
    return c
