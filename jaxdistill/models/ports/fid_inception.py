"""The FID Inception network: InceptionV3 (Szegedy et al. 2016) as TensorFlow's FID graph has it
(Heusel et al. 2017), the network pytorch-fid's ``fid_inception_v3`` rebuilds, in Flax (NHWC).

It is torchvision's InceptionV3 with the changes of the TF graph: the 3x3 average pools of the
A, C and first E blocks leave the zero padding out of their means (``count_include_pad=False``),
the pool branch of the last E block (``Mixed_7c``) is a 3x3 *max* pool, and the classifier has
1008 outputs. Every convolution is ``conv (no bias) -> BatchNorm (inference, eps 0.001) -> ReLU``.

Input: images ``[N, H, W, 3]`` with values in ``[0, 1]``; they are resized to 299x299 bilinearly
(half-pixel centres, no antialiasing: torch's ``F.interpolate(mode="bilinear",
align_corners=False)``) and scaled to ``[-1, 1]`` (pytorch-fid's ``resize_input`` and
``normalize_input``). Output: the 2048-D ``pool3`` features (global average of ``Mixed_7c``) and
the 1008 logits ``fc(pool3)``. Module names are the state dict's (``Mixed_6b/branch7x7_2/conv``),
so :mod:`.fid_inception_checkpoint` maps the published weights one to one.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_CLASSES = 1008
BN_EPS = 1e-3
_HIGHEST = jax.lax.Precision.HIGHEST  # float32 convolutions on GPUs too (no TF32), to match the reference


class FrozenBatchNorm(nn.Module):
    """``(x - mean) * scale / sqrt(var + eps) + bias`` with the running statistics as parameters."""

    eps: float = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        return (x - mean) * (scale * jax.lax.rsqrt(var + self.eps)) + bias


class BasicConv(nn.Module):
    """torchvision's ``BasicConv2d``: conv without bias, BatchNorm, ReLU; ``padding`` per side (rows, columns)."""

    features: int
    kernel: Sequence[int]
    stride: int = 1
    padding: Sequence[int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = [(p, p) for p in self.padding]
        x = nn.Conv(self.features, tuple(self.kernel), strides=self.stride, padding=pad, use_bias=False, precision=_HIGHEST, name="conv")(x)
        return nn.relu(FrozenBatchNorm(name="bn")(x))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average over the pixels inside the image (TF's SAME average pool)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
    """35x35 block (``Mixed_5b..d``): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(BasicConv(48, (1, 1), name="branch5x5_1")(x))
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35 -> 17 reduction (``Mixed_6a``): 3x3/2 | 1x1-3x3-3x3/2 | max pool/2."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block (``Mixed_6b..e``) with factorised 7x7 convolutions of width ``channels_7x7``."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c7, **row, name="branch7x7_2")(b7)
        b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
        bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
        for i, (width, shape) in enumerate([(c7, col), (c7, row), (c7, col), (192, row)], start=2):
            bd = BasicConv(width, **shape, name=f"branch7x7dbl_{i}")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17 -> 8 reduction (``Mixed_7a``): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(320, (3, 3), stride=2, name="branch3x3_2")(BasicConv(192, (1, 1), name="branch3x3_1")(x))
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block (``Mixed_7b``, ``Mixed_7c``) with split 1x3 / 3x1 outputs; ``max_pool`` picks
    the pool branch's 3x3 max pool of the FID graph's last block instead of the average pool."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def split(y: jax.Array, prefix: str) -> jax.Array:
            a = BasicConv(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(y)
            b = BasicConv(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(y)
            return jnp.concatenate([a, b], axis=-1)

        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = split(BasicConv(384, (1, 1), name="branch3x3_1")(x), "branch3x3_2")
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = split(BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd), "branch3x3dbl_3")
        pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1))) if self.max_pool else _avg_pool_3x3(x)
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_and_normalize(images: jax.Array) -> jax.Array:
    """``[N, H, W, 3]`` in ``[0, 1]`` -> 299x299 bilinear (half-pixel centres, no antialiasing), ``2x - 1``."""
    n, h, w, c = images.shape
    if (h, w) != (INPUT_SIZE, INPUT_SIZE):
        images = jax.image.resize(images, (n, INPUT_SIZE, INPUT_SIZE, c), "bilinear", antialias=False)
    return 2.0 * images - 1.0


class FIDInceptionV3(nn.Module):
    """``apply(params, images) -> (pool3 [N, 2048], logits [N, 1008])`` for images in ``[0, 1]``."""

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"the FID Inception network takes images [N, H, W, 3], got shape {images.shape}")
        x = resize_and_normalize(images.astype(jnp.float32))
        x = BasicConv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(channels, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(NUM_CLASSES, precision=_HIGHEST, name="fc")(pool3)
        return pool3, logits
