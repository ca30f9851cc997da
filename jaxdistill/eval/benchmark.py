"""Quality-vs-NFE evaluation of a run against its benchmark's reference.

* data drawn from a Gaussian mixture (``grid25``, ``digits_gmm``, any ``mixture`` data config,
  e.g. a user's ``MixtureSource``): 10,000 exact samples of that mixture as reference;
  sliced W2, MMD, mode coverage, mean exact NLL of generated samples, and for
  conditional runs how well samples keep their label (``metrics.mixture_label_metrics``).
* ``digits``: FD-digits and class accuracy under the project's cached classifier,
  plus sliced W2 / MMD against the real images.
* any other source: sliced W2 and MMD against real samples.
Every report carries the noise floor: the same metrics between two independent
reference sets of the same size (BENCHMARKS.md).
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from jaxdistill.data.sources import make_source, mixture_of
from jaxdistill.eval import metrics
from jaxdistill.eval.digits_classifier import DigitsEvaluator
from jaxdistill.train.sampling import class_labels, generate_samples

NUM_REFERENCE = 10_000


class Evaluator:
    """Scores sample sets for one benchmark; ``reference`` and ``floor`` are fixed per seed."""

    def __init__(self, data_config, num_samples: int = NUM_REFERENCE, seed: int = 0, source=None):
        """Data drawn from a mixture (``mixture_of(data_config)``) are scored against exact samples of
        it; other data against real samples of ``source`` (default: the source ``data_config`` names)."""
        self.name = data_config.name
        self.num_samples = num_samples
        self.mixture = mixture_of(data_config)
        self.digits = None
        if self.mixture is not None:
            self.reference = self._mixture_samples(seed + 1)
            self.floor = self.score(self._mixture_samples(seed + 2))
            return
        source = make_source(data_config) if source is None else source
        real = np.stack([source[i]["x"] for i in range(len(source))])
        if self.name == "digits":
            self.digits = DigitsEvaluator()
        perm = np.random.default_rng(seed).permutation(len(real))
        if len(real) >= 2 * num_samples:
            self.reference = real[perm[:num_samples]]
            self.floor = self.score(real[perm[num_samples : 2 * num_samples]])
        else:
            # Too few real samples for two independent sets of this size: the floor
            # compares two disjoint halves of the data, and the reference is all of it.
            half_a, half_b = real[perm[: len(real) // 2]], real[perm[len(real) // 2 :]]
            self.reference = half_b
            self.floor = self.score(half_a, fd_reference=half_b)
            self.reference = real

    def _mixture_samples(self, seed: int) -> np.ndarray:
        x, _ = self.mixture.sample(jax.random.key(seed), self.num_samples)
        return np.asarray(x)

    def score(
        self, samples: np.ndarray, labels: Optional[np.ndarray] = None, *, fd_reference: Optional[np.ndarray] = None
    ) -> dict[str, float]:
        """All metrics of one sample set (non-finite samples are dropped and counted).

        FD-digits is measured against all real digits, or ``fd_reference`` if given."""
        samples = np.asarray(samples, np.float64)
        flat = samples.reshape(len(samples), -1)
        finite = np.all(np.isfinite(flat), axis=1)
        out: dict[str, float] = {"nonfinite_frac": float(1.0 - finite.mean())}
        samples, flat = samples[finite], flat[finite]
        labels = None if labels is None else np.asarray(labels)[finite]
        ref = self.reference.reshape(len(self.reference), -1)
        out["sw2"] = float(metrics.sliced_wasserstein2(flat, ref))
        out["mmd"] = metrics.mmd_rbf(flat, ref)  # multi-scale: kernels from the modes' scale up
        out["mmd_median"] = metrics.mmd_rbf(flat, ref, metrics.median_bandwidths(flat, ref))  # the median heuristic alone
        if self.mixture is not None:
            assign = np.asarray(self.mixture.assign(samples))
            out["mode_coverage"] = float(metrics.mode_coverage(assign, np.asarray(self.mixture.weights)))
            out["nll"] = float(-np.mean(np.asarray(self.mixture.log_prob(samples))))
            if labels is not None and self.mixture.labels is not None:
                out.update(metrics.mixture_label_metrics(self.mixture, samples, labels, assign))
        if self.digits is not None:
            if fd_reference is None:
                out["fd_digits"] = float(self.digits.fd_digits(samples))
            else:
                feats = self.digits.features
                out["fd_digits"] = float(metrics.frechet_from_features(feats(samples), feats(fd_reference)))
            if labels is not None:
                out["class_acc"] = float(self.digits.accuracy(samples, labels))
        return out


def evaluate_generator(
    evaluator: Evaluator,
    generate: Callable[[int, int], tuple[np.ndarray, Optional[np.ndarray]]],
    nfes: Sequence[int],
) -> dict[int, dict[str, float]]:
    """Scores ``generate(nfe, num) -> (samples, labels)`` at each NFE, with wall time."""
    results = {}
    for nfe in nfes:
        start = time.perf_counter()
        samples, labels = generate(int(nfe), evaluator.num_samples)
        seconds = time.perf_counter() - start
        results[int(nfe)] = {**evaluator.score(samples, labels), "sample_seconds": seconds}
    return results


def evaluate_run(run, nfes: Optional[Sequence[int]] = None, num_samples: Optional[int] = None, seed: int = 0) -> dict:
    """The ``jaxdistill eval`` report of a restored run."""
    objective = run.built.objective
    num = int(num_samples or run.config.eval.num_samples)
    evaluator = Evaluator(run.config.data, num_samples=num, seed=seed, source=run.built.source)
    nfes = list(nfes or objective.eval_nfes)

    def generate(nfe: int, n: int):
        labels = class_labels(objective.num_classes, n)
        x = generate_samples(objective, run.trainable, run.frozen, n, nfe=nfe, rng=jax.random.key(seed + 100), labels=labels)
        return x, labels

    return {
        "method": run.config.method,
        "benchmark": run.config.data.name,
        "step": run.step,
        "num_samples": num,
        "noise_floor": evaluator.floor,
        "by_nfe": {str(k): v for k, v in evaluate_generator(evaluator, generate, nfes).items()},
    }


def format_table(report: dict) -> str:
    """A markdown table of a report's metrics by NFE, with the noise floor last."""
    rows = report["by_nfe"]
    keys = [k for k in next(iter(rows.values())) if k != "sample_seconds"]
    lines = [f"{report['method']} on {report['benchmark']} (step {report['step']}, {report['num_samples']} samples)"]
    lines.append("| NFE | " + " | ".join(keys) + " |")
    lines.append("|---" * (len(keys) + 1) + "|")
    for nfe, vals in rows.items():
        lines.append(f"| {nfe} | " + " | ".join(f"{vals[k]:.4g}" for k in keys) + " |")
    floor = report["noise_floor"]
    lines.append("| floor | " + " | ".join(f"{floor[k]:.4g}" if k in floor else "-" for k in keys) + " |")
    return "\n".join(lines)
