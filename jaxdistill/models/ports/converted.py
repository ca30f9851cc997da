"""Converted checkpoints: a ported network's parameters and config in one ``.npz``.

Entries: ``format`` (``"jaxdistill-converted-1"``), ``network`` (JSON: the registry config that
builds the network, e.g. ``{"name": "dit_port", "size": "XL/2", ...}``), ``info`` (JSON: where
it came from, ``event_shape`` of the inputs it was trained on) and ``params/<path>`` for every
parameter (``params/blocks_3/attn/qkv/kernel``). Written to a temporary file in the target folder
and renamed (local paths or ``gs://...``, through ``etils.epath``), so a failed write leaves nothing under the real name and never replaces a file.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.core.paths import PathLike, as_path, write_atomic
from jaxdistill.core.types import PyTree
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import DDPM, EDM
from jaxdistill.models.registry import Network, make_network

FORMAT = "jaxdistill-converted-1"


def _flatten(tree: PyTree) -> dict[str, Any]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(k.key for k in path): leaf for path, leaf in flat}


def save_converted(path: PathLike, params: PyTree, network: dict, info: dict) -> None:
    """Write ``params`` (``{"params": ...}``), the ``network`` config and ``info`` to ``path`` (.npz)."""
    arrays = {k: np.asarray(v) for k, v in _flatten(params).items()}
    meta = {"format": np.array(FORMAT), "network": np.array(json.dumps(network)), "info": np.array(json.dumps(info))}
    write_atomic(path, lambda f: np.savez(f, **meta, **arrays))


def read_converted(path: PathLike) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """``(network config, info, {param path: array})`` of a converted checkpoint."""
    if not as_path(path).is_file():
        raise CheckpointFileError(f"no converted checkpoint file {path!r}")
    try:
        with as_path(path).open("rb") as f, np.load(f) as data:
            if "format" not in data.files or str(data["format"]) != FORMAT:
                raise CheckpointFileError(f"{path!r} is not a converted checkpoint (no format {FORMAT!r}; write one with 'jaxdistill convert')")
            network, info = json.loads(str(data["network"])), json.loads(str(data["info"]))
            arrays = {k: data[k] for k in data.files if k.startswith("params/")}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointFileError(f"{path!r} is not a readable converted checkpoint (.npz): {type(err).__name__}: {err}") from None
    return network, info, arrays


def load_converted(path: PathLike, network_config: Optional[ml_collections.ConfigDict] = None) -> tuple[Network, PyTree, dict]:
    """``(network, params, info)`` of the converted checkpoint at ``path``: the network its own
    config builds, or ``network_config`` if given (``info["network"]`` is the config used); every
    parameter is checked against the network's abstract shapes (``jax.eval_shape``, nothing
    allocated) before any is used."""
    stored, info, arrays = read_converted(path)
    config = network_config if network_config is not None else ml_collections.ConfigDict(stored)
    try:
        network = make_network(config)
    except (ValueError, KeyError) as err:
        raise CheckpointFileError(f"{path!r}: its network config does not build: {err}") from None
    example = jax.ShapeDtypeStruct((1, *info["event_shape"]), jnp.float32)
    expected = _flatten(jax.eval_shape(network.init, jax.random.key(0), example))
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise CheckpointFileError(f"{path!r} does not match the network {config.get('name')!r}: it lacks {missing[:3]} and has extra {extra[:3]}")
    for key in sorted(expected):
        if tuple(arrays[key].shape) != tuple(expected[key].shape) or arrays[key].dtype != expected[key].dtype:
            raise CheckpointFileError(
                f"{path!r} does not match the network {config.get('name')!r}: {key} is {arrays[key].dtype}{list(arrays[key].shape)}, "
                f"the network expects {expected[key].dtype}{list(expected[key].shape)}"
            )
    return network, traverse_util.unflatten_dict(arrays, sep="/"), {**info, "network": config.to_dict()}


def _edm_teacher(network: Network, info: dict) -> Denoiser:
    """EDM's and EDM2's networks (Karras et al. 2022, 2024) are the raw F of the EDM-preconditioned
    denoiser on sigma in [0.002, 80] (``EDM()``), with the sigma_data their pickle records."""
    return Denoiser(network.apply, EDM(), "edm", sigma_data=float(info.get("sigma_data", 0.5)))


def _dit_teacher(network: Network, info: dict) -> Denoiser:
    """DiT (Peebles & Xie 2023) predicts eps of DDPM's linear schedule (beta 1e-4..0.02, T = 1000)
    and takes the training index k = t - 1 of process time t (``DDPM.timestep``) as its timestep."""
    process = DDPM("linear", 1e-4, 0.02, 1000)

    def apply(params, x, t, cond=None, **kwargs):
        return network.apply(params, x, process.timestep(t), cond, **kwargs)

    return Denoiser(apply, process, "eps")


# The process and prediction each port's published checkpoints were trained with.
TEACHERS = {"dit_port": _dit_teacher, "edm_ddpmpp": _edm_teacher, "edm_adm": _edm_teacher, "edm2": _edm_teacher}


def converted_teacher(path: PathLike) -> tuple[Denoiser, PyTree, dict]:
    """``(denoiser, params, info)`` of the converted checkpoint at ``path`` as the teacher its
    network was published as (``TEACHERS``: process, prediction, time input)."""
    network, params, info = load_converted(path)
    name = info["network"].get("name")
    if name not in TEACHERS:
        raise CheckpointFileError(f"{path!r} holds a {name!r} network, which is no teacher kind known here ({', '.join(TEACHERS)})")
    return TEACHERS[name](network, info), params, info
