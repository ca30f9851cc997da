"""Text-to-image sampling of a Stable Diffusion folder (issue 27 section 5): ``jaxdistill sample
--diffusers DIR --prompt ...`` against the library's samplers and diffusers' Flax pipeline, on a
tiny random folder (``write_tiny_sd``)."""
import os
import re

import jax
import numpy as np
import pytest
from PIL import Image
from test_sd_teacher import flax_ddim_pipeline_images

from jaxdistill.cli import main
from jaxdistill.diffusion import samplers, steps
from jaxdistill.eval import text_to_image
from jaxdistill.plots import image_grid

PROMPTS, NEGATIVES, GUIDANCE, NFE = ["a cat", "a dog"], ["blur", "ugly"], 4.0, 4


@pytest.fixture(scope="module")
def cli_ddim(sd15, tmp_path_factory):
    """The CLI's grid and arrays: 2 prompts x 3 images, DDIM, 4 steps, per-prompt negative prompts, in two batches of 3."""
    path, _ = sd15
    out = tmp_path_factory.mktemp("cli")
    args = ["sample", "--diffusers", path, "--nfe", str(NFE), "--guidance", str(GUIDANCE), "--sampler", "ddim", "--seed", "5",
            "--num-per-prompt", "3", "--batch-size", "3", "--out", str(out / "grid.png"), "--npz", str(out / "grid.npz"), "--quiet"]
    for prompt, negative in zip(PROMPTS, NEGATIVES):
        args += ["--prompt", prompt, "--negative-prompt", negative]
    assert main(args) == 0
    return out / "grid.png", dict(np.load(out / "grid.npz"))


def test_the_cli_images_are_the_library_samplers_and_vae_decode_from_the_seed(sd15, cli_ddim):
    _, teacher = sd15
    _, arrays = cli_ddim
    assert list(arrays["prompts"]) == ["a cat"] * 3 + ["a dog"] * 3 and list(arrays["negative_prompts"]) == ["blur"] * 3 + ["ugly"] * 3
    denoiser, s = teacher.denoiser(), teacher.scheduler
    ts = steps.get_grid(s.spacing, s.process, NFE, t_end=s.t_end, steps_offset=s.steps_offset, scheduler="ddim")
    z = jax.random.normal(jax.random.key(5), (6, 8, 8, 4))
    run = jax.jit(lambda params, z, ts, cond, w: samplers.sample(lambda x, t: denoiser.x0(params, x, t, cond, guidance=w), s.process, z, ts, "ddim"))
    for start in (0, 3):  # the CLI's batches of 3 images
        stop = start + 3
        cond = teacher.text_condition(list(arrays["prompts"][start:stop]), list(arrays["negative_prompts"][start:stop]))
        latents = run(teacher.unet_params, z[start:stop], ts, cond, np.float32(GUIDANCE))
        np.testing.assert_array_equal(arrays["latents"][start:stop], latents)
        np.testing.assert_array_equal(arrays["images"][start:stop], teacher.decode_latents(latents))
    assert np.max(np.abs(arrays["latents"] - np.asarray(z))) > 0.1  # the sampler moved the noise
    assert not np.allclose(arrays["images"][0], arrays["images"][1], atol=1e-3)  # one noise draw per image


def test_the_png_is_the_grid_one_row_per_prompt(cli_ddim):
    png, arrays = cli_ddim
    with Image.open(png) as picture:
        assert picture.mode == "RGB" and picture.size == (3 * 17 - 1, 2 * 17 - 1)  # 3 images of 16 px per row, 1 px apart
        pixels = np.asarray(picture)
    np.testing.assert_array_equal(pixels, np.round(image_grid(arrays["images"], 3) * 255.0).astype(np.uint8))
    assert not [name for name in os.listdir(png.parent) if name.endswith(".tmp")]


def test_the_ddim_route_reproduces_the_flax_pipeline_with_its_guidance_scale(sd15, cli_ddim):
    """--guidance is diffusers' guidance_scale: the pipeline from the same noise, negative prompts and w gives the CLI's images."""
    path, teacher = sd15
    _, arrays = cli_ddim
    first = [0, 3]  # each prompt's first image (the pipeline call of test_sd_teacher, so its compiled form is reused)
    z = text_to_image.initial_noise(5, 6, text_to_image.latent_shape(teacher))[np.asarray(first)]
    reference = flax_ddim_pipeline_images(path, teacher, PROMPTS, NEGATIVES, GUIDANCE, NFE, z)
    ours = np.clip(arrays["images"][first] / 2 + 0.5, 0.0, 1.0)
    assert ((ours > 0.01) & (ours < 0.99)).mean() > 0.5  # the comparison is not hidden by the clipping
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_each_sampler_name_follows_its_diffusers_schedulers_spacing(sd15):
    """SD 1.5's config (leading, steps_offset 1, set_alpha_to_one false): DDIM ends at abar_0 (t = 1),
    DPM-Solver spaces n + 1 points and drops 0, Euler spaces as DDIM; both end at t = 0."""
    s = sd15[1].scheduler
    np.testing.assert_array_equal(text_to_image.timesteps(s, "ddim", 4), [752, 502, 252, 2, 1])
    np.testing.assert_array_equal(text_to_image.timesteps(s, "dpmpp_2m", 4), [802, 602, 402, 202, 0])
    np.testing.assert_array_equal(text_to_image.timesteps(s, "euler", 4), [752, 502, 252, 2, 0])
    assert text_to_image.grid_columns(5, 1) == 3 and text_to_image.grid_columns(5, 4) == 4


@pytest.mark.parametrize("args, message", [
    (["--diffusers", "{missing}", "--prompt", "a cat"], "does not exist"),
    (["--diffusers", "{sd}"], "no prompts"),
    (["--diffusers", "{sd}", "--prompt", "a cat", "--nfe", "0"], "nfe must be a positive integer"),
    (["--diffusers", "{sd}", "--prompt", "a cat", "--sampler", "heun2"], "unknown sampler 'heun2'"),
    (["--diffusers", "{sd}", "--prompt", "a cat", "--nfe", "1001"], "nfe 1001: .*1000"),
    (["--diffusers", "{sd}", "--prompt", "a", "--prompt", "b", "--prompt", "c", "--negative-prompt", "x", "--negative-prompt", "y"], "2 negative prompts for 3"),
    (["--workdir", "{sd}", "--diffusers", "{sd}", "--prompt", "a cat"], "one of --workdir"),
    (["--workdir", "{missing}", "--guidance", "3"], "--guidance, --npz go with --prompt"),
    (["--workdir", "{missing}", "--prompt", "a cat", "--guidance", "3"], "no checkpoints in"),
    (["--workdir", "{missing}", "--prompt", "a cat", "--sampler", "ddim"], "--sampler does not go with --workdir --prompt"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(sd15, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid.png").write_bytes(b"old")
    args = [a.format(sd=sd15[0], missing=str(tmp_path / "nowhere")) for a in args]
    assert main(["sample", *args, "--out", str(out / "grid.png"), "--npz", str(out / "grid.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert sorted(os.listdir(out)) == ["grid.png"] and (out / "grid.png").read_bytes() == b"old"
