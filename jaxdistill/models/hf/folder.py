"""Reading and checking a diffusers Stable Diffusion folder (``save_pretrained`` layout).

A folder holds ``model_index.json`` and one subfolder per component: ``unet``, ``vae``,
``text_encoder``, ``tokenizer``, ``scheduler`` (SDXL adds ``text_encoder_2``, ``tokenizer_2``).
``check_folder`` reads only JSON files and file names, so a broken folder is reported (a
``CheckpointFileError`` naming the file and what was expected) before any weight is loaded:
missing components, weights in no readable format, and mismatched settings (the UNet's
cross-attention width against the text encoders', its input channels against the VAE's
latents, SDXL's added-conditioning width against the second encoder's projection).

``scheduler_settings`` turns the scheduler config into the library's discrete ``DDPM`` process
(Ho et al. 2020; process time t = k + 1 for diffusers' index k), the prediction kind and the
timestep spacing to sample with (``steps.get_grid``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.diffusion.process import DDPM

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SDXL_COMPONENTS = ("text_encoder_2", "tokenizer_2")
CONFIG_FILES = {"tokenizer": "tokenizer_config.json", "scheduler": "scheduler_config.json"}
FLAX_WEIGHTS = {"unet": "diffusion_flax_model.msgpack", "vae": "diffusion_flax_model.msgpack", "text_encoder": "flax_model.msgpack"}
TORCH_FREE_WEIGHTS = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors", "text_encoder": "model.safetensors"}
TORCH_WEIGHTS = {"unet": "diffusion_pytorch_model.bin", "vae": "diffusion_pytorch_model.bin", "text_encoder": "pytorch_model.bin"}
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
SDXL_TIME_IDS = 6  # original (h, w), crop top-left (y, x), target (h, w)


@dataclasses.dataclass(frozen=True)
class SchedulerSettings:
    """What a Stable Diffusion scheduler config says: the process, the prediction kind and how
    diffusers spaces its inference timesteps (``spacing``, ``steps_offset``); ``t_end`` is where
    DDIM's last step lands: 0 (``set_alpha_to_one``: abar = 1) or 1 (abar = alphas_cumprod[0])."""

    process: DDPM
    prediction: str
    spacing: str
    steps_offset: int
    t_end: float


@dataclasses.dataclass(frozen=True)
class FolderInfo:
    """A checked folder: its path, whether it is SDXL, and each component's weight format."""

    path: str
    sdxl: bool
    weights: dict[str, str]  # component -> "flax" | "safetensors"
    configs: dict[str, dict]  # component -> its config.json


def read_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{path!r} is missing: {what}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointFileError(f"{path!r} is not readable JSON ({what}): {err}") from None
    if not isinstance(data, dict):
        raise CheckpointFileError(f"{path!r} holds a {type(data).__name__}, expected a JSON object ({what})")
    return data


def _weights_format(folder: str, name: str) -> str:
    base = name.removesuffix("_2")
    sub = os.path.join(folder, name)
    if os.path.isfile(os.path.join(sub, FLAX_WEIGHTS[base])):
        return "flax"
    if os.path.isfile(os.path.join(sub, TORCH_FREE_WEIGHTS[base])):
        return "safetensors"
    if os.path.isfile(os.path.join(sub, TORCH_WEIGHTS[base])):
        raise CheckpointFileError(
            f"{sub!r} holds only PyTorch pickle weights ({TORCH_WEIGHTS[base]}), which need torch to read; "
            f"convert them to {TORCH_FREE_WEIGHTS[base]} or {FLAX_WEIGHTS[base]} first"
        )
    raise CheckpointFileError(f"{sub!r} has no weights: expected {FLAX_WEIGHTS[base]} (Flax) or {TORCH_FREE_WEIGHTS[base]}")


def resolve_folder(path: str) -> str:
    """``path`` if it is a folder; else a hub repository id (``owner/name``) looked up in the local
    Hugging Face cache (``huggingface_hub.snapshot_download(local_files_only=True)``, never the network)."""
    path = os.fspath(path)
    if os.path.isdir(path) or path.count("/") != 1 or path.startswith((".", "/")):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(path, local_files_only=True)
    except (LocalEntryNotFoundError, ValueError):
        return path


