"""sCM (sCD / sCT): the tangent's jax.jvp equals central finite differences at float64; with the
closed-form consistency function of Gaussian data (its exact PF-ODE flow map to t = 0) the tangent
and the continuous-time objective's gradient vanish; f(x, 0) = x; an EDM network is the TrigFlow
network under time_input="edm"; the samplers; and the shared protocol checks."""
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes, split_settings
from protocol_checks import config as config_file

from jaxdistill.benchmarks import mlp
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.oracle import gaussian_flow_map
from jaxdistill.diffusion.process import TrigFlow
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.models.registry import make_network
from jaxdistill.objectives.scm import SCD, SCT, SCMObjective, tangent_jvp

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[0.6, 0.2], [0.2, 0.3]], np.float32)
SD = 0.5
TF = TrigFlow(sigma_data=SD)


class SmallNet(nn.Module):
    """A 2-layer tanh MLP of (x, t), computing in its inputs' dtype (float64 under enable_x64)."""

    @nn.compact
    def __call__(self, x, t, cond=None, *, train=False, rngs=None):
        h = jnp.concatenate([x, jnp.sin(3.0 * t)[:, None], jnp.cos(2.0 * t)[:, None]], axis=1)
        h = jnp.tanh(nn.Dense(16, param_dtype=x.dtype)(h))
        return nn.Dense(x.shape[1], param_dtype=x.dtype)(h)


def objective(settings_cls=SCT, apply_fn=None, teacher=None, **kwargs):
    settings, rest = split_settings(settings_cls, kwargs)
    student = Denoiser(apply_fn, TF, "flow", sigma_data=SD)
    return SCMObjective(settings=settings, student=student, student_init_fn=None, tx=optax.sgd(0.0), event_shape=(2,), teacher=teacher, **rest)


@pytest.mark.parametrize("time_input", ["identity", "edm"])
def test_jvp_equals_central_differences_in_float64(time_input):
    """cos t sin t dF/dt from jax.jvp through a network = the central difference of F along the
    PF-ODE tangent (cos t sin t dx/dt, cos t sin t), to ~1e-9 at float64 (h = 1e-5)."""
    with jax.enable_x64(True):
        net = SmallNet()
        x = jax.random.normal(jax.random.key(0), (8, 2), jnp.float64)
        t = jnp.linspace(0.1, 1.4, 8, dtype=jnp.float64)
        dxdt = jax.random.normal(jax.random.key(1), (8, 2), jnp.float64)
        params = net.init(jax.random.key(2), x, t)
        obj = objective(apply_fn=lambda p, y, c, cond, *, train=False, rngs=None: net.apply(p, y, c), time_input=time_input)
        F_fn = obj.trig_fn(params, None)
        F, jvp = tangent_jvp(F_fn, x, t, dxdt)
        assert jvp.dtype == jnp.float64
        h, cs = 1e-5, jnp.cos(t) * jnp.sin(t)
        fd = (F_fn(x + h * cs[:, None] * dxdt, t + h * cs) - F_fn(x - h * cs[:, None] * dxdt, t - h * cs)) / (2 * h)
        np.testing.assert_allclose(F, F_fn(x, t))
        np.testing.assert_allclose(jvp, fd, rtol=1e-8, atol=1e-9)
        assert float(jnp.max(jnp.abs(jvp))) > 0.05  # not vacuous
    assert jnp.zeros(()).dtype == jnp.float32  # the scope closed: the rest of the suite stays float32


def exact_F(params, y, t, cond=None, *, train=False, rngs=None):
    """The TrigFlow network whose consistency function is the exact flow map to t = 0 of N(MEAN, COV),
    F = (cos t x - Phi_{t->0}(x)) / (sd sin t), plus params["a"] y (a = 0: a direction to differentiate)."""
    x = SD * y
    f = gaussian_flow_map(x, t, jnp.zeros_like(t), TF, MEAN, COV)
    return (jnp.cos(t)[:, None] * x - f) / (SD * jnp.sin(t)[:, None]) + params["a"] * y


