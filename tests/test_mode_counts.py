"""experiments/mode_counts.py: per-mode counts flag exactly the components a sample set misses."""
from __future__ import annotations

import importlib.util
import os

import jax
import numpy as np

from jaxdistill.eval import metrics
from jaxdistill.models import gaussian_mixture as gm

_SPEC = importlib.util.spec_from_file_location(
    "mode_counts", os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "mode_counts.py")
)
mode_counts = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(mode_counts)


def test_counts_flag_the_dropped_and_thinned_modes_and_agree_with_mode_coverage():
    grid = gm.grid25(0.1)
    x, _ = grid.sample(jax.random.key(0), 20_000)
    x = np.asarray(x)
    assign = np.asarray(grid.assign(x))
    dropped, thinned = 0, 7
    keep = (assign != dropped) & ((assign != thinned) | (np.arange(len(x)) % 10 == 0))  # 7 keeps a tenth
    counts, expected, under = mode_counts.mode_counts(x[keep], grid)
    assert counts[dropped] == 0 and counts.sum() == keep.sum()
    np.testing.assert_allclose(expected, keep.sum() / 25)
    assert set(np.flatnonzero(under)) == {dropped, thinned}
    assert 1 - under.mean() == metrics.mode_coverage(grid.assign(x[keep]), grid.weights) == 23 / 25


def test_grid_rows_read_the_grid_top_row_first_left_to_right():
    rows = mode_counts.grid_rows(gm.grid25(0.1).means)
    means = np.asarray(gm.grid25(0.1).means)[rows]  # [5, 5, 2]
    assert np.all(np.diff(means[:, 0, 1]) < 0)  # y falls down the rows
    assert np.all(np.diff(means[..., 0], axis=1) > 0)  # x grows along each row

