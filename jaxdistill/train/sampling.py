"""Drawing samples from a trained objective's generator, in jitted chunks."""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.objective import Objective, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.types import PyTree


def class_labels(num_classes: int, num: int) -> Optional[np.ndarray]:
    """Balanced labels 0..C-1 repeated, or ``None`` for unconditional objectives."""
    return None if num_classes == 0 else (np.arange(num) % num_classes).astype(np.int32)


@functools.partial(jax.jit, static_argnames=("objective", "nfe"))
def _generate_chunk(objective: Objective, nfe: int, trainable: Trainable, frozen: PyTree, z: jax.Array, cond, rng: jax.Array) -> jax.Array:
    """One chunk of samples; compiled once per (objective, nfe, chunk shape), so periodic sample
    plots of a training run reuse the compiled sampler."""
    return objective.generate(trainable, frozen, z, cond, nfe=nfe, rng=rng)


def generate_samples(
    objective: Objective,
    trainable: Trainable,
    frozen: PyTree,
    num: int,
    *,
    nfe: int,
    rng: jax.Array,
    labels: Optional[np.ndarray] = None,
    batch_size: int = 2048,
    sharding: Optional[jax.sharding.Sharding] = None,
) -> np.ndarray:
    """Draw ``num`` samples from the objective's generator, in jitted chunks; with ``sharding`` (e.g.
    split over a mesh's data axis; ``trainable`` and ``frozen`` replicated on that mesh) each
    chunk's noise and labels are placed there, so the chunk runs on every device."""
    if labels is None:
        labels = class_labels(objective.num_classes, num)
    out = []
    for i, start in enumerate(range(0, num, batch_size)):
        n = min(batch_size, num - start)
        chunk_rng = jax.random.fold_in(rng, i)
        z = objective.prior(derive(chunk_rng, "prior"), n)
        c = None if labels is None else jnp.asarray(labels[start : start + n])
        if sharding is not None:
            z, c = jax.device_put((z, c), sharding)
        out.append(np.asarray(_generate_chunk(objective, int(nfe), trainable, frozen, z, c, derive(chunk_rng, "sampler"))))
    return np.concatenate(out, axis=0)
