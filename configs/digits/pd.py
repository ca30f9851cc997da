"""Progressive distillation (Salimans & Ho 2022; see jaxdistill/objectives/progressive.py for the
method and its constants) on digits.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits/pd.py[:smoke] --workdir runs/digits/pd
Teacher: the run in runs/digits/teacher (override with --config.teacher.workdir=...).
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_pd(arg)
