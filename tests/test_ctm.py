"""CTM: the jump is the identity at s = t for any network, the soft-matching target of the exact flow map agrees
with its estimate to the teacher solver's accuracy, the DSM term is the denoising loss through g at s = t,
gamma-sampling with the exact flow map lands on the exact ODE endpoint (gamma = 0) or the exact marginal
(gamma = 1), the (t, u, s) draws follow the paper's code, and the shared protocol checks."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes, split_settings
from protocol_checks import config as config_file

from jaxdistill.core.rng import derive
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.oracle import gaussian_flow_map, gaussian_posterior_mean
from jaxdistill.diffusion.process import get_process
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.models.registry import default_network_config, make_network
from jaxdistill.objectives.ctm import CTM, CTMObjective, adaptive_weight, gamma_sampling, grid_indices, solver_step_logits
from jaxdistill.objectives.denoising import denoising_loss

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[0.6, 0.2], [0.2, 0.3]], np.float32)
EDM = get_process("edm")


def exact_g(process, mean=MEAN, cov=COV):
    """The x0 prediction g(x, t, s) whose jump trajectory_step(x, g, t, s) is the exact flow map of N(mean, cov)
    (the posterior mean at s = t, the jump's limit); a network of kind "x0" reads (t, s) as t[:, 0], t[:, 1]."""

    def apply(params, x, ts, cond, *, train=False, rngs=None):
        t, s = ts[:, 0], ts[:, 1]
        ratio = (process.sigma(s) / process.sigma(t))[:, None]
        b = process.alpha(s)[:, None] - process.alpha(t)[:, None] * ratio
        same = (s >= t)[:, None]
        g = (gaussian_flow_map(x, t, s, process, mean, cov) - ratio * x) / jnp.where(same, 1.0, b)
        return jnp.where(same, gaussian_posterior_mean(x, t, process, mean, cov), g)

    return Denoiser(apply, process, "x0")


def ctm_objective(student, process=EDM, **kwargs):
    teacher = Denoiser(mixture_apply_fn(process), process, "x0")
    settings, rest = split_settings(CTM, kwargs, {"init_from_teacher": False})
    return CTMObjective(settings=settings, student=student, student_init_fn=None, tx=optax.sgd(0.0), event_shape=(2,), teacher=teacher, **rest)


def small_network():
    cfg = default_network_config("mlp")
    cfg.width, cfg.depth, cfg.num_times = 32, 2, 2
    net = make_network(cfg)
    params = net.init(jax.random.key(0), jnp.zeros((4, 2)))
    return net, jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(1), p.shape), params)


@pytest.mark.parametrize("process_name", ["edm", "vp_cosine", "rectified_flow"])
def test_jump_to_its_own_time_is_the_identity_for_any_network(process_name):
    """G(x_t, t, t) = x_t bit for bit, whatever the network's weights; elsewhere it is the network's."""
    process = get_process(process_name)
    net, params = small_network()
    objective = ctm_objective(Denoiser(net.apply, process, "edm", sigma_data=0.7), process)
    x = 3.0 * jax.random.normal(jax.random.key(2), (64, 2))
    t = jax.random.uniform(jax.random.key(3), (64,), minval=0.05, maxval=0.95) * process.t_max
    out = jax.jit(lambda p, y, tt: objective.jump(p, None)(y, tt, tt))(params, x, t)
    np.testing.assert_array_equal(out, x)
    assert float(jnp.max(jnp.abs(objective.jump(params, None)(x, t, 0.5 * t) - x))) > 1e-2


def test_soft_matching_target_of_the_exact_flow_map_agrees_with_its_estimate():
    """With G the exact flow map of the teacher's Gaussian, estimate and target are both the exact map of x_t to
    t_min but for the teacher's k Heun steps t -> u: L_CTM vanishes at Heun's order as the grid refines
    (loss ~ h^6, the squared local error); the wrong Gaussian's map is far from it."""
    mixture = GaussianMixture(MEAN[None], COV[None])
    x0, _ = mixture.sample(jax.random.key(0), 2048)
    batch, frozen = {"x": x0}, {"teacher": mixture.params}
    losses = []
    for n in (18, 36, 72):
        objective = ctm_objective(exact_g(EDM), num_scales=n, max_solver_steps=n - 1)
        losses.append(float(objective.ctm_loss(None, None, frozen, batch, jax.random.key(1), jnp.int32(4))))
    assert losses[-1] < 1e-7 and all(a / b > 2**5 for a, b in zip(losses, losses[1:])), losses
    x_t, _, _, i_s, t = objective.draw(batch, jax.random.key(1), jnp.int32(4))
    estimate = objective.ctm_estimate(None, None, x_t, t, objective.levels()[i_s], None, None)
    np.testing.assert_allclose(estimate, gaussian_flow_map(x_t, t, jnp.full_like(t, EDM.t_min), EDM, MEAN, COV), atol=1e-4)
    wrong = ctm_objective(exact_g(EDM, MEAN + 1.0, 2.0 * COV))
    assert float(wrong.ctm_loss(None, None, frozen, batch, jax.random.key(1), jnp.int32(4))) > 1e-2


