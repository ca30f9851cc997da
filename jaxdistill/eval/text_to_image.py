"""Text-to-image sampling from a latent diffusion model: prompts -> guided latents -> decoded images.

``generate(sd, prompts, negative_prompts, nfe=..., guidance=w, sampler=...)`` encodes the prompts
with the Stable Diffusion folder's text encoder(s) (``SDTeacher.text_condition``), samples latents
from N(0, I) noise with the library's samplers on the scheduler's ``DDPM`` process and diffusers'
timestep spacing of the folder's scheduler config, guided by classifier-free guidance in the
library's convention x0_u + w (x0_c - x0_u) (Ho & Salimans 2022; x0_u from the negative prompt,
or the empty prompt), and decodes them with the VAE (Rombach et al. 2022).

Since eps is affine in x0 at fixed (x, t), the guided eps is eps_u + w (eps_c - eps_u): w is
diffusers' ``guidance_scale`` unchanged (``tests/test_t2i_sample.py`` reproduces
``FlaxStableDiffusionPipeline`` with the same value). Guidance is always applied; w = 1 is the
prompt's own prediction (diffusers skips the negative branch there, with the same result).

Sampler names are diffusers' schedulers (``docs/samplers.md`` has the correspondences):

* ``ddim``: ``DDIMScheduler`` (eta 0): the library's ``ddim`` on the DDIM spacing rule, ending
  where the config's ``set_alpha_to_one`` says (t = 0 or t = 1);
* ``dpmpp_2m``: ``DPMSolverMultistepScheduler`` (dpmsolver++, order 2, ``lower_order_final``,
  ``final_sigmas_type="zero"``): the library's ``dpmpp_2m`` on the DPM-Solver spacing rule, ending at t = 0;
* ``euler``: ``EulerDiscreteScheduler``, whose step in the sigma ratio is DDIM's: the library's
  ``ddim`` on the Euler spacing rule, ending at t = 0 (always from x = z; diffusers' Euler starts
  ``linspace`` / ``trailing`` grids from slightly shrunk noise). The library's own ``euler`` steps
  the ODE in process time and is no diffusers scheduler.

Every sampler uses one network evaluation (on the batch [x; x]) per step, so ``nfe`` is the number
of steps. The denoiser and its parameters are arguments: a distilled student of the same latent
space and text encoder samples through the same route. A trained run's student samples with its
objective's own sampler instead (``objective_sampler``, e.g. LCM's multistep consistency sampler),
from the objective's prior, with the folder's text encoder and VAE around it.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.rng import derive
from jaxdistill.core.types import Array, PyTree
from jaxdistill.data.t2i_cache import TeacherSamples
from jaxdistill.diffusion import samplers, steps
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.models.hf.folder import SchedulerSettings
from jaxdistill.models.hf.teacher import SDTeacher


@dataclasses.dataclass(frozen=True)
class SamplerRoute:
    """How a diffusers scheduler is sampled: the library sampler, whose spacing rule
    (``ddpm_grid.SCHEDULERS``), and whether the grid ends at the scheduler's ``t_end`` (else 0)."""

    method: str
    spacing_rule: str
    scheduler_end: bool


ROUTES = {
    "ddim": SamplerRoute("ddim", "ddim", True),
    "dpmpp_2m": SamplerRoute("dpmpp_2m", "dpmsolver", False),
    "euler": SamplerRoute("ddim", "euler", False),
}


@dataclasses.dataclass(frozen=True)
class TextToImage:
    """Generated images, prompt-major (image i is ``prompts[i // num_per_prompt]``)."""

    images: np.ndarray  # [N, H, W, C], NHWC, about [-1, 1] (unclipped VAE output)
    latents: np.ndarray  # [N, h, w, c], the sampled latents
    prompts: tuple[str, ...]  # per image
    negative_prompts: tuple[str, ...]  # per image ("" where none was given)


