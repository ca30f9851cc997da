"""Mixed precision at apply time, for any network in the ApplyFn convention.

Policy (``precision.compute="bfloat16"``): master weights, optimiser state and EMA stay float32;
at apply time the floating parameters and the input ``x`` are cast to bfloat16, every Flax
module's floating outputs are cast to bfloat16 (``nn.intercept_methods``), so float32 values
made inside a module (the sinusoidal/Fourier time features of the float32 time input ``t``,
Flax's norm statistics, which it computes in at least float32) do not spread through the
network; and the network's output is cast back to float32, so losses, samplers and ODE updates
stay float32. Gradients reach the float32 master weights through the casts.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.types import ApplyFn, Array, PyTree

DTYPES = ("float32", "bfloat16")


def cast_floats(tree: PyTree, dtype: Any) -> PyTree:
    """``tree`` with every floating leaf cast to ``dtype`` (NumPy leaves stay on the host; abstract
    ``jax.ShapeDtypeStruct`` leaves get the dtype)."""

    def cast(leaf):
        if isinstance(leaf, jax.ShapeDtypeStruct) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return jax.ShapeDtypeStruct(leaf.shape, dtype, sharding=leaf.sharding)
        if isinstance(leaf, (np.ndarray, jax.Array)) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def _cast_outputs(dtype: Any, next_fun, args, kwargs, context):
    """Flax method interceptor: the module's floating outputs in ``dtype``."""
    return cast_floats(next_fun(*args, **kwargs), dtype)


def with_compute_dtype(apply_fn: ApplyFn, compute: str) -> ApplyFn:
    """``apply_fn`` computing in ``compute`` ("float32": unchanged; "bfloat16": the policy above)."""
    if compute not in DTYPES:
        raise ValueError(f"compute dtype {compute!r} is not one of {DTYPES}")
    if compute == "float32":
        return apply_fn
    dtype = jnp.dtype(compute)

    @functools.wraps(apply_fn)
    def apply(params: PyTree, x: Array, t: Array, cond, **kwargs):
        with nn.intercept_methods(functools.partial(_cast_outputs, dtype)):
            out = apply_fn(cast_floats(params, dtype), jnp.asarray(x).astype(dtype), t, cond, **kwargs)
        return cast_floats(out, jnp.float32)

    return apply
