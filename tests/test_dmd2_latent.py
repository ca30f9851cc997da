"""DMD2, VSD and SwiftBrush on a latent text-to-image teacher (jaxdistill/objectives/dmd.py with a diffusers Stable
Diffusion folder; configs/sd15/dmd2.py, configs/sd15/swiftbrush.py): the prompts' TextCondition reaches generator, critic
and guided teacher, the distribution-matching direction is the closed form of the guided teacher against the critic,
runs the data cannot feed are refused, and one step trains every network on the tiny SD 1.5 folder."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxdistill.core.errors import ConfigError
from jaxdistill.losses import mean_per_sample
from jaxdistill.objectives.denoising import batch_labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DMD2_SD15 = os.path.join(ROOT, "configs", "sd15", "dmd2.py")


def built_run(spec: str, folder: str, cache: str, *overrides: str):
    from jaxdistill.build import build
    from jaxdistill.config import load

    return build(load(spec, [f"teacher.path={folder}", f"data.path={cache}", *overrides]))


def fresh_run(spec: str, folder: str, cache: str, *overrides: str):
    """(built run, its first batch, fresh states)."""
    built = built_run(spec, folder, cache, *overrides)
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    return built, batch, built.objective.init(jax.random.key(0), batch, built.frozen)


def test_the_dm_direction_is_one_minus_w_times_the_teachers_guidance_gap_when_the_critic_is_the_teacher(sd15_cache):
    """With critic = teacher (a fresh run), g n(x) = D_F - D_T = D_c - (D_u + w (D_c - D_u)) = (1 - w) (D_c - D_u),
    the teacher's conditional and negative-prompt predictions at the prompts' TextCondition (stage 1: text only)."""
    folder, _, text = sd15_cache
    built, batch, trainable = fresh_run(DMD2_SD15 + ":smoke", folder, text)
    obj, frozen = built.objective, built.frozen
    cond = batch_labels(batch, 0)
    x_g = obj.prior(jax.random.key(1), batch["x"].shape[0]) * 0.1
    nets = {"critic": trainable["critic"].params}
    rng = jax.random.key(2)

    @jax.jit
    def parts(nets, frozen, x_g):
        g, x_t, t = obj.score_difference(nets, frozen, x_g, cond, rng)
        d_c = obj.teacher.x0(frozen["teacher"], x_t, t, cond.conditional())
        d_u = obj.teacher.x0(frozen["teacher"], x_t, t, cond.unconditional())
        scale = mean_per_sample(jnp.abs(x_g - (d_u + obj.guidance * (d_c - d_u))))
        return g, d_c, d_u, scale

    g, d_c, d_u, scale = parts(nets, frozen, x_g)
    assert obj.guidance == 1.75 and float(jnp.max(jnp.abs(d_c - d_u))) > 1e-3  # the prompt matters
    np.testing.assert_allclose(g * scale[:, None, None, None], (1.0 - obj.guidance) * (d_c - d_u), rtol=2e-4, atol=1e-6)


def test_a_run_its_cache_or_settings_cannot_feed_is_refused_naming_the_field(sd15_cache):
    folder, images, text = sd15_cache
    with pytest.raises(ConfigError, match=r"dmd2: the GAN head .* holds text only; write it with 'jaxdistill cache --images FIELD'"):
        built_run(DMD2_SD15 + ":smoke,gan", folder, text)
    with pytest.raises(ConfigError, match=r"dmd2: .*set train.sample_every=0"):
        built_run(DMD2_SD15 + ":smoke", folder, text, "train.sample_every=5")
    with pytest.raises(ConfigError, match=r"start from its weights; set dmd.critic_from_teacher=True"):
        built_run(DMD2_SD15 + ":smoke", folder, text, "dmd.critic_from_teacher=False")
    with pytest.raises(ConfigError, match=r"dmd.backward_simulation=False .* holds text only"):
        built_run(DMD2_SD15 + ":smoke", folder, text, "dmd.generator_steps=2", "dmd.backward_simulation=False")
    assert built_run(DMD2_SD15 + ":smoke", folder, text).objective.name == "dmd2"  # stage 1 needs no images


@pytest.mark.slow
def test_one_dmd2_step_on_the_tiny_folder_moves_generator_critic_and_head(sd15_cache):
    """Stage 2 (GAN head on the image-latent cache). Compiling the whole step (GAN head, critic phase, guided
    teacher) takes minutes on a loaded CPU: slow."""
    folder, images, _ = sd15_cache
    built, batch, trainable = fresh_run(DMD2_SD15 + ":smoke,gan", folder, images)
    new, metrics = jax.jit(built.objective.step)(trainable, built.frozen, batch, jax.random.key(3), jnp.int32(0))
    assert all(np.isfinite(float(v)) for v in metrics.values()) and float(metrics["gan_critic_loss"]) > 0
    for name in ("generator", "critic", "head"):
        moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new[name].params, trainable[name].params)
        assert max(jax.tree.leaves(moved)) > 0, name


SWIFTBRUSH = os.path.join(ROOT, "configs", "sd15", "swiftbrush.py")
DMD2_SDXL = os.path.join(ROOT, "configs", "sdxl", "dmd2.py")


def factor_names(params) -> set:
    return {k[-1] for k in traverse_util.flatten_dict(params)}


def test_a_fresh_lora_critic_is_the_teacher_so_the_guided_vsd_direction_vanishes(sd15_cache):
    """SwiftBrush's LoRA critic (B = 0) computes the teacher's function exactly, guided like the teacher, so
    D_F - D_T = 0 at the prompts' condition; its state holds only LoRA factors, the student's the full UNet."""
    from jaxdistill.objectives.lora_networks import LoraNetworks, sampler_params

    folder, _, text = sd15_cache
    built = built_run(SWIFTBRUSH + ":smoke", folder, text)
    obj, frozen = built.objective, built.frozen
    assert isinstance(obj, LoraNetworks) and set(obj.specs) == {"critic"} and obj.specs["critic"].targets == (r"(^|/)(to_q|to_v)$",)
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    trainable = obj.init(jax.random.key(0), batch, frozen)
    assert factor_names(trainable["critic"].params) == {"lora_A", "lora_B"}
    assert jax.tree.structure(trainable["generator"].params) == jax.tree.structure(frozen["teacher"])
    exported, spec = sampler_params(obj, trainable)  # export writes the full generator, not the critic's LoRA
    assert spec is None and exported is trainable["generator"].eval_params
    cond = batch_labels(batch, 0)
    bound = obj.bound(frozen)

    @jax.jit
    def run(trainable, frozen, x_g):
        g, x_t, t = bound.score_difference({"critic": trainable["critic"].params}, frozen, x_g, cond, jax.random.key(1))
        critic = bound.critic.x0(trainable["critic"].params, x_t, t, cond, guidance=obj.guidance)
        return g, critic, obj.teacher.x0(frozen["teacher"], x_t, t, cond, guidance=obj.guidance)

    g, critic, teacher = run(trainable, frozen, obj.prior(jax.random.key(2), 2) * 0.1)
    # Equal up to XLA's float32 reassociation of the two compiled UNets (W + 0 A B is W exactly).
    tol = 1e-5 * float(jnp.max(jnp.abs(teacher)))
    np.testing.assert_allclose(critic, teacher, rtol=0, atol=tol)
    np.testing.assert_allclose(g, jnp.zeros_like(g), rtol=0, atol=tol)


def test_a_fresh_lora_generator_samples_the_teachers_one_step_x0_and_is_what_export_takes(sd15_cache):
    """DMD2 with ``lora.rank`` on the tiny SD 1.5 folder: the generator's state is LoRA factors (EMA included), its
    one-step sample at B = 0 is the teacher's x0 at t_max (to float32 rounding); ``sampler_lora`` hands its EMA factors out."""
    from jaxdistill.objectives.lora_networks import sampler_params

    folder, _, text = sd15_cache
    built = built_run(DMD2_SD15 + ":smoke", folder, text, "lora.rank=2", "lora.alpha=4.0", "ema_decay=0.9")
    obj, frozen = built.objective, built.frozen
    assert set(obj.specs) == {"generator"} and obj.specs["generator"].scale == 2.0
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    trainable = obj.init(jax.random.key(0), batch, frozen)
    state = trainable["generator"]
    assert factor_names(state.params) == {"lora_A", "lora_B"} and jax.tree.structure(state.ema) == jax.tree.structure(state.params)
    assert jax.tree.structure(trainable["critic"].params) == jax.tree.structure(frozen["teacher"])  # the critic in full
    cond = batch_labels(batch, 0)
    noise = obj.prior(jax.random.key(1), 2)
    sample = jax.jit(lambda tr, fr: obj.generate(tr, fr, noise, cond, nfe=1, rng=jax.random.key(2)))(trainable, frozen)
    teacher = jax.jit(lambda fr: obj.teacher.x0(fr["teacher"], noise, obj.process.t_max, cond))(frozen)
    np.testing.assert_allclose(sample, teacher, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(teacher))))  # to XLA's reassociation
    lora, spec = obj.sampler_lora(trainable)
    assert spec == obj.specs["generator"] and jax.tree.structure(lora) == jax.tree.structure(state.params)
    exported, exported_spec = sampler_params(obj, trainable)  # what export writes: the EMA factors and their spec
    assert exported is state.ema and exported_spec == spec


