"""Euler integration of a rectified-flow velocity field and the straightness of its paths
(Liu, Gong & Liu 2023, "Flow Straight and Fast", Def. 2.3 / eq. 5).

Time runs as in ``process.RectifiedFlow``: x_1 = z is noise, x_0 is data and dx/dt = v(x, t). A
path from z to its end x_0 is straight when its velocity is the constant z - x_0 everywhere, so

    S = E int_0^1 || (z - x_0) - v(x_t, t) ||^2 dt

is 0 exactly for straight paths. ``straightness`` estimates it along the N-step Euler path from z
(x_0 its end point, the integral a Riemann sum over the steps' velocities), with ||.||^2 the mean
over the event dimensions (the project's ``squared_l2`` scale), per sample.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.diffusion.process import broadcast_to
from jaxdistill.losses import squared_l2

VelocityFn = Callable[[Array, Array], Array]  # (x [B, ...], t [B]) -> dx/dt


def euler_path(velocity: VelocityFn, z: Array, nfe: int) -> tuple[Array, Array]:
    """(x_0, velocities [nfe, B, ...]): nfe uniform Euler steps x_{t - h} = x_t - h v(x_t, t), h = 1 / nfe, from x_1 = z."""
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    h = jnp.full((z.shape[0],), 1.0 / nfe, jnp.float32)

    def body(x, i):
        v = velocity(x, 1.0 - i * h)
        return x - broadcast_to(h, x) * v, v

    return jax.lax.scan(body, z, jnp.arange(nfe))


def euler_sample(velocity: VelocityFn, z: Array, nfe: int) -> Array:
    """x_0 of ``euler_path``: the flow's sample from z with nfe Euler steps."""
    return euler_path(velocity, z, nfe)[0]


def straightness(velocity: VelocityFn, z: Array, nfe: int) -> Array:
    """Per-sample S_b = 1/N sum_i || (z_b - x_0,b) - v(x_{t_i}, t_i)_b ||^2 along the N-step Euler path, shape [B]."""
    x0, velocities = euler_path(velocity, z, nfe)
    chord = z - x0
    return jnp.mean(jax.vmap(lambda v: squared_l2(chord, v))(velocities), axis=0)
