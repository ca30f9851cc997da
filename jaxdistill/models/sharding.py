"""Activation sharding constraints for the networks under a device mesh.

A train step traced inside ``activation_mesh(mesh)`` pins the batch dimension of the
networks' inputs, outputs and inner activations to the mesh axes ``("data", "fsdp")``
(``jax.lax.with_sharding_constraint``), so XLA's SPMD partitioner keeps activations split by
example and gathers the fsdp-sharded weights (FSDP / ZeRO-3) instead of splitting activations
by feature, which costs all-to-alls and partial-sum all-reduces. Outside the context (sampling,
evaluation, single-device use) the constraints are the identity.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Iterator, Optional

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdistill.core.types import Array, PyTree

BATCH_AXES = ("data", "fsdp")
_MESH: contextvars.ContextVar[Optional[Mesh]] = contextvars.ContextVar("activation_mesh", default=None)


@contextlib.contextmanager
def activation_mesh(mesh: Mesh) -> Iterator[None]:
    """Within the block, :func:`constrain_batch` splits batch dimensions over ``mesh``'s data x fsdp axes."""
    token = _MESH.set(mesh)
    try:
        yield
    finally:
        _MESH.reset(token)


def constrain_batch(x: Array) -> Array:
    """``x`` with its leading (batch) dimension split over ("data", "fsdp") of the active mesh; the
    identity outside :func:`activation_mesh`, for scalars, and for batches the axes do not divide."""
    mesh = _MESH.get()
    if mesh is None or jax.numpy.ndim(x) == 0:
        return x
    size = math.prod(mesh.shape[a] for a in BATCH_AXES)
    if size == 1 or x.shape[0] % size:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(BATCH_AXES)))


def gather_params(params: PyTree) -> PyTree:
    """``params`` whole on every device within :func:`activation_mesh` (FSDP's all-gather before
    use); the identity outside it. The constraint's transpose makes each pass's weight gradient an
    all-reduce over the mesh that the update slices to the parameter's fsdp shard (the pattern
    GPU/TPU XLA rewrites into a reduce-scatter). Leaving the gradient unconstrained instead
    (a custom VJP) raised the involuntary rematerialisations of a DMD2 MLP step 0 -> 26."""
    mesh = _MESH.get()
    if mesh is None:
        return params
    return jax.tree.map(lambda p: jax.lax.with_sharding_constraint(p, NamedSharding(mesh, P())), params)
