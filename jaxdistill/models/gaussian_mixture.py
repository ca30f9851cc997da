"""Exact Gaussian-mixture teacher with a closed-form denoiser.

For data ``x0 ~ sum_k w_k N(mu_k, Sigma_k)`` and the noise process
``x_t = alpha x0 + sigma eps`` (``eps ~ N(0, I)``) everything is Gaussian per component:

* marginal:   ``p_t(x_t) = sum_k w_k N(x_t; alpha mu_k, C_k)``, ``C_k = alpha^2 Sigma_k + sigma^2 I``;
* posterior:  ``E[x0 | x_t] = sum_k r_k(x_t) [mu_k + alpha Sigma_k C_k^{-1} (x_t - alpha mu_k)]``,
  with responsibilities ``r_k ∝ w_k N(x_t; alpha mu_k, C_k)``.

Each covariance is stored as an eigendecomposition ``Sigma_k = V_k diag(lambda_k) V_k^T``, so
with ``y_k = V_k^T (x_t - alpha mu_k)`` and ``d_k = alpha^2 lambda_k + sigma^2``:

* ``log N(x_t; alpha mu_k, C_k) = -1/2 [sum_i y_ki^2 / d_ki + sum_i log d_ki + D log 2 pi]``;
* ``mu_k + alpha Sigma_k C_k^{-1} (x_t - alpha mu_k) = mu_k + V_k (alpha lambda_k / d_k * y_k)``.

Eigenvalues are floored at ``min_eigval`` > 0, so ``sigma = 0, alpha = 1`` returns ``x_t``
exactly (``lambda / lambda = 1``) and ``alpha = 0`` returns the prior mean of the allowed
components (gain 0, responsibilities = weights). ``alpha^2 + sigma^2 > 0`` is required.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.types import NULL_LABEL, ApplyFn, Array, PyTree

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------- pure functions
def _flatten(params: PyTree, x: Array) -> tuple[Array, tuple[int, ...]]:
    """Reshape ``[B, *event_shape]`` to ``[B, D]`` with D = params' dimension."""
    dim = params["means"].shape[-1]
    x = jnp.asarray(x, jnp.float32)
    return x.reshape(x.shape[0], dim), x.shape


def _per_example(v: Array, batch: int) -> Array:
    """Broadcast a scalar or ``[B]`` coefficient to float32 ``[B]``."""
    return jnp.broadcast_to(jnp.asarray(v, jnp.float32).reshape(-1), (batch,))


def _allowed_log_weights(params: PyTree, cond: Optional[Array], batch: int) -> Array:
    """``log w_k`` per example ``[B, K]``, -inf where component k's label differs from ``cond``.

    ``cond = None``, ``cond == NULL_LABEL`` or an unlabeled mixture keep all components.
    """
    log_w = jnp.broadcast_to(params["log_weights"], (batch, params["log_weights"].shape[0]))
    if cond is None or params["labels"] is None:
        return log_w
    cond = jnp.asarray(cond).reshape(-1, 1)
    keep = (cond == NULL_LABEL) | (params["labels"][None, :] == cond)
    return jnp.where(keep, log_w, -jnp.inf)


def _component_terms(params: PyTree, x: Array, alpha: Array, sigma: Array):
    """Eigen-coordinates ``y [B,K,D]``, variances ``d [B,K,D]`` and ``log N(x; alpha mu_k, C_k) [B,K]``."""
    vx = jnp.einsum("kji,bj->bki", params["eigvecs"], x)
    vmu = jnp.einsum("kji,kj->ki", params["eigvecs"], params["means"])
    y = vx - alpha[:, None, None] * vmu[None]
    d = alpha[:, None, None] ** 2 * params["eigvals"][None] + sigma[:, None, None] ** 2
    d = jnp.maximum(d, jnp.finfo(jnp.float32).tiny)
    log_n = -0.5 * (jnp.sum(y * y / d + jnp.log(d), axis=-1) + x.shape[-1] * _LOG_2PI)
    return y, d, log_n


def _posterior(params: PyTree, x_t: Array, alpha: Array, sigma: Array, cond: Optional[Array]) -> tuple[Array, Array]:
    """``(E[x0 | x_t, cond]`` with the shape of ``x_t``, responsibilities ``r [B, K])``."""
    x, shape = _flatten(params, x_t)
    alpha, sigma = _per_example(alpha, x.shape[0]), _per_example(sigma, x.shape[0])
    y, d, log_n = _component_terms(params, x, alpha, sigma)
    r = jax.nn.softmax(_allowed_log_weights(params, cond, x.shape[0]) + log_n, axis=-1)
    gain = alpha[:, None, None] * params["eigvals"][None] / d
    correction = jnp.einsum("kij,bkj->bi", params["eigvecs"], r[..., None] * gain * y)
    return (r @ params["means"] + correction).reshape(shape), r


