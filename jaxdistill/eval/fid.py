"""FID the way papers report it (Heusel et al. 2017), with the Inception score (Salimans et al. 2016)
and improved precision/recall (Kynkäänniemi et al. 2019) on the same features.

Features are the 2048-D pool3 outputs of the FID Inception network
(:mod:`jaxdistill.models.ports.fid_inception`, weights converted from pytorch-fid's file). The
library's images (``[N, H, W, C]`` in ``[-1, 1]``) are quantised to 8 bits as a saved PNG would be,
``round((x + 1) * 127.5) / 255``, grey images (``C = 1``) are repeated to 3 channels, and the network
resizes them to 299x299. Batches are split over the ``data`` axis of a mesh of all devices.

* FID: ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^{1/2})`` between the Gaussians fitted to real
  and generated features (:func:`jaxdistill.eval.metrics.frechet_distance`, float64, pytorch-fid's
  sqrtm with the ``eps I`` retry); the real side comes from a statistics file (:func:`save_stats`).
* Inception score: ``exp(E_x KL(p(y|x) || p(y)))`` over the 1008-way softmax of the logits, its mean
  and standard deviation over 10 splits of the samples (the usual implementation).
* Precision/recall with k = 3 on the features, when the statistics file keeps real features.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Callable, Iterator, Optional

import jax
import numpy as np

from jaxdistill.core.errors import CheckpointFileError, ConfigError
from jaxdistill.core.paths import PathLike, as_path, write_atomic
from jaxdistill.core.types import PyTree
from jaxdistill.eval import metrics
from jaxdistill.models.ports.fid_inception import NUM_FEATURES, FIDInceptionV3
from jaxdistill.models.ports.fid_inception_checkpoint import HOW_TO_GET, load_inception
from jaxdistill.train.mesh import batch_sharding, make_mesh, replicated
from jaxdistill.train.sampling import generate_samples

INCEPTION_ENV = "JAXDISTILL_INCEPTION"
NUM_SAMPLES = 50_000
BATCH_SIZE = 250
IS_SPLITS = 10
PR_K = 3
STATS_FORMAT = "jaxdistill-fid-stats-1"


def inception_path(path: Optional[str]) -> str:
    """``path``, else ``$JAXDISTILL_INCEPTION``; a ConfigError saying how to get the file if neither is set."""
    path = path or os.environ.get(INCEPTION_ENV)
    if not path:
        raise ConfigError(f"no FID Inception weights given: pass --inception PATH or set {INCEPTION_ENV}; to make the file, {HOW_TO_GET}")
    return path


def inception_input(images: np.ndarray) -> np.ndarray:
    """Library images ``[N, H, W, 1 or 3]`` in ``[-1, 1]`` -> 8-bit levels in ``[0, 1]``, 3 channels."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ConfigError(f"FID needs images [N, H, W, C] with 1 or 3 channels, got samples of shape {list(images.shape[1:])}")
    levels = np.clip(np.round((images + 1.0) * 127.5), 0, 255) / 255.0
    return np.repeat(levels, 3, axis=-1) if images.shape[-1] == 1 else levels


