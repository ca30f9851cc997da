"""A cheap quality probe of a training run's samples against its exact mixture, so a run that
drops modes shows it while it trains (logged with each sample plot, ``Trainer(probe=...)``)."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxdistill.eval import metrics
from jaxdistill.models.gaussian_mixture import GaussianMixture

PROBE_REFERENCE_SAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class MixtureProbe:
    """Scores samples of a model of ``mixture``: ``modes_kept`` (components holding at least
    ``MODE_COVERAGE_THRESHOLD`` of their expected share), ``min_mode_share`` (the smallest count /
    expected count), ``nll`` under the mixture, and sliced W2 against exact samples."""

    mixture: GaussianMixture
    reference: np.ndarray

    @classmethod
    def of(cls, mixture: GaussianMixture, num_reference: int = PROBE_REFERENCE_SAMPLES, seed: int = 0) -> "MixtureProbe":
        return cls(mixture, np.asarray(mixture.sample(jax.random.key(seed), num_reference)[0]))

    def __call__(self, samples: np.ndarray) -> dict[str, float]:
        samples = np.asarray(samples, np.float32)
        finite = np.all(np.isfinite(samples.reshape(len(samples), -1)), axis=1)
        samples = samples[finite]
        if len(samples) == 0:
            return {"modes_kept": 0.0, "min_mode_share": 0.0, "nonfinite_frac": 1.0}
        share = metrics.mode_shares(np.asarray(self.mixture.assign(samples)), self.mixture.weights)
        return {
            "modes_kept": float(np.sum(share >= metrics.MODE_COVERAGE_THRESHOLD)),
            "min_mode_share": float(share.min()),
            "nll": float(-np.mean(np.asarray(self.mixture.log_prob(samples)))),
            "sw2": metrics.sliced_wasserstein2(samples, self.reference, num_projections=128),
            "nonfinite_frac": float(1.0 - finite.mean()),
        }

    def summary(self, scores: dict[str, float]) -> str:
        """One line for the progress bar: ``modes 25/25 (smallest share 0.71), sw2 0.31``."""
        line = f"modes {scores['modes_kept']:.0f}/{self.mixture.num_components}"
        if "sw2" in scores:
            line += f" (smallest share {scores['min_mode_share']:.2f}), sw2 {scores['sw2']:.3g}"
        return line
