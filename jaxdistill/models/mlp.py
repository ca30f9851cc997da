"""Residual MLP denoiser for vector data (2-D toys, flattened digits)."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxdistill.core.types import Array
from jaxdistill.models.embeddings import ConditionEmbedding, dense


class MLPBlock(nn.Module):
    """Pre-norm residual block with adaptive scale-shift conditioning.

    ``h + W2 dropout(silu(W1 silu(norm(h) * (1 + s) + b)))`` with
    ``(s, b) = W_e silu(emb)`` (FiLM, Perez et al. 2018; AdaLN as in DiT).
    """

    width: int
    hidden: int
    dropout: float = 0.0
    use_layer_norm: bool = True

    @nn.compact
    def __call__(self, h: Array, emb: Array, train: bool) -> Array:
        scale, shift = jnp.split(dense(2 * self.width, ("embed", "mlp"))(nn.silu(emb)), 2, axis=-1)
        y = nn.LayerNorm()(h) if self.use_layer_norm else h
        y = nn.silu(y * (1.0 + scale) + shift)
        y = nn.silu(dense(self.hidden, ("embed", "mlp"))(y))
        y = nn.Dropout(self.dropout)(y, deterministic=not train)
        return h + dense(self.width, ("mlp", "embed"))(y)


class ResidualMLP(nn.Module):
    """Time/label-conditioned residual MLP; flattens event dims, output shape = input shape.

    Attributes:
      width: residual-stream width.
      depth: number of residual blocks.
      mlp_ratio: hidden width of each block = ``mlp_ratio * width``.
      num_classes: 0 for unconditional, else labels in ``[0, num_classes)`` plus null.
      dropout: dropout rate inside the blocks (active with ``train=True``).
      use_layer_norm: pre-normalise each block with LayerNorm.
      time_embedding, time_scale: see :class:`~jaxdistill.models.embeddings.TimeEmbedding`.
      label_init_std: initial scale of the label table (:class:`~jaxdistill.models.embeddings.LabelEmbedding`).
    """

    width: int = 256
    depth: int = 3
    mlp_ratio: int = 2
    num_classes: int = 0
    dropout: float = 0.0
    use_layer_norm: bool = True
    time_embedding: str = "sinusoidal"
    time_scale: float = 1000.0
    label_init_std: float = 0.02

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
        batch, event = x.shape[0], x.shape[1:]
        flat = x.reshape(batch, -1)
        emb = ConditionEmbedding(self.width, self.num_classes, self.time_embedding, self.time_scale, self.label_init_std)(
            t, cond, batch
        )
        h = dense(self.width, ("io", "embed"))(flat)
        features = []
        for _ in range(self.depth):
            h = MLPBlock(self.width, self.mlp_ratio * self.width, self.dropout, self.use_layer_norm)(
                h, emb, train
            )
            features.append(h)
        h = nn.LayerNorm()(h) if self.use_layer_norm else h
        out = dense(flat.shape[-1], ("embed", "io"), zero_init=True)(nn.silu(h))
        out = out.reshape((batch,) + event)
        return (out, features) if return_features else out
