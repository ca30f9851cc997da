"""The digits text-to-image benchmark (jaxdistill/benchmarks/digits_t2i.py): captions and prompt
adherence, folder snapshots, the committed pipeline (as a teacher and as a diffusers pipeline), a
smoke of its teacher training, and each student row's config (LCM-LoRA, TCD, DMD2, SwiftBrush): its budget and
method settings, and (slow) its smoke preset trained on the tiny SD 1.5 folder."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxdistill.benchmarks import digits_t2i as bench
from jaxdistill.core.conditioning import TextCondition
from jaxdistill.eval.digits_classifier import DigitsEvaluator, digits_data
from jaxdistill.models.hf.teacher import load_sd_teacher
from jaxdistill.objectives.denoising import drop_condition
from jaxdistill.snapshot import folder_snapshot_info, restore_folder_snapshot, save_folder_snapshot
from jaxdistill.train.checkpoint import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The committed pipeline snapshot restored, and its loaded teacher."""
    folder = str(tmp_path_factory.mktemp("digits_t2i") / "pipeline")
    info = restore_folder_snapshot(os.path.join(ROOT, bench.SNAPSHOT), folder)
    return folder, load_sd_teacher(folder), info


@pytest.fixture(scope="module")
def evaluator():
    return DigitsEvaluator()


def test_captions_name_their_digit():
    for digit in range(10):
        for template in range(len(bench.TEMPLATES)):
            text = bench.caption(digit, template)
            assert bench.caption_digit(text) == digit
            assert len(text) + 2 <= bench.PROMPT_LENGTH  # BOS + characters + EOS fit the tokenizer
    with pytest.raises(ValueError, match="names no digit"):
        bench.caption_digit("a handwritten cat")
    captions, digits = bench.eval_prompts(60)
    assert [bench.caption_digit(c) for c in captions] == digits.tolist()
    assert np.bincount(digits).tolist() == [6] * 10 and len(set(captions)) == 30


def test_adherence_of_real_digits_is_the_classifier_accuracy(evaluator):
    x, y = digits_data()
    true = [bench.caption(int(d), i % len(bench.TEMPLATES)) for i, d in enumerate(y)]
    assert bench.adherence(evaluator, x, true) == evaluator.accuracy(x, y) > 0.95
    off_by_one = [bench.caption((int(d) + 1) % 10) for d in y]
    assert bench.adherence(evaluator, x, off_by_one) < 0.05
    floor = bench.noise_floor(evaluator)
    assert floor["adherence"] == evaluator.accuracy(x, y) and 0.0 < floor["fd_digits"] < 20.0
    np.testing.assert_array_equal(bench.to_grey(bench.rgb_digits()[0]), x)


def test_token_std_sets_the_text_encoders_token_embeddings(tmp_path):
    import flax.serialization

    from jaxdistill.models.hf.tiny import write_text_encoder

    tables = {}
    for std in (None, bench.TOKEN_STD):
        path = tmp_path / str(std)
        write_text_encoder(str(path), 514, 1, max_length=bench.PROMPT_LENGTH, width=bench.TEXT_WIDTH, token_std=std)
        with open(path / "flax_model.msgpack", "rb") as f:
            tables[std] = flax.serialization.msgpack_restore(f.read())["text_model"]["embeddings"]["token_embedding"]["embedding"]
    np.testing.assert_allclose(tables[bench.TOKEN_STD], tables[None] * bench.TOKEN_STD * np.sqrt(514), rtol=1e-6)  # the same draw, rescaled
    assert abs(float(np.std(tables[None])) - 1 / np.sqrt(514)) < 0.003 and abs(float(np.std(tables[bench.TOKEN_STD])) - bench.TOKEN_STD) < 0.05


def test_captions_of_different_digits_are_far_apart(pipeline):
    """The committed text encoder tells the digits apart: captions of two digits in one template lie
    further apart than one token's norm (random_params' 1 / sqrt(vocab) token embeddings gave 0.26 of it at the closest)."""
    _, sd, _ = pipeline
    embeds = sd.encode_prompts([bench.caption(d, k) for k in range(len(bench.TEMPLATES)) for d in range(10)])["prompt_embeds"]
    token_norm = float(np.mean(np.linalg.norm(embeds, axis=-1)))
    flat = embeds.reshape(len(bench.TEMPLATES), 10, -1)
    gaps = np.linalg.norm(flat[:, :, None] - flat[:, None, :], axis=-1)[:, ~np.eye(10, dtype=bool)]
    assert float(np.min(gaps)) > token_norm


