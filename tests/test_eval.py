"""Tests for jaxdistill.eval: metrics against direct numpy/scipy references, digits classifier."""
from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.spatial.distance

from jaxdistill.eval import digits_classifier as dc
from jaxdistill.eval.metrics import (
    assignment_counts,
    class_accuracy,
    frechet_distance,
    frechet_from_features,
    median_bandwidths,
    mixture_label_metrics,
    mmd_rbf,
    mmd_rbf_per_bandwidth,
    mode_coverage,
    multiscale_bandwidths,
    precision_recall,
    random_directions,
    sliced_wasserstein2,
)
from jaxdistill.models import gaussian_mixture as gm

RNG = np.random.default_rng(0)


def test_sliced_wasserstein_matches_brute_force():
    x = RNG.normal(size=(50, 3, 2)).astype(np.float32)
    y = (RNG.normal(size=(50, 3, 2)) + 0.5).astype(np.float32)
    theta = random_directions(6, 64, seed=3)
    w2 = []
    for j in range(64):
        px = sorted(float(v) for v in x.reshape(50, -1) @ theta[:, j])
        py = sorted(float(v) for v in y.reshape(50, -1) @ theta[:, j])
        w2.append(np.mean([(a - b) ** 2 for a, b in zip(px, py)]))
    expected = np.sqrt(np.mean(w2))
    np.testing.assert_allclose(sliced_wasserstein2(x, y, num_projections=64, seed=3), expected, rtol=1e-5)
    assert sliced_wasserstein2(x, x, num_projections=64) < 1e-6


def test_sliced_wasserstein_1d_and_unequal_sizes():
    x, y = RNG.normal(size=(40, 1)), RNG.normal(2.0, 1.5, size=(40, 1))
    expected = np.sqrt(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2))
    np.testing.assert_allclose(sliced_wasserstein2(x, y), expected, rtol=1e-6)
    # Unequal sizes: repeating each sample r times leaves the empirical measure unchanged.
    a, b = RNG.normal(size=(6, 1)), RNG.normal(size=(4, 1))
    ref = np.sqrt(np.mean((np.sort(np.repeat(a[:, 0], 2)) - np.sort(np.repeat(b[:, 0], 3))) ** 2))
    np.testing.assert_allclose(sliced_wasserstein2(a, b), ref, rtol=1e-6)


def _naive_mmd(x, y, bws, unbiased):
    def k(a, b):
        return sum(np.exp(-np.sum((a - b) ** 2) / (2 * s**2)) for s in bws)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if not (unbiased and i == j))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    if unbiased:
        return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)
    return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_matches_naive(unbiased):
    x, y = RNG.normal(size=(20, 3)), RNG.normal(0.7, 1.0, size=(15, 3))
    bws = [0.5, 1.0, 2.0]
    np.testing.assert_allclose(mmd_rbf(x, y, bws, unbiased=unbiased), _naive_mmd(x, y, bws, unbiased), atol=1e-5)
    med = np.median(scipy.spatial.distance.pdist(np.concatenate([x, y])))
    np.testing.assert_allclose(median_bandwidths(x, y), [0.5 * med, med, 2 * med], rtol=1e-5)
    # Default bandwidths: twice the median pooled distance, halved down to the median 5th-neighbour distance.
    pooled = scipy.spatial.distance.squareform(scipy.spatial.distance.pdist(np.concatenate([x, y])))
    near = np.median(np.sort(pooled, axis=1)[:, 5])
    ladder = [2 * med / 2**j for j in range(10) if 2 * med / 2**j >= near]
    np.testing.assert_allclose(multiscale_bandwidths(x, y), ladder, rtol=1e-5)
    np.testing.assert_allclose(mmd_rbf(x, y, unbiased=unbiased), _naive_mmd(x, y, ladder, unbiased), atol=1e-5)


