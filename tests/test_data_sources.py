"""array_record and latent-shard sources (jaxdistill.data.shards): round trips, the pipeline over
them (resumed = uninterrupted, per-process slices), every bad input, and a CLI run on each."""
import json
import os
import zipfile

import ml_collections
import numpy as np
import pytest
from flax import serialization

from jaxdistill import config as config_lib
from jaxdistill.build import build
from jaxdistill.cli import main
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.types import NULL_LABEL
from jaxdistill.data import pipeline
from jaxdistill.data.shards import ArrayRecordSource, LatentSource, encode_record, uint8_to_unit, write_array_record
from jaxdistill.data.sources import ArraySource, ImageFolderSource, load_image_folder, make_source

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (22, 4, 4, 3), dtype=np.uint8)
LABELS = RNG.integers(0, 10, 22)
LATENTS = RNG.standard_normal((22, 2, 2, 4)).astype(np.float16)


def write_raw(path, records):
    """An array_record file of the given raw byte strings."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")
    for record in records:
        writer.write(record)
    writer.close()
    return str(path)


def latent_shards(folder, x=LATENTS, labels=LABELS, sizes=(8, 8, 6)):
    """``x`` (and ``labels``) split into uncompressed ``.npz`` shards of ``sizes`` records."""
    os.makedirs(folder, exist_ok=True)
    bounds = np.cumsum((0, *sizes))
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        arrays = {"x": x[a:b]} if labels is None else {"x": x[a:b], "label": labels[a:b]}
        np.savez(os.path.join(folder, f"latents-{s:03d}.npz"), **arrays)
    return str(folder)


def test_array_record_round_trip_images_and_floats(tmp_path):
    files = write_array_record(str(tmp_path / "img"), IMAGES, LABELS, shard_size=8)
    assert [os.path.basename(f) for f in files] == [f"data-{s:05d}-of-00003.array_record" for s in range(3)]
    want = uint8_to_unit(IMAGES)
    for path in (str(tmp_path / "img"), str(tmp_path / "img" / "data-*.array_record")):
        src = make_source(ml_collections.ConfigDict({"name": "array_record", "path": path}))
        assert isinstance(src, ArrayRecordSource) and len(src) == 22 and src.event_shape == (4, 4, 3)
        batch = src.get_batch(np.arange(22)[::-1])
        np.testing.assert_array_equal(batch["x"], want[::-1])  # exactly x / 127.5 - 1, across shards
        np.testing.assert_array_equal(batch["label"], LABELS[::-1])
        assert batch["x"].dtype == np.float32 and batch["label"].dtype == np.int32
        rec = src[9]  # shard 1, position 1
        np.testing.assert_array_equal(rec["x"], want[9])
        assert rec["label"] == LABELS[9] and rec["label"].dtype == np.int32
    assert make_source(src.config()).files == src.files  # the config that rebuilds it (build(source=...) records it)
    single = ArrayRecordSource(files[2])  # one file: its 6 records
    np.testing.assert_array_equal(single.get_batch(np.arange(6))["x"], want[16:])
    floats = RNG.standard_normal((5, 3)).astype(np.float32)
    write_array_record(str(tmp_path / "f"), floats, shard_size=2)
    src = ArrayRecordSource(str(tmp_path / "f" / "*.array_record"))
    np.testing.assert_array_equal(src.get_batch(np.arange(5))["x"], floats)  # floats as they are
    np.testing.assert_array_equal(src.get_batch(np.arange(5))["label"], np.full(5, NULL_LABEL))


def test_image_folder_to_array_record_as_documented(tmp_path):
    """docs/data.md's conversion: the shards of an image folder read back as the folder itself."""
    from PIL import Image

    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "photos" / cls / f"{i}.png")
    x, labels, classes = load_image_folder(str(tmp_path / "photos"), image_size=8, channels=3)
    write_array_record(str(tmp_path / "shards"), x, labels, shard_size=2)
    src, folder = ArrayRecordSource(str(tmp_path / "shards")), ImageFolderSource(str(tmp_path / "photos"), 8, channels=3)
    assert classes == folder.classes == ["cat", "dog"] and len(src.files) == 3
    batch = src.get_batch(np.arange(5))
    np.testing.assert_array_equal(batch["x"], folder.x)
    np.testing.assert_array_equal(batch["label"], [0, 0, 1, 1, 1])


