"""LoRA files in the format diffusers' ``load_lora_weights`` reads for a UNet (PEFT-style keys).

A file ``pytorch_lora_weights.safetensors`` holds, per adapted module of the PyTorch UNet,

    unet.<torch module path>.lora_A.weight   [r, in]  (Linear)  or [r, in, kh, kw]  (Conv2d)
    unet.<torch module path>.lora_B.weight   [out, r] (Linear)  or [out, r, 1, 1]   (Conv2d)

and diffusers (``StableDiffusionPipeline.load_lora_weights`` -> ``UNet2DConditionModel.load_lora_adapter``)
builds a PEFT ``LoraConfig`` from it. A PEFT-style file without ``alpha`` entries or adapter
metadata gets ``lora_alpha = r``, i.e. scale 1, so the export folds the scale alpha / r into B:
the file's A and scale * B make the same W + scale * A @ B in every reader. Reading a file back
therefore gives a LoRA of scale 1 (``alpha = rank``) unless the file's ``lora_adapter_metadata``
(written by diffusers' ``save_lora_weights``) names another ``lora_alpha``.

Flax module paths map to PyTorch's by turning the list index suffix ``name_N`` of diffusers'
module lists (``down_blocks_0``, ``resnets_1``, ``to_out_0``, ``net_2`` ...) back into ``name.N``,
the inverse of diffusers' ``modeling_flax_pytorch_utils.rename_key``; diffusers 0.35's Flax UNet
already names the attention projections ``to_q``/``to_k``/``to_v``/``to_out_0`` like PyTorch.
"""
from __future__ import annotations

import json
import os
import re
import tempfile

import numpy as np
from flax import traverse_util

from jaxdistill.core.errors import CheckpointFileError, ConfigError
from jaxdistill.core.paths import PathLike
from jaxdistill.core.types import PyTree
from jaxdistill.models.lora.adapters import LoraSpec, module_path

LORA_FILE_NAME = "pytorch_lora_weights.safetensors"  # the file name load_lora_weights(folder) looks for
_MODULE_LISTS = r"down_blocks|up_blocks|attentions|resnets|transformer_blocks|downsamplers|upsamplers|net|to_out"
_LIST_ITEM = re.compile(rf"^({_MODULE_LISTS})_(\d+)$")


def torch_module_path(kernel_path: tuple[str, ...]) -> str:
    """The PyTorch module name of the Flax kernel at ``kernel_path`` (a leading ``params`` is dropped):
    ``("params", "down_blocks_0", ..., "attn1", "to_out_0", "kernel")`` -> ``"down_blocks.0. ... .attn1.to_out.0"``."""
    parts = list(kernel_path[:-1])
    if parts and parts[0] == "params":
        parts = parts[1:]
    return ".".join(_LIST_ITEM.sub(r"\1.\2", p) for p in parts)