def test_multiscale_mmd_sees_error_inside_modes_the_median_kernel_misses():
    """Two sets with the same well-separated modes, one blurred inside each mode (std 0.1 -> 0.3):
    the median kernel (scale ~ the mode spacing) barely tells them apart; the multi-scale one does."""
    centres = RNG.choice(np.array([[-10.0, 0.0], [10.0, 0.0], [0.0, 10.0], [0.0, -10.0]]), size=3000)
    reference, sharp, blurred = (centres + std * RNG.normal(size=centres.shape) for std in (0.1, 0.1, 0.3))
    sharp, blurred = sharp[RNG.permutation(3000)], blurred[RNG.permutation(3000)]
    median_kernel = [mmd_rbf(s, reference, median_bandwidths(s, reference)) for s in (sharp, blurred)]
    multi_scale = [mmd_rbf(s, reference) for s in (sharp, blurred)]
    bandwidths = multiscale_bandwidths(blurred, reference)
    per_scale = mmd_rbf_per_bandwidth(blurred, reference, bandwidths)
    assert abs(median_kernel[1]) < 5 * abs(median_kernel[0]) + 1e-4  # lost in the sampling noise
    assert multi_scale[1] > 30 * abs(multi_scale[0])
    assert np.max(per_scale[np.asarray(bandwidths) > 5.0]) < 1e-3 < np.max(per_scale)  # kernels at the modes' scale see it


def test_mmd_identical_and_chunked():
    x = RNG.normal(size=(2100, 4)).astype(np.float32)  # > one chunk of rows
    assert abs(mmd_rbf(x, x, unbiased=False)) < 1e-5
    assert mmd_rbf(x[:1000], x[1000:2000] + 1.0) > 10 * abs(mmd_rbf(x[:1000], x[1000:2000]))


def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = RNG.normal(size=4), RNG.normal(size=4)
    v1, v2 = RNG.uniform(0.5, 2.0, 4), RNG.uniform(0.5, 2.0, 4)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    np.testing.assert_allclose(frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)), expected, rtol=1e-8)
    # Singular covariances still give a finite answer.
    singular = np.diag([1.0, 0.0, 0.0, 1.0])
    assert abs(frechet_distance(mu1, singular, mu1, singular)) < 1e-4
    f = RNG.normal(size=(500, 3))
    assert frechet_from_features(f, f) < 1e-8
    np.testing.assert_allclose(frechet_from_features(f, f + 2.0), 12.0, rtol=1e-6)


def test_precision_recall_toy():
    x = RNG.normal(size=(300, 2))
    assert precision_recall(x, x, k=5) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0, k=5) == (0.0, 0.0)
    # Fakes collapsed onto a small part of the real support, away from its edge: high precision,
    # low recall. Own generator: the module's RNG state depends on which tests ran first on this
    # pytest-xdist worker (over seeds 0-11 precision is 0.94-1.0 and recall 0.08-0.12).
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 1, size=(400, 2))
    fake = rng.uniform(0.1, 0.4, size=(400, 2))
    precision, recall = precision_recall(real, fake, k=3)
    assert precision > 0.9 and recall < 0.3


def test_mode_coverage_and_counts():
    weights = np.array([0.5, 0.25, 0.25])
    assignments = np.array([0] * 50 + [1] * 45 + [2] * 5)
    np.testing.assert_array_equal(assignment_counts(assignments, 3), [50, 45, 5])
    # Expected counts 50, 25, 25; component 2 has 5 < 0.2 * 25 ... = 5 -> covered at 0.2, not at 0.3.
    assert mode_coverage(assignments, weights, threshold=0.2) == 1.0
    assert mode_coverage(assignments, weights, threshold=0.3) == pytest.approx(2 / 3)
    assert mode_coverage(np.zeros(100, int), weights) == pytest.approx(1 / 3)
    assert mode_coverage(assignments, 2 * weights, threshold=0.3) == pytest.approx(2 / 3)


def test_class_accuracy():
    assert class_accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75


