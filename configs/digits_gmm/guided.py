"""Guided distillation (Meng et al. 2023; see jaxdistill/objectives/guided.py for the method, its
constants and the guidance convention: our w = the paper's w + 1) on digits_gmm.

Presets: none (the benchmark budget of BENCHMARKS.md) or `smoke` (seconds, for tests/CI).
Usage: jaxdistill train --config configs/digits_gmm/guided.py[:smoke] --workdir runs/digits_gmm/guided
Sampling guidance: --config.eval.guidance=W (default 2.0, within guided.w_min..w_max).
"""
from jaxdistill import presets


def get_config(arg=None):
    return presets.digits_gmm_guided(arg)
