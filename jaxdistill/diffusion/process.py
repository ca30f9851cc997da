"""Noise processes x_t = alpha(t) x0 + sigma(t) eps, eps ~ N(0, I).

Every process is a frozen dataclass with closed-form ``alpha``, ``sigma``, their time
derivatives, ``logsnr(t) = 2 (log alpha - log sigma)`` and its inverse. ``t`` is the
process's own time; ``[t_min, t_max]`` is the range used for sampling. All processes
satisfy alpha(0) = 1, sigma(0) = 0 except VE/EDM, where alpha = 1 always and
sigma(0) = 0 as well (t = sigma), so t = 0 is clean data everywhere. The discrete DDPM
process keeps that invariant by putting training index k at time t = k + 1.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.types import Array
from jaxdistill.diffusion.ddpm_grid import ddpm_alpha_bars, ddpm_betas

ArrayLike = Array | float


def _f32(t: ArrayLike) -> Array:
    return jnp.asarray(t, jnp.float32)


def broadcast_to(t: ArrayLike, x: Array) -> Array:
    """Reshape a per-sample ``t`` of shape [B] to [B, 1, ..., 1] so it broadcasts over ``x``.

    A scalar ``t`` is returned as a 0-d array.
    """
    t = _f32(t)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class NoiseProcess(abc.ABC):
    """Base class: x_t = alpha(t) x0 + sigma(t) eps on t in [0, t_max]."""

    t_min: float
    t_max: float

    @abc.abstractmethod
    def alpha(self, t: ArrayLike) -> Array:
        """Signal scale alpha(t)."""

    @abc.abstractmethod
    def sigma(self, t: ArrayLike) -> Array:
        """Noise scale sigma(t)."""

    @abc.abstractmethod
    def dalpha(self, t: ArrayLike) -> Array:
        """d alpha / dt."""

    @abc.abstractmethod
    def dsigma(self, t: ArrayLike) -> Array:
        """d sigma / dt."""

    @abc.abstractmethod
    def t_from_logsnr(self, lam: ArrayLike) -> Array:
        """Inverse of ``logsnr``."""

    @abc.abstractmethod
    def sample_t(self, rng: Array, n: int) -> Array:
        """Default training-time distribution of t, shape [n]."""

    def logsnr(self, t: ArrayLike) -> Array:
        """lambda(t) = 2 (log alpha(t) - log sigma(t)); +inf at t = 0."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def sigma_ratio(self, t: ArrayLike) -> Array:
        """s(t) = sigma / alpha, the EDM noise level of the scaled variable x / alpha."""
        return self.sigma(t) / self.alpha(t)

    def t_from_sigma_ratio(self, s: ArrayLike) -> Array:
        """Inverse of ``sigma_ratio`` (via lambda = -2 log s)."""
        return self.t_from_logsnr(-2.0 * jnp.log(_f32(s)))

    def prior_sample(
        self, rng: Array, shape: tuple[int, ...], mean: Optional[Array | tuple[float, ...]] = None, t: Optional[ArrayLike] = None
    ) -> Array:
        """A sample of the prior x_t ~ N(alpha(t) mu, sigma(t)^2 I) at ``t`` (default t_max), ``shape`` = [B, *event].

        mu is the data mean (an event-shaped array or its flat tuple; ``None``: zero). The data's
        covariance term alpha(t)^2 Cov is neglected beside sigma(t)^2 I; the mean is not, since
        under VE/EDM (alpha = 1) an offset of |mu| / sigma_max moves mass between modes.
        """
        t = self.t_max if t is None else t
        noise = self.sigma(t) * jax.random.normal(rng, shape, jnp.float32)
        if mean is None:
            return noise
        return self.alpha(t) * jnp.asarray(mean, jnp.float32).reshape(shape[1:]) + noise

    def add_noise(self, x0: Array, eps: Array, t: ArrayLike) -> Array:
        """x_t = alpha(t) x0 + sigma(t) eps with t of shape [B] (or scalar)."""
        return broadcast_to(self.alpha(t), x0) * x0 + broadcast_to(self.sigma(t), x0) * eps

    def _uniform_t(self, rng: Array, n: int) -> Array:
        return jax.random.uniform(rng, (n,), jnp.float32, self.t_min, self.t_max)


