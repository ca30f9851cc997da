"""One-file snapshots of a finished run, to share or commit a trained teacher.

A snapshot is an ``.npz`` holding the run's config (JSON), its step, a free-form ``info``
dict (JSON) and every leaf of every trainable network state (params, optimiser state,
EMA) in tree order. ``restore_snapshot`` writes it back as an ordinary run folder (an
Orbax checkpoint at the same step), which ``load_run`` and ``teacher.kind='checkpoint'``
read exactly like the original: the arrays are stored bit for bit.

A folder snapshot (``save_folder_snapshot`` / ``restore_folder_snapshot``) is the same for a
diffusers / transformers folder (``save_pretrained`` layout, e.g. a Stable Diffusion pipeline):
its files, with the Flax weights stored as float16 to halve the bytes of a committed file.
"""
from __future__ import annotations

import json
import pathlib
import zipfile
import zlib
from typing import Any, Optional

import flax.serialization
import jax
import numpy as np
from flax import traverse_util

from jaxdistill.build import abstract_trainable, build, config_from_json, load_run
from jaxdistill.core.paths import PathLike, as_path, write_atomic
from jaxdistill.train.checkpoint import Checkpointer, CheckpointError

_META = ("config", "step", "info", "num_leaves")


def save_snapshot(workdir: PathLike, path: PathLike, info: Optional[dict] = None, step: Optional[int] = None) -> None:
    """Write the latest checkpoint of ``workdir`` (or ``step``) and ``info`` to ``path`` (.npz)."""
    run = load_run(workdir, step)
    leaves = jax.tree.leaves(jax.device_get(run.trainable))
    arrays = {f"leaf{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    meta = {
        "config": np.array(run.config.to_json_best_effort()),
        "step": np.array(run.step),
        "info": np.array(json.dumps(info or {})),
        "num_leaves": np.array(len(leaves)),
    }
    write_atomic(path, lambda f: np.savez_compressed(f, **meta, **arrays))  # a failed write never leaves a half snapshot under the real name


def _require_file(path: PathLike) -> None:
    if not as_path(path).is_file():
        raise CheckpointError(f"no snapshot file {path!r}")


def _read(path: PathLike, leaves: bool = False) -> dict[str, Any]:
    """The snapshot at ``path``: its JSON fields decoded, its step and, if ``leaves``, every leaf in
    tree order; a CheckpointError if it is no readable snapshot."""
    _require_file(path)
    try:
        with as_path(path).open("rb") as f, np.load(f) as data:
            missing = [k for k in _META if k not in data]
            if missing:
                raise CheckpointError(f"{path!r} is not a jaxdistill snapshot (missing {missing})")
            snapshot = {"config": json.loads(str(data["config"])), "info": json.loads(str(data["info"])), "step": int(data["step"])}
            if leaves:
                snapshot["leaves"] = [data[f"leaf{i:05d}"] for i in range(int(data["num_leaves"]))]
            return snapshot
    except (OSError, ValueError, EOFError, KeyError, AttributeError, TypeError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointError(f"{path!r} is not a readable jaxdistill snapshot (.npz): {type(err).__name__}: {err}") from err


def snapshot_config(path: PathLike) -> dict:
    """The saved run config of a snapshot, as a JSON dict."""
    return _read(path)["config"]


def restore_snapshot(path: PathLike, workdir: PathLike) -> dict:
    """Write the snapshot at ``path`` into ``workdir`` as a run checkpoint; returns its ``info``.

    Refuses a ``workdir`` that already holds checkpoints, so no saved work is overwritten.
    """
    _require_file(path)
    ckpt_dir = as_path(workdir) / "checkpoints"
    if ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise CheckpointError(f"{workdir!r} already holds checkpoints; restore the snapshot into an empty folder")
    snapshot = _read(path, leaves=True)
    config, leaves = config_from_json(snapshot["config"]), snapshot["leaves"]
    abstract = abstract_trainable(build(config))
    expected, treedef = jax.tree.flatten(abstract)
    if [(a.shape, a.dtype) for a in expected] != [(b.shape, b.dtype) for b in leaves]:
        raise CheckpointError(f"snapshot {path!r} does not match the networks its config builds (changed code?)")
    checkpointer = Checkpointer(ckpt_dir, async_save=False)
    checkpointer.save(snapshot["step"], jax.tree.unflatten(treedef, leaves), config, force=True)
    checkpointer.close()
    return snapshot["info"]


FOLDER_FORMAT = "jaxdistill.folder_snapshot/1"
WEIGHTS_SUFFIX = ".msgpack"  # Flax weights (diffusers' and transformers' save_pretrained), stored as float16 arrays


def save_folder_snapshot(folder: PathLike, path: PathLike, info: Optional[dict] = None) -> None:
    """Write every file of the local diffusers / transformers ``folder`` and ``info`` to ``path`` (.npz):
    Flax ``.msgpack`` weights as one float16 array per parameter (half the bytes; restored as
    float32, so a restored folder holds the float16-rounded weights), every other file as bytes."""
    root = pathlib.Path(folder)
    arrays = {"format": np.array(FOLDER_FORMAT), "info": np.array(json.dumps(info or {}))}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        name = file.relative_to(root).as_posix()
        if name.endswith(WEIGHTS_SUFFIX):
            flat = traverse_util.flatten_dict(flax.serialization.msgpack_restore(file.read_bytes()), sep="/")
            arrays.update({f"weights:{name}:{key}": np.asarray(value, np.float16) for key, value in flat.items()})
        else:
            arrays[f"file:{name}"] = np.frombuffer(file.read_bytes(), np.uint8)
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def _read_folder_snapshot(path: PathLike, files: bool) -> tuple[dict, dict[str, bytes]]:
    """(info, {relative path: file bytes}) of a folder snapshot; only ``info`` unless ``files``."""
    _require_file(path)
    try:
        with as_path(path).open("rb") as f, np.load(f) as data:
            if "format" not in data or str(data["format"]) != FOLDER_FORMAT:
                raise CheckpointError(f"{path!r} is not a jaxdistill folder snapshot (expected format {FOLDER_FORMAT!r})")
            info = json.loads(str(data["info"]))
            contents, weights = {}, {}
            for key in data.files if files else ():
                kind, _, rest = key.partition(":")
                if kind == "file":
                    contents[rest] = data[key].tobytes()
                elif kind == "weights":
                    name, _, param = rest.partition(":")
                    weights.setdefault(name, {})[param] = np.asarray(data[key], np.float32)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointError(f"{path!r} is not a readable jaxdistill folder snapshot (.npz): {type(err).__name__}: {err}") from err
    for name, flat in weights.items():
        contents[name] = flax.serialization.msgpack_serialize(traverse_util.unflatten_dict(flat, sep="/"))
    return info, contents


def folder_snapshot_info(path: PathLike) -> dict:
    """The ``info`` dict stored with a folder snapshot."""
    return _read_folder_snapshot(path, files=False)[0]


def restore_folder_snapshot(path: PathLike, folder: PathLike) -> dict:
    """Write the folder snapshot at ``path`` (``save_folder_snapshot``) into ``folder``, which must
    not exist yet or be empty; returns its ``info``."""
    root = pathlib.Path(folder)
    if root.is_dir() and any(root.iterdir()):
        raise CheckpointError(f"{folder!r} is not empty; restore the folder snapshot into a new or empty folder")
    info, files = _read_folder_snapshot(path, files=True)
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return info
