"""Flax port of EDM2's magnitude-preserving UNet (Karras et al. 2024, "Analyzing and Improving
the Training Dynamics of Diffusion Models", NVlabs/edm2 ``training/networks_edm2.py``), parameter
for parameter, so EDM2's published network pickles load (:mod:`.edm2_checkpoint`).

The module is EDM2's raw network ``F(c_in x, c_noise, class_labels)`` (``UNet``): ``x`` NHWC (EDM2
is NCHW), ``t = c_noise = ln(sigma) / 4``, exactly what :class:`~jaxdistill.diffusion.denoiser.Denoiser`
feeds a network of prediction kind ``"edm"``, which then forms ``D = c_skip x + c_out F``, so
``Denoiser(net.apply, EDM(), "edm", sigma_data=0.5).x0(params, x, sigma, y)`` is EDM2's
``Precond(x, sigma, one_hot(y))`` (run in float32; ``use_fp16`` only applies on CUDA). Labels are
integers (``< 0``, jaxdistill's ``NULL_LABEL``, or ``cond=None`` give the all-zero
``class_labels``) or ``[B, num_classes]`` rows used as they are.

Magnitude-preserving operations (equation numbers of the paper):

* ``mp_silu(x) = silu(x) / 0.596`` (81); ``mp_sum(a, b, t) = lerp(a, b, t) / sqrt((1-t)^2 + t^2)``
  (88); ``mp_cat(a, b, t) = [w_a a, w_b b]``, ``w_a = C (1-t) / sqrt(N_a)``, ``w_b = C t /
  sqrt(N_b)``, ``C = sqrt((N_a + N_b) / ((1-t)^2 + t^2))`` (103);
* ``normalize(x) = x / (eps + |x| / sqrt(n))`` over ``n`` entries, ``eps = 1e-4``;
* ``MPFourier(t) = sqrt(2) cos(2 pi (f t + p))`` with fixed random ``freqs = 2 pi f`` and
  ``phases = 2 pi p`` (75);
* ``MPConv``: weight ``w`` normalised per output unit at every forward, ``w' = normalize(w) g /
  sqrt(fan_in)`` (47), a 3x3 / 1x1 convolution or a linear map. EDM2's training also rewrites the
  stored weight as ``normalize(w)`` before each forward (forced weight normalisation, 66); the port
  leaves that to a training recipe: the inference forward is the same either way.

Network (``C_l = model_channels * channel_mult[l]``): embedding ``emb = mp_silu(mp_sum(
emb_noise(MPFourier(t)), emb_label(y sqrt(num_classes)), label_balance))``; encoder on ``[x, 1]``
(a constant channel appended): a 3x3 ``MPConv`` at level 0, a downsampling block at the others,
then ``num_blocks`` blocks (attention at ``attn_resolutions``), every output a skip; decoder:
``in0`` (attention) and ``in1`` at the lowest resolution, an upsampling block at the others, then
``num_blocks + 1`` blocks on ``mp_cat(h, skip, concat_balance)``; ``out_conv`` with gain
``out_gain``. Block: encoder flavour ``x = normalize_channels(conv_skip(resample(x)))``; residual
``y = conv_res1(mp_silu(conv_res0(mp_silu(x)) (1 + emb_linear(emb, gain=emb_gain))))``; decoder
flavour ``x = conv_skip(resample(x))``; ``x = mp_sum(x, y, res_balance)``; attention: ``q, k, v``
channel-normalised per head, ``x = mp_sum(x, attn_proj(softmax(q k / sqrt(d)) v), attn_balance)``;
``x = clip(x, -clip_act, clip_act)``. Resampling is 2x2 averaging / nearest doubling (EDM2's
``[1, 1]`` filter, the only one ported). Dropout (``train=True``, rng ``"dropout"``) sits before
``conv_res1``.

``return_features=True`` also returns each encoder level's last output and the bottleneck (after
``in1``), NHWC. ``return_logvar=True`` (``module.apply`` only) also returns EDM2's uncertainty head
``logvar = logvar_linear(MPFourier_logvar(t))`` ``[B]``, used by EDM2's training loss only.

Parameters map one-to-one onto the PyTorch state dict of ``Precond``
(:func:`~jaxdistill.models.ports.edm2_checkpoint.flax_path`): ``unet.enc.64x64_block0.conv_res0.weight``
-> ``enc_64x64_block0/conv_res0/kernel`` (``[O, I, k, k]`` -> ``[k, k, I, O]``; linear ``[out, in]``
-> ``[in, out]``), ``unet.out_gain`` -> ``out_gain``, ``logvar_linear.weight`` -> ``logvar_linear/kernel``.
The Fourier buffers ``freqs`` / ``phases`` are random constants, not computable, so they are
parameters too (``emb_fourier/freqs``), read through ``stop_gradient``: no gradient reaches them
(an optimiser with weight decay would still move them; mask them out of it when fine-tuning).
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.models.ports.edm import class_label_rows
from jaxdistill.models.remat import remat_block

EPS = 1e-4
# EDM2's UNet / Block / Precond constructor defaults (networks_edm2.py).
DEFAULTS = dict(
    num_classes=0, model_channels=192, channel_mult=(1, 2, 3, 4), channel_mult_noise=None, channel_mult_emb=None, num_blocks=3,
    attn_resolutions=(16, 8), label_balance=0.5, concat_balance=0.5, channels_per_head=64, dropout=0.0, res_balance=0.3,
    attn_balance=0.3, clip_act=256.0, logvar_channels=128,
)
# The published ImageNet-512 networks (edm2-img512-{xs..xxl}-*.pkl; train_edm2.py's presets):
# 64x64x4 latents, 1000 classes, model_channels and dropout per size.
SIZES = {"XS": (128, 0.0), "S": (192, 0.0), "M": (256, 0.1), "L": (320, 0.1), "XL": (384, 0.1), "XXL": (448, 0.1)}
EVENT_SHAPE = (64, 64, 4)


def mp_silu(x: Array) -> Array:
    """``silu(x) / 0.596`` (eq. 81)."""
    return nn.silu(x) / 0.596


def mp_sum(a: Array, b: Array, t: float) -> Array:
    """``lerp(a, b, t) / sqrt((1 - t)^2 + t^2)`` (eq. 88)."""
    return (a + t * (b - a)) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: Array, b: Array, t: float) -> Array:
    """``[w_a a, w_b b]`` on the last axis (eq. 103; module docstring)."""
    na, nb = a.shape[-1], b.shape[-1]
    c = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    return jnp.concatenate([c / math.sqrt(na) * (1 - t) * a, c / math.sqrt(nb) * t * b], axis=-1)


def normalize(x: Array, axes: tuple[int, ...]) -> Array:
    """``x / (eps + |x| / sqrt(n))``, the norm over ``axes`` (``n`` entries), ``eps = 1e-4``."""
    n = math.prod(x.shape[a] for a in axes)
    return x / (EPS + jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True)) / math.sqrt(n))


def resample(x: Array, mode: str) -> Array:
    """EDM2's ``[1, 1]``-filter resampling: ``"down"`` 2x2 averaging, ``"up"`` nearest doubling."""
    if mode == "up":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if mode == "down":
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return x