def test_exact_consistency_function_zeroes_the_tangent_and_the_gradient():
    """sCD with the exact teacher velocity: df*/dt = 0 along the PF-ODE, so g = 0 and the objective's
    gradient in the network's parameters vanishes; sCT's per-sample tangent (conditional velocity) does not."""
    mixture = GaussianMixture(MEAN[None], COV[None])
    teacher = Denoiser(mixture_apply_fn(TF), TF, "x0")
    obj = objective(SCD, exact_F, teacher, tangent_warmup_steps=0)
    x0, _ = mixture.sample(jax.random.key(0), 2048)
    phi = obj.weighting_net().init(jax.random.key(1), jnp.zeros((1,)))
    params = {"a": jnp.zeros(())}
    grad = lambda o: jax.grad(lambda p: o.loss(p, phi, {"teacher": mixture.params}, {"x": x0}, jax.random.key(2), jnp.ones(()))[0])(params)["a"]
    _, metrics = obj.loss(params, phi, {"teacher": mixture.params}, {"x": x0}, jax.random.key(2), jnp.ones(()))
    assert float(metrics["mse"]) < 1e-8  # ||g||^2 / D, g normalised by ||g|| + 0.1
    assert abs(float(grad(obj))) < 2e-5
    sct = objective(SCT, exact_F, tangent_warmup_steps=0)
    _, metrics = sct.loss(params, phi, {}, {"x": x0}, jax.random.key(2), jnp.ones(()))
    assert float(metrics["mse"]) > 1e-2 and abs(float(grad(sct))) > 1e-2


@pytest.mark.parametrize("time_input", ["identity", "edm"])
def test_boundary_condition_f_at_zero_is_the_identity(time_input):
    net = make_network(mlp(width=32, depth=2))
    x = jax.random.normal(jax.random.key(0), (16, 2))
    params = net.init(jax.random.key(1), x)
    f = objective(apply_fn=net.apply, time_input=time_input).consistency_fn(params, None)
    np.testing.assert_array_equal(f(x, jnp.zeros(16)), x)
    assert float(jnp.max(jnp.abs(f(x, jnp.full(16, 0.3)) - x))) > 1e-2


def test_edm_time_input_is_the_edm_network_on_trigflow():
    """time_input="edm": f_theta is an EDM-preconditioned network's x0 at sigma = sd tan t, so a student
    starts as an EDM teacher (paper Sec. 3)."""
    net = make_network(mlp(width=32, depth=2))
    x = jax.random.normal(jax.random.key(0), (16, 2))
    params = net.init(jax.random.key(1), x)
    t = jnp.linspace(0.05, 1.5, 16)
    f = objective(apply_fn=net.apply, time_input="edm").consistency_fn(params, None)
    np.testing.assert_allclose(f(x, t), Denoiser(net.apply, TF, "edm", sigma_data=SD).x0(params, x, t), rtol=2e-5, atol=2e-5)


def test_samplers():
    """One step is f(x_T, pi/2): with the exact consistency function the exact flow map of the noise;
    two steps go through the paper's t_mid = 1.1."""
    obj = objective(apply_fn=exact_F)
    assert obj.sampling_times(2) == [TF.t_max, 1.1]
    assert np.allclose(obj.sampling_times(4), [TF.t_max, 1.1, 1.1 * 2 / 3, 1.1 / 3])
    trainable = {"student": SimpleNamespace(eval_params={"a": jnp.zeros(())})}
    z = TF.prior_sample(jax.random.key(0), (256, 2))
    out = obj.generate(trainable, {}, z, None, nfe=1, rng=jax.random.key(1))
    t_max = jnp.full(256, TF.t_max)
    np.testing.assert_allclose(out, gaussian_flow_map(z, t_max, jnp.zeros(256), TF, MEAN, COV), atol=1e-4)
    two = obj.generate(trainable, {}, z, None, nfe=2, rng=jax.random.key(1))
    np.testing.assert_allclose(np.mean(np.asarray(two), 0), MEAN, atol=0.1)


# ------------------------------------------------------------------ protocol checks
def test_compiles_once_over_the_tangent_warmup_and_resumes(tmp_path):
    config = config_file("grid25/scd")
    config.train.num_steps = 12
    config.scm.tangent_warmup_steps = 8  # the warm-up ends mid-run, after the resume point
    check_compiles_once_and_resumes(config, tmp_path, split=6)


@pytest.mark.slow  # test_compiles_once_over_the_tangent_warmup_and_resumes trains the same step every CI pass
def test_cli_smoke(tmp_path):
    check_cli_smoke("grid25/sct.py:smoke", tmp_path, "sct", (1, 2))
