"""CLI smoke runs with the ``smoke`` configs, and clear errors for bad input."""
import json
import os

import numpy as np
import pytest

from jaxdistill.cli import main
from jaxdistill.quickstart import DEFAULT_METHOD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cfg(path: str) -> str:
    return os.path.join(ROOT, "configs", path)


def test_train_sample_eval_teacher_and_kd(tmp_path, capsys):
    teacher = str(tmp_path / "teacher")
    assert main(["train", "--config", cfg("grid25/teacher.py:smoke"), "--workdir", teacher, "--quiet",
                 "--config.train.sample_every=10"]) == 0
    assert os.path.isdir(os.path.join(teacher, "checkpoints", "20"))
    assert sorted(os.listdir(os.path.join(teacher, "samples"))) == ["step_0000010.png", "step_0000020.png"]
    lines = [json.loads(l) for l in open(os.path.join(teacher, "metrics.jsonl"))]
    assert lines[-1]["step"] == 20 and np.isfinite(lines[-1]["loss"])

    out = str(tmp_path / "s.npz")
    assert main(["sample", "--workdir", teacher, "--nfe", "4", "--num", "300", "--out", out]) == 0
    x = np.load(out)["x"]
    assert x.shape == (300, 2) and np.all(np.isfinite(x))
    assert os.path.exists(str(tmp_path / "s.png"))

    assert main(["eval", "--workdir", teacher, "--nfes", "1,4", "--num", "400"]) == 0
    report = json.load(open(os.path.join(teacher, "eval.json")))
    assert set(report["by_nfe"]) == {"1", "4"}
    assert {"sw2", "mmd", "mode_coverage", "nll"} <= set(report["by_nfe"]["4"])

    student = str(tmp_path / "kd")
    args = ["train", "--config", cfg("grid25/kd.py:smoke"), "--workdir", student, "--quiet",
            "--config.teacher.kind=checkpoint", f"--config.teacher.workdir={teacher}"]
    assert main(args) == 0
    assert main(["eval", "--workdir", student, "--num", "300"]) == 0
    report = json.load(open(os.path.join(student, "eval.json")))
    assert list(report["by_nfe"]) == ["1"]


def test_kd_with_exact_conditional_mixture_teacher(tmp_path):
    workdir = str(tmp_path / "kd")
    assert main(["train", "--config", cfg("digits_gmm/kd.py:smoke"), "--workdir", workdir, "--quiet"]) == 0
    assert main(["eval", "--workdir", workdir, "--num", "200"]) == 0
    report = json.load(open(os.path.join(workdir, "eval.json")))
    scores = report["by_nfe"]["1"]
    assert {"class_match", "nearest_mean_match", "mahalanobis"} <= set(scores)
    assert 0.0 <= scores["class_match"] <= 1.0 and 0.0 <= scores["nearest_mean_match"] <= 1.0 and scores["mahalanobis"] >= 0.0


def test_digits_teacher_and_kd_smoke(tmp_path):
    teacher = str(tmp_path / "teacher")
    assert main(["train", "--config", cfg("digits/teacher.py:smoke"), "--workdir", teacher, "--quiet"]) == 0
    # The student distils a teacher restored from a snapshot: the restored folder is a teacher run.
    snapshot, restored = str(tmp_path / "teacher.npz"), str(tmp_path / "restored")
    assert main(["snapshot", "--workdir", teacher, "--out", snapshot]) == 0
    assert main(["restore", "--snapshot", snapshot, "--workdir", restored]) == 0
    student = str(tmp_path / "kd")
    assert main(["train", "--config", cfg("digits/kd.py:smoke"), "--workdir", student, "--quiet",
                 f"--config.teacher.workdir={restored}"]) == 0
    out = str(tmp_path / "d.npz")
    assert main(["sample", "--workdir", student, "--num", "16", "--out", out]) == 0
    assert np.load(out)["x"].shape == (16, 8, 8, 1)


def test_data_dump(tmp_path):
    out = str(tmp_path / "digits.npz")
    assert main(["data", "--config", cfg("digits/teacher.py"), "--num", "50", "--out", out]) == 0
    d = np.load(out)
    assert d["x"].shape == (50, 8, 8, 1) and d["label"].shape == (50,)
    assert d["x"].min() >= -1.0 and d["x"].max() <= 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config.train.num_stepz=3"], "unknown config key 'train.num_stepz'"),
        (["--config.train.num_steps=abc"], "bad value for train.num_steps"),
        (["--config.method=nope"], "method='nope' is not one of"),
        (["--config.train.num_steps=0"], "train.num_steps must be positive"),
        (["--config.teacher.kind=none", "--config.method=kd"], "set teacher.kind"),
    ],
)
def test_bad_config_gives_clear_error(tmp_path, capsys, argv, message):
    code = main(["train", "--config", cfg("grid25/teacher.py:smoke"), "--workdir", str(tmp_path / "w"), *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_bad_config_file_and_argument(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "missing.py"), "--workdir", str(tmp_path)]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["train", "--config", cfg("grid25/teacher.py:huge"), "--workdir", str(tmp_path)]) == 2
    assert "bad config argument 'huge'" in capsys.readouterr().err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["restore", "--snapshot", str(tmp_path / "none.npz"), "--workdir", str(tmp_path / "w")]) == 2
    assert "no snapshot file" in capsys.readouterr().err
    assert main(["snapshot", "--workdir", str(tmp_path / "nothing"), "--out", str(tmp_path / "s.npz")]) == 2
    assert "no checkpoints" in capsys.readouterr().err
    assert main(["sample", "--workdir", str(tmp_path / "nothing")]) == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_quickstart_fast(tmp_path, capsys):
    # ECT's smoke student compiles in half the time of the default DMD2's (five unrolled critic
    # updates); the default itself runs in the slow test below.
    assert main(["quickstart", "--fast", "--workdir", str(tmp_path), "--method", "ect"]) == 0
    report = json.load(open(tmp_path / "quickstart.json"))
    assert set(report["student"]["ect student"]) == {"1"}
    assert os.path.exists(tmp_path / "quality_vs_nfe.png")
    assert "noise floor" in capsys.readouterr().out


@pytest.mark.slow
def test_quickstart_default_then_another_method_reuses_the_teacher(tmp_path, capsys):
    assert main(["quickstart", "--fast", "--workdir", str(tmp_path)]) == 0
    assert set(json.load(open(tmp_path / "quickstart.json"))["student"][f"{DEFAULT_METHOD} student"]) == {"1"}
    capsys.readouterr()
    other = "kd" if DEFAULT_METHOD != "kd" else "sid"
    assert main(["quickstart", "--fast", "--workdir", str(tmp_path), "--method", other]) == 0
    assert "reusing the finished run" in capsys.readouterr().out
    assert f"{other} student" in json.load(open(tmp_path / "quickstart.json"))["student"]


def test_quickstart_rejects_an_unknown_method_before_training(tmp_path, capsys):
    assert main(["quickstart", "--fast", "--workdir", str(tmp_path), "--method", "magic"]) == 2
    err = capsys.readouterr().err
    assert "quickstart distils with one of" in err and "'magic'" in err
    assert not os.path.exists(tmp_path / "teacher")
