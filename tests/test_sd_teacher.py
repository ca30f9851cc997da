"""Stable Diffusion teachers from diffusers folders (issue 27 section 1): tiny random folders
written by ``models.hf.tiny``, loaded, wrapped in the network contract, sampled with the
library's DDIM and compared with diffusers' own Flax UNet, pipeline and text encoders."""
import functools
import json
import os
import shutil
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.build import load_teacher
from jaxdistill.cli import main
from jaxdistill.config import load_config_file
from jaxdistill.core.conditioning import TextCondition, guidance_batch
from jaxdistill.core.errors import CheckpointFileError, ConfigError
from jaxdistill.core.types import NULL_LABEL
from jaxdistill.diffusion import samplers, steps
from jaxdistill.diffusion.process import DDPM
from jaxdistill.models.hf.folder import check_folder, scheduler_settings
from jaxdistill.models.hf.teacher import abstract_sd_unet, load_sd_teacher
from jaxdistill.models.hf.tiny import write_tiny_sd
from jaxdistill.models.hf.unet import guidance_scale_embedding, unet_network


def _latents(seed: int, batch: int = 2) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, 8, 8, 4), jnp.float32)


@pytest.mark.parametrize("folder", ["sd15", "sdxl"])
def test_the_wrapper_is_the_diffusers_unet_in_nhwc_with_mid_and_up_block_features(folder, request):
    _, teacher = request.getfixturevalue(folder)
    unet, params = teacher.network.module.unet, teacher.unet_params["params"]["unet"]
    cond = teacher.text_condition(["a cat", "dog"])
    x, k = _latents(1), jnp.array([3.0, 640.0])
    out, features = jax.jit(functools.partial(teacher.network.apply, return_features=True))(teacher.unet_params, x, k, cond.conditional())
    added = {"text_embeds": cond.pooled, "time_ids": cond.time_ids} if teacher.sdxl else None
    taps = lambda module, method: method == "__call__" and module.path in (("mid_block",), ("up_blocks_0",))  # noqa: E731

    @jax.jit
    def reference(p, x):
        out, state = unet.apply({"params": p}, x, k, cond.embeds, added_cond_kwargs=added, capture_intermediates=taps, mutable=["intermediates"])
        return out.sample, [state["intermediates"][name]["__call__"][0] for name in ("mid_block", "up_blocks_0")]

    ref, ref_features = reference(params, jnp.transpose(x, (0, 3, 1, 2)))
    np.testing.assert_array_equal(out, jnp.transpose(ref, (0, 2, 3, 1)))
    assert [f.shape for f in features] == [(2, 8, 8, 64)] * 2  # mid block, then the one up block, NHWC as diffusers computes
    jax.tree.map(np.testing.assert_array_equal, features, ref_features)
    # The teacher feeds diffusers' index k = t - 1 of process time t.
    assert teacher.scheduler.process == DDPM("scaled_linear", 0.00085, 0.012, 1000)
    np.testing.assert_array_equal(jax.jit(teacher.denoiser().raw)(teacher.unet_params, x, k + 1.0, cond.conditional()), out)


def flax_ddim_pipeline_images(path: str, teacher, prompts: list[str], negatives: list[str], w: float, n: int, z: jax.Array) -> np.ndarray:
    """Images (NHWC in [0, 1]) of FlaxStableDiffusionPipeline with FlaxDDIMScheduler, n steps,
    guidance_scale w and negative prompts, from the initial latents z (NHWC) of the 16x16 tiny SD folder."""
    from diffusers import FlaxDDIMScheduler, FlaxStableDiffusionPipeline

    scheduler, scheduler_state = FlaxDDIMScheduler.from_pretrained(path, subfolder="scheduler")
    (encoder,), (encoder_params,), (tokenizer,) = teacher.text_encoders, teacher.text_encoder_params, teacher.tokenizers
    pipe = FlaxStableDiffusionPipeline(
        vae=teacher.vae, text_encoder=encoder, tokenizer=tokenizer, unet=teacher.network.module.unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None,
    )
    params = {"unet": teacher.unet_params["params"]["unet"], "vae": teacher.vae_params, "text_encoder": encoder_params, "scheduler": scheduler_state}
    generate = jax.jit(pipe._generate, static_argnums=(3, 4, 5))
    images = generate(
        pipe.prepare_inputs(prompts), params, jax.random.key(0), n, 16, 16, w, jnp.transpose(z, (0, 3, 1, 2)), pipe.prepare_inputs(negatives)
    )
    return np.asarray(images)


