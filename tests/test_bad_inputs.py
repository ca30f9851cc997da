"""Malformed CLI inputs: each is a one-line error naming the input, exit status 2, and no saved
checkpoint changes. One tiny KD run (module fixture) serves every test; corrupting tests copy it."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from ml_collections import ConfigDict

from jaxdistill.cli import main
from jaxdistill.config import ConfigError
from jaxdistill.train.mesh import make_mesh, mesh_shape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KD = os.path.join(ROOT, "configs", "grid25", "kd.py") + ":smoke"  # a one-step student, checkpoints at steps 10 and 20


def fingerprint(workdir: str) -> dict[str, str]:
    """Relative path -> content hash of every file under ``workdir/checkpoints``."""
    root = os.path.join(workdir, "checkpoints")
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = hashlib.sha1(open(path, "rb").read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
    workdir = str(tmp_path_factory.mktemp("bad_inputs") / "kd")
    assert main(["train", "--config", KD, "--workdir", workdir, "--quiet"]) == 0
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "20"]
    return workdir


@pytest.fixture
def corrupt_run(run, tmp_path) -> str:
    """A copy of the run whose latest checkpoint (step 20) has a truncated config JSON."""
    workdir = str(tmp_path / "corrupt")
    shutil.copytree(run, workdir)
    with open(os.path.join(workdir, "checkpoints", "20", "config", "metadata"), "w") as f:
        f.write('{"seed": 0, "meth')
    return workdir


def fails(argv: list[str], capsys, *names: str) -> str:
    """Run the CLI on ``argv``: exit status 2 and one stderr line naming each of ``names``."""
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxdistill: error: "), lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "override, names",
    [
        ("mesh.fsdp=3", ["mesh.fsdp=3", "there are 1"]),
        ("mesh.data=2", ["mesh.data=2"]),
        ("mesh.fsdp=0", ["mesh.fsdp=0"]),
        ("mesh.data=0", ["mesh.data=0"]),
        ("mesh.dcn_data=0", ["mesh.dcn_data=0"]),
        ("mesh.logical_axis_rules=(('embed','data'),)", ["mesh.logical_axis_rules", "('embed', 'data')"]),
        ("data.size=10", ["data.size=10", "batch_size=64"]),
        ("seed=-1", ["seed=-1"]),
        ("data.seed=-1", ["data.seed=-1"]),
        ("seed=18446744073709551616", ["seed=18446744073709551616"]),
    ],
)
def test_bad_train_config(tmp_path, capsys, override, names):
    workdir = tmp_path / "w"
    fails(["train", "--config", KD, "--workdir", str(workdir), "--quiet", f"--config.{override}"], capsys, *names)
    assert not workdir.exists()  # refused before the run folder is made


def test_mesh_must_use_every_device():
    with pytest.raises(ConfigError, match="mesh.fsdp=3"):
        mesh_shape(ConfigDict({"data": -1, "fsdp": 3}), 4)
    with pytest.raises(ConfigError, match="mesh.data"):
        mesh_shape(ConfigDict({"data": 3, "fsdp": 1}), 4)
    assert mesh_shape(ConfigDict({"data": -1, "fsdp": 2}), 4) == (2, 2)


def test_the_mesh_lays_devices_out_with_jax_helpers_and_checks_its_slices():
    """mesh.dcn_data (slices the data axis spans) must divide the data axis; one slice is JAX's
    create_device_mesh layout of (data, fsdp)."""
    import jax

    devices = jax.devices()
    mesh = make_mesh(ConfigDict({"data": -1, "fsdp": 1, "dcn_data": 1}), devices)
    assert mesh.axis_names == ("data", "fsdp") and dict(mesh.shape) == {"data": len(devices), "fsdp": 1}
    assert sorted(d.id for d in mesh.devices.ravel()) == sorted(d.id for d in devices)
    with pytest.raises(ConfigError, match="mesh.dcn_data=3"):
        make_mesh(ConfigDict({"data": -1, "fsdp": 1, "dcn_data": 3}), devices)


@pytest.mark.parametrize("below", ["", "sub"])
def test_workdir_that_is_a_file(tmp_path, capsys, below):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    workdir = os.path.join(str(blocker), below) if below else str(blocker)
    fails(["train", "--config", KD, "--workdir", workdir, "--quiet"], capsys, "--workdir", str(blocker))
    fails(["restore", "--snapshot", os.path.join(ROOT, "results", "digits_teacher.npz"), "--workdir", workdir], capsys, "--workdir")
    assert blocker.read_text() == "keep me"


def test_out_under_a_file(run, tmp_path, capsys):
    before = fingerprint(run)
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    out = str(blocker / "s.npz")
    fails(["data", "--config", KD, "--num", "10", "--out", out], capsys, "--out", out)
    fails(["sample", "--workdir", run, "--num", "10", "--out", out], capsys, "--out", out)
    fails(["eval", "--workdir", run, "--num", "10", "--out", out], capsys, "--out", out)
    fails(["snapshot", "--workdir", run, "--out", out], capsys, "--out", out)
    fails(["sample", "--workdir", run, "--num", "10", "--out", str(tmp_path)], capsys, "--out", "is a folder")
    assert blocker.read_text() == "keep me" and fingerprint(run) == before


@pytest.mark.parametrize("num", ["-1", "0"])
def test_eval_num_must_be_positive(run, capsys, num):
    before = fingerprint(run)
    fails(["eval", "--workdir", run, "--num", num], capsys, f"--num must be a positive number of samples per NFE, got {num}")
    assert fingerprint(run) == before


def test_nfe_a_one_step_student_cannot_take(run, capsys):
    before = fingerprint(run)
    fails(["eval", "--workdir", run, "--num", "10", "--nfes", "1,4"], capsys, "--nfes 4", "one-step", "NFEs (1,)")
    fails(["sample", "--workdir", run, "--num", "10", "--nfe", "2"], capsys, "--nfe 2", "one-step", "NFEs (1,)")
    assert fingerprint(run) == before


def test_restore_of_a_file_that_is_no_snapshot(tmp_path, capsys):
    text, npy, empty = tmp_path / "text.npz", tmp_path / "array.npy", tmp_path / "empty.npz"
    text.write_text("hello")
    np.save(npy, np.zeros(3))
    empty.write_bytes(b"")
    zipped = tmp_path / "other.npz"
    np.savez(zipped, x=np.zeros(3))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(zipped.read_bytes()[:100])
    for path in (text, npy, empty, zipped, truncated):
        workdir = tmp_path / f"restored_{path.stem}"
        fails(["restore", "--snapshot", str(path), "--workdir", str(workdir)], capsys, str(path), "snapshot")
        assert not os.path.exists(workdir / "checkpoints")


@pytest.mark.parametrize("command", [["sample", "--num", "10"], ["eval", "--num", "10"], ["snapshot", "--out", "SNAP"]])
def test_corrupt_saved_config(corrupt_run, tmp_path, capsys, command):
    before = fingerprint(corrupt_run)
    argv = [a.replace("SNAP", str(tmp_path / "s.npz")) for a in command]
    fails([*argv, "--workdir", corrupt_run], capsys, "config of checkpoint step 20", "corrupt", "--step", "10")
    assert fingerprint(corrupt_run) == before


def test_step_reads_an_older_checkpoint(corrupt_run, tmp_path, capsys):
    """--step reads step 10 when the latest is corrupt; eval creates its --out's missing folders."""
    before = fingerprint(corrupt_run)
    out, snapshot = tmp_path / "new" / "folder" / "eval.json", str(tmp_path / "snap.npz")
    assert main(["eval", "--workdir", corrupt_run, "--num", "50", "--out", str(out), "--step", "10"]) == 0
    report = json.loads(out.read_text())
    assert report["step"] == 10 and list(report["by_nfe"]) == ["1"]
    assert main(["snapshot", "--workdir", corrupt_run, "--out", snapshot, "--step", "10"]) == 0
    assert int(np.load(snapshot)["step"]) == 10
    for command in (["sample", "--num", "10"], ["eval", "--num", "10"], ["snapshot", "--out", snapshot]):
        fails([*command, "--workdir", corrupt_run, "--step", "15"], capsys, "step 15", "10, 20")
    assert fingerprint(corrupt_run) == before


@pytest.mark.parametrize("command", [["export", "--out", "OUT"], ["sample", "--prompt", "a cat", "--out", "OUT.png"]])
def test_export_and_prompts_need_a_run_distilled_from_a_diffusers_folder(run, tmp_path, capsys, command):
    """The KD run's teacher is a mixture: no diffusers files to write, no prompts to sample from."""
    before = fingerprint(run)
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    fails([*argv, "--workdir", run], capsys, "teacher.kind='diffusers'", "'mixture'")
    assert fingerprint(run) == before and not os.listdir(tmp_path)
