"""MeanFlow (Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative Modeling") on digits: an
average-velocity network on the rectified flow, distilling the velocity of the trained digits UNet teacher
(runs/digits/teacher; its EDM denoiser is re-parameterised onto the flow), trained from scratch as in the paper, with
the paper's settings otherwise (logit-normal times, 25% of samples with r != t, adaptive weighting p = 1).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/meanflow.py[:smoke] --workdir runs/digits/meanflow
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a few-step sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("meanflow", arg)  # the paper's settings; the student starts from scratch, as in the paper
    c.process.name = "rectified_flow"  # the paper's process; the EDM teacher is read as a velocity on it
    c.meanflow.target = "teacher"  # departure (distillation): v is the teacher's velocity, not the conditional eps - x0
    c.eval.nfes = (1, 2, 4)  # steps on a uniform time grid, scored at 1, 2 and 4 NFE
    return c
