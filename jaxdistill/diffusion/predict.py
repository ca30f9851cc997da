"""Exact conversions between network prediction kinds for x = alpha x0 + sigma eps.

Kinds (``PREDICTIONS``):

* ``"eps"``  : eps;                x0 = (x - sigma eps) / alpha (needs alpha > 0).
* ``"x0"``   : x0 itself.
* ``"v"``    : v = alpha eps - sigma x0 (Salimans & Ho 2022); x0 = (alpha x - sigma v) / (alpha^2 + sigma^2).
* ``"flow"`` : u = alpha' x0 + sigma' eps = dx/dt (Lipman et al. 2022; Liu et al. 2022);
               x0 = (sigma' x - sigma u) / (sigma' alpha - sigma alpha').
* ``"edm"``  : Karras et al. (2022) preconditioning on y = x / alpha, s = sigma / alpha:
               the network sees (c_in y, c_noise) and x0 = c_skip y + c_out F (needs alpha > 0).
* ``"cm"``   : as ``"edm"`` but with the consistency-model boundary coefficients
               (Song et al. 2023), so x0 = y exactly at the process's t_min: f(x, t_min) = x / alpha.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.diffusion.process import NoiseProcess, broadcast_to

PREDICTIONS = ("eps", "x0", "v", "flow", "edm", "cm")
PRECONDITIONED = ("edm", "cm")  # kinds whose network sees (c_in x / alpha, c_noise)


def _check(kind: str) -> None:
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction kind {kind!r}; choose one of {PREDICTIONS}")


def _coeffs(process: NoiseProcess, t: Array, x: Array) -> tuple[Array, Array]:
    return broadcast_to(process.alpha(t), x), broadcast_to(process.sigma(t), x)


def x0_from_eps(eps: Array, x: Array, t: Array, process: NoiseProcess) -> Array:
    """x0 = (x - sigma eps) / alpha."""
    a, s = _coeffs(process, t, x)
    return (x - s * eps) / a


def eps_from_x0(x0: Array, x: Array, t: Array, process: NoiseProcess) -> Array:
    """eps = (x - alpha x0) / sigma."""
    a, s = _coeffs(process, t, x)
    return (x - a * x0) / s


def edm_coeffs(s: Array, sigma_data: float = 0.5) -> tuple[Array, Array, Array, Array]:
    """EDM preconditioning (Karras et al. 2022, Table 1) at noise level s of the scaled variable.

    c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2),
    c_noise = ln(s) / 4.
    """
    s = jnp.asarray(s, jnp.float32)
    norm = s**2 + sigma_data**2
    return sigma_data**2 / norm, s * sigma_data / jnp.sqrt(norm), 1.0 / jnp.sqrt(norm), jnp.log(s) / 4.0


def cm_boundary_coeffs(s: Array, s_min: float, sigma_data: float = 0.5) -> tuple[Array, Array]:
    """Consistency-model boundary parameterisation (Song et al. 2023, App. C).

    f(x, s) = c_skip x + c_out F with c_skip = sd^2 / ((s - s_min)^2 + sd^2) and
    c_out = (s - s_min) sd / sqrt(s^2 + sd^2), so c_skip(s_min) = 1, c_out(s_min) = 0 exactly.
    """
    s = jnp.asarray(s, jnp.float32)
    d = s - s_min
    return sigma_data**2 / (d**2 + sigma_data**2), d * sigma_data / jnp.sqrt(s**2 + sigma_data**2)


def edm_inputs(x: Array, t: Array, process: NoiseProcess, sigma_data: float = 0.5) -> tuple[Array, Array]:
    """The network inputs of kind ``"edm"``: (c_in y, c_noise) with y = x / alpha; c_noise has t's shape."""
    s = process.sigma_ratio(t)
    _, _, c_in, c_noise = edm_coeffs(s, sigma_data)
    return broadcast_to(c_in / process.alpha(t), x) * x, c_noise


def to_x0(output: Array, kind: str, x: Array, t: Array, process: NoiseProcess, *, sigma_data: float = 0.5) -> Array:
    """Convert a network output of prediction ``kind`` at (x, t) into the x0 estimate."""
    _check(kind)
    a, s = _coeffs(process, t, x)
    if kind == "eps":
        return x0_from_eps(output, x, t, process)
    if kind == "x0":
        return output
    if kind == "v":
        return (a * x - s * output) / (a**2 + s**2)
    if kind == "flow":
        da, ds = broadcast_to(process.dalpha(t), x), broadcast_to(process.dsigma(t), x)
        return (ds * x - s * output) / (ds * a - s * da)
    c_skip, c_out = _skip_out(kind, s / a, process, sigma_data)
    return c_skip * x / a + c_out * output


def _skip_out(kind: str, s: Array, process: NoiseProcess, sigma_data: float) -> tuple[Array, Array]:
    """(c_skip, c_out) of a preconditioned kind at noise level s (broadcast like s)."""
    if kind == "cm":
        with jax.ensure_compile_time_eval():
            s_min = float(process.sigma_ratio(process.t_min))
        return cm_boundary_coeffs(s, s_min, sigma_data)
    c_skip, c_out, _, _ = edm_coeffs(s, sigma_data)
    return c_skip, c_out


def target_for(kind: str, x0: Array, eps: Array, t: Array, process: NoiseProcess, *, sigma_data: float = 0.5) -> Array:
    """Regression target of a network of prediction ``kind`` for x_t = alpha x0 + sigma eps.

    eps -> eps, x0 -> x0, v -> alpha eps - sigma x0, flow -> alpha' x0 + sigma' eps,
    edm / cm -> (x0 - c_skip y) / c_out with y = x_t / alpha (cm: undefined at t_min, where c_out = 0).
    """
    _check(kind)
    a, s = _coeffs(process, t, x0)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return a * eps - s * x0
    if kind == "flow":
        return broadcast_to(process.dalpha(t), x0) * x0 + broadcast_to(process.dsigma(t), x0) * eps
    c_skip, c_out = _skip_out(kind, s / a, process, sigma_data)
    y = x0 + (s / a) * eps
    return (x0 - c_skip * y) / c_out