def check_request(prompts: Sequence[str], negative_prompts: Sequence[str], nfe: int, sampler: str, num_per_prompt: int = 1, batch_size: int = 1) -> None:
    """A one-line ``ConfigError`` for a request that cannot be sampled (before anything is loaded)."""
    if isinstance(prompts, str) or not len(prompts):
        raise ConfigError("no prompts: give at least one (--prompt TEXT)")
    if not all(isinstance(p, str) for p in (*prompts, *negative_prompts)):
        raise ConfigError("prompts and negative prompts must be strings")
    if len(negative_prompts) not in (0, 1, len(prompts)):
        raise ConfigError(f"{len(negative_prompts)} negative prompts for {len(prompts)} prompts: give none, one (for every prompt) or one per prompt")
    if sampler not in ROUTES:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {tuple(ROUTES)}")
    for name, value in (("nfe", nfe), ("num_per_prompt", num_per_prompt), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def timesteps(scheduler: SchedulerSettings, sampler: str, nfe: int) -> Array:
    """The process times t_0 > ... > t_nfe the ``sampler`` route visits: diffusers' inference
    timesteps k of the config's spacing as t = k + 1, then the route's end."""
    route = ROUTES[sampler]
    t_end = scheduler.t_end if route.scheduler_end else 0.0
    try:
        return steps.get_grid(
            scheduler.spacing, scheduler.process, nfe, t_end=t_end, steps_offset=scheduler.steps_offset, scheduler=route.spacing_rule
        )
    except ValueError as err:
        raise ConfigError(f"nfe {nfe}: {err}") from None


def initial_noise(seed: int, num: int, shape: Sequence[int]) -> Array:
    """z ~ N(0, I) of shape [num, *shape] from ``jax.random.key(seed)``."""
    return jax.random.normal(jax.random.key(seed), (num, *shape), jnp.float32)


def latent_shape(sd: SDTeacher) -> tuple[int, int, int]:
    """(h, w, c) of the UNet's native latents (its config's ``sample_size``)."""
    side = int(sd.network.module.unet.sample_size)
    return side, side, sd.latent_channels


def latent_sampler(denoiser: Denoiser, sampler: str):
    """A jit-compiled (params, z, ts, cond, w) -> latents at ts[-1], guided with weight w."""
    method = ROUTES[sampler].method

    def run(params: PyTree, z: Array, ts: Array, cond, w: Array) -> Array:
        return samplers.sample(lambda x, t: denoiser.x0(params, x, t, cond, guidance=w), denoiser.process, z, ts, method)

    return jax.jit(run)


def record_noise(seed: int, indices: Sequence[int], shape: Sequence[int]) -> Array:
    """z_i ~ N(0, I) of ``shape`` for each record index i, drawn from ``fold_in(key(seed), i)``: a
    record's noise depends on its index alone, not on the batch or the shard it is sampled in."""
    key = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), tuple(shape), jnp.float32))(jnp.asarray(indices))


def teacher_samples(sd: SDTeacher, *, nfe: int, guidance: float, sampler: str = "ddim", seed: int = 0, resolution: Optional[int] = None) -> TeacherSamples:
    """The folder's own samples for a prompt cache (``jaxdistill cache --teacher-samples``; LADD's
    synthetic data, Sauer et al. 2024): the ``sampler`` route at ``nfe`` steps, guided with weight
    ``guidance`` against the empty prompt (the cache's negative), from ``record_noise(seed, indices,
    latent shape)``, at ``resolution`` pixels (default: the UNet's native size; SDXL's time ids say the same)."""
    check_request(["prompt"], [], nfe, sampler)
    side = (resolution or latent_shape(sd)[0] * sd.vae_scale_factor) // sd.vae_scale_factor
    shape, image_size = (side, side, sd.latent_channels), (side * sd.vae_scale_factor,) * 2
    ts, run, w = timesteps(sd.scheduler, sampler, nfe), latent_sampler(sd.denoiser(), sampler), jnp.float32(guidance)

    def sample(prompts: list[str], indices: np.ndarray) -> np.ndarray:
        cond = sd.text_condition(list(prompts), image_size=image_size)
        return np.asarray(run(sd.unet_params, record_noise(seed, indices, shape), ts, cond, w))

    settings = {
        "unet": f"{os.path.basename(os.path.normpath(sd.info.path))}/unet",
        "sampler": sampler,
        "nfe": int(nfe),
        "guidance": float(guidance),
        "negative_prompt": "",
        "seed": int(seed),
    }
    return TeacherSamples(sample, settings)


