"""Orbax checkpoints: one item per trainable network state, plus the run's config.

Layout of ``workdir/checkpoints/<step>/``: an item per network (``student``,
``critic``, ...) each holding that network's ``NetState`` (params, opt_state, ema),
and ``config`` (the run's ConfigDict as JSON). Saves are asynchronous; restores read
straight into the sharded abstract state, so a pod restores without gathering.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import PathLike, as_path
from jaxdistill.core.types import PyTree

CONFIG_ITEM = "config"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the run's networks."""


def abstract_like(tree: PyTree, shardings: PyTree) -> PyTree:
    """ShapeDtypeStructs carrying the target shardings, the restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` with named network items. Close it when done
    (``close()`` or ``with Checkpointer(...) as ckpt:``): an open manager's threads outlive an
    error and fail at interpreter exit."""

    def __init__(self, directory: PathLike, *, max_to_keep: int = 3, async_save: bool = True):
        if max_to_keep < 1:  # orbax would delete every checkpoint, the one just saved included
            raise ConfigError(f"train.max_to_keep must be at least 1 (the checkpoints kept), got {max_to_keep}")
        self.directory = as_path(directory)  # absolute if local; a URI (gs://...) as given
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, states: Mapping[str, PyTree], config: ml_collections.ConfigDict, *, force: bool = False) -> bool:
        items = {name: ocp.args.StandardSave(state) for name, state in states.items()}
        items[CONFIG_ITEM] = ocp.args.JsonSave(json.loads(config.to_json_best_effort()))
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, step: int, abstract_states: Mapping[str, PyTree]) -> dict[str, PyTree]:
        """Restore every named state into the given abstract (sharded) targets."""
        items = {name: ocp.args.StandardRestore(tree) for name, tree in abstract_states.items()}
        try:
            # Checked first: orbax's restore of a mismatched array leaves reads in flight that fail
            # later, printing "Event loop is closed" tracebacks after the error.
            mismatch = self._mismatch(step, abstract_states)
            if mismatch:
                raise ValueError(f"the run's config builds other networks ({mismatch})")
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as err:  # orbax raises many types; name the checkpoint and keep it on disk
            raise CheckpointError(
                f"could not restore checkpoint step {step} from {self.directory}: {err}. "
                "The checkpoint was left untouched; use a fresh --workdir or the matching config."
            ) from err
        return {name: restored[name] for name in abstract_states}

    def _mismatch(self, step: int, abstract_states: Mapping[str, PyTree]) -> str:
        """The first array the checkpoint lacks or stores with another shape ("" if none)."""
        for name, tree in abstract_states.items():
            handler = ocp.StandardCheckpointHandler()
            try:
                stored = _shapes(handler.metadata(self.manager.directory / str(step) / name))
            finally:
                handler.close()
            for path, shape in _shapes(tree).items():
                if stored.get(path) != shape:
                    found = "missing" if path not in stored else f"stored shape {stored[path]}"
                    return f"{name}/{path}: {found}, the config's shape {shape}"
        return ""

    def restore_config(self, step: Optional[int] = None) -> dict[str, Any]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        return read_config_json(self.directory, step)

    def is_committed(self, step: int) -> bool:
        """Whether checkpoint ``step`` is finalized on disk (its asynchronous save has committed)."""
        return ocp.step.is_path_finalized(self.directory / str(step))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves, then release the manager's threads and event loops."""
        self.manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
    """``{"params/Dense_0/kernel": shape}`` of a state or of its checkpoint metadata (same keys)."""
    name = lambda key: str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
    return {"/".join(map(name, path)): tuple(x.shape) for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def read_config_json(directory: PathLike, step: int) -> dict[str, Any]:
    path = as_path(directory) / str(step) / CONFIG_ITEM / "metadata"
    if not path.exists():
        raise CheckpointError(f"checkpoint {directory}/{step} has no saved config ({path} missing)")
    return json.loads(path.read_text())
