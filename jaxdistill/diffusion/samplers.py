"""Process-generic samplers driven by a denoiser ``x0_fn(x, t) -> x0`` (t a scalar).

Every sampler is a ``lax.scan`` over the steps (t_i, t_{i+1}) of a decreasing grid ``ts``
and is jit-able. With eps = (x - alpha x0) / sigma the probability-flow ODE in the
process's own time is dx/dt = alpha'(t) x0 + sigma'(t) eps. Stochastic samplers draw step
i's noise from ``fold_in(rng, i)``.

Methods and x0_fn evaluations for a grid of N steps:

* ``euler``          : Euler on the PF-ODE; N.
* ``heun``           : Heun (Karras et al. 2022, Alg. 1); Euler on a step that lands on
                       sigma = 0; 2N - 1 if the grid ends at sigma = 0, else 2N.
* ``ddim``           : DDIM (Song et al. 2021) with stochasticity ``eta``; N.
* ``ancestral``      : DDIM with eta = 1 (DDPM-like ancestral sampling); N.
* ``dpmpp_2m``       : DPM-Solver++(2M) (Lu et al. 2022); N.
* ``edm_stochastic`` : Karras et al. (2022) Alg. 2 (churn, then a Heun step); as ``heun``.
* ``consistency``    : multistep consistency sampling (Song et al. 2023, Alg. 1); N.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.diffusion.process import NoiseProcess, broadcast_to
from jaxdistill.diffusion.steps import get_grid

X0Fn = Callable[[Array, Array], Array]
VelocityFn = Callable[[Array, Array], Array]

METHODS = ("euler", "heun", "ddim", "ancestral", "dpmpp_2m", "edm_stochastic", "consistency")
STOCHASTIC = ("ancestral", "edm_stochastic", "consistency")


def _scan(step: Callable, init, ts: Array):
    """Run ``step(carry, (t, t_next, i)) -> carry`` over consecutive grid points."""
    ts = jnp.asarray(ts, jnp.float32)
    idx = jnp.arange(ts.shape[0] - 1)
    carry, _ = jax.lax.scan(lambda c, a: (step(c, a), None), init, (ts[:-1], ts[1:], idx))
    return carry


def _velocity(process: NoiseProcess, x: Array, t: Array, x0: Array) -> Array:
    """dx/dt = alpha' x0 + sigma' (x - alpha x0) / sigma."""
    eps = (x - process.alpha(t) * x0) / process.sigma(t)
    return process.dalpha(t) * x0 + process.dsigma(t) * eps


def euler_step(velocity: VelocityFn, x: Array, t: Array, t_next: Array) -> Array:
    """x + (t_next - t) v(x, t): one Euler step of dx/dt = v; t scalar or per sample [B]."""
    return x + broadcast_to(t_next - t, x) * velocity(x, t)


def heun_step(velocity: VelocityFn, x: Array, t: Array, t_next: Array) -> Array:
    """One Heun step of dx/dt = v (Karras et al. 2022, Alg. 1 without churn): the Euler point
    x_E = x + h v(x, t), then x + h/2 (v(x, t) + v(x_E, t_next)), h = t_next - t; t scalar or
    per sample [B]."""
    h = broadcast_to(t_next - t, x)
    d = velocity(x, t)
    x_euler = x + h * d
    return x + 0.5 * h * (d + velocity(x_euler, t_next))


def _heun_step(x0_fn: X0Fn, process: NoiseProcess, x: Array, t: Array, t_next: Array) -> Array:
    """Heun from t to t_next (scalar times); plain Euler when sigma(t_next) = 0 (one evaluation fewer)."""
    velocity = lambda y, s: _velocity(process, y, s, x0_fn(y, s))  # noqa: E731
    return jax.lax.cond(
        process.sigma(t_next) > 0,
        lambda _: heun_step(velocity, x, t, t_next),
        lambda _: euler_step(velocity, x, t, t_next),
        None,
    )


def _ddim_step(process: NoiseProcess, x: Array, x0: Array, t: Array, t_next: Array, eta: float, key: Optional[Array]) -> Array:
    """x' = alpha' x0 + sqrt(sigma'^2 - c^2) eps + c z, c = eta sigma' sqrt(1 - (alpha sigma' / (alpha' sigma))^2).

    c^2 is the variance of q(x_{t'} | x_t, x0) for the Markov forward process; the ratio is
    written as alpha sigma' / (alpha' sigma) so alpha = 0 (pure noise) is fine.
    """
    a, s = process.alpha(t), process.sigma(t)
    a1, s1 = process.alpha(t_next), process.sigma(t_next)
    eps = (x - a * x0) / s
    out = a1 * x0
    if eta == 0.0:
        return out + s1 * eps
    r = a * s1 / (a1 * s)
    c = eta * s1 * jnp.sqrt(jnp.clip(1.0 - r**2, 0.0, 1.0))
    z = jax.random.normal(key, x.shape, x.dtype)
    return out + jnp.sqrt(jnp.maximum(s1**2 - c**2, 0.0)) * eps + c * z


def _euler(x0_fn, process, x, ts, rng, opts):
    velocity = lambda y, s: _velocity(process, y, s, x0_fn(y, s))  # noqa: E731
    return _scan(lambda x, a: euler_step(velocity, x, a[0], a[1]), x, ts)


def _heun(x0_fn, process, x, ts, rng, opts):
    return _scan(lambda x, a: _heun_step(x0_fn, process, x, a[0], a[1]), x, ts)


def _ddim(x0_fn, process, x, ts, rng, opts, eta=None):
    eta = opts["eta"] if eta is None else eta

    def step(x, a):
        t, t_next, i = a
        key = None if eta == 0.0 else jax.random.fold_in(rng, i)
        return _ddim_step(process, x, x0_fn(x, t), t, t_next, eta, key)

    return _scan(step, x, ts)


def _ancestral(x0_fn, process, x, ts, rng, opts):
    return _ddim(x0_fn, process, x, ts, rng, opts, eta=1.0)


def _dpmpp_2m(x0_fn, process, x, ts, rng, opts):
    """DPM-Solver++(2M), data prediction, in lambda = logsnr / 2 with h = lambda' - lambda:

    x' = (sigma'/sigma) x - alpha' expm1(-h) D, D = x0_i + (h / (2 h_prev)) (x0_i - x0_{i-1}).
    The first step and any step with h = inf (landing on sigma = 0, where x' = x0) are
    first order; h_prev = inf (starting from alpha = 0) gives a first-order step as well.
    With ``lower_order_final`` the last step is first order too when the grid has fewer than
    15 steps (Lu et al. 2022b's sampler and diffusers' DPMSolverMultistepScheduler: it steadies
    few-step sampling); it only matters for grids that end above sigma = 0.
    """
    n = jnp.asarray(ts).shape[0] - 1
    first_order_last = opts["lower_order_final"] and n < 15

    def step(carry, a):
        x, x0_prev, h_prev = carry
        t, t_next, i = a
        x0 = x0_fn(x, t)
        h = 0.5 * (process.logsnr(t_next) - process.logsnr(t))
        second = (i > 0) & jnp.isfinite(h) & ~(first_order_last & (i == n - 1))
        k = jnp.where(second, h / (2.0 * jnp.where(second, h_prev, 1.0)), 0.0)
        d = x0 + k * (x0 - x0_prev)
        ratio = process.sigma(t_next) / process.sigma(t)
        x = ratio * x - process.alpha(t_next) * jnp.expm1(-h) * d
        return x, x0, h

    x, _, _ = _scan(step, (x, jnp.zeros_like(x), jnp.float32(0.0)), ts)
    return x


def _edm_stochastic(x0_fn, process, x, ts, rng, opts):
    """Karras et al. (2022) Alg. 2 for a general process.

    With s = sigma/alpha, gamma = min(S_churn / N, sqrt(2) - 1) if S_tmin <= s_i <= S_tmax
    (and s_i finite) else 0. Noise is raised to s_hat = (1 + gamma) s_i by the forward
    transition x_hat = (alpha_hat / alpha) x + sqrt(sigma_hat^2 - (alpha_hat sigma / alpha)^2) S_noise z,
    then one Heun step goes from t_hat to t_{i+1}.
    """
    n = jnp.asarray(ts).shape[0] - 1
    gamma_max = min(opts["s_churn"] / n, math.sqrt(2.0) - 1.0)

    def step(x, a):
        t, t_next, i = a
        s = process.sigma_ratio(t)
        churn = (s >= opts["s_tmin"]) & (s <= opts["s_tmax"]) & jnp.isfinite(s) & (gamma_max > 0)
        t_hat = jnp.where(churn, process.t_from_sigma_ratio((1.0 + gamma_max) * s), t)
        a0, a_hat = process.alpha(t), process.alpha(t_hat)
        var = process.sigma(t_hat) ** 2 - (a_hat * process.sigma(t) / a0) ** 2
        z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
        x_hat = jnp.where(churn, (a_hat / a0) * x + jnp.sqrt(jnp.maximum(var, 0.0)) * opts["s_noise"] * z, x)
        return _heun_step(x0_fn, process, x_hat, t_hat, t_next)

    return _scan(step, x, ts)


def _consistency(x0_fn, process, x, ts, rng, opts):
    """x0 = f(x, t_i); x = alpha(t_{i+1}) x0 + sigma(t_{i+1}) z; returns the last x0."""

    def step(carry, a):
        x, _ = carry
        t, t_next, i = a
        x0 = x0_fn(x, t)
        z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
        return process.alpha(t_next) * x0 + process.sigma(t_next) * z, x0

    _, x0 = _scan(step, (x, jnp.zeros_like(x)), ts)
    return x0


_SAMPLERS = {
    "euler": _euler,
    "heun": _heun,
    "ddim": _ddim,
    "ancestral": _ancestral,
    "dpmpp_2m": _dpmpp_2m,
    "edm_stochastic": _edm_stochastic,
    "consistency": _consistency,
}


def sample(
    x0_fn: X0Fn,
    process: NoiseProcess,
    x_init: Array,
    ts: Array,
    method: str,
    *,
    rng: Optional[Array] = None,
    eta: float = 0.0,
    s_churn: float = 40.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.003,
    lower_order_final: bool = True,
) -> Array:
    """Integrate from x_init at ts[0] down the grid ``ts`` with ``method``; returns x at ts[-1].

    ``eta`` is DDIM's stochasticity (Python float; 0 = deterministic). ``s_churn``, ``s_tmin``,
    ``s_tmax`` (in sigma_ratio units) and ``s_noise`` are EDM's stochastic-sampler settings
    (defaults: Karras et al. 2022, ImageNet-64). ``lower_order_final``: ``dpmpp_2m``'s last step
    is first order on grids of fewer than 15 steps (default on, as in Lu et al. 2022b and
    diffusers). ``consistency`` returns its last x0 estimate.
    """
    if method not in _SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {METHODS}")
    if rng is None and (method in STOCHASTIC or (method == "ddim" and eta != 0.0)):
        raise ValueError(f"sampler {method!r} is stochastic and needs rng")
    opts = {"eta": eta, "s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax, "s_noise": s_noise, "lower_order_final": lower_order_final}
    return _SAMPLERS[method](x0_fn, process, jnp.asarray(x_init, jnp.float32), ts, rng, opts)


def steps_for_nfe(method: str, nfe: int) -> tuple[int, bool]:
    """(number of grid steps N, whether the grid ends at sigma = 0) using exactly ``nfe`` evaluations.

    One evaluation per step, ending at 0, for all methods but ``heun``/``edm_stochastic``:
    odd nfe = 2N - 1 ends at 0 (last step Euler); even nfe = 2N uses Heun on all N steps and
    ends at t_min (sigma_ratio 0.002 for EDM), since a Heun step onto sigma = 0 is Euler.
    """
    if method not in _SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {METHODS}")
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    if method in ("heun", "edm_stochastic"):
        return (nfe + 1) // 2, nfe % 2 == 1
    return nfe, True


def sample_nfe(
    x0_fn: X0Fn,
    process: NoiseProcess,
    x_init: Array,
    nfe: int,
    method: str,
    grid: str = "karras",
    rng: Optional[Array] = None,
    grid_kwargs: Optional[dict] = None,
    **sampler_kwargs,
) -> Array:
    """Sample with exactly ``nfe`` x0_fn evaluations on grid ``grid`` (see ``steps_for_nfe``)."""
    n, to_zero = steps_for_nfe(method, nfe)
    ts = get_grid(grid, process, n, t_end=0.0 if to_zero else process.t_min, **(grid_kwargs or {}))
    return sample(x0_fn, process, x_init, ts, method, rng=rng, **sampler_kwargs)