class MPFourier(nn.Module):
    """``sqrt(2) cos(t freqs + phases)`` (eq. 75); ``freqs``, ``phases`` fixed (no gradient)."""

    channels: int

    @nn.compact
    def __call__(self, t: Array) -> Array:
        freqs = self.param("freqs", lambda k, s: 2 * math.pi * jax.random.normal(k, s), (self.channels,))
        phases = self.param("phases", lambda k, s: 2 * math.pi * jax.random.uniform(k, s), (self.channels,))
        return jnp.cos(t[:, None] * jax.lax.stop_gradient(freqs)[None] + jax.lax.stop_gradient(phases)[None]) * math.sqrt(2)


class MPConv(nn.Module):
    """EDM2's ``MPConv`` (eq. 47): ``kernel_size`` 0 is a linear map (kernel ``[in, out]``), else a
    square convolution (``[k, k, in, out]``, same padding); the kernel is normalised per output
    unit and scaled by ``gain / sqrt(fan_in)`` at every call."""

    features: int
    kernel_size: int = 0
    axes: tuple[str, ...] = ("embed", "mlp")

    @nn.compact
    def __call__(self, x: Array, gain: Array | float = 1.0) -> Array:
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features) if k else (x.shape[-1], self.features)
        w = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(1.0), self.axes), shape, jnp.float32)
        fan_in = math.prod(shape[:-1])
        w = normalize(w, tuple(range(w.ndim - 1))) * (gain / math.sqrt(fan_in))
        if not k:
            return x @ w
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv(features: int, k: int, name: str) -> MPConv:
    return MPConv(features, k, ("conv_h", "conv_w", "conv_in", "conv_out") if k else ("embed", "mlp"), name=name)


