"""Flax port of facebookresearch/DiT's ``models.py`` (Peebles & Xie 2023, "Scalable Diffusion
Models with Transformers"), parameter for parameter, so its published ``.pt`` checkpoints load.

The network maps a latent ``x`` (``[B, H, W, C]``, NHWC like every jaxdistill network; the
PyTorch original is NCHW), a DDPM timestep ``t`` (integers 0..999 as trained, not ``t in [0, 1]``)
and class labels to DiT's noise prediction:

* tokens: ``p x p`` patches through a stride-``p`` convolution plus DiT's fixed 2-D sin-cos
  table (:func:`pos_embed`), ``T = HW / p^2`` tokens of width ``D``;
* conditioning ``c = MLP(freq_256(t)) + E[y]``, ``freq`` the sinusoidal features of
  :func:`~jaxdistill.models.embeddings.sinusoidal_embedding` and ``E`` a table with
  ``num_classes + 1`` rows, the last the null class of classifier-free guidance (labels ``< 0``,
  jaxdistill's ``NULL_LABEL``, or ``cond=None`` select it). DiT's training-time label dropout
  is the denoising objective's ``label_dropout`` here, so the network itself drops nothing;
* ``depth`` adaLN-Zero blocks ``x += g1 * Attn(LN(x)(1 + s1) + b1)``,
  ``x += g2 * MLP(LN(x)(1 + s2) + b2)`` with ``(b1, s1, g1, b2, s2, g2) = Linear(SiLU(c))``,
  ``LN`` without affine parameters (eps 1e-6), attention with a biased fused ``qkv``, a
  ``4D``-wide MLP with tanh-approximate GELU;
* final layer ``Linear(LN(x)(1 + s) + b)`` to ``p^2 C_out`` per token, un-patchified to
  ``[B, H, W, C_out]``, ``C_out = 2C`` with ``learn_sigma`` (eps, then the variance
  interpolation ``v`` of Nichol & Dhariwal 2021), else ``C``.

The output is the eps prediction ``[B, H, W, C]`` (the shape of ``x``, as the network contract
asks); ``return_variance=True`` returns all ``2C`` channels. ``return_features=True`` also returns
each block's output tokens as ``[B, H/p, W/p, D]``.

Parameters map one-to-one onto the PyTorch state dict (:func:`flax_path`): dots become
nesting, a numeric part joins the name before it (``blocks.3.attn.qkv.weight`` ->
``blocks_3/attn/qkv/kernel``, ``t_embedder.mlp.0.bias`` -> ``t_embedder/mlp_0/bias``), Linear
weights ``[out, in]`` become kernels ``[in, out]``, the patch convolution's ``[D, C, p, p]``
becomes ``[p, p, C, D]``, ``y_embedder.embedding_table.weight`` becomes its ``embedding``.
``pos_embed`` is no parameter: it is recomputed, and a converter checks the checkpoint's copy.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.types import Array
from jaxdistill.models.embeddings import dense, sincos_2d, sinusoidal_embedding
from jaxdistill.models.remat import remat_block

# DiT's named sizes (models.py's DiT_XL_2 ... DiT_S_8): depth, width D, heads; the patch is the suffix.
_WIDTHS = {"XL": dict(depth=28, hidden_size=1152, num_heads=16), "L": dict(depth=24, hidden_size=1024, num_heads=16),
           "B": dict(depth=12, hidden_size=768, num_heads=12), "S": dict(depth=12, hidden_size=384, num_heads=6)}
DIT_SIZES: dict[str, dict[str, int]] = {f"{w}/{p}": dict(**dims, patch_size=p) for w, dims in _WIDTHS.items() for p in (2, 4, 8)}
FREQUENCY_DIM = 256  # width of DiT's sinusoidal timestep features


def pos_embed(hidden_size: int, grid_h: int, grid_w: int) -> np.ndarray:
    """DiT's fixed position table ``[grid_h * grid_w, D]``: the first ``D/2`` columns are
    sin-cos features of a token's column, the last ``D/2`` of its row (MAE's
    ``get_2d_sincos_pos_embed`` meshes ``(w, h)``), i.e. the halves of ``sincos_2d`` swapped."""
    table = sincos_2d(hidden_size, grid_h, grid_w)
    half = hidden_size // 2
    return np.concatenate([table[:, half:], table[:, :half]], axis=1)


def _layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, use_fast_variance=False)


def _modulate(x: Array, shift: Array, scale: Array) -> Array:
    return x * (1.0 + scale[:, None]) + shift[:, None]


class PatchEmbed(nn.Module):
    """``p x p`` patches -> tokens ``[B, T, D]`` by a stride-``p`` convolution (timm's ``PatchEmbed``)."""

    patch_size: int
    hidden_size: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        p = self.patch_size
        kernel_init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("conv_h", "conv_w", "io", "embed"))
        h = nn.Conv(self.hidden_size, (p, p), strides=(p, p), padding="VALID", kernel_init=kernel_init, name="proj")(x)
        return h.reshape(h.shape[0], -1, self.hidden_size)