def test_lora_settings_a_method_cannot_take_name_the_field(sd15_cache):
    folder, _, text = sd15_cache
    with pytest.raises(ConfigError, match=r"lora.critic_targets \('nope\$',\) match no kernel"):
        built_run(SWIFTBRUSH + ":smoke", folder, text, "lora.critic_targets=('nope$',)")
    with pytest.raises(ConfigError, match=r"lora.critic_rank must be a positive integer"):
        built_run(SWIFTBRUSH + ":smoke", folder, text, "lora.critic_rank=-1")
    with pytest.raises(ConfigError, match=r"lora.critic_rank: method 'lcm' trains no critic"):
        built_run(os.path.join(ROOT, "configs", "sd15", "lcm_lora.py") + ":smoke", folder, text, "lora.critic_rank=2")


def test_the_sdxl_config_places_the_later_steps_at_ddpm_steps_749_499_249_and_takes_a_lora_generator():
    import runpy

    from jaxdistill.diffusion.process import DDPM
    from jaxdistill.objectives.registry import settings

    c = runpy.run_path(DMD2_SDXL)["get_config"]()  # the full preset (its paths come from overrides)
    process = DDPM("scaled_linear", 0.00085, 0.012, 1000)
    times = process.t_from_sigma_ratio(jnp.asarray(settings(c).later_step_sigmas, jnp.float32))
    np.testing.assert_allclose(times, [750.0, 500.0, 250.0], atol=1e-3)  # process time = DDPM step + 1
    assert (c.lora.rank, c.lora.alpha, c.lora.critic_rank, c.teacher.guidance) == (64, 8.0, 0, 8.0)
    assert settings(c).critic_schedule == ((0, 5),) and settings(c).backward_simulation


