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
import ml_collections
import numpy as np
import pytest
from array_record.python import array_record_module
from etils import epath
from etils.epath import testing as epath_testing
from orbax.checkpoint._src.path import gcs_utils
from protocol_checks import config

from jaxdistill.build import build, load_run
from jaxdistill.cli import main
from jaxdistill.config import load_config_file, split_config_spec
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import as_path, write_text_atomic
from jaxdistill.data.pipeline import BatchStream
from jaxdistill.data.shards import ArrayRecordSource, uint8_to_unit, write_array_record
from jaxdistill.data.sources import load_image_folder, make_source
from jaxdistill.eval import fid
from jaxdistill.models.ports.converted import read_converted, save_converted
from jaxdistill.models.ports.fid_inception_checkpoint import file_sha256
from jaxdistill.models.ports.torch_pt import read_pt
from jaxdistill.snapshot import restore_snapshot, save_snapshot
from jaxdistill.train.engine import Trainer

BUCKET = "gs://fake-bucket"
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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


def test_a_config_file_on_gs_loads_like_the_local_file(bucket):
    local = os.path.join(CONFIGS, "grid25", "kd.py")
    (bucket / "configs").mkdir(parents=True)
    shutil.copy(local, bucket / "configs" / "kd.py")
    assert split_config_spec(f"{BUCKET}/configs/kd.py:smoke") == (f"{BUCKET}/configs/kd.py", "smoke")
    for preset in ("", ":smoke"):
        assert load_config_file(f"{BUCKET}/configs/kd.py{preset}").to_json() == load_config_file(local + preset).to_json()
    with pytest.raises(ConfigError, match="config file not found: 'gs://fake-bucket/configs/cd.py'"):
        load_config_file(f"{BUCKET}/configs/cd.py:smoke")


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


@pytest.fixture
def array_record_reads(bucket, monkeypatch) -> list[tuple[str, int]]:
    """``(file, position)`` of every record array_record's reader reads (from the fake bucket)."""
    reads: list[tuple[str, int]] = []
    opened = array_record_module.ArrayRecordReader  # the bucket's redirection

    class Recording:
        def __init__(self, path, *args, **kwargs):
            self.path, self.reader = os.fspath(path), opened(path, *args, **kwargs)

        def read(self, positions):
            reads.extend((self.path, int(p)) for p in positions)
            return self.reader.read(positions)

        def __getattr__(self, name):
            return getattr(self.reader, name)

    monkeypatch.setattr(array_record_module, "ArrayRecordReader", Recording)
    return reads


def _records(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8), rng.integers(0, 10, n)


def test_each_process_reads_only_its_slice_of_a_gs_array_record_source(bucket, array_record_reads):
    """Two processes' batch streams over array_record shards on gs equal a local source's, and the
    reader is asked only for the slice's records (and record 0 of each shard, checked on opening)."""
    x, labels = _records()
    with pytest.raises(ValueError, match=f"writes local files only, got the URI '{BUCKET}/ar'"):
        write_array_record(f"{BUCKET}/ar", x, labels)
    write_array_record(str(bucket / "ar"), x, labels, shard_size=16)  # 3 shards: 16, 16, 8 records
    local = ArrayRecordSource(str(bucket / "ar"))
    array_record_reads.clear()
    remote = make_source(ml_collections.ConfigDict({"name": "array_record", "path": f"{BUCKET}/ar/*.array_record"}))
    assert remote.files == [f"{BUCKET}/ar/data-0000{s}-of-00003.array_record" for s in range(3)] and len(remote) == 40
    opening = set(array_record_reads)
    assert opening == {(f, 0) for f in remote.files}
    array_record_reads.clear()
    for process in (0, 1):
        stream, twin = (BatchStream(source, 8, seed=3, shard_index=process, shard_count=2) for source in (remote, local))
        for step in range(6):  # past the first epoch of 20 records per process
            got, want = stream[step], twin[step]
            np.testing.assert_array_equal(got["x"], want["x"])
            np.testing.assert_array_equal(got["label"], want["label"])
            np.testing.assert_array_equal(got["label"], labels[stream.indices(step)])
        read = {remote.starts[remote.files.index(f)] + p for f, p in array_record_reads if f.startswith(BUCKET)}
        assert read == set(range(process, 40, 2))  # exactly this process's records
        array_record_reads.clear()


def test_gs_latent_shards_are_copied_once_to_the_local_cache_and_memory_mapped(bucket, tmp_path):
    rng = np.random.default_rng(1)
    (bucket / "lat").mkdir(parents=True)
    xs = [rng.standard_normal((n, 2, 2, 4)).astype(np.float32) for n in (5, 7)]
    np.savez(bucket / "lat" / "a.npz", x=xs[0])
    np.save(bucket / "lat" / "b.npy", xs[1])
    (bucket / "lat" / "notes.txt").write_text("not a shard")
    config = ml_collections.ConfigDict({"name": "latents", "path": f"{BUCKET}/lat", "latent_scale": 0.5})
    source = make_source(config)
    assert source.files == [f"{BUCKET}/lat/a.npz", f"{BUCKET}/lat/b.npy"] and len(source) == 12
    assert all(isinstance(x, np.memmap) for x in source.xs)
    batch = source.get_batch(np.array([11, 0, 6]))
    np.testing.assert_array_equal(batch["x"], 0.5 * np.stack([xs[1][6], xs[0][0], xs[1][1]]))
    np.testing.assert_array_equal(batch["label"], [-1, -1, -1])
    cache = tmp_path / "cache" / "remote"
    copies = sorted(os.listdir(cache), key=lambda name: name.split("-", 1)[1])  # hash-prefixed: order by shard name
    assert len(copies) == 2 and copies[0].endswith("-a.npz") and copies[1].endswith("-b.npy")
    stamps = [os.stat(cache / c).st_mtime_ns for c in copies]
    make_source(config)  # a second run reuses the copies
    assert [os.stat(cache / c).st_mtime_ns for c in copies] == stamps
    np.save(bucket / "lat" / "b.npy", xs[1][:3])  # rewritten remotely: fetched again
    assert len(make_source(config)) == 8 and len(os.listdir(cache)) == 3
    with pytest.raises(ConfigError, match=f"data.path '{BUCKET}/nowhere' does not exist"):
        make_source(ml_collections.ConfigDict({"name": "latents", "path": f"{BUCKET}/nowhere"}))