class Block(nn.Module):
    """EDM2's ``Block`` (Figure 21; module docstring) of ``flavor`` ``"enc"`` / ``"dec"``."""

    out_channels: int
    flavor: str = "enc"
    resample_mode: str = "keep"
    num_heads: int = 0
    dropout: float = 0.0
    res_balance: float = 0.3
    attn_balance: float = 0.3
    clip_act: Optional[float] = 256.0

    @nn.compact
    def __call__(self, x: Array, emb: Array, train: bool) -> Array:
        c = self.out_channels
        project = x.shape[-1] != c
        x = resample(x, self.resample_mode)
        if self.flavor == "enc":
            if project:
                x = _conv(c, 1, "conv_skip")(x)
            x = normalize(x, (3,))
        y = _conv(c, 3, "conv_res0")(mp_silu(x))
        gain = self.param("emb_gain", nn.initializers.zeros_init(), ())
        y = mp_silu(y * (_conv(c, 0, "emb_linear")(emb, gain) + 1)[:, None, None, :])
        y = _conv(c, 3, "conv_res1")(nn.Dropout(self.dropout, deterministic=not train)(y))
        if self.flavor == "dec" and project:
            x = _conv(c, 1, "conv_skip")(x)
        x = mp_sum(x, y, self.res_balance)
        if self.num_heads:
            b, h, w, _ = x.shape
            qkv = _conv(3 * c, 1, "attn_qkv")(x).reshape(b, h * w, self.num_heads, c // self.num_heads, 3)  # EDM2's order: (head, channel, q/k/v)
            qkv = normalize(qkv, (3,))
            q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
            weights = jax.nn.softmax(jnp.einsum("bqhc,bkhc->bhqk", q, k / math.sqrt(q.shape[-1])), axis=-1)
            y = jnp.einsum("bhqk,bkhc->bqhc", weights, v).reshape(b, h, w, c)
            x = mp_sum(x, _conv(c, 1, "attn_proj")(y), self.attn_balance)
        if self.clip_act is not None:
            x = jnp.clip(x, -self.clip_act, self.clip_act)
        return x


class EDM2UNetPort(nn.Module):
    """EDM2's UNet with its ``Precond``'s uncertainty head; see the module docstring.
    :func:`make_edm2_port` builds a published size (``SIZES``).

    Attributes:
      num_classes: EDM2's ``label_dim`` (0 = unconditional network).
      model_channels, channel_mult, channel_mult_noise, channel_mult_emb, num_blocks,
      attn_resolutions, label_balance, concat_balance: EDM2's ``UNet`` arguments.
      channels_per_head, dropout, res_balance, attn_balance, clip_act: its ``Block`` arguments.
      logvar_channels: its ``Precond``'s (width of the uncertainty head's Fourier features).
      remat: recompute each ``Block``'s activations in the backward pass (:mod:`~jaxdistill.models.remat`).
    """

    num_classes: int = 0
    model_channels: int = 192
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    channel_mult_noise: Optional[int] = None
    channel_mult_emb: Optional[int] = None
    num_blocks: int = 3
    attn_resolutions: tuple[int, ...] = (16, 8)
    label_balance: float = 0.5
    concat_balance: float = 0.5
    channels_per_head: int = 64
    dropout: float = 0.0
    res_balance: float = 0.3
    attn_balance: float = 0.3
    clip_act: Optional[float] = 256.0
    logvar_channels: int = 128
    remat: bool = False

    def _labels(self, cond: Optional[Array], batch_size: int) -> Array:
        return class_label_rows(cond, batch_size, self.num_classes)

    def _embedding(self, t: Array, cond: Optional[Array]) -> Array:
        blocks = [self.model_channels * m for m in self.channel_mult]
        noise = self.model_channels * self.channel_mult_noise if self.channel_mult_noise is not None else blocks[0]
        width = self.model_channels * self.channel_mult_emb if self.channel_mult_emb is not None else max(blocks)
        emb = _conv(width, 0, "emb_noise")(MPFourier(noise, name="emb_fourier")(t))
        if self.num_classes:
            labels = self._labels(cond, t.shape[0]) * math.sqrt(self.num_classes)
            emb = mp_sum(emb, MPConv(width, 0, ("io", "embed"), name="emb_label")(labels), self.label_balance)
        return mp_silu(emb)

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Optional[Array] = None, *, train: bool = False, return_features: bool = False, return_logvar: bool = False):
        """``x`` ``[B, H, W, C]`` (``c_in x``), ``t`` ``[B]`` or a scalar (``c_noise``), ``cond`` labels -> ``F`` ``[B, H, W, C]``."""
        if x.ndim != 4:
            raise ValueError(f"EDM2's UNet expects NHWC input, got shape {x.shape}")
        b, res0, _, channels = x.shape
        levels = len(self.channel_mult)
        if res0 % (1 << (levels - 1)) or x.shape[2] != res0:
            raise ValueError(f"EDM2's UNet takes square inputs whose side is divisible by {1 << (levels - 1)}, got {x.shape[1:3]}")
        t = jnp.asarray(t, jnp.float32)
        if t.ndim > 1:
            raise ValueError(f"EDM2's UNet takes one noise level per example (num_times=1), got t of shape {t.shape}")
        t = jnp.broadcast_to(t, (b,))
        emb = self._embedding(t, cond)
        settings = dict(dropout=self.dropout, res_balance=self.res_balance, attn_balance=self.attn_balance, clip_act=self.clip_act)

        def block(h: Array, out: int, name: str, flavor: str, attention: bool = False, mode: str = "keep") -> Array:
            heads = out // self.channels_per_head if attention else 0
            return remat_block(Block, self.remat, (3,))(out, flavor, mode, heads, name=name, **settings)(h, emb, train)

        h = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
        skips, features = [], []
        for level, mult in enumerate(self.channel_mult):
            res, out = res0 >> level, self.model_channels * mult
            if level == 0:
                h = MPConv(out, 3, ("conv_h", "conv_w", "io", "conv_out"), name=f"enc_{res}x{res}_conv")(h)
            else:
                h = block(h, h.shape[-1], f"enc_{res}x{res}_down", "enc", mode="down")
            skips.append(h)
            for idx in range(self.num_blocks):
                h = block(h, out, f"enc_{res}x{res}_block{idx}", "enc", attention=res in self.attn_resolutions)
                skips.append(h)
            features.append(h)
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = res0 >> level
            if level == levels - 1:
                h = block(h, h.shape[-1], f"dec_{res}x{res}_in0", "dec", attention=True)
                h = block(h, h.shape[-1], f"dec_{res}x{res}_in1", "dec")
                features.append(h)
            else:
                h = block(h, h.shape[-1], f"dec_{res}x{res}_up", "dec", mode="up")
            for idx in range(self.num_blocks + 1):
                h = block(mp_cat(h, skips.pop(), self.concat_balance), self.model_channels * mult, f"dec_{res}x{res}_block{idx}", "dec", attention=res in self.attn_resolutions)
        out_gain = self.param("out_gain", nn.initializers.zeros_init(), ())
        out = MPConv(channels, 3, ("conv_h", "conv_w", "conv_in", "io"), name="out_conv")(h, out_gain)
        outputs = (out, features) if return_features else (out,)
        if return_logvar or self.is_initializing():
            logvar = MPConv(1, 0, ("embed", "io"), name="logvar_linear")(MPFourier(self.logvar_channels, name="logvar_fourier")(t))[:, 0]
            outputs = (*outputs, logvar) if return_logvar else outputs
        return outputs[0] if len(outputs) == 1 else outputs


