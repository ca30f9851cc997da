"""Data sources, the registry and the grain batch pipeline."""
import time

import grain
import ml_collections
import numpy as np
import pytest

from jaxdistill.data import pipeline
from jaxdistill.data.sources import (
    TOY2D,
    DigitsSource,
    ImageFolderSource,
    MixtureSource,
    NpzSource,
    TfdsSource,
    Toy2DSource,
    make_source,
)
from jaxdistill.models import gaussian_mixture as gm


def check_record(rec, shape, lo=-np.inf, hi=np.inf):
    assert rec["x"].shape == shape and rec["x"].dtype == np.float32
    assert np.asarray(rec["label"]).shape == () and np.asarray(rec["label"]).dtype == np.int32
    assert lo <= rec["x"].min() and rec["x"].max() <= hi


def test_mixture_sources():
    grid = MixtureSource(gm.grid25(), 1000, seed=0)
    assert len(grid) == 1000
    check_record(grid[3], (2,), -5, 5)
    assert np.all(grid.labels == -1)
    digits = make_source(ml_collections.ConfigDict({"name": "digits_gmm", "size": 300, "seed": 1}))
    check_record(digits[0], (8, 8, 1))
    assert set(np.unique(digits.labels)) == set(range(10))
    again = make_source(ml_collections.ConfigDict({"name": "mixture", "mixture": "grid25", "size": 1000, "seed": 0}))
    np.testing.assert_array_equal(again.x, grid.x)


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_toy2d(name):
    src = Toy2DSource(name, 5000, seed=0)
    check_record(src[0], (2,))
    assert np.all(np.abs(src.x) < 4.6) and src.x.std() > 0.5
    np.testing.assert_array_equal(src.x, Toy2DSource(name, 5000, seed=0).x)


def test_checkerboard_occupies_dark_squares():
    x = Toy2DSource("checkerboard", 4000, seed=0).x
    parity = (np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2
    assert np.all(parity == 0)


def test_digits_source():
    src = DigitsSource()
    assert len(src) == 1797
    check_record(src[5], (8, 8, 1), -1, 1)
    assert src.x.min() == -1 and src.x.max() == 1


def test_npz_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 4, 4, 1)).astype(np.float32)
    path = str(tmp_path / "d.npz")
    np.savez(path, x=x, label=np.arange(10))
    src = make_source(ml_collections.ConfigDict({"name": "npz", "path": path}))
    np.testing.assert_array_equal(src.get_batch(np.arange(10))["x"], x)
    check_record(src[9], (4, 4, 1))
    assert src[9]["label"] == 9
    np.savez(path, images=x)
    with pytest.raises(KeyError, match="images"):
        NpzSource(path)
    assert np.all(NpzSource(path, x_key="images", label_key=None).labels == -1)