class TimestepEmbedder(nn.Module):
    """``t -> Linear(SiLU(Linear(freq_256(t))))``, ``[B] -> [B, D]``."""

    hidden_size: int

    @nn.compact
    def __call__(self, t: Array) -> Array:
        h = dense(self.hidden_size, ("io", "embed"), name="mlp_0")(sinusoidal_embedding(t, FREQUENCY_DIM))
        return dense(self.hidden_size, ("mlp", "embed"), name="mlp_2")(nn.silu(h))


class LabelEmbedder(nn.Module):
    """Label table with ``num_classes + 1`` rows; labels ``< 0`` and ``None`` take the null row."""

    num_classes: int
    hidden_size: int

    @nn.compact
    def __call__(self, cond: Optional[Array], batch_size: int) -> Array:
        if cond is None:
            idx = jnp.full((batch_size,), self.num_classes, jnp.int32)
        else:
            cond = jnp.asarray(cond, jnp.int32)
            idx = jnp.where(cond < 0, self.num_classes, cond)
        init = nn.with_logical_partitioning(nn.initializers.normal(stddev=0.02), ("vocab", "embed"))
        return nn.Embed(self.num_classes + 1, self.hidden_size, embedding_init=init, name="embedding_table")(idx)


class Attention(nn.Module):
    """Multi-head self-attention with a biased fused ``qkv`` projection (timm's ``Attention``)."""

    num_heads: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, n, d = x.shape
        qkv = dense(3 * d, ("embed", "heads"), name="qkv")(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        out = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]).reshape(b, n, d)
        return dense(d, ("heads", "embed"), name="proj")(out)