def test_train_from_a_gs_teacher_checkpoint_and_gs_latents_into_a_gs_workdir(bucket, tmp_path):
    """A DiT teacher converted from gs to gs (teacher.kind='converted'), latent shards on gs and a gs
    workdir: the run reads the teacher and the records the local files hold, and trains."""
    from test_converted_teacher import write_run

    from jaxdistill.build import load_teacher
    from jaxdistill.config import load_config_file

    pt = _upload(bucket, "published/dit_tiny.pt", os.path.join(DATA, "dit_tiny.pt"))
    assert main(["convert", "--from", "dit-pt", pt, "--out", f"{BUCKET}/teachers/dit.npz", "--num-heads", "2"]) == 0
    config_file = write_run(tmp_path, f"{BUCKET}/teachers/dit.npz")
    _upload(bucket, "latents/train.npz", str(tmp_path / "latents.npz"))
    source = f'{{"name": "npz", "path": {str(tmp_path / "latents.npz")!r}}}'
    text = (tmp_path / "kd_dit.py").read_text()
    assert source in text
    (tmp_path / "kd_dit.py").write_text(text.replace(source, f'{{"name": "latents", "path": {BUCKET + "/latents"!r}}}'))
    config = load_config_file(config_file)
    _, remote_params = load_teacher(config, (8, 8, 4))
    with np.load(tmp_path / "latents.npz") as data:
        np.testing.assert_array_equal(make_source(config.data).get_batch(np.arange(256))["x"], data["x"])
    config.teacher.path = str(bucket / "teachers" / "dit.npz")
    _, local_params = load_teacher(config, (8, 8, 4))
    for a, b in zip(_params(remote_params), _params(local_params)):
        np.testing.assert_array_equal(a, b)
    assert main(["train", "--config", config_file, "--workdir", f"{BUCKET}/run", "--quiet", "--config.train.num_steps=2"]) == 0
    run = load_run(f"{BUCKET}/run")
    assert run.step == 2 and run.config.teacher.path == f"{BUCKET}/teachers/dit.npz" and run.config.data.path == f"{BUCKET}/latents"
    assert sorted(os.listdir(bucket / "run" / "checkpoints")) == ["2"]


class _PixelFeatures:
    """A stand-in for the Inception network: pool3 = the image's pixels, tiled to 2048 values."""

    def __init__(self, params, batch_size):
        self.params = params

    def __call__(self, images):
        flat = np.asarray(images, np.float32).reshape(len(images), -1)
        return np.tile(flat, -(-fid.NUM_FEATURES // flat.shape[1]))[:, : fid.NUM_FEATURES], np.zeros((len(flat), 1008), np.float32)


def test_fid_stats_of_a_gs_image_folder_with_gs_weights_to_a_gs_out(bucket, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from jaxdistill.models.ports import fid_inception_checkpoint as ckpt

    rng = np.random.default_rng(2)
    for i in range(6):
        (bucket / "images" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(bucket / "images" / f"c{i % 2}" / f"{i}.png")
    monkeypatch.setattr(ckpt, "abstract_params", lambda: {"params": {"Conv": {"kernel": jax.ShapeDtypeStruct((2, 3), np.float32)}}})  # 2 KB, not 95 MB
    weights = {"params": {"Conv": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}}
    ckpt.save_inception(f"{BUCKET}/inception.npz", weights, "synthetic.pth", "0" * 64)
    monkeypatch.setattr(fid, "InceptionFeatures", _PixelFeatures)
    config = tmp_path / "images.py"
    config.write_text(f"import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict(dict(data=dict(name='image_folder', root={BUCKET + '/images'!r}, image_size=4)))\n")
    args = ["fid-stats", "--config", str(config), "--inception", f"{BUCKET}/inception.npz", "--batch", "4"]
    assert main([*args, "--out", f"{BUCKET}/stats/images.npz"]) == 0
    x, labels, classes = load_image_folder(str(bucket / "images"), 4)
    assert classes == ["c0", "c1"] and labels.tolist() == [0, 0, 0, 1, 1, 1]
    mu, sigma = fid.gaussian_stats(_PixelFeatures(None, 4)(uint8_to_unit(x))[0])
    stats = fid.load_stats(f"{BUCKET}/stats/images.npz", ckpt.params_digest(weights))  # made with the weights on gs
    np.testing.assert_array_equal(stats["mu"], mu)
    np.testing.assert_array_equal(stats["sigma"], sigma)
    assert os.listdir(bucket / "stats") == ["images.npz"]
    capsys.readouterr()
    assert main([*args[:-2], "--inception", f"{BUCKET}/missing.npz", "--out", f"{BUCKET}/stats/images.npz"]) == 2
    assert f"{BUCKET}/missing.npz" in capsys.readouterr().err
