"""MeanFlow (Geng et al. 2025) distilling the velocity of the trained digits teacher on the rectified flow
(teacher.workdir, default runs/digits/teacher; its EDM denoiser is re-parameterised onto the flow).

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits/meanflow.py[:smoke] --workdir runs/digits/meanflow
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_meanflow(arg)
