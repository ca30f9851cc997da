"""diffusers' Flax Stable Diffusion UNet in the library's network contract.

``DiffusersUNet`` is a thin linen wrapper around ``FlaxUNet2DConditionModel`` (kept as its child
``unet``, so its parameters are diffusers' own tree under ``params["unet"]`` and an own Flax port
could take its place): latents come in NHWC and go to diffusers as NCHW; ``t`` is diffusers'
timestep (the DDPM training index k; a teacher built on the ``DDPM`` process feeds it
``process.timestep(t) = t - 1``); ``cond`` is a ``TextCondition`` (token embeddings as the
cross-attention context; SDXL's pooled embedding and time ids as ``added_cond_kwargs``).

``return_features`` also returns the outputs of the mid block and of every up block (NHWC, the
layout diffusers computes in), the taps critics and discriminators read.

``remat`` (gradient checkpointing, Chen et al. 2016): diffusers' Flax UNet has no such option, so
the wrapper runs each of its down, mid and up blocks under ``flax.linen.remat`` (a method
interceptor lifts the block's call): the forward pass keeps only each block's inputs and the
backward pass recomputes the rest. Parameter paths and values are unchanged.

Guidance embedding (LCM, Luo et al. 2023): diffusers' Flax UNet has no ``time_cond_proj_dim`` /
``timestep_cond`` input, so with ``time_cond_proj_dim > 0`` the wrapper adds it the way diffusers'
PyTorch ``TimestepEmbedding`` does: the guidance scale w (``t[:, 1]``, a ``num_times = 2``
network) is embedded as LCM's ``get_guidance_scale_embedding(w - 1)`` (sinusoidal features of
1000 (w - 1)), projected without bias by ``time_cond_proj`` (zero-initialised, so a fresh
projection leaves the teacher's function unchanged) and added to the sinusoidal time features
before the UNet's time MLP.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.types import Array
from jaxdistill.models.registry import Network


def guidance_scale_embedding(w: Array, dim: int) -> Array:
    """LCM's embedding of the guidance scale: [sin(1000 (w - 1) f_i), cos(1000 (w - 1) f_i)],
    f_i = 10000^(-i / (dim/2 - 1)), zero-padded to ``dim`` (Luo et al. 2023; diffusers' LCM pipeline)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) / (half - 1) * jnp.arange(half, dtype=jnp.float32))
    args = 1000.0 * (jnp.asarray(w, jnp.float32) - 1.0)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def _is_feature_block(path: tuple[str, ...]) -> bool:
    return len(path) == 2 and path[0] == "unet" and (path[1] == "mid_block" or path[1].startswith("up_blocks_"))


def _is_block(path: tuple[str, ...]) -> bool:
    return len(path) == 2 and path[0] == "unet" and (path[1] == "mid_block" or path[1].startswith(("down_blocks_", "up_blocks_")))


_REMAT_INSIDE: set[tuple[str, ...]] = set()  # blocks whose call is being traced inside their own remat


def _remat_blocks(next_fun, args, kwargs, context):
    """Flax method interceptor: a UNet block's ``__call__`` under ``nn.remat`` (array arguments
    traced, Python values such as ``deterministic`` closed over); the inner call passes through."""
    path = context.module.path
    if context.method_name != "__call__" or not _is_block(path) or path in _REMAT_INSIDE:
        return next_fun(*args, **kwargs)
    is_array = lambda v: isinstance(v, (jnp.ndarray, tuple)) and all(isinstance(a, jnp.ndarray) for a in jax.tree.leaves(v))  # noqa: E731
    traced = {k: v for k, v in kwargs.items() if is_array(v)}
    static = {k: v for k, v in kwargs.items() if k not in traced}

    def block(module, args, traced):
        return module(*args, **traced, **static)

    _REMAT_INSIDE.add(path)
    try:
        return nn.remat(block)(context.module, args, traced)
    finally:
        _REMAT_INSIDE.discard(path)


class DiffusersUNet(nn.Module):
    """``FlaxUNet2DConditionModel`` with NHWC latents, a ``TextCondition`` and feature taps."""

    unet: nn.Module
    time_cond_proj_dim: int = 0
    remat: bool = False

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: TextCondition, *, train: bool = False, return_features: bool = False):
        timesteps = t if t.ndim == 1 else t[:, 0]
        added = None if cond.pooled is None else {"text_embeds": cond.pooled, "time_ids": cond.time_ids}
        features: list[tuple[tuple[str, ...], Array]] = []
        interceptors = []
        if self.time_cond_proj_dim:
            if t.ndim != 2 or t.shape[1] != 2:
                raise ValueError(f"a UNet with time_cond_proj_dim takes t of shape [B, 2] (timestep, guidance scale), got {t.shape}")
            proj = nn.Dense(self.unet.block_out_channels[0], use_bias=False, kernel_init=nn.initializers.zeros, name="time_cond_proj")
            w_features = proj(guidance_scale_embedding(t[:, 1], self.time_cond_proj_dim))

            def add_guidance(next_fun, args, kwargs, context):
                if context.method_name == "__call__" and context.module.path == ("unet", "time_embedding"):
                    args = (args[0] + w_features.astype(args[0].dtype),) + tuple(args[1:])
                return next_fun(*args, **kwargs)

            interceptors.append(add_guidance)

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and _is_feature_block(context.module.path) and context.module.path not in _REMAT_INSIDE:
                features.append((context.module.path, out[0] if isinstance(out, tuple) else out))
            return out

        if return_features:
            interceptors.append(record)
        if self.remat:  # innermost: the taps see the block's output outside its remat
            interceptors.append(_remat_blocks)
        sample = jnp.transpose(x, (0, 3, 1, 2))
        with contextlib.ExitStack() as stack:
            for interceptor in interceptors:
                stack.enter_context(nn.intercept_methods(interceptor))
            out = self.unet(sample, timesteps, cond.embeds, added_cond_kwargs=added, train=train).sample
        out = jnp.transpose(out, (0, 2, 3, 1))
        if not return_features:
            return out
        return out, [f for _, f in features]