def test_latent_round_trip_memory_mapped_with_scale_and_shift(tmp_path):
    folder = latent_shards(tmp_path / "lat")
    scale, shift = [0.5, 1.0, 2.0, 0.18215], [1.0, -1.0, 0.0, 0.25]
    src = make_source(ml_collections.ConfigDict({"name": "latents", "path": folder, "latent_scale": scale, "latent_shift": shift}))
    assert isinstance(src, LatentSource) and len(src) == 22 and src.event_shape == (2, 2, 4)
    assert all(isinstance(x, np.memmap) for x in src.xs)  # read from disk by index, not loaded
    indices = np.array([21, 0, 8, 15, 16, 3])
    batch = src.get_batch(indices)
    want = LATENTS[indices].astype(np.float32) * np.float32(scale) + np.float32(shift)
    np.testing.assert_array_equal(batch["x"], want)
    np.testing.assert_array_equal(batch["label"], LABELS[indices])
    np.testing.assert_array_equal(src[8]["x"], want[2])
    again = make_source(src.config())  # a source passed as an object records the config that rebuilds it
    np.testing.assert_array_equal(again.get_batch(indices)["x"], want)
    plain = LatentSource(folder)  # scale 1, shift 0: the stored values
    np.testing.assert_array_equal(plain.get_batch(np.arange(22))["x"], LATENTS.astype(np.float32))
    np.save(tmp_path / "only.npy", LATENTS[:5])  # a .npy shard holds x alone: unlabeled
    npy = LatentSource(str(tmp_path / "only.npy"), latent_scale=0.18215)
    np.testing.assert_array_equal(npy.get_batch(np.arange(5))["x"], LATENTS[:5].astype(np.float32) * np.float32(0.18215))
    np.testing.assert_array_equal(npy.get_batch(np.arange(5))["label"], np.full(5, NULL_LABEL))


def sources(tmp_path):
    """The same 22 labeled images as an array_record source, a latent source and in memory."""
    write_array_record(str(tmp_path / "ar"), IMAGES, LABELS, shard_size=8)
    x = uint8_to_unit(IMAGES)
    folder = latent_shards(tmp_path / "lat", x=x)
    return ArrayRecordSource(str(tmp_path / "ar")), LatentSource(folder), ArraySource(x, LABELS)


def test_resumed_stream_equals_uninterrupted_and_the_in_memory_one(tmp_path):
    *on_disk, memory = sources(tmp_path)
    reference = [memory.get_batch(pipeline.BatchStream(memory, 6, seed=3, shard_index=0, shard_count=1).indices(s)) for s in range(9)]
    for src in on_disk:
        full = pipeline.batch_iterator(src, 6, seed=3, shard_index=0, shard_count=1)
        uninterrupted = [next(full) for _ in range(9)]  # 3 per epoch: three epochs
        resumed = pipeline.batch_iterator(src, 6, seed=3, shard_index=0, shard_count=1, start_step=5)
        for step in range(9):
            np.testing.assert_array_equal(uninterrupted[step]["x"], reference[step]["x"])
            np.testing.assert_array_equal(uninterrupted[step]["label"], reference[step]["label"])
        for step in range(5, 9):
            batch = next(resumed)
            np.testing.assert_array_equal(batch["x"], uninterrupted[step]["x"])
            np.testing.assert_array_equal(batch["label"], uninterrupted[step]["label"])


class Spy:
    """Wraps one shard (an array_record reader or a latent memory map) and records the global
    indices of the records read from it."""

    def __init__(self, inner, log, start):
        self.inner, self.log, self.start = inner, log, start

    def __len__(self):
        return len(self.inner)

    def __getitems__(self, positions):  # ArrayRecordDataSource's batched read
        self.log.extend(self.start + int(p) for p in positions)
        return self.inner.__getitems__(positions)

    def __getitem__(self, positions):  # a memory map's fancy index
        self.log.extend(self.start + int(p) for p in positions)
        return self.inner[positions]


def spied(kind, tmp_path, log):
    """20 labeled images as array_record shards or latent shards of 8, 8 and 4 records, each shard spied on."""
    if kind == "array_record":
        write_array_record(str(tmp_path / "ar"), IMAGES[:20], LABELS[:20], shard_size=8)
        src = ArrayRecordSource(str(tmp_path / "ar"))
        src.readers = [Spy(r, log, int(start)) for r, start in zip(src.readers, src.starts)]
    else:
        src = LatentSource(latent_shards(tmp_path / "lat", x=uint8_to_unit(IMAGES[:20]), labels=LABELS[:20], sizes=(8, 8, 4)))
        src.xs = [Spy(x, log, int(start)) for x, start in zip(src.xs, src.starts)]
    return src


