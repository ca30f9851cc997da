"""experiments/floor_spread.py: its pair 0 is the results tables' noise floor, the other pairs fresh draws."""
from __future__ import annotations

import importlib.util
import os

import ml_collections
import numpy as np

from jaxdistill.eval.benchmark import Evaluator

_SPEC = importlib.util.spec_from_file_location(
    "floor_spread", os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "floor_spread.py")
)
floor_spread = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(floor_spread)


def test_pair_zero_is_the_evaluators_floor_and_later_pairs_are_new_draws():
    pairs = floor_spread.floor_pairs("grid25", pairs=3, num=400)
    floor = Evaluator(ml_collections.ConfigDict({"name": "grid25"}), num_samples=400).floor
    assert pairs[0] == floor
    sw2 = [p["sw2"] for p in pairs]
    assert len(set(sw2)) == 3 and all(np.isfinite(sw2)) and min(sw2) > 0
