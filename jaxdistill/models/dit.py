"""Small Diffusion Transformer with adaLN-Zero (Peebles & Xie 2023, "Scalable Diffusion
Models with Transformers").

Images are cut into ``p x p`` patches, linearly embedded and given fixed 2-D
sine-cosine positions; each block is
``x += g1 * Attn(LN(x) * (1 + s1) + b1)`` and ``x += g2 * MLP(LN(x) * (1 + s2) + b2)``
with ``(b1, s1, g1, b2, s2, g2)`` regressed from the conditioning embedding by a
zero-initialised linear layer, so every block starts as the identity. The final
layer (adaLN modulation + linear) is zero-initialised too.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.models.embeddings import ConditionEmbedding, dense, sincos_2d
from jaxdistill.models.remat import remat_block


def _modulate(x: Array, shift: Array, scale: Array) -> Array:
    return x * (1.0 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning."""

    hidden: int
    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, c: Array, train: bool) -> Array:
        b, n, d = x.shape
        mods = dense(6 * d, ("embed", "mlp"), zero_init=True)(nn.silu(c))
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mods, 6, axis=-1)

        h = _modulate(nn.LayerNorm(use_scale=False, use_bias=False, epsilon=1e-6)(x), shift1, scale1)
        qkv = dense(3 * d, ("embed", "heads"))(h).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        attn = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]).reshape(b, n, d)
        attn = nn.Dropout(self.dropout)(dense(d, ("heads", "embed"))(attn), deterministic=not train)
        x = x + gate1[:, None] * attn

        h = _modulate(nn.LayerNorm(use_scale=False, use_bias=False, epsilon=1e-6)(x), shift2, scale2)
        h = nn.gelu(dense(int(self.mlp_ratio * d), ("embed", "mlp"))(h), approximate=True)
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return x + gate2[:, None] * dense(d, ("mlp", "embed"))(h)


class DiT(nn.Module):
    """Patch-based transformer denoiser; output has the input's shape (``[B, H, W, C]``).

    Attributes:
      patch_size: side ``p`` of square patches (``H`` and ``W`` divisible by ``p``).
      hidden_size: token width (divisible by 4 and by ``num_heads``).
      depth: number of :class:`DiTBlock`.
      num_heads: attention heads.
      mlp_ratio: MLP hidden width / ``hidden_size``.
      dropout: attention-output and MLP dropout (active with ``train=True``).
      num_classes: 0 for unconditional, else labels plus a null class.
      time_embedding, time_scale: see :class:`~jaxdistill.models.embeddings.TimeEmbedding`.
      label_init_std: initial scale of the label table (:class:`~jaxdistill.models.embeddings.LabelEmbedding`).
      remat: recompute each block's activations in the backward pass (:mod:`~jaxdistill.models.remat`).
    """

    patch_size: int = 2
    hidden_size: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
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
            raise ValueError(f"DiT expects NHWC input, got shape {x.shape}")
        b, hgt, wid, ch = x.shape
        p = self.patch_size
        if hgt % p or wid % p:
            raise ValueError(f"spatial size {(hgt, wid)} not divisible by patch size {p}")
        gh, gw = hgt // p, wid // p

        patches = x.reshape(b, gh, p, gw, p, ch).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, p * p * ch)
        tokens = dense(self.hidden_size, ("io", "embed"))(patches)
        tokens = tokens + jnp.asarray(sincos_2d(self.hidden_size, gh, gw))[None]
        c = ConditionEmbedding(self.hidden_size, self.num_classes, self.time_embedding, self.time_scale, self.label_init_std)(
            t, cond, b
        )

        features = []
        for _ in range(self.depth):
            tokens = remat_block(DiTBlock, self.remat, (3,))(self.hidden_size, self.num_heads, self.mlp_ratio, self.dropout)(tokens, c, train)
            features.append(tokens.reshape(b, gh, gw, self.hidden_size))

        shift, scale = jnp.split(dense(2 * self.hidden_size, ("embed", "mlp"), zero_init=True)(nn.silu(c)), 2, -1)
        h = _modulate(nn.LayerNorm(use_scale=False, use_bias=False, epsilon=1e-6)(tokens), shift, scale)
        out = dense(p * p * ch, ("embed", "io"), zero_init=True)(h)
        out = out.reshape(b, gh, gw, p, p, ch).transpose(0, 1, 3, 2, 4, 5).reshape(b, hgt, wid, ch)
        return (out, features) if return_features else out