LatentSampler = Callable[[Array, TextCondition, int], Array]  # (noise, cond, index of the batch's first image) -> latents


def objective_sampler(objective, trainable: PyTree, frozen: PyTree, *, nfe: int, seed: int) -> LatentSampler:
    """A trained run's own sampler: ``objective.generate(trainable, frozen, noise, cond, nfe=nfe, rng=r)``,
    jit-compiled with the states as arguments, ``r`` = ``derive(key(seed), "sampler")`` folded with the
    batch's first image index (a stochastic sampler's draws depend on the batching)."""
    run = jax.jit(lambda trainable, frozen, z, cond, rng: objective.generate(trainable, frozen, z, cond, nfe=nfe, rng=rng))
    key = derive(jax.random.key(seed), "sampler")
    return lambda z, cond, first: run(trainable, frozen, z, cond, jax.random.fold_in(key, first))


def generate(
    sd: SDTeacher,
    prompts: Sequence[str],
    negative_prompts: Sequence[str] = (),
    *,
    nfe: int,
    guidance: float,
    sampler: str = "ddim",
    seed: int = 0,
    num_per_prompt: int = 1,
    batch_size: int = 8,
    denoiser: Optional[Denoiser] = None,
    params: Optional[PyTree] = None,
    sample_latents: Optional[LatentSampler] = None,
    noise: Optional[Array] = None,
    progress: bool = False,
) -> TextToImage:
    """``num_per_prompt`` images per prompt (module docstring), in batches of ``batch_size``
    images. The noise of all images is drawn at once (``initial_noise(seed, N, latent_shape)``),
    so image i does not depend on the batch size. ``negative_prompts``: none (the empty prompt),
    one for every prompt, or one per prompt. ``denoiser`` / ``params`` default to the folder's
    UNet; a student of the same latent space plugs in there. ``sample_latents`` (``objective_sampler``)
    replaces the sampler route, ``sampler``, ``denoiser``, ``params`` and ``guidance`` with a run's
    own sampler; ``noise`` replaces the initial latents ([N, h, w, c], N the number of images)."""
    prompts, negative_prompts = list(prompts), list(negative_prompts)
    check_request(prompts, negative_prompts, nfe, sampler, num_per_prompt, batch_size)
    negative_prompts = negative_prompts * len(prompts) if len(negative_prompts) == 1 else negative_prompts or [""] * len(prompts)
    per_image = [p for p in prompts for _ in range(num_per_prompt)]
    negative_per_image = [n for n in negative_prompts for _ in range(num_per_prompt)]
    denoiser = sd.denoiser() if denoiser is None else denoiser
    params = sd.unet_params if params is None else params
    z = initial_noise(seed, len(per_image), latent_shape(sd)) if noise is None else jnp.asarray(noise, jnp.float32)
    if z.shape[0] != len(per_image):
        raise ConfigError(f"{z.shape[0]} initial latents for {len(per_image)} images")
    if sample_latents is None:
        ts, run, w = timesteps(sd.scheduler, sampler, nfe), latent_sampler(denoiser, sampler), jnp.float32(guidance)
        sample_latents = lambda z, cond, first: run(params, z, ts, cond, w)  # noqa: E731
    latents, images = [], []
    batches = range(0, len(per_image), batch_size)
    for start in tqdm(batches, desc=f"nfe={nfe}", unit="batch", disable=not progress or len(batches) < 2):
        stop = start + batch_size
        cond = sd.text_condition(per_image[start:stop], negative_per_image[start:stop])
        batch = np.asarray(sample_latents(z[start:stop], cond, start))
        latents.append(batch)
        images.append(sd.decode_latents(batch))
    return TextToImage(np.concatenate(images), np.concatenate(latents), tuple(per_image), tuple(negative_per_image))


def grid_columns(num_prompts: int, num_per_prompt: int) -> int:
    """One row per prompt when there are several images per prompt, else a near-square grid."""
    return num_per_prompt if num_per_prompt > 1 else int(math.ceil(math.sqrt(num_prompts)))