@jax.jit
def posterior_mean(
    params: PyTree, x_t: Array, alpha: Array, sigma: Array, cond: Optional[Array] = None
) -> Array:
    """``E[x0 | x_t, cond] = sum_k r_k [mu_k + V_k (alpha lambda_k / d_k * y_k)]``, shape of ``x_t``."""
    return _posterior(params, x_t, alpha, sigma, cond)[0]


@jax.jit
def posterior_features(
    params: PyTree, x_t: Array, alpha: Array, sigma: Array, cond: Optional[Array] = None
) -> tuple[Array, list[Array]]:
    """``(E[x0 | x_t], [E[x0 | x_t] as [B, D], r(x_t) [B, K]])``: the exact denoiser and the
    features of a noisy point that stand in for a network's hidden layers (discriminator
    backbones, feature distances). Both are smooth in ``x_t``; the posterior mean alone already
    determines ``x_t`` (Tweedie: its Jacobian is ``alpha Cov[x0 | x_t] / sigma^2``, positive definite)."""
    mean, r = _posterior(params, x_t, alpha, sigma, cond)
    return mean, [mean.reshape(mean.shape[0], -1), r]


@jax.jit
def marginal_log_prob(
    params: PyTree, x_t: Array, alpha: Array, sigma: Array, cond: Optional[Array] = None
) -> Array:
    """``log p_t(x_t | cond) = logsumexp_k [log w_k + log N(x_t; alpha mu_k, C_k)] - logsumexp_k log w_k``
    over the allowed components; ``[B]``."""
    x, _ = _flatten(params, x_t)
    alpha, sigma = _per_example(alpha, x.shape[0]), _per_example(sigma, x.shape[0])
    _, _, log_n = _component_terms(params, x, alpha, sigma)
    log_w = _allowed_log_weights(params, cond, x.shape[0])
    return jax.nn.logsumexp(log_w + log_n, axis=-1) - jax.nn.logsumexp(log_w, axis=-1)


@jax.jit
def mahalanobis_sq(params: PyTree, x: Array) -> Array:
    """``(x - mu_k)^T Sigma_k^-1 (x - mu_k) = sum_i y_ki^2 / lambda_ki`` of clean ``x`` to every
    component (the quadratic form of ``log N`` at ``alpha = 1, sigma = 0``); ``[B, K]``."""
    x, _ = _flatten(params, x)
    ones = jnp.ones(x.shape[0], jnp.float32)
    y, d, _ = _component_terms(params, x, ones, jnp.zeros_like(ones))
    return jnp.sum(y * y / d, axis=-1)


@jax.jit
def log_responsibilities(
    params: PyTree, x_t: Array, alpha: Array, sigma: Array, cond: Optional[Array] = None
) -> Array:
    """``log r_k(x_t) = log w_k + log N_k(x_t) - log sum_j w_j N_j(x_t)``; ``[B, K]``."""
    x, _ = _flatten(params, x_t)
    alpha, sigma = _per_example(alpha, x.shape[0]), _per_example(sigma, x.shape[0])
    _, _, log_n = _component_terms(params, x, alpha, sigma)
    return jax.nn.log_softmax(_allowed_log_weights(params, cond, x.shape[0]) + log_n, axis=-1)


def mixture_apply_fn(process) -> ApplyFn:
    """An ApplyFn returning the exact ``E[x0 | x_t]`` with ``alpha = process.alpha(t)``,
    ``sigma = process.sigma(t)``; pass ``GaussianMixture.params`` as ``params``. With
    ``return_features=True`` it returns ``(E[x0 | x_t], [E[x0 | x_t] as [B, D], r(x_t) [B, K]])``
    (``posterior_features``), so ``Denoiser.features`` works on the exact teacher too."""

    def apply(
        params: PyTree, x: Array, t: Array, cond: Optional[Array], *, train: bool = False, rngs=None, return_features: bool = False
    ):
        del train, rngs
        if return_features:
            return posterior_features(params, x, process.alpha(t), process.sigma(t), cond)
        return posterior_mean(params, x, process.alpha(t), process.sigma(t), cond)

    return apply


