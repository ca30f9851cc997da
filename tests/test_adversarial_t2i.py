"""ADD and LADD on latent text-to-image teachers (jaxdistill/objectives/adversarial.py): LADD's discriminator reads the
Stable Diffusion UNet's own feature taps, ADD's DINOv2 wrapper is transformers' Flax model on normalised decoded
images, one objective step of each config on the tiny SD 1.5 folder (the conftest's ``sd15``), the text-run config
errors, and (slow) the configs' smoke presets through `jaxdistill cache` and `jaxdistill train`."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.core.errors import ConfigError
from jaxdistill.objectives.adversarial import ADD
from jaxdistill.objectives.denoising import batch_labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD_SPEC = os.path.join(ROOT, "configs", "sdxl", "add.py")
LADD_SPEC = os.path.join(ROOT, "configs", "sd15", "ladd.py")


@pytest.fixture(scope="module")
def t2i(sd15, sd15_cache, tmp_path_factory):
    """(the tiny SD 1.5 folder, its loaded teacher, the session's cache of its prompts and images, a tiny DINOv2 folder)."""
    from jaxdistill.models.hf.tiny import write_tiny_dinov2

    folder, teacher = sd15
    return folder, teacher, sd15_cache[1], write_tiny_dinov2(tmp_path_factory.mktemp("adversarial_t2i") / "dinov2")


def built_objective(spec: str, t2i, *overrides: str):
    from jaxdistill.build import build
    from jaxdistill.config import load

    folder, _, cache, dinov2 = t2i
    paths = [f"teacher.path={folder}", f"data.path={cache}"] + ([f"adversarial.dinov2_path={dinov2}"] if spec == ADD_SPEC else [])
    built = build(load(spec + ":smoke", [*paths, *overrides]))
    return built, jax.tree.map(jnp.asarray, next(built.data_factory(0)))


@pytest.fixture(scope="module")
def ladd(t2i):
    """(the LADD config's smoke objective on the tiny SD 1.5 folder, its first batch)."""
    return built_objective(LADD_SPEC, t2i)


def test_ladds_discriminator_reads_the_unets_own_taps_and_the_noise_level(t2i, ladd):
    """LADD's features of (x, t) are the SD UNet's mid / up block outputs at diffusers' timestep t - 1 with the
    prompt (to float32 rounding of two compilations), plus the column ln(s(t)) / 4; ADD's teacher-feature discriminator reads the same taps with the
    negative (empty) prompt at its fixed level."""
    _, sd, _, _ = t2i
    built, batch = ladd
    objective, frozen = built.objective, built.frozen
    cond = batch_labels(batch, 0)
    x = jax.random.normal(jax.random.key(0), batch["x"].shape)
    t = jnp.array([120.0, 870.0])
    features = jax.jit(lambda x, t: objective.head_features({}, frozen, x, t, cond))(x, t)
    unet_taps = jax.jit(lambda x, step, c: sd.network.apply(sd.unet_params, x, step, c, return_features=True)[1])
    taps = unet_taps(x, t - 1.0, cond)
    assert len(taps) == 1 + len(sd.network.module.unet.up_block_types)  # mid block + every up block
    assert len(features) == len(taps) + 1
    for got, want in zip(features[:-1], taps, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(features[-1][:, 0], np.log(np.asarray(objective.process.sigma_ratio(t))) / 4.0, rtol=1e-6)
    add = dataclasses.replace(objective, settings=ADD(generator_steps=4, later_step_sigmas=objective.settings.later_step_sigmas))
    t_f = add.feature_time()
    negative_taps = unet_taps(x, jnp.full((2,), t_f - 1.0), cond.unconditional())
    add_features = jax.jit(lambda x, t: add.head_features({}, frozen, x, t, cond))(x, jnp.full((2,), t_f))
    for got, want in zip(add_features, negative_taps, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


def test_the_dinov2_wrapper_is_transformers_flax_model_on_normalised_decoded_images(t2i):
    """``Dinov2Features`` = FlaxDinov2Model's hidden states after the chosen blocks on ((x + 1) / 2 - mean) / std at its
    input size (a constant image stays constant through the resize); ``LatentDinov2`` decodes with the SD VAE first."""
    from transformers import FlaxDinov2Model

    from jaxdistill.models.hf.dinov2 import IMAGENET_MEAN, IMAGENET_STD, LatentDinov2, load_dinov2
    from jaxdistill.models.hf.teacher import load_sd_vae

    folder, sd, _, path = t2i
    features, params = load_dinov2(path, (1, 3))
    model, _ = FlaxDinov2Model.from_pretrained(path, _do_init=False)
    run = jax.jit(lambda images: features(params, images))
    images = jax.random.uniform(jax.random.key(0), (2, 28, 28, 3), minval=-1.0, maxval=1.0)
    pixels = np.transpose(((np.asarray(images) + 1) / 2 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD), (0, 3, 1, 2))
    out = jax.jit(lambda p: model(p, params=params, output_hidden_states=True))(pixels)
    got, embedding = jax.jit(lambda images: features.outputs(params, images))(images)
    assert len(got) == 2 and got[0].shape == (2, 1 + 4, 16)  # class token + 2 x 2 patches of 14 px
    for g, want in zip(got, (out.hidden_states[2], out.hidden_states[4]), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(embedding, out.last_hidden_state[:, 0], rtol=1e-5, atol=1e-5)  # c_img: the final layer-normed class token
    for g, want in zip(run(images), got, strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-6)
    grey = jnp.full((1, 16, 16, 3), 0.3)
    for g, want in zip(jax.jit(lambda i: features(params, i))(grey), run(jnp.full((1, 28, 28, 3), 0.3)), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    decoder, vae_params = load_sd_vae(folder)
    latents = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
    decoded = sd.decode_latents(latents)
    np.testing.assert_allclose(jax.jit(decoder)(vae_params, latents), decoded, rtol=1e-5, atol=1e-5)
    on_latents = jax.jit(LatentDinov2(decoder, features))({"vae": vae_params, "dinov2": params}, latents)
    for g, want in zip(on_latents, run(jnp.asarray(decoded)), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"dinov2_layers .* \[0, 3\]"):
        load_dinov2(path, (4,))


def changed(a, b) -> bool:
    return any(np.any(np.asarray(x) != np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_a_ladd_step_on_the_tiny_sd15_folder_trains_the_teacher_initialised_unet_against_text_conditioned_heads(ladd):
    """The LADD config's objective: the student starts as the teacher's UNet (same weights), the heads project the
    prompt (their logits change when the prompts are swapped), and one step moves the student and the heads with
    the hinge losses alone (no distillation, no R1)."""
    from jaxdistill.models.discriminator import apply_head

    built, batch = ladd
    obj, frozen = built.objective, built.frozen
    trainable = obj.init(jax.random.key(0), batch, frozen)
    assert not changed(trainable["generator"].params, frozen["teacher"])
    head = trainable["head"].params
    assert "text_embed" in head["params"]
    cond = batch_labels(batch, 0)
    swapped = jax.tree.map(lambda a: a[::-1], cond)
    x, t = jax.random.normal(jax.random.key(1), batch["x"].shape), jnp.array([300.0, 300.0])
    features = jax.jit(lambda x, t: obj.head_features({}, frozen, x, t, cond))(x, t)
    logits, logits_swapped = (apply_head(obj.head, head, features, c) for c in (cond, swapped))
    assert logits.shape == (2, sum(int(np.prod(f.shape[1:-1])) for f in features)) and np.all(np.abs(np.asarray(logits - logits_swapped)) > 0)
    new, metrics = jax.jit(obj.step)(trainable, frozen, batch, jax.random.key(2), jnp.asarray(0))
    assert {"disc_loss", "adv_loss", "logit_real", "logit_fake"} <= set(metrics) and not {"distill_loss", "r1"} & set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert changed(new["generator"].params, trainable["generator"].params) and changed(new["head"].params, head)


def test_the_heads_image_embedding_is_a_projection_term_that_vanishes_exactly_at_zero():
    """ADD's c_img enters the head as <W_img c_img, h> beside the text's projection: the logits depend on it, the head
    without it has the same parameters less ``image_embed``, and with W_img = 0 (kernel and bias) its logits are exactly
    those of the head without it (pooled with a text condition; per position without one)."""
    from jaxdistill.core.conditioning import TextCondition
    from jaxdistill.models.discriminator import DiscriminatorHead, apply_head

    keys = jax.random.split(jax.random.key(0), 5)
    features = [jax.random.normal(keys[0], (2, 3, 3, 5)), jax.random.normal(keys[1], (2, 4))]
    text = TextCondition(jax.random.normal(keys[2], (2, 6, 7)))
    image, other_image = jax.random.normal(keys[3], (2, 9)), jax.random.normal(keys[4], (2, 9))
    for per_position, cond in ((False, text), (True, None)):
        head = DiscriminatorHead(hidden=8, per_position=per_position)
        params = head.init(jax.random.key(1), features, cond, image)
        plain = {"params": {k: v for k, v in params["params"].items() if k != "image_embed"}}
        assert set(params["params"]) - set(plain["params"]) == {"image_embed"}
        assert jax.tree.structure(plain) == jax.tree.structure(head.init(jax.random.key(1), features, cond))
        logits = apply_head(head, params, features, cond, image)
        assert np.all(np.abs(np.asarray(logits - apply_head(head, params, features, cond, other_image))) > 0)
        zeroed = {"params": {**params["params"], "image_embed": jax.tree.map(jnp.zeros_like, params["params"]["image_embed"])}}
        np.testing.assert_array_equal(apply_head(head, zeroed, features, cond, image), apply_head(head, plain, features, cond))


def test_adds_dinov2_heads_read_c_img_of_the_real_latents_and_the_setting_off_is_the_plain_head(t2i):
    """The ADD config (image conditioning on, the paper's default): c_img of a batch is DINOv2's class token of its
    VAE-decoded real latents, and the student's logits change with it; with dinov2_image_condition=False there is no
    c_img (and no extra DINOv2 pass). (That ``init`` gives the heads the image projection: the slow ADD step test.)"""
    built, batch = built_objective(ADD_SPEC, t2i)
    obj, frozen = built.objective, built.frozen
    assert obj.settings.dinov2_image_condition and obj.image_conditioned
    cond, x = batch_labels(batch, 0), jax.random.normal(jax.random.key(1), batch["x"].shape)
    shapes = jax.eval_shape(obj.image_features.outputs, frozen["discriminator"], batch["x"])
    head = obj.head.init(jax.random.key(0), [jnp.zeros(f.shape) for f in shapes[0]], cond, jnp.zeros(shapes[1].shape))

    def run(frozen, batch, x):
        c_img = obj.head_image(frozen, batch)
        logits = lambda image: obj.logits(head, frozen, x, cond, jax.random.key(2), image)  # noqa: E731
        return c_img, obj.image_features.outputs(frozen["discriminator"], batch["x"])[1], logits(c_img), logits(c_img[::-1])

    c_img, want, logits, logits_swapped = jax.jit(run)(frozen, batch, x)
    np.testing.assert_allclose(c_img, want, rtol=1e-6, atol=1e-6)
    assert c_img.shape == shapes[1].shape == (2, shapes[0][0].shape[-1]) and np.all(np.abs(np.asarray(logits - logits_swapped)) > 0)
    off = dataclasses.replace(obj, settings=dataclasses.replace(obj.settings, dinov2_image_condition=False))
    assert off.head_image(frozen, batch) is None and off.passes_per_sample == obj.passes_per_sample - 1.0  # the head without c_img: the test above


@pytest.mark.slow
def test_an_add_step_with_the_dinov2_discriminator_reads_decoded_latents_and_adds_distillation_and_r1(t2i):
    """The ADD config's objective (on the SD 1.5 folder: the mean of the token embeddings and c_img condition the heads):
    its discriminator features are DINOv2's of the VAE-decoded latents, and one step trains with the hinge losses, R1
    and the lambda = 2.5 distillation term."""
    from jaxdistill.models.hf.dinov2 import LatentDinov2, load_dinov2
    from jaxdistill.models.hf.teacher import load_sd_vae

    folder, _, _, dinov2 = t2i
    built, batch = built_objective(ADD_SPEC, t2i)
    obj, frozen = built.objective, built.frozen
    assert obj.settings.distill_weight == 2.5 and obj.settings.r1_weight == 1e-5 and obj.settings.discriminator == "dinov2"
    decoder, vae_params = load_sd_vae(folder)
    features, dinov2_params = load_dinov2(dinov2, (1, 3))
    x = jax.random.normal(jax.random.key(1), batch["x"].shape)
    got = jax.jit(lambda x: obj.head_features({}, frozen, x, None, None))(x)
    want = jax.jit(LatentDinov2(decoder, features))({"vae": vae_params, "dinov2": dinov2_params}, x)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    trainable = obj.init(jax.random.key(0), batch, frozen)
    assert {"text_embed", "image_embed"} <= set(trainable["head"].params["params"])  # ADD's c_img, projected like the text
    new, metrics = jax.jit(obj.step)(trainable, frozen, batch, jax.random.key(2), jnp.asarray(0))
    assert {"disc_loss", "adv_loss", "distill_loss", "r1"} <= set(metrics) and float(metrics["r1"]) > 0 and float(metrics["distill_loss"]) > 0
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert changed(new["generator"].params, trainable["generator"].params) and changed(new["head"].params, trainable["head"].params)


def test_text_runs_refuse_sample_plots_a_label_pool_a_text_only_cache_a_missing_dinov2_and_a_fresh_student(t2i, sd15_cache, tmp_path):
    with pytest.raises(ConfigError, match="train.sample_every=0"):
        built_objective(LADD_SPEC, t2i, "train.sample_every=1")
    with pytest.raises(ConfigError, match=r"num_synthetic=0 and train on a cache of the teacher's own samples \('jaxdistill cache --teacher-samples'"):
        built_objective(LADD_SPEC, t2i, "adversarial.num_synthetic=16")
    with pytest.raises(ConfigError, match=r"^ladd: the discriminator's real samples reads image latents, but the cache .* holds text only; .*'--teacher-samples'[^\n]*$"):
        built_objective(LADD_SPEC, t2i, f"data.path={sd15_cache[2]}")
    with pytest.raises(ConfigError, match="init_from_teacher=True"):
        built_objective(LADD_SPEC, t2i, "adversarial.init_from_teacher=False")
    with pytest.raises(ConfigError, match="lacks config.json"):
        built_objective(ADD_SPEC, t2i, f"adversarial.dinov2_path={tmp_path}")


def smoke_run(spec: str, folder: str, cache: str, workdir, *extra: str):
    """Train the config's smoke preset through the CLI; returns (its metrics rows, the restored run, a batch)."""
    from jaxdistill.build import load_run
    from jaxdistill.cli import main

    assert main(["train", "--config", spec + ":smoke", "--workdir", str(workdir), "--quiet", f"--config.teacher.path={folder}", f"--config.data.path={cache}", *extra]) == 0
    with open(workdir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    run = load_run(str(workdir))
    return rows, run, jax.tree.map(jnp.asarray, next(run.built.data_factory(0)))


def one_step_sample_is_the_students_x0_at_t_max(run, batch) -> None:
    """Sampling takes the prompts' TextCondition from a cache batch; one step is G(z, t_max) of the trained student."""
    obj = run.built.objective
    cond, noise = batch_labels(batch, 0), obj.prior(jax.random.key(5), batch["x"].shape[0])
    one = obj.generate(run.trainable, run.frozen, noise, cond, nfe=1, rng=jax.random.key(6))
    direct = obj.generator.x0(run.trainable["generator"].eval_params, noise, obj.process.t_max, cond)
    np.testing.assert_allclose(one, direct, rtol=1e-5, atol=1e-5)
    four = obj.generate(run.trainable, run.frozen, noise, cond, nfe=4, rng=jax.random.key(6))
    assert four.shape == batch["x"].shape and np.all(np.isfinite(np.asarray(four)))


@pytest.mark.slow
def test_the_sd15_ladd_smoke_preset_trains_through_the_cli_on_the_teachers_own_samples(t2i, tmp_path):
    """The paper's setup: `jaxdistill cache --teacher-samples` (LADD's synthetic data), then the smoke preset."""
    from jaxdistill.cli import main

    folder, _, _, _ = t2i
    (tmp_path / "prompts.txt").write_text("a cat\nred\nmoon\n")
    cache = str(tmp_path / "cache")
    assert main(["cache", "--diffusers", folder, "--prompts", str(tmp_path / "prompts.txt"), "--out", cache, "--teacher-samples", "--teacher-nfe", "2", "--quiet"]) == 0
    rows, run, batch = smoke_run(LADD_SPEC, folder, cache, tmp_path / "run")
    assert np.all(np.abs(np.asarray(batch["x"])) > 0)  # the teacher's latents, not a text-only cache's zeros
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["disc_loss"]) and "distill_loss" not in r for r in rows)
    one_step_sample_is_the_students_x0_at_t_max(run, batch)


@pytest.mark.slow
def test_the_sdxl_add_smoke_preset_trains_through_cache_and_cli_with_dinov2(sdxl_cache, tmp_path):
    """The session's tiny SDXL folder (pooled prompt embeddings condition the heads), its cache and a tiny DINOv2, then the smoke preset."""
    from jaxdistill.models.hf.tiny import write_tiny_dinov2

    folder, cache = sdxl_cache
    dinov2 = write_tiny_dinov2(tmp_path / "dinov2")
    rows, run, batch = smoke_run(ADD_SPEC, folder, cache, tmp_path / "run", f"--config.adversarial.dinov2_path={dinov2}")
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["distill_loss"]) and np.isfinite(r["r1"]) for r in rows)
    assert batch_labels(batch, 0).pooled is not None and "text_embed" in run.trainable["head"].params["params"]
    one_step_sample_is_the_students_x0_at_t_max(run, batch)
