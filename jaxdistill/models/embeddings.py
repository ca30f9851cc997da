"""Time and label embeddings plus partition-annotated layer constructors.

Logical axis names used for kernel annotations (mapped to mesh axes by the run config's
``mesh.logical_axis_rules``, default ``registry.LOGICAL_AXIS_RULES``):

* ``"embed"``   model width / residual stream / embedding width,
* ``"mlp"``     hidden (expanded) width of an MLP or a modulation projection,
* ``"heads"``   fused attention axis (3 x heads x head_dim or heads x head_dim),
* ``"io"``      data-sized axes (input/output features, patch pixels),
* ``"vocab"``   rows of the label-embedding table,
* ``"conv_h"``, ``"conv_w"``, ``"conv_in"``, ``"conv_out"`` convolution kernels.
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.types import Array

_DEFAULT_KERNEL_INIT = nn.initializers.lecun_normal()


def dense(
    features: int,
    axes: tuple[str, str],
    *,
    zero_init: bool = False,
    use_bias: bool = True,
    name: Optional[str] = None,
) -> nn.Dense:
    """``nn.Dense`` whose kernel carries the logical axis names ``axes = (in, out)``."""
    init = nn.initializers.zeros_init() if zero_init else _DEFAULT_KERNEL_INIT
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=nn.with_logical_partitioning(init, axes),
        name=name,
    )


def conv(
    features: int,
    kernel_size: int = 3,
    *,
    strides: int = 1,
    in_axis: str = "conv_in",
    out_axis: str = "conv_out",
    zero_init: bool = False,
    name: Optional[str] = None,
) -> nn.Conv:
    """Square ``nn.Conv`` with "SAME" padding and an annotated HWIO kernel."""
    init = nn.initializers.zeros_init() if zero_init else _DEFAULT_KERNEL_INIT
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(strides, strides),
        padding="SAME",
        kernel_init=nn.with_logical_partitioning(init, ("conv_h", "conv_w", in_axis, out_axis)),
        name=name,
    )


def sinusoidal_embedding(t: Array, dim: int, max_period: float = 10_000.0) -> Array:
    """Transformer/DDPM sinusoidal features (Vaswani et al. 2017; Ho et al. 2020).

    ``emb[:, i] = cos(t * f_i)`` and ``emb[:, dim/2 + i] = sin(t * f_i)`` with
    ``f_i = max_period^(-i / (dim/2))``; an odd ``dim`` is zero-padded.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def fourier_embedding(t: Array, dim: int, scale: float = 16.0, seed: int = 0) -> Array:
    """Gaussian random Fourier features (Tancik et al. 2020; Song et al. 2021, NCSN++).

    ``emb = [cos(2 pi t w), sin(2 pi t w)]`` with fixed, non-trainable
    ``w ~ N(0, scale^2)`` drawn from ``seed`` (a constant, not a parameter).
    """
    half = dim // 2
    w = np.random.default_rng(seed).normal(size=half).astype(np.float32) * scale
    args = 2.0 * math.pi * t.astype(jnp.float32)[:, None] * jnp.asarray(w)[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimeEmbedding(nn.Module):
    """Time features followed by a 2-layer SiLU MLP: ``t -> [B, dim]``.

    Attributes:
      dim: output width.
      kind: ``"sinusoidal"`` (features of ``time_scale * t``) or ``"fourier"``
        (random Fourier features of ``t`` with std ``time_scale``).
      time_scale: multiplier applied to ``t`` for sinusoidal features (1000 maps
        ``t in [0, 1]`` onto DDPM's integer-step range); std of the Fourier
        frequencies otherwise.
      freq_dim: width of the raw features (defaults to ``dim``).
      zero_out: start the output layer at zero (the embedding is 0 at initialisation).
    """

    dim: int
    kind: str = "sinusoidal"
    time_scale: float = 1000.0
    freq_dim: Optional[int] = None
    zero_out: bool = False

    @nn.compact
    def __call__(self, t: Array) -> Array:
        fdim = self.freq_dim or self.dim
        if self.kind == "sinusoidal":
            feats = sinusoidal_embedding(t * self.time_scale, fdim)
        elif self.kind == "fourier":
            feats = fourier_embedding(t, fdim, scale=self.time_scale)
        else:
            raise ValueError(f"unknown time embedding kind {self.kind!r}")
        h = nn.silu(dense(self.dim, ("io", "embed"))(feats))
        return dense(self.dim, ("mlp", "embed"), zero_init=self.zero_out)(h)


class LabelEmbedding(nn.Module):
    """Class-label table with an extra null row for classifier-free guidance.

    Labels ``< 0`` (``NULL_LABEL``) and ``cond=None`` map to row ``num_classes``
    (Ho & Salimans 2022), so the table has ``num_classes + 1`` rows. Rows start as
    ``N(0, init_std^2)``: 0.02 follows DiT (Peebles & Xie 2023); 1.0 is ADM's
    ``nn.Embedding`` default (Dhariwal & Nichol 2021), which generators trained from scratch
    by distribution matching need (see ``jaxdistill.benchmarks.FROM_SCRATCH_LABEL_INIT_STD``).
    """

    num_classes: int
    dim: int
    init_std: float = 0.02

    @nn.compact
    def __call__(self, cond: Optional[Array], batch_size: int) -> Array:
        if cond is None:
            idx = jnp.full((batch_size,), self.num_classes, jnp.int32)
        else:
            cond = jnp.asarray(cond, jnp.int32)
            idx = jnp.where(cond < 0, self.num_classes, cond)
        table = nn.Embed(
            self.num_classes + 1,
            self.dim,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(stddev=self.init_std), ("vocab", "embed")
            ),
        )
        return table(idx)