@pytest.mark.slow  # in every CI pass through the CLI route: test_t2i_sample::test_the_ddim_route_reproduces_the_flax_pipeline_with_its_guidance_scale
def test_library_ddim_with_a_negative_prompt_reproduces_the_flax_pipeline(sd15):
    """FlaxStableDiffusionPipeline with FlaxDDIMScheduler (leading spacing, offset 1, alphas_cumprod[0]
    at the end) and the library's ``ddim`` on the same grid, guided x0_u + w (x0_c - x0_u), agree
    from the same initial noise."""
    path, teacher = sd15
    prompts, negatives, w, n = ["a cat", "a dog"], ["blur", "ugly"], 4.0, 4
    z = _latents(7)
    images = flax_ddim_pipeline_images(path, teacher, prompts, negatives, w, n, z)
    s = teacher.scheduler
    assert (s.spacing, s.steps_offset, s.t_end, s.prediction) == ("leading", 1, 1.0, "eps")
    ts = steps.get_grid(s.spacing, s.process, n, t_end=s.t_end, steps_offset=s.steps_offset, scheduler="ddim")
    np.testing.assert_array_equal(ts, [752.0, 502.0, 252.0, 2.0, 1.0])  # diffusers' timesteps 751, 501, 251, 1, then abar_0
    denoiser, cond = teacher.denoiser(), teacher.text_condition(prompts, negatives)
    sample = jax.jit(lambda params, z, cond: samplers.sample(lambda x, t: denoiser.x0(params, x, t, cond, guidance=w), s.process, z, ts, "ddim"))
    latents = sample(teacher.unet_params, z, cond)
    ours = np.clip(teacher.decode_latents(latents) / 2 + 0.5, 0.0, 1.0)
    inside = (ours > 0.01) & (ours < 0.99)
    assert inside.mean() > 0.5  # the comparison is not hidden by the clipping
    np.testing.assert_allclose(ours, np.asarray(images), atol=1e-4)
    assert np.max(np.abs(np.asarray(latents) - np.asarray(z))) > 0.1  # the sampler moved the noise


def test_text_guidance_is_negative_plus_w_times_prompt_minus_negative(sd15):
    _, teacher = sd15
    denoiser, cond = teacher.denoiser(), teacher.text_condition(["red", "blue"], ["green", ""])
    x, t, w = _latents(2), jnp.array([100.0, 900.0]), jnp.array([2.5, 7.0])
    x0 = jax.jit(denoiser.x0)
    guided = x0(teacher.unet_params, x, t, cond, guidance=w)
    x0_c = x0(teacher.unet_params, x, t, cond.conditional())
    x0_u = x0(teacher.unet_params, x, t, TextCondition(cond.negative_embeds))
    np.testing.assert_allclose(guided, x0_u + w[:, None, None, None] * (x0_c - x0_u), rtol=1e-5, atol=1e-5)
    empty = teacher.encode_prompts([""])["prompt_embeds"][0]
    np.testing.assert_array_equal(cond.negative_embeds[1], empty)  # no negative prompt: the empty prompt
    with pytest.raises(ValueError, match="negative_embeds"):
        denoiser.x0(teacher.unet_params, x, t, cond.conditional(), guidance=w)


def test_sdxl_prompt_embeddings_and_time_ids_are_the_xl_pipelines(sdxl):
    from diffusers import FlaxDDIMScheduler, FlaxStableDiffusionXLPipeline

    path, teacher = sdxl
    enc1, enc2 = teacher.text_encoders
    pipe = FlaxStableDiffusionXLPipeline(
        text_encoder=enc1, text_encoder_2=enc2, vae=teacher.vae, tokenizer=teacher.tokenizers[0], tokenizer_2=teacher.tokenizers[1],
        unet=teacher.network.module.unet, scheduler=FlaxDDIMScheduler.from_pretrained(path, subfolder="scheduler")[0],
    )
    prompts = ["a cat", "an owl"]
    params1, params2 = teacher.text_encoder_params
    embeds, pooled = pipe.get_embeddings(pipe.prepare_inputs(prompts), {"text_encoder": params1, "text_encoder_2": params2})
    ours = teacher.encode_prompts(prompts)
    np.testing.assert_allclose(ours["prompt_embeds"], embeds, atol=1e-6)
    np.testing.assert_allclose(ours["pooled_prompt_embeds"], pooled, atol=1e-6)
    assert ours["prompt_embeds"].shape == (2, 8, 32) and ours["pooled_prompt_embeds"].shape == (2, 16)
    np.testing.assert_array_equal(teacher.time_ids(2), pipe._get_add_time_ids((16, 16), (0, 0), (16, 16), 2, jnp.float32))
    assert teacher.scheduler.spacing == "trailing"


