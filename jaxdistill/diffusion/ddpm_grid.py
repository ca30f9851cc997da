"""Noise levels of a discrete DDPM schedule, to put a generator's steps where a paper's are.

A discrete DDPM (Ho et al. 2020) with T training steps has abar_t = prod_{s<=t} (1 - beta_s),
and step t's EDM noise level (sigma ratio) for unit-variance data is
sigma_t = sqrt((1 - abar_t) / abar_t). Schedules: ``"linear"`` (beta linear from beta_start
to beta_end; DDPM's 1e-4..0.02) and ``"scaled_linear"`` (sqrt(beta) linear; Stable Diffusion's
0.00085..0.012, whose sigma_t runs from 0.0292 at t = 0 to 14.61 at t = 999). Data of standard
deviation sigma_data reaches the same signal-to-noise ratio at sigma_data * sigma_t.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

SCHEDULES = ("linear", "scaled_linear")


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
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    if num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
    if not sigma_data > 0.0:
        raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
    bad = [t for t in steps if int(t) != t or not 0 <= t < num_train_timesteps]
    if bad:
        raise ValueError(f"DDPM steps must be integers in [0, {num_train_timesteps - 1}], got {bad}")
    if schedule == "linear":
        betas = np.linspace(beta_start, beta_end, num_train_timesteps)
    else:
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps) ** 2
    abar = np.cumprod(1.0 - betas)[np.asarray(steps, dtype=int)]
    return tuple(float(s) for s in sigma_data * np.sqrt((1.0 - abar) / abar))
