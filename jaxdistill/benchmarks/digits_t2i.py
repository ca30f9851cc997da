"""digits_t2i: a tiny latent text-to-image pipeline trained by the library from scikit-learn's
digits (issue 27 §6), small enough to distil and score on 2 CPU cores.

The pipeline is a diffusers Stable Diffusion folder (Rombach et al. 2022, latent diffusion) whose
components are all small and built here:

* VAE (diffusers' ``FlaxAutoencoderKL``): 8x8 RGB digits (grey replicated, [-1, 1]) to 4x4x4
  latents, trained by ``train_vae`` on reconstruction + a small KL term (Kingma & Welling 2014);
  its ``scaling_factor`` is 1 / std of the training latents, as Stable Diffusion's;
* text encoder (transformers' ``FlaxCLIPTextModel``): seeded random weights, frozen, over the
  character tokenizer of ``models.hf.tiny`` (no download); captions name the digit in words
  (``caption``, a few templates; ``caption_digit`` reads the digit back);
* UNet (diffusers' ``FlaxUNet2DConditionModel`` with cross-attention) on the latents, trained by
  the library's denoising objective (eps prediction on the folder's DDPM process, the empty
  prompt in place of the caption 10% of the time for classifier-free guidance) on a
  ``jaxdistill cache`` of the captions and images (``train_teacher``).

``build_pipeline`` makes the whole folder from scratch; ``snapshot_path`` is its committed
snapshot (``jaxdistill.snapshot.save_folder_snapshot``), which ``teacher_folder`` restores.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdistill.benchmarks import parse_arg, with_method
from jaxdistill.build import Built
from jaxdistill.config import base_config
from jaxdistill.core.rng import derive
from jaxdistill.core.state import make_optimizer
from jaxdistill.data.prompts import ListPrompts
from jaxdistill.data.t2i_cache import T2ICacheSource, teacher_encoders, write_cache
from jaxdistill.eval.digits_classifier import DigitsEvaluator, digits_data
from jaxdistill.eval.metrics import frechet_from_features
from jaxdistill.eval.text_to_image import generate, initial_noise, latent_shape
from jaxdistill.models.hf.teacher import SDTeacher, load_sd_teacher
from jaxdistill.models.hf.tiny import random_params, write_char_tokenizer, write_text_encoder
from jaxdistill.objectives.denoising import Denoising, DenoisingObjective
from jaxdistill.snapshot import restore_folder_snapshot, save_folder_snapshot
from jaxdistill.train.engine import Trainer

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = ("a handwritten {}", "the digit {}", "a drawing of a {}")
PROMPT_LENGTH = 24  # characters + BOS + EOS: the longest caption is 20 characters
TEXT_WIDTH = 32
TOKEN_STD = 1.0  # the text encoder's token embeddings N(0, 1), 5x its position embeddings' 1 / sqrt(PROMPT_LENGTH)
IMAGE_SIZE, LATENT_SIZE, LATENT_CHANNELS = 8, 4, 4
SCHEDULER = dict(
    _class_name="DDIMScheduler", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
    clip_sample=False, set_alpha_to_one=False, steps_offset=0, timestep_spacing="trailing", prediction_type="epsilon",
)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=IMAGE_SIZE,
)
UNET_CONFIG = dict(
    sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, block_out_channels=(64,), layers_per_block=1,
    cross_attention_dim=TEXT_WIDTH, attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
)
SNAPSHOT = os.path.join("results", "digits_t2i_teacher.npz")
FOLDER, CACHE = "runs/digits_t2i/pipeline", "runs/digits_t2i/cache"
VAE_STEPS, TEACHER_STEPS = 800, 1000
GUIDANCE = 2.0  # the teacher curve's guidance weight w (x0_u + w (x0_c - x0_u))
STUDENT_UPDATES, STUDENT_BATCH = 500, 32


def caption(digit: int, template: int = 0) -> str:
    """The caption of ``digit`` in template ``template`` ("a handwritten seven")."""
    return TEMPLATES[template].format(DIGIT_WORDS[digit])


def caption_digit(text: str) -> int:
    """The digit a caption names (its last word); a ValueError if it names none."""
    words = re.findall(r"[a-z]+", text.lower())
    if not words or words[-1] not in DIGIT_WORDS:
        raise ValueError(f"caption {text!r} names no digit; expected it to end with one of {DIGIT_WORDS}")
    return DIGIT_WORDS.index(words[-1])


def eval_prompts(num: int) -> tuple[list[str], np.ndarray]:
    """``num`` evaluation captions (digit i % 10, template (i // 10) % 3) and their digits."""
    digits = np.arange(num) % 10
    return [caption(int(d), (i // 10) % len(TEMPLATES)) for i, d in enumerate(digits)], digits.astype(np.int32)


def rgb_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as RGB ``[N, 8, 8, 3]`` in [-1, 1] (grey replicated) and their labels."""
    x, y = digits_data()
    return np.repeat(x, 3, axis=-1), y


def to_grey(images: np.ndarray) -> np.ndarray:
    """Decoded RGB images ``[N, 8, 8, 3]`` as the digits classifier's ``[N, 8, 8, 1]`` in [-1, 1] (channel mean, clipped)."""
    return np.clip(np.mean(np.asarray(images, np.float32), axis=-1, keepdims=True), -1.0, 1.0)


# ----------------------------------------------------------------------------------------- the VAE
def _vae_module(scaling_factor: float = 1.0):
    from diffusers import FlaxAutoencoderKL

    return FlaxAutoencoderKL(**VAE_CONFIG, scaling_factor=scaling_factor)


def train_vae(steps: int = VAE_STEPS, batch_size: int = 128, lr: float = 1e-3, kl_weight: float = 1e-4, seed: int = 0) -> tuple[dict, float]:
    """(params, scaling_factor) of the digits VAE: Adam on E||D(z) - x||^2 + kl_weight KL(q(z|x) || N(0, I)),
    z ~ q(z|x) (Kingma & Welling 2014); the scaling factor is 1 / std of the posterior means."""
    vae = _vae_module()
    images = jnp.asarray(np.transpose(rgb_digits()[0], (0, 3, 1, 2)))  # diffusers' Flax VAE takes NCHW
    rng = jax.random.key(seed)
    params = vae.init_weights(derive(rng, "init"))
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
    opt_state = tx.init(params)

    def loss_fn(params, x, key):
        posterior = vae.apply({"params": params}, x, method=vae.encode).latent_dist
        recon = vae.apply({"params": params}, posterior.sample(key), method=vae.decode).sample
        return jnp.mean(jnp.square(recon - x)) + kl_weight * jnp.mean(posterior.kl()) / (LATENT_SIZE**2 * LATENT_CHANNELS)

    @jax.jit
    def step(params, opt_state, key):
        idx = jax.random.choice(derive(key, "batch"), images.shape[0], (batch_size,), replace=False)
        loss, grads = jax.value_and_grad(loss_fn)(params, images[idx], derive(key, "posterior"))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(rng, i))
        if (i + 1) % max(steps // 10, 1) == 0:
            logging.info("vae step %d: loss %.5f", i + 1, float(loss))
    means = vae.apply({"params": params}, images, method=vae.encode).latent_dist.mean
    return jax.device_get(params), float(1.0 / jnp.std(means))


# ---------------------------------------------------------------------------------- the folder
def write_folder(path: str, vae_params: dict, scaling_factor: float, seed: int = 0) -> str:
    """The Stable Diffusion folder at ``path``: the trained VAE, a seeded random text encoder and
    character tokenizer, a seeded random UNet (``train_teacher`` trains it), the scheduler."""
    from diffusers import FlaxUNet2DConditionModel

    os.makedirs(path, exist_ok=True)
    vocab_size = write_char_tokenizer(os.path.join(path, "tokenizer"), max_length=PROMPT_LENGTH)
    write_text_encoder(os.path.join(path, "text_encoder"), vocab_size, seed + 1, max_length=PROMPT_LENGTH, width=TEXT_WIDTH, token_std=TOKEN_STD)
    _vae_module(scaling_factor).save_pretrained(os.path.join(path, "vae"), params=vae_params)
    unet = FlaxUNet2DConditionModel(**UNET_CONFIG)
    unet.save_pretrained(os.path.join(path, "unet"), params=random_params(jax.eval_shape(unet.init_weights, jax.random.key(0)), seed + 2))
    os.makedirs(os.path.join(path, "scheduler"), exist_ok=True)
    with open(os.path.join(path, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER, f, indent=2)
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.35.2",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None], "feature_extractor": [None, None],
    }
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    return path


def write_digits_cache(sd: SDTeacher, path: str, num_digits: Optional[int] = None) -> T2ICacheSource:
    """A ``jaxdistill cache`` of every digit (or the first ``num_digits``) under each caption
    template (3 x 1,797 records): the captions' CLIP embeddings and the images' VAE latents."""
    x, y = (a[:num_digits] for a in rgb_digits())
    pixels = np.round((x + 1.0) * 127.5).astype(np.uint8)
    prompts = [caption(int(d), k) for k in range(len(TEMPLATES)) for d in y]
    images = [p for _ in TEMPLATES for p in pixels]
    write_cache(path, ListPrompts(prompts, images, {"kind": "digits_t2i", "templates": list(TEMPLATES)}), teacher_encoders(sd), with_images=True, progress=False)
    return T2ICacheSource(path)


def teacher_config(steps: int = TEACHER_STEPS, cache: str = CACHE) -> ml_collections.ConfigDict:
    """The UNet's training run: the denoising objective, batch 64, AdamW 1e-3 with cosine decay, no EMA
    (a constant 0.999 EMA over 1,000 updates would keep 0.999^1000 = 37% of the initial weights)."""
    c = with_method(base_config(), "teacher")
    c.data = ml_collections.ConfigDict({"name": "t2i_cache", "path": cache})
    c.prediction = "eps"
    c.batch_size = 64
    c.ema_decay = 0.0
    c.optim.lr, c.optim.decay_steps, c.optim.warmup_steps = 1e-3, steps, min(200, steps // 10)
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every, c.train.sample_every = steps, max(steps // 4, 1), max(steps // 20, 1), 0
    c.train.async_checkpoint = False
    return c


def train_teacher(folder: str, workdir: str, config: ml_collections.ConfigDict, show_progress: bool = False) -> dict:
    """Train the folder's UNet with the library's denoising objective on the cache ``config.data.path``
    and write its EMA weights into ``folder/unet``; returns the training summary."""
    sd = load_sd_teacher(folder)
    source = T2ICacheSource(config.data.path)
    objective = DenoisingObjective(
        settings=Denoising(**config.denoising), denoiser=sd.denoiser(), init_fn=sd.network.init, tx=make_optimizer(config.optim),
        event_shape=source.event_shape, ema_decay=float(config.ema_decay), sampler="ddim", grid="trailing", eval_nfes=(1,),
    )
    built = Built(config, objective, {}, source.event_shape, source)
    result = Trainer(objective, {}, config, workdir, built.data_factory, show_progress=show_progress).train()
    params = jax.device_get(result.trainable["model"].eval_params)["params"]["unet"]
    unet = sd.network.module.unet
    shutil.rmtree(os.path.join(folder, "unet"))
    unet.save_pretrained(os.path.join(folder, "unet"), params=params)
    return {"steps": int(result.step), "seconds": float(result.seconds), "loss": result.last_metrics.get("loss")}


def build_pipeline(folder: str = FOLDER, cache: str = CACHE, workdir: str = "runs/digits_t2i/teacher", vae_steps: int = VAE_STEPS,
                   teacher_steps: int = TEACHER_STEPS, snapshot: Optional[str] = SNAPSHOT) -> dict:
    """The whole pipeline from scratch (VAE, folder, cache, UNet teacher), its snapshot written to
    ``snapshot``; returns what was done and how long each part took."""
    start = time.time()
    vae_params, scaling = train_vae(vae_steps)
    vae_seconds = time.time() - start
    write_folder(folder, vae_params, scaling)
    write_digits_cache(load_sd_teacher(folder), cache)
    summary = train_teacher(folder, workdir, teacher_config(teacher_steps, cache))
    info = {"vae_steps": vae_steps, "vae_seconds": round(vae_seconds, 1), "scaling_factor": scaling, "teacher": summary,
            "total_seconds": round(time.time() - start, 1)}
    if snapshot:  # the benchmark's teacher is the snapshot's (float16-rounded) weights, also right after training
        save_folder_snapshot(folder, snapshot, info)
        shutil.rmtree(folder)
        restore_folder_snapshot(snapshot, folder)
    return info


def teacher_folder(folder: str = FOLDER, snapshot: str = SNAPSHOT) -> str:
    """The pipeline folder, restored from the committed snapshot unless it is already there."""
    if not os.path.isfile(os.path.join(folder, "model_index.json")):
        restore_folder_snapshot(snapshot, folder)
    return folder


# -------------------------------------------------------------------------------------- students
def student(method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """``method`` distilling the pipeline's UNet (``teacher.kind='diffusers'`` on ``FOLDER``) from
    the captions' cache ``CACHE``: STUDENT_UPDATES updates of STUDENT_BATCH, cosine decay over the
    run, scored at NFE 1, 2, 4 and, where the student samples with guidance, w = GUIDANCE. ``smoke``:
    2 updates of 4 (its folder and cache paths come from overrides, as in the tests)."""
    is_smoke, _ = parse_arg(arg)
    c = with_method(base_config(), method)
    c.teacher.kind, c.teacher.path = "diffusers", FOLDER
    c.data = ml_collections.ConfigDict({"name": "t2i_cache", "path": CACHE})
    c.prior_mean = "zero"
    c.batch_size = 4 if is_smoke else STUDENT_BATCH
    c.train.num_steps = 2 if is_smoke else STUDENT_UPDATES
    c.train.checkpoint_every, c.train.log_every, c.train.sample_every = max(c.train.num_steps // 4, 1), max(c.train.num_steps // 20, 1), 0
    c.train.async_checkpoint = False
    c.optim.decay_steps, c.optim.warmup_steps = c.train.num_steps, min(100, c.train.num_steps // 10)
    c.eval.nfes = (1, 2, 4)
    c.eval.guidance = GUIDANCE
    return c


# --------------------------------------------------------------------------------------- scoring
def adherence(evaluator: DigitsEvaluator, grey: np.ndarray, captions: list[str]) -> float:
    """Prompt adherence: the share of images the digits classifier reads as the digit their caption names."""
    return evaluator.accuracy(grey, np.asarray([caption_digit(c) for c in captions], np.int32))


def score(evaluator: DigitsEvaluator, grey: np.ndarray, captions: list[str]) -> dict[str, float]:
    """FD-digits against all real digits and prompt adherence of ``[N, 8, 8, 1]`` images."""
    return {"fd_digits": float(evaluator.fd_digits(grey)), "adherence": float(adherence(evaluator, grey, captions))}


def noise_floor(evaluator: DigitsEvaluator, seed: int = 0) -> dict[str, float]:
    """The floor: FD-digits between two random halves of the real digits, and the classifier's
    adherence on every real digit under its true caption."""
    x, y = digits_data()
    perm = np.random.default_rng(seed).permutation(len(x))
    half_a, half_b = x[perm[: len(x) // 2]], x[perm[len(x) // 2:]]
    fd = frechet_from_features(evaluator.features(half_a), evaluator.features(half_b))
    return {"fd_digits": float(fd), "adherence": float(adherence(evaluator, x, [caption(int(d)) for d in y]))}


def reconstruction(sd: SDTeacher, evaluator: DigitsEvaluator) -> dict[str, float]:
    """The VAE's decode(encode(x)) of every real digit, scored like samples (its captions the true ones)."""
    x, y = rgb_digits()
    grey = to_grey(sd.decode_latents(sd.encode_images(x)))
    return score(evaluator, grey, [caption(int(d)) for d in y])


def teacher_images(sd: SDTeacher, captions: list[str], nfe: int, sampler: str, guidance: float = GUIDANCE, seed: int = 0) -> np.ndarray:
    """The teacher's decoded samples for ``captions`` (``eval.text_to_image.generate``), grey."""
    return to_grey(generate(sd, captions, nfe=nfe, guidance=guidance, sampler=sampler, seed=seed, batch_size=500).images)


def student_images(sd: SDTeacher, objective, trainable, frozen, captions: list[str], nfe: int, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """A trained student's decoded samples at ``nfe`` (its own sampler, ``objective.generate``) from
    the same noise as ``teacher_images``, grey."""
    z = initial_noise(seed, len(captions), latent_shape(sd))
    run = jax.jit(lambda trainable, frozen, z, cond, rng: objective.generate(trainable, frozen, z, cond, nfe=nfe, rng=rng))
    images = []
    for start in range(0, len(captions), batch_size):
        cond = sd.text_condition(captions[start:start + batch_size])
        latents = run(trainable, frozen, z[start:start + batch_size], cond, jax.random.fold_in(jax.random.key(seed + 1), start))
        images.append(sd.decode_latents(latents))
    return to_grey(np.concatenate(images))
