"""Trajectory consistency distillation (jaxdistill/objectives/tcd.py; Zheng et al. 2024): the trajectory
consistency function's exact boundary f(x, t, t) = x, strategic stochastic sampling against LCM's sampler
(gamma = 1), DDIM (gamma = 0) and TCDScheduler's schedule, one loss by hand, one update against its gradient,
and (slow) one update of the tiny SD 1.5 UNet and the SD 1.5 / SDXL TCD-LoRA and SDXL LCM-LoRA smoke presets
through `jaxdistill cache` and `jaxdistill train` on tiny random folders."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_lcm import SD_PROCESS, SHAPE, text_cond, text_eps_teacher

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.rng import derive
from jaxdistill.diffusion import samplers
from jaxdistill.objectives.denoising import batch_labels
from jaxdistill.objectives.progressive import ddim_step
from jaxdistill.objectives.tcd import TCD, TCDObjective, sss_times, strategic_stochastic_sampling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tcd_objective(teacher=None, **settings) -> TCDObjective:
    """A TCD objective whose student and teacher are the same toy text 'network' (as ``tcd.build`` does)."""
    teacher = teacher or text_eps_teacher()
    return TCDObjective(
        settings=TCD(**settings), student=teacher, student_init_fn=lambda rng, x: {"a": jnp.float32(0.0)},
        tx=optax.sgd(0.1), event_shape=SHAPE[1:], teacher=teacher,
    )


def test_the_trajectory_function_is_exactly_x_at_s_equal_t_the_x0_prediction_at_0_and_ddim_between():
    obj = tcd_objective()
    params, cond = {"a": jnp.float32(0.7)}, text_cond(SHAPE[0])
    x = jax.random.normal(jax.random.key(0), SHAPE)
    t = jnp.array([1.0, 500.0, 1000.0])
    assert np.array_equal(np.asarray(obj.f(params, x, t, t, cond)), np.asarray(x))  # the boundary, exactly
    x0 = obj.student.x0(params, x, t, cond)
    assert np.array_equal(np.asarray(obj.f(params, x, t, jnp.zeros(3), cond)), np.asarray(x0))
    s = jnp.array([1.0, 260.0, 520.0])
    np.testing.assert_allclose(obj.f(params, x, t, s, cond), ddim_step(SD_PROCESS, x, x0, t, s), rtol=1e-5, atol=1e-5)


def test_sss_with_gamma_one_is_lcms_multistep_sampler():
    """gamma = 1: s = 0 at every step, so each step is x0 re-noised to the next time (Song et al. 2023, Alg. 1)."""
    obj = tcd_objective()
    params, cond = {"a": jnp.float32(0.3)}, text_cond(SHAPE[0])
    x0_fn = lambda x, t: obj.student.x0(params, x, t, cond)  # noqa: E731
    noise, rng = jax.random.normal(jax.random.key(1), SHAPE), jax.random.key(2)
    times = obj.sampling_times(4)
    got = strategic_stochastic_sampling(x0_fn, SD_PROCESS, noise, times, 1.0, rng)
    want = samplers.sample(x0_fn, SD_PROCESS, noise, times, "consistency", rng=rng)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(got, strategic_stochastic_sampling(x0_fn, SD_PROCESS, noise, times, 0.3, rng), atol=1e-3)


def test_sss_with_gamma_zero_and_an_exact_denoiser_is_the_ddim_trajectory():
    """A point mass mu: x0 = mu exactly, and DDIM keeps x_t = alpha_t mu + sigma_t z along the whole trajectory;
    a Gaussian N(m, v): with its exact posterior mean, gamma = 0 is the deterministic DDIM sampler step for step."""
    mu = jnp.asarray(np.random.default_rng(3).normal(size=SHAPE[1:]), jnp.float32)
    z = jax.random.normal(jax.random.key(4), SHAPE)
    times = jnp.array([1000.0, 760.0, 500.0, 260.0])
    x_start = SD_PROCESS.alpha(1000.0) * mu + SD_PROCESS.sigma(1000.0) * z
    got = strategic_stochastic_sampling(lambda x, t: jnp.broadcast_to(mu, x.shape), SD_PROCESS, x_start, times, 0.0, None)
    np.testing.assert_allclose(got, SD_PROCESS.alpha(260.0) * mu + SD_PROCESS.sigma(260.0) * z, rtol=1e-5, atol=1e-5)
    m, v = 0.5, 0.25

    def gaussian_x0(x, t):
        a, s = SD_PROCESS.alpha(t), SD_PROCESS.sigma(t)
        return m + a * v / (a * a * v + s * s) * (x - a * m)

    full = jnp.append(times, 0.0)
    got = strategic_stochastic_sampling(gaussian_x0, SD_PROCESS, z, full, 0.0, None)
    np.testing.assert_allclose(got, samplers.sample(gaussian_x0, SD_PROCESS, z, full, "ddim"), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs rng"):
        strategic_stochastic_sampling(gaussian_x0, SD_PROCESS, z, full, 0.3, None)


@pytest.mark.parametrize("nfe", [1, 2, 4, 8])
def test_sss_times_are_tcdschedulers_and_its_s_within_one_index(nfe):
    """TCDScheduler.set_timesteps(nfe) with original_inference_steps = 50 (its formula: diffusers' TCDScheduler
    needs PyTorch, absent here): the training indices 20 j - 1 reversed, picked at floor(linspace(0, 50, nfe));
    step(eta = gamma) goes to floor((1 - gamma) prev) on the DDPM index, ours to floor((1 - gamma) t_next) in
    process time t = index + 1: the same index or one lower, and the clean point where it stops at index 0."""
    origin = (np.arange(1, 51) * 20 - 1)[::-1]
    scheduler = origin[np.floor(np.linspace(0, 50, nfe, endpoint=False)).astype(np.int64)]
    times = np.asarray(tcd_objective().sampling_times(nfe))
    assert (times[:-1] - 1).tolist() == scheduler.tolist() and times[-1] == 0.0
    for gamma in (0.0, 0.3, 0.7, 1.0):
        prev = np.append(scheduler[1:], 0)
        theirs = np.floor((1 - gamma) * prev)
        ours = np.asarray(sss_times(jnp.asarray(times[1:]), gamma))
        assert np.all((ours[:-1] - 1 == theirs[:-1]) | (ours[:-1] - 1 == theirs[:-1] - 1)) and ours[-1] == 0.0


def test_the_exported_scheduler_is_tcdschedulers_on_the_teachers_schedule_with_no_guidance_input():
    """`jaxdistill export` writes objective.diffusers_scheduler_config: TCDScheduler with the teacher's DDPM
    schedule and prediction type and original_inference_steps = N (whose set_timesteps is checked above)."""
    teacher_config = {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                      "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "set_alpha_to_one": False, "clip_sample": True}
    obj = tcd_objective(num_ddim_timesteps=25)
    config = obj.diffusers_scheduler_config(teacher_config)
    assert config["_class_name"] == "TCDScheduler" and config["original_inference_steps"] == 25
    assert {k: config[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type", "set_alpha_to_one")} == {
        k: teacher_config[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type", "set_alpha_to_one")
    }
    assert config["clip_sample"] is False and obj.guidance_input is False


def test_the_loss_by_hand_at_a_tiny_shape():
    """N = 2 (indices 499, 999; k = 500), w = 4: the draws of n, m, z redone, the guided teacher's DDIM step, both
    trajectory functions and the pseudo-Huber mean computed in float64 from diffusers' alphas_cumprod."""
    from diffusers import FlaxDDIMScheduler

    abar = np.asarray(FlaxDDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).create_state().common.alphas_cumprod, np.float64)
    obj = tcd_objective(num_ddim_timesteps=2, w_min=4.0, w_max=4.0)
    n = 8
    rs = np.random.default_rng(5)
    cond = TextCondition(jnp.asarray(rs.normal(size=(n, 3, 5)), jnp.float32), negative_embeds=jnp.asarray(rs.normal(size=(n, 3, 5)), jnp.float32))
    x0 = jax.random.normal(jax.random.key(6), (n, 2, 2, 1))
    batch = {"x": x0, "cond": {"embeds": cond.embeds, "negative_embeds": cond.negative_embeds}}
    student, teacher, rng = {"a": jnp.float32(0.1)}, {"a": jnp.float32(0.3)}, jax.random.key(7)
    loss, metrics = jax.jit(obj.loss)(student, student, {"teacher": teacher}, batch, rng)

    level = np.asarray(jax.random.randint(derive(rng, "levels"), (n,), 0, 2))
    m = np.asarray(jax.random.randint(derive(rng, "trajectory"), (n,), 0, level + 1))
    assert set(level.tolist()) == {0, 1} and set(m[level == 1].tolist()) == {0, 1}  # every case drawn
    tau = np.array([499, 999])[level]
    tau_e, tau_s = np.maximum(tau - 500, 0), np.maximum(m * 500 - 1, 0)
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    shape = (n, 1, 1, 1)
    a_t, a_e, a_s = (np.sqrt(abar[i]).reshape(shape) for i in (tau, tau_e, tau_s))
    s_t, s_e, s_s = (np.sqrt(1 - abar[i]).reshape(shape) for i in (tau, tau_e, tau_s))
    z = f64(jax.random.normal(derive(rng, "noise"), x0.shape))
    x = a_t * f64(x0) + s_t * z
    embed = lambda e: f64(jnp.mean(e, axis=(1, 2))).reshape(shape)  # noqa: E731  the toy network's prompt shift
    eps = lambda a, y, tt, e: a * y + np.sin(tt / 300.0).reshape(shape) + embed(e)  # noqa: E731  (tt: process time)
    to_x0 = lambda y, e_hat, a, s: (y - s * e_hat) / a  # noqa: E731
    x0_c, x0_u = (to_x0(x, eps(0.3, x, tau + 1.0, e), a_t, s_t) for e in (cond.embeds, cond.negative_embeds))
    x0_w = x0_u + 4.0 * (x0_c - x0_u)
    x_e = a_e * x0_w + s_e * (x - a_t * x0_w) / s_t
    traj = lambda y, y0, a, s: s_s / s * y + (a_s - a * s_s / s) * y0  # noqa: E731
    prediction = traj(x, to_x0(x, eps(0.1, x, tau + 1.0, cond.embeds), a_t, s_t), a_t, s_t)
    target = traj(x_e, to_x0(x_e, eps(0.1, x_e, tau_e + 1.0, cond.embeds), a_e, s_e), a_e, s_e)
    np.testing.assert_allclose(target[tau_s == tau_e], x_e[tau_s == tau_e], rtol=1e-12)  # m = n: the boundary
    diff = prediction - target
    np.testing.assert_allclose(float(loss), np.mean(np.sqrt(diff**2 + 0.001**2) - 0.001), rtol=2e-4)
    np.testing.assert_allclose(float(metrics["target_time"]), np.mean(tau_s + 1.0), rtol=1e-6)