@dataclasses.dataclass(frozen=True, eq=False)
class TextNetwork(Network):
    """A ``Network`` whose ``cond`` is a ``TextCondition`` of ``context_length`` tokens of width
    ``context_dim`` (plus ``pooled_dim``-wide pooled embeddings and ``num_time_ids`` time ids for SDXL)."""

    context_length: int = 77
    context_dim: int = 768
    pooled_dim: int = 0
    num_time_ids: int = 0

    def _example_inputs(self, example_x: Array) -> tuple[Array, Array, Optional[TextCondition]]:
        x = jnp.asarray(example_x, jnp.float32)
        b = x.shape[0]
        t = jnp.zeros((b,) if self.num_times == 1 else (b, self.num_times), jnp.float32)
        pooled = jnp.zeros((b, self.pooled_dim), jnp.float32) if self.pooled_dim else None
        time_ids = jnp.zeros((b, self.num_time_ids), jnp.float32) if self.pooled_dim else None
        return x, t, TextCondition(jnp.zeros((b, self.context_length, self.context_dim), jnp.float32), pooled, time_ids)


def unet_network(unet: nn.Module, context_length: int, pooled_dim: int = 0, time_cond_proj_dim: int = 0, remat: bool = False) -> TextNetwork:
    """The library ``Network`` of a ``FlaxUNet2DConditionModel`` (``time_cond_proj_dim > 0``: with
    LCM's guidance embedding, ``num_times = 2``; ``remat``: blocks rematerialised)."""
    num_time_ids = 6 if pooled_dim else 0
    return TextNetwork(
        DiffusersUNet(unet, time_cond_proj_dim, remat), num_classes=0, num_times=2 if time_cond_proj_dim else 1,
        context_length=context_length, context_dim=int(unet.cross_attention_dim), pooled_dim=pooled_dim, num_time_ids=num_time_ids,
    )
