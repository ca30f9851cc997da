"""Sample-quality metrics on arrays ``[N, *event]`` (event dims are flattened).

All pairwise computations are chunked over rows, so 10,000 x 10,000 problems
never materialise a full distance matrix.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

_CHUNK = 1024


def _flat(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x.reshape(x.shape[0], -1)


def random_directions(dim: int, num_projections: int, seed: int = 0) -> np.ndarray:
    """Unit directions ``[dim, num_projections]`` drawn uniformly on the sphere (normalised Gaussians)."""
    theta = np.random.default_rng(seed).standard_normal((dim, num_projections))
    return theta / np.linalg.norm(theta, axis=0, keepdims=True)


def _w2_squared_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column squared 1-D W2 between empirical measures given column-sorted samples.

    ``W2^2 = int_0^1 (F_a^{-1}(u) - F_b^{-1}(u))^2 du``; both quantile functions are
    step functions, so the integral is exact on the merged breakpoints
    ``{i/n} U {j/m}`` (equal sizes reduce to ``mean((a_(i) - b_(i))^2)``).
    """
    n, m = a.shape[0], b.shape[0]
    if n == m:
        return np.mean((a - b) ** 2, axis=0)
    levels = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    widths = np.diff(levels, prepend=0.0)
    mid = levels - widths / 2
    ia = np.minimum((mid * n).astype(np.int64), n - 1)
    ib = np.minimum((mid * m).astype(np.int64), m - 1)
    return np.sum(widths[:, None] * (a[ia] - b[ib]) ** 2, axis=0)


def sliced_wasserstein2(x, y, num_projections: int = 512, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015).

    ``SW2 = sqrt(E_theta[W2^2(theta^T x, theta^T y)])`` estimated with
    ``num_projections`` directions from :func:`random_directions`; 1-D data uses
    the single direction ``+1`` (exact W2). Sample sizes may differ.
    """
    x, y = _flat(x), _flat(y)
    dim = x.shape[1]
    theta = np.ones((1, 1)) if dim == 1 else random_directions(dim, num_projections, seed)
    w2 = []
    for start in range(0, theta.shape[1], 128):
        th = theta[:, start : start + 128].astype(np.float64)
        px, py = np.sort(x @ th, axis=0), np.sort(y @ th, axis=0)
        w2.append(_w2_squared_sorted(px, py))
    return float(np.sqrt(np.mean(np.concatenate(w2))))


@jax.jit
def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
    d = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(d, 0.0)


@jax.jit
def _rbf_sums(a: jax.Array, b: jax.Array, bandwidths: jax.Array) -> jax.Array:
    """``[sum_ij exp(-|a_i - b_j|^2 / (2 s^2)) for s in bandwidths]``."""
    d = _sq_dists(a, b)
    return jnp.stack([jnp.sum(jnp.exp(-d / (2.0 * bandwidths[i] ** 2))) for i in range(bandwidths.shape[0])])


def _kernel_totals(a: np.ndarray, b: np.ndarray, bandwidths: jax.Array) -> np.ndarray:
    return sum(np.asarray(_rbf_sums(a[i : i + _CHUNK], b, bandwidths), np.float64) for i in range(0, a.shape[0], _CHUNK))


def _pooled_subsample(x: np.ndarray, y: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    z = np.concatenate([_flat(x), _flat(y)])
    if z.shape[0] > max_points:
        z = z[np.random.default_rng(seed).choice(z.shape[0], max_points, replace=False)]
    return z


def median_bandwidth(x, y, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of the pooled sample (random subsample of ``max_points``)."""
    z = _pooled_subsample(x, y, max_points, seed)
    d = np.sqrt(np.asarray(_sq_dists(z, z)))
    return float(np.median(d[np.triu_indices(z.shape[0], k=1)]))


