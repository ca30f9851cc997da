"""Noise processes, prediction conversions, timestep grids and the Gaussian oracle."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.diffusion import oracle, predict, steps
from jaxdistill.diffusion.process import PROCESSES, broadcast_to, get_process

NAMES = tuple(PROCESSES)


def interior(proc, n=41):
    return jnp.linspace(proc.t_min, proc.t_max, n + 2)[1:-1]


@pytest.mark.parametrize("name", NAMES)
def test_alpha_sigma_logsnr_consistent(name):
    proc = get_process(name)
    t = interior(proc)
    a, s = np.asarray(proc.alpha(t), np.float64), np.asarray(proc.sigma(t), np.float64)
    assert np.all(a > 0) and np.all(s > 0)
    np.testing.assert_allclose(proc.logsnr(t), np.log(a**2 / s**2), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(proc.sigma_ratio(t), s / a, rtol=1e-5)
    if name.startswith("vp"):
        np.testing.assert_allclose(a**2 + s**2, 1.0, atol=1e-6)
    assert float(proc.alpha(0.0)) == 1.0 and float(proc.sigma(0.0)) == 0.0
    assert float(proc.logsnr(0.0)) == np.inf
    assert float(proc.sigma(proc.t_max)) > 0 and float(proc.alpha(proc.t_max)) >= 0


@pytest.mark.parametrize("name", NAMES)
def test_inverses(name):
    proc = get_process(name)
    t = interior(proc)
    np.testing.assert_allclose(proc.t_from_logsnr(proc.logsnr(t)), t, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(proc.t_from_sigma_ratio(proc.sigma_ratio(t)), t, rtol=1e-4, atol=2e-5)
    for end in (proc.t_min, proc.t_max):
        np.testing.assert_allclose(proc.t_from_logsnr(proc.logsnr(end)), end, rtol=1e-4)
    assert float(proc.t_from_sigma_ratio(0.0)) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_match_autodiff(name):
    proc = get_process(name)
    t = interior(proc)
    for f, df in ((proc.alpha, proc.dalpha), (proc.sigma, proc.dsigma)):
        np.testing.assert_allclose(df(t), jax.vmap(jax.grad(f))(t), rtol=2e-3, atol=1e-5)


def test_vp_ranges_and_rf_endpoint():
    vp = get_process("vp_cosine")
    np.testing.assert_allclose([vp.logsnr(vp.t_min), vp.logsnr(vp.t_max)], [12.0, -12.0], atol=1e-3)
    rf = get_process("rectified_flow")
    assert rf.t_max == 1.0 and float(rf.alpha(1.0)) == 0.0 and float(rf.logsnr(1.0)) == -np.inf
    assert float(rf.t_from_sigma_ratio(np.inf)) == 1.0
    trig = get_process("trigflow")
    assert float(trig.alpha(trig.t_max)) == 0.0
    np.testing.assert_allclose(trig.sigma_ratio(trig.t_min), 0.002, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_sample_t_prior_and_add_noise(name):
    proc = get_process(name)
    t = proc.sample_t(jax.random.PRNGKey(0), 20_000)
    assert t.shape == (20_000,) and t.dtype == jnp.float32
    if name in ("ve", "edm"):
        np.testing.assert_allclose([jnp.mean(jnp.log(t)), jnp.std(jnp.log(t))], [-1.2, 1.2], atol=0.05)
    else:
        assert float(t.min()) >= proc.t_min and float(t.max()) <= proc.t_max
        np.testing.assert_allclose(jnp.mean(t), 0.5 * (proc.t_min + proc.t_max), rtol=0.02)
    z = proc.prior_sample(jax.random.PRNGKey(1), (4000, 4))
    np.testing.assert_allclose(jnp.std(z), proc.sigma(proc.t_max), rtol=0.03)
    x0, eps = jnp.ones((3, 2, 5)), jnp.full((3, 2, 5), 2.0)
    tb = t[:3]
    xt = proc.add_noise(x0, eps, tb)
    np.testing.assert_allclose(xt[:, 1, 4], proc.alpha(tb) + 2.0 * proc.sigma(tb), rtol=1e-6)
    assert broadcast_to(tb, x0).shape == (3, 1, 1)


def test_get_process_factory():
    assert get_process("edm", t_max=40.0).t_max == 40.0
    assert get_process("edm").sigma_data == 0.5
    with pytest.raises(ValueError, match="vp_cosine"):
        get_process("nope")


# ----------------------------------------------------------------------------- predict

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", predict.PREDICTIONS)
def test_prediction_round_trip(name, kind):
    proc = get_process(name)
    k0, k1 = jax.random.split(jax.random.PRNGKey(2))
    x0 = jax.random.normal(k0, (16, 3, 2))
    eps = jax.random.normal(k1, (16, 3, 2))
    # the "cm" target (x0 - c_skip y) / c_out is undefined at t_min, where c_out = 0
    t_lo = 2.0 * proc.t_min if kind == "cm" else proc.t_min
    t = jnp.linspace(t_lo, 0.95 * proc.t_max, 16)
    x = proc.add_noise(x0, eps, t)
    target = predict.target_for(kind, x0, eps, t, proc, sigma_data=0.7)
    np.testing.assert_allclose(predict.to_x0(target, kind, x, t, proc, sigma_data=0.7), x0, rtol=1e-3, atol=2e-3)
    if kind == "eps":
        np.testing.assert_allclose(predict.eps_from_x0(x0, x, t, proc), eps, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("name", NAMES)
def test_flow_target_is_time_derivative(name):
    proc = get_process(name)
    x0, eps = jnp.array([[1.0, -2.0]]), jnp.array([[0.5, 0.3]])
    t = jnp.array([0.3 * proc.t_max])
    _, dx = jax.jvp(lambda t: proc.add_noise(x0, eps, t), (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(predict.target_for("flow", x0, eps, t, proc), dx, rtol=1e-5)


def test_flow_and_v_at_pure_noise():
    rf = get_process("rectified_flow")
    x0, eps = jnp.array([[1.0, -2.0]]), jnp.array([[0.5, 0.3]])
    t = jnp.array([1.0])
    x = rf.add_noise(x0, eps, t)
    for kind in ("v", "flow"):
        out = predict.target_for(kind, x0, eps, t, rf)
        np.testing.assert_allclose(predict.to_x0(out, kind, x, t, rf), x0, rtol=1e-6)


def test_edm_and_cm_coefficients():
    c_skip, c_out, c_in, c_noise = predict.edm_coeffs(jnp.float32(0.5), 0.5)
    np.testing.assert_allclose([c_skip, c_out, c_in, c_noise], [0.5, 0.25 / np.sqrt(0.5), 1 / np.sqrt(0.5), np.log(0.5) / 4], rtol=1e-6)
    c_skip, c_out, c_in, _ = predict.edm_coeffs(jnp.float32(80.0), 0.5)
    np.testing.assert_allclose([c_skip, c_out, c_in], [0.25 / 6400.25, 40 / np.sqrt(6400.25), 1 / np.sqrt(6400.25)], rtol=1e-6)
    s_min = 0.002
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    F = jax.random.normal(jax.random.PRNGKey(1), (8, 3))
    c_skip, c_out = predict.cm_boundary_coeffs(jnp.full((8, 1), s_min, jnp.float32), s_min, 0.5)
    assert np.array_equal(c_skip * x + c_out * F, x)
    c_skip, c_out = predict.cm_boundary_coeffs(jnp.float32(1.0), s_min, 0.5)
    np.testing.assert_allclose([c_skip, c_out], [0.25 / (0.998**2 + 0.25), 0.998 * 0.5 / np.sqrt(1.25)], rtol=1e-6)
    with pytest.raises(ValueError, match="flow"):
        predict.to_x0(x, "score", x, jnp.ones(8), get_process("edm"))


# ----------------------------------------------------------------------------- grids

SPACED = ("karras", "uniform", "logsnr")  # the others are DDPM's timestep spacings (tests/test_ddpm_process.py)


# every process with the spaced grids, and the DDPM process with a timestep spacing too
GRID_CASES = [(name, grid) for name in NAMES for grid in SPACED] + [("ddpm", "trailing")]


@pytest.mark.parametrize("name,grid", GRID_CASES)
def test_grids_decreasing(name, grid):
    proc = get_process(name)
    for n, t_end in ((1, 0.0), (7, 0.0), (5, proc.t_min), (5, 0.5 * proc.t_min)):
        ts = steps.get_grid(grid, proc, n, t_end=t_end)
        assert ts.shape == (n + 1,) and ts.dtype == jnp.float32
        assert float(ts[0]) == np.float32(proc.t_max) and float(ts[-1]) == np.float32(t_end)
        assert bool(jnp.all(jnp.diff(ts) < 0)) and bool(jnp.all(jnp.isfinite(ts)))
    with pytest.raises(ValueError):
        steps.get_grid("nope", proc, 4)


def test_karras_grid_values():
    edm = get_process("edm")
    mid = ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    np.testing.assert_allclose(steps.karras_grid(edm, 3), [80.0, mid, 0.002, 0.0], rtol=1e-5)
    rf = get_process("rectified_flow")
    ts = steps.karras_grid(rf, 3)  # spacing starts at sigma_ratio 80 since s(1) = inf
    s_lo = float(rf.sigma_ratio(rf.t_min))
    rf_mid = ((80 ** (1 / 7) + s_lo ** (1 / 7)) / 2) ** 7
    np.testing.assert_allclose(rf.sigma_ratio(ts[1:3]), [rf_mid, s_lo], rtol=1e-4)
    vp = get_process("vp_cosine")
    np.testing.assert_allclose(jnp.diff(vp.logsnr(steps.logsnr_grid(vp, 4)[:-1])), 8.0, rtol=1e-3)


# ----------------------------------------------------------------------------- oracle

def gaussian(d=3, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    lam = np.linspace(0.2, 2.0, d)
    return jnp.asarray(rng.normal(size=d), jnp.float32), jnp.asarray((q * lam) @ q.T, jnp.float32)


def exact_marginal(proc, t, mean, cov, z):
    a, s = float(proc.alpha(t)), float(proc.sigma(t))
    chol = np.linalg.cholesky(a**2 * np.asarray(cov, np.float64) + s**2 * np.eye(len(mean)))
    return a * mean + z @ jnp.asarray(chol.T, jnp.float32)


@pytest.mark.parametrize("name", ["vp_cosine", "edm", "rectified_flow"])
def test_oracle_flow_map(name):
    proc = get_process(name)
    mean, cov = gaussian()
    s, u, t = 0.8 * proc.t_max, 0.3 * proc.t_max, 0.05 * proc.t_max
    z = jax.random.normal(jax.random.PRNGKey(0), (20_000, 3))
    xs = exact_marginal(proc, s, mean, cov, z)
    direct = oracle.gaussian_flow_map(xs, s, t, proc, mean, cov)
    composed = oracle.gaussian_flow_map(oracle.gaussian_flow_map(xs, s, u, proc, mean, cov), u, t, proc, mean, cov)
    np.testing.assert_allclose(composed, direct, rtol=1e-4, atol=1e-4)
    a, sg = float(proc.alpha(t)), float(proc.sigma(t))
    chol = np.linalg.cholesky(a**2 * np.asarray(cov, np.float64) + sg**2 * np.eye(3))
    white = np.linalg.solve(chol, np.asarray(direct - a * mean, np.float64).T)  # ~ N(0, I) if exact
    np.testing.assert_allclose(white.mean(1), 0.0, atol=0.03)
    np.testing.assert_allclose(np.cov(white), np.eye(3), atol=0.05)
    # per-sample times broadcast
    ts = jnp.full((20_000,), t)
    np.testing.assert_allclose(oracle.gaussian_flow_map(xs, jnp.full((20_000,), s), ts, proc, mean, cov), direct, atol=1e-5)


@pytest.mark.parametrize("name", ["vp_cosine", "edm", "rectified_flow", "trigflow"])
def test_oracle_velocity_is_pf_ode(name):
    proc = get_process(name)
    mean, cov = gaussian()
    x = jax.random.normal(jax.random.PRNGKey(3), (16, 3))
    t = jnp.float32(0.4 * proc.t_max)
    _, vel = jax.jvp(lambda t: oracle.gaussian_flow_map(x, 0.4 * proc.t_max, t, proc, mean, cov), (t,), (jnp.ones_like(t),))
    x0 = oracle.gaussian_posterior_mean(x, t, proc, mean, cov)
    eps = (x - proc.alpha(t) * x0) / proc.sigma(t)
    np.testing.assert_allclose(vel, proc.dalpha(t) * x0 + proc.dsigma(t) * eps, rtol=1e-3, atol=1e-4)
    a, s = float(proc.alpha(t)), float(proc.sigma(t))
    c = np.asarray(cov, np.float64)
    direct = mean + (x - a * mean) @ np.linalg.solve(a**2 * c + s**2 * np.eye(3), a * c)
    np.testing.assert_allclose(x0, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(oracle.gaussian_denoiser_fn(proc, mean, cov)(x, t), x0, rtol=1e-6)