@pytest.mark.slow
def test_the_swiftbrush_smoke_preset_trains_through_the_cli_and_checkpoints_only_the_critics_lora(sd15_cache, tmp_path):
    """`jaxdistill train` on the text-only cache: finite losses, a checkpoint whose critic holds only LoRA factors
    (the student the full UNet, with its EMA), read back by load_run and resumed."""
    import json

    from jaxdistill.build import load_run
    from jaxdistill.cli import main

    folder, _, text = sd15_cache
    args = ["train", "--config", SWIFTBRUSH + ":smoke", "--workdir", str(tmp_path / "run"), "--quiet", f"--config.teacher.path={folder}", f"--config.data.path={text}"]
    assert main(args) == 0
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["critic_loss"]) and np.isfinite(r["dm_loss"]) for r in rows)
    run = load_run(str(tmp_path / "run"))
    assert factor_names(run.trainable["critic"].params) == {"lora_A", "lora_B"}
    assert jax.tree.structure(run.trainable["generator"].ema) == jax.tree.structure(run.frozen["teacher"])
    assert main([*args, "--config.train.num_steps=3"]) == 0  # resumes at step 2
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3]


@pytest.mark.slow
def test_the_sdxl_smoke_preset_takes_a_four_step_lora_generator_step_with_pooled_text_and_time_ids(sdxl_cache):
    """configs/sdxl/dmd2.py's smoke preset on the session's tiny random SDXL folder and its cache with images: SDXL's pooled
    embeddings and time ids reach generator chain, critic, guided teacher and GAN head; one step moves the
    generator's LoRA factors, the critic and the head."""
    folder, cache = sdxl_cache
    built = built_run(DMD2_SDXL + ":smoke", str(folder), cache)
    obj, frozen = built.objective, built.frozen
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    assert batch_labels(batch, 0).pooled is not None and batch_labels(batch, 0).time_ids is not None
    trainable = obj.init(jax.random.key(0), batch, frozen)
    assert factor_names(trainable["generator"].params) == {"lora_A", "lora_B"}
    new, metrics = jax.jit(obj.step)(trainable, frozen, batch, jax.random.key(1), jnp.int32(0))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    for name in ("generator", "critic", "head"):
        moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new[name].params, trainable[name].params)
        assert max(jax.tree.leaves(moved)) > 0, name
