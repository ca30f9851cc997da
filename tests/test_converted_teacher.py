"""A published network converted by `jaxdistill convert` is a teacher (`teacher.kind="converted"`,
issue 26): DiT on its DDPM process, fed its training index, distilled through the CLI."""
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.build import build, load_teacher
from jaxdistill.cli import main
from jaxdistill.diffusion.process import DDPM
from jaxdistill.models.ports.converted import load_converted

DATA = os.path.join(os.path.dirname(__file__), "data")
PT = os.path.join(DATA, "dit_tiny.pt")  # DiT with 8x8x4 inputs, 10 classes (tests/reference/make_dit_reference.py)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("converted") / "dit_tiny.npz")
    assert main(["convert", "--from", "dit-pt", PT, "--out", out, "--num-heads", "2"]) == 0
    return out


def write_run(folder, teacher_path: str, channels: int = 4) -> str:
    """An npz of latents [256, 8, 8, channels] with labels and a KD smoke config distilling the converted teacher."""
    rs = np.random.default_rng(0)
    data = str(folder / "latents.npz")
    np.savez(data, x=rs.standard_normal((256, 8, 8, channels)).astype(np.float32), label=np.arange(256) % 10)
    config = folder / "kd_dit.py"
    config.write_text(textwrap.dedent(f"""
        import ml_collections
        from jaxdistill import benchmarks
        from jaxdistill.config import base_config

        def get_config():
            c = benchmarks.smoke(benchmarks.with_method(base_config(), "kd"))
            c.data = ml_collections.ConfigDict({{"name": "npz", "path": {data!r}}})
            c.teacher.kind, c.teacher.path = "converted", {teacher_path!r}
            c.network = ml_collections.ConfigDict(dict(name="dit", num_classes=10, patch_size=2, hidden_size=32, depth=1, num_heads=2))
            c.batch_size, c.train.num_steps, c.eval.nfes = 16, 4, (1,)
            c.kd.num_pairs, c.kd.teacher_nfe, c.kd.teacher_sampler = 32, 3, "ddim"
            return c
    """))
    return str(config)


def test_the_converted_dit_teacher_is_its_network_on_ddpm_at_the_training_index(converted, tmp_path):
    from jaxdistill.config import load_config_file

    config = load_config_file(write_run(tmp_path, converted))
    teacher, params = load_teacher(config, (8, 8, 4))
    assert teacher.process == DDPM("linear", 1e-4, 0.02, 1000) and teacher.prediction == "eps"
    network, net_params, _ = load_converted(converted)
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 4))
    k, labels = jnp.array([0.0, 17.0, 999.0]), jnp.array([1, -1, 9])
    expected = network.apply(net_params, x, k, labels)
    np.testing.assert_array_equal(teacher.raw(params, x, k + 1.0, labels), expected)
    # eps through x0 and back, which rounds at alpha(t_max) = 0.0064
    np.testing.assert_allclose(teacher.eps(params, x, k + 1.0, labels), expected, atol=1e-4)


def test_kd_pairs_are_the_converted_teachers_ode_map_and_the_cli_trains_on_it(converted, tmp_path):
    config_file = write_run(tmp_path, converted)
    from jaxdistill.config import load_config_file

    built = build(load_config_file(config_file))
    objective = built.objective
    assert objective.process == DDPM("linear", 1e-4, 0.02, 1000)  # the student samples on the teacher's process
    pairs = objective.prepare(built.frozen, jax.random.key(5))["pairs"]
    again = objective.teacher_sample(built.frozen["teacher"], jnp.asarray(pairs["noise"][:8]), jnp.asarray(pairs["label"][:8]), jax.random.key(0))
    np.testing.assert_allclose(pairs["target"][:8], again, rtol=1e-5, atol=1e-4)  # jit vs eager rounding; targets reach 400
    assert np.all(np.isfinite(pairs["target"])) and np.std(pairs["target"]) > 0.1
    workdir = str(tmp_path / "run")
    assert main(["train", "--config", config_file, "--workdir", workdir, "--quiet"]) == 0
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def test_a_missing_or_mismatched_converted_teacher_is_a_one_line_error(converted, tmp_path, capsys):
    missing = write_run(tmp_path, str(tmp_path / "nowhere.npz"))
    assert main(["train", "--config", missing, "--workdir", str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere.npz" in err and len(err.splitlines()) == 1
    (tmp_path / "rgb").mkdir()
    rgb = write_run(tmp_path / "rgb", converted, channels=3)
    assert main(["train", "--config", rgb, "--workdir", str(tmp_path / "b"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "(8, 8, 4)" in err and "(8, 8, 3)" in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "b" / "checkpoints")


def test_the_converted_edm_teacher_is_edms_preconditioned_denoiser(tmp_path):
    """An EDM pickle converted and named as teacher.path: the teacher is EDMPrecond (its D on the
    reference inputs), on the EDM process with the pickle's sigma_data."""
    from test_edm_port import PKL, assert_close, nhwc, reference

    from jaxdistill.diffusion.process import EDM
    from jaxdistill.models.ports.converted import converted_teacher

    out = str(tmp_path / "edm.npz")
    assert main(["convert", "--from", "edm-pkl", PKL, "--out", out]) == 0
    teacher, params, info = converted_teacher(out)
    assert teacher.process == EDM() and teacher.prediction == "edm" and teacher.sigma_data == info["sigma_data"] == 0.5
    with np.load(os.path.join(DATA, "edm_reference.npz")) as expected:
        x, sigma, labels, _ = reference.inputs(reference.MODELS["ddpmpp_cond"])
        assert_close(teacher.x0(params, nhwc(x), sigma, labels), nhwc(expected["ddpmpp_cond_D"]), "converted EDM teacher D")
