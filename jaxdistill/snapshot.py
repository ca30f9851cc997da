"""One-file snapshots of a finished run, to share or commit a trained teacher.

A snapshot is an ``.npz`` holding the run's config (JSON), its step, a free-form ``info``
dict (JSON) and every leaf of every trainable network state (params, optimiser state,
EMA) in tree order. ``restore_snapshot`` writes it back as an ordinary run folder (an
Orbax checkpoint at the same step), which ``load_run`` and ``teacher.kind='checkpoint'``
read exactly like the original: the arrays are stored bit for bit.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from typing import Any, Optional

import jax
import numpy as np

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
