"""Block rematerialisation: activations inside a block are recomputed in the backward pass
(gradient checkpointing, Chen et al. 2016) instead of being kept, trading compute for memory."""
from __future__ import annotations

import functools

import flax.linen as nn


@functools.lru_cache(maxsize=None)
def _remat(cls: type, static_argnums: tuple[int, ...]) -> type:
    wrapped = nn.remat(cls, static_argnums=static_argnums)
    wrapped.__name__ = wrapped.__qualname__ = cls.__name__  # auto-named blocks keep their parameter paths
    return wrapped


def remat_block(cls: type, remat: bool, static_argnums: tuple[int, ...] = ()) -> type:
    """``cls``, or with ``remat`` ``nn.remat(cls)`` under the same class name, so parameter names
    (and checkpoints, converted weights) are unchanged. ``static_argnums`` count ``self`` as 0 and
    name Python-valued arguments such as ``train``."""
    return _remat(cls, tuple(static_argnums)) if remat else cls
