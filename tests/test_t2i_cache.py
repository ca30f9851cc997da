"""Prompt sources and the text-to-image cache (jaxdistill.data.prompts, jaxdistill.data.t2i_cache)
on a tiny random Stable Diffusion folder (models.hf.tiny) saved by the tests:
contents equal direct encoding, resume and two processes give the same bytes as one run, other
settings are refused with nothing touched, the data source and the CLI."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxdistill.cli import main
from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.types import NULL_LABEL
from jaxdistill.data import pipeline
from jaxdistill.data.prompts import JsonlPrompts, ListPrompts, TextFilePrompts, TfdsPrompts, open_prompts
from jaxdistill.data.sources import make_source
from jaxdistill.data.t2i_cache import MANIFEST, T2ICacheSource, load_image, teacher_encoders, write_cache
from jaxdistill.models.hf.tiny import IMAGE_SIZE, PROMPT_LENGTH
from jaxdistill.objectives.denoising import batch_labels
from jaxdistill.train import mesh as mesh_lib

RESOLUTION, MAX_LENGTH = IMAGE_SIZE, PROMPT_LENGTH  # the tiny folder's 16x16 images, 8 prompt tokens
PROMPTS = ["a cat", "a dog on a mat", "red", "blue sky", "x", "green tree", "a b c", "moon", "sun and sea", "zebra"]
CACHE = dict(batch_size=3, shard_size=4, progress=False)  # 10 records: shards of 4, 4, 2; a padded last batch


@pytest.fixture(scope="module")
def sd(sd15, tmp_path_factory):
    """(the shared tiny SD 1.5 folder, its encoders, a JSONL of PROMPTS with one 16x16 image each)."""
    folder, teacher = sd15
    root = tmp_path_factory.mktemp("t2i")
    rs = np.random.default_rng(1)
    os.makedirs(root / "images")
    lines = []
    for i, prompt in enumerate(PROMPTS):
        Image.fromarray(rs.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        lines.append(json.dumps({"caption": prompt, "file": f"images/{i}.png"}))
    (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return folder, teacher_encoders(teacher), str(root / "prompts.jsonl")


@pytest.fixture(scope="module")
def image_cache(sd, tmp_path_factory):
    """The one-process cache of PROMPTS and their images."""
    folder, encoders, jsonl = sd
    out = str(tmp_path_factory.mktemp("cache") / "c")
    write_cache(out, JsonlPrompts(jsonl, image_field="file"), encoders, with_images=True, **CACHE)
    return out


def folder_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def one_line(error, *fragments):
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------ prompts
def test_text_and_jsonl_prompts(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("  a cat \n\n\t\nsecond prompt\n")
    assert [r["prompt"] for r in open_prompts(str(text))] == ["a cat", "second prompt"]
    assert isinstance(open_prompts(str(text)), TextFilePrompts) and open_prompts(str(text))[0]["image"] is None
    (tmp_path / "img.png").write_bytes(b"")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "one", "caption": "not this"}\n\n{"caption": "two", "img": "img.png"}\n')
    assert [r["prompt"] for r in open_prompts(str(jsonl))] == ["one", "two"]  # "prompt" first, then "caption"
    assert [r["prompt"] for r in open_prompts(str(jsonl), field="caption")] == ["not this", "two"]
    jsonl.write_text('{"caption": "one", "img": "img.png"}\n{"caption": "two", "img": "' + str(tmp_path / "img.png") + '"}\n')
    source = open_prompts(str(jsonl), image_field="img")
    assert [r["image"] for r in source] == [str(tmp_path / "img.png")] * 2  # relative to the JSONL's folder, or absolute
    assert source.describe()["count"] == 2 and len(source.describe()["sha256"]) == 64


def test_bad_prompt_sources_name_file_and_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        open_prompts(str(tmp_path / "missing.txt"))
    one_line(err, "missing.txt", "missing")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ConfigError) as err:
        open_prompts(str(tmp_path / "empty.txt"))
    one_line(err, "empty.txt", "holds no prompts")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n\n{"text": "no prompt field"}\n')
    with pytest.raises(ConfigError) as err:
        open_prompts(str(bad))
    one_line(err, "bad.jsonl line 3", "'prompt' or 'caption'", "['text']")
    with pytest.raises(ConfigError) as err:
        open_prompts(str(bad), field="prompt", image_field="file")
    one_line(err, "bad.jsonl line 1", "'file'")
    bad.write_text('{"prompt": "ok", "file": "nowhere.png"}\n')
    with pytest.raises(ConfigError) as err:
        open_prompts(str(bad), image_field="file")
    one_line(err, "bad.jsonl line 1", "nowhere.png", "does not exist")
    bad.write_text("not json\n")
    with pytest.raises(ConfigError) as err:
        open_prompts(str(bad))
    one_line(err, "bad.jsonl line 1", "not valid JSON")
    with pytest.raises(ConfigError) as err:
        open_prompts(str(tmp_path / "empty.txt"), field="prompt")
    one_line(err, "plain text", ".jsonl")


def test_tfds_captions_through_mock_data():
    """A captions dataset defined here, read through ``tfds.data_source`` under ``mock_data`` (no
    TensorFlow, no download): the prompt is the text feature (the first of a list), the image the array."""
    import tensorflow_datasets as tfds

    class TinyCaptions(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {"image": tfds.features.Image(shape=(8, 8, 3)), "caption": tfds.features.Text(),
                        "captions": tfds.features.Sequence({"text": tfds.features.Text()})}
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

        def _split_generators(self, dl_manager):  # mock data only: never prepared
            raise NotImplementedError

        def _generate_examples(self):
            raise NotImplementedError

    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        raw = tfds.data_source("tiny_captions", split="train")
        records = [raw[i] for i in range(3)]
        single = open_prompts("tfds:tiny_captions:train", image_field="image")
        nested = TfdsPrompts("tiny_captions", field="captions/text")
        got_single, got_nested = [single[i] for i in range(3)], [nested[i]["prompt"] for i in range(3)]
    assert [r["prompt"] for r in got_single] == [r["caption"] for r in records]
    assert got_nested == [str(r["captions"]["text"][0]) for r in records]
    np.testing.assert_array_equal(got_single[2]["image"], records[2]["image"])
    assert single.describe() == {"kind": "tfds", "dataset": "tiny_captions", "split": "train", "field": "caption", "image_field": "image", "count": 3}
    with pytest.raises(ConfigError) as err:
        TfdsPrompts("tiny", field="label", source=[{"caption": "a"}])[0]
    one_line(err, "record 0", "'label'", "['caption']")


def test_load_image_resizes_the_shorter_side_and_centre_crops():
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, 8:24] = 255  # the centre 16 columns white
    np.testing.assert_array_equal(load_image(image, 16), np.ones((16, 16, 3), np.float32))
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    np.testing.assert_allclose(load_image(gray, 8), np.repeat(gray / 127.5 - 1.0, 3, axis=2), atol=1e-6)


# -------------------------------------------------------------------- cache
def direct_encoding(folder, prompts, images):
    """The text encoder's last hidden state and the VAE posterior mean x scaling factor, computed
    with transformers / diffusers directly (no jaxdistill code)."""
    from diffusers import FlaxAutoencoderKL
    from transformers import CLIPTokenizer, FlaxCLIPTextModel

    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder, text_params = FlaxCLIPTextModel.from_pretrained(folder, subfolder="text_encoder", _do_init=False)
    ids = tokenizer(prompts, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="np").input_ids
    vae, params = FlaxAutoencoderKL.from_pretrained(folder, subfolder="vae")
    pixels = jnp.transpose(jnp.asarray(images, jnp.float32) / 127.5 - 1.0, (0, 3, 1, 2))
    latents = jax.jit(lambda p, x: vae.apply({"params": p}, x, method=vae.encode).latent_dist.mean)(params, pixels) * vae.config.scaling_factor
    embeddings = jax.jit(lambda p, ids: text_encoder(ids, params=p).last_hidden_state)(text_params, ids)
    return np.asarray(embeddings), np.asarray(latents)


def test_cache_equals_direct_encoding_and_feeds_the_data_source(sd, sd15, image_cache):
    folder, encoders, jsonl = sd
    images = np.stack([np.asarray(Image.open(os.path.join(os.path.dirname(jsonl), "images", f"{i}.png"))) for i in range(len(PROMPTS))])
    embeddings, latents = direct_encoding(folder, PROMPTS + [""], images)  # and the empty prompt, of classifier-free guidance
    manifest = json.load(open(os.path.join(image_cache, MANIFEST)))
    assert manifest["num_records"] == 10 and manifest["shard_records"] == [4, 4, 2] and manifest["latent_shape"] == [8, 8, 4]
    assert {k: manifest["settings"][k] for k in ("resolution", "max_length", "images", "shard_size")} == {"resolution": 16, "max_length": 8, "images": True, "shard_size": 4}
    source = make_source(ml_collections.ConfigDict({"name": "t2i_cache", "path": image_cache}))
    assert isinstance(source, T2ICacheSource) and len(source) == 10 and source.cond_keys == ["prompt_embeds"]
    order = np.array([9, 0, 5, 4, 3])  # across the three shards
    batch = source.get_batch(order)
    np.testing.assert_allclose(batch["x"], latents[order], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch["cond"]["embeds"], embeddings[order], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch["label"], np.full(5, NULL_LABEL))
    np.testing.assert_allclose(source.null_cond["prompt_embeds"], embeddings[-1], rtol=1e-5, atol=1e-5)
    record = source[7]
    np.testing.assert_allclose(record["cond"]["embeds"], embeddings[7], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(record["x"], latents[7], rtol=1e-5, atol=1e-5)
    # the trainer's cond is the batch's "cond"; the global batch keeps its dict structure
    np.testing.assert_allclose(batch["cond"]["negative_embeds"], np.repeat(embeddings[-1:], 5, axis=0), rtol=1e-5, atol=1e-5)
    assert sorted(batch["cond"]) == ["embeds", "negative_embeds"]  # SD 1.x: no pooled embeddings or time ids
    # the trainer's cond is the batch's TextCondition, and it guides the teacher as text_condition does
    cond = batch_labels(batch, num_classes=0)
    assert isinstance(cond, TextCondition) and cond.embeds is batch["cond"]["embeds"]
    teacher = sd15[1]
    x, t = jax.random.normal(jax.random.key(0), (5, *manifest["latent_shape"])), jnp.full((5,), 500.0)
    guided = teacher.denoiser().x0(teacher.unet_params, x, t, cond, guidance=3.0)
    direct = teacher.denoiser().x0(teacher.unet_params, x, t, teacher.text_condition([PROMPTS[i] for i in order]), guidance=3.0)
    np.testing.assert_allclose(guided, direct, rtol=1e-4, atol=1e-5)
    placed = mesh_lib.global_batch(batch, mesh_lib.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1, "dcn_data": 1, "min_fsdp_size": 1024})))
    np.testing.assert_array_equal(np.asarray(placed["cond"]["embeds"]), batch["cond"]["embeds"])


def test_each_process_reads_only_its_slice_of_the_cache(image_cache):
    read = [[], []]

    class Spy:
        def __init__(self, array, log, start):
            self.array, self.log, self.start, self.shape = array, log, start, array.shape

        def __getitem__(self, positions):
            self.log.extend(int(p) + self.start for p in np.atleast_1d(positions))
            return self.array[positions]

    sources = [T2ICacheSource(image_cache) for _ in range(2)]
    for p, source in enumerate(sources):
        source.shards = [{k: Spy(v, read[p], int(start)) if k == "cond.prompt_embeds" else v for k, v in shard.items()}
                         for shard, start in zip(source.shards, source.starts)]
    streams = [pipeline.BatchStream(source, 4, seed=3, shard_index=p, shard_count=2) for p, source in enumerate(sources)]
    whole = T2ICacheSource(image_cache).get_batch(np.arange(10))
    for step in range(streams[0].steps_per_epoch):
        for stream in streams:
            np.testing.assert_array_equal(stream[step]["cond"]["embeds"], whole["cond"]["embeds"][stream.indices(step)])
    assert set(read[0]) <= set(range(0, 10, 2)) and set(read[1]) <= set(range(1, 10, 2))
    assert len(read[0]) == len(read[1]) == 4  # an epoch: 2 steps of 2 records from each slice of 5 (one left over, drop_remainder)


def test_resume_after_a_lost_shard_or_a_crash_gives_the_same_files(sd, image_cache, tmp_path):
    folder, encoders, jsonl = sd
    prompts = JsonlPrompts(jsonl, image_field="file")
    want = folder_bytes(image_cache)
    out = str(tmp_path / "c")
    calls = []

    def crashing(batch):
        calls.append(len(batch))
        if len(calls) == 5:  # the empty prompt, shard 0's two batches, shard 1's first; its second fails
            raise RuntimeError("interrupted")
        return encoders.encode_prompts(batch)

    with pytest.raises(RuntimeError):
        write_cache(out, prompts, dataclasses.replace(encoders, encode_prompts=crashing), with_images=True, **CACHE)
    assert sorted(os.listdir(out)) == [MANIFEST, "null_cond.npz", "shard-00000-of-00003.npz"]  # no partial shard, no temporary file
    with pytest.raises(ConfigError) as err:
        T2ICacheSource(out)
    one_line(err, "2 of 3 shards are missing", "rerun 'jaxdistill cache'")
    write_cache(out, prompts, encoders, with_images=True, **CACHE)
    assert folder_bytes(out) == want
    os.remove(os.path.join(out, "shard-00002-of-00003.npz"))
    write_cache(out, prompts, encoders, with_images=True, **CACHE)
    assert folder_bytes(out) == want


def test_two_processes_write_disjoint_shards_whose_union_is_the_one_process_cache(sd, image_cache, tmp_path):
    folder, encoders, jsonl = sd
    prompts = JsonlPrompts(jsonl, image_field="file")
    out = str(tmp_path / "c")
    write_cache(out, prompts, encoders, with_images=True, process_index=1, process_count=2, **CACHE)
    assert sorted(f for f in os.listdir(out) if f.startswith("shard")) == ["shard-00001-of-00003.npz"]
    write_cache(out, prompts, encoders, with_images=True, process_index=0, process_count=2, **CACHE)
    assert folder_bytes(out) == folder_bytes(image_cache)


def test_other_settings_are_refused_with_nothing_touched(sd, image_cache):
    folder, encoders, jsonl = sd
    prompts = JsonlPrompts(jsonl, image_field="file")
    before = {name: (os.stat(os.path.join(image_cache, name)).st_mtime_ns, data) for name, data in folder_bytes(image_cache).items()}
    other = dataclasses.replace(encoders, settings={**encoders.settings, "max_length": 4})
    with pytest.raises(ConfigError) as err:
        write_cache(image_cache, prompts, other, with_images=True, **CACHE)
    one_line(err, os.path.join(image_cache, MANIFEST), "max_length: manifest 8, this run 4", "nothing was changed")
    with pytest.raises(ConfigError) as err:
        write_cache(image_cache, prompts, encoders, with_images=False, **CACHE)
    one_line(err, "images: manifest True, this run False")
    with pytest.raises(ConfigError) as err:
        write_cache(image_cache, ListPrompts(PROMPTS[:3]), encoders, with_images=False, **CACHE)
    one_line(err, "prompts: manifest")
    assert {name: (os.stat(os.path.join(image_cache, name)).st_mtime_ns, data) for name, data in folder_bytes(image_cache).items()} == before


def test_cli_caches_text_only_and_refuses_bad_input_with_exit_2(sd, image_cache, tmp_path, capsys):
    folder, encoders, _ = sd
    text = tmp_path / "prompts.txt"
    text.write_text("\n".join(PROMPTS[:5]) + "\n")
    out = str(tmp_path / "text_cache")
    assert main(["cache", "--diffusers", folder, "--prompts", str(text), "--out", out, "--shard-size", "2", "--batch-size", "2", "--dtype", "float16", "--quiet"]) == 0
    source = T2ICacheSource(out)
    assert source.settings["images"] is False and source.settings["dtype"] == "float16" and source.event_shape == (8, 8, 4) and len(source) == 5
    batch = source.get_batch(np.arange(5))
    np.testing.assert_array_equal(batch["x"], np.zeros((5, 8, 8, 4), np.float32))  # text-only: latent-shaped zeros
    assert batch["cond"]["embeds"].dtype == np.float32  # stored as float16, read as float32
    np.testing.assert_allclose(batch["cond"]["embeds"], encoders.encode_prompts(PROMPTS[:5])["prompt_embeds"], rtol=2e-3, atol=2e-3)
    capsys.readouterr()
    before = folder_bytes(image_cache)
    cases = [
        (["--prompts", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "new")], ["nope.txt", "missing"]),
        (["--prompts", sd[2], "--images", "file", "--out", image_cache, "--resolution", "8"], [os.path.join(image_cache, MANIFEST), "resolution: manifest 16, this run 8"]),
        (["--prompts", str(text), "--out", str(tmp_path / "new"), "--resolution", "15"], ["multiple of the VAE's downsampling factor 2"]),
    ]
    for args, fragments in cases:
        assert main(["cache", "--diffusers", folder, "--quiet", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and all(f in err for f in fragments), err
    assert main(["cache", "--diffusers", str(tmp_path), "--prompts", str(text), "--out", str(tmp_path / "new")]) == 2
    assert os.path.join(str(tmp_path), "model_index.json") + "' is missing" in capsys.readouterr().err
    broken = tmp_path / "no_vae_weights"  # every component, but the VAE's config without its weights
    os.makedirs(broken)
    for name in os.listdir(folder):
        if not os.path.isdir(os.path.join(folder, name)):
            os.symlink(os.path.join(folder, name), broken / name)
            continue
        os.makedirs(broken / name)
        for item in os.listdir(os.path.join(folder, name)):
            if name != "vae" or item == "config.json":
                os.symlink(os.path.join(folder, name, item), broken / name / item)
    assert main(["cache", "--diffusers", str(broken), "--prompts", str(text), "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vae" in err and "has no weights" in err, err
    assert not os.path.exists(tmp_path / "new") and folder_bytes(image_cache) == before


def test_bad_cache_paths_are_config_errors(tmp_path):
    with pytest.raises(ValueError) as err:
        make_source(ml_collections.ConfigDict({"name": "t2i_cache"}))
    assert "'path'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        T2ICacheSource(str(tmp_path))
    one_line(err, str(tmp_path), "manifest.json", "jaxdistill cache")
    (tmp_path / MANIFEST).write_text("{}")
    with pytest.raises(ConfigError) as err:
        T2ICacheSource(str(tmp_path))
    one_line(err, MANIFEST, "not a text-to-image cache manifest")
