"""Teachers, data and networks a user passes in as objects (issue 24): a Gaussian mixture and a
Flax network of their own train through the Python API and read back through `jaxdistill eval`."""
import json
import os
import sys

import jax
import ml_collections
import numpy as np
import pytest
from user_network import TinyDenoiser

from jaxdistill import benchmarks
from jaxdistill.build import build, load_run
from jaxdistill.cli import main
from jaxdistill.config import ConfigError, base_config
from jaxdistill.data.sources import ArraySource, MixtureSource
from jaxdistill.eval.benchmark import Evaluator
from jaxdistill.models.gaussian_mixture import GaussianMixture
from jaxdistill.train.engine import Trainer

MIXTURE = GaussianMixture(
    means=np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]]), covariances=np.full((3, 2), 0.2), labels=np.array([0, 1, 2])
)


def kd_config() -> ml_collections.ConfigDict:
    """A small KD run on whatever data and network are passed to ``build``."""
    c = benchmarks.smoke(benchmarks.with_method(base_config(), "kd"))
    c.teacher.kind = "mixture"
    c.kd.num_pairs, c.kd.teacher_nfe = 256, 5
    c.sigma_data = 2.0
    c.eval.nfes = (1,)
    return c


def train(built, workdir):
    return Trainer(built.objective, built.frozen, built.config, workdir, built.data_factory, show_progress=False).train()


def test_a_users_mixture_and_network_train_and_evaluate_through_the_cli(tmp_path):
    workdir = str(tmp_path / "run")
    built = build(kd_config(), source=MixtureSource(MIXTURE, size=2048, seed=1), network=TinyDenoiser(width=32, num_classes=3))
    assert built.config.data.mixture == "given" and built.config.network.name == "user_network:TinyDenoiser"
    np.testing.assert_allclose(built.frozen["teacher"]["means"], MIXTURE.means)  # the teacher is the user's mixture
    assert train(built, workdir).step == 20
    assert main(["eval", "--workdir", workdir, "--num", "300"]) == 0
    scores = json.load(open(os.path.join(workdir, "eval.json")))["by_nfe"]["1"]
    assert {"nll", "mode_coverage", "class_match"} <= set(scores)  # scored against the exact user mixture
    run = load_run(workdir)
    assert run.built.source.mixture.num_components == 3 and type(run.built.objective.student.apply_fn.__self__.module) is TinyDenoiser


def test_mixture_settings_of_the_data_config_reach_the_teacher_and_the_evaluator():
    c = kd_config()
    c.data = ml_collections.ConfigDict({"name": "grid25", "std": 0.3, "size": 512, "seed": 0})
    built = build(c)
    np.testing.assert_allclose(built.frozen["teacher"]["eigvals"], 0.09, rtol=1e-5)  # not grid25's default 0.1^2
    reference = Evaluator(c.data, num_samples=2000).reference
    offsets = reference - np.round(reference / 2.0) * 2.0
    assert 0.25 < float(np.std(offsets)) < 0.35


def test_objects_the_config_cannot_record_are_passed_again_to_read_a_run_back(tmp_path):
    workdir = str(tmp_path / "run")
    x, k = MIXTURE.sample(jax.random.key(0), 1024)
    plain = ArraySource(np.asarray(x), np.asarray(MIXTURE.labels)[np.asarray(k)])
    teacher = build(kd_config(), source=MixtureSource(MIXTURE, 64)).objective.teacher
    c = kd_config()
    c.network.num_classes = 3
    built = build(c, source=plain, teacher=(teacher, MIXTURE.params))
    assert built.config.data.name == "object" and built.config.teacher.kind == "object"
    train(built, workdir)
    with pytest.raises(ConfigError, match="data source was passed as an object"):
        load_run(workdir, teacher=(teacher, MIXTURE.params))
    with pytest.raises(ConfigError, match="teacher was passed as an object"):
        load_run(workdir, source=plain)
    run = load_run(workdir, source=plain, teacher=(teacher, MIXTURE.params))
    assert run.step == 20


def test_a_network_class_defined_inside_a_function_is_refused_with_a_reason():
    class Local(TinyDenoiser):
        pass

    with pytest.raises(ConfigError, match="define the network class at module level"):
        build(kd_config(), source=MixtureSource(MIXTURE, 64), network=Local())


def test_the_cli_imports_a_users_network_from_the_folder_it_runs_in(tmp_path, monkeypatch):
    """`jaxdistill eval` (a console script, whose sys.path lacks the current folder) reads back a
    run whose network class lives in a module of the folder it is run from."""
    (tmp_path / "my_nets.py").write_text(open(os.path.join(os.path.dirname(__file__), "user_network.py")).read())
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_nets

    workdir = str(tmp_path / "run")
    train(build(kd_config(), source=MixtureSource(MIXTURE, size=512), network=my_nets.TinyDenoiser(width=16, num_classes=3)), workdir)
    monkeypatch.delitem(sys.modules, "my_nets")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--workdir", workdir, "--num", "200"]) == 0