@dataclasses.dataclass(frozen=True)
class VPCosine(NoiseProcess):
    """Cosine variance-preserving schedule (Nichol & Dhariwal 2021), continuous time.

    alpha(t) = cos(phi(t)) / cos(phi(0)), phi(t) = (t + s) / (1 + s) * pi / 2,
    sigma = sqrt(1 - alpha^2). alpha(1) = 0, so the sampling range is clipped in logSNR:
    t_min = t(logsnr_max), t_max = t(logsnr_min), keeping alpha, sigma > 0 there.
    """

    s: float = 0.008
    logsnr_min: float = -12.0
    logsnr_max: float = 12.0

    @property
    def _phi0(self) -> float:
        return self.s / (1.0 + self.s) * math.pi / 2.0

    @property
    def _dphi(self) -> float:
        return math.pi / (2.0 * (1.0 + self.s))

    @functools.cached_property
    def t_min(self) -> float:
        with jax.ensure_compile_time_eval():
            return float(self.t_from_logsnr(self.logsnr_max))

    @functools.cached_property
    def t_max(self) -> float:
        with jax.ensure_compile_time_eval():
            return float(self.t_from_logsnr(self.logsnr_min))

    def alpha(self, t):
        return jnp.cos(self._phi0 + self._dphi * _f32(t)) / math.cos(self._phi0)

    def sigma(self, t):
        # 1 - cos^2(phi)/cos^2(phi0) = sin(phi - phi0) sin(phi + phi0) / cos^2(phi0), cancellation-free.
        d = self._dphi * _f32(t)
        prod = jnp.sin(d) * jnp.sin(d + 2.0 * self._phi0)
        return jnp.sqrt(jnp.maximum(prod, 0.0)) / math.cos(self._phi0)

    def dalpha(self, t):
        return -self._dphi * jnp.sin(self._phi0 + self._dphi * _f32(t)) / math.cos(self._phi0)

    def dsigma(self, t):
        return -self.alpha(t) * self.dalpha(t) / self.sigma(t)

    def t_from_logsnr(self, lam):
        # cos(phi) = alpha cos(phi0); sin(phi) = sqrt(sigma^2 + alpha^2 sin^2(phi0)).
        lam = _f32(lam)
        a2, s2 = jax.nn.sigmoid(lam), jax.nn.sigmoid(-lam)
        phi = jnp.arctan2(jnp.sqrt(s2 + a2 * math.sin(self._phi0) ** 2), jnp.sqrt(a2) * math.cos(self._phi0))
        return jnp.maximum(phi - self._phi0, 0.0) / self._dphi

    def sample_t(self, rng, n):
        return self._uniform_t(rng, n)


