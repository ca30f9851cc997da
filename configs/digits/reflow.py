"""Reflow (Liu, Gong & Liu 2023, "Flow Straight and Fast") with the improved recipe of Lee, Lin & Fanti (2024,
"Improving the Training of Rectified Flows") on digits: the trained digits UNet teacher (runs/digits/teacher; its EDM
denoiser read as a velocity on the rectified flow) gives 8,192 (noise, ODE end point) couplings (Heun, 17
evaluations); the student starts from the teacher's weights in the teacher's parameterisation (so it starts as the
teacher's flow, the paper's initialisation) and is fitted to the straight interpolations with U-shaped times and the
pseudo-Huber distance (jaxdistill/objectives/reflow.py).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/reflow.py[:smoke] --workdir runs/digits/reflow
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a flow sampled with any number of Euler steps: no `<K>step` argument
    c = digits.student("reflow", arg)  # the paper's recipe, the student initialised from the teacher
    c.process.name = "rectified_flow"  # the papers' flow; the EDM teacher is read as a velocity on it
    c.eval.nfes = (1, 2, 4)  # Euler steps of the 2-rectified flow
    return c
