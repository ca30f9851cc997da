"""InstaFlow (Liu, Zhang, Ma, Peng & Liu 2024, "InstaFlow: One Step is Enough for High-Quality Diffusion-Based
Text-to-Image Generation") on digits_gmm: one run of two stages. The first half of the updates is reflow with the improved
recipe on 16,384 (noise, exact class-conditional 64-D digits mixture ODE end point) couplings (Heun, 31 evaluations; as configs/digits_gmm/reflow.py);
then the 2-rectified flow is frozen and the student's one Euler step regresses its 16-step Euler end point
(jaxdistill/objectives/reflow.py).

Arguments: none (the benchmark budget) or `smoke` (seconds).
Usage: jaxdistill train --config configs/digits_gmm/instaflow.py[:smoke] --workdir runs/digits_gmm/instaflow
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # `smoke` or nothing: a one-step generator, no `<K>step`
    c = digits_gmm.student("instaflow", arg)  # departure: from scratch, as the exact mixture has no weights to start from
    c.process.name = "rectified_flow"  # the papers' flow, x_t = (1 - t) x + t z
    benchmarks.optimiser_per_stage(c)  # the optimiser restarts at the switch: its decay spans a stage, as PD's
    return c  # evaluated at 1 NFE, the distilled generator
