"""Per-mode sample counts of a trained run on a mixture benchmark: which modes a student drops.

Draws ``--num`` samples at ``--nfe`` from the run in ``--workdir`` (balanced labels on
conditional benchmarks), assigns each to its mixture component (the assignment behind the
``mode_coverage`` metric) and prints every component's count against its expected count,
marking the components under the coverage threshold with ``*``. grid25's counts are laid out as
its 5 x 5 grid (top row: largest y). This is how the grid25 students were read: a LADD student
with discriminator noise N(0, 1) left three corners with 16 samples of 400 expected
(the grid25 LADD config now sets ``adversarial.noise_mean = -1``), and a SIM student emptied the centre mode (0 of 400).

On a labelled mixture (digits_gmm) it also prints the label metrics
(``metrics.mixture_label_metrics``) beside those of exact samples: ``class_match`` (the
likelihood-assigned component's label), the nearest component mean's label, and the mean squared
Mahalanobis distance to the label's component per dimension (1 for exact samples). A class match
far below the nearest-mean match, with a distance above 1, says the samples keep their labels but
leave their component's thin directions: a narrow component then loses its samples to the
broadest ones (digits_gmm's 1 and 5).

Usage: python experiments/mode_counts.py --workdir runs/grid25/ladd [--nfe 1] [--num 10000]
       python experiments/mode_counts.py --exact digits_gmm --noise 0.2   # exact samples + noise
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from jaxdistill.build import load_run
from jaxdistill.data.sources import mixture_of
from jaxdistill.eval import metrics
from jaxdistill.models.gaussian_mixture import MIXTURES
from jaxdistill.train.sampling import class_labels, generate_samples


def mode_counts(samples, mixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, expected count, under the coverage threshold) per component of ``mixture``."""
    counts, expected = metrics.component_counts(np.asarray(mixture.assign(samples)), mixture.weights)
    return counts, expected, counts < metrics.MODE_COVERAGE_THRESHOLD * expected


def grid_rows(means: np.ndarray, side: int = 5) -> np.ndarray:
    """Component indices of a side x side grid mixture as rows, top row (largest y) first, each left to right."""
    means = np.asarray(means)
    return np.lexsort((means[:, 0], -means[:, 1])).reshape(side, side)


def run_samples(workdir: str, nfe: int, num: int):
    """(mixture name, mixture, samples, labels or None, title) of a trained run at ``nfe``."""
    run = load_run(workdir)
    name, mixture = run.config.data.name, mixture_of(run.config.data)
    if mixture is None:
        raise SystemExit(f"{workdir} trains on {name!r}; per-mode counts need data drawn from a Gaussian mixture")
    objective = run.built.objective
    labels = class_labels(objective.num_classes, num)
    x = generate_samples(objective, run.trainable, run.frozen, num, nfe=nfe, rng=jax.random.key(100), labels=labels)
    return name, mixture, x, labels, f"{workdir} (step {run.step}), NFE {nfe}"


def exact_samples(name: str, noise: float, num: int):
    """(mixture name, mixture, samples, labels or None, title): exact samples of mixture ``name``
    (balanced labels when it has them) plus isotropic Gaussian noise of std ``noise``."""
    if name not in MIXTURES:
        raise SystemExit(f"unknown mixture {name!r}; choose from {tuple(MIXTURES)}")
    mixture = MIXTURES[name]()
    labels = class_labels(0 if mixture.labels is None else len(np.unique(mixture.labels)), num)
    x, _ = mixture.sample(jax.random.key(100), num, labels)
    x = np.asarray(x) + noise * np.random.default_rng(0).normal(size=np.shape(x))
    return name, mixture, x, labels, f"exact {name} samples + noise std {noise:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a trained run on a mixture benchmark")
    source.add_argument("--exact", help="instead of a run: exact samples of this mixture (plus --noise)")
    parser.add_argument("--noise", type=float, default=0.0, help="with --exact: std of isotropic noise added to the samples")
    parser.add_argument("--nfe", type=int, default=1)
    parser.add_argument("--num", type=int, default=10_000)
    args = parser.parse_args()
    if args.workdir and args.noise:
        parser.error("--noise adds noise to --exact samples; a run's samples are read as they are")

    if args.workdir:
        name, mixture, x, labels, title = run_samples(args.workdir, args.nfe, args.num)
    else:
        name, mixture, x, labels, title = exact_samples(args.exact, args.noise, args.num)
    counts, expected, under = mode_counts(x, mixture)
    cells = [f"{c}{'*' if u else ''}" for c, u in zip(counts, under)]
    print(f"{title}: mode coverage {1 - under.mean():.3g}; * = under {metrics.MODE_COVERAGE_THRESHOLD:g} x the expected count")
    if name == "grid25":
        print(f"expected {expected[0]:.0f} per mode")
        for row in grid_rows(mixture.means):
            print(" ".join(f"{cells[k]:>6}" for k in row))
        return
    if mixture.labels is not None and labels is not None:
        checks = metrics.mixture_label_metrics(mixture, x, labels)
        exact, _ = mixture.sample(jax.random.key(101), args.num, labels)
        reference = metrics.mixture_label_metrics(mixture, exact, labels)
        print("class match by likelihood {class_match:.3f}, by nearest mean {nearest_mean_match:.3f}; "
              "Mahalanobis distance^2 / d {mahalanobis:.3g}".format(**checks)
              + " (exact samples: {class_match:.3f}, {nearest_mean_match:.3f}, {mahalanobis:.3g})".format(**reference))
    component_labels = mixture.labels if mixture.labels is not None else [None] * len(counts)
    log_dets = np.log(np.asarray(mixture.eigvals, np.float64)).sum(axis=1)
    for k, (cell, want, label) in enumerate(zip(cells, expected, component_labels)):
        print(f"component {k:3d}" + ("" if label is None else f" (class {int(label)})")
              + f": {cell:>7} of {want:.0f} expected; log det covariance {log_dets[k]:.0f}")


if __name__ == "__main__":
    main()