def median_bandwidths(x, y) -> list[float]:
    """The median heuristic's three bandwidths, ``{0.5, 1, 2} x`` :func:`median_bandwidth`."""
    med = max(median_bandwidth(x, y), 1e-12)
    return [0.5 * med, med, 2.0 * med]


def multiscale_bandwidths(x, y, k: int = 5, max_points: int = 1000, seed: int = 0) -> list[float]:
    """Bandwidths from the data's local scale up to its global one, a factor 2 apart.

    The smallest is the median distance to the ``k``-th nearest neighbour in a pooled
    subsample (the scale inside a mode), the largest twice the median pairwise distance (the
    scale between modes): ``2 med / 2^j`` for ``j = 0, 1, ...`` down to the local scale. A kernel
    at the median distance alone is blind to error inside a mode; the small ones see it.
    """
    z = _pooled_subsample(x, y, max_points, seed)
    d = np.sqrt(np.asarray(_sq_dists(z, z)))
    far = 2.0 * max(float(np.median(d[np.triu_indices(z.shape[0], k=1)])), 1e-12)
    near = min(max(float(np.median(np.partition(d, k, axis=1)[:, k])), far * 2.0**-20), far)
    return [far * 2.0**-j for j in range(int(np.floor(np.log2(far / near))) + 1)]


def mmd_rbf_per_bandwidth(x, y, bandwidths: Sequence[float], unbiased: bool = True) -> np.ndarray:
    """Squared MMD (Gretton et al. 2012) of each Gaussian kernel ``exp(-|a - b|^2 / (2 s^2))``,
    one per bandwidth ``s``, from one pass over the pairs.

    ``unbiased=True`` is the U-statistic (diagonals of ``Kxx``/``Kyy`` excluded, may be slightly
    negative); ``unbiased=False`` is the V-statistic ``mean(Kxx) + mean(Kyy) - 2 mean(Kxy) >= 0``,
    exactly 0 for identical sets."""
    x, y = _flat(x), _flat(y)
    bw = jnp.asarray(bandwidths, jnp.float32)
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _kernel_totals(x, x, bw), _kernel_totals(y, y, bw), _kernel_totals(x, y, bw)
    if unbiased:  # k(a, a) = 1, so each diagonal sums to n
        return (kxx - n) / (n * (n - 1)) + (kyy - m) / (m * (m - 1)) - 2.0 * kxy / (n * m)
    return kxx / n**2 + kyy / m**2 - 2.0 * kxy / (n * m)


def mmd_rbf(x, y, bandwidths: Optional[Sequence[float]] = None, unbiased: bool = True) -> float:
    """Squared MMD with the kernel ``k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))`` (the sum of
    :func:`mmd_rbf_per_bandwidth`). Default bandwidths: :func:`multiscale_bandwidths`."""
    if bandwidths is None:
        bandwidths = multiscale_bandwidths(x, y)
    return float(np.sum(mmd_rbf_per_bandwidth(x, y, bandwidths, unbiased)))


def assignment_counts(assignments, num_components: int) -> np.ndarray:
    """Number of samples assigned to each of ``num_components`` components."""
    return np.bincount(np.asarray(assignments, np.int64).reshape(-1), minlength=num_components)[:num_components]


MODE_COVERAGE_THRESHOLD = 0.2  # a component counts as covered with at least this share of its expected count


