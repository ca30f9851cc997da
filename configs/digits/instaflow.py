"""InstaFlow (Liu, Zhang, Ma, Peng & Liu 2024, "InstaFlow: One Step is Enough for High-Quality Diffusion-Based
Text-to-Image Generation") on digits: one run of two stages. The first half of the updates is reflow of the trained
digits UNet teacher (runs/digits/teacher, read as a velocity on the rectified flow) on 8,192 (noise, ODE end point)
couplings (Heun, 17 evaluations), the student starting from the teacher's weights (as configs/digits/reflow.py); then
the 2-rectified flow is frozen and the student's one Euler step regresses its 16-step Euler end point
(jaxdistill/objectives/reflow.py).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/instaflow.py[:smoke] --workdir runs/digits/instaflow
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a one-step generator: no `<K>step` argument
    c = digits.student("instaflow", arg)  # the papers' settings, the student initialised from the teacher
    c.process.name = "rectified_flow"  # the papers' flow; the EDM teacher is read as a velocity on it
    benchmarks.optimiser_per_stage(c)  # the optimiser restarts at the switch: its decay spans a stage, as PD's
    return c  # evaluated at 1 NFE, the distilled generator
