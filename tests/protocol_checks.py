"""Checks every objective must pass (issue 3): its step compiles once over a run (through
curriculum and stage changes), a run resumed mid-curriculum reaches the same parameters
as an uninterrupted one, and training on 8 simulated devices with FSDP matches 1 device."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np

from jaxdistill import config as config_lib
from jaxdistill.build import build
from jaxdistill.cli import main
from jaxdistill.core import hparams
from jaxdistill.train.engine import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(os.path.dirname(HERE), "configs")


def config(name: str, arg: str | None = "smoke") -> ml_collections.ConfigDict:
    """``configs/<name>.py`` called with ``arg`` (e.g. ``config("grid25/dmd2")`` for its smoke run,
    ``config("digits/kd", None)`` for the benchmark budget, ``config("grid25/sid", "smoke,4step")``)."""
    path = os.path.join(CONFIGS, f"{name}.py")
    return config_lib.load_config_file(f"{path}:{arg}" if arg else path)


def split_settings(cls, kwargs: dict, base: dict | None = None):
    """(``cls`` built from ``base`` and the keys of ``kwargs`` that are its fields, the other keys):
    an objective's settings and its remaining constructor arguments."""
    names = hparams.fields(cls)
    settings = cls(**{**(base or {}), **{k: v for k, v in kwargs.items() if k in names}})
    return settings, {k: v for k, v in kwargs.items() if k not in names}


def _leaves(trainable) -> list[np.ndarray]:
    return [np.asarray(x) for state in trainable.values() for x in jax.tree.leaves(state)]


def check_compiles_once_and_resumes(config, workdir, *, split: int) -> None:
    """Train ``config`` straight, checkpointing at ``split``; a run resumed from that checkpoint
    (copied to a fresh workdir) reaches the same parameters; each run compiles its step once.
    (Stopping a run at a step is the engine's, tested in test_engine.py.)"""
    total = int(config.train.num_steps)
    config = config.copy_and_resolve_references()
    config.train.checkpoint_every = split
    config.train.max_to_keep = total // split + 1  # keep the checkpoint at ``split``
    built = build(config)
    runs = {name: os.path.join(workdir, name) for name in ("straight", "resumed")}
    trainer = Trainer(built.objective, built.frozen, config, runs["straight"], built.data_factory, show_progress=False)
    straight = trainer.train()
    assert straight.step == total
    assert trainer._compiled_step._cache_size() == 1, "the train step was compiled more than once"
    shutil.copytree(os.path.join(runs["straight"], "checkpoints", str(split)), os.path.join(runs["resumed"], "checkpoints", str(split)))
    trainer = Trainer(built.objective, built.frozen, config, runs["resumed"], built.data_factory, show_progress=False)
    assert trainer.checkpointer.latest_step() == split  # it resumes, not restarts
    resumed = trainer.train()
    assert resumed.step == total and trainer._compiled_step._cache_size() == 1
    for a, b in zip(_leaves(straight.trainable), _leaves(resumed.trainable), strict=True):
        np.testing.assert_array_equal(a, b)


def check_sharded_matches_single_device(configs: str, workdir, meshes: str = "1dev,data2_fsdp4", rtol: float = 1e-4) -> dict:
    """Run each of ``configs`` (comma-separated config names such as ``grid25/kd``, loaded with
    "smoke") on 1 device and on the other ``meshes`` of 8 simulated CPUs, in one subprocess; final
    losses and per-leaf parameter sums must agree to ``rtol``."""
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "_sharded_run.py"), str(workdir), configs, meshes],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULTS ")][-1]
    all_results = json.loads(line[len("RESULTS ") :])
    for name, results in all_results.items():
        ref = results["1dev"]
        assert ref["fsdp_sharded"] == 0
        for mesh, res in results.items():
            assert res["compilations"] == 1, f"{name} on {mesh}: step compiled {res['compilations']} times"
            if mesh == "1dev":
                continue
            if "fsdp" in mesh:
                assert res["fsdp_sharded"] > 0, f"{name}: no parameter was sharded over fsdp"
            msg = f"{name} on {mesh} differs from 1 device"
            np.testing.assert_allclose(res["loss"], ref["loss"], rtol=rtol, err_msg=msg)
            np.testing.assert_allclose(res["params"], ref["params"], rtol=rtol, err_msg=msg)
            np.testing.assert_allclose(res["first_leaf"], ref["first_leaf"], rtol=1e-3, atol=1e-5, err_msg=msg)
    return all_results


def load_config_file(config: str):
    """``get_config`` of ``configs/<config>`` (a path under configs/, e.g. ``grid25/vsd.py``)."""
    path = os.path.join(os.path.dirname(HERE), "configs", config)
    spec = importlib.util.spec_from_file_location(f"config_{config.replace('/', '_')[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config


def check_cli_smoke(config: str, workdir, method: str, nfes: tuple[int, ...], *overrides: str) -> None:
    """``jaxdistill train`` of ``config`` (a path under configs/, with its argument; ``overrides``
    such as ``--config.x.y=v`` after it) then ``eval`` at ``nfes``: the report names ``method``
    and has a finite SW2 at every NFE."""
    run = str(workdir / method)
    config_path = os.path.join(os.path.dirname(HERE), "configs", config)
    assert main(["train", "--config", config_path, "--workdir", run, "--quiet", *overrides]) == 0
    assert main(["eval", "--workdir", run, "--nfes", ",".join(map(str, nfes)), "--num", "200"]) == 0
    with open(os.path.join(run, "eval.json")) as f:
        report = json.load(f)
    assert report["method"] == method and set(report["by_nfe"]) == {str(n) for n in nfes}
    assert all(np.isfinite(v["sw2"]) for v in report["by_nfe"].values())
