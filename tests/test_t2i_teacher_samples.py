"""A prompt cache of the teacher's own samples (``jaxdistill cache --teacher-samples``, LADD's synthetic data): the
stored latents are the teacher sampler's output from per-record seeded noise, a sharded and resumed cache is the
straight one byte for byte, other sampler settings are refused with nothing touched, and LADD refuses a text-only cache."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.cli import main
from jaxdistill.data.prompts import TextFilePrompts
from jaxdistill.data.t2i_cache import MANIFEST, T2ICacheSource, teacher_encoders, write_cache
from jaxdistill.eval.text_to_image import generate, teacher_samples

PROMPTS = ["a cat", "red", "moon"]
SAMPLING = dict(nfe=2, guidance=3.0, sampler="ddim", seed=7)
CLI_SAMPLING = ["--teacher-samples", "--teacher-nfe", "2", "--guidance", "3", "--sampler", "ddim", "--seed", "7"]
LAYOUT = ["--shard-size", "2", "--batch-size", "2", "--quiet"]  # shards of 2 and 1 records; a padded last batch


def folder_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def samples_cache(sd15, tmp_path_factory):
    """(folder, prompt file, a cache of the teacher's samples for PROMPTS written through the CLI)."""
    folder, _ = sd15
    root = tmp_path_factory.mktemp("teacher_samples")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    out = str(root / "cache")
    assert main(["cache", "--diffusers", folder, "--prompts", str(root / "prompts.txt"), "--out", out, *CLI_SAMPLING, *LAYOUT]) == 0
    return folder, str(root / "prompts.txt"), out


def test_the_cached_latents_are_the_teacher_samplers_output_for_the_prompts_and_record_seeds(sd15, samples_cache):
    """Record i holds ``generate``'s DDIM latents (guided against the empty prompt) from z_i = N(0, I) drawn with
    fold_in(key(seed), i), and the manifest records how they were drawn."""
    _, sd = sd15
    _, _, out = samples_cache
    source = T2ICacheSource(out)
    assert source.latents == "teacher_samples" and source.settings["images"] is False
    assert source.settings["teacher_samples"] == {"unet": "sd/unet", "sampler": "ddim", "nfe": 2, "guidance": 3.0, "negative_prompt": "", "seed": 7}
    batch = source.get_batch(np.arange(len(PROMPTS)))
    key = jax.random.key(SAMPLING["seed"])
    noise = jnp.stack([jax.random.normal(jax.random.fold_in(key, i), source.event_shape) for i in range(len(PROMPTS))])
    want = generate(sd, PROMPTS, nfe=2, guidance=3.0, sampler="ddim", noise=noise, batch_size=len(PROMPTS)).latents
    np.testing.assert_allclose(batch["x"], want, rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(batch["x"][0] - batch["x"][1]) > 0) and np.all(np.abs(batch["x"] - noise) > 0)  # sampled, not the noise


def test_a_sharded_then_resumed_cache_is_the_straight_one_byte_for_byte(sd15, samples_cache, tmp_path):
    folder, prompt_file, straight = samples_cache
    _, sd = sd15
    encoders, prompts = teacher_encoders(sd), TextFilePrompts(prompt_file)
    samples = teacher_samples(sd, resolution=encoders.settings["resolution"], **SAMPLING)
    out = str(tmp_path / "c")
    write = lambda index: write_cache(out, prompts, encoders, batch_size=2, shard_size=2, teacher_samples=samples, process_index=index, process_count=2, progress=False)  # noqa: E731
    write(1)
    assert sorted(f for f in os.listdir(out) if f.startswith("shard")) == ["shard-00001-of-00002.npz"]
    write(0)
    assert folder_bytes(out) == folder_bytes(straight)
    os.remove(os.path.join(out, "shard-00000-of-00002.npz"))
    write(0)
    assert folder_bytes(out) == folder_bytes(straight)


def test_other_sampler_settings_and_bad_flags_are_refused_with_exit_2_and_nothing_touched(samples_cache, tmp_path, capsys):
    folder, prompt_file, out = samples_cache
    before = {name: (os.stat(os.path.join(out, name)).st_mtime_ns, data) for name, data in folder_bytes(out).items()}
    common = ["cache", "--diffusers", folder, "--prompts", prompt_file, *LAYOUT]
    capsys.readouterr()
    other = [a if a != "2" else "3" for a in CLI_SAMPLING]  # --teacher-nfe 3
    cases = [
        ([*common, "--out", out, *other], [os.path.join(out, MANIFEST), "teacher_samples: manifest", "'nfe': 2", "'nfe': 3"]),
        ([*common, "--out", out], [os.path.join(out, MANIFEST), "teacher_samples: manifest {"]),  # the same prompts, text only
        ([*common, "--out", str(tmp_path / "new"), "--guidance", "2"], ["--guidance", "needs --teacher-samples"]),
        ([*common, "--out", str(tmp_path / "new"), "--teacher-samples", "--sampler", "heun"], ["unknown sampler 'heun'"]),
    ]
    for args, fragments in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and all(f in err for f in fragments), err
    assert not os.path.exists(tmp_path / "new")
    assert {name: (os.stat(os.path.join(out, name)).st_mtime_ns, data) for name, data in folder_bytes(out).items()} == before
