"""experiments/generator_steps.py: the per-step report of a few-step generator."""
from __future__ import annotations

import importlib.util
import os

import jax
import numpy as np

from jaxdistill.build import build
from jaxdistill.config import load
from jaxdistill.eval.benchmark import Evaluator

_SPEC = importlib.util.spec_from_file_location(
    "generator_steps", os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "generator_steps.py")
)
generator_steps = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generator_steps)
CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def test_report_follows_the_generator_times_and_the_exact_teacher_denoises_the_renoised_data():
    config = load(os.path.join(CONFIGS, "digits_gmm", "dmd.py:smoke,2step"))
    built = build(config)
    objective = built.objective
    trainable = objective.init(jax.random.key(0), jax.tree.map(np.asarray, next(built.data_factory(0))), built.frozen)
    data, labels = generator_steps.data_with_labels(config.data, 500)
    assert data.shape == (500, 8, 8, 1) and set(np.unique(labels)) == set(range(10))
    rows = generator_steps.step_report(objective, trainable, built.frozen, Evaluator(config.data, num_samples=500), data, labels, 500)
    sigmas = [float(objective.process.sigma_ratio(t)) for t in objective.generator_times()]
    assert [r["step"] for r in rows] == [0, 1] and np.allclose([r["sigma"] for r in rows], sigmas) and sigmas[0] > sigmas[1]
    for row in rows:
        # the exact posterior mean keeps every label and pulls the noised data onto its components
        assert row["teacher x0"]["class_match"] == 1.0
        assert row["teacher x0"]["mahalanobis"] < 1.0 < row["data@t_i"]["mahalanobis"]
    table = generator_steps.format_rows(rows)
    assert table.count("\n") == 2 + 4 * len(rows) - 1 and "| 1 | 2.52 | G(data@t_i) |" in table
