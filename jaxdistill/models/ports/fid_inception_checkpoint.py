"""pytorch-fid's Inception weights (``pt_inception-2015-12-05-6726825d.pth``, a state dict of
``fid_inception_v3()``) -> :class:`~jaxdistill.models.ports.fid_inception.FIDInceptionV3` parameters,
and the converted ``.npz`` back.

Key map (one-to-one both ways; ``<m>`` is a module path, dots turned into ``/``):

======================================  ==========================  ==========================
PyTorch state-dict key                  Flax parameter path         array
======================================  ==========================  ==========================
``<m>.conv.weight`` [O, I, kh, kw]      ``<m>/conv/kernel``         ``w.transpose(2, 3, 1, 0)``
``<m>.bn.weight``                       ``<m>/bn/scale``            as is
``<m>.bn.bias``                         ``<m>/bn/bias``             as is
``<m>.bn.running_mean``                 ``<m>/bn/mean``             as is
``<m>.bn.running_var``                  ``<m>/bn/var``              as is (must be >= 0)
``<m>.bn.num_batches_tracked``          (none: a training counter)  ignored if present
``fc.weight`` [1008, 2048]              ``fc/kernel`` [2048, 1008]  ``w.T``
``fc.bias``                             ``fc/bias``                 as is
======================================  ==========================  ==========================

e.g. ``Mixed_7c.branch3x3dbl_3a.bn.running_var`` -> ``Mixed_7c/branch3x3dbl_3a/bn/var``.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.core.paths import as_path
from jaxdistill.core.types import PyTree
from jaxdistill.models.ports.converted import read_converted, save_converted
from jaxdistill.models.ports.fid_inception import FIDInceptionV3

NETWORK_NAME = "fid_inception"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
WEIGHTS_SHA256_PREFIX = "6726825d"  # torch.hub's convention: the file name carries its hash's first digits
HOW_TO_GET = f"download {WEIGHTS_URL} and run 'jaxdistill convert --from fid-inception-pth {WEIGHTS_FILE} --out inception_fid.npz'"
_IGNORED = "num_batches_tracked"
_TO_FLAX = {"weight": "kernel", "running_mean": "mean", "running_var": "var"}
_TO_TORCH = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}


def flax_path(key: str) -> tuple[str, ...]:
    """The Flax parameter path of a state-dict key (``Mixed_5b.branch1x1.bn.weight`` -> ``Mixed_5b/branch1x1/bn/scale``)."""
    *parents, leaf = key.split(".")
    leaf = "scale" if (leaf == "weight" and parents[-1:] == ["bn"]) else _TO_FLAX.get(leaf, leaf)
    return (*parents, leaf)


def torch_key(path: tuple[str, ...]) -> str:
    """The state-dict key of a Flax parameter path (inverse of :func:`flax_path`)."""
    return ".".join([*path[:-1], _TO_TORCH.get(path[-1], path[-1])])


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(reversed(shape))


def abstract_params() -> PyTree:
    """The network's parameter shapes (``jax.eval_shape``, nothing allocated)."""
    return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """``{state-dict key: torch shape}`` of every weight the network needs (no ``num_batches_tracked``)."""
    flat = jax.tree_util.tree_flatten_with_path(abstract_params()["params"])[0]
    return {torch_key(tuple(k.key for k in path)): _torch_shape(tuple(leaf.shape)) for path, leaf in flat}


def to_flax(key: str, value: np.ndarray) -> np.ndarray:
    """A state-dict array in the Flax layout of :func:`flax_path` (float32)."""
    value = np.asarray(value, np.float32)
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    return value.T if value.ndim == 2 else value


def convert_state_dict(state: Any, src: str) -> PyTree:
    """``{"params": ...}`` of :class:`FIDInceptionV3` from the state dict read from ``src``; a
    :class:`CheckpointFileError` naming ``src`` unless every weight is there, of its shape, finite
    (running variances >= 0), and nothing else is (``num_batches_tracked`` aside)."""
    if not isinstance(state, Mapping) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise CheckpointFileError(f"{src!r} is not a state dict of tensors (expected pytorch-fid's {WEIGHTS_FILE})")
    expected = expected_shapes()
    keys = {k for k in state if not k.endswith(_IGNORED)}
    missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
    if missing or extra:
        raise CheckpointFileError(
            f"{src!r} is not the FID Inception state dict (pytorch-fid's {WEIGHTS_FILE}): it lacks {len(missing)} of its "
            f"{len(expected)} weights {missing[:2]} and has {len(extra)} others {extra[:2]}"
        )
    params: dict = {}
    for key, shape in expected.items():
        value = state[key]
        if tuple(value.shape) != shape:
            raise CheckpointFileError(f"{src!r} is not the FID Inception state dict: {key} has shape {list(value.shape)}, expected {list(shape)}")
        if not np.all(np.isfinite(value)) or (key.endswith("running_var") and np.any(value < 0)):
            raise CheckpointFileError(f"{src!r}: {key} holds {'a negative variance' if np.all(np.isfinite(value)) else 'NaN or inf'}")
        *parents, leaf = flax_path(key)
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = to_flax(key, value)
    return {"params": params}


def file_sha256(path: str) -> str:
    """sha256 of the bytes of the file ``path`` (local or a URI), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with as_path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def params_digest(params: PyTree) -> str:
    """sha256 over the parameters' paths and float32 bytes: the same weights give the same digest,
    however the file holding them was written."""
    digest = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda item: jax.tree_util.keystr(item[0])):
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.ascontiguousarray(leaf, np.float32).tobytes())
    return digest.hexdigest()


def save_inception(out: str, params: PyTree, source: str, source_sha256: str) -> None:
    """Write converted weights (atomically, :func:`~jaxdistill.models.ports.converted.save_converted`)."""
    info = {"from": "fid-inception-pth", "source": os.path.basename(source), "source_sha256": source_sha256, "params_sha256": params_digest(params)}
    save_converted(out, params, {"name": NETWORK_NAME}, info)


def load_inception(path: str) -> tuple[PyTree, dict]:
    """``(params, info)`` of converted FID Inception weights; a :class:`CheckpointFileError` naming
    ``path`` and how to make the file if it is missing, of another network or of other shapes."""
    if not as_path(path).is_file():
        raise CheckpointFileError(f"no FID Inception weights file {path!r}: {HOW_TO_GET}")
    network, info, arrays = read_converted(path)
    if network.get("name") != NETWORK_NAME:
        raise CheckpointFileError(f"{path!r} holds the network {network.get('name')!r}, not the FID Inception network: {HOW_TO_GET}")
    flat = jax.tree_util.tree_flatten_with_path(abstract_params())[0]
    expected = {"/".join(k.key for k in path): leaf.shape for path, leaf in flat}
    for key, shape in expected.items():
        if key not in arrays or arrays[key].shape != shape:
            found = "missing" if key not in arrays else f"of shape {list(arrays[key].shape)}"
            raise CheckpointFileError(f"{path!r} does not hold the FID Inception weights: {key} is {found}, expected {list(shape)}: {HOW_TO_GET}")
    params: dict = {}
    for key in expected:
        *parents, leaf = key.split("/")
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = arrays[key].astype(np.float32)
    return params, {**info, "params_sha256": params_digest(params)}
