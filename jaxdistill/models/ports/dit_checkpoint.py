"""DiT state dicts (facebookresearch/DiT ``.pt`` files) -> :class:`~jaxdistill.models.ports.dit.DiTPort`
parameters, every entry checked against the network it should fill.

Key map (one-to-one, both ways; ``pos_embed`` excepted, see below):

=====================================  =========================================  ======================
PyTorch state-dict key                 Flax parameter path                        array
=====================================  =========================================  ======================
``x_embedder.proj.weight`` [D,C,p,p]   ``x_embedder/proj/kernel`` [p,p,C,D]       ``w.transpose(2,3,1,0)``
``<...>.weight`` of a Linear [out,in]  ``<...>/kernel`` [in,out]                  ``w.T``
``y_embedder.embedding_table.weight``  ``y_embedder/embedding_table/embedding``  as is
``<...>.bias``                         ``<...>/bias``                             as is
``pos_embed`` [1, T, D]                (none: recomputed by ``dit.pos_embed``)    must equal the table
=====================================  =========================================  ======================

where ``<...>`` turns dots into ``/`` and joins a numeric part to the name before it
(``blocks.3.adaLN_modulation.1`` -> ``blocks_3/adaLN_modulation_1``, ``t_embedder.mlp.0`` ->
``t_embedder/mlp_0``).

The architecture is read off the shapes: ``D, C, p`` from the patch kernel, the depth from the
block indices, ``num_classes`` from the label table (its last row is the null class), the input
side from ``T = (side / p)^2``, ``learn_sigma`` from the final layer's ``p^2 C_out`` outputs
(``C_out = 2C``), and the head count from the named size with that depth, width and patch (it
leaves no trace in the shapes, so any other DiT needs it given).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.models.ports.dit import DIT_SIZES, DiTPort, make_dit_port, pos_embed

POS_EMBED = "pos_embed"


def flax_path(key: str) -> tuple[str, ...]:
    """The Flax parameter path of a DiT state-dict key (``blocks.3.attn.qkv.weight`` -> ``blocks_3/attn/qkv/kernel``)."""
    parts: list[str] = []
    for part in key.split(".")[:-1]:
        if part.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{part}"
        else:
            parts.append(part)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "weight":
        leaf = "embedding" if parts and parts[-1] == "embedding_table" else "kernel"
    return (*parts, leaf)


def torch_key(path: tuple[str, ...]) -> str:
    """The state-dict key of a Flax parameter path (inverse of :func:`flax_path`)."""
    parts: list[str] = []
    for name in path[:-1]:
        base, _, index = name.rpartition("_")
        parts.extend([base, index] if index.isdigit() and base else [name])
    return ".".join([*parts, {"kernel": "weight", "embedding": "weight"}.get(path[-1], path[-1])])


def to_flax(key: str, value: np.ndarray) -> np.ndarray:
    """A state-dict array in the Flax layout of :func:`flax_path` (float32)."""
    value = np.asarray(value, np.float32)
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2 and flax_path(key)[-1] == "kernel":
        return value.T
    return value


def _torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    if path[-1] == "kernel":
        return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(reversed(shape))
    return tuple(shape)


def expected_shapes(module: DiTPort, input_size: int, in_channels: int) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of the PyTorch DiT that ``module`` ports, for ``input_size``-square
    inputs with ``in_channels`` channels (from the port's abstract parameters; nothing allocated)."""
    x = jax.ShapeDtypeStruct((1, input_size, input_size, in_channels), jnp.float32)
    t, y = jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.int32)
    abstract = jax.eval_shape(lambda x, t, y: nn.meta.unbox(module.init(jax.random.key(0), x, t, y)), x, t, y)
    flat = jax.tree_util.tree_flatten_with_path(abstract["params"])[0]
    shapes = {torch_key(tuple(k.key for k in path)): _torch_shape(tuple(k.key for k in path), leaf.shape) for path, leaf in flat}
    tokens = (input_size // module.patch_size) ** 2
    return {**shapes, POS_EMBED: (1, tokens, module.hidden_size)}


def select_state_dict(obj: Any, source: str, use_ema: bool = True) -> tuple[Mapping[str, np.ndarray], str]:
    """The DiT state dict inside a loaded checkpoint and which one it is: the object itself (the
    published files), or the ``"ema"`` (default) / ``"model"`` entry of a DiT training checkpoint."""
    if not isinstance(obj, Mapping):
        raise CheckpointFileError(f"{source!r} holds a {type(obj).__name__}, not a DiT state dict")
    wanted = ("ema", "model") if use_ema else ("model",)
    for name in wanted:
        if isinstance(obj.get(name), Mapping):
            return obj[name], name
    if all(isinstance(v, np.ndarray) for v in obj.values()) and obj:
        return obj, "state dict"
    raise CheckpointFileError(f"{source!r} holds no DiT state dict (expected one, or a training checkpoint with {' or '.join(map(repr, wanted))}; found keys {sorted(map(str, obj))[:6]})")


def _block_count(state: Mapping[str, np.ndarray]) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


# The entries the architecture is read from, with their number of dimensions.
_READ_OFF = {"x_embedder.proj.weight": 4, "y_embedder.embedding_table.weight": 2, "final_layer.linear.weight": 2, POS_EMBED: 3, "blocks.0.mlp.fc1.weight": 2}


def infer_architecture(state: Mapping[str, np.ndarray], source: str) -> dict[str, Any]:
    """DiT constructor fields read off the shapes of ``state`` (see the module docstring), plus
    ``input_size`` and ``in_channels``; ``num_heads`` and ``size`` only where a named size matches."""
    for key, ndim in _READ_OFF.items():
        if key not in state:
            raise CheckpointFileError(f"{source!r} is not a DiT checkpoint: it has no {key!r} (found {sorted(state)[:4]} ...)")
        if np.ndim(state[key]) != ndim or 0 in np.shape(state[key]):
            raise CheckpointFileError(f"{source!r} is not a DiT checkpoint: {key} has shape {np.shape(state[key])}, not {ndim}-D")
    hidden, channels, patch, patch_w = np.shape(state["x_embedder.proj.weight"])
    tokens = np.shape(state[POS_EMBED])[1]
    side = int(round(np.sqrt(tokens)))
    out_channels = np.shape(state["final_layer.linear.weight"])[0] // (patch * patch)
    if patch != patch_w or side * side != tokens or out_channels not in (channels, 2 * channels):
        raise CheckpointFileError(f"{source!r} is not a DiT checkpoint: patch kernel {np.shape(state['x_embedder.proj.weight'])}, {tokens} positions, {out_channels} output channels")
    arch = dict(
        patch_size=int(patch), hidden_size=int(hidden), depth=_block_count(state),
        mlp_ratio=np.shape(state["blocks.0.mlp.fc1.weight"])[0] / hidden,
        num_classes=int(np.shape(state["y_embedder.embedding_table.weight"])[0]) - 1,
        learn_sigma=bool(out_channels == 2 * channels), input_size=side * int(patch), in_channels=int(channels),
    )
    for size, dims in DIT_SIZES.items():
        if all(arch[k] == dims[k] for k in ("patch_size", "hidden_size", "depth")):
            arch.update(size=size, num_heads=dims["num_heads"])
    return arch


def _describe(size: Optional[str], module: DiTPort) -> str:
    return f"DiT-{size}" if size else f"a DiT of depth {module.depth}, width {module.hidden_size}, patch {module.patch_size}"


def _check_shapes(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], what: str, source: str) -> None:
    """A CheckpointFileError unless ``state`` has exactly the keys and shapes ``expected`` of ``what``
    (``source`` describes the checkpoint in the message)."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        lacks = f"lacks {len(missing)} entries of {what} ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})" if missing else ""
        has = f"has {len(extra)} entries {what} does not ({', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''})" if extra else ""
        raise CheckpointFileError(f"{source} {' and '.join(s for s in (lacks, has) if s)}")
    wrong = [k for k in sorted(expected) if tuple(np.shape(state[k])) != tuple(expected[k])]
    if wrong:
        k = wrong[0]
        raise CheckpointFileError(
            f"{source} does not match {what}: {k} has shape {tuple(np.shape(state[k]))}, {what} expects {tuple(expected[k])} ({len(wrong)} of {len(expected)} entries differ)"
        )


def convert_state_dict(
    state: Mapping[str, np.ndarray], source: str, size: Optional[str] = None, num_heads: Optional[int] = None
) -> tuple[dict, dict[str, Any]]:
    """``({"params": ...}, network fields)`` of the DiT in ``state``, checked entry by entry.

    ``size`` names the DiT it must be (checked, not trusted); without it the size is inferred, and
    ``num_heads`` is needed when no named size has the checkpoint's depth, width and patch. The
    network fields are those of ``make_dit_port`` plus ``input_size`` and ``in_channels``.
    A :class:`CheckpointFileError` naming ``source`` reports any mismatch.
    """
    arch = infer_architecture(state, source)
    if size is not None and size not in DIT_SIZES:
        raise CheckpointFileError(f"unknown DiT size {size!r} for {source!r}; choose from {sorted(DIT_SIZES)}")
    if size is None and num_heads is None and "num_heads" not in arch:
        raise CheckpointFileError(
            f"{source!r} is no named DiT size (depth {arch['depth']}, width {arch['hidden_size']}, patch {arch['patch_size']}): give its number of attention heads (--num-heads)"
        )
    fields = dict(num_classes=arch["num_classes"], learn_sigma=arch["learn_sigma"], mlp_ratio=arch["mlp_ratio"])
    if size is None:
        size = arch.get("size") if num_heads is None else None
        dims = {k: arch[k] for k in ("patch_size", "hidden_size", "depth")}
        module = make_dit_port(size, **dims, num_heads=num_heads or arch["num_heads"], **fields)
    else:
        module = make_dit_port(size, **fields, num_heads=num_heads)
    what = _describe(size, module)
    source_is = f"{source!r} (depth {arch['depth']}, width {arch['hidden_size']}, patch {arch['patch_size']})"
    side = int(round(np.sqrt(np.shape(state[POS_EMBED])[1]))) * module.patch_size
    _check_shapes(state, expected_shapes(module, side, arch["in_channels"]), what, source_is)
    grid = side // module.patch_size
    deviation = float(np.max(np.abs(np.asarray(state[POS_EMBED], np.float64)[0] - pos_embed(module.hidden_size, grid, grid))))
    if not deviation < 1e-4:
        raise CheckpointFileError(f"{source!r}: pos_embed is not DiT's fixed sin-cos table (max deviation {deviation:.3g})")
    bad = [k for k, v in state.items() if not np.all(np.isfinite(v))]
    if bad:
        raise CheckpointFileError(f"{source!r}: {bad[0]} holds NaN or infinite values")
    params: dict = {}
    for key, value in state.items():
        if key == POS_EMBED:
            continue
        *parents, leaf = flax_path(key)
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = to_flax(key, value)
    network = dict(
        size=size, patch_size=module.patch_size, hidden_size=module.hidden_size, depth=module.depth, num_heads=module.num_heads,
        mlp_ratio=module.mlp_ratio, num_classes=module.num_classes, learn_sigma=module.learn_sigma,
    )
    return {"params": params}, {**network, "input_size": side, "in_channels": arch["in_channels"]}