# ----------------------------------------------------------------------- class
@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
    """``sum_k w_k N(mu_k, Sigma_k)`` over events of shape ``event_shape`` (D = prod).

    ``covariances`` is full ``[K, D, D]`` or diagonal ``[K, D]``; it is stored as
    ``eigvecs [K, D, D]`` / ``eigvals [K, D]`` (eigenvalues floored at ``min_eigval``).
    ``labels [K]`` optionally gives each component's class (used by ``cond``).
    """

    means: np.ndarray
    covariances: np.ndarray
    weights: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    event_shape: Optional[tuple[int, ...]] = None
    min_eigval: float = 1e-6
    eigvecs: np.ndarray = dataclasses.field(init=False, repr=False)
    eigvals: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        means = np.asarray(self.means, np.float64)
        num, dim = means.shape
        covs = np.asarray(self.covariances, np.float64)
        if covs.shape == (num, dim):
            eigvals, eigvecs = covs, np.broadcast_to(np.eye(dim), (num, dim, dim))
        elif covs.shape == (num, dim, dim):
            eigvals, eigvecs = np.linalg.eigh(0.5 * (covs + np.swapaxes(covs, 1, 2)))
        else:
            raise ValueError(f"covariances must be [K, D] or [K, D, D] for means {means.shape}, got {covs.shape}")
        weights = np.full(num, 1.0 / num) if self.weights is None else np.asarray(self.weights, np.float64)
        if weights.shape != (num,) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be {num} non-negative numbers with a positive sum")
        event_shape = (dim,) if self.event_shape is None else tuple(int(s) for s in self.event_shape)
        if math.prod(event_shape) != dim:
            raise ValueError(f"event_shape {event_shape} does not have {dim} elements")
        labels = None if self.labels is None else np.asarray(self.labels, np.int32).reshape(num)
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("means", means.astype(np.float32))
        set_("covariances", covs.astype(np.float32))
        set_("weights", (weights / weights.sum()).astype(np.float32))
        set_("labels", labels)
        set_("event_shape", event_shape)
        set_("eigvals", np.maximum(eigvals, self.min_eigval).astype(np.float32))
        set_("eigvecs", np.ascontiguousarray(eigvecs, np.float32))

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def mean(self) -> np.ndarray:
        """The mixture's mean sum_k w_k mu_k, flat [D] (float64)."""
        return np.asarray(self.weights, np.float64) @ np.asarray(self.means, np.float64)

    @property
    def params(self) -> PyTree:
        """Pytree ``{means, eigvecs, eigvals, log_weights, labels}`` (labels may be None)."""
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        return {
            "means": jnp.asarray(self.means),
            "eigvecs": jnp.asarray(self.eigvecs),
            "eigvals": jnp.asarray(self.eigvals),
            "log_weights": jnp.asarray(log_w),
            "labels": None if self.labels is None else jnp.asarray(self.labels),
        }

    def posterior_mean(self, x_t: Array, alpha: Array, sigma: Array, cond: Optional[Array] = None) -> Array:
        return posterior_mean(self.params, x_t, alpha, sigma, cond)

    def marginal_log_prob(self, x_t: Array, alpha: Array, sigma: Array, cond: Optional[Array] = None) -> Array:
        return marginal_log_prob(self.params, x_t, alpha, sigma, cond)

    def log_prob(self, x: Array, cond: Optional[Array] = None) -> Array:
        """Exact data log density ``log p(x | cond)`` (``alpha = 1, sigma = 0``); ``[B]``."""
        return marginal_log_prob(self.params, x, 1.0, 0.0, cond)

    def assign(self, x: Array) -> Array:
        """Index of the component with the largest responsibility for clean ``x``; int32 ``[B]``."""
        return jnp.argmax(log_responsibilities(self.params, x, 1.0, 0.0), axis=-1).astype(jnp.int32)

    def class_of(self, x: Array) -> Array:
        """Label of the assigned component; int32 ``[B]``."""
        if self.labels is None:
            raise ValueError("this mixture has no component labels")
        return jnp.asarray(self.labels)[self.assign(x)]

    def nearest_mean(self, x: Array) -> Array:
        """Index of the component whose mean is nearest to clean ``x`` (Euclidean); int32 ``[B]``."""
        offsets = jnp.reshape(x, (-1, 1, self.dim)) - jnp.asarray(self.means)[None]
        return jnp.argmin(jnp.sum(offsets**2, axis=-1), axis=-1).astype(jnp.int32)

    def mahalanobis_sq(self, x: Array) -> Array:
        """``(x - mu_k)^T Sigma_k^-1 (x - mu_k)`` of clean ``x`` to every component ``k``; ``[B, K]``.
        For exact samples of component k it is chi-square with D degrees of freedom (mean D)."""
        return mahalanobis_sq(self.params, x)

    def sample(self, rng: Array, n: int, labels: Optional[Array] = None) -> tuple[Array, Array]:
        """Exact samples ``x = mu_k + V_k (sqrt(lambda_k) * z)``, ``k ~ w`` (restricted to
        ``labels[i]`` per sample unless NULL_LABEL); returns ``(x [n, *event_shape], k [n])``."""
        params = self.params
        key_k, key_z = jax.random.split(rng)
        logits = _allowed_log_weights(params, None if labels is None else jnp.asarray(labels).reshape(n), n)
        k = jax.random.categorical(key_k, logits, axis=-1)
        z = jax.random.normal(key_z, (n, self.dim), jnp.float32)
        x = params["means"][k] + jnp.einsum("bij,bj->bi", params["eigvecs"][k], jnp.sqrt(params["eigvals"][k]) * z)
        return x.reshape(n, *self.event_shape), k.astype(jnp.int32)


