"""Shared type aliases and conventions used across jaxdistill.

Conventions
-----------
* Data arrays are batch-first float32 ``[B, *event_shape]``; images are NHWC.
* ``t`` is the noise process's own time, a float32 array of shape ``[B]``.
* ``cond`` is an int32 class-label array ``[B]`` or ``None``. The label
  ``NULL_LABEL`` (= -1) marks an unconditional sample (used by classifier-free
  guidance and label dropout). Text-to-image networks take a
  ``core.conditioning.TextCondition`` instead, whose unconditional branch is
  the negative (or empty) prompt; batches of a text-to-image cache
  (``jaxdistill.data.t2i_cache``) carry it as their ``"cond"`` entry.
* Every network is used through a pure apply-function with one signature::

      apply(params, x, t, cond, *, train=False, rngs=None) -> output

  so a Flax linen module, a diffusers model, an NNX/Equinox model wrapped as a
  function, or the exact Gaussian-mixture teacher are interchangeable.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol

import jax

Array = jax.Array
PyTree = Any
Batch = Mapping[str, Array]

NULL_LABEL: int = -1


class ApplyFn(Protocol):
    """A pure network function ``(params, x, t, cond, *, train, rngs) -> output``."""

    def __call__(
        self,
        params: PyTree,
        x: Array,
        t: Array,
        cond: Optional[Array],
        *,
        train: bool = False,
        rngs: Optional[Mapping[str, Array]] = None,
    ) -> Array: ...
