"""DINOv2 (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without Supervision") through
transformers' ``FlaxDinov2Model``: the frozen feature network of ADD's discriminator (Sauer et al.
2023, "Adversarial Diffusion Distillation", Sec. 3.2: a ViT-S DINOv2, trainable heads on the
features of several of its layers).

``Dinov2Features(params, images)`` takes NHWC images in [-1, 1] (a VAE's decoded latents), resizes
them (bilinear, antialiased) to the model's ``image_size``, maps them to ImageNet-normalised pixels
((x + 1) / 2 - mean) / std, and returns the hidden states after each of ``layers`` (0-based
transformer blocks), [B, 1 + P, C] each: the class token and the P patch tokens. ``outputs`` also
returns the image's embedding, the final (layer-normed) class token [B, C] (the model's
``pooler_output``), which ADD's heads read as c_img (Sauer et al. 2023, Sec. 3.2).

``LatentDinov2`` composes a Stable Diffusion VAE decoder with it: latents in, DINOv2 features out,
differentiable throughout, so the adversarial gradient reaches the student through the decoder.
"""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.core.types import Array, PyTree
from jaxdistill.models.hf.teacher import VaeDecoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DINOv2's image processor (BitImageProcessor) normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
STYLEGAN_T_LAYERS = (2, 5, 8, 11)  # four evenly spaced blocks of a 12-block ViT-S, the taps StyleGAN-T's and ADD's heads read


@dataclasses.dataclass(frozen=True, eq=False)
class Dinov2Features:
    """A DINOv2 model's hidden states after ``layers`` for NHWC images in [-1, 1] (module docstring)."""

    model: object  # transformers.FlaxDinov2Model
    layers: tuple[int, ...] = STYLEGAN_T_LAYERS

    def __post_init__(self):
        depth = int(self.model.config.num_hidden_layers)
        if not self.layers or any(not 0 <= layer < depth for layer in self.layers):
            raise ValueError(f"dinov2_layers must be non-empty block indices in [0, {depth - 1}] (the model has {depth} blocks), got {tuple(self.layers)}")

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    def pixels(self, images: Array) -> Array:
        """NCHW ImageNet-normalised pixels at ``image_size`` of NHWC images in [-1, 1]."""
        b, _, _, c = images.shape
        size = self.image_size
        resized = jax.image.resize(images.astype(jnp.float32), (b, size, size, c), "bilinear")
        normalised = ((resized + 1.0) / 2.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        return jnp.transpose(normalised, (0, 3, 1, 2))

    def outputs(self, params: PyTree, images: Array) -> tuple[list[Array], Array]:
        """(the hidden states after ``layers``, the image embedding [B, C]) from one forward pass."""
        out = self.model(self.pixels(images), params=params, output_hidden_states=True)
        return [out.hidden_states[layer + 1] for layer in self.layers], out.pooler_output  # hidden_states[0] is the patch embedding

    def __call__(self, params: PyTree, images: Array) -> list[Array]:
        return self.outputs(params, images)[0]


@dataclasses.dataclass(frozen=True, eq=False)
class LatentDinov2:
    """DINOv2 features of decoded latents: params ``{"vae": ..., "dinov2": ...}``."""

    decoder: VaeDecoder
    dinov2: Dinov2Features

    def outputs(self, params: PyTree, latents: Array) -> tuple[list[Array], Array]:
        """(DINOv2's features, its image embedding) of the decoded latents."""
        return self.dinov2.outputs(params["dinov2"], self.decoder(params["vae"], latents))

    def __call__(self, params: PyTree, latents: Array) -> list[Array]:
        return self.outputs(params, latents)[0]


def load_dinov2(path: str, layers: tuple[int, ...] = STYLEGAN_T_LAYERS) -> tuple[Dinov2Features, PyTree]:
    """(features, params) of the DINOv2 folder at ``path`` (``save_pretrained``'s layout: config.json
    and Flax ``flax_model.msgpack`` or PyTorch ``model.safetensors``, read without torch)."""
    from transformers import FlaxDinov2Model
    from transformers.utils import logging as transformers_logging

    if not os.path.isfile(os.path.join(path, "config.json")):
        raise CheckpointFileError(f"dinov2_path={path!r} is no DINOv2 folder: it lacks config.json (save_pretrained's layout)")
    transformers_logging.set_verbosity_error()
    if os.path.isfile(os.path.join(path, "flax_model.msgpack")):
        model, params = FlaxDinov2Model.from_pretrained(path, dtype=jnp.float32, _do_init=False)
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        model = FlaxDinov2Model.from_pretrained(path, from_pt=True, dtype=jnp.float32)
        params = model.params
    else:
        raise CheckpointFileError(f"dinov2_path={path!r} holds neither flax_model.msgpack nor model.safetensors")
    if model.config.model_type != "dinov2":
        raise CheckpointFileError(f"dinov2_path={path!r} holds a {model.config.model_type!r} model, not dinov2")
    return Dinov2Features(model, tuple(int(layer) for layer in layers)), params
