"""The CIFAR-10 and ImageNet-64 configs (issue 26, section 4): every config validates at full size
with the published network (abstract shapes only, nothing allocated), every smoke preset trains
through the CLI offline (mock TFDS records, a tiny converted teacher), TFDS shards are host-local,
and `distributed.auto` reaches `jax.distributed.initialize()`."""
import functools
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.benchmarks import cifar10, imagenet64
from jaxdistill.cli import main
from jaxdistill.config import load
from jaxdistill.data.pipeline import BatchStream
from jaxdistill.data.sources import TfdsSource
from jaxdistill.models.registry import count_params, make_network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "cifar10", "*.py")) + glob.glob(os.path.join(ROOT, "configs", "imagenet64", "*.py")))
NAMES = [os.path.relpath(p, os.path.join(ROOT, "configs")) for p in CONFIGS]
# Every CI pass runs one CIFAR-10 smoke per family of objectives on the converted EDM teacher (one-level
# networks without attention at 8x8, jaxdistill.benchmarks.images; ~10-25 s each on 2 CPU cores) and ImageNet-64's
# CD (11 s), which takes the ADM port through the CLI. The rest are slow: f-distill, SiDA and SIM share DMD2's and
# SiD's generator/critic path on this teacher, CTM and sCD / sCT compile slowly (the teacher's Heun loop, the JVP
# through the network; tests/test_ctm.py and tests/test_scm.py run them on grid25), and the other ImageNet-64
# ones are the same methods (20-33 s each).
FAST_SMOKE = tuple(f"cifar10/{m}.py" for m in ("cd", "pd", "ect", "dmd2", "sid")) + ("imagenet64/cd.py",)


def test_the_papers_datasets_have_their_configs():
    assert {"cifar10/" + m for m in ("dmd2", "sid", "sida", "ect", "cd", "fdistill", "sim", "pd")} <= {n[:-3] for n in NAMES}
    assert {"imagenet64/" + m for m in ("dmd2", "sid", "sida", "cd", "fdistill")} <= {n[:-3] for n in NAMES}


@functools.lru_cache(maxsize=None)
def abstract_param_count(network_json: str, shape: tuple) -> int:
    network = make_network(__import__("ml_collections").ConfigDict(json.loads(network_json)))
    abstract = jax.eval_shape(network.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    return count_params(abstract)


@pytest.mark.parametrize("path", CONFIGS, ids=NAMES)
def test_every_config_validates_at_full_size_with_the_published_network(path):
    c = load(path)
    imagenet = "imagenet64" in path
    assert c.data.name == "tfds" and c.data.dataset == ("imagenet_resized/64x64" if imagenet else "cifar10") and "mock_examples" not in c.data
    assert c.teacher.kind == "converted" and c.teacher.path.startswith("checkpoints/edm-") and c.teacher.path.endswith(".npz")
    assert c.process.name == ("trigflow" if c.method in ("scd", "sct") else "edm") and c.sigma_data == 0.5 and c.prior_mean == "zero" and c.eval.num_samples == 50_000
    assert c.network.name == ("edm_adm" if imagenet else "edm_ddpmpp") and c.network.preset == ("imagenet64_cond" if imagenet else PRESET[c.data.label_key is not None])
    assert c.batch_size >= 128 and c.batch_size * c.train.num_steps >= 25_000_000 and c.optim.lr <= 4e-4  # the papers' budgets, not smoke ones
    n = abstract_param_count(json.dumps(c.network.to_dict()), (64, 64, 3) if imagenet else (32, 32, 3))
    if imagenet:
        assert 290e6 < n < 300e6, n  # EDM's ADM for ImageNet-64 (296M)
    else:
        assert 55.0e6 < n < 56.5e6, n  # EDM's DDPM++ for CIFAR-10 (55.7M)


PRESET = {True: "cifar10_cond", False: "cifar10_uncond"}


@pytest.mark.parametrize("path", CONFIGS, ids=NAMES)
def test_every_smoke_preset_is_offline_and_tiny(path):
    c = load(path + ":smoke")
    assert c.data.mock_examples == 64 and c.data.image_size == 8 and c.batch_size == 8 and c.train.num_steps == 2
    assert c.teacher.path in (cifar10.SMOKE_TEACHER, imagenet64.SMOKE_TEACHER)


@pytest.fixture(scope="module")
def smoke_teachers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smoke_teachers")
    return {"cifar10": cifar10.write_smoke_teacher(str(folder / "ddpmpp.npz")), "imagenet64": imagenet64.write_smoke_teacher(str(folder / "adm.npz"))}


def student_state(trainable: dict):
    for name in ("generator", "model", "student"):
        if name in trainable:
            return trainable[name]
    raise AssertionError(f"no student among {sorted(trainable)}")


def flat_keys(tree) -> set:
    return {"/".join(str(getattr(k, "key", k)) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST_SMOKE else pytest.mark.slow) for n in NAMES])
