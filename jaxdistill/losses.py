"""Loss functions every method family shares: pure functions of arrays.

Per-sample distances return shape ``[B]``; GAN losses reduce a batch of discriminator logits
(any shape: one per sample, or one per feature position) to a scalar.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdistill.core.types import Array

GAN_LOSSES = ("hinge", "nonsaturating")


def mean_per_sample(x: Array) -> Array:
    """Mean over every axis but the first, shape [B]."""
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1)


def squared_l2(a: Array, b: Array) -> Array:
    """Per-sample ||a - b||^2 / d (mean over the event dimensions), shape [B]."""
    return mean_per_sample(jnp.square(a - b))


def pseudo_huber(a: Array, b: Array, c: float) -> Array:
    """Per-sample sqrt(||a - b||^2 + c^2) - c with the squared norm summed over all d dimensions
    (Song & Dhariwal 2023, eq. 9), shape [B]."""
    diff = (a - b).reshape(a.shape[0], -1)
    return jnp.sqrt(jnp.sum(jnp.square(diff), axis=1) + c**2) - c


def mean_pseudo_huber(a: Array, b: Array, c: float) -> Array:
    """Per-sample mean over the d dimensions of the elementwise sqrt((a - b)^2 + c^2) - c (the
    pseudo-Huber loss of diffusers' latent consistency distillation scripts), shape [B]."""
    return mean_per_sample(jnp.sqrt(jnp.square(a - b) + c**2) - c)


def discriminator_loss(logit_real: Array, logit_fake: Array, kind: str) -> Array:
    """The discriminator's GAN loss. ``hinge`` (Lim & Ye 2017): mean relu(1 - D_real) +
    mean relu(1 + D_fake). ``nonsaturating`` (Goodfellow et al. 2014; its discriminator side is
    the logistic loss, the binary cross-entropy of real against fake): mean softplus(-D_real) +
    mean softplus(D_fake)."""
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - logit_real)) + jnp.mean(jax.nn.relu(1.0 + logit_fake))
    if kind == "nonsaturating":
        return jnp.mean(jax.nn.softplus(-logit_real)) + jnp.mean(jax.nn.softplus(logit_fake))
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def generator_gan_loss(logit_fake: Array, kind: str) -> Array:
    """The generator's GAN loss: ``hinge`` -mean D_fake; ``nonsaturating`` mean softplus(-D_fake)
    (Goodfellow et al. 2014)."""
    if kind == "hinge":
        return -jnp.mean(logit_fake)
    if kind == "nonsaturating":
        return jnp.mean(jax.nn.softplus(-logit_fake))
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def r1_penalty(logit_fn: Callable[[Sequence[Array]], Array], features: Sequence[Array], gamma: float) -> Array:
    """gamma / 2 * mean_b sum ||d D(f)_b / d f_b||^2 over every feature array (R1, Mescheder et
    al. 2018). ``logit_fn`` must treat samples independently, so the gradient of sum_b D(f)_b
    gives each sample's own gradient."""
    grads = jax.grad(lambda f: jnp.sum(logit_fn(f)))(list(features))
    per_sample = sum(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1) for g in grads)
    return 0.5 * gamma * jnp.mean(per_sample)