def test_one_update_follows_the_prediction_only():
    """The jitted step's SGD update is -lr times the gradient through f_theta(x, t, s) alone: the target (the
    online student under a stopped gradient, LCM-LoRA's and the TCD LoRAs' form) is held fixed."""
    rs = np.random.default_rng(8)
    cond = TextCondition(jnp.asarray(rs.normal(size=(4, 3, 5)), jnp.float32), negative_embeds=jnp.asarray(rs.normal(size=(4, 3, 5)), jnp.float32))
    batch = {"x": jax.random.normal(jax.random.key(9), (4, 2, 2, 1)), "cond": {"embeds": cond.embeds, "negative_embeds": cond.negative_embeds}}
    frozen, rng = {"teacher": {"a": jnp.float32(0.3)}}, jax.random.key(10)
    obj = tcd_objective(num_ddim_timesteps=4)
    trainable = obj.init(jax.random.key(0), batch, frozen)
    a = trainable["student"].params
    new, metrics = jax.jit(obj.step)(trainable, frozen, batch, rng, jnp.asarray(0))
    loss, grad = jax.jit(jax.value_and_grad(lambda p: obj.loss(p, a, frozen, batch, rng)[0]))(a)
    assert float(grad["a"]) != 0.0 and "target" not in new
    np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-6)
    np.testing.assert_allclose(float(new["student"].params["a"]), float(a["a"] - 0.1 * grad["a"]), rtol=1e-5, atol=1e-7)


