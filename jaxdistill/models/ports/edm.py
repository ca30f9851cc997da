"""Flax ports of NVlabs/edm's UNets (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", ``training/networks.py``), parameter for parameter, so EDM's
published network pickles load (:mod:`.edm_checkpoint`):

* ``arch="ddpmpp"``: ``SongUNet`` as EDM's ``--arch=ddpmpp`` builds it, the DDPM++ of Song et al.
  2021 ("Score-Based Generative Modeling through Stochastic Differential Equations"): positional
  noise embedding, standard encoder and decoder, ``[1, 1]`` resampling, one attention head;
* ``arch="adm"``: ``DhariwalUNet``, the ADM of Dhariwal & Nichol 2021 ("Diffusion Models Beat
  GANs on Image Synthesis"): adaptive group-norm scale/shift, 64 channels per attention head.

The module is EDM's raw network ``F_theta(c_in x, c_noise, class_labels)``: ``x`` NHWC (EDM is
NCHW), ``t = c_noise = ln(sigma) / 4``, exactly what :class:`~jaxdistill.diffusion.denoiser.Denoiser`
feeds a network of prediction kind ``"edm"``, which then forms ``D = c_skip x + c_out F``, so
``Denoiser(net.apply, EDM(), "edm", sigma_data=0.5).x0(params, x, sigma, y)`` is EDM's
``EDMPrecond(x, sigma, one_hot(y))``. Labels are integers (``< 0``, jaxdistill's ``NULL_LABEL``,
or ``cond=None`` give EDM's all-zero ``class_labels``, the unconditional input) or ``[B,
num_classes]`` rows used as they are. ``augment_labels`` (``[B, augment_dim]``, EDM's
non-leaking augmentation conditioning) default to none, i.e. zeros.

Network (``C = model_channels``, ``emb = C * channel_mult_emb`` wide):

* mapping: ``PE(t)`` (``n/2`` frequencies ``10000^(-i / (n/2 - e))``, ``e = 1`` for DDPM++, 0 for
  ADM; DDPM++ orders ``[sin, cos]``, ADM ``[cos, sin]``), plus ``map_label(y sqrt(num_classes))``
  (DDPM++) and ``map_augment(a)``; ``emb = SiLU(map_layer1(SiLU(map_layer0(.))))`` (ADM adds
  ``map_label(y)`` before the last SiLU);
* encoder: per level ``l`` (resolution ``H / 2^l``) a 3x3 conv (level 0) or a downsampling block,
  then ``num_blocks`` UNet blocks of ``C * channel_mult[l]`` channels, attention at
  ``attn_resolutions``; every output is kept as a skip;
* decoder: two blocks at the lowest resolution (``in0`` with attention, ``in1``), then per level
  an upsampling block and ``num_blocks + 1`` blocks on ``[h, skip]`` concatenations; out:
  ``conv3x3(SiLU(GroupNorm(h)))``;
* UNet block: ``h = conv0(resample(SiLU(GN(x))))``, ``h = SiLU(GN(h) (1 + s) + b)`` with ``(s, b)
  = affine(emb)`` (ADM) or ``SiLU(GN(h + affine(emb)))`` (DDPM++), ``h = conv1(dropout(h))``,
  ``x = (h + skip(x)) * skip_scale``; attention ``x = (proj(attn(qkv(GN(x)))) + x) * skip_scale``.
  Group norms have ``min(32, channels / 4)`` groups; resampling is 2x2 averaging / nearest
  doubling (EDM's ``[1, 1]`` filter).

``return_features=True`` also returns the per-resolution features for critics and
discriminators: each encoder level's last output and the bottleneck (after ``in1``), NHWC.

Parameters map one-to-one onto the PyTorch state dict of ``EDMPrecond.model``
(:func:`~jaxdistill.models.ports.edm_checkpoint.flax_path`): ``model.enc.16x16_block0.conv0.weight``
-> ``enc_16x16_block0/conv0/kernel``; conv weights ``[O, I, k, k]`` -> kernels ``[k, k, I, O]``,
linear weights ``[out, in]`` -> ``[in, out]``, group-norm weights -> ``scale``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.models.embeddings import conv, dense
from jaxdistill.models.remat import remat_block

ARCHS = ("ddpmpp", "adm")
# Per architecture: constructor defaults of EDM's SongUNet / DhariwalUNet, and its UNet-block settings.
ARCH_DEFAULTS = {
    "ddpmpp": dict(model_channels=128, channel_mult=(1, 2, 2, 2), channel_mult_emb=4, num_blocks=4, attn_resolutions=(16,), dropout=0.1, augment_dim=0),
    "adm": dict(model_channels=192, channel_mult=(1, 2, 3, 4), channel_mult_emb=4, num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.1, augment_dim=0),
}
_BLOCK = {
    "ddpmpp": dict(eps=1e-6, skip_scale=math.sqrt(0.5), adaptive_scale=False, resample_proj=True),
    "adm": dict(eps=1e-5, skip_scale=1.0, adaptive_scale=True, resample_proj=False),
}
# EDM's published networks: (arch, fields, event shape); train.py's options for them.
EDM_PRESETS = {
    "cifar10_cond": ("ddpmpp", dict(num_classes=10, augment_dim=9, model_channels=128, channel_mult=(2, 2, 2), dropout=0.13), (32, 32, 3)),
    "cifar10_uncond": ("ddpmpp", dict(num_classes=0, augment_dim=9, model_channels=128, channel_mult=(2, 2, 2), dropout=0.13), (32, 32, 3)),
    "imagenet64_cond": ("adm", dict(num_classes=1000, model_channels=192, channel_mult=(1, 2, 3, 4), dropout=0.1), (64, 64, 3)),
}


def positional_embedding(t: Array, channels: int, endpoint: bool) -> Array:
    """EDM's ``PositionalEmbedding``: ``[cos(t f), sin(t f)]``, ``f_i = 10000^(-i / (channels/2 - endpoint))``."""
    half = channels // 2
    freqs = (1.0 / 10_000.0) ** (jnp.arange(half, dtype=jnp.float32) / (half - (1 if endpoint else 0)))
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def group_norm(channels: int, eps: float, name: str) -> nn.GroupNorm:
    """EDM's ``GroupNorm``: ``min(32, channels // 4)`` groups."""
    return nn.GroupNorm(num_groups=min(32, channels // 4), epsilon=eps, use_fast_variance=False, name=name)


def resample(x: Array, up: bool, down: bool) -> Array:
    """EDM's ``[1, 1]``-filter resampling: nearest doubling (``up``) or 2x2 averaging (``down``)."""
    if up:
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if down:
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return x


class UNetBlock(nn.Module):
    """EDM's ``UNetBlock`` (module docstring) with ``num_heads`` attention heads (0: none)."""

    out_channels: int
    arch: str
    up: bool = False
    down: bool = False
    num_heads: int = 0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, emb: Array, train: bool) -> Array:
        cfg, c = _BLOCK[self.arch], self.out_channels
        h = nn.silu(group_norm(x.shape[-1], cfg["eps"], "norm0")(x))
        h = conv(c, 3, name="conv0")(resample(h, self.up, self.down))
        params = dense(c * (2 if cfg["adaptive_scale"] else 1), ("embed", "mlp"), name="affine")(emb)[:, None, None, :]
        if cfg["adaptive_scale"]:
            scale, shift = jnp.split(params, 2, axis=-1)
            h = nn.silu(shift + group_norm(c, cfg["eps"], "norm1")(h) * (scale + 1.0))
        else:
            h = nn.silu(group_norm(c, cfg["eps"], "norm1")(h + params))
        h = conv(c, 3, name="conv1")(nn.Dropout(self.dropout, deterministic=not train)(h))
        skip = x
        if c != x.shape[-1] or self.up or self.down:
            skip = resample(x, self.up, self.down)
            if cfg["resample_proj"] or c != x.shape[-1]:
                skip = conv(c, 1, name="skip")(skip)
        x = (h + skip) * cfg["skip_scale"]
        if self.num_heads:
            b, hh, ww, _ = x.shape
            qkv = conv(3 * c, 1, name="qkv")(group_norm(c, cfg["eps"], "norm2")(x))
            qkv = qkv.reshape(b, hh * ww, self.num_heads, c // self.num_heads, 3)  # EDM's channel order: (head, channel, q/k/v)
            a = nn.dot_product_attention(qkv[..., 0], qkv[..., 1], qkv[..., 2]).reshape(b, hh, ww, c)
            x = (conv(c, 1, name="proj")(a) + x) * cfg["skip_scale"]
        return x


def class_label_rows(cond: Optional[Array], batch_size: int, num_classes: int) -> Array:
    """EDM's and EDM2's ``class_labels`` [B, num_classes]: one-hot rows of integer labels, zeros for
    ``cond < 0`` or ``None`` (unconditional); ``[B, num_classes]`` rows are used as they are."""
    if cond is None:
        return jnp.zeros((batch_size, num_classes), jnp.float32)
    cond = jnp.asarray(cond)
    if cond.ndim == 2:
        return cond.astype(jnp.float32)
    return (cond.astype(jnp.int32)[:, None] == jnp.arange(num_classes)[None, :]).astype(jnp.float32)


class EDMUNetPort(nn.Module):
    """EDM's DDPM++ (``arch="ddpmpp"``) or ADM (``arch="adm"``) network; see the module docstring.
    :func:`make_edm_port` builds a published configuration (``EDM_PRESETS``).

    Attributes:
      arch: ``"ddpmpp"`` (SongUNet) or ``"adm"`` (DhariwalUNet).
      num_classes: EDM's ``label_dim`` (0 = unconditional network).
      augment_dim, model_channels, channel_mult, channel_mult_emb, num_blocks, attn_resolutions,
      dropout: EDM's constructor arguments of the same names (``ARCH_DEFAULTS``).
      remat: recompute each ``UNetBlock``'s activations in the backward pass (:mod:`~jaxdistill.models.remat`).
    """

    arch: str = "ddpmpp"
    num_classes: int = 0
    augment_dim: int = 0
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    remat: bool = False

    def _labels(self, cond: Optional[Array], batch_size: int) -> Array:
        return class_label_rows(cond, batch_size, self.num_classes)

    def _embedding(self, t: Array, cond: Optional[Array], augment_labels: Optional[Array], extra: Optional[Array] = None) -> Array:
        b = t.shape[0]
        ddpmpp = self.arch == "ddpmpp"
        noise_channels = self.model_channels
        emb_channels = self.model_channels * self.channel_mult_emb
        order = lambda e: jnp.concatenate([e[:, noise_channels // 2:], e[:, : noise_channels // 2]], axis=1) if ddpmpp else e  # noqa: E731
        emb = order(positional_embedding(t, noise_channels, endpoint=ddpmpp))
        # Extra time inputs (a network built with num_times > 1, e.g. CTM's target time s): each one's positional
        # embedding through its own zero-initialised layer, so such a network starts as the published one.
        for i in range(0 if extra is None else extra.shape[1]):
            emb = emb + dense(noise_channels, ("io", "embed"), zero_init=True, name=f"map_extra{i}")(order(positional_embedding(extra[:, i], noise_channels, endpoint=ddpmpp)))
        if ddpmpp:
            if self.num_classes:
                emb = emb + dense(noise_channels, ("io", "embed"), name="map_label")(self._labels(cond, b) * math.sqrt(self.num_classes))
        if self.augment_dim:
            augment = jnp.zeros((b, self.augment_dim), jnp.float32) if augment_labels is None else jnp.asarray(augment_labels, jnp.float32)
            emb = emb + dense(noise_channels, ("io", "embed"), use_bias=False, name="map_augment")(augment)
        emb = nn.silu(dense(emb_channels, ("io", "embed"), name="map_layer0")(emb))
        emb = dense(emb_channels, ("embed", "mlp"), name="map_layer1")(emb)
        if not ddpmpp and self.num_classes:
            emb = emb + dense(emb_channels, ("io", "embed"), use_bias=False, name="map_label")(self._labels(cond, b))
        return nn.silu(emb)

    def _heads(self, channels: int, attention: bool) -> int:
        if not attention:
            return 0
        return 1 if self.arch == "ddpmpp" else channels // 64

    @nn.compact
    def __call__(
        self, x: Array, t: Array, cond: Optional[Array] = None, *, train: bool = False, return_features: bool = False, augment_labels: Optional[Array] = None
    ):
        """``x`` ``[B, H, W, C]`` (``c_in x``), ``t`` ``[B]`` or a scalar (``c_noise``; ``[B, k]``: plus k - 1 extra
        times), ``cond`` labels -> ``F`` ``[B, H, W, C]``."""
        if self.arch not in ARCHS:
            raise ValueError(f"unknown EDM architecture {self.arch!r}; choose from {ARCHS}")
        if x.ndim != 4:
            raise ValueError(f"EDM's UNets expect NHWC input, got shape {x.shape}")
        b, res0, _, channels = x.shape
        levels = len(self.channel_mult)
        if res0 % (1 << (levels - 1)) or x.shape[2] != res0:
            raise ValueError(f"EDM's UNets take square inputs whose side is divisible by {1 << (levels - 1)}, got {x.shape[1:3]}")
        t = jnp.asarray(t, jnp.float32)
        if t.ndim > 2:
            raise ValueError(f"EDM's UNets take t of shape [B] (the noise level) or [B, k] (plus k - 1 extra times), got {t.shape}")
        extra = t[:, 1:] if t.ndim == 2 else None
        emb = self._embedding(jnp.broadcast_to(t[:, 0] if t.ndim == 2 else t, (b,)), cond, augment_labels, extra)

        def block(h: Array, out: int, name: str, attention: bool = False, **kw) -> Array:
            return remat_block(UNetBlock, self.remat, (3,))(out, self.arch, num_heads=self._heads(out, attention), dropout=self.dropout, name=name, **kw)(h, emb, train)

        ddpmpp = self.arch == "ddpmpp"
        skips, features = [], []
        h = x
        for level, mult in enumerate(self.channel_mult):
            res = res0 >> level
            out = self.model_channels * mult
            if level == 0:
                h = conv(self.model_channels if ddpmpp else out, 3, in_axis="io", name=f"enc_{res}x{res}_conv")(h)
            else:
                h = block(h, h.shape[-1], f"enc_{res}x{res}_down", down=True)
            skips.append(h)
            for idx in range(self.num_blocks):
                h = block(h, out, f"enc_{res}x{res}_block{idx}", attention=res in self.attn_resolutions)
                skips.append(h)
            features.append(h)
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = res0 >> level
            if level == levels - 1:
                h = block(h, h.shape[-1], f"dec_{res}x{res}_in0", attention=True)
                h = block(h, h.shape[-1], f"dec_{res}x{res}_in1")
                features.append(h)
            else:
                h = block(h, h.shape[-1], f"dec_{res}x{res}_up", up=True)
            for idx in range(self.num_blocks + 1):
                attention = res in self.attn_resolutions and (idx == self.num_blocks or not ddpmpp)
                h = block(jnp.concatenate([h, skips.pop()], axis=-1), self.model_channels * mult, f"dec_{res}x{res}_block{idx}", attention=attention)
        names = (f"dec_{res0}x{res0}_aux_norm", f"dec_{res0}x{res0}_aux_conv") if ddpmpp else ("out_norm", "out_conv")
        h = nn.silu(group_norm(h.shape[-1], 1e-6 if ddpmpp else 1e-5, names[0])(h))
        out = conv(channels, 3, out_axis="io", name=names[1])(h)
        return (out, features) if return_features else out


def make_edm_port(arch: Optional[str] = None, preset: Optional[str] = None, **fields) -> EDMUNetPort:
    """An :class:`EDMUNetPort` of the published ``preset`` (a key of ``EDM_PRESETS``) or of ``arch``
    with EDM's defaults; ``fields`` set or override attributes (a field given as None keeps the
    preset's or default value). A preset of another architecture than ``arch`` is an error."""
    if preset is not None and preset not in EDM_PRESETS:
        raise ValueError(f"unknown EDM preset {preset!r}; choose from {sorted(EDM_PRESETS)}")
    if preset is not None and arch is not None and EDM_PRESETS[preset][0] != arch:
        raise ValueError(f"EDM preset {preset!r} is an {EDM_PRESETS[preset][0]} network, not {arch}")
    arch = arch or (EDM_PRESETS[preset][0] if preset else "ddpmpp")
    if arch not in ARCHS:
        raise ValueError(f"unknown EDM architecture {arch!r}; choose from {ARCHS}")
    known = {f.name for f in dataclasses.fields(EDMUNetPort) if f.init and f.name not in ("parent", "name", "arch")}
    if set(fields) - known:
        raise ValueError(f"EDMUNetPort has no fields {sorted(set(fields) - known)}; its fields are {sorted(known)}")
    values = {**ARCH_DEFAULTS[arch], **(EDM_PRESETS[preset][1] if preset else {}), **{k: v for k, v in fields.items() if v is not None}}
    for key in ("channel_mult", "attn_resolutions"):
        values[key] = tuple(int(v) for v in values[key])
    return EDMUNetPort(arch=arch, **values)