def test_image_folder(tmp_path):
    from PIL import Image

    rs = np.random.default_rng(0)
    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(rs.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    src = ImageFolderSource(str(tmp_path), 8, channels=3)
    assert len(src) == 5 and src.classes == ["cat", "dog"]
    check_record(src[0], (8, 8, 3), -1, 1)
    np.testing.assert_array_equal(src.labels, [0, 0, 1, 1, 1])
    gray = make_source(ml_collections.ConfigDict({"name": "image_folder", "root": str(tmp_path), "image_size": 6, "channels": 1}))
    check_record(gray[4], (6, 6, 1), -1, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderSource(str(tmp_path / "empty"), 8)


def test_tfds_mock_without_tensorflow():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        src = TfdsSource("mnist", "train")
        assert len(src) == 12
        check_record(src[3], (28, 28, 1), -1, 1)
        batch = next(pipeline.batch_iterator(src, 4, seed=0, shard_index=0, shard_count=1))
    assert batch["x"].shape == (4, 28, 28, 1) and batch["label"].dtype == np.int32


def test_tfds_conversion_with_fake_source():
    fake = [{"img": np.full((2, 2, 1), 255, np.uint8), "y": np.int64(7)}]
    src = TfdsSource("fake", image_key="img", label_key="y", source=fake)
    np.testing.assert_array_equal(src[0]["x"], np.ones((2, 2, 1), np.float32))
    assert src[0]["label"] == 7
    with pytest.raises(KeyError, match="features present"):
        TfdsSource("fake", source=fake)[0]


def test_registry_errors():
    with pytest.raises(ValueError, match="valid names"):
        make_source(ml_collections.ConfigDict({"name": "nope"}))
    with pytest.raises(ValueError, match="path"):
        make_source(ml_collections.ConfigDict({"name": "npz"}))


def take(it, n):
    return [next(it) for _ in range(n)]


def test_batch_iterator_deterministic_and_epochs():
    src = Toy2DSource("moons", 100, seed=0)
    a = take(pipeline.batch_iterator(src, 32, seed=3, shard_index=0, shard_count=1), 9)
    b = take(pipeline.batch_iterator(src, 32, seed=3, shard_index=0, shard_count=1), 9)
    c = take(pipeline.batch_iterator(src, 32, seed=4, shard_index=0, shard_count=1), 9)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["x"], y["x"])
    assert not np.array_equal(a[0]["x"], c[0]["x"])
    assert all(batch["x"].shape == (32, 2) and batch["label"].shape == (32,) for batch in a)
    stream = pipeline.BatchStream(src, 32, seed=3, shard_index=0, shard_count=1)
    epochs = [np.concatenate([stream.indices(s) for s in range(3 * e, 3 * e + 3)]) for e in range(3)]
    assert all(len(np.unique(e)) == 96 for e in epochs)  # no repeats within an epoch (tail of 4 dropped)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    partial = pipeline.BatchStream(src, 32, seed=3, shard_index=0, shard_count=1, drop_remainder=False)
    assert [len(partial.indices(s)) for s in range(5)] == [32, 32, 32, 4, 32]
    assert sorted(np.concatenate([partial.indices(s) for s in range(4)])) == list(range(100))


def test_shards_disjoint_and_per_process_batch():
    src = Toy2DSource("rings", 1000, seed=0)
    streams = [pipeline.BatchStream(src, 64, seed=0, shard_index=i, shard_count=4) for i in range(4)]
    seen = [np.concatenate([s.indices(k) for k in range(s.steps_per_epoch)]) for s in streams]
    assert all(len(s.indices(0)) == 16 for s in streams)
    for i in range(4):
        assert np.all(seen[i] % 4 == i)
        for j in range(i):
            assert not set(seen[i]) & set(seen[j])
    with pytest.raises(ValueError, match="multiple"):
        pipeline.BatchStream(src, 30, seed=0, shard_index=0, shard_count=4)


def test_start_step_resumes_stream():
    src = MixtureSource(gm.grid25(), 500, seed=0)
    full = take(pipeline.batch_iterator(src, 64, seed=1, shard_index=0, shard_count=1), 20)
    resumed = take(pipeline.batch_iterator(src, 64, seed=1, shard_index=0, shard_count=1, start_step=13), 7)
    for x, y in zip(full[13:], resumed):
        np.testing.assert_array_equal(x["x"], y["x"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_throughput(capsys):
    src = Toy2DSource("checkerboard", 200_000, seed=0)
    it = pipeline.batch_iterator(src, 1024, seed=0, shard_index=0, shard_count=1)
    next(it)
    start = time.perf_counter()
    n = sum(len(next(it)["x"]) for _ in range(40))
    ours = n / (time.perf_counter() - start)
    naive = grain.MapDataset.source(src).seed(0).shuffle().repeat().batch(1024)
    start = time.perf_counter()
    m = sum(len(naive[s]["x"]) for s in range(10))
    theirs = m / (time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nbatch_iterator: {ours:,.0f} records/s; grain per-record batch: {theirs:,.0f} records/s")


def test_prefetch_keeps_the_order_and_raises_the_readers_error():
    src = MixtureSource(gm.grid25(), 500, seed=0)
    direct = take(pipeline.batch_iterator(src, 64, seed=1, shard_index=0, shard_count=1, start_step=3), 12)
    ahead = pipeline.prefetch(pipeline.batch_iterator(src, 64, seed=1, shard_index=0, shard_count=1, start_step=3), depth=2)
    for x, y in zip(direct, take(ahead, 12)):
        np.testing.assert_array_equal(x["x"], y["x"])
    ahead.close()

    def failing():
        yield 1
        raise OSError("disk gone")

    assert list(pipeline.prefetch(iter([1, 2, 3]), place=lambda v: 10 * v)) == [10, 20, 30]
    with pytest.raises(OSError, match="disk gone"):
        list(pipeline.prefetch(failing()))