@pytest.mark.slow  # encode in every CI pass via test_t2i_cache (direct VAE encoding), decode via the pipeline comparison
def test_vae_round_trip_is_the_scaled_posterior_mean(sd15):
    _, teacher = sd15
    images = jax.random.uniform(jax.random.key(3), (2, 16, 16, 3), minval=-1.0, maxval=1.0)
    latents = teacher.encode_images(images)
    posterior = teacher.vae.apply({"params": teacher.vae_params}, jnp.transpose(images, (0, 3, 1, 2)), method=teacher.vae.encode).latent_dist
    np.testing.assert_allclose(latents, posterior.mean * 0.5, atol=1e-5)  # scaling_factor 0.5 in the tiny VAE config; jit vs eager rounding
    decoded = teacher.vae.apply({"params": teacher.vae_params}, jnp.transpose(jnp.asarray(latents) / 0.5, (0, 3, 1, 2)), method=teacher.vae.decode).sample
    np.testing.assert_allclose(teacher.decode_latents(latents), jnp.transpose(decoded, (0, 2, 3, 1)), atol=1e-5)
    assert latents.shape == (2, 8, 8, 4)


def test_a_fresh_guidance_embedding_leaves_the_teacher_unchanged(sd15):
    """LCM's w input (time_cond_proj, zero-initialised: zeros here, the UNet's own init takes long to
    compile) adds nothing until trained; the embedding is sin / cos of 1000 (w - 1) at LCM's frequencies."""
    _, teacher = sd15
    net = unet_network(teacher.network.module.unet, 8, time_cond_proj_dim=8)
    shape = jax.eval_shape(net.init, jax.random.key(0), _latents(0))["params"]["time_cond_proj"]["kernel"].shape
    assert shape == (8, 64)  # guidance features -> the UNet's sinusoidal time features
    fresh = {"kernel": jnp.zeros(shape)}
    params = {"params": {**teacher.unet_params["params"], "time_cond_proj": fresh}}
    x, k, cond = _latents(4), jnp.array([10.0, 700.0]), teacher.text_condition(["x", "y"]).conditional()
    tw = jnp.stack([k, jnp.array([3.0, 8.0])], axis=1)
    apply = jax.jit(net.apply)
    np.testing.assert_allclose(apply(params, x, tw, cond), jax.jit(teacher.network.apply)(teacher.unet_params, x, k, cond), atol=1e-6)
    trained = {"params": {**params["params"], "time_cond_proj": {"kernel": jnp.ones_like(fresh["kernel"])}}}
    assert float(jnp.max(jnp.abs(apply(trained, x, tw, cond) - apply(params, x, tw, cond)))) > 1e-2
    emb = guidance_scale_embedding(jnp.array([1.0, 2.0]), 8)
    freqs = np.exp(-np.log(10000.0) / 3 * np.arange(4))
    np.testing.assert_allclose(emb[1], np.concatenate([np.sin(1000 * freqs), np.cos(1000 * freqs)]), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(emb[0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_pytorch_safetensors_convert_without_torch_to_the_same_teacher(sd15, tmp_path):
    """A folder whose UNet, VAE and text encoder ship only PyTorch safetensors (written here from the
    Flax weights with PyTorch's names and layouts) loads to the same parameters."""
    from flax import traverse_util
    from safetensors.numpy import save_file

    path, teacher = sd15
    folder = str(tmp_path / "pt")
    shutil.copytree(path, folder)
    for name, params, file in (
        ("unet", teacher.unet_params["params"]["unet"], "diffusion_pytorch_model.safetensors"),
        ("vae", teacher.vae_params, "diffusion_pytorch_model.safetensors"),
        ("text_encoder", teacher.text_encoder_params[0], "model.safetensors"),
    ):
        state = {}
        for key, value in traverse_util.flatten_dict(params).items():
            value = np.asarray(value)
            if key[-1] == "kernel":
                value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
            pt_key = ".".join(key[:-1] + (("bias",) if key[-1] == "bias" else ("weight",)))
            for digit in range(10):  # diffusers' Flax names down_blocks_0 are PyTorch's down_blocks.0
                pt_key = pt_key.replace(f"_{digit}.", f".{digit}.")
            pt_key = pt_key.replace("attentions.0.query.", "attentions.0.to_q.").replace("attentions.0.key.", "attentions.0.to_k.")
            pt_key = pt_key.replace("attentions.0.value.", "attentions.0.to_v.").replace("attentions.0.proj_attn.", "attentions.0.to_out.0.")
            state[pt_key] = np.ascontiguousarray(value)
        for old in os.listdir(os.path.join(folder, name)):
            if old.endswith(".msgpack"):
                os.remove(os.path.join(folder, name, old))
        save_file(state, os.path.join(folder, name, file), metadata={"format": "pt"})  # as PyTorch save_pretrained writes
    assert check_folder(folder).weights == {"unet": "safetensors", "vae": "safetensors", "text_encoder": "safetensors"}
    converted = load_sd_teacher(folder)
    for ours, theirs in (
        (converted.unet_params, teacher.unet_params), (converted.vae_params, teacher.vae_params),
        (converted.text_encoder_params[0], teacher.text_encoder_params[0]),
    ):
        assert jax.tree.structure(ours) == jax.tree.structure(theirs)
        jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_guidance_batches_text_with_its_negative_prompt_and_labels_with_the_null_label():
    embeds, neg, pooled, neg_pooled, ids = jnp.full((2, 3, 4), 1.0), jnp.full((2, 3, 4), 2.0), jnp.full((2, 5), 3.0), jnp.full((2, 5), 4.0), jnp.ones((2, 6))
    both = guidance_batch(TextCondition(embeds, pooled, ids, neg, neg_pooled))
    np.testing.assert_array_equal(both.embeds, jnp.concatenate([embeds, neg]))
    np.testing.assert_array_equal(both.pooled, jnp.concatenate([pooled, neg_pooled]))
    np.testing.assert_array_equal(both.time_ids, jnp.ones((4, 6)))  # the negative branch keeps the time ids
    assert both.negative_embeds is None and both.negative_pooled is None
    np.testing.assert_array_equal(guidance_batch(jnp.array([3, 7])), [3, 7, NULL_LABEL, NULL_LABEL])
    with pytest.raises(ValueError, match="pooled"):
        guidance_batch(TextCondition(embeds, pooled, ids, neg))
    with pytest.raises(ValueError, match="cond is None"):
        guidance_batch(None)


def test_a_v_prediction_folder_is_a_v_teacher(tmp_path):
    settings = check_folder(write_tiny_sd(tmp_path / "sd2", "sd2v")).configs["scheduler"]
    assert scheduler_settings(settings).prediction == "v"
    with pytest.raises(CheckpointFileError, match="rescale_betas_zero_snr"):
        scheduler_settings({**settings, "rescale_betas_zero_snr": True}, "sched.json")


def test_a_hub_id_resolves_to_its_snapshot_in_the_local_cache(sd15, tmp_path, monkeypatch):
    path, _ = sd15
    repo = tmp_path / "hub" / "models--someone--tiny-sd"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    shutil.copytree(path, repo / "snapshots" / "0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert check_folder("someone/tiny-sd").path == str(repo / "snapshots" / "0123abcd")
    with pytest.raises(CheckpointFileError, match="someone/other.*local Hugging Face cache"):
        check_folder("someone/other")


def _break(folder: str, how: str) -> tuple[str, ...]:
    """Damage a copy of a tiny folder; returns what the error must name."""
    def edit(file, **fields):
        with open(os.path.join(folder, file)) as f:
            data = json.load(f)
        data.update(fields)
        with open(os.path.join(folder, file), "w") as f:
            json.dump(data, f)

    if how == "no_index":
        os.remove(os.path.join(folder, "model_index.json"))
        return ("model_index.json",)
    if how == "no_vae":
        shutil.rmtree(os.path.join(folder, "vae"))
        return ("vae", "config.json")
    if how == "unlisted_scheduler":
        with open(os.path.join(folder, "model_index.json")) as f:
            index = json.load(f)
        del index["scheduler"]
        with open(os.path.join(folder, "model_index.json"), "w") as f:
            json.dump(index, f)
        return ("model_index.json", "scheduler")
    if how == "no_unet_weights":
        os.remove(os.path.join(folder, "unet", "diffusion_flax_model.msgpack"))
        return ("unet", "diffusion_flax_model.msgpack")
    if how == "torch_pickle_only":
        os.rename(os.path.join(folder, "text_encoder", "flax_model.msgpack"), os.path.join(folder, "text_encoder", "pytorch_model.bin"))
        return ("text_encoder", "pytorch_model.bin", "torch")
    if how == "cross_attention_mismatch":
        edit("unet/config.json", cross_attention_dim=24)
        return ("unet/config.json", "cross_attention_dim=24", "16")
    if how == "latent_mismatch":
        edit("vae/config.json", latent_channels=3)
        return ("unet/config.json", "in_channels=4", "latent_channels=3")
    if how == "prediction_type":
        edit("scheduler/scheduler_config.json", prediction_type="flow")
        return ("scheduler_config.json", "prediction_type='flow'")
    raise AssertionError(how)


BROKEN = ("no_index", "no_vae", "unlisted_scheduler", "no_unet_weights", "torch_pickle_only", "cross_attention_mismatch", "latent_mismatch", "prediction_type")


def test_a_broken_folder_is_a_one_line_error_naming_the_file(sd15, tmp_path):
    path, _ = sd15
    for how in BROKEN:
        folder = str(tmp_path / how)
        shutil.copytree(path, folder)
        names = _break(folder, how)
        with pytest.raises(CheckpointFileError) as info:
            check_folder(folder)
        message = str(info.value)
        assert len(message.splitlines()) == 1 and all(n in message for n in names), (how, message)
    with pytest.raises(CheckpointFileError, match="does not exist"):
        check_folder(str(tmp_path / "nowhere"))


def _write_run(folder, teacher_path: str) -> str:
    data = str(folder / "latents.npz")
    np.savez(data, x=np.random.default_rng(0).standard_normal((64, 8, 8, 4)).astype(np.float32), label=np.zeros(64, int))
    config = folder / "kd_sd.py"
    config.write_text(textwrap.dedent(f"""
        import ml_collections
        from jaxdistill import benchmarks
        from jaxdistill.config import base_config

        def get_config():
            c = benchmarks.smoke(benchmarks.with_method(base_config(), "kd"))
            c.data = ml_collections.ConfigDict({{"name": "npz", "path": {data!r}}})
            c.teacher.kind, c.teacher.path = "diffusers", {teacher_path!r}
            c.batch_size, c.train.num_steps = 16, 2
            return c
    """))
    return str(config)


def test_the_teacher_config_route_loads_the_folder_and_refuses_a_broken_one(sd15, tmp_path, capsys):
    path, teacher = sd15
    denoiser, params = load_teacher(load_config_file(_write_run(tmp_path, path)), (8, 8, 4))
    assert denoiser.process == teacher.scheduler.process and denoiser.prediction == "eps"
    x, t, cond = _latents(5), jnp.array([50.0, 500.0]), teacher.text_condition(["a", "b"]).conditional()
    jax.tree.map(np.testing.assert_array_equal, params, teacher.unet_params)
    np.testing.assert_array_equal(jax.jit(denoiser.raw)(params, x, t, cond), jax.jit(teacher.network.apply)(params, x, t - 1.0, cond))
    broken = str(tmp_path / "broken")
    shutil.copytree(path, broken)
    shutil.rmtree(os.path.join(broken, "text_encoder"))
    (tmp_path / "b").mkdir()
    config = _write_run(tmp_path / "b", broken)
    workdir = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--config", config, "--workdir", str(workdir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken" in err and "text_encoder" in err, err
    assert not (workdir / "checkpoints").exists()


def test_the_abstract_unet_has_the_loaded_teachers_shapes_and_function(sd15, tmp_path):
    """``abstract_sd_unet`` from the folder's JSON files alone (its weights deleted): the loaded
    parameters' exact tree, shapes and dtypes (nothing allocated), and a denoiser that computes the
    loaded teacher's outputs; ``build(abstract_teacher=True)`` makes it the frozen teacher."""
    path, sd = sd15
    configs_only = shutil.copytree(path, tmp_path / "sd", ignore=shutil.ignore_patterns("*.msgpack", "*.safetensors", "*.bin"))
    denoiser, abstract = abstract_sd_unet(str(configs_only))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(abstract))
    assert jax.tree.structure(abstract) == jax.tree.structure(sd.unet_params)
    assert [(a.shape, a.dtype) for a in jax.tree.leaves(abstract)] == [(p.shape, p.dtype) for p in jax.tree.leaves(sd.unet_params)]
    x, t = _latents(0), jnp.array([10.0, 700.0])
    cond = TextCondition(jax.random.normal(jax.random.key(1), (2, sd.network.context_length, sd.network.context_dim)))
    assert (denoiser.process, denoiser.prediction) == (sd.denoiser().process, sd.denoiser().prediction)
    np.testing.assert_array_equal(denoiser.apply_fn(sd.unet_params, x, t, cond), sd.denoiser().apply_fn(sd.unet_params, x, t, cond))


def test_remat_wraps_each_unet_block_and_keeps_outputs_features_and_gradients(sd15):
    """``remat``: one ``nn.remat`` per down / mid / up block in the traced forward pass, the same
    outputs and feature taps exactly, gradients equal to float32 round-off."""
    _, sd = sd15
    net = sd.network
    remat = unet_network(net.module.unet, net.context_length, remat=True)
    x, t = _latents(2), jnp.array([10.0, 500.0])
    cond = TextCondition(jax.random.normal(jax.random.key(3), (2, net.context_length, net.context_dim)))
    params = sd.unet_params
    blocks = len(net.module.unet.down_block_types) + 1 + len(net.module.unet.up_block_types)
    jaxpr = jax.make_jaxpr(lambda p: remat.apply(p, x, t, cond))(params).jaxpr
    assert sum(eqn.primitive.name == "remat2" for eqn in jaxpr.eqns) == blocks  # jax.checkpoint's primitive
    (out, features), (out_r, features_r) = (n.apply(params, x, t, cond, return_features=True) for n in (net, remat))
    np.testing.assert_array_equal(out_r, out)
    assert len(features_r) == len(features) == len(net.module.unet.up_block_types) + 1
    for a, b in zip(features_r, features):
        np.testing.assert_array_equal(a, b)
    loss = lambda n: jax.grad(lambda p: jnp.sum(n.apply(p, x, t, cond) ** 2))  # noqa: E731
    for a, b in zip(jax.tree.leaves(loss(remat)(params)), jax.tree.leaves(loss(net)(params))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_an_abstract_teacher_builds_dmd2_from_a_folder_of_json_files(sd15_cache, tmp_path):
    """``build(abstract_teacher=True)``: DMD2's config on a folder without weights; the frozen teacher is
    shapes only, stored as ``precision.teacher_params`` says, and generator and critic have its tree."""
    from jaxdistill.build import build, teacher_with_networks
    from jaxdistill.config import load

    folder, images, _ = sd15_cache
    configs_only = shutil.copytree(folder, tmp_path / "sd", ignore=shutil.ignore_patterns("*.msgpack", "*.safetensors", "*.bin"))
    spec = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "sd15", "dmd2.py:smoke")
    built = build(load(spec, [f"teacher.path={configs_only}", f"data.path={images}", "precision.teacher_params=bfloat16"]), abstract_teacher=True)
    teacher = built.frozen["teacher"]
    assert all(isinstance(a, jax.ShapeDtypeStruct) and a.dtype == jnp.bfloat16 for a in jax.tree.leaves(teacher))
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    states = jax.eval_shape(built.objective.init, jax.random.key(0), batch, built.frozen)
    for name in ("generator", "critic"):
        assert [a.shape for a in jax.tree.leaves(states[name].params)] == [a.shape for a in jax.tree.leaves(teacher)]
    config = built.config.copy_and_resolve_references()
    config.teacher.kind = "converted"
    with pytest.raises(ConfigError, match="needs teacher.kind='diffusers', not 'converted'"):
        teacher_with_networks(config, (8, 8, 4), abstract=True)
