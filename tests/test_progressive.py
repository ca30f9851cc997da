"""Progressive distillation (Salimans & Ho 2022): the PD target makes one student DDIM step land
exactly on two teacher DDIM steps, the grid is nested across stages, stages switch at the right
steps inside one compiled step, a linear student learns the two-step map, and the protocol checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes
from protocol_checks import config as config_file

from jaxdistill.build import build
from jaxdistill.config import ConfigError
from jaxdistill.core.state import NetState
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import get_process
from jaxdistill.models import gaussian_mixture
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.models.registry import default_network_config, make_network
from jaxdistill.objectives.progressive import PD, ProgressiveDistillation, grid_time, pd_target, restart_at

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[0.6, 0.2], [0.2, 0.3]], np.float32)


def mixture_teacher(process):
    mixture = gaussian_mixture.random(0, 3, 2)
    return Denoiser(mixture_apply_fn(process), process, "x0"), mixture


@pytest.mark.parametrize("process_name, grid", [("vp_cosine", "uniform"), ("vp_cosine", "karras"), ("edm", "karras"), ("vp_linear", "karras"), ("rectified_flow", "karras")])
def test_one_student_step_with_the_pd_target_lands_on_two_teacher_steps(process_name, grid):
    """DDIM(z_t, x~, t -> t'') equals DDIM(DDIM(z_t, teacher, t -> t'), teacher, t' -> t'') at every
    grid point, including the first (pure noise) and the last (onto clean data)."""
    process = get_process(process_name)
    teacher, mixture = mixture_teacher(process)
    x0_fn = lambda x, t: teacher.x0(mixture.params, x, t)
    x, _ = mixture.sample(jax.random.key(0), 256)
    eps = jax.random.normal(jax.random.key(1), x.shape)
    for n in (1, 4):
        for i in range(n):
            t, t_mid, t_next = (grid_time(process, j, m, grid) for j, m in ((i, n), (2 * i + 1, 2 * n), (i + 1, n)))
            z = process.add_noise(x, eps, t)
            full = lambda s: jnp.full((256,), s)
            target = pd_target(process, x0_fn, z, full(t), full(t_mid), full(t_next))
            one = samplers.sample(lambda y, s: target, process, z, jnp.stack([t, t_next]), "ddim")
            two = samplers.sample(x0_fn, process, z, jnp.stack([t, t_mid, t_next]), "ddim")
            scale = float(jnp.max(jnp.abs(z))) + 1.0
            np.testing.assert_allclose(one, two, atol=3e-6 * scale, rtol=1e-5, err_msg=f"N={n}, i={i}")
            assert float(jnp.max(jnp.abs(two - z))) > 1e-3  # the two steps do move z


@pytest.mark.parametrize("process_name, grid", [("edm", "karras"), ("vp_cosine", "uniform"), ("rectified_flow", "karras")])
def test_the_grid_is_nested_and_spans_noise_to_data(process_name, grid):
    process = get_process(process_name)
    for n in (1, 2, 8, 64):
        ts = np.asarray(grid_time(process, jnp.arange(n + 1), n, grid))
        fine = np.asarray(grid_time(process, jnp.arange(2 * n + 1), 2 * n, grid))
        np.testing.assert_array_equal(ts, fine[::2])
        assert ts[0] == np.float32(process.t_max) and ts[-1] == 0.0 and np.all(np.diff(ts) < 0)


def small_mlp(width=32):
    cfg = default_network_config("mlp")
    cfg.width, cfg.depth = width, 1
    return make_network(cfg)


def test_restart_copies_the_student_ema_and_resets_the_optimiser():
    params = {"w": jnp.ones((3,))}
    tx = optax.adam(0.1)
    state = NetState.create(params, tx)
    state, _ = state.apply_gradients({"w": jnp.ones((3,))}, 0.5)
    old_teacher = {"w": jnp.zeros((3,))}
    kept, teacher = restart_at(jnp.bool_(False), state, old_teacher)
    for a, b in zip(jax.tree.leaves((kept, teacher)), jax.tree.leaves((state, old_teacher)), strict=True):
        np.testing.assert_array_equal(a, b)
    fresh, teacher = restart_at(jnp.bool_(True), state, old_teacher)
    np.testing.assert_array_equal(teacher["w"], state.ema["w"])
    np.testing.assert_array_equal(fresh.params["w"], state.ema["w"])
    np.testing.assert_array_equal(fresh.ema["w"], state.ema["w"])
    for a, b in zip(jax.tree.leaves(fresh.opt_state), jax.tree.leaves(tx.init(state.ema)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_stages_switch_at_the_right_steps_inside_one_compiled_step():
    process = get_process("edm")
    teacher, mixture = mixture_teacher(process)
    net = small_mlp()
    objective = ProgressiveDistillation(
        settings=PD(start_steps=8, final_steps=1, steps_per_stage=3, init_from_teacher=False),
        teacher=teacher, student=Denoiser(net.apply, process, "edm"), student_init_fn=net.init, tx=optax.adam(1e-2),
        event_shape=(2,), ema_decay=0.5,
    )
    frozen = {"teacher": mixture.params}
    x, _ = mixture.sample(jax.random.key(0), 64)
    batch = {"x": x}
    trainable = objective.init(jax.random.key(1), batch, frozen)
    step = jax.jit(objective.step)
    stages, steps = [], []
    for i in range(11):
        before = trainable
        trainable, metrics = step(trainable, frozen, batch, jax.random.key(10 + i), jnp.int32(i))
        stages.append(int(metrics["stage"]))
        steps.append(int(metrics["student_steps"]))
        expected = before["student"].ema if i in (3, 6) else before["stage_teacher"]
        for a, b in zip(jax.tree.leaves(trainable["stage_teacher"]), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"step {i}")
        # the 4-step student (stage 0) and the 2-step student (stage 1) are kept for sampling
        for key, at in (("4", 3), ("2", 6)):
            slot = trainable["snapshots"][key]
            assert int(slot["filled"]) == (i >= at)
            if i == at:
                for a, b in zip(jax.tree.leaves(slot["params"]), jax.tree.leaves(before["student"].ema), strict=True):
                    np.testing.assert_array_equal(a, b)
    assert stages == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert steps == [4, 4, 4, 2, 2, 2, 1, 1, 1, 1, 1]
    assert step._cache_size() == 1
    noise = objective.prior(jax.random.key(3), 8)
    x0_fn = lambda y, s: objective.student.x0(trainable["snapshots"]["4"]["params"], y, s)  # the 4-step student samples nfe=4
    np.testing.assert_array_equal(objective.generate(trainable, frozen, noise, None, nfe=4, rng=None),
                                  samplers.sample(x0_fn, process, noise, grid_time(process, jnp.arange(5), 4), "ddim"))
    # stage 0 distils the original teacher; later stages the carried copy of the student
    z = 3.0 * jax.random.normal(jax.random.key(2), (64, 2))
    times = tuple(jnp.full((64,), s) for s in (2.0, 1.0, 0.5))
    stage_teacher = trainable["stage_teacher"]
    exact = pd_target(process, lambda y, s: teacher.x0(mixture.params, y, s), z, *times)
    copied = pd_target(process, lambda y, s: objective.student.x0(stage_teacher, y, s), z, *times)
    np.testing.assert_allclose(objective.target(frozen, stage_teacher, z, times, None, jnp.int32(0)), exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(objective.target(frozen, stage_teacher, z, times, None, jnp.int32(2)), copied, rtol=1e-5, atol=1e-5)


def test_a_longer_first_stage_shifts_the_later_switches():
    process = get_process("edm")
    teacher, _ = mixture_teacher(process)
    objective = ProgressiveDistillation(
        settings=PD(start_steps=8, final_steps=1, steps_per_stage=3, first_stage_steps=5),
        teacher=teacher, student=teacher, student_init_fn=None, tx=optax.sgd(0.0), event_shape=(2,),
    )
    steps = jnp.arange(14)
    assert np.asarray(jax.vmap(objective.stage)(steps)).tolist() == [0] * 5 + [1] * 3 + [2] * 6
    assert np.flatnonzero(np.asarray(jax.vmap(objective.switches)(steps))).tolist() == [5, 8]


def linear_init(rng, x):
    return {"A": jnp.zeros((2, 2)), "b": jnp.zeros((2,))}


def linear_apply(params, x, t, cond, *, train=False, rngs=None):
    return x @ params["A"] + params["b"]


def test_a_linear_student_learns_the_two_step_teacher_map():
    """One stage (teacher 2 DDIM steps -> student 1 step) from a Gaussian teacher: the two-step map
    is affine, so a linear one-step student can match it; training gets far closer than init."""
    process = get_process("edm")
    mixture = GaussianMixture(MEAN[None], COV[None])
    teacher = Denoiser(mixture_apply_fn(process), process, "x0")
    objective = ProgressiveDistillation(
        settings=PD(start_steps=2, final_steps=1, steps_per_stage=400, init_from_teacher=False),
        teacher=teacher, student=Denoiser(linear_apply, process, "x0"), student_init_fn=linear_init, tx=optax.adam(2e-2),
        event_shape=(2,), ema_decay=0.0,
    )
    frozen = {"teacher": mixture.params}
    z = objective.prior(jax.random.key(5), 2048)
    ts = grid_time(process, jnp.arange(3), 2)
    two_step = samplers.sample(lambda y, s: teacher.x0(mixture.params, y, s), process, z, ts, "ddim")
    generate = jax.jit(lambda tr: objective.generate(tr, frozen, z, None, nfe=1, rng=None))
    error = lambda tr: float(jnp.mean(jnp.sum((generate(tr) - two_step) ** 2, axis=1)))
    x, _ = mixture.sample(jax.random.key(0), 512)
    trainable = objective.init(jax.random.key(1), {"x": x}, frozen)
    before = error(trainable)
    step = jax.jit(objective.step)
    for i in range(400):
        x, _ = mixture.sample(jax.random.fold_in(jax.random.key(3), i), 512)
        trainable, _ = step(trainable, frozen, {"x": x}, jax.random.fold_in(jax.random.key(4), i), jnp.int32(i))
    after = error(trainable)
    assert after < 0.02 * before and after < 5e-3, (before, after)


def test_compiles_once_and_resumes_mid_stage(tmp_path):
    config = config_file("grid25/pd")
    config.train.num_steps = 12
    config.pd.steps_per_stage = 4  # stages 8 -> 4 -> 2 -> 1 switch at steps 4 and 8
    check_compiles_once_and_resumes(config, tmp_path, split=6)


def test_cli_smoke_pd(tmp_path):
    check_cli_smoke("grid25/pd.py:smoke", tmp_path, "pd", (1, 2))


@pytest.mark.parametrize(
    "override, message",
    [({"init_from_teacher": True}, "init_from_teacher"), ({"start_steps": 12}, "power of two"), ({"grid": "cosine"}, "grid")],
)
def test_bad_pd_configs_are_rejected(override, message):
    config = config_file("grid25/pd")
    for key, value in override.items():
        config.pd[key] = value
    with pytest.raises(ConfigError, match=message):
        build(config)
