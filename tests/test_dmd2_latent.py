"""DMD2, VSD and SwiftBrush on a latent text-to-image teacher (jaxdistill/objectives/dmd.py with a diffusers Stable
Diffusion folder; configs/sd15/dmd2.py, configs/sd15/swiftbrush.py): the prompts' TextCondition reaches generator, critic
and guided teacher, the distribution-matching direction is the closed form of the guided teacher against the critic,
runs the data cannot feed are refused, and one step trains every network on the tiny SD 1.5 folder."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.core.errors import ConfigError
from jaxdistill.losses import mean_per_sample
from jaxdistill.objectives.denoising import batch_labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DMD2_SD15 = os.path.join(ROOT, "configs", "sd15", "dmd2.py")


def built_run(spec: str, folder: str, cache: str, *overrides: str):
    from jaxdistill.build import build
    from jaxdistill.config import load

    return build(load(spec, [f"teacher.path={folder}", f"data.path={cache}", *overrides]))


@pytest.fixture(scope="module")
def dmd2_run(sd15_cache):
    """The SD 1.5 DMD2 config's stage-2 smoke preset (GAN head on) on the tiny folder, its first batch and fresh states."""
    folder, images, _ = sd15_cache
    built = built_run(DMD2_SD15 + ":smoke,gan", folder, images)
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    return built, batch, built.objective.init(jax.random.key(0), batch, built.frozen)


def test_the_dm_direction_is_one_minus_w_times_the_teachers_guidance_gap_when_the_critic_is_the_teacher(dmd2_run):
    """With critic = teacher (a fresh run), g n(x) = D_F - D_T = D_c - (D_u + w (D_c - D_u)) = (1 - w) (D_c - D_u),
    the teacher's conditional and negative-prompt predictions at the prompts' TextCondition; without guidance it is 0."""
    built, batch, trainable = dmd2_run
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
        unguided, _, _ = dataclasses.replace(obj, guidance=None).score_difference(nets, frozen, x_g, cond, rng)
        return g, d_c, d_u, scale, unguided

    g, d_c, d_u, scale, unguided = parts(nets, frozen, x_g)
    assert obj.guidance == 1.75 and float(jnp.max(jnp.abs(d_c - d_u))) > 1e-3  # the prompt matters
    np.testing.assert_allclose(g * scale[:, None, None, None], (1.0 - obj.guidance) * (d_c - d_u), rtol=2e-4, atol=1e-6)
    np.testing.assert_array_equal(unguided, jnp.zeros_like(unguided))


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
def test_one_dmd2_step_on_the_tiny_folder_moves_generator_critic_and_head(dmd2_run):
    """Compiling the whole step (GAN head, critic phase, guided teacher) takes minutes on a loaded CPU: slow."""
    built, batch, trainable = dmd2_run
    new, metrics = jax.jit(built.objective.step)(trainable, built.frozen, batch, jax.random.key(3), jnp.int32(0))
    assert all(np.isfinite(float(v)) for v in metrics.values()) and float(metrics["gan_critic_loss"]) > 0
    for name in ("generator", "critic", "head"):
        moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new[name].params, trainable[name].params)
        assert max(jax.tree.leaves(moved)) > 0, name