def make_edm2_port(size: Optional[str] = None, **fields) -> EDM2UNetPort:
    """An :class:`EDM2UNetPort` of the published ImageNet-512 ``size`` (``"XS"`` ... ``"XXL"``:
    1000 classes, the size's ``model_channels`` and ``dropout``, EDM2's defaults otherwise) or, with
    ``size=None``, of EDM2's class defaults; ``fields`` set or override attributes (a field given as
    None keeps the size's or default value, except ``channel_mult_noise``, ``channel_mult_emb`` and
    ``clip_act``, whose None is EDM2's own setting)."""
    if size is not None and size not in SIZES:
        raise ValueError(f"unknown EDM2 size {size!r}; choose from {list(SIZES)}")
    known = set(DEFAULTS) | {"remat"}
    if set(fields) - known:
        raise ValueError(f"EDM2UNetPort has no fields {sorted(set(fields) - known)}; its fields are {sorted(known)}")
    nullable = ("channel_mult_noise", "channel_mult_emb", "clip_act")
    sized = dict(num_classes=1000, model_channels=SIZES[size][0], dropout=SIZES[size][1]) if size else {}
    values = {**DEFAULTS, **sized, **{k: v for k, v in fields.items() if v is not None or k in nullable}}
    for key in ("channel_mult", "attn_resolutions"):
        values[key] = tuple(int(v) for v in values[key])
    return EDM2UNetPort(**values)
