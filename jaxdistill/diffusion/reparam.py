"""A denoiser of one noise process used as the denoiser of another.

Two processes x = alpha(t) x0 + sigma(t) eps share the scaled variable y = x / alpha, whose
noise level is the sigma ratio s = sigma / alpha (Karras et al. 2022, Sec. 2). So a point x
at time t of process B is the point

    x' = (alpha_A(t') / alpha_B(t)) x   at the time t' of process A with s_A(t') = s_B(t),

and E[x0 | x at t in B] = E[x0 | x' at t' in A]: x0 is unchanged. This lets a teacher trained
on one process (e.g. the EDM digits teacher) supply x0, eps or velocities on another (e.g. the
rectified flow of shortcut models and MeanFlow).

Outside process A's sampling range [s_A(t_min), s_A(t_max)] the network was never trained (and
at s = 0 or s = inf the EDM inputs are not finite), so the level is clamped. Below the range A
is evaluated at s_min on y (the noise left is negligible there). Above it A is evaluated at
s_max on y' = (s_max / s)^2 y = s_max^2 alpha_B x / sigma_B^2, which is finite at alpha_B = 0
(rectified flow at t = 1, where y' = 0) and keeps the posterior mean to first order in 1/s^2:
E[x0 | y] = mu + Cov (y - mu) / s^2 + O(s^-4) at large s, so the two agree up to
Cov mu / s_max^2. Inside the range the map is exact.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp

from jaxdistill.core.types import ApplyFn, Array, PyTree
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess, broadcast_to


def sigma_ratio_range(process: NoiseProcess) -> tuple[float, float]:
    """(s(t_min), s(t_max)) of ``process``; s_max may be inf (alpha(t_max) = 0)."""
    with jax.ensure_compile_time_eval():
        return float(process.sigma_ratio(process.t_min)), float(process.sigma_ratio(process.t_max))


def match_noise_level(
    x: Array,
    t: Array,
    source: NoiseProcess,
    target: NoiseProcess,
    clamp: Optional[tuple[float, float]] = None,
) -> tuple[Array, Array]:
    """(x', t'): the point of ``target`` with the noise level of x at time t ([B]) of ``source``.

    t' = t_target(s), x' = alpha_target(t') x / alpha_source(t) with s = sigma_source(t) / alpha_source(t).
    ``clamp = (s_lo, s_hi)`` restricts s as the module docstring says.
    """
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
    alpha, sigma = source.alpha(t), source.sigma(t)
    s = sigma / alpha
    s_lo, s_hi = clamp if clamp is not None else (0.0, math.inf)
    above = s > s_hi
    scale = jnp.where(above, s_hi**2 * alpha / jnp.where(above, sigma, 1.0) ** 2, 1.0 / jnp.where(above, 1.0, alpha))
    t_target = target.t_from_sigma_ratio(jnp.clip(s, s_lo, s_hi))
    return broadcast_to(target.alpha(t_target) * scale, x) * x, t_target


def reparameterized_apply_fn(denoiser: Denoiser, process: NoiseProcess, clamp: bool = True) -> ApplyFn:
    """An ApplyFn of prediction kind ``"x0"`` on ``process``: the source denoiser at the matched level."""
    limits = sigma_ratio_range(denoiser.process) if clamp else None

    def apply(params: PyTree, x: Array, t: Array, cond: Optional[Array], *, train: bool = False, rngs=None) -> Array:
        x_src, t_src = match_noise_level(x, t, process, denoiser.process, limits)
        return denoiser.x0(params, x_src, t_src, cond, train=train, rngs=rngs)

    return apply


def reparameterize(denoiser: Denoiser, process: NoiseProcess, *, clamp: bool = True) -> Denoiser:
    """``denoiser`` (of its own process) as a Denoiser of ``process``; unchanged if the processes are equal.

    Classifier-free guidance composes: the returned Denoiser's guided x0 calls the source
    network on the batch [x'; x'] with labels [cond; NULL_LABEL].
    """
    if denoiser.process == process:
        return denoiser
    return Denoiser(reparameterized_apply_fn(denoiser, process, clamp), process, "x0", sigma_data=denoiser.sigma_data)