def test_smoke_preset_trains_through_the_cli_on_the_converted_teacher(name, smoke_teachers, tmp_path):
    from jaxdistill.build import load_run, load_teacher
    from jaxdistill.config import load_config_file
    from jaxdistill.models.ports.converted import load_converted

    teacher_path = smoke_teachers[name.split("/")[0]]
    workdir = str(tmp_path / "run")
    spec = os.path.join(ROOT, "configs", name) + ":smoke"
    assert main(["train", "--config", spec, "--workdir", workdir, "--quiet", f"--config.teacher.path={teacher_path}"]) == 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows][-1] == 2 and all(np.isfinite(r["loss"]) for r in rows)
    run = load_run(workdir)
    network, net_params, info = load_converted(teacher_path)
    student = student_state(run.trainable)
    keys = {k for k in flat_keys(student.params) if "/map_extra" not in k}  # CTM's s-embedding (num_times = 2) is the student's own
    assert keys == flat_keys(net_params)  # the EDM port's parameter names, the teacher's tree
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(student.params))
    # The teacher is EDM's preconditioned denoiser around the converted network (Karras et al. 2022, Table 1).
    config = load_config_file(spec)
    config.teacher.path = teacher_path
    teacher, params = load_teacher(config, (8, 8, 3))
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 3))
    sigma, labels = jnp.array([0.01, 1.0, 60.0]), jnp.array([0, 3, 7])
    sd = 0.5
    s = sigma[:, None, None, None]
    c_skip, c_out, c_in = sd**2 / (s**2 + sd**2), s * sd / jnp.sqrt(s**2 + sd**2), 1 / jnp.sqrt(s**2 + sd**2)
    expected = c_skip * x + c_out * network.apply(net_params, c_in * x, jnp.log(sigma) / 4, labels)
    np.testing.assert_allclose(teacher.x0(params, x, sigma, labels), expected, rtol=1e-5, atol=1e-5)


def test_mock_tfds_records_are_box_filtered_images_in_minus_one_one():
    tfds = pytest.importorskip("tensorflow_datasets")
    full = TfdsSource("cifar10", mock_examples=16)
    small = TfdsSource("cifar10", mock_examples=16, image_size=8)
    assert len(small) == 16 and small[3]["x"].shape == (8, 8, 3) and small[3]["x"].dtype == np.float32
    big = full[3]["x"]
    assert big.shape == (32, 32, 3) and big.min() >= -1 and big.max() <= 1
    np.testing.assert_allclose(small[3]["x"], big.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3)), atol=1e-6)
    assert 0 <= int(small[3]["label"]) < 10
    with tfds.testing.mock_data(num_examples=4):
        assert TfdsSource("cifar10", image_size=8)[0]["x"].shape == (8, 8, 3)
    with pytest.raises(ValueError, match="must divide"):
        TfdsSource("cifar10", mock_examples=4, image_size=5)[0]


def test_each_process_reads_its_own_disjoint_slice_of_a_tfds_split():
    """Host-local loading: with 2 processes, shard i reads records i, i + 2, ...; one epoch of both
    shards is every record once."""
    pytest.importorskip("tensorflow_datasets")
    source = TfdsSource("cifar10", mock_examples=64, image_size=8)
    seen = []
    for shard in range(2):
        stream = BatchStream(source, 8, seed=3, shard_index=shard, shard_count=2)
        indices = np.concatenate([stream.indices(s) for s in range(stream.steps_per_epoch)])
        assert stream.per_process_batch == 4 and len(indices) == 32 and len(set(indices.tolist())) == 32
        assert np.all(indices % 2 == shard)
        batch = stream[0]
        np.testing.assert_array_equal(batch["x"][0], source[int(stream.indices(0)[0])]["x"])
        seen.append(set(indices.tolist()))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(64))


class Initialized(Exception):
    pass


@pytest.mark.parametrize("override", ["distributed.auto=True", "distributed.coordinator_address=auto"])
def test_distributed_auto_calls_initialize_with_no_arguments(override, monkeypatch, tmp_path):
    """TPU VMs and SLURM: `jax.distributed.initialize()` detects the cluster; the config reaches it
    from the CLI (before anything is built), with no coordinator, count or id."""
    calls = []

    def initialize(*args, **kwargs):
        calls.append((args, kwargs))
        raise Initialized

    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    spec = os.path.join(ROOT, "configs", "cifar10", "ect.py") + ":smoke"
    with pytest.raises(Initialized):
        main(["train", "--config", spec, "--workdir", str(tmp_path / "run"), "--quiet", f"--config.{override}"])
    assert calls == [((), {})]


def test_a_coordinator_address_still_initializes_with_its_process_fields(monkeypatch):
    from jaxdistill.train.mesh import maybe_initialize_distributed

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    c = load(os.path.join(ROOT, "configs", "cifar10", "ect.py") + ":smoke", ["distributed.coordinator_address=10.0.0.1:1234", "distributed.num_processes=4", "distributed.process_id=2"])
    maybe_initialize_distributed(c.distributed)
    maybe_initialize_distributed(load(os.path.join(ROOT, "configs", "cifar10", "ect.py") + ":smoke").distributed)  # single process: no call
    assert calls == [((), {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 2})]
