"""Reflow and InstaFlow: the U-shaped time density and its sampler, straightness against its closed
form for Gaussian data, the coupling set is the teacher's ODE map, one reflow of a mixture's flow
straightens it and shrinks the one-step Euler error, and the shared protocol checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes
from protocol_checks import config as config_file

from jaxdistill.build import build
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.state import update_count
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.oracle import gaussian_flow_map, gaussian_posterior_mean
from jaxdistill.diffusion.process import get_process
from jaxdistill.diffusion.straightness import straightness
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.objectives.reflow import InstaFlow, Reflow, one_euler_step, sample_u_shaped, u_shaped_density, velocity_of

RF = get_process("rectified_flow")


def test_u_shaped_density_integrates_to_one_and_its_sampler_draws_it():
    """p(t) = a cosh(a (t - 1/2)) / (2 sinh(a/2)) is the equal mixture of a e^{at} / (e^a - 1) and its mirror
    image (Lee et al.'s code), integrates to 1, and a histogram of the sampler's draws follows it."""
    a = 4.0
    t = np.linspace(0.0, 1.0, 20001)
    p = np.asarray(u_shaped_density(t, a), np.float64)
    np.testing.assert_allclose(np.trapezoid(p, t), 1.0, rtol=1e-7)
    mixture = 0.5 * a * (np.exp(a * t) + np.exp(a * (1.0 - t))) / np.expm1(a)
    np.testing.assert_allclose(p, mixture, rtol=1e-5)
    draws = np.asarray(sample_u_shaped(jax.random.key(0), 400_000, a))
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    counts, edges = np.histogram(draws, bins=20, range=(0.0, 1.0))
    cdf = lambda x: 0.5 * (np.expm1(a * x) - np.expm1(a * (1.0 - x)) + np.expm1(a)) / np.expm1(a)  # noqa: E731
    expected = (cdf(edges[1:]) - cdf(edges[:-1])) * draws.size
    np.testing.assert_allclose(counts, expected, rtol=0.03)  # bins hold >= 4,000 draws: 3% is > 2 standard errors
    assert np.argmin(counts) in (9, 10) and counts[0] > 3 * counts[10]  # U-shaped: p(0) / p(1/2) = cosh(2) = 3.76


def test_straightness_matches_its_closed_form_for_gaussian_data():
    """For data N(m, s^2 I) the exact flow is x_t = (1 - t) m + std_t z, std_t = sqrt((1 - t)^2 s^2 + t^2), so
    S = int_0^1 (1 - s - std_t')^2 dt E z^2; a constant velocity field has S = 0."""
    m, s = 1.0, 0.3
    mean, cov = np.full(2, m, np.float32), s**2 * np.eye(2, dtype=np.float32)
    velocity = lambda x, t: (x - gaussian_posterior_mean(x, t, RF, mean, cov)) / t[:, None]  # noqa: E731
    z = jax.random.normal(jax.random.key(0), (4096, 2))
    measured = float(jnp.mean(straightness(velocity, z, 512)))
    t = np.linspace(0.0, 1.0, 200001)
    dstd = (t - (1.0 - t) * s**2) / np.sqrt((1.0 - t) ** 2 * s**2 + t**2)
    exact = np.trapezoid((1.0 - s - dstd) ** 2, t) * float(jnp.mean(z**2))
    assert exact > 0.1
    np.testing.assert_allclose(measured, exact, rtol=1e-2)
    constant = lambda x, t: jnp.broadcast_to(jnp.array([0.5, -2.0]), x.shape)  # noqa: E731
    np.testing.assert_allclose(straightness(constant, z, 8), 0.0, atol=1e-10)


@pytest.fixture(scope="module")
def grid25_reflow():
    """A reflow objective on grid25's exact mixture with a 2,048-pair coupling set (Heun, 31 evaluations)."""
    config = config_file("grid25/reflow")
    config.reflow.num_pairs, config.reflow.teacher_nfe = 2048, 31
    config.batch_size, config.data.size = 256, 1024
    built = build(config)
    frozen = built.objective.prepare(built.frozen, jax.random.key(1))
    return built, frozen


def test_the_coupling_set_is_the_teachers_ode_map():
    """With one Gaussian as the teacher, every pair's end point is the exact flow map of its noise (t = 1 -> 0)."""
    mean, cov = np.array([1.0, -0.5], np.float32), np.array([[0.6, 0.2], [0.2, 0.3]], np.float32)
    config = config_file("grid25/reflow")
    config.reflow.num_pairs, config.reflow.teacher_nfe = 512, 63
    config.data.size = 1024
    teacher = (Denoiser(mixture_apply_fn(RF), RF, "x0"), GaussianMixture(mean[None], cov[None]).params)
    built = build(config, teacher=teacher)
    pairs = built.objective.prepare(built.frozen, jax.random.key(0))["pairs"]
    n = pairs["noise"].shape[0]
    assert n == 512 and pairs["target"].shape == (512, 2)
    exact = gaussian_flow_map(jnp.asarray(pairs["noise"]), jnp.ones(n), jnp.zeros(n), RF, mean, cov)
    # Heun's error is second order: max 0.023 at 31 evaluations, 0.0061 at 63, 0.0015 at 127
    np.testing.assert_allclose(pairs["target"], exact, atol=8e-3)
    assert float(jnp.std(jnp.asarray(pairs["noise"]))) > 0.9  # the prior N(0, I), not the data


def test_one_reflow_straightens_the_flow_and_shrinks_the_one_step_error(grid25_reflow):
    """100 reflow updates of an MLP on grid25's couplings: the 2-rectified flow's paths are straighter than the
    exact mixture's (Liu et al.'s S along 16 Euler steps) and its one Euler step lands nearer the teacher's ODE end
    point than the teacher's own one step (which lands on the data mean)."""
    built, frozen = grid25_reflow
    objective = built.objective
    batch = {"x": jnp.zeros((256, 2))}
    trainable = objective.init(jax.random.key(0), batch, frozen)
    step = jax.jit(objective.step)
    for i in range(100):
        trainable, _ = step(trainable, frozen, batch, jax.random.fold_in(jax.random.key(2), i), jnp.int32(i))
    params = trainable["student"].params
    z = jnp.asarray(frozen["pairs"]["noise"][:512])
    x = jnp.asarray(frozen["pairs"]["target"][:512])
    s_teacher = float(jnp.mean(objective.straightness(frozen["teacher"], z, None, 16, teacher=True)))
    s_student = float(jnp.mean(objective.straightness(params, z, None, 16)))
    assert s_student < 0.2 * s_teacher, (s_student, s_teacher)
    one_step_error = lambda denoiser, p: float(jnp.mean(jnp.sum((one_euler_step(velocity_of(denoiser, p, None), z) - x) ** 2, axis=1)))  # noqa: E731
    teacher_error, student_error = one_step_error(objective.teacher, frozen["teacher"]), one_step_error(objective.student, params)
    assert student_error < 0.25 * teacher_error, (student_error, teacher_error)
    assert teacher_error > 4.0  # the teacher's one step is the mean of a grid of spread ~2.8 per coordinate


def test_bad_settings_and_processes_are_refused():
    with pytest.raises(ValueError, match="time_distribution"):
        Reflow(time_distribution="logit_normal")
    with pytest.raises(ValueError, match="reflow_fraction"):
        InstaFlow(reflow_fraction=1.0)
    config = config_file("grid25/reflow")
    config.process.name, config.data.size = "edm", 1024
    with pytest.raises(ConfigError, match="reflow needs process.name='rectified_flow', got 'edm'"):
        build(config)


# ------------------------------------------------------------------ protocol checks
def test_instaflow_switch_freezes_the_ema_as_the_reflow_flow_in_one_compiled_step():
    """Updates 9, 10, 11 of a 20-update smoke run (switch at 10): one compilation; at the switch the student's EMA
    becomes the frozen reflow copy and the student restarts from it with a fresh optimiser; the stage turns 0 -> 1."""
    config = config_file("grid25/instaflow")
    config.data.size = 1024
    built = build(config)
    objective = built.objective
    assert objective.switch_step == 10
    frozen = objective.prepare(built.frozen, jax.random.key(1))
    batch = {"x": jnp.zeros((int(config.batch_size), 2))}
    trainable = objective.init(jax.random.key(0), batch, frozen)
    step = jax.jit(objective.step)
    stages = []
    for i in (9, 10, 11):
        before = trainable["student"].eval_params
        trainable, metrics = step(trainable, frozen, batch, jax.random.key(i), jnp.int32(i))
        stages.append(float(metrics["stage"]))
        if i == 10:
            for a, b in zip(jax.tree.leaves(trainable["reflow"]), jax.tree.leaves(before), strict=True):
                np.testing.assert_array_equal(a, b)
    assert stages == [0.0, 1.0, 1.0] and step._cache_size() == 1
    assert int(update_count(trainable["student"].opt_state)) == 2  # a fresh optimiser at the switch, then 2 updates


@pytest.mark.slow  # test_one_reflow_straightens_the_flow_and_shrinks_the_one_step_error trains the same step every CI pass
def test_cli_smoke(tmp_path):
    check_cli_smoke("grid25/reflow.py:smoke", tmp_path, "reflow", (1, 2))


@pytest.mark.slow  # ~1.5 min on 2 cores
def test_compiles_once_resumes_across_the_instaflow_switch_and_instaflow_runs_from_the_cli(tmp_path):
    for method in ("reflow", "instaflow"):
        config = config_file(f"grid25/{method}")
        config.train.num_steps = 12  # InstaFlow switches to distillation at update 6, the resumed run's first
        check_compiles_once_and_resumes(config, tmp_path / method, split=6)
    check_cli_smoke("grid25/instaflow.py:smoke", tmp_path, "instaflow", (1,))
