"""Regenerate the baseline results table (BENCHMARKS.md): the teacher's quality-vs-NFE
curves for every sampler, and the knowledge-distillation student, on grid25,
digits-gmm and digits.

    python experiments/baseline.py [--benchmarks grid25,digits_gmm,digits] [--quick]

Writes ``results/<benchmark>.json``, ``results/<benchmark>.md`` and
``results/<benchmark>.png``. Runs are cached under ``runs/`` (a finished run is reused).
``--quick`` shrinks sample counts and budgets for a check of the script itself; the
published table uses the defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Optional

import jax
import ml_collections
import numpy as np

from jaxdistill import presets
from jaxdistill.build import build, load_run, load_teacher
from jaxdistill.diffusion import samplers
from jaxdistill.eval.benchmark import Evaluator, evaluate_generator
from jaxdistill.eval.plots import save_quality_vs_nfe
from jaxdistill.quickstart import train_or_reuse
from jaxdistill.train.engine import class_labels, generate_samples

SAMPLERS = ("euler", "heun", "ddim", "dpmpp_2m")
TEACHER_NFES = (1, 2, 4, 8, 16, 32, 64)
GUIDANCE = 2.0  # the guidance weight of the guided teacher curve on conditional benchmarks
HEADLINE = {"grid25": "sw2", "digits_gmm": "sw2", "digits": "fd_digits"}


@dataclasses.dataclass
class Benchmark:
    name: str
    teacher_config: Optional[ml_collections.ConfigDict]  # None: the exact mixture teacher
    kd_config: ml_collections.ConfigDict
    conditional: bool


def benchmarks(quick: bool, runs: str) -> dict[str, Benchmark]:
    preset = "smoke" if quick else None
    digits_teacher = presets.digits_teacher(preset)
    digits_kd = presets.digits_kd(preset, teacher_workdir=os.path.join(runs, "digits", "teacher"))
    return {
        "grid25": Benchmark("grid25", None, presets.grid25_kd(preset), False),
        "digits_gmm": Benchmark("digits_gmm", None, presets.digits_gmm_kd(preset), True),
        "digits": Benchmark("digits", digits_teacher, digits_kd, True),
    }


def teacher_generator(denoiser, params, event_shape, num_classes, sampler: str, guidance: Optional[float]):
    """``generate(nfe, n)`` for a teacher denoiser and sampler (balanced labels if conditional)."""

    @jax.jit
    def run(z, cond, rng, nfe_holder):
        return z

    def generate(nfe: int, n: int):
        labels = class_labels(num_classes, n)
        fn = jax.jit(
            lambda p, z, c, r: samplers.sample_nfe(
                lambda x, t: denoiser.x0(p, x, t, c, guidance=guidance if c is not None else None),
                denoiser.process, z, nfe, sampler, rng=r,
            )
        )
        out = []
        for i, start in enumerate(range(0, n, 2048)):
            m = min(2048, n - start)
            key = jax.random.key(1000 + i)
            z = denoiser.process.prior_sample(jax.random.fold_in(key, 0), (m, *event_shape))
            c = None if labels is None else jax.numpy.asarray(labels[start : start + m])
            out.append(np.asarray(fn(params, z, c, jax.random.fold_in(key, 1))))
        return np.concatenate(out), labels

    return generate
