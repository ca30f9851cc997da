"""Bad training input stops with a one-line error naming it, and the checkpoints a workdir already
holds stay as they were: max_to_keep, non-finite learning rates and updates, metrics and train-time
records across a resume, num_steps below a checkpoint, failed restores, and sample plots."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from protocol_checks import CONFIGS, config

from jaxdistill.build import build
from jaxdistill.cli import main
from jaxdistill.config import base_config
from jaxdistill.core.errors import ConfigError
from jaxdistill.train.checkpoint import Checkpointer, CheckpointError
from jaxdistill.train.engine import MetricsWriter, TrainClock, Trainer, keep_finite

TEACHER = os.path.join(CONFIGS, "grid25", "teacher.py") + ":smoke"  # 20 steps, checkpoints at 10 and 20


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> str:
    """A workdir holding the smoke teacher's checkpoints 10 and 20 (trained once, copied per test)."""
    workdir = str(tmp_path_factory.mktemp("finished") / "run")
    assert main(["train", "--config", TEACHER, "--workdir", workdir, "--quiet"]) == 0
    return workdir


@pytest.fixture
def workdir(finished, tmp_path) -> str:
    copy = str(tmp_path / "run")
    shutil.copytree(finished, copy)
    return copy


def saved(workdir: str) -> dict[str, str]:
    """SHA-256 of every file under ``workdir/checkpoints``, by relative path."""
    root = os.path.join(workdir, "checkpoints")
    return {
        os.path.relpath(os.path.join(folder, name), root): hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
        for folder, _, names in os.walk(root)
        for name in names
    }


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxdistill: error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_max_to_keep_below_1_is_rejected_before_any_checkpoint_is_deleted(workdir, capsys):
    before = saved(workdir)
    assert main(["train", "--config", TEACHER, "--workdir", workdir, "--config.train.max_to_keep=0", "--config.train.num_steps=30"]) == 2
    one_line_error(capsys, "train.max_to_keep must be positive, got 0")
    assert saved(workdir) == before
    with pytest.raises(ConfigError, match="train.max_to_keep must be at least 1"):  # the library path, without validate()
        Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=0)
    assert saved(workdir) == before


@pytest.mark.parametrize("how, shown", [("override", "inf"), ("file", "nan")])
def test_a_non_finite_learning_rate_is_rejected(workdir, tmp_path, capsys, how, shown):
    before = saved(workdir)
    if how == "override":
        argv = ["--config", TEACHER, "--config.optim.lr=1e999"]
    else:
        path = tmp_path / "nan_lr.py"
        path.write_text("from jaxdistill.benchmarks import grid25\n\n\ndef get_config(arg=None):\n"
                        "    c = grid25.teacher('smoke')\n    c.optim.lr = float('nan')\n    return c\n")
        argv = ["--config", str(path)]
    assert main(["train", *argv, "--workdir", workdir, "--config.train.num_steps=30"]) == 2
    one_line_error(capsys, f"optim.lr must be a finite positive number, got {shown}")
    assert saved(workdir) == before


@pytest.mark.parametrize("override, key", [("dmd.critic_lr=1e999", "dmd.critic_lr"), ("dmd.later_step_sigmas=(2.0, 1e999)", "dmd.later_step_sigmas[1]")])
def test_a_non_finite_value_anywhere_in_the_config_is_rejected_by_name(workdir, capsys, override, key):
    before = saved(workdir)
    assert main(["train", "--config", "configs/grid25/dmd2.py:smoke", "--workdir", workdir, f"--config.{override}"]) == 2
    one_line_error(capsys, f"{key} must be finite")
    assert saved(workdir) == before


def test_keep_finite_keeps_the_old_state_when_any_new_array_is_not_finite():
    old = {"w": jnp.ones((3,)), "count": jnp.zeros((), jnp.int32)}
    bad = {"w": jnp.array([1.0, jnp.inf, 2.0]), "count": jnp.ones((), jnp.int32)}
    good = {"w": jnp.full((3,), 2.0), "count": jnp.ones((), jnp.int32)}
    kept, metrics = jax.jit(keep_finite)(old, bad, {"skipped": jnp.float32(0.0)}, jnp.float32(4.0))
    np.testing.assert_array_equal(kept["w"], old["w"])
    assert int(kept["count"]) == 0 and float(metrics["skipped"]) == 1.0 and float(metrics["skipped_total"]) == 5.0
    kept, metrics = jax.jit(keep_finite)(old, good, {}, jnp.float32(5.0))
    np.testing.assert_array_equal(kept["w"], good["w"])
    assert float(metrics["skipped"]) == 0.0 and float(metrics["skipped_total"]) == 5.0


def test_an_update_that_is_not_finite_although_its_gradients_are_is_skipped_and_counted(tmp_path):
    c = config("grid25/teacher")
    c.optim.lr = 1e39  # valid, but inf in float32: the warm-up's first learning rate is 0 * inf = nan
    built = build(c)
    result = Trainer(built.objective, built.frozen, c, str(tmp_path / "run"), built.data_factory, show_progress=False).train()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(result.trainable))
    lines = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [(l["step"], l["skipped"], l["skipped_total"]) for l in lines] == [(10, 1.0, 10.0), (20, 1.0, 20.0)]
    assert all(np.isfinite(l["grad_norm"]) for l in lines)  # the gradients were finite: the update was not


