"""Knowledge distillation of the trained digits teacher (teacher.workdir, default runs/digits/teacher).

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits/kd.py[:smoke] --workdir runs/digits/kd
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_kd(arg)
