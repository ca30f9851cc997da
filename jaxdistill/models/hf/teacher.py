"""A Stable Diffusion teacher loaded from a diffusers folder: UNet, VAE, text encoder(s), tokenizer(s).

``load_sd_teacher(path)`` checks the folder (``folder.check_folder``), loads each component with
the diffusers / transformers Flax classes (``from_pretrained(path, subfolder=...)``) and, where
a component ships only PyTorch ``.safetensors``, converts it without torch: numpy arrays from
``safetensors.numpy`` through diffusers' own PyTorch-to-Flax renaming helpers (UNet, VAE) or
transformers' ``from_pt`` path, which reads safetensors without torch (CLIP). ``.bin`` pickles
need torch and are refused by the folder check.

The teacher (Rombach et al. 2022, "High-resolution image synthesis with latent diffusion models";
SDXL: Podell et al. 2023) is

* ``denoiser()``: the UNet as a ``Denoiser`` of the scheduler's ``DDPM`` process and prediction
  kind, fed diffusers' timestep t - 1, with params ``unet_params``;
* ``encode_prompts`` / ``text_condition``: CLIP embeddings as diffusers' pipelines compute them
  (SD 1.x / 2.x: the last hidden state; SDXL: both encoders' penultimate hidden states
  concatenated, and the second encoder's projected pooled embedding);
* ``encode_images`` / ``decode_latents``: NHWC images in [-1, 1] to latents
  (VAE posterior mean - shift_factor) * scaling_factor, and back.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.core.types import Array, PyTree
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.models.hf.folder import FLAX_WEIGHTS, TORCH_FREE_WEIGHTS, FolderInfo, SchedulerSettings, check_folder, read_json, scheduler_settings
from jaxdistill.models.hf.unet import TextNetwork, unet_network

COND_PROJ = ("time_embedding", "cond_proj", "kernel")  # where diffusers' converter puts PyTorch's time_embedding.cond_proj.weight


def _load_diffusers_model(cls, folder: str, name: str, weights: str):
    """(module, params) of a diffusers Flax class from ``folder/name``: Flax msgpack read whole (unlike
    ``from_pretrained``, which drops parameters its class lacks, such as an LCM's
    ``time_embedding/cond_proj``), or PyTorch safetensors read as numpy and renamed / transposed by
    diffusers' own helpers against the module's abstract parameter tree (no torch, and no random
    initialisation of the full model)."""
    module = cls.from_config(cls.load_config(folder, subfolder=name))
    if weights == "flax":
        from flax.serialization import msgpack_restore

        path = os.path.join(folder, name, FLAX_WEIGHTS[name])
        try:
            with open(path, "rb") as f:
                return module, msgpack_restore(f.read())
        except (OSError, ValueError) as err:
            raise CheckpointFileError(f"{path!r} is no readable Flax msgpack file ({type(err).__name__}: {err})") from None
    from diffusers.models.modeling_flax_pytorch_utils import rename_key, rename_key_and_reshape_tensor
    from safetensors.numpy import load_file

    shapes = traverse_util.flatten_dict(jax.eval_shape(module.init_weights, jax.random.key(0)))
    flat = {}
    for pt_key, tensor in load_file(os.path.join(folder, name, TORCH_FREE_WEIGHTS[name])).items():
        key, value = rename_key_and_reshape_tensor(tuple(rename_key(pt_key).split(".")), tensor.astype(np.float32), shapes)
        flat[key] = value
    return module, traverse_util.unflatten_dict(flat)


def _check_params(module, params: PyTree, source: str) -> None:
    """Every parameter the module expects, with its shape (nothing allocated)."""
    expected = traverse_util.flatten_dict(jax.eval_shape(module.init_weights, jax.random.key(0)), sep="/")
    got = traverse_util.flatten_dict(params, sep="/")
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise CheckpointFileError(f"{source!r} does not match its config: it lacks {missing[:3]} and has extra {extra[:3]}")
    for key in expected:
        if tuple(got[key].shape) != tuple(expected[key].shape):
            raise CheckpointFileError(f"{source!r}: {key} has shape {list(got[key].shape)}, its config expects {list(expected[key].shape)}")


def unet_denoiser(network: TextNetwork, scheduler: SchedulerSettings) -> Denoiser:
    """``network`` (a Stable Diffusion UNet) as a ``Denoiser`` of the scheduler's process and
    prediction; it feeds the network diffusers' timestep k = t - 1 (``DDPM.timestep``) and keeps
    any guidance column."""
    process = scheduler.process

    def apply(params, x, t, cond, **kwargs):
        t = jnp.asarray(t, jnp.float32)
        step = process.timestep(t) if t.ndim == 1 else t.at[:, 0].set(process.timestep(t[:, 0]))
        return network.apply(params, x, step, cond, **kwargs)

    return Denoiser(apply, process, scheduler.prediction)


@dataclasses.dataclass(frozen=True, eq=False)
class VaeDecoder:
    """A Stable Diffusion VAE's decoder as a traceable (differentiable) function: NHWC latents to
    NHWC images (about [-1, 1], unclipped), decode(latents / scaling_factor + shift_factor)."""

    vae: object  # FlaxAutoencoderKL
    shift: float = 0.0

    def __call__(self, params: PyTree, latents: Array) -> Array:
        z = jnp.transpose(latents / self.vae.scaling_factor + self.shift, (0, 3, 1, 2))
        images = self.vae.apply({"params": params}, z, method=self.vae.decode).sample  # NCHW
        return jnp.transpose(images, (0, 2, 3, 1))


def load_sd_vae(path: str) -> tuple[VaeDecoder, PyTree]:
    """(the decoder, the VAE's params) of the Stable Diffusion folder at ``path``, without its UNet or text encoders."""
    from diffusers import FlaxAutoencoderKL

    info = check_folder(path)
    vae, params = _load_diffusers_model(FlaxAutoencoderKL, info.path, "vae", info.weights["vae"])
    _check_params(vae, params, os.path.join(info.path, "vae"))
    return VaeDecoder(vae, float(info.configs["vae"].get("shift_factor") or 0.0)), params


@dataclasses.dataclass(frozen=True, eq=False)
class SDTeacher:
    """The components of a Stable Diffusion folder in the library's terms (see the module docstring)."""

    network: TextNetwork
    unet_params: PyTree  # {"params": {"unet": diffusers' UNet params, ["time_cond_proj": ...]}}
    vae: object  # FlaxAutoencoderKL
    vae_params: PyTree
    text_encoders: tuple  # FlaxCLIPTextModel (SDXL: and FlaxCLIPTextModelWithProjection)
    text_encoder_params: tuple  # their params, in the same order
    tokenizers: tuple  # CLIPTokenizer per text encoder
    scheduler: SchedulerSettings
    info: FolderInfo

    @property
    def sdxl(self) -> bool:
        return self.info.sdxl

    @property
    def latent_channels(self) -> int:
        return int(self.vae.latent_channels)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent along each side: 2^(number of VAE blocks - 1)."""
        return 2 ** (len(self.vae.block_out_channels) - 1)

    def denoiser(self) -> Denoiser:
        """The UNet as a ``Denoiser`` of the scheduler's process and prediction (``unet_denoiser``)."""
        return unet_denoiser(self.network, self.scheduler)

    def _token_ids(self, tokenizer, prompts: Sequence[str]) -> np.ndarray:
        return tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="np").input_ids

    @functools.cached_property
    def _text_fns(self) -> tuple:
        """Per text encoder, jit-compiled ids -> (last hidden state, penultimate hidden state, projected pooled or None)."""
        def outputs(encoder, params, ids):
            out = encoder(ids, params=params, output_hidden_states=True)
            return out["last_hidden_state"], out["hidden_states"][-2], out.get("text_embeds")

        return tuple(jax.jit(functools.partial(outputs, encoder)) for encoder in self.text_encoders)

    @functools.cached_property
    def _vae_fns(self) -> tuple:
        """Jit-compiled NCHW images -> posterior mean (NHWC), and NHWC latents -> NCHW images. diffusers'
        decode takes NHWC latents as they are and transposes any other layout, which it tells by the last
        axis: NCHW latents whose width equals the latent channels (4x4x4) would be read as NHWC."""
        encode = lambda params, images: self.vae.apply({"params": params}, images, method=self.vae.encode).latent_dist.mean  # noqa: E731
        decode = lambda params, latents: self.vae.apply({"params": params}, latents, method=self.vae.decode).sample  # noqa: E731
        return jax.jit(encode), jax.jit(decode)

    def encode_prompts(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """``{"prompt_embeds": [B, L, D]}`` (SDXL also ``"pooled_prompt_embeds": [B, P]``), float32,
        as diffusers' Flax pipelines compute them."""
        if isinstance(prompts, str) or not len(prompts):
            raise ValueError(f"encode_prompts takes a non-empty list of strings, got {prompts!r}")
        outs = [fn(params, self._token_ids(tokenizer, prompts)) for fn, params, tokenizer in zip(self._text_fns, self.text_encoder_params, self.tokenizers)]
        if not self.sdxl:
            return {"prompt_embeds": np.asarray(outs[0][0], np.float32)}
        hidden = [np.asarray(penultimate, np.float32) for _, penultimate, _ in outs]
        pooled = outs[-1][2]
        return {"prompt_embeds": np.concatenate(hidden, axis=-1), "pooled_prompt_embeds": np.asarray(pooled, np.float32)}

    def time_ids(self, batch: int, image_size: Optional[tuple[int, int]] = None) -> np.ndarray:
        """SDXL's time ids (original size, crop top-left (0, 0), target size) for ``image_size``
        (pixels; default the UNet's sample size times the VAE's scale factor), [batch, 6]."""
        if image_size is None:
            side = int(self.network.module.unet.sample_size) * self.vae_scale_factor
            image_size = (side, side)
        return np.tile(np.asarray([*image_size, 0, 0, *image_size], np.float32), (batch, 1))

    def text_condition(
        self, prompts: list[str], negative_prompts: Optional[list[str]] = None, *, image_size: Optional[tuple[int, int]] = None
    ) -> TextCondition:
        """The ``TextCondition`` of ``prompts``, with the negative prompts (default: the empty
        prompt) as the unconditional branch of classifier-free guidance."""
        negative_prompts = [""] * len(prompts) if negative_prompts is None else list(negative_prompts)
        if len(negative_prompts) != len(prompts):
            raise ValueError(f"{len(negative_prompts)} negative prompts for {len(prompts)} prompts")
        pos, neg = self.encode_prompts(prompts), self.encode_prompts(negative_prompts)
        as_jnp = lambda d, k: None if k not in d else jnp.asarray(d[k])  # noqa: E731
        time_ids = jnp.asarray(self.time_ids(len(prompts), image_size)) if self.sdxl else None
        return TextCondition(
            as_jnp(pos, "prompt_embeds"), as_jnp(pos, "pooled_prompt_embeds"), time_ids, as_jnp(neg, "prompt_embeds"), as_jnp(neg, "pooled_prompt_embeds")
        )

    def encode_images(self, images: Array) -> np.ndarray:
        """Latents [B, h, w, C] of NHWC images in [-1, 1]: (posterior mean - shift_factor) * scaling_factor."""
        images = jnp.asarray(images, jnp.float32)
        if images.ndim != 4 or images.shape[-1] != int(self.vae.in_channels):
            raise ValueError(f"encode_images takes NHWC images with {self.vae.in_channels} channels, got shape {images.shape}")
        mean = self._vae_fns[0](self.vae_params, jnp.transpose(images, (0, 3, 1, 2)))  # diffusers' Flax VAE returns NHWC latents
        latents = (mean - self._shift) * self.vae.scaling_factor
        return np.asarray(latents, np.float32)

    def decode_latents(self, latents: Array) -> np.ndarray:
        """NHWC images (about [-1, 1], unclipped) of latents [B, h, w, C]: decode(latents / scaling_factor + shift_factor)."""
        latents = jnp.asarray(latents, jnp.float32) / self.vae.scaling_factor + self._shift
        images = self._vae_fns[1](self.vae_params, latents)
        return np.asarray(jnp.transpose(images, (0, 2, 3, 1)), np.float32)

    @property
    def _shift(self) -> float:
        return float(self.info.configs["vae"].get("shift_factor") or 0.0)


def load_sd_teacher(path: str, remat: bool = False) -> SDTeacher:
    """The ``SDTeacher`` of the diffusers Stable Diffusion (1.x, 2.x or XL) folder at ``path``
    (``remat``: its UNet's blocks rematerialised in backward passes, ``models.hf.unet``)."""
    from diffusers import FlaxAutoencoderKL, FlaxUNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTokenizer, FlaxCLIPTextModel, FlaxCLIPTextModelWithProjection
    from transformers.utils import logging as transformers_logging

    info = check_folder(path)
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    unet, unet_params = _load_diffusers_model(FlaxUNet2DConditionModel, info.path, "unet", info.weights["unet"])
    cond_proj = unet_params.get("time_embedding", {}).pop("cond_proj", None) if isinstance(unet_params, dict) else None
    _check_params(unet, unet_params, os.path.join(info.path, "unet"))
    vae, vae_params = _load_diffusers_model(FlaxAutoencoderKL, info.path, "vae", info.weights["vae"])
    _check_params(vae, vae_params, os.path.join(info.path, "vae"))
    encoders, encoder_params, tokenizers = [], [], []
    for name, cls in (("text_encoder", FlaxCLIPTextModel), ("text_encoder_2", FlaxCLIPTextModelWithProjection)):
        if name not in info.configs:
            continue
        if info.weights[name] == "flax":  # _do_init=False: no random initialisation before the weights are read
            encoder, params = cls.from_pretrained(info.path, subfolder=name, dtype=jnp.float32, _do_init=False)
        else:  # transformers reads PyTorch safetensors without torch (its converter needs the initialised model)
            encoder = cls.from_pretrained(info.path, subfolder=name, from_pt=True, dtype=jnp.float32)
            params = encoder.params
        encoders.append(encoder)
        encoder_params.append(params)
        tokenizers.append(CLIPTokenizer.from_pretrained(info.path, subfolder=name.replace("text_encoder", "tokenizer")))
    proj_dim = int(info.configs["unet"].get("time_cond_proj_dim") or 0)
    if proj_dim and cond_proj is None:
        raise CheckpointFileError(f"{os.path.join(info.path, 'unet')!r}: time_cond_proj_dim={proj_dim} but its weights hold no time_embedding.cond_proj")
    pooled_dim = int(info.configs["text_encoder_2"]["projection_dim"]) if info.sdxl else 0
    network = unet_network(unet, int(tokenizers[0].model_max_length), pooled_dim, proj_dim, remat)
    params = {"unet": unet_params} | ({"time_cond_proj": {"kernel": cond_proj["kernel"]}} if proj_dim else {})
    scheduler = scheduler_settings(info.configs["scheduler"], os.path.join(info.path, "scheduler", "scheduler_config.json"))
    return SDTeacher(network, {"params": params}, vae, vae_params, tuple(encoders), tuple(encoder_params), tuple(tokenizers), scheduler, info)


def abstract_sd_unet(path: str, remat: bool = False) -> tuple[Denoiser, PyTree]:
    """The denoiser ``load_sd_teacher`` makes of the SD 1.x / 2.x folder at ``path`` and its UNet
    parameters as ``jax.ShapeDtypeStruct`` leaves, from the folder's JSON files alone
    (``unet/config.json``, ``scheduler/scheduler_config.json``, the tokenizer's ``model_max_length``,
    77 without one): no weights are read or needed and nothing is allocated. For compiling a step
    from abstract shapes (``build(abstract_teacher=True)``, experiments/sd15_memory.py);
    ``remat`` as in ``load_sd_teacher``."""
    from diffusers import FlaxUNet2DConditionModel

    unet_config = read_json(os.path.join(path, "unet", "config.json"), "the unet component's config")
    scheduler_file = os.path.join(path, "scheduler", "scheduler_config.json")
    tokenizer_file = os.path.join(path, "tokenizer", "tokenizer_config.json")
    context_length = int(read_json(tokenizer_file, "the tokenizer's config").get("model_max_length", 77)) if os.path.isfile(tokenizer_file) else 77
    if unet_config.get("addition_embed_type") or unet_config.get("time_cond_proj_dim"):
        raise CheckpointFileError(f"{os.path.join(path, 'unet', 'config.json')!r}: abstract_sd_unet takes an SD 1.x / 2.x UNet (no addition_embed_type, no time_cond_proj_dim)")
    unet = FlaxUNet2DConditionModel.from_config(unet_config)
    shapes = jax.eval_shape(unet.init_weights, jax.random.key(0))
    network = unet_network(unet, context_length, remat=remat)
    scheduler = scheduler_settings(read_json(scheduler_file, "the scheduler's config"), scheduler_file)
    return unet_denoiser(network, scheduler), {"params": {"unet": shapes}}