def _to_torch(a: np.ndarray, b: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Flax factors A [..., in, r], B [r, out] as PyTorch's lora_A [r, in, ...] and lora_B [out, r, 1...] (scale folded in)."""
    window = a.ndim - 2
    torch_a = np.transpose(a, (a.ndim - 1, a.ndim - 2, *range(window)))
    torch_b = (np.float32(scale) * b).T.reshape(b.shape[1], b.shape[0], *([1] * window))
    return np.ascontiguousarray(torch_a), np.ascontiguousarray(torch_b)


def export_diffusers_lora(lora: PyTree, spec: LoraSpec, path: PathLike, prefix: str = "unet") -> dict[str, tuple[int, ...]]:
    """Write ``lora`` (of :func:`init_lora`'s layout) to the safetensors file ``path`` with keys
    ``<prefix>.<torch module>.lora_A.weight`` / ``.lora_B.weight`` in float32, B scaled by alpha / r.
    The file appears whole or not at all. Returns each key's shape."""
    from safetensors.numpy import save_file

    if os.path.isdir(path):
        raise ConfigError(f"LoRA export path {os.fspath(path)!r} is a folder; name the file, e.g. {os.path.join(path, LORA_FILE_NAME)!r}")
    flat = traverse_util.flatten_dict(lora)
    tensors = {}
    for module in sorted({k[:-1] for k in flat}):
        a = np.asarray(flat[(*module, "lora_A")], np.float32)
        b = np.asarray(flat[(*module, "lora_B")], np.float32)
        name = f"{prefix}.{torch_module_path((*module, 'kernel'))}"
        tensors[f"{name}.lora_A.weight"], tensors[f"{name}.lora_B.weight"] = _to_torch(a, b, spec.scale)
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {k: v.shape for k, v in tensors.items()}


def _read(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise CheckpointFileError(f"LoRA file {path!r} does not exist (expected a {LORA_FILE_NAME} written by export_diffusers_lora or diffusers)")
    try:
        with safe_open(path, framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointFileError(f"LoRA file {path!r} is no readable safetensors file ({err})") from None


def _file_alpha(path: str, metadata: dict[str, str], prefix: str, rank: int) -> float:
    """lora_alpha from diffusers' ``lora_adapter_metadata`` (``<prefix>.lora_alpha``), else the rank."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return float(rank)
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointFileError(f"LoRA file {path!r}: its lora_adapter_metadata is no JSON ({err})") from None
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(f"{prefix}.{key}"):
            raise CheckpointFileError(f"LoRA file {path!r}: per-module {key} is not supported (expected one rank and alpha for all modules)")
    return float(config.get(f"{prefix}.lora_alpha", rank))


def import_diffusers_lora(path: PathLike, base_params: PyTree, prefix: str = "unet") -> tuple[PyTree, LoraSpec]:
    """(lora, spec) read from a diffusers LoRA file for the network with parameters ``base_params``.

    Every key must be ``<prefix>.<module>.lora_A.weight`` or ``.lora_B.weight`` for a kernel of the
    network with the shapes that kernel needs, all with one rank; otherwise a one-line
    ``CheckpointFileError`` names the file and the first mismatched key (a LoRA for another network).
    """
    path = os.fspath(path)
    tensors, metadata = _read(path)
    if not tensors:
        raise CheckpointFileError(f"LoRA file {path!r} holds no tensors")
    kernels = {torch_module_path(k): (k, v.shape) for k, v in traverse_util.flatten_dict(base_params).items() if k[-1] == "kernel" and len(v.shape) >= 2}
    key_form = re.compile(rf"^{re.escape(prefix)}\.(.+)\.(lora_A|lora_B)\.weight$")
    factors: dict[tuple[str, ...], np.ndarray] = {}
    rank = None
    for key in sorted(tensors):
        match = key_form.match(key)
        if match is None:
            raise CheckpointFileError(f"LoRA file {path!r}: key {key!r} is not of the form '{prefix}.<module>.lora_A.weight' / '.lora_B.weight'")
        module, factor = match.groups()
        if module not in kernels:
            raise CheckpointFileError(f"LoRA file {path!r}: key {key!r} names no Dense or Conv kernel of this network (a LoRA for another network?)")
        kernel_path, (*window, fan_in, fan_out) = kernels[module]
        value = tensors[key]
        rank = rank if rank is not None else int(value.shape[0] if factor == "lora_A" else value.shape[1])
        expected = (rank, fan_in, *window) if factor == "lora_A" else (fan_out, rank, *([1] * len(window)))
        if tuple(value.shape) != expected:
            raise CheckpointFileError(f"LoRA file {path!r}: key {key!r} has shape {tuple(value.shape)}, this network needs {expected} (rank {rank})")
        nd = value.ndim
        flax_value = np.transpose(value, (*range(2, nd), 1, 0)) if factor == "lora_A" else value.reshape(fan_out, rank).T
        factors[(*kernel_path[:-1], factor)] = np.asarray(flax_value, np.float32)
    for module in sorted({k[:-1] for k in factors}):
        for factor in ("lora_A", "lora_B"):
            if (*module, factor) not in factors:
                missing = f"{prefix}.{torch_module_path((*module, 'kernel'))}.{factor}.weight"
                raise CheckpointFileError(f"LoRA file {path!r}: key {missing!r} is missing (each module needs lora_A and lora_B)")
    targets = tuple(f"^{re.escape(module_path(m + ('kernel',)))}$" for m in sorted({k[:-1] for k in factors}))
    spec = LoraSpec(rank=rank, alpha=_file_alpha(path, metadata, prefix, rank), targets=targets)
    return traverse_util.unflatten_dict(factors), spec
