"""Workdirs, checkpoints, metrics, plots, snapshots, converted teachers and FID statistics on a
remote ``gs://`` path give the same results as on a local folder.

No network here, so ``gs://fake-bucket/...`` is served by a local folder: every ``etils.epath``
operation on a ``gs://`` path is redirected there (``epath.testing.mock_epath``), and Orbax's
TensorStore arrays, which talk to GCS directly, are pointed at the same folder (a ``file`` kvstore
instead of the ``gcs`` one; GCS-only API calls of Orbax, the hierarchical-namespace query and its
bucket ``rmtree``, answer as a flat bucket would). The working directory is an empty folder that
must stay empty: a path the library handled with ``os.path`` / ``open`` instead of epath would land
there (``os.path.abspath("gs://b/x")`` is ``<cwd>/gs:/b/x``). array_record's reader, which has
its own GCS client, opens the same folder; the local cache for remote latent shards is a folder of
the test's (``$JAXDISTILL_CACHE``).
"""
import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest
from array_record.python import array_record_module
from etils import epath
from etils.epath import testing as epath_testing
from orbax.checkpoint._src.path import gcs_utils
from protocol_checks import config

from jaxdistill.build import build, load_run
from jaxdistill.cli import main
from jaxdistill.core.paths import as_path, write_text_atomic
from jaxdistill.eval import fid
from jaxdistill.models.ports.converted import read_converted, save_converted
from jaxdistill.models.ports.fid_inception_checkpoint import file_sha256
from jaxdistill.models.ports.torch_pt import read_pt
from jaxdistill.snapshot import restore_snapshot, save_snapshot
from jaxdistill.train.engine import Trainer

BUCKET = "gs://fake-bucket"


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The local folder behind ``gs://fake-bucket``; the test's working directory stays empty."""
    root = tmp_path / "gcs"
    root.mkdir()
    local = lambda path: os.fspath(path).replace("gs://", f"{root}/", 1) if os.fspath(path).startswith("gs://") else path
    remote = lambda path: os.fspath(path).replace(f"{root}/", "gs://", 1)
    one = lambda fn, path, *args, **kwargs: fn(local(path), *args, **kwargs)
    two = lambda fn, path, dst, *args, **kwargs: fn(local(path), local(dst), *args, **kwargs)

    def glob(fn, pattern):
        return [remote(p) for p in fn(local(pattern))]

    def walk(fn, top, **kwargs):
        for folder, dirs, files in fn(local(top), **kwargs):
            yield remote(folder), dirs, files

    monkeypatch.setattr(gcs_utils, "get_kvstore_for_gcs", lambda path: {"driver": "file", "path": local(path)})
    monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
    monkeypatch.setattr(gcs_utils, "rmtree", lambda path, missing_ok=False: epath.Path(path).rmtree(missing_ok=missing_ok))
    reader = array_record_module.ArrayRecordReader
    monkeypatch.setattr(array_record_module, "ArrayRecordReader", lambda path, *args, **kwargs: reader(local(path), *args, **kwargs))
    monkeypatch.setenv("JAXDISTILL_CACHE", str(tmp_path / "cache"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    fns = dict(copy=two, rename=two, replace=two, exists=one, isdir=one, listdir=one, makedirs=one, mkdir=one, open=one, remove=one, rmtree=one, stat=one)
    with epath_testing.mock_epath(glob=glob, walk=walk, **fns):
        yield root / "fake-bucket"
    assert not os.listdir(cwd), f"written through os.path, not epath: {os.listdir(cwd)}"


def test_paths_keep_uris_and_make_local_paths_absolute(bucket):
    assert os.fspath(as_path(f"{BUCKET}/run")) == f"{BUCKET}/run"
    assert os.fspath(as_path("run")) == os.path.abspath("run")
    write_text_atomic(f"{BUCKET}/a/b.json", "{}")
    assert (bucket / "a" / "b.json").read_text() == "{}" and os.listdir(bucket / "a") == ["b.json"]  # no temporary file left


def _params(trainable) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(trainable))]


def _train(cfg, workdir: str, steps: int):
    built = build(cfg)
    return Trainer(built.objective, built.frozen, cfg, workdir, built.data_factory, show_progress=False).train(steps)


