"""Discrete DDPM schedules: beta tables, noise levels of training steps, inference timesteps.

A discrete DDPM (Ho et al. 2020) with T training steps has abar_t = prod_{s<=t} (1 - beta_s),
and step t's EDM noise level (sigma ratio) for unit-variance data is
sigma_t = sqrt((1 - abar_t) / abar_t). Schedules (``SCHEDULES``, diffusers' ``beta_schedule``):

* ``"linear"``        beta linear from beta_start to beta_end (DDPM's 1e-4..0.02);
* ``"scaled_linear"`` sqrt(beta) linear (Stable Diffusion's 0.00085..0.012, whose sigma_t runs
                      from 0.0292 at t = 0 to 14.61 at t = 999);
* ``"cosine"``        Nichol & Dhariwal (2021) eq. 17, diffusers' ``squaredcos_cap_v2``:
                      beta_t = min(1 - f((t+1)/T) / f(t/T), 0.999), f(u) = cos^2((u + 0.008) / 1.008 pi/2).

Data of standard deviation sigma_data reaches the same signal-to-noise ratio at sigma_data * sigma_t.

Inference timesteps (``ddpm_timesteps``) follow diffusers' ``timestep_spacing`` names
(Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", Table 2).
diffusers' schedulers do not all space the same way, so ``scheduler`` picks whose rule:

============  ==========================================  ===================================
spacing       ``"ddim"`` / ``"euler"``                    ``"dpmsolver"``
============  ==========================================  ===================================
linspace      round(linspace(0, T-1, n)) (euler: unrounded)  round(linspace(0, T-1, n+1)), drop 0
leading       arange(n) * (T // n) + steps_offset          arange(n+1) * (T // (n+1)), drop 0, + offset
trailing      round(arange(T, 0, -T/n)) - 1                 the same
============  ==========================================  ===================================
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

SCHEDULES = ("linear", "scaled_linear", "cosine")
SPACINGS = ("leading", "linspace", "trailing")
SCHEDULERS = ("ddim", "euler", "dpmsolver")
COSINE_MAX_BETA = 0.999  # Nichol & Dhariwal (2021), Sec. 3.2


def _cosine_betas(num_train_timesteps: int) -> np.ndarray:
    """beta_t = min(1 - f((t+1)/T) / f(t/T), 0.999), f(u) = cos^2((u + 0.008) / 1.008 pi/2)."""
    f = np.cos((np.arange(num_train_timesteps + 1) / num_train_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], COSINE_MAX_BETA)


def ddpm_betas(
    schedule: str,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    num_train_timesteps: int = 1000,
    betas: Sequence[float] = (),
) -> np.ndarray:
    """The float64 beta table of ``schedule`` (``SCHEDULES`` or ``"given"``, which checks and returns ``betas``).

    beta_start / beta_end are read by the linear schedules only; ``"cosine"`` caps betas at 0.999.
    """
    if schedule == "given":
        return _checked_betas(betas)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES + ('given',)}, got {schedule!r}")
    if len(betas):
        raise ValueError(f"betas are read with schedule='given' only; schedule is {schedule!r}")
    if num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
    if schedule == "cosine":
        return _cosine_betas(num_train_timesteps)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, num_train_timesteps)
    return np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps) ** 2


def _checked_betas(betas: Sequence[float]) -> np.ndarray:
    """A given beta table: non-empty, every beta in (0, 1), non-decreasing (as every published schedule)."""
    b = np.asarray(betas, np.float64)
    if b.ndim != 1 or b.size == 0:
        raise ValueError(f"schedule='given' needs betas, a non-empty sequence of floats; got {betas!r}")
    if not np.all((b > 0.0) & (b < 1.0)):
        raise ValueError(f"betas must lie in (0, 1); betas[{int(np.argmax(~((b > 0) & (b < 1))))}] is out of range")
    if np.any(np.diff(b) < 0):
        raise ValueError(f"betas must be non-decreasing; betas[{int(np.argmax(np.diff(b) < 0)) + 1}] is below its predecessor")
    return b


def ddpm_alpha_bars(betas: np.ndarray) -> np.ndarray:
    """abar_t = prod_{s<=t} (1 - beta_s) in float64."""
    return np.cumprod(1.0 - np.asarray(betas, np.float64))


def ddpm_sigma_ratios(
    steps: Sequence[int],
    *,
    schedule: str = "scaled_linear",
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    num_train_timesteps: int = 1000,
    sigma_data: float = 1.0,
) -> tuple[float, ...]:
    """sigma_data * sqrt((1 - abar_t) / abar_t) for each DDPM step t in ``steps`` (defaults: SD's schedule)."""
    betas = ddpm_betas(schedule, beta_start=beta_start, beta_end=beta_end, num_train_timesteps=num_train_timesteps)
    if not sigma_data > 0.0:
        raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
    bad = [t for t in steps if int(t) != t or not 0 <= t < num_train_timesteps]
    if bad:
        raise ValueError(f"DDPM steps must be integers in [0, {num_train_timesteps - 1}], got {bad}")
    abar = ddpm_alpha_bars(betas)[np.asarray(steps, dtype=int)]
    return tuple(float(s) for s in sigma_data * np.sqrt((1.0 - abar) / abar))


def ddpm_timesteps(
    n: int,
    spacing: str,
    num_train_timesteps: int = 1000,
    *,
    steps_offset: int = 0,
    scheduler: str = "ddim",
) -> np.ndarray:
    """The n training indices (float64, decreasing) at which diffusers' ``scheduler`` evaluates
    the network with ``timestep_spacing=spacing`` (table in the module docstring).

    ``steps_offset`` shifts ``leading`` only (SD's configs use 1). Raises ValueError if the n
    indices are not distinct indices in [0, T - 1] (too many steps for T, or too large an offset).
    """
    if spacing not in SPACINGS:
        raise ValueError(f"timestep spacing must be one of {SPACINGS}, got {spacing!r}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
    T = int(num_train_timesteps)
    if not 1 <= n <= T:
        raise ValueError(f"{n} inference steps with num_train_timesteps={T}: need 1 <= steps <= {T}")
    m = n + 1 if scheduler == "dpmsolver" and spacing != "trailing" else n  # dpmsolver spaces n+1 and drops index 0
    if spacing == "linspace":
        ts = np.linspace(0.0, T - 1, m)
        ts = np.round(ts) if scheduler != "euler" else ts.astype(np.float32).astype(np.float64)
    elif spacing == "leading":
        ts = np.arange(m) * (T // m) + float(steps_offset)
    else:
        ts = np.round(np.arange(T, 0, -T / n)) - 1.0
    ts = np.sort(ts)[::-1][:n]
    if not (np.all(np.diff(ts) < 0) and ts[-1] >= 0 and ts[0] <= T - 1):
        raise ValueError(
            f"{spacing!r} spacing of {n} steps (scheduler={scheduler!r}, steps_offset={steps_offset}) gives timesteps "
            f"that are not distinct indices in [0, {T - 1}]: use fewer steps or a smaller steps_offset"
        )
    return ts