# ---------------------------------------------------------------- constructors
def grid25(std: float = 0.1) -> GaussianMixture:
    """25 equally weighted isotropic modes (std ``std``) at ``{-4,-2,0,2,4}^2``, row-major.

    Unlabeled (``labels=None``): it is an unconditional benchmark; use ``assign`` for modes.
    """
    ticks = np.arange(-4.0, 5.0, 2.0)
    means = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(25, 2)
    return GaussianMixture(means, np.full((25, 2), std**2))


def random(
    seed: int,
    num_components: int,
    dim: int,
    *,
    num_classes: Optional[int] = None,
    diagonal: bool = False,
    spread: float = 3.0,
    scale: float = 0.5,
    event_shape: Optional[Sequence[int]] = None,
) -> GaussianMixture:
    """Random mixture: ``mu_k ~ N(0, spread^2 I)``, ``Sigma_k = scale^2 (A A^T / D + 0.1 I)``
    with ``A_ij ~ N(0, 1)`` (or a diagonal with entries ``scale^2 U(0.1, 1.1)``), weights
    ``~ Dirichlet(2)``; component k has label ``k % num_classes`` if ``num_classes`` is given."""
    rs = np.random.default_rng(seed)
    means = spread * rs.standard_normal((num_components, dim))
    if diagonal:
        covs = scale**2 * rs.uniform(0.1, 1.1, (num_components, dim))
    else:
        a = rs.standard_normal((num_components, dim, dim))
        covs = scale**2 * (a @ np.swapaxes(a, 1, 2) / dim + 0.1 * np.eye(dim))
    weights = rs.dirichlet(np.full(num_components, 2.0))
    labels = None if num_classes is None else np.arange(num_components) % num_classes
    return GaussianMixture(means, covs, weights, labels, None if event_shape is None else tuple(event_shape))


def load_digits_array() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits as float32 ``[1797, 8, 8, 1]`` in ``[-1, 1]`` (``pixel / 16 * 2 - 1``)
    and int32 labels ``[1797]``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[..., None]
    return x, digits.target.astype(np.int32)


def digits_gmm(shrinkage: float = 0.1, max_condition: float = 1e3) -> GaussianMixture:
    """One full-covariance Gaussian per digit class, fitted to scikit-learn digits in ``[-1, 1]``.

    Rule: ``Sigma = (1 - a) S + a diag(S) + eps I`` with ``S`` the class's sample covariance,
    ``a = shrinkage`` and ``eps`` the smallest ridge giving condition number
    ``<= max_condition``: ``eps = max(0, (l_max - kappa l_min) / (kappa - 1))`` with ``l`` the
    eigenvalues of the shrunk matrix (constant pixels make ``S`` singular, so ``eps > 0``).
    Equal class weights, labels 0..9, ``event_shape (8, 8, 1)``.
    """
    if not 0.0 <= shrinkage <= 1.0 or max_condition <= 1.0:
        raise ValueError("need 0 <= shrinkage <= 1 and max_condition > 1")
    x, y = load_digits_array()
    x = x.reshape(len(x), -1).astype(np.float64)
    means, covs = [], []
    for c in range(10):
        xc = x[y == c]
        s = np.cov(xc, rowvar=False)
        shrunk = (1.0 - shrinkage) * s + shrinkage * np.diag(np.diag(s))
        lam = np.linalg.eigvalsh(shrunk)
        eps = max(0.0, (lam[-1] - max_condition * lam[0]) / (max_condition - 1.0))
        # Tiny safety margin so float rounding of the eigendecomposition stays within the bound.
        covs.append(shrunk + 1.001 * eps * np.eye(x.shape[1]))
        means.append(xc.mean(axis=0))
    return GaussianMixture(np.stack(means), np.stack(covs), None, np.arange(10), (8, 8, 1))


# The benchmark mixtures by name (BENCHMARKS.md); a teacher or evaluator looks a mixture up here.
MIXTURES = {"grid25": grid25, "digits_gmm": digits_gmm}
