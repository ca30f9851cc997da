"""One-file run snapshots: a restored run is the original, bit for bit, and resumes identically."""
import json

import jax
import numpy as np
import pytest
from protocol_checks import config as config_file

from jaxdistill.build import build, load_run
from jaxdistill.snapshot import restore_snapshot, save_snapshot, snapshot_config
from jaxdistill.train.checkpoint import CheckpointError
from jaxdistill.train.engine import Trainer


def _teacher(steps: int):
    config = config_file("grid25/teacher")
    config.train.num_steps = steps
    config.train.checkpoint_every = config.train.log_every = 4
    return config


def _train(config, workdir):
    built = build(config)
    return Trainer(built.objective, built.frozen, config, workdir, built.data_factory, show_progress=False).train()


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_restored_snapshot_is_the_run_and_resumes_identically(tmp_path):
    _train(_teacher(4), tmp_path / "run")
    save_snapshot(str(tmp_path / "run"), str(tmp_path / "teacher.npz"), info={"train_seconds": 1.5})
    assert snapshot_config(str(tmp_path / "teacher.npz"))["train"]["num_steps"] == 4

    assert restore_snapshot(str(tmp_path / "teacher.npz"), str(tmp_path / "copy")) == {"train_seconds": 1.5}
    original, copy = load_run(str(tmp_path / "run")), load_run(str(tmp_path / "copy"))
    assert copy.step == original.step == 4
    assert json.loads(copy.config.to_json()) == json.loads(original.config.to_json())
    for a, b in zip(_leaves(original.trainable), _leaves(copy.trainable), strict=True):
        np.testing.assert_array_equal(a, b)

    # The optimiser state and EMA came back too: four more updates from either give the same networks.
    longer = _teacher(8)
    for a, b in zip(_leaves(_train(longer, tmp_path / "run").trainable), _leaves(_train(longer, tmp_path / "copy").trainable), strict=True):
        np.testing.assert_array_equal(a, b)


def test_restore_refuses_to_overwrite_a_run_and_rejects_other_files(tmp_path):
    _train(_teacher(4), tmp_path / "run")
    save_snapshot(str(tmp_path / "run"), str(tmp_path / "teacher.npz"))
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        restore_snapshot(str(tmp_path / "teacher.npz"), str(tmp_path / "run"))
    assert load_run(str(tmp_path / "run")).step == 4  # untouched

    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a jaxdistill snapshot"):
        restore_snapshot(str(tmp_path / "other.npz"), str(tmp_path / "empty"))

    with np.load(tmp_path / "teacher.npz") as data:
        edited = dict(data)
    edited["leaf00000"] = np.zeros((1, 1), np.float32)
    np.savez(tmp_path / "edited.npz", **edited)
    with pytest.raises(CheckpointError, match="does not match the networks"):
        restore_snapshot(str(tmp_path / "edited.npz"), str(tmp_path / "empty2"))
