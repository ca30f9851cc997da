"""Knowledge distillation (Luhman & Luhman 2021, "Knowledge Distillation in Iterative Generative Models for
Improved Sampling Speed") on digits: a one-step UNet regresses the trained digits UNet teacher's (runs/digits/teacher)
deterministic map from noise to sample, on a fixed set of teacher ODE pairs (Heun, 17 evaluations).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/kd.py[:smoke] --workdir runs/digits/kd
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a one-step student: no `<K>step` argument
    return digits.student("kd", arg)  # the paper's setup; its pair set is the benchmark's teacher ODE sample set
