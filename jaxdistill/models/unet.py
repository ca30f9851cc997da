"""Small ADM-style UNet (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs").

ResBlocks with adaptive group norm (``GN(h) * (1 + s) + b`` from the time/label
embedding), zero-initialised residual and output convolutions, optional
multi-head self-attention at chosen resolutions, stride-2 conv downsampling and
nearest-neighbour + conv upsampling with skip concatenation.
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.models.embeddings import ConditionEmbedding, conv, dense, group_count
from jaxdistill.models.remat import remat_block


class ResBlock(nn.Module):
    """ADM ResBlock with scale-shift norm: ``skip(x) + conv2(drop(silu(AdaGN(conv1(silu(GN(x)))))))``."""

    channels: int
    dropout: float = 0.0
    num_groups: int = 32

    @nn.compact
    def __call__(self, x: Array, emb: Array, train: bool) -> Array:
        groups_in = group_count(x.shape[-1], self.num_groups)
        groups = group_count(self.channels, self.num_groups)
        h = conv(self.channels)(nn.silu(nn.GroupNorm(num_groups=groups_in)(x)))
        scale, shift = jnp.split(dense(2 * self.channels, ("embed", "mlp"))(nn.silu(emb)), 2, axis=-1)
        h = nn.GroupNorm(num_groups=groups)(h) * (1.0 + scale[:, None, None]) + shift[:, None, None]
        h = nn.Dropout(self.dropout)(nn.silu(h), deterministic=not train)
        h = conv(self.channels, zero_init=True)(h)
        skip = x if x.shape[-1] == self.channels else conv(self.channels, 1)(x)
        return skip + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions with a zero-init output projection."""

    num_heads: int = 4
    num_groups: int = 32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, hgt, wid, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"channels {c} not divisible by num_heads {self.num_heads}")
        h = nn.GroupNorm(num_groups=group_count(c, self.num_groups))(x).reshape(b, hgt * wid, c)
        qkv = dense(3 * c, ("embed", "heads"))(h).reshape(b, hgt * wid, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        out = jax.nn.dot_product_attention(q, k, v).reshape(b, hgt * wid, c)
        out = dense(c, ("heads", "embed"), zero_init=True)(out)
        return x + out.reshape(b, hgt, wid, c)


class UNet(nn.Module):
    """Time/label-conditioned UNet; output has the input's shape (``[B, H, W, C]``).

    Attributes:
      base_channels: channels at the highest resolution.
      channel_mult: per-level multipliers; level ``i`` (``i > 0``) runs at
        ``H / 2^i`` so ``H`` and ``W`` must be divisible by ``2^(len - 1)``.
      num_res_blocks: ResBlocks per level on the way down (one more on the way up).
      attn_resolutions: spatial sizes (``H`` of the feature map) with self-attention;
        the middle block also attends whenever this is non-empty.
      num_heads: attention heads.
      dropout: ResBlock dropout rate (active with ``train=True``).
      num_groups: maximal GroupNorm group count.
      num_classes: 0 for unconditional, else labels plus a null class.
      time_embedding, time_scale: see :class:`~jaxdistill.models.embeddings.TimeEmbedding`.
      label_init_std: initial scale of the label table (:class:`~jaxdistill.models.embeddings.LabelEmbedding`).
      remat: recompute each res/attention block's activations in the backward pass (:mod:`~jaxdistill.models.remat`).
    """

    base_channels: int = 64
    channel_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (8,)
    num_heads: int = 4
    dropout: float = 0.0
    num_groups: int = 32
    num_classes: int = 0
    time_embedding: str = "sinusoidal"
    time_scale: float = 1000.0
    label_init_std: float = 0.02
    remat: bool = False

    @nn.compact
    def __call__(
        self,
        x: Array,
        t: Array,
        cond: Optional[Array] = None,
        *,
        train: bool = False,
        return_features: bool = False,
    ):
        if x.ndim != 4:
            raise ValueError(f"UNet expects NHWC input, got shape {x.shape}")
        factor = 2 ** (len(self.channel_mult) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"spatial size {x.shape[1:3]} not divisible by {factor}")
        emb = ConditionEmbedding(
            4 * self.base_channels, self.num_classes, self.time_embedding, self.time_scale, self.label_init_std
        )(t, cond, x.shape[0])

        def res(h: Array, ch: int) -> Array:
            return remat_block(ResBlock, self.remat, (3,))(ch, self.dropout, self.num_groups)(h, emb, train)

        def maybe_attn(h: Array) -> Array:
            if h.shape[1] in self.attn_resolutions:
                return remat_block(AttentionBlock, self.remat)(self.num_heads, self.num_groups)(h)
            return h

        h = conv(self.base_channels, in_axis="io")(x)
        skips = [h]
        features = []
        last = len(self.channel_mult) - 1
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                h = maybe_attn(res(h, self.base_channels * mult))
                skips.append(h)
            features.append(h)
            if level != last:
                h = conv(h.shape[-1], strides=2)(h)
                skips.append(h)

        h = res(h, h.shape[-1])
        h = remat_block(AttentionBlock, self.remat)(self.num_heads, self.num_groups)(h) if self.attn_resolutions else h
        h = res(h, h.shape[-1])
        features.append(h)

        for level in reversed(range(len(self.channel_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = maybe_attn(res(h, self.base_channels * self.channel_mult[level]))
            features.append(h)
            if level != 0:
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="nearest")
                h = conv(c)(h)

        h = nn.silu(nn.GroupNorm(num_groups=group_count(h.shape[-1], self.num_groups))(h))
        out = conv(x.shape[-1], out_axis="io", zero_init=True)(h)
        return (out, features) if return_features else out