class Mlp(nn.Module):
    """``fc2(GELU_tanh(fc1(x)))`` (timm's ``Mlp``)."""

    hidden: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = nn.gelu(dense(self.hidden, ("embed", "mlp"), name="fc1")(x), approximate=True)
        return dense(x.shape[-1], ("mlp", "embed"), name="fc2")(h)


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block; ``adaLN_modulation_1`` starts at zero (the block is the identity)."""

    num_heads: int
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, x: Array, c: Array) -> Array:
        d = x.shape[-1]
        mods = dense(6 * d, ("embed", "mlp"), zero_init=True, name="adaLN_modulation_1")(nn.silu(c))
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mods, 6, axis=-1)
        x = x + gate1[:, None] * Attention(self.num_heads, name="attn")(_modulate(_layer_norm()(x), shift1, scale1))
        return x + gate2[:, None] * Mlp(int(d * self.mlp_ratio), name="mlp")(_modulate(_layer_norm()(x), shift2, scale2))


class FinalLayer(nn.Module):
    """``Linear(LN(x)(1 + s) + b)`` with ``(b, s) = Linear(SiLU(c))``, both starting at zero."""

    features: int

    @nn.compact
    def __call__(self, x: Array, c: Array) -> Array:
        mods = dense(2 * x.shape[-1], ("embed", "mlp"), zero_init=True, name="adaLN_modulation_1")(nn.silu(c))
        shift, scale = jnp.split(mods, 2, axis=-1)
        return dense(self.features, ("embed", "io"), zero_init=True, name="linear")(_modulate(_layer_norm()(x), shift, scale))


class DiTPort(nn.Module):
    """DiT as published; see the module docstring. :func:`make_dit_port` builds a named size.

    Attributes:
      patch_size, hidden_size, depth, num_heads, mlp_ratio: the transformer (``DIT_SIZES``).
      num_classes: class labels ``0..num_classes-1`` (1000 for ImageNet) plus the null class.
      learn_sigma: the checkpoint predicts the variance too (``2C`` output channels).
      return_variance: return all ``2C`` channels instead of the eps prediction alone.
      remat: recompute each block's activations in the backward pass (:mod:`~jaxdistill.models.remat`).
    """

    patch_size: int
    hidden_size: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    learn_sigma: bool = True
    return_variance: bool = False
    remat: bool = False

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Optional[Array] = None, *, train: bool = False, return_features: bool = False):
        """``x`` ``[B, H, W, C]``, ``t`` ``[B]`` or a scalar, ``cond`` ``[B]`` labels -> eps ``[B, H, W, C]``
        (``train`` changes nothing: DiT has no dropout)."""
        if x.ndim != 4:
            raise ValueError(f"DiT expects NHWC input, got shape {x.shape}")
        if self.return_variance and not self.learn_sigma:
            raise ValueError("return_variance needs learn_sigma=True (a network that predicts the variance)")
        b, hgt, wid, ch = x.shape
        p = self.patch_size
        if hgt % p or wid % p:
            raise ValueError(f"spatial size {(hgt, wid)} not divisible by patch size {p}")
        t = jnp.asarray(t, jnp.float32)
        if t.ndim > 1:
            raise ValueError(f"DiT takes one timestep per example (num_times=1), got t of shape {t.shape}")
        gh, gw = hgt // p, wid // p

        tokens = PatchEmbed(p, self.hidden_size, name="x_embedder")(x) + jnp.asarray(pos_embed(self.hidden_size, gh, gw))[None]
        c = TimestepEmbedder(self.hidden_size, name="t_embedder")(jnp.broadcast_to(t, (b,)))
        c = c + LabelEmbedder(self.num_classes, self.hidden_size, name="y_embedder")(cond, b)
        features = []
        for i in range(self.depth):
            tokens = remat_block(DiTBlock, self.remat)(self.num_heads, self.mlp_ratio, name=f"blocks_{i}")(tokens, c)
            features.append(tokens.reshape(b, gh, gw, self.hidden_size))

        out_ch = 2 * ch if self.learn_sigma else ch
        out = FinalLayer(p * p * out_ch, name="final_layer")(tokens, c)
        out = out.reshape(b, gh, gw, p, p, out_ch).transpose(0, 1, 3, 2, 4, 5).reshape(b, hgt, wid, out_ch)
        if not self.return_variance:
            out = out[..., :ch]
        return (out, features) if return_features else out


def make_dit_port(size: Optional[str] = None, **fields) -> DiTPort:
    """A :class:`DiTPort` of the named ``size`` (a key of ``DIT_SIZES``, e.g. ``"XL/2"``); ``fields``
    set or override attributes (a field given as None takes the size's value)."""
    if size and size not in DIT_SIZES:
        raise ValueError(f"unknown DiT size {size!r}; choose from {sorted(DIT_SIZES)}")
    known = {f.name for f in dataclasses.fields(DiTPort) if f.init and f.name not in ("parent", "name")}
    if set(fields) - known:
        raise ValueError(f"DiTPort has no fields {sorted(set(fields) - known)}; its fields are {sorted(known)}")
    dims = {**(DIT_SIZES[size] if size else {}), **{k: v for k, v in fields.items() if v is not None}}
    missing = [k for k in ("patch_size", "hidden_size", "depth", "num_heads") if k not in dims]
    if missing:
        raise ValueError(f"a DiT without a named size needs {missing}")
    return DiTPort(**dims)