def test_mixture_label_metrics_match_closed_forms_on_exact_mean_and_noised_digits_samples():
    mixture = gm.digits_gmm()
    labels = np.repeat(np.arange(10), 500)
    x, _ = mixture.sample(jax.random.key(0), len(labels), labels)
    x = np.asarray(x).reshape(len(labels), -1)
    exact = mixture_label_metrics(mixture, x, labels)
    assert exact["class_match"] == 1.0
    assert abs(exact["mahalanobis"] - 1.0) < 0.02  # chi-square with d degrees of freedom, over d
    assert mixture_label_metrics(mixture, x, labels, mixture.assign(x)) == exact  # given assignments
    at_means = mixture_label_metrics(mixture, np.asarray(mixture.means)[labels], labels)
    assert at_means == {"class_match": 1.0, "nearest_mean_match": 1.0, "mahalanobis": pytest.approx(0.0, abs=1e-9)}
    # isotropic noise of std s adds s^2 tr(Sigma_k^-1) / d to the expected distance
    s = 0.2
    noised = mixture_label_metrics(mixture, x + s * np.random.default_rng(1).normal(size=x.shape), labels)
    expected = 1.0 + s**2 * np.mean(1.0 / np.asarray(mixture.eigvals, np.float64))
    assert abs(noised["mahalanobis"] / expected - 1.0) < 0.02
    assert noised["class_match"] < 0.8 < 0.9 < noised["nearest_mean_match"]  # labels kept, thin directions left


def test_mixture_mahalanobis_sq_and_nearest_mean_against_a_direct_computation():
    mixture = gm.random(3, num_components=4, dim=5, num_classes=2)
    x = np.random.default_rng(2).normal(size=(7, 5)) * 3
    covs = np.asarray(mixture.covariances, np.float64)
    direct = np.array([[d @ np.linalg.solve(c, d) for d, c in zip(xi - np.asarray(mixture.means), covs)] for xi in x])
    np.testing.assert_allclose(np.asarray(mixture.mahalanobis_sq(x)), direct, rtol=1e-4)
    nearest = np.argmin(((x[:, None] - np.asarray(mixture.means)[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(np.asarray(mixture.nearest_mean(x)), nearest)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jaxdistill_cache"))


@pytest.fixture(scope="module")
def evaluator(cache_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXDISTILL_CACHE", cache_dir)
    yield dc.DigitsEvaluator()
    mp.undo()


def test_digits_classifier_accuracy_and_fd(evaluator):
    print(f"digits classifier test accuracy: {evaluator.test_accuracy:.4f}")
    assert evaluator.test_accuracy >= 0.95
    x, y = dc.digits_data()
    perm = np.random.default_rng(1).permutation(len(x))
    half = len(x) // 2
    fd_halves = frechet_from_features(evaluator.features(x[perm[:half]]), evaluator.features(x[perm[half:]]))
    fd_noise = evaluator.fd_digits(np.random.default_rng(2).uniform(-1, 1, size=(1000, 8, 8, 1)))
    assert fd_halves * 20 < fd_noise
    assert evaluator.fd_digits(x) < 1e-6
    assert evaluator.features(x[:5]).shape == (5, 128)
    assert evaluator.accuracy(x, y) > 0.95


def test_digits_cache_reuse_and_corruption(evaluator, cache_dir, monkeypatch):
    monkeypatch.setenv("JAXDISTILL_CACHE", cache_dir)
    path = dc.cache_path()
    with open(path, "rb") as f:
        good = f.read()
    calls = []

    def fake_fit(seed, steps):
        calls.append((seed, steps))
        return evaluator.params

    monkeypatch.setattr(dc, "_fit", fake_fit)
    x = dc.digits_data()[0][:50]
    np.testing.assert_array_equal(dc.DigitsEvaluator(dc.train_digits_classifier()).predict(x), evaluator.predict(x))
    assert calls == []  # valid cache: no retraining

    with open(path, "wb") as f:
        f.write(good[:100] + b"garbage")
    with pytest.warns(UserWarning, match="retraining"):
        dc.train_digits_classifier()
    assert len(calls) == 1
    with open(path, "rb") as f:
        assert f.read() == good  # rewritten
