"""A network of some prediction kind, viewed as a denoiser of a noise process.

Classifier-free guidance (Ho & Salimans 2022) uses one convention throughout:

    x0_cfg = x0_u + w (x0_c - x0_u),   w = 1 is the plain conditional model, w = 0 the unconditional one.

The unconditional branch is ``core.conditioning.unconditional(cond)``: ``NULL_LABEL`` for class
labels, the negative (or empty) prompt's embeddings for a ``TextCondition``.

Because eps, v, the score and the PF-ODE velocity are all affine in x0 at fixed (x, t),
the same formula holds in any of those parameterisations.

``extra`` ([B] or [B, m]) carries additional scalar conditions of networks built with
``num_times > 1`` (a step size, a second time, a guidance weight); they are appended as
columns after the network's noise-level input and are never rescaled.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import jax.numpy as jnp

from jaxdistill.core.conditioning import guidance_batch
from jaxdistill.core.types import ApplyFn, Array, PyTree
from jaxdistill.diffusion.predict import PRECONDITIONED, PREDICTIONS, edm_inputs, eps_from_x0, to_x0
from jaxdistill.diffusion.process import NoiseProcess, broadcast_to

Guidance = Optional[float | Array]


@dataclasses.dataclass(frozen=True)
class Denoiser:
    """``apply_fn`` outputs a prediction of kind ``prediction`` for ``process``; all methods are pure."""

    apply_fn: ApplyFn
    process: NoiseProcess
    prediction: str
    sigma_data: float = 0.5

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction kind {self.prediction!r}; choose one of {PREDICTIONS}")

    def _t(self, t: float | Array, x: Array) -> Array:
        return jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))

    def raw(
        self,
        params: PyTree,
        x: Array,
        t: float | Array,
        cond: Optional[Array] = None,
        *,
        train: bool = False,
        rngs: Optional[Mapping[str, Array]] = None,
        extra: Optional[Array] = None,
    ) -> Array:
        """The network output; kinds ``"edm"``/``"cm"`` feed (c_in x / alpha, c_noise), others (x, t)."""
        net_x, net_t = self._net_inputs(x, t, extra)
        return self.apply_fn(params, net_x, net_t, cond, train=train, rngs=rngs)

    def features(
        self,
        params: PyTree,
        x: Array,
        t: float | Array,
        cond: Optional[Array] = None,
        *,
        train: bool = False,
        rngs: Optional[Mapping[str, Array]] = None,
        extra: Optional[Array] = None,
    ) -> list[Array]:
        """The network's intermediate features at (x, t) (its ``return_features`` output), the
        backbone of feature distances and discriminator heads."""
        net_x, net_t = self._net_inputs(x, t, extra)
        try:
            _, layers = self.apply_fn(params, net_x, net_t, cond, train=train, rngs=rngs, return_features=True)
        except TypeError as err:
            raise ValueError("this network does not return intermediate features (no return_features argument)") from err
        return list(layers)

    def _net_inputs(self, x: Array, t: float | Array, extra: Optional[Array]) -> tuple[Array, Array]:
        t = self._t(t, x)
        net_x, net_t = x, t
        if self.prediction in PRECONDITIONED:
            net_x, net_t = edm_inputs(x, t, self.process, self.sigma_data)
        if extra is not None:
            extra = jnp.asarray(extra, jnp.float32)
            extra = jnp.broadcast_to(extra, (x.shape[0],)) if extra.ndim < 1 else extra
            net_t = jnp.concatenate([net_t[:, None], extra.reshape(x.shape[0], -1)], axis=1)
        return net_x, net_t

    def _x0(self, params, x, t, cond, train, rngs, extra=None) -> Array:
        out = self.raw(params, x, t, cond, train=train, rngs=rngs, extra=extra)
        return to_x0(out, self.prediction, x, t, self.process, sigma_data=self.sigma_data)

    def x0(
        self,
        params: PyTree,
        x: Array,
        t: float | Array,
        cond: Optional[Array] = None,
        *,
        guidance: Guidance = None,
        train: bool = False,
        rngs: Optional[Mapping[str, Array]] = None,
        extra: Optional[Array] = None,
    ) -> Array:
        """E[x0 | x_t]; with ``guidance`` w (float or [B]) the CFG estimate x0_u + w (x0_c - x0_u).

        The guided estimate is one network call on the batch [x; x] with conditions
        [cond; unconditional(cond)] (labels: NULL_LABEL; text: the negative prompt).
        """
        t = self._t(t, x)
        if guidance is None:
            return self._x0(params, x, t, cond, train, rngs, extra)
        both_cond = guidance_batch(cond)
        if extra is not None:
            extra = jnp.asarray(extra, jnp.float32)
            extra = jnp.concatenate([extra, extra]) if extra.ndim > 0 else extra
        both = self._x0(
            params,
            jnp.concatenate([x, x]),
            jnp.concatenate([t, t]),
            both_cond,
            train,
            rngs,
            extra,
        )
        x0_c, x0_u = jnp.split(both, 2)
        w = broadcast_to(jnp.asarray(guidance, jnp.float32), x)
        return x0_u + w * (x0_c - x0_u)

    def eps(self, params, x, t, cond=None, *, guidance: Guidance = None, train=False, rngs=None) -> Array:
        """eps = (x - alpha x0) / sigma."""
        t = self._t(t, x)
        x0 = self.x0(params, x, t, cond, guidance=guidance, train=train, rngs=rngs)
        return eps_from_x0(x0, x, t, self.process)

    def v(self, params, x, t, cond=None, *, guidance: Guidance = None, train=False, rngs=None) -> Array:
        """v = alpha eps - sigma x0 (Salimans & Ho 2022)."""
        t = self._t(t, x)
        x0 = self.x0(params, x, t, cond, guidance=guidance, train=train, rngs=rngs)
        a, s = broadcast_to(self.process.alpha(t), x), broadcast_to(self.process.sigma(t), x)
        return a * eps_from_x0(x0, x, t, self.process) - s * x0

    def velocity(self, params, x, t, cond=None, *, guidance: Guidance = None, train=False, rngs=None) -> Array:
        """PF-ODE velocity dx/dt = alpha'(t) x0 + sigma'(t) eps."""
        t = self._t(t, x)
        x0 = self.x0(params, x, t, cond, guidance=guidance, train=train, rngs=rngs)
        da, ds = broadcast_to(self.process.dalpha(t), x), broadcast_to(self.process.dsigma(t), x)
        return da * x0 + ds * eps_from_x0(x0, x, t, self.process)

    def score(self, params, x, t, cond=None, *, guidance: Guidance = None, train=False, rngs=None) -> Array:
        """grad_x log p_t(x) = -eps / sigma."""
        t = self._t(t, x)
        eps = self.eps(params, x, t, cond, guidance=guidance, train=train, rngs=rngs)
        return -eps / broadcast_to(self.process.sigma(t), x)