class ConditionEmbedding(nn.Module):
    """Sum of time embeddings and (when ``num_classes > 0``) a :class:`LabelEmbedding`.

    ``t`` is ``[B]`` (the noise level) or ``[B, k]``: the noise level plus ``k - 1`` extra
    scalar conditions (a step size for shortcut models, a second time for MeanFlow, a
    guidance weight for guided distillation). Column 0 uses the same embedding (and
    parameter name) as a plain ``[B]`` input; each extra column has its own embedding whose
    output layer starts at zero, so a network with extra inputs initialised from a
    plain teacher's parameters computes exactly the teacher's function. ``label_init_std``
    is the label table's initial scale (:class:`LabelEmbedding`).
    """

    dim: int
    num_classes: int = 0
    time_embedding: str = "sinusoidal"
    time_scale: float = 1000.0
    label_init_std: float = 0.02

    @nn.compact
    def __call__(self, t: Array, cond: Optional[Array], batch_size: int) -> Array:
        """``t`` of shape ``[B]``, ``[B, k]`` or a scalar (broadcast to ``batch_size``) -> ``[B, dim]``."""
        t = jnp.asarray(t, jnp.float32)
        columns = [jnp.broadcast_to(t, (batch_size,))] if t.ndim < 2 else [t[:, i] for i in range(t.shape[1])]
        emb = TimeEmbedding(self.dim, self.time_embedding, self.time_scale)(columns[0])
        for i, extra in enumerate(columns[1:]):
            emb = emb + TimeEmbedding(self.dim, self.time_embedding, self.time_scale, zero_out=True, name=f"ExtraEmbedding_{i}")(extra)
        if self.num_classes > 0:
            emb = emb + LabelEmbedding(self.num_classes, self.dim, self.label_init_std)(cond, batch_size)
        return emb


def group_count(channels: int, max_groups: int) -> int:
    """Largest divisor of ``channels`` not above ``max_groups`` (GroupNorm groups)."""
    return math.gcd(channels, max_groups)


def sincos_2d(embed_dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding ``[grid_h * grid_w, embed_dim]`` (MAE/DiT)."""
    if embed_dim % 4:
        raise ValueError("sincos_2d needs embed_dim divisible by 4")
    quarter = embed_dim // 4
    omega = 1.0 / 10_000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    ys, xs = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")

    def one(pos: np.ndarray) -> np.ndarray:
        out = pos.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one(ys), one(xs)], axis=1).astype(np.float32)
