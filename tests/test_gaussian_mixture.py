"""The exact Gaussian-mixture teacher: posterior mean, densities, sampling, constructors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdistill.core.types import NULL_LABEL
from jaxdistill.models import gaussian_mixture as gm


class CosineProcess:
    """Tiny VP process: alpha = cos(pi t / 2), sigma = sin(pi t / 2)."""

    def alpha(self, t):
        return jnp.cos(0.5 * jnp.pi * t)

    def sigma(self, t):
        return jnp.sin(0.5 * jnp.pi * t)


def tweedie(params, x_t, alpha, sigma, cond):
    """x0 = (x_t + sigma^2 grad log p_t(x_t)) / alpha."""
    score = jax.grad(lambda x: jnp.sum(gm.marginal_log_prob(params, x, alpha, sigma, cond)))(x_t)
    s = sigma.reshape(-1, *([1] * (x_t.ndim - 1)))
    a = alpha.reshape(s.shape)
    return (x_t + s**2 * score) / a


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("conditional", [False, True])
def test_posterior_mean_matches_tweedie(diagonal, conditional):
    mix = gm.random(1, 6, 3, num_classes=3, diagonal=diagonal, spread=1.5, event_shape=(3, 1))
    process = CosineProcess()
    apply = jax.jit(gm.mixture_apply_fn(process))
    key = jax.random.key(0)
    x0, _ = mix.sample(key, 64)
    cond = jnp.asarray(np.arange(64) % 4 - 1) if conditional else None  # includes NULL_LABEL
    for t in (0.1, 0.4, 0.7, 0.95):
        tt = jnp.full((64,), t)
        a, s = process.alpha(tt), process.sigma(tt)
        x_t = a[:, None, None] * x0 + s[:, None, None] * jax.random.normal(jax.random.fold_in(key, 1), x0.shape)
        got = apply(mix.params, x_t, tt, cond)
        assert got.shape == x_t.shape
        np.testing.assert_allclose(got, tweedie(mix.params, x_t, a, s, cond), atol=2e-3, rtol=2e-3)


def test_posterior_mean_orthogonality_monte_carlo():
    """E[(x0 - f(x_t)) g(x_t)] = 0 for every g iff f = E[x0 | x_t]; a wrong f is detected."""
    mix = gm.GaussianMixture(np.array([[-2.0], [0.5], [2.5]]), np.array([[0.3], [0.05], [0.6]]), [0.3, 0.5, 0.2])
    n, alpha, sigma = 400_000, 0.8, 0.6
    x0, _ = mix.sample(jax.random.key(3), n)
    x_t = alpha * x0 + sigma * jax.random.normal(jax.random.key(4), x0.shape)
    tests = [jnp.ones_like(x_t), x_t, jnp.tanh(x_t), jnp.sin(2 * x_t), jnp.exp(-(x_t**2))]

    def max_z(f):
        res = x0 - f
        z = [jnp.mean(res * g) / (jnp.std(res * g) / np.sqrt(n)) for g in tests]
        return float(jnp.max(jnp.abs(jnp.stack(z))))

    assert max_z(mix.posterior_mean(x_t, alpha, sigma)) < 4.5
    assert max_z(mix.posterior_mean(x_t, alpha, 0.8 * sigma)) > 10.0


def test_limits_small_sigma_and_zero_alpha():
    mix = gm.random(2, 5, 4, num_classes=2)
    x, _ = mix.sample(jax.random.key(0), 32)
    np.testing.assert_allclose(mix.posterior_mean(x, 1.0, 0.0), x, atol=1e-5)
    np.testing.assert_allclose(mix.posterior_mean(x, 1.0, 1e-4), x, atol=1e-3)
    prior = np.asarray(mix.weights) @ mix.means
    np.testing.assert_allclose(mix.posterior_mean(x, 0.0, 1.0), np.broadcast_to(prior, x.shape), atol=1e-5)
    cond = jnp.zeros(32, jnp.int32)
    w0 = np.where(mix.labels == 0, mix.weights, 0.0)
    np.testing.assert_allclose(
        mix.posterior_mean(x, 0.0, 1.0, cond), np.broadcast_to(w0 @ mix.means / w0.sum(), x.shape), atol=1e-5
    )
    assert np.all(np.isfinite(mix.posterior_mean(x + 50.0, 1.0, 1e-3)))


def test_conditional_restriction_equals_submixture():
    mix = gm.random(5, 8, 2, num_classes=2, spread=2.0)
    sub = gm.GaussianMixture(mix.means[1::2], mix.covariances[1::2], mix.weights[1::2])
    x = jax.random.normal(jax.random.key(1), (16, 2)) * 2
    cond = jnp.ones(16, jnp.int32)
    for a, s in [(0.9, 0.3), (0.5, 0.9)]:
        np.testing.assert_allclose(mix.posterior_mean(x, a, s, cond), sub.posterior_mean(x, a, s), atol=1e-5)
        np.testing.assert_allclose(mix.marginal_log_prob(x, a, s, cond), sub.marginal_log_prob(x, a, s), atol=1e-4)
    null = jnp.full(16, NULL_LABEL)
    np.testing.assert_allclose(mix.posterior_mean(x, 0.7, 0.5, null), mix.posterior_mean(x, 0.7, 0.5), atol=1e-6)
    xs, k = mix.sample(jax.random.key(2), 500, labels=jnp.ones(500, jnp.int32))
    assert np.all(mix.labels[np.asarray(k)] == 1)
    assert xs.shape == (500, 2)


def test_log_prob_matches_scipy_and_integrates():
    mix = gm.random(7, 4, 2, diagonal=False)
    x = np.random.default_rng(0).normal(size=(50, 2)) * 3
    ref = np.log(
        sum(w * stats.multivariate_normal(m, c).pdf(x) for w, m, c in zip(mix.weights, mix.means, mix.covariances))
    )
    np.testing.assert_allclose(mix.log_prob(x), ref, rtol=1e-4, atol=1e-4)
    one_d = gm.GaussianMixture(np.array([[-1.0], [2.0]]), np.array([[0.2], [0.5]]), [0.4, 0.6])
    grid = np.linspace(-8, 10, 20_001)[:, None]
    assert abs(np.trapezoid(np.exp(one_d.log_prob(grid)), grid[:, 0]) - 1.0) < 1e-4


def test_sampling_moments():
    mix = gm.random(3, 5, 3)
    x, k = mix.sample(jax.random.key(0), 200_000)
    x = np.asarray(x, np.float64)
    w = mix.weights.astype(np.float64)
    mean = w @ mix.means
    second = np.einsum("k,kij->ij", w, mix.covariances + np.einsum("ki,kj->kij", mix.means, mix.means))
    np.testing.assert_allclose(x.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(x, rowvar=False), second - np.outer(mean, mean), atol=0.1)
    np.testing.assert_allclose(np.bincount(np.asarray(k), minlength=5) / len(k), w, atol=0.005)


def test_grid25_assign_and_mode_layout():
    mix = gm.grid25()
    assert mix.means.shape == (25, 2) and mix.labels is None and mix.event_shape == (2,)
    x, k = mix.sample(jax.random.key(0), 2000)
    assert np.all(np.asarray(mix.assign(x)) == np.asarray(k))
    assert set(np.unique(mix.means)) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_digits_gmm():
    mix = gm.digits_gmm()
    assert mix.event_shape == (8, 8, 1) and mix.num_components == 10
    np.testing.assert_array_equal(mix.labels, np.arange(10))
    np.testing.assert_allclose(mix.weights, 0.1)
    lam = np.linalg.eigvalsh(mix.covariances.astype(np.float64))
    assert np.all(lam[:, 0] > 0) and np.all(lam[:, -1] / lam[:, 0] <= 1.001e3)
    x, k = mix.sample(jax.random.key(0), 256, labels=jnp.arange(256) % 10)
    assert x.shape == (256, 8, 8, 1)
    assert np.mean(np.asarray(mix.class_of(x)) == np.arange(256) % 10) > 0.95
    out = jax.jit(gm.mixture_apply_fn(CosineProcess()))(mix.params, x, jnp.full((256,), 0.5), k)
    assert out.shape == x.shape and np.all(np.isfinite(out))