def test_a_resume_drops_the_metrics_logged_after_its_checkpoint(workdir, capsys):
    metrics = os.path.join(workdir, "metrics.jsonl")
    with open(metrics) as f:
        logged = [json.loads(line) for line in f]
    assert [l["step"] for l in logged] == [10, 20]
    shutil.rmtree(os.path.join(workdir, "checkpoints", "20"))  # as if killed before checkpoint 20 committed
    with open(metrics, "a") as f:
        f.write('{"step": 2')  # and a line the kill cut short
    assert main(["train", "--config", TEACHER, "--workdir", workdir, "--quiet"]) == 0
    with open(metrics) as f:
        resumed = [json.loads(line) for line in f]
    assert [l["step"] for l in resumed] == [10, 20] and resumed[0] == logged[0]
    assert not os.path.exists(metrics + ".tmp")


def test_metrics_writer_drop_after_keeps_earlier_lines_byte_for_byte(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n{"step": 15, "loss": 0.25}\n')
    MetricsWriter(str(tmp_path), enabled=False).drop_after(5)  # other processes leave the file alone
    assert len(path.read_text().splitlines()) == 3
    MetricsWriter(str(tmp_path)).drop_after(10)
    assert path.read_text() == '{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n'


def test_num_steps_below_the_checkpoint_is_an_error_and_equal_has_nothing_to_do(workdir, capsys):
    before = saved(workdir)
    assert main(["train", "--config", TEACHER, "--workdir", workdir, "--config.train.num_steps=10"]) == 2
    one_line_error(capsys, "train.num_steps=10 is below the step 20 this workdir's checkpoint already reached",
                   "raise num_steps or use a fresh --workdir")
    assert saved(workdir) == before
    assert main(["train", "--config", TEACHER, "--workdir", workdir, "--quiet"]) == 0
    assert "already reached train.num_steps=20: nothing to train" in capsys.readouterr().out
    assert saved(workdir) == before


def test_a_failed_restore_closes_the_checkpointer(workdir, monkeypatch):
    closed, close = [], Checkpointer.close
    monkeypatch.setattr(Checkpointer, "close", lambda self: (closed.append(self.directory), close(self)))
    c = config("grid25/teacher")
    c.network.width = 64  # the checkpoint holds width 128
    built = build(c)
    trainer = Trainer(built.objective, built.frozen, c, workdir, built.data_factory, show_progress=False)
    with pytest.raises(CheckpointError, match="stored shape"):
        trainer.train()
    assert closed == [trainer.checkpointer.directory]


def test_a_failed_restore_exits_with_one_line_and_no_traceback(workdir):
    before = saved(workdir)
    argv = ["train", "--config", TEACHER, "--workdir", workdir, "--quiet", "--config.network.width=64"]
    out = subprocess.run([sys.executable, "-m", "jaxdistill.cli", *argv], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if not line.startswith("WARNING:absl")]
    assert len(lines) == 1 and lines[0].startswith("jaxdistill: error: could not restore checkpoint step 20"), out.stderr
    assert "stored shape (128,)" in lines[0] and "Traceback" not in out.stderr
    assert saved(workdir) == before


def test_the_train_time_of_a_save_is_recorded_only_once_it_committed(tmp_path):
    clock = TrainClock(str(tmp_path), 0, started=0.0)
    clock.saving(10)
    clock.commit(lambda step: False)
    assert not os.path.exists(tmp_path / "train_seconds.json") and "10" not in clock.record
    clock.commit(lambda step: step == 10)
    assert set(json.load(open(tmp_path / "train_seconds.json"))) == {"10"}


def test_a_run_records_the_train_time_of_committed_checkpoints_only(tmp_path, monkeypatch):
    monkeypatch.setattr(Checkpointer, "is_committed", lambda self, step: step != 20)  # 20's save never commits
    c = config("grid25/teacher")
    built = build(c)
    Trainer(built.objective, built.frozen, c, str(tmp_path / "run"), built.data_factory, show_progress=False).train()
    assert set(json.load(open(tmp_path / "run" / "train_seconds.json"))) == {"10"}


def test_a_corrupt_train_time_record_is_a_one_line_error_naming_it(workdir, capsys):
    path = os.path.join(workdir, "train_seconds.json")
    with open(path, "w") as f:
        f.write('{"10": 4')
    before = saved(workdir)
    assert main(["train", "--config", TEACHER, "--workdir", workdir, "--config.train.num_steps=30"]) == 2
    one_line_error(capsys, f"{path} is not a readable train-time record")
    assert saved(workdir) == before and open(path).read() == '{"10": 4'


def test_sample_plots_are_on_by_default_at_the_last_step_and_leave_training_alone(finished, tmp_path):
    assert base_config().train.sample_every > 0
    c = config("grid25/teacher")
    assert c.train.sample_every == 0  # smoke runs (tests, CI) draw none
    c.train.sample_every = 7
    built = build(c)
    result = Trainer(built.objective, built.frozen, c, str(tmp_path / "run"), built.data_factory, show_progress=False).train()
    assert sorted(os.listdir(tmp_path / "run" / "samples")) == [f"step_{s:07d}.png" for s in (7, 14, 20)]
    plain = Checkpointer(os.path.join(finished, "checkpoints"))
    try:
        reference = jax.tree.leaves(jax.tree.map(np.asarray, plain.restore(20, jax.tree.map(_abstract, result.trainable))))
    finally:
        plain.close()
    for a, b in zip(jax.tree.leaves(result.trainable), reference, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def _abstract(x: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