def check_folder(path: str) -> FolderInfo:
    """Check the diffusers Stable Diffusion folder at ``path`` (or a hub id in the local cache,
    ``resolve_folder``) from its JSON files alone (see the module docstring)."""
    path = resolve_folder(path)
    if not os.path.isdir(path):
        raise CheckpointFileError(
            f"diffusers folder {path!r} does not exist, nor is it in the local Hugging Face cache (expected a Stable Diffusion folder with model_index.json)"
        )
    index = read_json(os.path.join(path, "model_index.json"), "a diffusers pipeline folder's index of components")
    sdxl = "text_encoder_2" in index
    names = COMPONENTS + (SDXL_COMPONENTS if sdxl else ())
    absent = [n for n in names if n not in index]
    if absent:
        raise CheckpointFileError(f"{os.path.join(path, 'model_index.json')!r} lists no {absent} component; a Stable Diffusion folder needs {list(names)}")
    configs = {}
    for name in names:
        file = CONFIG_FILES.get(name.removesuffix("_2"), "config.json")
        configs[name] = read_json(os.path.join(path, name, file), f"the {name} component's config")
    weights = {name: _weights_format(path, name) for name in ("unet", "vae", "text_encoder") + (("text_encoder_2",) if sdxl else ())}
    _check_matching(path, configs, sdxl)
    return FolderInfo(path, sdxl, weights, configs)


def _check_matching(path: str, configs: dict[str, dict], sdxl: bool) -> None:
    unet, vae = configs["unet"], configs["vae"]
    unet_file = os.path.join(path, "unet", "config.json")
    widths = [int(configs[n].get("hidden_size", -1)) for n in ("text_encoder", "text_encoder_2") if n in configs]
    if int(unet.get("cross_attention_dim", -1)) != sum(widths):
        raise CheckpointFileError(
            f"{unet_file!r}: cross_attention_dim={unet.get('cross_attention_dim')} does not match the text encoder"
            f"{'s' if sdxl else ''}' hidden_size {' + '.join(map(str, widths))}"
        )
    if int(unet.get("in_channels", -1)) != int(vae.get("latent_channels", -2)):
        raise CheckpointFileError(f"{unet_file!r}: in_channels={unet.get('in_channels')} does not match the VAE's latent_channels={vae.get('latent_channels')}")
    if sdxl:
        if unet.get("addition_embed_type") != "text_time":
            raise CheckpointFileError(f"{unet_file!r}: an SDXL folder (it has text_encoder_2) needs addition_embed_type='text_time', got {unet.get('addition_embed_type')!r}")
        expected = int(configs["text_encoder_2"].get("projection_dim", -1)) + SDXL_TIME_IDS * int(unet.get("addition_time_embed_dim") or 0)
        if int(unet.get("projection_class_embeddings_input_dim") or -1) != expected:
            raise CheckpointFileError(
                f"{unet_file!r}: projection_class_embeddings_input_dim={unet.get('projection_class_embeddings_input_dim')}, expected "
                f"{expected} (text_encoder_2's projection_dim + {SDXL_TIME_IDS} x addition_time_embed_dim)"
            )
    scheduler_settings(configs["scheduler"], os.path.join(path, "scheduler", "scheduler_config.json"))


def scheduler_settings(config: dict[str, Any], source: str = "scheduler config") -> SchedulerSettings:
    """The ``SchedulerSettings`` of a diffusers scheduler config (DDIM / PNDM / Euler / DPM-Solver fields)."""
    def bad(field: str, expected: str) -> CheckpointFileError:
        return CheckpointFileError(f"{source!r}: {field}={config.get(field)!r}, expected {expected}")

    if config.get("rescale_betas_zero_snr"):
        raise bad("rescale_betas_zero_snr", "false (zero terminal SNR has no finite DDPM sigma ratio at t = T)")
    prediction = PREDICTION_TYPES.get(config.get("prediction_type", "epsilon"))
    if prediction is None:
        raise bad("prediction_type", f"one of {sorted(PREDICTION_TYPES)}")
    T = int(config.get("num_train_timesteps", 1000))
    betas = config.get("trained_betas")
    try:
        if betas:
            process = DDPM("given", num_train_timesteps=T, betas=tuple(betas))
        else:
            schedule = BETA_SCHEDULES.get(config.get("beta_schedule", "linear"))
            if schedule is None:
                raise bad("beta_schedule", f"one of {sorted(BETA_SCHEDULES)}")
            process = DDPM(schedule, float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02)), T)
    except ValueError as err:
        raise CheckpointFileError(f"{source!r}: {err}") from None
    spacing = config.get("timestep_spacing", "leading")
    if spacing not in ("leading", "linspace", "trailing"):
        raise bad("timestep_spacing", "'leading', 'linspace' or 'trailing'")
    t_end = 0.0 if config.get("set_alpha_to_one", True) else 1.0
    return SchedulerSettings(process, prediction, spacing, int(config.get("steps_offset", 0)), t_end)