class InceptionFeatures:
    """``features(images) -> (pool3 [N, 2048], logits [N, 1008])`` in fixed-size batches (one
    compile; the last batch is padded), each split over the ``data`` axis of ``mesh``."""

    def __init__(self, params: PyTree, batch_size: int = BATCH_SIZE, mesh: Optional[jax.sharding.Mesh] = None):
        self.mesh = make_mesh() if mesh is None else mesh
        devices = self.mesh.devices.size
        self.batch_size = -(-batch_size // devices) * devices
        self.params = jax.device_put(params, replicated(self.mesh))
        self._sharding = batch_sharding(self.mesh)
        self._apply = jax.jit(FIDInceptionV3().apply, out_shardings=replicated(self.mesh))

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = inception_input(images)
        pool3, logits = [], []
        for start in range(0, len(x), self.batch_size):
            batch = x[start : start + self.batch_size]
            n = len(batch)
            if n < self.batch_size:
                batch = np.concatenate([batch, np.zeros((self.batch_size - n, *batch.shape[1:]), batch.dtype)])
            p, lg = self._apply(self.params, jax.device_put(batch, self._sharding))
            pool3.append(np.asarray(p)[:n])
            logits.append(np.asarray(lg)[:n])
        return np.concatenate(pool3), np.concatenate(logits)


def load_features(path: Optional[str], batch_size: int = BATCH_SIZE) -> tuple[InceptionFeatures, str]:
    """The feature extractor of the weights at ``path`` (or ``$JAXDISTILL_INCEPTION``) and their digest."""
    params, info = load_inception(inception_path(path))
    return InceptionFeatures(params, batch_size), info["params_sha256"]


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the features, float64 (as pytorch-fid)."""
    f = np.asarray(features, np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Mean and std over ``splits`` parts of ``exp(mean_x KL(p(y|x) || p(y)))``, ``p(y)`` the part's mean."""
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, min(splits, len(log_p))):
        log_py = np.log(np.exp(part).mean(axis=0))
        scores.append(np.exp(np.mean(np.sum(np.exp(part) * (part - log_py), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def save_stats(out: PathLike, features: np.ndarray, info: dict, keep_features: bool = False) -> None:
    """Write ``mu``, ``sigma`` (and ``features`` if asked) and ``info`` (JSON) to ``out``, atomically."""
    mu, sigma = gaussian_stats(features)
    arrays = {"format": np.array(STATS_FORMAT), "mu": mu, "sigma": sigma, "info": np.array(json.dumps({**info, "num": len(features)}))}
    if keep_features:
        arrays["features"] = np.asarray(features, np.float32)
    write_atomic(out, lambda f: np.savez(f, **arrays))


def load_stats(path: PathLike, inception_sha256: Optional[str] = None) -> dict:
    """``{"mu", "sigma", "info", "features" (or None)}`` of a statistics file (this library's, or any
    ``.npz`` with pytorch-fid's ``mu`` and ``sigma``); a CheckpointFileError naming ``path`` if it is
    missing, unreadable, not 2048-D, or made with other Inception weights than ``inception_sha256``."""
    how = "write one with 'jaxdistill fid-stats --config CFG --out STATS.npz'"
    if not as_path(path).is_file():
        raise CheckpointFileError(f"no FID statistics file {path!r}: {how}")
    try:
        with as_path(path).open("rb") as f, np.load(f) as data:
            if "mu" not in data.files or "sigma" not in data.files:
                raise CheckpointFileError(f"{path!r} is not an FID statistics file (expected arrays 'mu' and 'sigma'): {how}")
            stats = {"mu": data["mu"].astype(np.float64), "sigma": data["sigma"].astype(np.float64)}
            stats["info"] = json.loads(str(data["info"])) if "info" in data.files else {}
            stats["features"] = data["features"] if "features" in data.files else None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointFileError(f"{path!r} is not a readable FID statistics file (.npz): {type(err).__name__}: {err}") from None
    d = NUM_FEATURES
    if stats["mu"].shape != (d,) or stats["sigma"].shape != (d, d):
        raise CheckpointFileError(
            f"{path!r} holds statistics of other features: mu {list(stats['mu'].shape)}, sigma {list(stats['sigma'].shape)}; "
            f"expected the FID Inception's pool3, [{d}] and [{d}, {d}]"
        )
    made_with = stats["info"].get("inception_sha256")
    if inception_sha256 and made_with and made_with != inception_sha256:
        raise CheckpointFileError(f"{path!r} was computed with other Inception weights (sha256 {made_with[:12]}...) than the ones given ({inception_sha256[:12]}...)")
    return stats


def image_batches(source, num: int, batch_size: int) -> Iterator[np.ndarray]:
    """The first ``num`` records' images of a data source, ``batch_size`` at a time."""
    for start in range(0, num, batch_size):
        yield np.stack([source[i]["x"] for i in range(start, min(start + batch_size, num))])


def features_of(batches: Iterator[np.ndarray], features: InceptionFeatures) -> tuple[np.ndarray, np.ndarray]:
    """``(pool3, logits)`` of every image the iterator yields."""
    pool3, logits = zip(*(features(batch) for batch in batches))
    return np.concatenate(pool3), np.concatenate(logits)


def score(pool3: np.ndarray, logits: np.ndarray, stats: dict) -> dict[str, float]:
    """FID against ``stats``, the Inception score and, if the stats keep real features, precision/recall."""
    mu, sigma = gaussian_stats(pool3)
    is_mean, is_std = inception_score(logits)
    out = {"fid": metrics.frechet_distance(mu, sigma, stats["mu"], stats["sigma"]), "inception_score": is_mean, "inception_score_std": is_std}
    if stats["features"] is not None:
        out["precision"], out["recall"] = metrics.precision_recall(stats["features"], pool3, k=PR_K)
    return out


def evaluate_fid(
    generate: Callable[[int, int], np.ndarray], nfes: list[int], num: int, stats: dict, features: InceptionFeatures, batch_size: int = 1000
) -> dict[int, dict[str, float]]:
    """Scores at each NFE ``num`` samples drawn ``batch_size`` at a time by ``generate(nfe, batch_index)``
    (a batch of images, never more than ``batch_size``; only their features are kept)."""
    results = {}
    for nfe in nfes:
        batches = (generate(nfe, i)[: min(batch_size, num - i * batch_size)] for i in range(-(-num // batch_size)))
        results[nfe] = score(*features_of(batches, features), stats)
    return results


def run_generator(run, batch_size: int, seed: int = 0, mesh: Optional[jax.sharding.Mesh] = None) -> Callable[[int, int], np.ndarray]:
    """``generate(nfe, i)``: the ``i``-th batch of ``batch_size`` samples of a restored run (balanced
    labels for conditional runs), split over the ``data`` axis of ``mesh`` (default: all devices)."""
    objective = run.built.objective
    mesh = make_mesh() if mesh is None else mesh
    trainable, frozen = jax.device_put((run.trainable, run.frozen), replicated(mesh))
    devices = mesh.devices.size
    padded = -(-batch_size // devices) * devices

    def generate(nfe: int, i: int) -> np.ndarray:
        labels = None if objective.num_classes == 0 else ((i * batch_size + np.arange(padded)) % objective.num_classes).astype(np.int32)
        rng = jax.random.fold_in(jax.random.key(seed + 100), i)
        x = generate_samples(objective, trainable, frozen, padded, nfe=nfe, rng=rng, labels=labels, batch_size=padded, sharding=batch_sharding(mesh))
        return x[:batch_size]

    return generate
