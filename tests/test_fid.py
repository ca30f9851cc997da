"""FID, Inception score and precision/recall (jaxdistill.eval.fid): the Fréchet distance against
closed forms, the Inception score on known posteriors, the image preparation, and the CLI
(``jaxdistill fid-stats``, ``jaxdistill eval --metric fid``) with the closed-form Inception weights
of tests/reference/make_fid_reference.py at a few samples, and its bad inputs."""
import importlib.util
import json
import os

import numpy as np
import pytest

from jaxdistill.cli import main
from jaxdistill.config import load_config_file
from jaxdistill.core.errors import ConfigError
from jaxdistill.data.sources import DigitsSource
from jaxdistill.eval import fid
from jaxdistill.eval.metrics import frechet_distance
from jaxdistill.models.ports import fid_inception_checkpoint as ckpt
from jaxdistill.models.ports.converted import save_converted

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(os.path.dirname(HERE), "configs", "digits", "teacher.py")
_spec = importlib.util.spec_from_file_location("make_fid_reference", os.path.join(HERE, "reference", "make_fid_reference.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> str:
    """Converted closed-form Inception weights (the reference test's), written once."""
    path = str(tmp_path_factory.mktemp("inception") / "inception.npz")
    params = ckpt.convert_state_dict(reference.synthetic_state_dict(ckpt.expected_shapes()), "synthetic")
    ckpt.save_inception(path, params, "synthetic.pth", "0" * 64)
    return path


def test_frechet_distance_closed_forms():
    """``C1 = a^2 I``, ``C2 = R diag(l) R^T`` (not commuting with a general C1, but here
    ``(C1 C2)^{1/2} = a C2^{1/2}``): ``FD = |dmu|^2 + d a^2 + sum l - 2 a sum sqrt(l)``; and two
    rank-1 covariances, whose singular product takes the ``eps I`` retry: ``FD = |dmu|^2 + (1 - 2)^2``."""
    rng = np.random.default_rng(0)
    d, a = 5, 1.7
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.array([0.3, 1.0, 2.0, 4.5, 7.0])
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    want = np.sum((mu1 - mu2) ** 2) + d * a**2 + lam.sum() - 2 * a * np.sqrt(lam).sum()
    assert frechet_distance(mu1, a**2 * np.eye(d), mu2, rot @ np.diag(lam) @ rot.T) == pytest.approx(want, rel=1e-10)
    # Diagonal (commuting) covariances: sum of (s1 - s2)^2 over the standard deviations.
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.1, 0.5])
    assert frechet_distance(np.zeros(3), np.diag(s1**2), np.ones(3), np.diag(s2**2)) == pytest.approx(3 + np.sum((s1 - s2) ** 2), rel=1e-10)
    singular = frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.array([0.0, 3.0]), np.diag([4.0, 0.0]))
    assert singular == pytest.approx(9.0 + 1.0, abs=1e-5)


def test_inception_score_on_known_posteriors():
    """Uniform posteriors score 1; sure, balanced posteriors over c classes score c in every split."""
    assert fid.inception_score(np.zeros((100, 1008))) == pytest.approx((1.0, 0.0))
    sure = 50.0 * np.eye(1008)[np.arange(200) % 4]
    mean, std = fid.inception_score(sure)
    assert mean == pytest.approx(4.0, rel=1e-6) and std < 1e-6


def test_inception_input():
    grey = np.array([-1.0, -0.5, 0.0, 0.999, 1.2]).reshape(1, 1, 5, 1)
    x = fid.inception_input(grey)
    assert x.shape == (1, 1, 5, 3) and np.all(x[..., 0] == x[..., 2])
    np.testing.assert_allclose(x[0, 0, :, 0] * 255, [0, 64, 128, 255, 255])  # round((x + 1) 127.5), clipped
    with pytest.raises(ConfigError, match=r"1 or 3 channels, got samples of shape \[8, 8, 4\]"):
        fid.inception_input(np.zeros((2, 8, 8, 4)))
    with pytest.raises(ConfigError, match=r"got samples of shape \[2\]"):
        fid.inception_input(np.zeros((2, 2)))


def _stats_file(path, mu_dim: int = 2048, sha: str = "") -> str:
    np.savez(path, mu=np.zeros(mu_dim), sigma=np.eye(mu_dim), info=np.array(json.dumps({"inception_sha256": sha} if sha else {})))
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("num", "--num must be a positive number"),
    ("no_stats", "--metric fid needs --fid-stats"),
    ("no_inception", f"no FID Inception weights given: pass --inception PATH or set {fid.INCEPTION_ENV}"),
    ("missing_inception", "no FID Inception weights file"),
    ("wrong_inception", "holds the network 'other', not the FID Inception network"),
    ("missing_stats", "no FID statistics file"),
    ("stats_size", "holds statistics of other features: mu [64], sigma [64, 64]; expected the FID Inception's pool3, [2048]"),
    ("stats_other_net", "was computed with other Inception weights (sha256 ffffffffffff...)"),
])
def test_eval_fid_bad_inputs(tmp_path, monkeypatch, capsys, inception, case, message):
    """One stderr line naming the problem (and the file), exit 2, the earlier report untouched."""
    monkeypatch.delenv(fid.INCEPTION_ENV, raising=False)
    out = tmp_path / "out" / "fid.json"
    out.parent.mkdir()
    out.write_text("an earlier report")
    stats = _stats_file(tmp_path / "stats.npz")
    weights, named = inception, None
    if case == "missing_inception":
        weights = named = str(tmp_path / "inception_fid.npz")
    elif case == "wrong_inception":
        weights = named = str(tmp_path / "other.npz")
        save_converted(weights, {"params": {"x": np.zeros(2)}}, {"name": "other"}, {})
    elif case == "missing_stats":
        stats = named = str(tmp_path / "nostats.npz")
    elif case == "stats_size":
        stats = named = _stats_file(tmp_path / "small.npz", 64)
    elif case == "stats_other_net":
        stats = named = _stats_file(tmp_path / "other_stats.npz", sha="f" * 64)
    args = ["eval", "--workdir", str(tmp_path / "run"), "--metric", "fid", "--out", str(out)]
    args += [] if case == "no_stats" else ["--fid-stats", stats]
    args += [] if case == "no_inception" else ["--inception", weights]
    args += ["--num", "0"] if case == "num" else []
    capsys.readouterr()
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and (named is None or named in lines[0]), lines
    if "inception" in case:
        assert ckpt.WEIGHTS_URL in lines[0]
    assert out.read_text() == "an earlier report" and os.listdir(out.parent) == ["fid.json"]


