"""Samplers against the exact Gaussian probability-flow ODE: convergence order, NFE, distributions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.diffusion import oracle, samplers, steps
from jaxdistill.diffusion.process import get_process

D = 4


def gaussian():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    lam = np.array([0.1, 0.3, 1.0, 2.0])  # anisotropic
    return jnp.asarray([0.5, -1.0, 0.2, 1.0], jnp.float32), jnp.asarray((q * lam) @ q.T, jnp.float32)


MEAN, COV = gaussian()


def marginal_sample(proc, t, n, seed=0):
    """Exact x_t ~ N(alpha mu, alpha^2 Sigma + sigma^2 I)."""
    a, s = float(proc.alpha(t)), float(proc.sigma(t))
    chol = np.linalg.cholesky(a**2 * np.asarray(COV, np.float64) + s**2 * np.eye(D))
    z = jax.random.normal(jax.random.PRNGKey(seed), (n, D))
    return a * MEAN + z @ jnp.asarray(chol.T, jnp.float32)


def assert_distribution(x, proc, t, atol=0.06):
    """Whitened by the exact marginal at t, the samples have mean 0 and covariance I."""
    a, s = float(proc.alpha(t)), float(proc.sigma(t))
    chol = np.linalg.cholesky(a**2 * np.asarray(COV, np.float64) + s**2 * np.eye(D))
    white = np.linalg.solve(chol, np.asarray(x - a * MEAN, np.float64).T)
    np.testing.assert_allclose(white.mean(1), 0.0, atol=atol)
    np.testing.assert_allclose(np.cov(white), np.eye(D), atol=atol)


CONVERGENCE = [
    ("vp_cosine", "karras"),
    ("edm", "karras"),
    ("rectified_flow", "uniform"),
    ("trigflow", "logsnr"),
]
ORDERS = {"euler": 0.8, "ddim": 0.8, "heun": 1.7, "dpmpp_2m": 1.7}


@pytest.mark.parametrize("name,grid", CONVERGENCE)
def test_convergence_order(name, grid):
    proc = get_process(name)
    t_end = float(proc.t_from_sigma_ratio(0.05))  # keeps the Gaussian's ODE non-stiff at the end
    x0_fn = oracle.gaussian_denoiser_fn(proc, MEAN, COV)
    x_init = marginal_sample(proc, proc.t_max, 256)
    exact = oracle.gaussian_flow_map(x_init, proc.t_max, t_end, proc, MEAN, COV)
    ns = (16, 32, 64)
    run = jax.jit(lambda x, ts: {m: samplers.sample(x0_fn, proc, x, ts, m) for m in ORDERS})
    outs = [run(x_init, steps.get_grid(grid, proc, n, t_end=t_end)) for n in ns]
    for method, order in ORDERS.items():
        errs = [float(jnp.sqrt(jnp.mean((out[method] - exact) ** 2))) for out in outs]
        slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
        assert order <= slope <= order + 0.6, (method, errs, slope)
        assert errs[-1] < 0.05, (method, errs)


@pytest.mark.parametrize("method", samplers.METHODS)
def test_sample_nfe_counts_evaluations(method):
    proc = get_process("edm")
    x_init = marginal_sample(proc, proc.t_max, 8)
    with jax.disable_jit():  # scan / cond run in Python, so each evaluation calls x0_fn once
        for nfe in range(1, 6):
            counter = []
            x0_fn = lambda x, t: counter.append(1) or 0.5 * x
            out = samplers.sample_nfe(x0_fn, proc, x_init, nfe, method, rng=jax.random.PRNGKey(1))
            assert len(counter) == nfe, (method, nfe, len(counter))
            assert out.shape == x_init.shape and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("method", ["heun", "edm_stochastic", "dpmpp_2m"])
def test_nfe_under_jit(method):
    proc = get_process("rectified_flow")
    f = oracle.gaussian_denoiser_fn(proc, MEAN, COV)
    counter = []

    def x0_fn(x, t):
        jax.debug.callback(lambda: counter.append(1))
        return f(x, t)

    x_init = marginal_sample(proc, proc.t_max, 8)
    run = jax.jit(lambda x, rng: samplers.sample_nfe(x0_fn, proc, x, 7, method, rng=rng))
    out = run(x_init, jax.random.PRNGKey(0))
    jax.block_until_ready(out)
    jax.effects_barrier()
    assert len(counter) == 7 and bool(jnp.all(jnp.isfinite(out)))


def test_steps_for_nfe():
    assert samplers.steps_for_nfe("heun", 1) == (1, True)
    assert samplers.steps_for_nfe("heun", 5) == (3, True)
    assert samplers.steps_for_nfe("heun", 6) == (3, False)
    assert samplers.steps_for_nfe("edm_stochastic", 2) == (1, False)
    assert samplers.steps_for_nfe("dpmpp_2m", 4) == (4, True)
    with pytest.raises(ValueError):
        samplers.steps_for_nfe("rk4", 4)


@pytest.mark.parametrize("name", ["vp_cosine", "edm", "rectified_flow"])
@pytest.mark.parametrize("method", ["heun", "dpmpp_2m"])
def test_sample_nfe_reaches_data(name, method):
    """With the exact denoiser, enough NFE map exact x_{t_max} samples onto the exact ODE solution at 0."""
    proc = get_process(name)
    x0_fn = oracle.gaussian_denoiser_fn(proc, MEAN, COV)
    x_init = marginal_sample(proc, proc.t_max, 256)
    exact = oracle.gaussian_flow_map(x_init, proc.t_max, 0.0, proc, MEAN, COV)
    for nfe in (79, 80):  # odd ends at sigma = 0; even Heun ends at t_min
        out = jax.jit(lambda x: samplers.sample_nfe(x0_fn, proc, x, nfe, method))(x_init)
        assert float(jnp.sqrt(jnp.mean((out - exact) ** 2))) < 0.01, (nfe, method)


@pytest.mark.parametrize(
    "name,method,kw",
    [
        ("vp_cosine", "ancestral", {}),
        ("rectified_flow", "ancestral", {}),
        ("edm", "ddim", {"eta": 0.5}),
        ("edm", "edm_stochastic", {"s_churn": 40.0}),
        ("vp_cosine", "edm_stochastic", {"s_churn": 80.0, "s_noise": 1.0}),
    ],
)
def test_stochastic_samplers_hit_the_marginal(name, method, kw):
    """With the exact denoiser and many steps, stochastic samplers end in the exact marginal at t_end.

    (They are first order in distribution: with 32 steps the variance is still ~15-30% low.)
    """
    proc = get_process(name)
    t_end = float(proc.t_from_sigma_ratio(0.1))
    x0_fn = oracle.gaussian_denoiser_fn(proc, MEAN, COV)
    x_init = marginal_sample(proc, proc.t_max, 10_000)
    ts = steps.logsnr_grid(proc, 512, t_end=t_end)
    out = jax.jit(lambda x, rng: samplers.sample(x0_fn, proc, x, ts, method, rng=rng, **kw))(x_init, jax.random.PRNGKey(3))
    assert_distribution(out, proc, t_end)
    det = samplers.sample(x0_fn, proc, x_init, ts, "ddim")
    assert float(jnp.max(jnp.abs(out - det))) > 0.1  # the noise really is injected


@pytest.mark.parametrize("name", ["edm", "rectified_flow"])
def test_consistency_sampling_with_exact_consistency_function(name):
    """f(x, t) = exact ODE map to 0 is the ideal consistency model: any step count samples the data."""
    proc = get_process(name)
    cm = lambda x, t: oracle.gaussian_flow_map(x, t, 0.0, proc, MEAN, COV)
    x_init = marginal_sample(proc, proc.t_max, 6000)
    for n in (1, 3):
        ts = steps.karras_grid(proc, n)
        out = jax.jit(lambda x, rng: samplers.sample(cm, proc, x, ts, "consistency", rng=rng))(x_init, jax.random.PRNGKey(n))
        assert_distribution(out, proc, 0.0)


def test_errors_and_determinism():
    proc = get_process("edm")
    x0_fn = oracle.gaussian_denoiser_fn(proc, MEAN, COV)
    x_init = marginal_sample(proc, proc.t_max, 8)
    ts = steps.karras_grid(proc, 4)
    for method in ("ancestral", "edm_stochastic", "consistency"):
        with pytest.raises(ValueError, match="rng"):
            samplers.sample(x0_fn, proc, x_init, ts, method)
    with pytest.raises(ValueError, match="rng"):
        samplers.sample(x0_fn, proc, x_init, ts, "ddim", eta=1.0)
    with pytest.raises(ValueError, match="euler"):
        samplers.sample(x0_fn, proc, x_init, ts, "rk4")
    a = samplers.sample(x0_fn, proc, x_init, ts, "ancestral", rng=jax.random.PRNGKey(0))
    b = samplers.sample(x0_fn, proc, x_init, ts, "ancestral", rng=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(a, b)
    # DDIM equals Euler for VE (alpha = 1) processes
    np.testing.assert_allclose(samplers.sample(x0_fn, proc, x_init, ts, "ddim"), samplers.sample(x0_fn, proc, x_init, ts, "euler"), rtol=1e-4, atol=1e-4)
