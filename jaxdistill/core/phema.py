"""Power-function EMA and post-hoc EMA reconstruction (Karras et al. 2024, "Analyzing and Improving
the Training Dynamics of Diffusion Models", EDM2, Sec. 3 and App. C).

A power-function EMA at training time T averages the parameter trajectory with the profile
``p_T(t) = (gamma + 1) t^gamma / T^(gamma + 1)`` on ``[0, T]``. Its width relative to T is

    sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))),

the same at every T. Tracked during training with ``beta_t = (1 - 1/t)^(gamma + 1)`` at update t
(t = 1, 2, ...), the EMA after T updates weights update s by exactly
``(s^(gamma+1) - (s-1)^(gamma+1)) / T^(gamma+1)``, the profile's mass on ``[s - 1, s]``.

Post-hoc: snapshots of such EMAs (a few gammas, many times) are combined linearly into the EMA of
another gamma at time T by least squares between the profiles, whose inner products are closed form
(:func:`profile_inner`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.types import Array, PyTree

# sigma_rel is largest, phi^(-5/2) ~ 0.3003, at gamma = phi - 2 ~ -0.382 (phi the golden ratio): the
# zero of d/dgamma log sigma_rel^2 = 1/(gamma+1) - 2/(gamma+2) - 1/(gamma+3).
SIGMA_REL_MAX = ((1.0 + math.sqrt(5.0)) / 2.0) ** -2.5


def gamma_to_sigma_rel(gamma: float) -> float:
    """Relative std of the profile t^gamma on [0, 1]: sqrt((gamma+1) / ((gamma+2)^2 (gamma+3)))."""
    gamma = float(gamma)
    if not gamma > -1.0 or not math.isfinite(gamma):
        raise ConfigError(f"a power-function EMA needs gamma > -1 (finite), got {gamma}")
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The gamma whose profile has relative std ``sigma_rel``: the largest real root of
    gamma^3 + 7 gamma^2 + (16 - s) gamma + (12 - s) = 0 with s = sigma_rel^-2 (EDM2 Eq. 126),
    i.e. the branch gamma >= phi - 2 on which sigma_rel falls as gamma grows."""
    sigma_rel = float(sigma_rel)
    if not 0.0 < sigma_rel <= SIGMA_REL_MAX:
        raise ConfigError(f"sigma_rel must be in (0, {SIGMA_REL_MAX:.4f}] (the widest power-function EMA), got {sigma_rel}")
    s = sigma_rel**-2
    return float(np.roots([1.0, 7.0, 16.0 - s, 12.0 - s]).real.max())


@dataclasses.dataclass(frozen=True)
class PowerEma:
    """The EMA rule of a power-function profile: decay beta_t = (1 - 1/t)^(gamma + 1) at update t >= 1."""

    sigma_rel: float

    def __post_init__(self) -> None:
        sigma_rel_to_gamma(self.sigma_rel)  # checks the range

    @property
    def gamma(self) -> float:
        return sigma_rel_to_gamma(self.sigma_rel)

    def weight(self, t: Array) -> Array:
        """1 - beta_t, the new parameters' weight at the t-th update (1-based; 1 at t = 1, so the EMA
        starts at the first update), as -expm1((gamma + 1) log1p(-1/t)): accurate in float32 also
        where beta_t is within 1e-7 of 1 (t of 1e6 and more), where 1 - beta_t would cancel."""
        t = jnp.asarray(t, jnp.float32)
        return -jnp.expm1((self.gamma + 1.0) * jnp.log1p(-1.0 / t))


EmaRule = Union[float, PowerEma]


def ema_rule(ema_decay: float, ema_sigma_rel: Union[float, None]) -> EmaRule:
    """The run's EMA: a constant ``ema_decay``, or the power EMA of ``ema_sigma_rel`` if it is set."""
    if ema_sigma_rel is None:
        return float(ema_decay)
    return PowerEma(float(ema_sigma_rel))


def profile_inner(time_a: np.ndarray, gamma_a: np.ndarray, time_b: np.ndarray, gamma_b: np.ndarray) -> np.ndarray:
    """<p_a, p_b> = int_0^inf p_a p_b dt of the normalised profiles at times T_a, T_b (broadcast):
    for T_a <= T_b it is (a+1)(b+1) / (a+b+1) * (T_a / T_b)^b / T_b with a, b the gammas."""
    ta, ga, tb, gb = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (time_a, gamma_a, time_b, gamma_b)))
    short = ta <= tb
    t_min, t_max = np.where(short, ta, tb), np.where(short, tb, ta)
    g_long = np.where(short, gb, ga)
    return (ga + 1.0) * (gb + 1.0) / (ga + gb + 1.0) * (t_min / t_max) ** g_long / t_max


