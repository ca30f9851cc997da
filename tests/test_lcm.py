"""Latent consistency distillation (jaxdistill/objectives/lcm.py; Luo et al. 2023, LCM and LCM-LoRA): LCM's
boundary condition, the skipping-step DDIM teacher solver against diffusers' DDIM, the guided teacher's target
against x0_u + w (x0_c - x0_u) by hand, LCMScheduler's sampling indices, and (slow) the SD 1.5 config's smoke
preset trained through `jaxdistill train` on the session's tiny random Stable Diffusion folder and its `jaxdistill cache`."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.predict import to_x0
from jaxdistill.diffusion.process import DDPM, EDM
from jaxdistill.objectives.denoising import batch_labels
from jaxdistill.objectives.lcm import LCM, LCMObjective, boundary_scalings, consistency_denoiser, ddim_indices
from jaxdistill.objectives.progressive import ddim_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SD_PROCESS = DDPM("scaled_linear", 0.00085, 0.012, 1000)  # Stable Diffusion 1.x's schedule
SHAPE = (3, 4, 4, 2)


def text_eps_teacher(process=SD_PROCESS) -> Denoiser:
    """An eps-prediction 'network' whose output depends on x, t and the prompt embedding (a TextCondition)."""

    def apply(params, x, t, cond, **kwargs):
        shift = jnp.mean(cond.embeds, axis=(1, 2))[:, None, None, None]
        return params["a"] * x + jnp.sin(t / 300.0)[:, None, None, None] + shift

    return Denoiser(apply, process, "eps")


def text_cond(n: int) -> TextCondition:
    rs = np.random.default_rng(0)
    return TextCondition(jnp.asarray(rs.normal(size=(n, 3, 5)), jnp.float32), negative_embeds=jnp.asarray(rs.normal(size=(n, 3, 5)), jnp.float32))


def test_the_consistency_function_is_the_identity_at_the_boundary_and_lcms_scalings_elsewhere():
    teacher = text_eps_teacher()
    f = consistency_denoiser(teacher)
    params, cond = {"a": jnp.float32(0.7)}, text_cond(SHAPE[0])
    x = jax.random.normal(jax.random.key(0), SHAPE)
    assert np.array_equal(np.asarray(f.x0(params, x, SD_PROCESS.t_min, cond)), np.asarray(x))  # f(x, t_min) = x exactly
    t = jnp.array([20.0, 500.0, 1000.0])
    tau = np.array([19.0, 499.0, 999.0])
    c_skip = 0.25 / ((10 * tau) ** 2 + 0.25)
    c_out = 10 * tau / np.sqrt((10 * tau) ** 2 + 0.25)
    x0 = to_x0(teacher.apply_fn(params, x, t, cond), "eps", x, t, SD_PROCESS)
    want = c_skip[:, None, None, None] * x + c_out[:, None, None, None] * x0
    np.testing.assert_allclose(f.x0(params, x, t, cond), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(boundary_scalings(jnp.asarray(tau), 0.5, 10.0), (c_skip, c_out), rtol=1e-6)
    w_student = consistency_denoiser(Denoiser(lambda p, x, t, c, **kw: x * t[:, 1, None, None, None], SD_PROCESS, "eps"))
    assert np.array_equal(np.asarray(w_student.x0(params, x, SD_PROCESS.t_min, cond, extra=jnp.full((SHAPE[0],), 7.0))), np.asarray(x))
    with pytest.raises(ValueError, match="discrete DDPM teacher"):
        consistency_denoiser(Denoiser(lambda p, x, t, c: x, EDM(), "x0"))


def test_the_skipping_step_ddim_solver_is_diffusers_ddim_and_k_single_steps_composed():
    from diffusers import FlaxDDIMScheduler

    assert ddim_indices(1000, 50).tolist() == list(range(19, 1000, 20))  # diffusers' DDIMSolver: 19, 39, ..., 999
    abar = np.asarray(FlaxDDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).create_state().common.alphas_cumprod, np.float64)
    rs = np.random.default_rng(1)
    x, x0 = rs.normal(size=SHAPE), rs.normal(size=SHAPE)
    tau_n, tau_e = np.array([19, 519, 999]), np.array([0, 499, 979])  # tau_e = max(tau_n - 20, 0)
    a_n, a_e = abar[tau_n][:, None, None, None], abar[tau_e][:, None, None, None]
    eps = (x - np.sqrt(a_n) * x0) / np.sqrt(1 - a_n)
    want = np.sqrt(a_e) * x0 + np.sqrt(1 - a_e) * eps  # DDIM (eta = 0) from tau_n to tau_e given x0
    t_n, t_e = jnp.asarray(tau_n + 1.0, jnp.float32), jnp.asarray(tau_e + 1.0, jnp.float32)
    got = ddim_step(SD_PROCESS, jnp.asarray(x, jnp.float32), jnp.asarray(x0, jnp.float32), t_n, t_e)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # With the x0 estimate held fixed, 20 one-index DDIM steps compose to the one skipping step.
    y = jnp.asarray(x, jnp.float32)
    for j in range(20):
        y = ddim_step(SD_PROCESS, y, jnp.asarray(x0, jnp.float32), t_n - j, jnp.maximum(t_n - j - 1, 1.0))
    np.testing.assert_allclose(y, got, rtol=1e-4, atol=1e-4)


def lcm_objective(**settings) -> LCMObjective:
    """An LCM objective on the toy text teacher; with ``guidance_embedding_dim`` its student also reads w (t[:, 1])."""
    import optax

    teacher = text_eps_teacher()
    network = teacher
    if settings.get("guidance_embedding_dim"):
        network = Denoiser(lambda params, x, t, cond, **kw: teacher.apply_fn(params, x, t[:, 0], cond) + 0.01 * t[:, 1, None, None, None], SD_PROCESS, "eps")
    return LCMObjective(
        settings=LCM(**settings), student=consistency_denoiser(network), student_init_fn=lambda rng, x: {"a": jnp.float32(0.0)},
        tx=optax.sgd(0.1), event_shape=SHAPE[1:], teacher=teacher, guidance=settings.get("w_min"),
    )


def test_the_target_point_is_a_ddim_step_of_the_hand_computed_guided_teacher():
    obj = lcm_objective(w_min=6.0, w_max=6.0)
    teacher, params, cond = obj.teacher, {"a": jnp.float32(0.3)}, text_cond(SHAPE[0])
    x = jax.random.normal(jax.random.key(2), SHAPE)
    t, t_end, w = jnp.array([20.0, 520.0, 1000.0]), jnp.array([1.0, 500.0, 980.0]), jnp.array([6.0, 3.0, 15.0])
    x0_c = teacher.x0(params, x, t, cond.conditional())
    x0_u = teacher.x0(params, x, t, cond.unconditional())
    assert not np.allclose(x0_c, x0_u)
    x0_w = x0_u + w[:, None, None, None] * (x0_c - x0_u)
    want = ddim_step(SD_PROCESS, x, x0_w, t, t_end)
    np.testing.assert_allclose(obj.teacher_target_point(params, x, t, t_end, cond, w), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("embedding", [0, 4], ids=["lora_student", "w_conditioned"])
def test_with_one_solver_step_the_loss_regresses_onto_the_guided_ddim_step_to_the_boundary(embedding):
    """N = 1: tau_n = 999 and tau_e = 0, where f is the identity, so the target is the teacher's guided DDIM
    step itself and the loss is the elementwise pseudo-Huber mean between f(x_999[, w]) and it."""
    obj = lcm_objective(num_ddim_timesteps=1, w_min=4.0, w_max=4.0, guidance_embedding_dim=embedding)
    params, cond, rng = {"a": jnp.float32(0.3)}, text_cond(SHAPE[0]), jax.random.key(3)
    x0 = jax.random.normal(jax.random.key(4), SHAPE)
    batch = {"x": x0, "cond": {"embeds": cond.embeds, "negative_embeds": cond.negative_embeds}}
    loss, metrics = obj.loss({"a": jnp.float32(0.1)}, params, {"teacher": params}, batch, rng)
    t = jnp.full((SHAPE[0],), 1000.0)
    x = SD_PROCESS.add_noise(x0, jax.random.normal(derive(rng, "noise"), SHAPE), t)
    x0_c, x0_u = obj.teacher.x0(params, x, t, cond.conditional()), obj.teacher.x0(params, x, t, cond.unconditional())
    target = ddim_step(SD_PROCESS, x, x0_u + 4.0 * (x0_c - x0_u), t, jnp.ones_like(t))
    extra = jnp.full((SHAPE[0],), 4.0) if embedding else None
    diff = np.asarray(obj.student.x0({"a": jnp.float32(0.1)}, x, t, cond, extra=extra) - target, np.float64)
    np.testing.assert_allclose(float(loss), np.mean(np.sqrt(diff**2 + 0.001**2) - 0.001), rtol=1e-5)
    assert float(metrics["guidance"]) == 4.0
    # One sampling step is f(z, t_max[, w = eval.guidance]); the w-conditioned student's output depends on w.
    z = jax.random.normal(jax.random.key(7), SHAPE)
    one = obj.generate({"student": NetState.create({"a": jnp.float32(0.1)}, obj.tx)}, {}, z, cond, nfe=1, rng=jax.random.key(8))
    np.testing.assert_allclose(one, obj.student.x0({"a": jnp.float32(0.1)}, z, 1000.0, cond, extra=extra), rtol=1e-6, atol=1e-6)
    if embedding:
        assert not np.allclose(one, obj.student.x0({"a": jnp.float32(0.1)}, z, 1000.0, cond, extra=jnp.full((SHAPE[0],), 9.0)))


def test_lcm_sampling_times_are_lcmschedulers_timesteps():
    obj = lcm_objective()
    assert (np.asarray(obj.sampling_times(4)) - 1).tolist() == [999, 759, 499, 259, -1]  # LCMScheduler.set_timesteps(4)
    assert (np.asarray(obj.sampling_times(1)) - 1).tolist() == [999, -1]
    with pytest.raises(ValueError, match="1 to num_ddim_timesteps=50"):
        obj.sampling_times(51)
    with pytest.raises(ValueError, match="needs the prompts' TextCondition"):
        obj.generate({}, {}, jnp.zeros((1, *SHAPE[1:])), None, nfe=1, rng=jax.random.key(0))


def test_bad_lcm_settings_name_the_field():
    with pytest.raises(ValueError, match="w_min <= w_max"):
        LCM(w_min=5.0, w_max=2.0)
    with pytest.raises(ValueError, match="target_ema"):
        LCM(target_ema=1.0)
    with pytest.raises(ValueError, match="unknown distance"):
        LCM(distance="lpips")


SPEC = os.path.join(ROOT, "configs", "sd15", "lcm_lora.py")


@pytest.mark.slow
def test_the_sd15_lcm_lora_smoke_preset_trains_through_cache_and_cli_and_resumes(sd15_cache, tmp_path):
    """`jaxdistill cache` of a tiny random SD 1.5 folder's prompts and images, then the config's smoke preset:
    finite losses, only LoRA factors in the checkpoint, sampling through the prompts' condition, and a second
    call resumes from step 2."""
    from jaxdistill.build import build, load_run
    from jaxdistill.cli import main
    from jaxdistill.config import load

    folder, cache, _ = sd15_cache  # the session's tiny SD 1.5 folder and its cache with images
    args = ["train", "--config", SPEC + ":smoke", "--workdir", str(tmp_path / "run"), "--quiet", f"--config.teacher.path={folder}", f"--config.data.path={cache}"]
    assert main(args) == 0
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    run = load_run(str(tmp_path / "run"))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(run.trainable)[0]]
    lora = [p for p in paths if p.startswith("['student'].params")]
    assert lora and all(p.endswith(("['lora_A']", "['lora_B']")) for p in lora)  # the LoRA factors only
    assert not any("target" in p for p in paths)  # LCM-LoRA: no target network
    assert any("resnets_0']['conv1']" in p for p in lora) and any("ff']['net_2']" in p for p in lora)  # LCM-LoRA's module set
    # Sampling takes the prompts' TextCondition from a cache batch; one step is f(z, t_max) of the LoRA-merged student.
    objective = run.built.objective
    batch = jax.tree.map(jnp.asarray, next(run.built.data_factory(0)))
    cond = batch_labels(batch, 0)
    noise = objective.prior(jax.random.key(5), batch["x"].shape[0])
    one = objective.generate(run.trainable, run.frozen, noise, cond, nfe=1, rng=jax.random.key(6))
    student = objective.bound(run.frozen).student
    direct = student.x0(run.trainable["student"].eval_params, noise, objective.process.t_max, cond)
    assert one.shape == batch["x"].shape and np.all(np.isfinite(np.asarray(one)))
    # generate is compiled as a whole, the direct call op by op: the UNet's float32 rounding differs (1.7e-5 seen).
    np.testing.assert_allclose(one, direct, rtol=1e-4, atol=1e-4)
    assert main([*args, "--config.train.num_steps=3"]) == 0  # resumes at step 2
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3]
    overrides = [f"teacher.path={folder}", f"data.path={cache}", "train.sample_every=1"]
    with pytest.raises(ConfigError, match="train.sample_every=0"):
        build(load(SPEC + ":smoke", overrides))


@pytest.mark.slow
def test_the_w_conditioned_student_starts_as_the_teacher_for_every_w_and_trains_its_guidance_embedding(sd15_cache):
    """LCM's guidance embedding (``lcm.guidance_embedding_dim``) on the tiny SD 1.5 UNet: a zero projection,
    so the student is the teacher's consistency function at any w; one update moves it; a LoRA cannot carry it."""
    from jaxdistill.build import build
    from jaxdistill.config import load

    folder, cache, _ = sd15_cache  # the session's tiny SD 1.5 folder and its cache with images
    paths = [f"teacher.path={folder}", f"data.path={cache}"]
    built = build(load(SPEC + ":smoke", [*paths, "lcm.guidance_embedding_dim=8", "lora.rank=0"]))
    obj, frozen = built.objective, built.frozen
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    trainable = obj.init(jax.random.key(0), batch, frozen)
    params = trainable["student"].params["params"]
    assert not np.any(np.asarray(params["time_cond_proj"]["kernel"]))
    cond, x, t = batch_labels(batch, 0), jax.random.normal(jax.random.key(1), batch["x"].shape), jnp.array([500.0, 900.0])
    teacher_f = consistency_denoiser(obj.teacher).x0(frozen["teacher"], x, t, cond)
    for w in (2.0, 9.0):
        np.testing.assert_allclose(obj.f(trainable["student"].params, x, t, cond, jnp.full((2,), w)), teacher_f, rtol=1e-5, atol=1e-5)
    new, metrics = jax.jit(obj.step)(trainable, frozen, batch, jax.random.key(2), jnp.asarray(0))
    assert np.isfinite(float(metrics["loss"])) and np.any(np.asarray(new["student"].params["params"]["time_cond_proj"]["kernel"]))
    with pytest.raises(ConfigError, match="architecture"):
        build(load(SPEC + ":smoke", [*paths, "lcm.guidance_embedding_dim=8"]))
