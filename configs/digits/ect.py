"""Easy Consistency Tuning (Geng, Pokle, Luo, Lin & Kolter 2024, "Consistency Models Made Easy") on digits: the
trained digits UNet teacher (runs/digits/teacher) tuned into a consistency model, starting from its weights as in the
paper, with the paper's settings (continuous t, sigmoid mapping q = 2, k = 8, b = 1, pseudo-Huber loss).

Arguments: none (the benchmark budget) or `smoke` (seconds, for tests and CI).
Usage: jaxdistill train --config configs/digits/ect.py[:smoke] --workdir runs/digits/ect
Teacher: train configs/digits/teacher.py first (another run: --config.teacher.workdir=...).
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits


def get_config(arg=None):
    benchmarks.parse_arg(arg)  # a multistep sampler, not a K-step generator: no `<K>step` argument
    c = digits.student("ect", arg)  # the paper's settings; the student starts from the teacher's weights
    c.eval.nfes = (1, 2, 4)  # the multistep consistency sampler, scored at 1, 2 and 4 NFE
    return c
