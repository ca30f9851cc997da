"""Consistency models (CD, CT, iCT, ECT): the boundary condition, CD's loss against the exact
Gaussian flow map, the curricula and ECT's r(t) mapping, and the shared protocol checks."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes
from protocol_checks import config as config_file

from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.oracle import gaussian_flow_map
from jaxdistill.diffusion.process import get_process
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.models.registry import default_network_config, make_network
from jaxdistill.objectives.consistency import (
    CD,
    CT,
    ECT,
    ConsistencyObjective,
    ct_num_scales,
    ct_target_ema,
    ect_r,
    ict_index_logits,
    ict_num_scales,
    karras_sigmas,
)

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[0.6, 0.2], [0.2, 0.3]], np.float32)


def small_mlp():
    cfg = default_network_config("mlp")
    cfg.width, cfg.depth = 32, 2
    return make_network(cfg)


@pytest.mark.parametrize("process_name", ["edm", "vp_cosine", "rectified_flow"])
def test_boundary_condition_holds_exactly_for_any_network(process_name):
    """f(x, t_min) = x / alpha(t_min) bit-for-bit, whatever the network's weights."""
    process = get_process(process_name)
    net = small_mlp()
    params = net.init(jax.random.key(0), jnp.zeros((4, 2)))
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(1), p.shape), params)
    f = Denoiser(net.apply, process, "cm", sigma_data=0.7)
    x = 3.0 * jax.random.normal(jax.random.key(2), (64, 2))
    out = jax.jit(lambda p, y: f.x0(p, y, process.t_min))(params, x)
    np.testing.assert_array_equal(out, x / process.alpha(process.t_min))
    assert float(jnp.max(jnp.abs(f.x0(params, x, 0.5 * process.t_max) - x))) > 1e-2  # away from the boundary it is the network


def exact_consistency_student(process):
    """The exact consistency function of N(MEAN, COV): x_t -> PF-ODE flow map to t = 0."""

    def apply(params, x, t, cond, *, train=False, rngs=None):
        return gaussian_flow_map(x, t, jnp.zeros_like(t), process, MEAN, COV)

    return Denoiser(apply, process, "x0")


def cd_objective(process, teacher, solver, num_scales):
    return ConsistencyObjective(
        settings=CD(num_scales=num_scales, teacher_solver=solver, init_from_teacher=False),
        student=exact_consistency_student(process), student_init_fn=None, tx=optax.sgd(0.0),
        event_shape=(2,), total_steps=100, teacher=teacher,
    )


@pytest.mark.parametrize("solver, order", [("euler", 1), ("heun", 2)])
def test_cd_loss_vanishes_as_the_teacher_step_shrinks(solver, order):
    """With the exact flow map as student and target, the only error left is the teacher's ODE
    step: the CD loss shrinks to zero as N grows, at the solver's order (loss ~ h^(2 order))."""
    process = get_process("edm")
    mixture = GaussianMixture(MEAN[None], COV[None])
    teacher = Denoiser(mixture_apply_fn(process), process, "x0")
    x0, _ = mixture.sample(jax.random.key(0), 4096)
    batch = {"x": x0}
    losses = []
    for n in (20, 40, 80, 160):
        objective = cd_objective(process, teacher, solver, n)
        loss, _ = objective.loss(None, None, {"teacher": mixture.params}, batch, jax.random.key(1), jnp.int32(0))
        losses.append(float(loss))
    assert losses[-1] < 1e-4 * (1e-2 if order == 2 else 1.0)
    rates = [math.log2(a / b) for a, b in zip(losses, losses[1:])]
    assert all(r > 2 * order - 0.6 for r in rates), (losses, rates)


def test_cd_teacher_heun_step_matches_the_exact_flow_map():
    process = get_process("edm")
    mixture = GaussianMixture(MEAN[None], COV[None])
    objective = cd_objective(process, Denoiser(mixture_apply_fn(process), process, "x0"), "heun", 18)
    x = 2.0 * jax.random.normal(jax.random.key(0), (256, 2)) + MEAN
    t, t_next = jnp.full((256,), 1.0), jnp.full((256,), 0.98)
    stepped = objective.teacher_step(mixture.params, x, t, t_next, None)
    np.testing.assert_allclose(stepped, gaussian_flow_map(x, t, t_next, process, MEAN, COV), atol=1e-5)


def test_curricula_match_the_papers():
    # CT (Song et al. 2023): N(0) = s0, N(K) = s1 + 1, non-decreasing; mu(k) = exp(s0 log mu0 / N(k)).
    ks = jnp.arange(0, 1001)
    n_ct = np.asarray(ct_num_scales(ks, 1000, 2, 150))
    assert n_ct[0] == 2 and n_ct[-1] == 151 and np.all(np.diff(n_ct) >= 0)
    np.testing.assert_allclose(ct_target_ema(n_ct[0], 2, 0.9), 0.9, rtol=1e-6)
    # iCT (Song & Dhariwal 2023): 10, 20, ..., 1280 (+1), doubling every K' = floor(K / 8) steps.
    n_ict = np.asarray(ict_num_scales(ks, 1000, 10, 1280))
    assert n_ict[0] == 11 and n_ict[124] == 11 and n_ict[125] == 21 and n_ict[-1] == 1281
    assert sorted(set(n_ict.tolist())) == [10 * 2**j + 1 for j in range(8)]