@pytest.mark.parametrize("kind", ["array_record", "latents"])
def test_each_process_reads_only_its_slice(tmp_path, kind):
    """Two processes (shard_index 0 and 1 of 2): the records each reads from disk lie in its own slice
    ``source[i::2]``, the slices are disjoint and cover every record once in an epoch, and the global
    batch (process-local batches in process order, as ``make_array_from_process_local_data`` lays them)
    holds exactly the records those indices name."""
    full = ArraySource(uint8_to_unit(IMAGES[:20]), LABELS[:20])
    read = [[], []]
    streams = [pipeline.BatchStream(spied(kind, tmp_path, read[p]), 4, seed=7, shard_index=p, shard_count=2) for p in range(2)]
    assert streams[0].steps_per_epoch == 5 and read == [[], []]  # building the streams reads no record
    for step in range(5):  # one epoch
        local = [stream[step] for stream in streams]
        indices = np.concatenate([stream.indices(step) for stream in streams])
        np.testing.assert_array_equal(np.concatenate([b["x"] for b in local]), full.x[indices])
        np.testing.assert_array_equal(np.concatenate([b["label"] for b in local]), full.labels[indices])
    for p in range(2):
        assert sorted(read[p]) == list(range(p, 20, 2))  # its own slice, each record once
    assert sorted(read[0] + read[1]) == list(range(20))


def one_line_error(build, *fragments):
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_bad_array_record_inputs(tmp_path):
    one_line_error(lambda: ArrayRecordSource(str(tmp_path / "missing")), "missing", "does not exist")
    os.makedirs(tmp_path / "empty")
    (tmp_path / "empty" / "notes.txt").write_text("no shards here")
    one_line_error(lambda: ArrayRecordSource(str(tmp_path / "empty")), "empty", "no *.array_record shards found")
    one_line_error(lambda: ArrayRecordSource(str(tmp_path / "empty" / "*.array_record")), "no *.array_record shards found")
    junk = tmp_path / "junk.array_record"
    junk.write_bytes(b"this is not an array_record file at all" * 10)
    one_line_error(lambda: ArrayRecordSource(str(junk)), "junk.array_record", "is not an array_record file")
    foreign = write_raw(tmp_path / "foreign.array_record", [b"a tf.Example, say"])
    one_line_error(lambda: ArrayRecordSource(foreign), "foreign.array_record record 0", "not in the record format", "msgpack")
    no_x = write_raw(tmp_path / "nox.array_record", [serialization.msgpack_serialize({"y": np.zeros(2)})])
    one_line_error(lambda: ArrayRecordSource(no_x), "nox.array_record record 0", "has no array 'x' (found ['y'])")
    a_list = write_raw(tmp_path / "list.array_record", [serialization.msgpack_serialize([1, 2])])
    one_line_error(lambda: ArrayRecordSource(a_list), "list.array_record record 0", "has no array 'x' (found list)")
    ints = write_raw(tmp_path / "ints.array_record", [encode_record(np.arange(3))])
    one_line_error(lambda: ArrayRecordSource(ints), "ints.array_record record 0", "must be uint8 (an image) or float, got int64")
    text_label = write_raw(tmp_path / "tl.array_record", [serialization.msgpack_serialize({"x": np.zeros(2), "label": "cat"})])
    one_line_error(lambda: ArrayRecordSource(text_label), "tl.array_record record 0", "'label' must be an integer, got str")
    # A record that breaks the format in the middle of a shard: found when it is read.
    mixed = write_raw(tmp_path / "mid.array_record", [encode_record(np.zeros(2, np.float32)), b"garbage"])
    src = ArrayRecordSource(mixed)
    one_line_error(lambda: src.get_batch(np.array([1])), "mid.array_record record 1", "not in the record format")
    reshaped = write_raw(tmp_path / "reshaped.array_record", [encode_record(np.zeros(2, np.float32)), encode_record(np.zeros(3, np.float32))])
    one_line_error(lambda: ArrayRecordSource(reshaped).get_batch(np.array([0, 1])), "reshaped.array_record record 1", "shape (3,); expected (2,)")
    shapes = tmp_path / "shapes"
    write_array_record(str(shapes / "a"), IMAGES[:2], LABELS[:2])
    write_array_record(str(shapes / "b"), IMAGES[:2, :2], LABELS[:2])
    one_line_error(lambda: ArrayRecordSource(str(shapes / "*" / "*.array_record")), "b/data-00000-of-00001.array_record", "shape (2, 4, 3)", "expected shape (4, 4, 3)")
    unlabeled = tmp_path / "unlabeled"
    write_array_record(str(unlabeled / "a"), IMAGES[:2], LABELS[:2])
    write_array_record(str(unlabeled / "b"), IMAGES[:2])
    one_line_error(lambda: ArrayRecordSource(str(unlabeled / "*" / "*.array_record")), "b/data-00000-of-00001.array_record", "without labels", "with labels")


