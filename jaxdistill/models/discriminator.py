"""A discriminator head over a backbone's intermediate features.

DMD2 (Yin et al. 2024) puts a classification head on the fake-score critic's features,
LADD (Sauer et al. 2024) on the frozen teacher's features at noised inputs, and ADD
(Sauer et al. 2023) on a frozen feature network. The head is the only part the methods
share, so it is one small module. By default every feature map is average-pooled over its
spatial positions, the pooled vectors are concatenated and an MLP returns one logit per sample.
With ``per_position`` each feature map gets its own MLP applied at every spatial position (a
1x1 convolution), as the heads of ADD and StyleGAN-T (Sauer et al. 2023) read every token of a
ViT layer: the logits [B, P_1 + ... + P_m] keep where in the image real and fake differ, which
a pooled head averages away, and the GAN losses average their per-position terms.
With ``num_classes > 0`` a projection term <embed(c), h> makes it class-conditional
(Miyato & Koyama 2018). A ``TextCondition`` makes it text-conditional the same way, with
embed(c) a learned projection of the prompt's vector (``text_vector``), as ADD's and LADD's heads
are conditioned on the text embedding (Sauer et al. 2023, Sec. 3.2; Sauer et al. 2024, Sec. 3).
An ``image`` embedding [B, E] adds its own learned projection to embed(c), as ADD's heads also read
an image embedding c_img (Sauer et al. 2023, Sec. 3.2): <embed(c) + W_img c_img, h>. Without one the
head and its parameters are what they were; with W_img = 0 its logits are too.
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.types import NULL_LABEL, Array, PyTree
from jaxdistill.models.sharding import constrain_batch, gather_params


def positions(features: Sequence[Array]) -> list[Array]:
    """Each feature map as [B, P, C] (P spatial positions; a [B, C] vector is one position)."""
    return [f.reshape(f.shape[0], -1, f.shape[-1]).astype(jnp.float32) for f in features]


def pool_features(features: Sequence[Array]) -> Array:
    """[B, C_1 + ... + C_m]: each feature map averaged over all axes but the first and last."""
    return jnp.concatenate([p.mean(axis=1) for p in positions(features)], axis=-1)


def text_vector(cond: TextCondition) -> Array:
    """One vector per prompt, [B, D]: the pooled embedding where the condition has one (SDXL's
    projected CLIP pooled embedding, the kind of vector the papers' heads read), else the mean of
    the token embeddings (SD 1.x / 2.x carry no pooled embedding)."""
    return (cond.embeds.mean(axis=1) if cond.pooled is None else cond.pooled).astype(jnp.float32)


class DiscriminatorHead(nn.Module):
    """features -> logits, [B] pooled or [B, P_1 + ... + P_m] ``per_position``; ``cond`` (labels,
    NULL_LABEL = unconditional, or a ``TextCondition``) and an ``image`` embedding [B, E] add a
    projection term."""

    hidden: int = 256
    num_classes: int = 0
    per_position: bool = False

    @nn.compact
    def __call__(self, features: Sequence[Array], cond: Optional[Array] = None, image: Optional[Array] = None) -> Array:
        embed = None
        if isinstance(cond, TextCondition):
            embed = nn.Dense(self.hidden, name="text_embed")(text_vector(cond))
        elif self.num_classes > 0 and cond is not None:
            embed = nn.Embed(self.num_classes + 1, self.hidden)(jnp.where(cond == NULL_LABEL, self.num_classes, cond))
        if image is not None:
            image_embed = nn.Dense(self.hidden, name="image_embed")(image.astype(jnp.float32))
            embed = image_embed if embed is None else embed + image_embed
        if not self.per_position:
            return self._logit(pool_features(features), embed)
        # One head per feature map, applied at every position (Dense acts on the last axis).
        embed = None if embed is None else embed[:, None, :]
        return jnp.concatenate([self._logit(f, embed) for f in positions(features)], axis=1)

    def _logit(self, x: Array, embed: Optional[Array]) -> Array:
        h = nn.silu(nn.Dense(self.hidden)(x))
        h = nn.silu(nn.Dense(self.hidden)(h))
        logit = nn.Dense(1)(h)[..., 0]
        return logit if embed is None else logit + jnp.sum(embed * h, axis=-1)


def apply_head(head: DiscriminatorHead, params: PyTree, features: Sequence[Array], cond: Optional[Array], image: Optional[Array] = None) -> Array:
    """``head.apply(params, features, cond, image)`` with the FSDP constraints of ``models.sharding``:
    parameters gathered whole, features, labels, image embeddings and logits split by example."""
    features, cond, image = jax.tree.map(constrain_batch, (list(features), cond, image))
    return constrain_batch(head.apply(gather_params(params), features, cond, image))