def test_cache_pairs_each_caption_with_its_image(pipeline):
    _, sd, _ = pipeline
    source = bench.write_digits_cache(sd, str(pipeline[0]) + "_cache", num_digits=20)
    x, y = bench.rgb_digits()
    records = source.get_batch(np.arange(len(source)))
    captions = [bench.caption(int(d), k) for k in range(len(bench.TEMPLATES)) for d in y[:20]]
    np.testing.assert_allclose(records["cond"]["embeds"], sd.encode_prompts(captions)["prompt_embeds"], atol=1e-4)  # float32 in the cache
    np.testing.assert_allclose(records["x"], np.tile(sd.encode_images(x[:20]), (len(bench.TEMPLATES), 1, 1, 1)), atol=1e-2)  # from uint8 pixels


def test_drop_condition_swaps_the_prompt_for_the_empty_one():
    cond = TextCondition(jnp.ones((6, 3, 2)), negative_embeds=jnp.zeros((6, 3, 2)))
    np.testing.assert_array_equal(drop_condition(jax.random.key(0), cond, 0.0).embeds, cond.embeds)
    dropped = drop_condition(jax.random.key(0), cond, 0.999)
    np.testing.assert_array_equal(dropped.embeds, 0.0)
    np.testing.assert_array_equal(dropped.negative_embeds, 0.0)
    half = drop_condition(jax.random.key(1), TextCondition(jnp.ones((400, 1, 1)), negative_embeds=jnp.zeros((400, 1, 1))), 0.5).embeds
    assert set(np.unique(half).tolist()) == {0.0, 1.0} and 150 < int(np.sum(half == 0.0)) < 250  # per example, about half
    labels = jnp.arange(5)
    np.testing.assert_array_equal(drop_condition(jax.random.key(0), labels, 0.0), labels)


def test_folder_snapshot_round_trip(sd15, tmp_path):
    folder, _ = sd15
    save_folder_snapshot(folder, tmp_path / "snap.npz", {"note": 1})
    assert folder_snapshot_info(tmp_path / "snap.npz") == {"note": 1}
    assert restore_folder_snapshot(tmp_path / "snap.npz", tmp_path / "restored") == {"note": 1}
    files = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
    assert files == sorted(os.path.relpath(os.path.join(d, f), tmp_path / "restored") for d, _, fs in os.walk(tmp_path / "restored") for f in fs)
    import flax.serialization

    for name in files:
        original, restored = (open(os.path.join(root, name), "rb").read() for root in (folder, tmp_path / "restored"))
        if not name.endswith(".msgpack"):
            assert original == restored, name
            continue
        a, b = (traverse_util.flatten_dict(flax.serialization.msgpack_restore(raw)) for raw in (original, restored))
        assert a.keys() == b.keys()
        for key in a:  # the float16-rounded weights, as float32
            np.testing.assert_array_equal(b[key], np.asarray(a[key], np.float16).astype(np.float32))
    with pytest.raises(CheckpointError, match="not empty"):
        restore_folder_snapshot(tmp_path / "snap.npz", tmp_path / "restored")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(CheckpointError, match="not a jaxdistill folder snapshot"):
        folder_snapshot_info(tmp_path / "other.npz")


def test_committed_pipeline_is_a_teacher_and_a_diffusers_pipeline(pipeline, evaluator):
    from diffusers import FlaxStableDiffusionPipeline

    folder, sd, info = pipeline
    assert os.path.getsize(os.path.join(ROOT, bench.SNAPSHOT)) < 3e6
    assert info["teacher"]["steps"] == bench.TEACHER_STEPS and info["vae_steps"] == bench.VAE_STEPS
    x, y = bench.rgb_digits()
    latents = sd.encode_images(x[:200])
    assert latents.shape == (200, bench.LATENT_SIZE, bench.LATENT_SIZE, bench.LATENT_CHANNELS)
    assert 0.7 < float(np.std(latents)) < 1.3  # the scaling factor makes the latents about unit scale
    grey = bench.to_grey(sd.decode_latents(latents))
    assert float(np.mean(np.abs(grey - digits_data()[0][:200]))) < 0.1
    assert bench.adherence(evaluator, grey, [bench.caption(int(d)) for d in y[:200]]) > 0.9
    pipe, params = FlaxStableDiffusionPipeline.from_pretrained(folder, safety_checker=None, feature_extractor=None, dtype=jnp.float32)
    for ours, theirs in ((sd.unet_params["params"]["unet"], params["unet"]), (sd.vae_params, params["vae"])):
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ids = pipe.prepare_inputs([bench.caption(7)])
    np.testing.assert_array_equal(ids, sd._token_ids(sd.tokenizers[0], [bench.caption(7)]))
    assert ids.shape == (1, bench.PROMPT_LENGTH)