def test_ict_level_distribution_is_the_discretised_lognormal():
    from scipy.stats import norm

    n, s_min, s_max = 41, 0.002, 80.0
    logits = ict_index_logits(jnp.int32(n), 1281, s_min, s_max, 7.0, -1.1, 2.0)
    probs = np.asarray(jax.nn.softmax(logits))
    assert np.all(probs[n - 1 :] == 0.0)
    levels = np.asarray(karras_sigmas(jnp.arange(n), n, s_min, s_max, 7.0))
    mass = norm.cdf(np.log(levels[1:]), -1.1, 2.0) - norm.cdf(np.log(levels[:-1]), -1.1, 2.0)
    np.testing.assert_allclose(probs[: n - 1], mass / mass.sum(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(levels[[0, -1]], [s_min, s_max], rtol=1e-5)


def test_ect_mapping_shrinks_the_gap_each_stage():
    t = jnp.exp(jnp.linspace(-5.0, 4.0, 200))
    gaps = [np.asarray(t - ect_r(t, a, 2.0, 8.0, 1.0)) for a in range(6)]
    for a, gap in enumerate(gaps):
        r = np.asarray(t) - gap
        assert np.all(r >= 0) and np.all(r < np.asarray(t))
        # where r > 0 the gap is exactly t q^-(a+1) (1 + k sigmoid(-b t))
        expected = np.asarray(t) * 2.0 ** -(a + 1) * (1 + 8 / (1 + np.exp(np.asarray(t))))
        np.testing.assert_allclose(gap[r > 0], expected[r > 0], rtol=1e-5)
    for early, late in zip(gaps, gaps[1:]):
        assert np.all(late <= early + 1e-7)
    assert np.all(np.asarray(ect_r(t[:20], 0, 2.0, 8.0, 1.0)) == 0.0)  # stage 0, small t: plain denoising


def test_ect_at_r_zero_is_the_denoising_loss():
    """Where r = 0 the ECT target is x0 itself: the loss is the (unsquared) denoising error / t."""
    process = get_process("edm")
    net = small_mlp()
    objective = ConsistencyObjective(
        settings=ECT(huber_c=0.0, p_mean=-3.0, p_std=0.1, init_from_teacher=False),
        student=Denoiser(net.apply, process, "edm"), student_init_fn=net.init, tx=optax.sgd(0.0),
        event_shape=(2,), total_steps=800,
    )
    params = net.init(jax.random.key(0), jnp.zeros((8, 2)))
    x0 = jax.random.normal(jax.random.key(1), (256, 2))
    rng = jax.random.key(2)
    loss, _ = objective.loss(params, params, {}, {"x": x0}, rng, jnp.int32(0))
    from jaxdistill.core.rng import derive
    from jaxdistill.objectives.common import lognormal_t

    t = lognormal_t(derive(rng, "levels"), 256, -3.0, 0.1)
    assert float(jnp.max(ect_r(t, 0, 2.0, 8.0, 1.0))) == 0.0
    z = jax.random.normal(derive(rng, "noise"), x0.shape)
    denoised = objective.student.x0(params, x0 + t[:, None] * z, t)
    expected = jnp.mean(jnp.linalg.norm(denoised - x0, axis=1) / t)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("method", ["ct", "ect"])
def test_compiles_once_and_resumes_mid_curriculum(tmp_path, method):
    config = config_file(f"grid25/{method}")
    config.train.num_steps = 12
    if method == "ect":
        config.consistency.stage_steps = 4
    check_compiles_once_and_resumes(config, tmp_path, split=6)


def test_cli_smoke_ict(tmp_path):
    check_cli_smoke("grid25/ict.py:smoke", tmp_path, "ict", (1, 2))


def test_init_from_teacher_needs_a_network_teacher(tmp_path):
    from jaxdistill.build import build
    from jaxdistill.config import ConfigError

    config = config_file("grid25/cd")
    config.consistency.init_from_teacher = True
    with pytest.raises(ConfigError, match="init_from_teacher"):
        build(config)


def test_feature_distance_uses_teacher_features():
    """d(a, b) = mean over the teacher's layers of ||phi(a) - phi(b)||^2 / dim: zero iff the
    features agree, symmetric, and equal to a direct computation."""
    process = get_process("edm")
    net = small_mlp()
    teacher_params = net.init(jax.random.key(0), jnp.zeros((4, 2)))
    teacher = Denoiser(net.apply, process, "edm")
    objective = ConsistencyObjective(
        settings=CT(distance="feature", feature_sigma=0.5),
        student=Denoiser(net.apply, process, "cm"), student_init_fn=net.init, tx=optax.sgd(0.0),
        event_shape=(2,), total_steps=10, teacher=teacher,
    )
    a = jax.random.normal(jax.random.key(1), (16, 2))
    b = a + 0.1 * jax.random.normal(jax.random.key(2), (16, 2))
    d = objective.feature_distance(teacher_params, a, b, None)
    np.testing.assert_array_equal(objective.feature_distance(teacher_params, a, a, None), 0.0)
    np.testing.assert_allclose(d, objective.feature_distance(teacher_params, b, a, None), rtol=1e-6)
    assert d.shape == (16,) and np.all(np.asarray(d) > 0)
    from jaxdistill.diffusion.predict import edm_inputs

    t = jnp.full((16,), 0.5)
    feats = lambda x: net.apply(teacher_params, *edm_inputs(x, t, process, 0.5), None, return_features=True)[1]
    direct = sum(jnp.mean((fa - fb) ** 2, axis=1) for fa, fb in zip(feats(a), feats(b))) / len(feats(a))
    np.testing.assert_allclose(d, direct, rtol=1e-5)
    assert objective.passes_per_sample == 6.0
