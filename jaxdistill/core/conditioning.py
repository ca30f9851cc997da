"""Conditions a network takes as ``cond`` and their unconditional counterparts for guidance.

Classifier-free guidance (Ho & Salimans 2022) evaluates the network on the batch [x; x] with the
conditions [cond; unconditional(cond)]. What "unconditional" means depends on the condition:

* class labels (int32 ``[B]``): the label ``NULL_LABEL`` (= -1), the label-dropout token;
* text (``TextCondition``): the embedding of the negative prompt, or of the empty prompt when
  there is none, as Stable Diffusion's pipelines do (Rombach et al. 2022; the "negative prompt"
  is the same slot filled with other text).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxdistill.core.types import NULL_LABEL, Array

Condition = Optional["Array | TextCondition"]


@struct.dataclass
class TextCondition:
    """Text conditioning of a latent text-to-image network, every field batch-first.

    ``embeds`` [B, L, D]: the text encoder's token embeddings (cross-attention context);
    ``pooled`` [B, P] and ``time_ids`` [B, 6]: SDXL's added conditioning (pooled embedding of the
    second text encoder; original size, crop corner, target size), ``None`` for SD 1.x / 2.x;
    ``negative_embeds`` / ``negative_pooled``: the same for the negative (or empty) prompt, the
    unconditional branch of guidance, ``None`` where no guidance is wanted.
    """

    embeds: Array
    pooled: Optional[Array] = None
    time_ids: Optional[Array] = None
    negative_embeds: Optional[Array] = None
    negative_pooled: Optional[Array] = None

    def conditional(self) -> "TextCondition":
        """The prompt's branch alone (no negative fields)."""
        return TextCondition(self.embeds, self.pooled, self.time_ids)

    def unconditional(self) -> "TextCondition":
        """The negative prompt's branch, with the same time ids."""
        if self.negative_embeds is None:
            raise ValueError("classifier-free guidance on text needs negative_embeds (encode the negative or the empty prompt)")
        if (self.pooled is None) != (self.negative_pooled is None):
            raise ValueError("TextCondition has pooled embeddings for one branch only: give both pooled and negative_pooled (SDXL) or neither")
        return TextCondition(self.negative_embeds, self.negative_pooled, self.time_ids)


def as_condition(cond):
    """A batch's ``cond`` entry as networks take it: a dict of ``TextCondition`` fields (a
    text-to-image cache's batches) becomes the ``TextCondition``; anything else is returned as is."""
    return TextCondition(**cond) if isinstance(cond, dict) else cond


def unconditional(cond: Condition) -> Condition:
    """The unconditional counterpart of ``cond``: ``NULL_LABEL`` for labels, the negative prompt for text, None for None."""
    if cond is None:
        return None
    if isinstance(cond, TextCondition):
        return cond.unconditional()
    return jnp.full_like(cond, NULL_LABEL)


def guidance_batch(cond: Condition) -> Condition:
    """[cond; unconditional(cond)] along the batch, the conditions of guidance's one network call on [x; x]."""
    if cond is None:
        raise ValueError("classifier-free guidance needs a condition (class labels or a TextCondition); cond is None")
    conditional = cond.conditional() if isinstance(cond, TextCondition) else cond
    return jax.tree.map(lambda c, u: jnp.concatenate([c, u]), conditional, unconditional(cond))