def test_bad_tcd_settings_name_the_field():
    with pytest.raises(ValueError, match="gamma must be in"):
        TCD(gamma=1.5)
    with pytest.raises(ValueError, match="w_min <= w_max"):
        TCD(w_min=5.0, w_max=2.0)
    with pytest.raises(ValueError, match="needs the prompts' TextCondition"):
        tcd_objective().generate({}, {}, jnp.zeros((1, *SHAPE[1:])), None, nfe=1, rng=jax.random.key(0))


@pytest.mark.slow
def test_one_update_of_the_tiny_sd15_unet_regresses_onto_the_guided_teacher_step(sd15):
    """The tiny SD 1.5 UNet as teacher and student: N = 1 (tau_n = 999, tau_e = s = 0), so the target is the
    teacher's guided DDIM step itself, and the jitted update's loss is d(f(x, 1000, 1), x_e); it moves the student."""
    _, sd = sd15
    teacher = sd.denoiser()
    obj = TCDObjective(settings=TCD(num_ddim_timesteps=1, w_min=3.0, w_max=3.0), student=teacher, student_init_fn=lambda rng, x: jax.tree.map(jnp.zeros_like, sd.unet_params),
                       tx=optax.sgd(1e-2), event_shape=(8, 8, 4), teacher=teacher)
    cond = sd.text_condition(["a cat", "moon"], ["", ""])
    batch = {"x": jax.random.normal(jax.random.key(0), (2, 8, 8, 4)), "cond": {"embeds": cond.embeds, "negative_embeds": cond.negative_embeds}}
    frozen = {"teacher": sd.unet_params}
    trainable, rng = obj.init(jax.random.key(1), batch, frozen), jax.random.key(2)
    new, metrics = jax.jit(obj.step)(trainable, frozen, batch, rng, jnp.asarray(0))
    pair = obj.solver_pair(sd.unet_params, batch, rng)
    assert np.all(np.asarray(pair.t) == 1000.0) and np.all(np.asarray(pair.t_end) == 1.0) and float(metrics["target_time"]) == 1.0
    diff = np.asarray(obj.f(sd.unet_params, pair.x, pair.t, pair.t_end, pair.cond) - pair.x_end, np.float64)
    np.testing.assert_allclose(float(metrics["loss"]), np.mean(np.sqrt(diff**2 + 0.001**2) - 0.001), rtol=1e-4)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new["student"].params, trainable["student"].params)
    assert max(jax.tree.leaves(moved)) > 0