STUDENTS = ("lcm_lora", "tcd", "dmd2", "swiftbrush")  # one config file per row of the benchmark


def row_config(method: str, arg: str = ""):
    from jaxdistill.config import load_config_file

    return load_config_file(os.path.join(ROOT, "configs", "digits_t2i", f"{method}.py") + (f":{arg}" if arg else ""))


@pytest.mark.parametrize("method", STUDENTS)
def test_every_row_distils_the_pipeline_at_the_benchmarks_budget(method):
    c = row_config(method)
    assert (c.teacher.kind, c.teacher.path, c.data.name, c.data.path) == ("diffusers", bench.FOLDER, "t2i_cache", bench.CACHE)
    assert (c.train.num_steps, c.batch_size, c.eval.guidance) == (bench.STUDENT_UPDATES, bench.STUDENT_BATCH, bench.GUIDANCE)
    assert c.optim.decay_steps == bench.STUDENT_UPDATES and c.ema_decay == 0.0
    smoke = row_config(method, "smoke")
    assert (smoke.method, smoke.train.num_steps, smoke.batch_size) == (c.method, 2, 4)


def test_lcm_lora_and_tcd_rows_differ_only_in_the_method():
    from jaxdistill.models.lora import LCM_LORA_TARGETS
    from jaxdistill.objectives.tcd import TCD

    lcm, tcd = row_config("lcm_lora"), row_config("tcd")
    assert (lcm.method, tcd.method, tuple(lcm.eval.nfes), tuple(tcd.eval.nfes)) == ("lcm", "tcd", (1, 2, 4), (1, 2, 4))
    assert lcm.lcm.w_min == lcm.lcm.w_max == tcd.tcd.w_min == tcd.tcd.w_max == bench.GUIDANCE
    assert (lcm.lora.rank, lcm.lora.alpha, tuple(lcm.lora.targets)) == (8, 8.0, LCM_LORA_TARGETS)
    for section in ("lora", "optim", "train"):
        assert lcm[section].to_dict() == tcd[section].to_dict(), section
    assert (tcd.tcd.gamma, tcd.tcd.num_ddim_timesteps) == (TCD().gamma, 50) == (0.3, 50)  # the paper's sampling gamma


def test_swiftbrush_row_keeps_the_releases_critic_at_rank_8():
    from jaxdistill.config import load_config_file

    c, release = row_config("swiftbrush"), load_config_file(os.path.join(ROOT, "configs", "sd15", "swiftbrush.py"))
    assert (c.method, tuple(c.eval.nfes), c.teacher.guidance, c.dmd.critic_guidance) == ("swiftbrush", (1,), bench.GUIDANCE, True)
    assert (c.lora.rank, c.lora.critic_rank, c.lora.critic_alpha / c.lora.critic_rank) == (0, 8, release.lora.critic_alpha / release.lora.critic_rank)
    assert tuple(c.lora.critic_targets) == tuple(release.lora.critic_targets)
    assert (c.optim.lr, c.dmd.critic_lr, c.optim.grad_clip) == (release.optim.lr, release.dmd.critic_lr, release.optim.grad_clip)