def test_training_resume_load_and_sample_on_gs_equal_a_local_workdir(bucket, tmp_path):
    cfg = config("grid25/teacher")
    cfg.train.num_steps, cfg.train.checkpoint_every, cfg.train.log_every, cfg.train.sample_every = 8, 4, 2, 8
    local, remote = str(tmp_path / "local"), f"{BUCKET}/run"
    straight = _train(cfg, local, 8)
    assert _train(cfg, remote, 4).step == 4
    resumed = _train(cfg, remote, 8)  # resumes from gs://.../checkpoints/4
    assert sorted(os.listdir(bucket / "run" / "checkpoints")) == ["4", "8"]
    assert (bucket / "run" / "samples" / "step_0000008.png").read_bytes()[:4] == b"\x89PNG"
    drop = lambda text: [{k: v for k, v in json.loads(line).items() if k != "steps_per_sec"} for line in text.splitlines()]
    metrics = drop((bucket / "run" / "metrics.jsonl").read_text())
    assert metrics == drop(open(os.path.join(local, "metrics.jsonl")).read()) and [m["step"] for m in metrics] == [2, 4, 6, 8]
    assert set(json.loads((bucket / "run" / "train_seconds.json").read_text())) == {"4", "8"}
    run = load_run(remote)
    assert run.step == 8
    for a, b, c in zip(_params(straight.trainable), _params(resumed.trainable), _params(run.trainable)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
    for workdir in (local, remote):
        assert main(["sample", "--workdir", workdir, "--nfe", "2", "--num", "64"]) == 0
    with (as_path(remote) / "samples_nfe2.npz").open("rb") as f, np.load(f) as remote_samples:
        np.testing.assert_array_equal(remote_samples["x"], np.load(os.path.join(local, "samples_nfe2.npz"))["x"])
    assert (bucket / "run" / "samples_nfe2.png").is_file()
    save_snapshot(remote, f"{BUCKET}/teacher.npz", info={"from": "test"})
    assert restore_snapshot(f"{BUCKET}/teacher.npz", f"{BUCKET}/restored") == {"from": "test"}
    for a, b in zip(_params(run.trainable), _params(load_run(f"{BUCKET}/restored").trainable)):
        np.testing.assert_array_equal(a, b)


def test_converted_checkpoints_and_fid_statistics_round_trip_on_gs(bucket):
    params = {"params": {"Dense_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}}
    save_converted(f"{BUCKET}/teachers/net.npz", params, {"name": "mlp"}, {"event_shape": [2]})
    network, info, arrays = read_converted(f"{BUCKET}/teachers/net.npz")
    assert network == {"name": "mlp"} and info == {"event_shape": [2]}
    np.testing.assert_array_equal(arrays["params/Dense_0/kernel"], params["params"]["Dense_0"]["kernel"])
    features = np.random.default_rng(0).normal(size=(50, fid.NUM_FEATURES))
    fid.save_stats(f"{BUCKET}/stats/cifar.npz", features, {"inception_sha256": "ab"})
    stats = fid.load_stats(f"{BUCKET}/stats/cifar.npz", "ab")
    mu, sigma = fid.gaussian_stats(features)
    np.testing.assert_array_equal(stats["mu"], mu)
    np.testing.assert_array_equal(stats["sigma"], sigma)
    assert sorted(os.listdir(bucket / "teachers")) == ["net.npz"] and sorted(os.listdir(bucket / "stats")) == ["cifar.npz"]


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _upload(bucket, name: str, local_file: str) -> str:
    """Copy ``local_file`` into the fake bucket as ``name``; its ``gs://`` URI."""
    (bucket / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local_file, bucket / name)
    return f"{BUCKET}/{name}"


def _arrays(path: str) -> dict[str, np.ndarray]:
    with as_path(path).open("rb") as f, np.load(f) as data:
        return {k: data[k] for k in data.files if k != "info"}


@pytest.mark.parametrize("kind, src, extra", [
    ("dit-pt", "dit_tiny.pt", ["--num-heads", "2"]),
    ("edm-pkl", "edm_ddpmpp_tiny.pkl", []),
    ("edm2-pkl", "edm2_tiny-0002147-0.130.pkl", []),
])
def test_convert_reads_and_writes_gs_as_a_local_file(bucket, tmp_path, capsys, kind, src, extra):
    remote = _upload(bucket, f"published/{src}", os.path.join(DATA, src))
    assert main(["convert", "--from", kind, remote, "--out", f"{BUCKET}/converted/net.npz", *extra]) == 0
    assert main(["convert", "--from", kind, os.path.join(DATA, src), "--out", str(tmp_path / "net.npz"), *extra]) == 0
    got, want = _arrays(f"{BUCKET}/converted/net.npz"), _arrays(str(tmp_path / "net.npz"))
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert os.listdir(bucket / "converted") == ["net.npz"]
    capsys.readouterr()
    assert main(["convert", "--from", kind, f"{BUCKET}/published/missing-0000001-0.100.pkl", "--out", f"{BUCKET}/converted/net.npz", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{BUCKET}/published/missing-0000001-0.100.pkl" in err and len(err.splitlines()) == 1
    np.testing.assert_array_equal(_arrays(f"{BUCKET}/converted/net.npz")[sorted(want)[0]], want[sorted(want)[0]])  # kept


def test_the_legacy_pth_reader_and_its_digest_read_gs(bucket):
    """pytorch-fid's Inception file is in torch's legacy (pre-zip) format: read through epath, streamed."""
    local = os.path.join(DATA, "fid_inception_few.pth")
    remote = _upload(bucket, "fid_inception_few.pth", local)
    got, want = read_pt(remote), read_pt(local)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert file_sha256(remote) == file_sha256(local) == hashlib.sha256(open(local, "rb").read()).hexdigest()


def test_phema_reads_snapshots_and_writes_on_gs(bucket, tmp_path):
    pkl = os.path.join(DATA, "edm2_tiny-0002147-0.130.pkl")
    assert main(["convert", "--from", "edm2-pkl", pkl, "--out", str(tmp_path / "snap.npz")]) == 0
    snapshot = _upload(bucket, "snaps/snap.npz", str(tmp_path / "snap.npz"))
    assert main(["phema", "--snapshots", snapshot, "--sigma-rel", "0.13", "--out", f"{BUCKET}/phema.npz"]) == 0
    assert main(["phema", "--snapshots", str(tmp_path / "snap.npz"), "--sigma-rel", "0.13", "--out", str(tmp_path / "phema.npz")]) == 0
    got, want = _arrays(f"{BUCKET}/phema.npz"), _arrays(str(tmp_path / "phema.npz"))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert main(["phema", "--snapshots", snapshot, "--sigma-rel", "0.13", "--out", snapshot]) == 2  # the input is never the output