def train_smoke(spec: str, folder: str, cache: str, workdir) -> list[dict]:
    """`jaxdistill train` of ``spec``'s smoke preset on ``folder`` and its ``cache``; the metrics rows."""
    from jaxdistill.cli import main

    args = ["train", "--config", os.path.join(ROOT, "configs", spec) + ":smoke", "--workdir", str(workdir), "--quiet", f"--config.teacher.path={folder}", f"--config.data.path={cache}"]
    assert main(args) == 0
    with open(workdir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    return rows


def lora_only(run) -> list[str]:
    """The student's checkpointed parameter paths, asserted to be LoRA factors only, with no target network."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(run.trainable)[0]]
    lora = [p for p in paths if p.startswith("['student'].params")]
    assert lora and all(p.endswith(("['lora_A']", "['lora_B']")) for p in lora) and not any("target" in p for p in paths)
    return lora


@pytest.mark.slow
def test_the_sd15_tcd_lora_smoke_preset_trains_through_cache_and_cli_and_samples_with_sss(sd15_cache, tmp_path):
    from jaxdistill.build import build, load_run
    from jaxdistill.config import load

    folder, cache, _ = sd15_cache
    train_smoke("sd15/tcd_lora.py", folder, cache, tmp_path / "run")
    run = load_run(str(tmp_path / "run"))
    lora = lora_only(run)
    assert any("resnets_0']['conv1']" in p for p in lora) and any("ff']['net_2']" in p for p in lora)  # LCM-LoRA's module set
    objective = run.built.objective
    assert isinstance(objective.inner, TCDObjective) and objective.inner.settings.gamma == 0.3
    batch = jax.tree.map(jnp.asarray, next(run.built.data_factory(0)))
    cond = batch_labels(batch, 0)
    noise = objective.prior(jax.random.key(5), batch["x"].shape[0])
    one = objective.generate(run.trainable, run.frozen, noise, cond, nfe=1, rng=jax.random.key(6))
    student = objective.bound(run.frozen).student
    direct = student.x0(run.trainable["student"].eval_params, noise, objective.process.t_max, cond)
    np.testing.assert_allclose(one, direct, rtol=1e-5, atol=1e-5)  # one SSS step: the LoRA-merged student's x0
    with pytest.raises(ConfigError, match="train.sample_every=0"):
        build(load(os.path.join(ROOT, "configs", "sd15", "tcd_lora.py") + ":smoke", [f"teacher.path={folder}", f"data.path={cache}", "train.sample_every=1"]))


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["sdxl/lcm_lora.py", "sdxl/tcd_lora.py"])
def test_the_sdxl_smoke_presets_train_through_cache_and_cli_with_pooled_embeddings_and_time_ids(sdxl_cache, tmp_path, spec):
    from jaxdistill.build import load_run

    folder, cache = sdxl_cache
    train_smoke(spec, folder, cache, tmp_path / "run")
    run = load_run(str(tmp_path / "run"))
    lora_only(run)
    cond = batch_labels(jax.tree.map(jnp.asarray, next(run.built.data_factory(0))), 0)
    assert cond.pooled is not None and cond.negative_pooled is not None
    assert np.asarray(cond.time_ids).tolist() == [[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]] * 2  # the cache's resolution, no crop