def component_counts(assignments, weights) -> tuple[np.ndarray, np.ndarray]:
    """(count, expected count N * w_k) per component, weights renormalised."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    return assignment_counts(assignments, w.shape[0]), np.asarray(assignments).size * w


def mode_shares(assignments, weights) -> np.ndarray:
    """Count / expected count ``N * w_k`` per component (1 for a component sampled at its weight)."""
    counts, expected = component_counts(assignments, weights)
    return counts / expected


def mode_coverage(assignments, weights, threshold: float = MODE_COVERAGE_THRESHOLD) -> float:
    """Share of components ``k`` whose count is ``>= threshold * N * w_k`` (weights renormalised)."""
    return float(np.mean(mode_shares(assignments, weights) >= threshold))


@jax.jit
def _inside_any(a: jax.Array, centres: jax.Array, radii_sq: jax.Array) -> jax.Array:
    return jnp.any(_sq_dists(a, centres) <= radii_sq[None, :], axis=1)


def _knn_radii_sq(z: np.ndarray, k: int) -> np.ndarray:
    """Squared distance to the k-th nearest other point (index k: index 0 is the point itself)."""
    radii = [np.partition(np.asarray(_sq_dists(z[i : i + _CHUNK], z)), k, axis=1)[:, k] for i in range(0, z.shape[0], _CHUNK)]
    return np.concatenate(radii)


def _coverage(points: np.ndarray, centres: np.ndarray, radii_sq: np.ndarray) -> float:
    inside = [np.asarray(_inside_any(points[i : i + _CHUNK], centres, radii_sq)) for i in range(0, points.shape[0], _CHUNK)]
    return float(np.mean(np.concatenate(inside)))


def precision_recall(real, fake, k: int = 5) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the
    distance to the k-th nearest other point. Precision = share of fakes inside
    the real manifold; recall = share of reals inside the fake manifold.
    """
    real, fake = _flat(real), _flat(fake)
    precision = _coverage(fake, real, _knn_radii_sq(real, k))
    recall = _coverage(real, fake, _knn_radii_sq(fake, k))
    return precision, recall


def frechet_distance(mu1, cov1, mu2, cov2, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2})`` (Dowson & Landau 1982; FID, Heusel et al. 2017).

    If ``sqrtm`` warns (singular product) or is not finite, ``eps * I`` is added
    to both covariances; the real part of the matrix square root is used.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            covmean = scipy.linalg.sqrtm(cov1 @ cov2)
        except scipy.linalg.LinAlgWarning:
            covmean = None
    if covmean is None or not np.all(np.isfinite(covmean)):
        offset = eps * np.eye(cov1.shape[0])
        covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def frechet_from_features(f1, f2) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets."""
    f1, f2 = _flat(f1).astype(np.float64), _flat(f2).astype(np.float64)
    return frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def class_accuracy(pred_labels, labels) -> float:
    """Share of predictions equal to the labels."""
    return float(np.mean(np.asarray(pred_labels).reshape(-1) == np.asarray(labels).reshape(-1)))


def mixture_label_metrics(mixture, samples, labels, assignments=None) -> dict[str, float]:
    """How well samples drawn at ``labels`` keep their class under a labelled Gaussian mixture:

    * ``class_match``: the most likely component's label is theirs;
    * ``nearest_mean_match``: the nearest component mean's label is theirs;
    * ``mahalanobis``: mean over samples of ``min_k (x - mu_k)^T Sigma_k^-1 (x - mu_k) / D`` over
      the components k of their label (1 for exact samples, a chi-square mean; 0 at the means).

    ``class_match`` alone misreads blurred samples: one that misses its component's thin
    directions is most likely under the broadest component, whatever its class. The nearest-mean
    match reads the label regardless; the Mahalanobis ratio measures how far off the component
    the samples lie. ``assignments`` (``mixture.assign(samples)``) is computed unless given."""
    labels = np.asarray(labels).reshape(-1)
    component_labels = np.asarray(mixture.labels)
    if assignments is None:
        assignments = mixture.assign(samples)
    distance = np.asarray(mixture.mahalanobis_sq(samples), np.float64) / mixture.dim  # [B, K]
    own = np.where(component_labels[None] == labels[:, None], distance, np.inf)
    return {
        "class_match": class_accuracy(component_labels[np.asarray(assignments)], labels),
        "nearest_mean_match": class_accuracy(component_labels[np.asarray(mixture.nearest_mean(samples))], labels),
        "mahalanobis": float(np.mean(own.min(axis=1))),
    }
