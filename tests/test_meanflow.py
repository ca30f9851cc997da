"""MeanFlow: the exact average velocity of Gaussian data satisfies the MeanFlow identity through
the objective's own jax.jvp path and has ~0 loss, the adaptive weighting and time sampler follow
the paper, the exact u makes the sampler exact, and the shared protocol checks."""
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes, split_settings
from protocol_checks import config as config_file

from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.oracle import gaussian_flow_map, gaussian_posterior_mean
from jaxdistill.diffusion.process import get_process
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.objectives.meanflow import MeanFlow, MeanFlowObjective, adaptive_weighted, meanflow_target, sample_times

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[0.6, 0.2], [0.2, 0.3]], np.float32)
RF = get_process("rectified_flow")


def exact_velocity(z, t):
    """Instantaneous PF-ODE velocity of N(MEAN, COV) on the rectified flow: v = (z - E[x0 | z_t]) / t."""
    return (z - gaussian_posterior_mean(z, t, RF, MEAN, COV)) / t[:, None]


def exact_average_velocity(z, r, t):
    """u*(z, r, t) = (z - Phi_{t -> r}(z)) / (t - r) from the closed-form flow map (= v at r = t)."""
    h = t - r
    safe = jnp.where(h > 0, h, 1.0)
    avg = (z - gaussian_flow_map(z, t, t - safe, RF, MEAN, COV)) / safe[:, None]
    return jnp.where((h > 0)[:, None], avg, exact_velocity(z, t))


def test_exact_average_velocity_satisfies_the_meanflow_identity():
    """u* = v - (t - r) du*/dt with du*/dt from the objective's jvp along (v, 0, 1)."""
    n = 1024
    t = jax.random.uniform(jax.random.key(0), (n,), minval=0.15, maxval=1.0)
    r = t * jax.random.uniform(jax.random.key(1), (n,), maxval=0.9)
    x0 = jnp.asarray(MEAN) + jax.random.normal(jax.random.key(2), (n, 2)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
    z = RF.add_noise(x0, jax.random.normal(jax.random.key(3), (n, 2)), t)
    v = exact_velocity(z, t)
    u, u_tgt = meanflow_target(exact_average_velocity, z, r, t, v)
    np.testing.assert_allclose(u, exact_average_velocity(z, r, t))
    np.testing.assert_allclose(u_tgt, u, rtol=1e-5, atol=2e-5)  # float32 suffices (max error 2e-6)
    # the identity is not vacuous: dropping the correction term breaks it
    assert float(jnp.max(jnp.abs(v - u))) > 0.1


def meanflow_objective(**kwargs):
    mixture = GaussianMixture(MEAN[None], COV[None])
    student = Denoiser(lambda p, z, t, cond, *, train=False, rngs=None: exact_average_velocity(z, t[:, 0] - t[:, 1], t[:, 0]), RF, "flow")
    teacher = Denoiser(mixture_apply_fn(RF), RF, "x0")
    settings, rest = split_settings(MeanFlow, kwargs)
    return MeanFlowObjective(settings=settings, student=student, student_init_fn=None, tx=optax.sgd(0.0), event_shape=(2,), teacher=teacher, **rest), mixture


def test_meanflow_loss_at_the_exact_average_velocity_is_zero():
    """With v the exact (teacher) velocity the loss of u* vanishes; the network sees (t, t - r)."""
    objective, mixture = meanflow_objective(target="teacher", ratio_r_neq_t=0.5)
    x0, _ = mixture.sample(jax.random.key(0), 4096)
    loss, metrics = objective.loss(None, {"teacher": mixture.params}, {"x": x0}, jax.random.key(1))
    assert float(metrics["mse"]) < 1e-11
    assert float(loss) < 1e-8  # sq / (sq + 1e-3)
    # with the conditional velocity eps - x0 the target is only right in expectation
    data_objective, _ = meanflow_objective(target="data")
    _, metrics = data_objective.loss(None, {}, {"x": x0}, jax.random.key(1))
    assert float(metrics["mse"]) > 0.1


def test_adaptive_weighting_gradients():
    """p = 0 is the squared L2 loss; p = 1/2 has the gradient of 2 sqrt(||delta||^2 + c) (paper Sec. 4.3)."""
    delta = jnp.array([0.01, 0.3, 2.0])
    sq = lambda d: d**2
    for p, reference in ((0.0, lambda d: d**2), (0.5, lambda d: 2.0 * jnp.sqrt(d**2 + 1e-3)), (1.0, lambda d: jnp.log(d**2 + 1e-3))):
        g = jax.vmap(jax.grad(lambda d, p=p: adaptive_weighted(sq(d), p, 1e-3)))(delta)
        np.testing.assert_allclose(g, jax.vmap(jax.grad(reference))(delta), rtol=1e-5)


def test_time_sampler():
    r, t = sample_times(jax.random.key(0), 100_000, -0.4, 1.0, 0.25)
    r, t = np.asarray(r), np.asarray(t)
    assert np.all((0 < r) & (r <= t) & (t < 1))
    assert abs(np.mean(r != t) - 0.25) < 0.01
    # t is the max of two draws of sigmoid(N(-0.4, 1)): P(t <= sigmoid(-0.4)) = 1/4
    assert abs(np.mean(t <= 1 / (1 + np.exp(0.4))) - 0.25) < 0.01


@pytest.mark.parametrize("nfe", [1, 2, 4])
def test_generate_with_the_exact_average_velocity_is_the_exact_ode_solution(nfe):
    objective, _ = meanflow_objective()
    trainable = {"student": SimpleNamespace(eval_params=None)}  # the exact u has no parameters
    z = jax.random.normal(jax.random.key(0), (256, 2))
    out = objective.generate(trainable, {}, z, None, nfe=nfe, rng=jax.random.key(1))
    np.testing.assert_allclose(out, gaussian_flow_map(z, jnp.ones(256), jnp.zeros(256), RF, MEAN, COV), atol=1e-5)


# ------------------------------------------------------------------ protocol checks
def test_compiles_once_and_resumes(tmp_path):
    config = config_file("grid25/meanflow")
    config.train.num_steps = 12
    check_compiles_once_and_resumes(config, tmp_path, split=6)


def test_cli_smoke(tmp_path):
    check_cli_smoke("grid25/meanflow.py:smoke", tmp_path, "meanflow", (1, 2))