def phema_weights(
    snapshot_times: Sequence[float], snapshot_gammas: Sequence[float], target_gamma: float, target_time: Union[float, None] = None
) -> np.ndarray:
    """Weights x (summing to 1) with sum_i x_i p_i closest in L2 to the target profile at
    ``target_time`` (default: the last snapshot time): the least-squares solution of
    G x = b, G_ij = <p_i, p_j>, b_i = <p_i, p_target> (EDM2 App. C.3, Algorithm 3), rescaled to
    sum to 1. Snapshots later than ``target_time`` get weight 0."""
    times = np.asarray(snapshot_times, np.float64).reshape(-1)
    gammas = np.asarray(snapshot_gammas, np.float64).reshape(-1)
    if times.size == 0:
        raise ConfigError("post-hoc EMA needs at least one snapshot; none given")
    if times.shape != gammas.shape:
        raise ConfigError(f"{times.size} snapshot times but {gammas.size} snapshot gammas; give one of each per snapshot")
    if not np.all(np.isfinite(times) & (times > 0)):
        raise ConfigError(f"snapshot times must be positive and finite, got {times.tolist()}")
    for g in (*gammas.tolist(), target_gamma):
        gamma_to_sigma_rel(g)  # checks gamma > -1
    target_time = float(times.max()) if target_time is None else float(target_time)
    if not 0 < target_time <= times.max():
        raise ConfigError(f"target time {target_time} must be in (0, {times.max()}] (the last snapshot's time)")
    used = times <= target_time
    if not used.any():
        raise ConfigError(f"no snapshot at or before the target time {target_time} (the first is at {times.min()})")
    t, g = times[used], gammas[used]
    gram = profile_inner(t[:, None], g[:, None], t[None, :], g[None, :])
    rhs = profile_inner(t, g, target_time, target_gamma)
    x = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    weights = np.zeros_like(times)
    weights[used] = x / x.sum()
    return weights


def fit_error(
    snapshot_times: Sequence[float], snapshot_gammas: Sequence[float], weights: Sequence[float], target_gamma: float, target_time: float
) -> float:
    """||sum_i w_i p_i - p_target|| / ||p_target|| in L2 over time, from the closed-form inner products."""
    t, g, w = (np.asarray(v, np.float64).reshape(-1) for v in (snapshot_times, snapshot_gammas, weights))
    gram = profile_inner(t[:, None], g[:, None], t[None, :], g[None, :])
    cross = profile_inner(t, g, target_time, target_gamma)
    self_inner = float(profile_inner(target_time, target_gamma, target_time, target_gamma))
    return math.sqrt(max(float(w @ gram @ w - 2.0 * w @ cross + self_inner), 0.0) / self_inner)


def _leaf_paths(tree: PyTree) -> tuple[list[str], list, object]:
    """(key paths, leaves, treedef) of ``tree``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in flat], [leaf for _, leaf in flat], treedef


def reconstruct(snapshots: Iterable[PyTree], weights: Sequence[float]) -> PyTree:
    """sum_i weights_i snapshots_i leaf by leaf, accumulated in float64 and returned in each leaf's
    dtype. ``snapshots`` is consumed one at a time (a generator may load them lazily); each must have
    the first's tree structure, shapes and dtypes."""
    weights = [float(w) for w in weights]
    acc, ref, count = None, None, 0
    for i, tree in enumerate(snapshots):
        if i >= len(weights):
            raise ConfigError(f"more snapshots than the {len(weights)} weights")
        paths, leaves, treedef = _leaf_paths(tree)
        if ref is None:
            ref = (paths, [(np.shape(a), np.asarray(a).dtype) for a in leaves], treedef)
            acc = [np.zeros(shape, np.float64) for shape, _ in ref[1]]
        elif treedef != ref[2]:
            missing, extra = sorted(set(ref[0]) - set(paths))[:3], sorted(set(paths) - set(ref[0]))[:3]
            raise ConfigError(f"snapshot {i} is another parameter tree than snapshot 0: it lacks {', '.join(missing) or 'nothing'} and has extra {', '.join(extra) or 'nothing'}")
        for j, leaf in enumerate(leaves):
            leaf = np.asarray(leaf)
            if (leaf.shape, leaf.dtype) != ref[1][j]:
                shape, dtype = ref[1][j]
                raise ConfigError(f"snapshot {i} has {paths[j]} of {leaf.dtype}{list(leaf.shape)} where snapshot 0 has {dtype}{list(shape)}")
            acc[j] += weights[i] * leaf.astype(np.float64)
        count += 1
    if count == 0:
        raise ConfigError("post-hoc EMA needs at least one snapshot; none given")
    if count != len(weights):
        raise ConfigError(f"{count} snapshots but {len(weights)} weights")
    return jax.tree_util.tree_unflatten(ref[2], [a.astype(dtype) for a, (_, dtype) in zip(acc, ref[1])])