@pytest.mark.parametrize("case, message", [
    ("num", "--num and --batch must be positive"),
    ("missing_inception", "no FID Inception weights file"),
    ("not_images", "FID needs images [N, H, W, C] with 1 or 3 channels, got samples of shape [2]"),
])
def test_fid_stats_bad_inputs(tmp_path, capsys, inception, case, message):
    out = tmp_path / "stats.npz"
    out.write_bytes(b"earlier stats")
    weights = str(tmp_path / "none.npz") if case == "missing_inception" else inception
    config = os.path.join(os.path.dirname(HERE), "configs", "grid25", "teacher.py") if case == "not_images" else DIGITS
    capsys.readouterr()
    assert main(["fid-stats", "--config", config, "--out", str(out), "--inception", weights, "--num", "0" if case == "num" else "4"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert out.read_bytes() == b"earlier stats" and os.listdir(tmp_path) == ["stats.npz"]


@pytest.mark.slow
def test_fid_stats_and_eval_end_to_end(tmp_path, monkeypatch, capsys, inception):
    """A digits teacher (smoke), stats of 12 real digits, FID of 12 samples at NFE 2, in batches of 5
    (the last one padded); $JAXDISTILL_INCEPTION stands in for --inception."""
    monkeypatch.setenv(fid.INCEPTION_ENV, inception)
    run = str(tmp_path / "teacher")
    assert main(["train", "--config", DIGITS + ":smoke", "--workdir", run, "--quiet"]) == 0
    stats = str(tmp_path / "stats" / "digits.npz")
    assert main(["fid-stats", "--config", DIGITS, "--out", stats, "--num", "12", "--batch", "5", "--keep-features"]) == 0
    with np.load(stats) as data:
        info = json.loads(str(data["info"]))
        assert data["mu"].shape == (2048,) and data["sigma"].shape == (2048, 2048) and data["features"].shape == (12, 2048)
    assert info["num"] == 12 and info["data"]["name"] == "digits" and info["inception_sha256"] == ckpt.load_inception(inception)[1]["params_sha256"]
    assert main(["eval", "--workdir", run, "--metric", "fid", "--fid-stats", stats, "--num", "12", "--batch", "5", "--nfes", "2"]) == 0
    report = json.load(open(os.path.join(run, "fid.json")))
    scores = report["by_nfe"]["2"]
    assert report["num_samples"] == 12 and set(scores) == {"fid", "inception_score", "inception_score_std", "precision", "recall"}
    assert scores["fid"] > 0 and scores["inception_score"] >= 1.0 and 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
    # The same digits through the library's functions, in batches of another size, give the same statistics.
    features, _ = fid.load_features(inception, 7)
    pool3, _ = fid.features_of(fid.image_batches(DigitsSource(), 12, 7), features)
    mu, sigma = fid.gaussian_stats(pool3)
    stored = fid.load_stats(stats)
    np.testing.assert_allclose(mu, stored["mu"], atol=1e-5)
    np.testing.assert_allclose(sigma, stored["sigma"], atol=1e-5)


def test_stats_configs_name_the_published_sets(tmp_path, capsys):
    configs = os.path.join(os.path.dirname(HERE), "configs", "fid")
    assert load_config_file(os.path.join(configs, "cifar10.py")).data.to_dict()["dataset"] == "cifar10"
    assert load_config_file(os.path.join(configs, "imagenet64.py")).data.dataset == "imagenet_resized/64x64"
    bare = tmp_path / "bare.py"
    bare.write_text("import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict({'method': 'x'})\n")
    assert main(["fid-stats", "--config", str(bare), "--out", str(tmp_path / "s.npz")]) == 2
    assert "has no data section" in capsys.readouterr().err


def test_frechet_distance_equals_pytorch_fid():
    """pytorch-fid 0.3.0's ``calculate_frechet_distance`` on these statistics (run in the reference
    venv of tests/reference/make_fid_reference.py) gave 1772.611466100559 from 300 samples in 256-D
    and 2149.4014759921074 from 100 (rank-deficient covariances); ours agrees to the last digit."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 256))
    b = rng.standard_normal((300, 256)) @ rng.standard_normal((256, 256)) * 0.2 + 0.3
    for n, want in ((300, 1772.611466100559), (100, 2149.4014759921074)):
        stats = [s for x in (a[:n], b[:n]) for s in fid.gaussian_stats(x)]
        assert frechet_distance(*stats) == pytest.approx(want, rel=1e-9)