def test_dmd2_row_is_a_four_step_generator_with_the_gan_term(sd15_cache):
    """Built on the tiny SD 1.5 folder (the pipeline's scaled-linear schedule): the generator's steps sit at the
    release's DDPM steps 999, 749, 499, 249 (process time t = step + 1); the GAN term needs the cache's image latents."""
    from jaxdistill.build import build
    from jaxdistill.config import load
    from jaxdistill.core.errors import ConfigError

    c = row_config("dmd2")
    assert (tuple(c.eval.nfes), c.dmd.generator_steps, c.dmd.backward_simulation, c.teacher.guidance) == ((1, 2, 4), 4, True, bench.GUIDANCE)
    assert (c.dmd.gan_critic_weight, c.dmd.gan_generator_weight, tuple(c.dmd.critic_schedule[0]), c.lora.rank) == (1e-2, 5e-3, (0, 5), 0)
    folder, images, text = sd15_cache
    spec = os.path.join(ROOT, "configs", "digits_t2i", "dmd2.py") + ":smoke"
    built = build(load(spec, [f"teacher.path={folder}", f"data.path={images}"]))
    np.testing.assert_allclose(np.asarray(built.objective.generator_times()), [1000.0, 750.0, 500.0, 250.0], rtol=1e-4)
    with pytest.raises(ConfigError, match="image"):
        build(load(spec, [f"teacher.path={folder}", f"data.path={text}"]))


# the networks each row trains, and those of them that are LoRA factors only (the rest: the full UNet, or DMD2's GAN head)
TRAINED = {"tcd": ({"student"}, {"student"}), "dmd2": ({"generator", "critic", "head"}, set()), "swiftbrush": ({"generator", "critic"}, {"critic"})}


@pytest.mark.slow  # compiling each method's UNet training step on 2 CPU cores under a load of ~18: tcd 2 min, swiftbrush 5, dmd2 26
@pytest.mark.parametrize("method", sorted(TRAINED))
def test_the_new_rows_smoke_presets_train_their_networks_and_sample_at_their_nfes(method, sd15_cache, tmp_path):
    from jaxdistill.build import load_run
    from jaxdistill.cli import main
    from jaxdistill.eval.text_to_image import initial_noise, latent_shape

    folder, images, _ = sd15_cache
    spec = os.path.join(ROOT, "configs", "digits_t2i", f"{method}.py") + ":smoke"
    assert main(["train", "--config", spec, "--workdir", str(tmp_path), "--quiet", f"--config.teacher.path={folder}", f"--config.data.path={images}"]) == 0
    with open(tmp_path / "metrics.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [1, 2]
    run = load_run(str(tmp_path))
    networks, lora = TRAINED[method]
    assert set(run.trainable) == networks
    for name in networks:
        leaves = {jax.tree_util.keystr(p[-1:]) for p, _ in jax.tree_util.tree_flatten_with_path(run.trainable[name].params)[0]}
        assert (leaves == {"['lora_A']", "['lora_B']"}) == (name in lora), name
    sd = load_sd_teacher(folder)
    z = initial_noise(0, 2, latent_shape(sd))
    cond = sd.text_condition(["a cat", "moon"])
    for nfe in run.config.eval.nfes:
        x0 = run.built.objective.generate(run.trainable, run.frozen, z, cond, nfe=nfe, rng=jax.random.key(nfe))
        assert x0.shape == z.shape and bool(jnp.all(jnp.isfinite(x0)))


@pytest.mark.slow  # compiling the UNet's training step: ~5 min on 2 busy CPU cores
def test_teacher_training_smoke(tmp_path):
    from diffusers import FlaxAutoencoderKL

    from jaxdistill.models.hf.tiny import random_params

    vae = FlaxAutoencoderKL(**bench.VAE_CONFIG)
    folder = bench.write_folder(str(tmp_path / "pipeline"), random_params(jax.eval_shape(vae.init_weights, jax.random.key(0)), 0), 1.0)
    sd = load_sd_teacher(folder)
    source = bench.write_digits_cache(sd, str(tmp_path / "cache"), num_digits=4)
    assert len(source) == 4 * len(bench.TEMPLATES) and source.event_shape == (4, 4, 4)
    config = bench.teacher_config(steps=2, cache=str(tmp_path / "cache"))
    config.batch_size = 4
    summary = bench.train_teacher(folder, str(tmp_path / "run"), config)
    assert summary["steps"] == 2 and np.isfinite(summary["loss"])
    trained = load_sd_teacher(folder).unet_params
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(sd.unet_params))]
    assert all(changed)  # diffusers' initialisation, then two updates: no parameter kept the folder's random draw
