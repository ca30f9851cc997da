"""Per-mode sample counts of a trained run on a mixture benchmark: which modes a student drops.

Draws ``--num`` samples at ``--nfe`` from the run in ``--workdir`` (balanced labels on
conditional benchmarks), assigns each to its mixture component (the assignment behind the
``mode_coverage`` metric) and prints every component's count against its expected count,
marking the components under the coverage threshold with ``*``. grid25's counts are laid out as
its 5 x 5 grid (top row: largest y). This is how the grid25 students were read: a LADD student
with discriminator noise N(0, 1) left three corners with 16 samples of 400 expected
(``presets.FROM_SCRATCH_LADD_NOISE_MEAN``), and a SIM student emptied the centre mode (0 of 400).

Usage: python experiments/mode_counts.py --workdir runs/grid25/ladd [--nfe 1] [--num 10000]
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from jaxdistill.build import MIXTURES, load_run
from jaxdistill.eval import metrics
from jaxdistill.train.engine import class_labels, generate_samples


def mode_counts(samples, mixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, expected count, under the coverage threshold) per component of ``mixture``."""
    counts, expected = metrics.component_counts(np.asarray(mixture.assign(samples)), mixture.weights)
    return counts, expected, counts < metrics.MODE_COVERAGE_THRESHOLD * expected


def grid_rows(means: np.ndarray, side: int = 5) -> np.ndarray:
    """Component indices of a side x side grid mixture as rows, top row (largest y) first, each left to right."""
    means = np.asarray(means)
    return np.lexsort((means[:, 0], -means[:, 1])).reshape(side, side)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--nfe", type=int, default=1)
    parser.add_argument("--num", type=int, default=10_000)
    args = parser.parse_args()

    run = load_run(args.workdir)
    name = run.config.data.name
    if name not in MIXTURES:
        raise SystemExit(f"{args.workdir} trains on {name!r}; per-mode counts need a mixture benchmark {tuple(MIXTURES)}")
    mixture, objective = MIXTURES[name](), run.built.objective
    labels = class_labels(objective.num_classes, args.num)
    x = generate_samples(objective, run.trainable, run.frozen, args.num, nfe=args.nfe, rng=jax.random.key(100), labels=labels)
    counts, expected, under = mode_counts(x, mixture)
    cells = [f"{c}{'*' if u else ''}" for c, u in zip(counts, under)]
    print(f"{args.workdir} (step {run.step}), NFE {args.nfe}: mode coverage {1 - under.mean():.3g}; "
          f"* = under {metrics.MODE_COVERAGE_THRESHOLD:g} x the expected count")
    if name == "grid25":
        print(f"expected {expected[0]:.0f} per mode")
        for row in grid_rows(mixture.means):
            print(" ".join(f"{cells[k]:>6}" for k in row))
        return
    component_labels = mixture.labels if mixture.labels is not None else [None] * len(counts)
    for k, (cell, want, label) in enumerate(zip(cells, expected, component_labels)):
        print(f"component {k:3d}" + ("" if label is None else f" (class {int(label)})") + f": {cell:>7} of {want:.0f} expected")


if __name__ == "__main__":
    main()
