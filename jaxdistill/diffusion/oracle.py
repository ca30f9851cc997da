"""Closed-form denoiser and probability-flow ODE for Gaussian data x0 ~ N(mu, Sigma).

With Sigma = U diag(lam) U^T, x_t ~ N(alpha_t mu, U diag(alpha_t^2 lam + sigma_t^2) U^T) and

    E[x0 | x_t] = mu + U diag(alpha lam / (alpha^2 lam + sigma^2)) U^T (x_t - alpha mu).

The PF-ODE is linear and diagonal in the eigenbasis, and it keeps the standardised
coordinate z = U^T (x_t - alpha_t mu) / sqrt(alpha_t^2 lam + sigma_t^2) fixed, which gives
its exact flow map from time s to time t. Arrays are [B, D] (or [B, *event], flattened);
``mean`` is [D] and ``cov`` [D, D].
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.diffusion.process import NoiseProcess, broadcast_to


def _eigh(cov: Array) -> tuple[Array, Array]:
    lam, u = jnp.linalg.eigh(jnp.asarray(cov, jnp.float32))
    return u, jnp.maximum(lam, 0.0)


def _std(process: NoiseProcess, t: Array, lam: Array, x: Array) -> Array:
    """Per-eigendirection std of x_t: sqrt(alpha^2 lam + sigma^2), shape [B or 1, D]."""
    a, s = broadcast_to(process.alpha(t), x), broadcast_to(process.sigma(t), x)
    return jnp.sqrt(a**2 * lam + s**2)


def _flow_map(x, s, t, process, mean, u, lam):
    flat = x.reshape(x.shape[0], -1)
    a_s, a_t = broadcast_to(process.alpha(s), flat), broadcast_to(process.alpha(t), flat)
    z = ((flat - a_s * mean) @ u) / _std(process, s, lam, flat)
    out = a_t * mean + (_std(process, t, lam, flat) * z) @ u.T
    return out.reshape(x.shape)


def _posterior_mean(x, t, process, mean, u, lam):
    flat = x.reshape(x.shape[0], -1)
    a, s = broadcast_to(process.alpha(t), flat), broadcast_to(process.sigma(t), flat)
    gain = a * lam / (a**2 * lam + s**2)
    out = mean + (gain * ((flat - a * mean) @ u)) @ u.T
    return out.reshape(x.shape)


def gaussian_flow_map(x_s: Array, s: Array, t: Array, process: NoiseProcess, mean: Array, cov: Array) -> Array:
    """Exact PF-ODE map x_s -> x_t: alpha_t mu + U diag(std_t / std_s) U^T (x_s - alpha_s mu)."""
    u, lam = _eigh(cov)
    return _flow_map(x_s, s, t, process, jnp.asarray(mean, jnp.float32), u, lam)


def gaussian_posterior_mean(x_t: Array, t: Array, process: NoiseProcess, mean: Array, cov: Array) -> Array:
    """E[x0 | x_t] = mu + alpha Sigma (alpha^2 Sigma + sigma^2 I)^-1 (x_t - alpha mu)."""
    u, lam = _eigh(cov)
    return _posterior_mean(x_t, t, process, jnp.asarray(mean, jnp.float32), u, lam)


def gaussian_denoiser_fn(process: NoiseProcess, mean: Array, cov: Array) -> Callable[[Array, Array], Array]:
    """The exact denoiser as ``x0_fn(x, t)`` for the samplers (eigendecomposition done once)."""
    u, lam = _eigh(cov)
    mean = jnp.asarray(mean, jnp.float32)
    return lambda x, t: _posterior_mean(x, t, process, mean, u, lam)