@dataclasses.dataclass(frozen=True)
class VPLinear(NoiseProcess):
    """Linear-beta VP SDE (DDPM in continuous time, Song et al. 2021).

    beta(t) = beta_min + t (beta_max - beta_min),
    log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2, sigma = sqrt(1 - alpha^2).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def _log_alpha(self, t: Array) -> Array:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _beta(self, t: Array) -> Array:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return jnp.exp(self._log_alpha(_f32(t)))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(_f32(t))))

    def logsnr(self, t):
        la2 = 2.0 * self._log_alpha(_f32(t))
        return la2 - jnp.log(-jnp.expm1(la2))

    def dalpha(self, t):
        t = _f32(t)
        return -0.5 * self._beta(t) * self.alpha(t)

    def dsigma(self, t):
        return -self.alpha(t) * self.dalpha(t) / self.sigma(t)

    def t_from_logsnr(self, lam):
        # -2 log alpha = softplus(-lam) =: c solves (bmax - bmin)/2 t^2 + bmin t = c.
        c = jax.nn.softplus(-_f32(lam))
        db = self.beta_max - self.beta_min
        return 2.0 * c / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * db * c))

    def sample_t(self, rng, n):
        return self._uniform_t(rng, n)


@dataclasses.dataclass(frozen=True)
class VE(NoiseProcess):
    """Variance-exploding process (Song et al. 2021): alpha = 1, sigma = t.

    Training times are lognormal, ln t ~ N(p_mean, p_std^2) (Karras et al. 2022), unclipped.
    """

    t_min: float = 0.01
    t_max: float = 50.0
    p_mean: float = -1.2
    p_std: float = 1.2

    def alpha(self, t):
        return jnp.ones_like(_f32(t))

    def sigma(self, t):
        return _f32(t)

    def logsnr(self, t):
        return -2.0 * jnp.log(_f32(t))

    def dalpha(self, t):
        return jnp.zeros_like(_f32(t))

    def dsigma(self, t):
        return jnp.ones_like(_f32(t))

    def t_from_logsnr(self, lam):
        return jnp.exp(-0.5 * _f32(lam))

    def t_from_sigma_ratio(self, s):
        return _f32(s)

    def sample_t(self, rng, n):
        return jnp.exp(self.p_mean + self.p_std * jax.random.normal(rng, (n,), jnp.float32))


@dataclasses.dataclass(frozen=True)
class EDM(VE):
    """EDM process (Karras et al. 2022): alpha = 1, sigma = t in [0.002, 80], sigma_data = 0.5."""

    t_min: float = 0.002
    t_max: float = 80.0
    sigma_data: float = 0.5


@dataclasses.dataclass(frozen=True)
class RectifiedFlow(NoiseProcess):
    """Rectified flow / linear interpolant (Liu et al. 2022; Lipman et al. 2022).

    alpha = 1 - t, sigma = t on [0, 1]; at t_max = 1 alpha = 0 (logsnr = -inf, sigma_ratio = inf).
    """

    t_min: float = 1e-3
    t_max: float = 1.0

    def alpha(self, t):
        return 1.0 - _f32(t)

    def sigma(self, t):
        return _f32(t)

    def dalpha(self, t):
        return -jnp.ones_like(_f32(t))

    def dsigma(self, t):
        return jnp.ones_like(_f32(t))

    def t_from_logsnr(self, lam):
        return jax.nn.sigmoid(-0.5 * _f32(lam))

    def t_from_sigma_ratio(self, s):
        return 1.0 / (1.0 + 1.0 / _f32(s))

    def sample_t(self, rng, n):
        return self._uniform_t(rng, n)


@dataclasses.dataclass(frozen=True)
class TrigFlow(NoiseProcess):
    """TrigFlow (Lu & Song 2024): alpha = cos t, sigma = sigma_data sin t, t in [0, pi/2].

    alpha is clipped at 0 so that float32(pi/2) gives alpha = 0 exactly.
    """

    sigma_data: float = 0.5
    t_min: float = math.atan(0.002 / 0.5)
    t_max: float = math.pi / 2

    def alpha(self, t):
        return jnp.maximum(jnp.cos(_f32(t)), 0.0)

    def sigma(self, t):
        return self.sigma_data * jnp.sin(_f32(t))

    def dalpha(self, t):
        return -jnp.sin(_f32(t))

    def dsigma(self, t):
        return self.sigma_data * jnp.cos(_f32(t))

    def t_from_logsnr(self, lam):
        return jnp.arctan(jnp.exp(-0.5 * _f32(lam)) / self.sigma_data)

    def t_from_sigma_ratio(self, s):
        return jnp.arctan(_f32(s) / self.sigma_data)

    def sample_t(self, rng, n):
        return self._uniform_t(rng, n)


class _DDPMTables(NamedTuple):
    """Per-time tables of DDPM at t = 0, 1, ..., T (+ one extrapolated point at T + 1)."""

    s: np.ndarray  # float32 sigma ratio sqrt((1 - abar) / abar)
    alpha: np.ndarray  # float32(sqrt(abar)), correctly rounded from float64
    sigma: np.ndarray  # float32(sqrt(1 - abar))
    abar: np.ndarray  # float32(abar)


def _rsqrt1p(s: Array) -> Array:
    """1 / sqrt(1 + s^2): alpha of the VP point with sigma ratio s."""
    return jax.lax.rsqrt(1.0 + s * s)


@dataclasses.dataclass(frozen=True)
class DDPM(NoiseProcess):
    """Discrete DDPM (Ho et al. 2020) of T = ``num_train_timesteps`` steps, defined by its betas.

    abar_k = prod_{j<=k} (1 - beta_j) for training index k = 0..T-1 (``ddpm_grid.ddpm_betas``:
    ``schedule`` linear / scaled_linear / cosine, or ``"given"`` with ``betas``). Process time is
    t = k + 1 in [0, T], with abar = 1 at t = 0 (clean data; diffusers DDIM's
    ``set_alpha_to_one``), so t_min = 1 is the least noisy trained step and t_max = T the noisiest.
    A network trained on diffusers' indices k is fed ``timestep(t) = t - 1`` by its wrapper; the
    Denoiser passes process time, as for every process, since exact apply functions (the mixture
    teacher, ``reparam``) read alpha(t) from it.

    Between integers the sigma ratio s = sqrt((1 - abar) / abar) is linear in t (diffusers'
    EulerDiscreteScheduler interpolates its sigmas so at fractional timesteps), and
    alpha = 1 / sqrt(1 + s^2), sigma = s alpha. At integer t the tables are read with no
    interpolation: alpha_bar(t) = float32(abar) and alpha(t) = float32(sqrt(abar)) exactly (each
    off-table value is the table value plus a difference that vanishes exactly at the node).
    Training times are uniform on the integers 1..T, as in DDPM.

    Tables are computed once in float64 numpy; ``betas`` is stored as a tuple so the process stays
    hashable (it is a jit static argument).
    """

    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_train_timesteps: int = 1000
    betas: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.schedule == "given" and len(self.betas) != self.num_train_timesteps:
            raise ValueError(f"num_train_timesteps={self.num_train_timesteps} must equal len(betas)={len(self.betas)} with schedule='given'")
        self._tables  # validates the schedule fields

    @functools.cached_property
    def _tables(self) -> _DDPMTables:
        betas = ddpm_betas(
            self.schedule, beta_start=self.beta_start, beta_end=self.beta_end, num_train_timesteps=self.num_train_timesteps, betas=self.betas
        )
        abar = np.concatenate([[1.0], ddpm_alpha_bars(betas)])
        s = np.sqrt((1.0 - abar) / abar)
        s = np.append(s, 2.0 * s[-1] - s[-2])  # linear extrapolation past t_max
        abar = np.append(abar, 1.0 / (1.0 + s[-1] ** 2))
        f32 = lambda a: a.astype(np.float32)  # noqa: E731
        return _DDPMTables(f32(s), f32(np.sqrt(abar)), f32(np.sqrt(1.0 - abar)), f32(abar))

    @property
    def t_min(self) -> float:
        return 1.0

    @property
    def t_max(self) -> float:
        return float(self.num_train_timesteps)

    def timestep(self, t: ArrayLike) -> Array:
        """The training index k = t - 1 that diffusers-style networks take as their timestep input."""
        return _f32(t) - 1.0

    def _node(self, t: ArrayLike) -> tuple[Array, Array, Array]:
        """(k, s(t), s_k): the table node k = clip(floor(t), 0, T) and the sigma ratio at t and at k."""
        t = _f32(t)
        k = jnp.clip(jnp.floor(t), 0, self.num_train_timesteps).astype(jnp.int32)
        s = jnp.asarray(self._tables.s)
        return k, s[k] + (t - k) * (s[k + 1] - s[k]), s[k]

    def _slope(self, t: ArrayLike) -> Array:
        k, _, _ = self._node(t)
        s = jnp.asarray(self._tables.s)
        return s[k + 1] - s[k]

    def sigma_ratio(self, t):
        return self._node(t)[1]

    def alpha_bar(self, t: ArrayLike) -> Array:
        """abar(t) = 1 / (1 + s(t)^2); exactly float32(abar_{t-1}) at integer t."""
        k, s, sk = self._node(t)
        return jnp.asarray(self._tables.abar)[k] + (1.0 / (1.0 + s * s) - 1.0 / (1.0 + sk * sk))

    def alpha(self, t):
        k, s, sk = self._node(t)
        return jnp.asarray(self._tables.alpha)[k] + (_rsqrt1p(s) - _rsqrt1p(sk))

    def sigma(self, t):
        k, s, sk = self._node(t)
        return jnp.asarray(self._tables.sigma)[k] + (s * _rsqrt1p(s) - sk * _rsqrt1p(sk))

    def logsnr(self, t):
        return -2.0 * jnp.log(self.sigma_ratio(t))

    def dalpha(self, t):
        s = self.sigma_ratio(t)
        return -s * _rsqrt1p(s) ** 3 * self._slope(t)

    def dsigma(self, t):
        return _rsqrt1p(self.sigma_ratio(t)) ** 3 * self._slope(t)

    def t_from_sigma_ratio(self, s):
        """Inverse of the piecewise-linear s(t): t = k + (s - s_k) / (s_{k+1} - s_k); exact at the nodes."""
        s = _f32(s)
        table = jnp.asarray(self._tables.s)
        k = jnp.clip(jnp.searchsorted(table[:-1], s, side="right") - 1, 0, self.num_train_timesteps)
        return k + (s - table[k]) / (table[k + 1] - table[k])

    def t_from_logsnr(self, lam):
        return self.t_from_sigma_ratio(jnp.exp(-0.5 * _f32(lam)))

    def sample_t(self, rng, n):
        return jax.random.randint(rng, (n,), 1, self.num_train_timesteps + 1).astype(jnp.float32)


PROCESSES: dict[str, type[NoiseProcess]] = {
    "vp_cosine": VPCosine,
    "vp_linear": VPLinear,
    "ve": VE,
    "edm": EDM,
    "rectified_flow": RectifiedFlow,
    "trigflow": TrigFlow,
    "ddpm": DDPM,
}


def get_process(name: str, **kwargs) -> NoiseProcess:
    """Build a process by name; ``kwargs`` override its dataclass fields."""
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; choose one of {tuple(PROCESSES)}")
    return PROCESSES[name](**kwargs)
