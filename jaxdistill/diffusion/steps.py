"""Decreasing timestep grids t_0 = t_max > t_1 > ... > t_n = t_end for n sampling steps.

Conventions shared by the grids spaced in sigma_ratio s = sigma/alpha (``karras``, ``logsnr``):

* ``t_end == 0`` (clean data, s = 0): n points are spaced between s(t_max) and s(t_min)
  and t_end = 0 is appended, so the last step jumps from t_min to 0 (EDM convention).
* ``t_end > 0``: n + 1 points are spaced between s(t_max) and s(t_end).
* If s(t_max) is infinite (alpha(t_max) = 0: RectifiedFlow at t = 1, TrigFlow at pi/2) the
  spacing starts from ``sigma_ratio_max`` (EDM's 80) instead; the first point is always
  pinned to t_max exactly, so the grid still starts at pure noise.

``t_end`` is a Python float (it decides the grid's structure); the spaced grids are jitted
with all arguments static (processes are hashable frozen dataclasses).

The discrete DDPM process also has diffusers' spacings ``leading``, ``linspace``, ``trailing``
(``ddpm_spacing_grid``): its scheduler's timesteps k at process times k + 1, then ``t_end``.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.types import Array
from jaxdistill.diffusion.ddpm_grid import SPACINGS, ddpm_timesteps
from jaxdistill.diffusion.process import DDPM, NoiseProcess


def karras_sigma(u, s_start, s_end, rho: float):
    """Karras et al. (2022) eq. 5 at the fraction u in [0, 1] of the way from s_start to s_end:
    (s_start^(1/rho) + u (s_end^(1/rho) - s_start^(1/rho)))^rho. Works on Python floats and arrays."""
    a, b = s_start ** (1.0 / rho), s_end ** (1.0 / rho)
    return (a + u * (b - a)) ** rho


def sigma_ratio_range(process: NoiseProcess, sigma_ratio_max: float = 80.0) -> tuple[float, float]:
    """(s(t_min), s(t_max)) of ``process`` as Python floats, with s(t_max) = ``sigma_ratio_max``
    (EDM's 80) where it is infinite (alpha(t_max) = 0)."""
    with jax.ensure_compile_time_eval():
        s_min = float(process.sigma_ratio(process.t_min))
        s_max = float(process.sigma_ratio(process.t_max))
    return s_min, s_max if math.isfinite(s_max) else sigma_ratio_max


def _ratio_grid(
    process: NoiseProcess,
    n: int,
    t_end: float,
    warp: Callable[[Array], Array],
    unwarp: Callable[[Array], Array],
    sigma_ratio_max: float,
) -> Array:
    """Grid uniform in warp(sigma_ratio), with the conventions of the module docstring."""
    if n < 1:
        raise ValueError(f"a grid needs n >= 1 steps, got {n}")
    s_hi = process.sigma_ratio(process.t_max)
    s_hi = jnp.where(jnp.isfinite(s_hi), s_hi, sigma_ratio_max)
    s_lo = process.sigma_ratio(t_end if t_end > 0 else process.t_min)
    frac = jnp.linspace(0.0, 1.0, n + 1 if t_end > 0 else n)
    t = process.t_from_sigma_ratio(unwarp(warp(s_hi) + frac * (warp(s_lo) - warp(s_hi))))
    t = t.at[0].set(process.t_max)
    if t_end > 0:
        return t.at[-1].set(t_end)
    return jnp.concatenate([t, jnp.zeros((1,), jnp.float32)])


_STATIC = ("process", "n", "rho", "t_end", "sigma_ratio_max")


@functools.partial(jax.jit, static_argnames=_STATIC)
def karras_grid(process: NoiseProcess, n: int, rho: float = 7.0, t_end: float = 0.0, sigma_ratio_max: float = 80.0) -> Array:
    """Karras et al. (2022) eq. 5: s_i = (s_hi^(1/rho) + i/(m-1) (s_lo^(1/rho) - s_hi^(1/rho)))^rho, t_i = t(s_i)."""
    return _ratio_grid(process, n, t_end, lambda s: s ** (1.0 / rho), lambda u: u**rho, sigma_ratio_max)


@functools.partial(jax.jit, static_argnames=_STATIC[:2] + _STATIC[3:])
def logsnr_grid(process: NoiseProcess, n: int, t_end: float = 0.0, sigma_ratio_max: float = 80.0) -> Array:
    """Uniform in logSNR lambda = -2 log s (uniform step size h of DPM-Solver, Lu et al. 2022)."""
    return _ratio_grid(process, n, t_end, jnp.log, jnp.exp, sigma_ratio_max)


def uniform_grid(process: NoiseProcess, n: int, t_end: float = 0.0) -> Array:
    """Uniform in the process's own time: t_i = t_max + i/n (t_end - t_max)."""
    if n < 1:
        raise ValueError(f"a grid needs n >= 1 steps, got {n}")
    return jnp.linspace(process.t_max, t_end, n + 1, dtype=jnp.float32)


def ddpm_spacing_grid(
    process: NoiseProcess,
    n: int,
    spacing: str = "trailing",
    t_end: float = 0.0,
    *,
    steps_offset: int = 0,
    scheduler: str = "ddim",
) -> Array:
    """diffusers' inference timesteps k_1 > ... > k_n of ``spacing`` as the process times k_i + 1,
    then ``t_end`` (``ddpm_grid.ddpm_timesteps``; ``process`` must be a ``DDPM``).

    Where each diffusers scheduler's last step lands: ``t_end = 0`` is clean data (DDIM's
    ``set_alpha_to_one=True``, DPM-Solver's ``final_sigmas_type="zero"``, Euler's final sigma 0);
    ``t_end = 1`` (= t_min, training index 0) is DDIM's ``set_alpha_to_one=False`` and
    DPM-Solver's ``final_sigmas_type="sigma_min"``. ``t_end`` equal to the last timestep gives
    a final step of length zero, as diffusers does then. ``scheduler``: "ddim" (also Euler's rule for
    leading / trailing), "euler" (unrounded linspace), "dpmsolver".
    """
    if not isinstance(process, DDPM):
        raise ValueError(f"grid {spacing!r} spaces the timesteps of the discrete DDPM process (process name 'ddpm'), not {type(process).__name__}")
    ks = ddpm_timesteps(n, spacing, process.num_train_timesteps, steps_offset=steps_offset, scheduler=scheduler)
    if not 0.0 <= t_end <= ks[-1] + 1.0:
        raise ValueError(f"t_end={t_end} must lie in [0, {ks[-1] + 1.0}], the last timestep's time")
    return jnp.asarray(np.append(ks + 1.0, t_end), jnp.float32)


GRIDS: dict[str, Callable[..., Array]] = {
    "karras": karras_grid,
    "uniform": uniform_grid,
    "logsnr": logsnr_grid,
    **{name: functools.partial(ddpm_spacing_grid, spacing=name) for name in SPACINGS},
}


def get_grid(name: str, process: NoiseProcess, n: int, **kwargs) -> Array:
    """Grid ``name`` ("karras", "uniform", "logsnr"; for DDPM also "leading", "linspace", "trailing") with n steps (n + 1 points)."""
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; choose one of {tuple(GRIDS)}")
    return GRIDS[name](process, n, **kwargs)