def test_bad_latent_inputs(tmp_path):
    one_line_error(lambda: LatentSource(str(tmp_path / "nothing")), "nothing", "does not exist")
    os.makedirs(tmp_path / "empty")
    one_line_error(lambda: LatentSource(str(tmp_path / "empty")), "no *.npz / *.npy latent shards found")
    shapes = latent_shards(tmp_path / "shapes", sizes=(8, 8))
    np.savez(tmp_path / "shapes" / "latents-002.npz", x=np.zeros((6, 4, 4, 4), np.float16), label=LABELS[:6])
    one_line_error(lambda: LatentSource(shapes), "latents-002.npz", "shape (4, 4, 4)", "expected (2, 2, 4)")
    np.savez(tmp_path / "nox.npz", latents=LATENTS)
    one_line_error(lambda: LatentSource(str(tmp_path / "nox.npz")), "nox.npz", "has no 'x'")
    np.savez_compressed(tmp_path / "packed.npz", x=LATENTS)
    one_line_error(lambda: LatentSource(str(tmp_path / "packed.npz")), "packed.npz", "compressed", "np.savez")
    np.savez(tmp_path / "ints.npz", x=IMAGES)
    one_line_error(lambda: LatentSource(str(tmp_path / "ints.npz")), "ints.npz", "uint8", "expected a float array")
    np.savez(tmp_path / "short.npz", x=LATENTS, label=LABELS[:3])
    one_line_error(lambda: LatentSource(str(tmp_path / "short.npz")), "short.npz", "expected integers of shape (22,)")
    (tmp_path / "text.npz").write_text("not a zip")
    one_line_error(lambda: LatentSource(str(tmp_path / "text.npz")), "text.npz", "is not a readable .npz shard")
    mixed = latent_shards(tmp_path / "mixed", sizes=(8,))
    np.save(tmp_path / "mixed" / "latents-001.npy", LATENTS[:4])
    one_line_error(lambda: LatentSource(mixed), "latents-001.npy", "no 'label' array")
    good = latent_shards(tmp_path / "good")
    one_line_error(lambda: LatentSource(good, latent_scale=[1.0, 2.0]), "data.latent_scale", "4 numbers (one per channel)")
    with zipfile.ZipFile(tmp_path / "good" / "latents-000.npz") as zf:
        assert zf.getinfo("x.npy").compress_type == zipfile.ZIP_STORED  # what np.savez writes: memory-mappable


def test_bad_paths_through_the_cli_exit_2(tmp_path, capsys):
    config = tmp_path / "cfg.py"
    config.write_text(CONFIG.format(data={"name": "latents", "path": str(tmp_path / "absent")}))
    assert main(["data", "--config", str(config), "--num", "4", "--out", str(tmp_path / "d.npz")]) == 2
    assert main(["train", "--config", str(config), "--workdir", str(tmp_path / "run"), "--quiet"]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert "absent" in line and "does not exist" in line
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


CONFIG = '''
import ml_collections
from jaxdistill.benchmarks import grid25


def get_config(arg=None):
    c = grid25.teacher("smoke")  # the 3x128 MLP EDM teacher
    c.data = ml_collections.ConfigDict({data!r})
    c.batch_size, c.train.num_steps, c.train.log_every, c.train.checkpoint_every = 8, 3, 1, 3
    return c
'''


def test_cli_reads_and_trains_on_shards(tmp_path):
    """Both sources through a config file: ``jaxdistill data`` dumps exactly the stored records
    (latents scaled and shifted), ``build`` takes them, and ``jaxdistill train`` runs on array_record
    shards (one training run: the sources reach the engine through the same ``make_source``)."""
    points = RNG.standard_normal((40, 2)).astype(np.float32)
    write_array_record(str(tmp_path / "ar"), points, shard_size=16)
    latent_shards(tmp_path / "lat", x=points, labels=None, sizes=(16, 16, 8))
    cases = {
        "array_record": ({"name": "array_record", "path": str(tmp_path / "ar")}, points),
        "latents": ({"name": "latents", "path": str(tmp_path / "lat"), "latent_scale": [2.0, 0.5], "latent_shift": 1.0},
                    points * np.float32([2.0, 0.5]) + np.float32(1.0)),
    }
    for name, (data, want) in cases.items():
        config = tmp_path / f"{name}.py"
        config.write_text(CONFIG.format(data=data))
        out = str(tmp_path / f"{name}.npz")
        assert main(["data", "--config", str(config), "--num", "40", "--out", out]) == 0
        np.testing.assert_array_equal(np.load(out)["x"], want)
        built = build(config_lib.load(str(config), []))
        assert built.event_shape == (2,) and len(built.source) == 40 and built.config.data.name == name
    workdir = str(tmp_path / "run")
    assert main(["train", "--config", str(tmp_path / "array_record.py"), "--workdir", workdir, "--quiet"]) == 0
    steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl")) if '"loss"' in line]
    assert steps and max(steps) == 3
