"""Derived randomness: ``fold_in(fold_in(key(seed), step), purpose)``.

Nothing carries RNG state: every random draw is a pure function of the run seed, the
step and a named purpose, so a resumed run and a run on a different mesh draw the
same numbers (jax's threefry keys are partitionable: values do not depend on sharding).
"""
from __future__ import annotations

import zlib

import jax

from jaxdistill.core.types import Array


def purpose_id(purpose: str) -> int:
    """A stable 31-bit integer for a purpose name (crc32, not Python's salted hash)."""
    return zlib.crc32(purpose.encode()) & 0x7FFFFFFF


def step_key(seed: int, step: Array | int) -> Array:
    """The key of one training step."""
    return jax.random.fold_in(jax.random.key(seed), step)


def derive(key: Array, purpose: str) -> Array:
    """A key for one named use (``"noise"``, ``"time"``, ``"dropout"``, ...)."""
    return jax.random.fold_in(key, purpose_id(purpose))
