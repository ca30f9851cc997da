"""The training-time probe: a run whose data are a known mixture logs its modes while it trains."""
import json
import os

import jax
import numpy as np

from jaxdistill.cli import main
from jaxdistill.eval.probe import MixtureProbe
from jaxdistill.models import gaussian_mixture


def test_probe_counts_the_modes_a_sample_set_keeps():
    mixture = gaussian_mixture.random(0, 7, 16)
    probe = MixtureProbe.of(mixture)
    exact, components = mixture.sample(jax.random.key(1), 3000)
    exact, components = np.asarray(exact), np.asarray(components)
    full = probe(exact)
    assert full["modes_kept"] == 7 and full["min_mode_share"] > 0.5 and full["nonfinite_frac"] == 0.0
    heaviest = int(np.argmax(mixture.weights))
    collapsed = probe(exact[components != heaviest])  # the heaviest mode lost, as DMD2 lost it on such a mixture
    assert collapsed["modes_kept"] == 6 and collapsed["min_mode_share"] == 0.0
    assert collapsed["sw2"] > full["sw2"]
    assert probe.summary(collapsed).startswith("modes 6/7 (smallest share 0.00)")


def test_a_mixture_run_logs_its_probe_with_each_sample_plot(tmp_path, capsys):
    workdir = str(tmp_path / "kd")
    argv = ["train", "--config", "configs/grid25/kd.py:smoke", "--workdir", workdir, "--quiet", "--config.train.sample_every=10"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    probes = [line for line in lines if "probe/modes_kept" in line]
    assert [line["step"] for line in lines] == [10, 20] and probes == lines  # one line per step: its metrics and its probe
    assert all(np.isfinite(line["loss"]) for line in lines)
    assert all(0 <= line["probe/modes_kept"] <= 25 and np.isfinite(line["probe/sw2"]) for line in probes)
    assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["step_0000010.png", "step_0000020.png"]
    assert "step 20: modes " in capsys.readouterr().out
