"""ICT (see jaxdistill/objectives/consistency.py for the paper and its constants) on digits.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits/ict.py[:smoke] --workdir runs/digits/ict
Teacher: the run in runs/digits/teacher (override with --config.teacher.workdir=...).
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_consistency("ict", arg)
