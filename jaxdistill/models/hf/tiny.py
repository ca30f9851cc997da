"""Tiny Stable Diffusion folders with random weights, for tests and CPU smoke runs.

``write_tiny_sd(path, kind)`` writes what ``save_pretrained`` of the diffusers / transformers Flax
classes writes for each component, plus ``model_index.json`` and the scheduler's config, in the
layout of the published folders (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``; SDXL adds ``text_encoder_2/`` and ``tokenizer_2/``). Kinds:

* ``"sd15"``: SD 1.5-like, eps prediction, scaled-linear betas, DDIM ``leading`` spacing, offset 1;
* ``"sd2v"``: SD 2.x-like, v prediction;
* ``"sdxl"``: SDXL-like, two text encoders (the second with a projection), ``text_time`` added
  conditioning (pooled text embeddings and six time ids), ``trailing`` spacing.

``write_tiny_dinov2(path)`` writes a tiny random DINOv2 (ADD's discriminator features, ``models.hf.dinov2``).

The tokenizer is a byte-level CLIP BPE with no merges (one token per character); sizes are
chosen so a UNet call on 8x8x4 latents takes milliseconds on a CPU; the UNet keeps 64 channels,
since its GroupNorm has 32 groups and with one channel per group it would cancel the timestep
embedding (a per-channel shift). Weights are drawn with numpy
from the shapes ``jax.eval_shape`` gives (compiling the classes' own initialisers takes tens of
seconds on a CPU): kernels and embeddings N(0, 1 / fan_in), norm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import jax
import numpy as np
from flax import traverse_util

from jaxdistill.core.paths import PathLike
from jaxdistill.core.types import PyTree

KINDS = ("sd15", "sd2v", "sdxl")
PROMPT_LENGTH = 8  # tokenizer model_max_length: BOS + up to 6 characters + EOS
TEXT_WIDTH = 16  # each text encoder's hidden size
LATENT_CHANNELS = 4
IMAGE_SIZE = 16  # the VAE halves it once: 8x8 latents

_SCHEDULER = dict(
    _class_name="DDIMScheduler", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading",
)


def random_params(shapes: PyTree, seed: int) -> PyTree:
    """numpy float32 weights for the abstract tree ``shapes``: norm scales 1 + N(0, 0.1^2), biases
    N(0, 0.1^2), the rest N(0, 1 / fan_in) (no two parameters alike, so a misplaced one shows)."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        if path[-1] in ("scale", "bias"):
            flat[path] = (float(path[-1] == "scale") + 0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
        else:
            fan_in = int(np.prod(leaf.shape[:-1])) or 1
            flat[path] = (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)
    return traverse_util.unflatten_dict(flat)


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (the alphabet of CLIP's byte-level BPE)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def write_char_tokenizer(path: str, max_length: int = PROMPT_LENGTH) -> int:
    """A CLIP tokenizer of single characters (with and without the end-of-word mark) padding or
    truncating to ``max_length`` tokens; needs no download. Returns its vocabulary size."""
    from transformers import CLIPTokenizer

    os.makedirs(path, exist_ok=True)
    chars = _byte_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(path, "vocab.json"), "w") as f:
        json.dump({tok: i for i, tok in enumerate(tokens)}, f)
    with open(os.path.join(path, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    tokenizer = CLIPTokenizer(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"), model_max_length=max_length)
    tokenizer.save_pretrained(path)
    return len(tokens)


def write_text_encoder(
    path: str, vocab_size: int, seed: int, projection: bool = False, max_length: int = PROMPT_LENGTH, width: int = TEXT_WIDTH, layers: int = 2,
    token_std: Optional[float] = None,
) -> None:
    """A seeded random CLIP text encoder (``projection``: with the projection of SDXL's second
    encoder) of ``layers`` layers of ``width`` for ``write_char_tokenizer``'s tokens. ``token_std``
    redraws the token embeddings as N(0, token_std^2) (``random_params`` gives them 1 / sqrt(vocab_size),
    small beside the position embeddings' 1 / sqrt(max_length), so captions then differ little)."""
    from transformers import CLIPTextConfig, FlaxCLIPTextModel, FlaxCLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=2,
        max_position_embeddings=max_length, projection_dim=width, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    cls = FlaxCLIPTextModelWithProjection if projection else FlaxCLIPTextModel
    model = cls(config, _do_init=False)
    params = random_params(model.params_shape_tree, seed)
    if token_std is not None:
        table = params["text_model"]["embeddings"]["token_embedding"]["embedding"]
        params["text_model"]["embeddings"]["token_embedding"]["embedding"] = (table * (token_std * np.sqrt(vocab_size))).astype(np.float32)
    model.save_pretrained(path, params=params)


def _write_unet(path: str, kind: str, seed: int) -> None:
    from diffusers import FlaxUNet2DConditionModel

    extra = {}
    if kind == "sdxl":
        extra = dict(addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=TEXT_WIDTH + 6 * 8)
    unet = FlaxUNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, block_out_channels=(64,), layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH * (2 if kind == "sdxl" else 1), attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",), **extra,
    )
    unet.save_pretrained(path, params=random_params(jax.eval_shape(unet.init_weights, jax.random.key(0)), seed))


def _write_vae(path: str, seed: int) -> None:
    from diffusers import FlaxAutoencoderKL

    vae = FlaxAutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=IMAGE_SIZE, scaling_factor=0.5,
    )
    vae.save_pretrained(path, params=random_params(jax.eval_shape(vae.init_weights, jax.random.key(0)), seed))


def write_tiny_sd(path: PathLike, kind: str = "sd15", seed: int = 0) -> str:
    """Write a tiny random Stable Diffusion folder of ``kind`` (``KINDS``) to ``path``; returns ``path``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    with jax.default_device(jax.devices("cpu")[0]):
        vocab_size = write_char_tokenizer(os.path.join(path, "tokenizer"))
        write_text_encoder(os.path.join(path, "text_encoder"), vocab_size, seed + 1, projection=False)
        _write_unet(os.path.join(path, "unet"), kind, seed + 2)
        _write_vae(os.path.join(path, "vae"), seed + 3)
        index = {
            "_class_name": "StableDiffusionXLPipeline" if kind == "sdxl" else "StableDiffusionPipeline",
            "_diffusers_version": "0.35.2",
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"],
        }
        if kind == "sdxl":
            write_char_tokenizer(os.path.join(path, "tokenizer_2"))
            write_text_encoder(os.path.join(path, "text_encoder_2"), vocab_size, seed + 4, projection=True)
            index.update(text_encoder_2=["transformers", "CLIPTextModelWithProjection"], tokenizer_2=["transformers", "CLIPTokenizer"])
    scheduler = dict(_SCHEDULER, prediction_type="v_prediction" if kind == "sd2v" else "epsilon")
    if kind == "sdxl":
        scheduler.update(timestep_spacing="trailing", steps_offset=0)
    os.makedirs(os.path.join(path, "scheduler"), exist_ok=True)
    with open(os.path.join(path, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(scheduler, f, indent=2)
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    return path


def write_tiny_dinov2(path: PathLike, seed: int = 0) -> str:
    """Write a tiny random DINOv2 folder (``FlaxDinov2Model.save_pretrained``'s layout: 4 blocks of width
    16, 28x28 inputs in 14x14 patches) to ``path``, ADD's feature network in tests and smoke runs; returns ``path``."""
    from transformers import Dinov2Config, FlaxDinov2Model

    path = os.fspath(path)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=28, patch_size=14)
    model = FlaxDinov2Model(config, _do_init=False)
    model.save_pretrained(path, params=random_params(model.params_shape_tree, seed))
    return path