def test_dsm_term_is_the_denoising_loss_through_g_at_s_equal_t():
    """L_DSM = mean lambda(sigma) ||g(x_t, t, t) - x0||^2 / d: EDM's denoising loss of the network with its s input at t."""
    net, params = small_network()
    objective = ctm_objective(Denoiser(net.apply, EDM, "edm", sigma_data=0.7))
    x0 = 2.0 * jax.random.normal(jax.random.key(4), (512, 2))
    rng = jax.random.key(5)
    sigma = objective.dsm_sigmas(derive(rng, "sigma"), 512)
    eps = jax.random.normal(derive(rng, "noise"), x0.shape)
    at_t = Denoiser(lambda p, x, c_noise, cond, **kw: net.apply(p, x, jnp.stack([c_noise, c_noise], 1), cond, **kw), EDM, "edm", sigma_data=0.7)
    reference = jnp.mean(denoising_loss(at_t, params, x0, eps, sigma, None, {"dropout": derive(rng, "dropout")}))
    np.testing.assert_allclose(objective.dsm_loss(params, {"x": x0}, rng), reference, rtol=1e-5)
    # half the levels lognormal(-1.2, 1.2), half in the Karras grid from 80 down to its 0.7 point (0.318)
    high = np.asarray(sigma[256:])
    assert high.min() > 0.3 and high.max() <= 80.0 and abs(np.median(np.log(sigma[:256])) + 1.2) < 0.2


@pytest.mark.parametrize("nfe", [1, 2, 4])
def test_gamma_zero_sampling_with_the_exact_flow_map_lands_on_the_exact_ode_endpoint(nfe):
    objective = ctm_objective(exact_g(EDM), gamma=0.0)
    trainable = {"student": type("State", (), {"eval_params": None})()}
    z = 80.0 * jax.random.normal(jax.random.key(0), (256, 2))
    out = objective.generate(trainable, {}, z, None, nfe=nfe, rng=jax.random.key(1))
    exact = gaussian_flow_map(z, jnp.full((256,), EDM.t_max), jnp.full((256,), EDM.t_min), EDM, MEAN, COV)
    np.testing.assert_allclose(out, exact, atol=2e-4)


def test_gamma_one_sampling_is_the_multistep_consistency_sampler():
    """gamma = 1 jumps to t_min and re-noises: with the exact map the samples have the exact marginal at t_min."""
    jump = lambda x, t, s: gaussian_flow_map(x, t, s, EDM, MEAN, COV)  # noqa: E731
    z = 80.0 * jax.random.normal(jax.random.key(0), (40_000, 2))
    times = jnp.asarray([80.0, 2.0, 0.3, EDM.t_min])
    out = np.asarray(gamma_sampling(jump, EDM, z, times, 1.0, jax.random.key(1)))
    np.testing.assert_allclose(out.mean(0), MEAN, atol=0.02)
    np.testing.assert_allclose(np.cov(out.T), COV, atol=0.02)


def test_solver_steps_and_grid_draws_follow_the_papers_code():
    """k ~ p(k) ∝ k on 1..K; i_t <= N - 1 - k, i_u = i_t + k, i_u <= i_s <= N - 1, each uniform."""
    objective = ctm_objective(exact_g(EDM))
    ks = np.asarray(jax.vmap(objective.solver_steps)(jax.random.split(jax.random.key(0), 20_000)))
    p = np.bincount(ks, minlength=18)[1:] / ks.size
    np.testing.assert_allclose(p, np.arange(1, 18) / np.arange(1, 18).sum(), atol=0.006)
    np.testing.assert_array_equal(solver_step_logits(3, "uniform"), np.zeros(3))
    i_t, i_u, i_s = (np.asarray(a) for a in grid_indices(jax.random.key(1), 50_000, 18, jnp.int32(5)))
    assert i_t.min() == 0 and i_t.max() == 12 and np.all(i_u == i_t + 5) and np.all((i_u <= i_s) & (i_s <= 17))
    levels = np.asarray(objective.levels())
    assert levels[0] == EDM.t_max and np.isclose(levels[-1], EDM.t_min) and np.all(np.diff(levels) < 0)


def test_adaptive_weight_is_the_clipped_gradient_norm_ratio():
    main, aux = {"a": jnp.array([3.0, 4.0])}, {"a": jnp.array([0.0, 0.5])}
    np.testing.assert_allclose(adaptive_weight(main, aux, 0.0, 1e4), 5.0 / 0.5001, rtol=1e-6)
    assert float(adaptive_weight(main, aux, 0.01, 2.0)) == 2.0


# ------------------------------------------------------------------ protocol checks
@pytest.mark.slow  # ~15 s on a quiet 2-core machine (the suite is at its budget); run with `pytest -m slow`
def test_compiles_once_and_resumes_with_the_gan_term(tmp_path):
    config = config_file("grid25/ctm")
    config.ctm.gan_weight = 1.0
    config.train.num_steps = 8
    check_compiles_once_and_resumes(config, tmp_path, split=4)


def test_cli_smoke(tmp_path):
    check_cli_smoke("grid25/ctm.py:smoke", tmp_path, "ctm", (1, 2))
