"""``jaxdistill export``: a trained run whose teacher is a diffusers Stable Diffusion folder, written
back in diffusers' formats (issue 27, section 5).

The student is the network the run's objective samples with (its student or generator), read with
``objectives.lora_networks.sampler_params``: its evaluation parameters (the EMA where the run keeps
one), and the LoRA spec where the run trains it as a LoRA (config section ``lora``, rank > 0).

* A LoRA student: ``pytorch_lora_weights.safetensors`` (``models.lora.export_diffusers_lora``), the
  student's scheduler config in ``scheduler/scheduler_config.json``, and ``jaxdistill_export.json`` /
  ``README.md`` naming the base folder to load it into (with ``StableDiffusionPipeline``, or
  ``StableDiffusionXLPipeline`` for an SDXL base).
* A full student: a diffusers folder holding the teacher folder's other components (hard links
  where the file system allows, else copies), the student's UNet (``FlaxUNet2DConditionModel.
  save_pretrained`` with the teacher's UNet config; LCM's guidance embedding (Luo et al. 2023) is
  stored under diffusers' PyTorch name ``time_embedding/cond_proj`` with ``time_cond_proj_dim`` in
  the config) and the scheduler of the student's sampler. PyTorch weights
  (``diffusion_pytorch_model.safetensors``, through diffusers' own Flax -> PyTorch loader) are
  added only where torch is importable.

The scheduler is the objective's ``diffusers_scheduler_config(teacher_config)`` where it has one
(LCM: diffusers' ``LCMScheduler``), else the teacher's. Everything is written into a temporary
folder beside ``out`` and renamed to ``out`` at the end: a failure leaves nothing behind.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Optional

import jax
import numpy as np
from flax import traverse_util

from jaxdistill.build import Run
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.types import PyTree
from jaxdistill.models.hf.folder import FolderInfo, check_folder
from jaxdistill.models.hf.teacher import COND_PROJ
from jaxdistill.models.lora import LORA_FILE_NAME, LoraSpec, export_diffusers_lora
from jaxdistill.objectives.lora_networks import sampler_params

INFO_FILE = "jaxdistill_export.json"


@dataclasses.dataclass(frozen=True)
class Exported:
    """What ``export_run`` wrote: ``kind`` "lora" or "pipeline", the entries of ``out``, and a note on PyTorch weights."""

    kind: str
    out: str
    files: tuple[str, ...]
    torch_note: str


def teacher_folder(run: Run) -> FolderInfo:
    """The checked diffusers folder of the run's teacher; a ConfigError for any other teacher."""
    teacher = run.config.teacher
    if teacher.kind != "diffusers":
        raise ConfigError(f"export writes diffusers files for runs distilled from a diffusers Stable Diffusion folder (teacher.kind='diffusers'); this {run.config.method} run's teacher.kind is {teacher.kind!r}")
    return check_folder(teacher.path)


def student_params(run: Run) -> tuple[PyTree, Optional[LoraSpec]]:
    """The evaluation parameters (EMA where kept) of the network the run's objective samples with, and
    their LoRA spec where it trains that network as a LoRA (``objectives.lora_networks.sampler_params``)."""
    try:
        params, spec = sampler_params(run.built.objective, run.trainable)
    except ValueError as err:
        raise ConfigError(f"export: this {run.config.method} run: {err}") from None
    return jax.device_get(params), spec


def scheduler_config(run: Run, info: FolderInfo) -> dict[str, Any]:
    """The scheduler config the student samples with (module docstring)."""
    own = getattr(run.built.objective, "diffusers_scheduler_config", None)
    if own is None:
        return dict(info.configs["scheduler"])
    try:
        return own(info.configs["scheduler"])
    except ValueError as err:
        raise ConfigError(f"export: {err}") from None


def refuse_existing(out: str) -> None:
    """A ConfigError unless ``out`` is missing or an empty folder."""
    if os.path.isfile(out):
        raise ConfigError(f"--out {out!r} is a file; name a new folder")
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError(f"--out {out!r} is not empty; export into a new or empty folder")


def _write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_run(run: Run, out: str) -> Exported:
    """Write the run's student to the new folder ``out`` (module docstring)."""
    info = teacher_folder(run)
    refuse_existing(out)
    params, spec = student_params(run)
    scheduler = scheduler_config(run, info)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(os.path.abspath(out))}.", suffix=".tmp")
    try:
        if spec is not None:
            kind, note = "lora", "the LoRA file is already in PyTorch's format"
            _write_lora(tmp, run, info, params, spec, scheduler)
        else:
            kind = "pipeline"
            note = _write_pipeline(tmp, run, info, params, scheduler)
        files = tuple(sorted(os.listdir(tmp)))
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(kind, out, files, note)


def pipeline_class(info: FolderInfo) -> str:
    """The diffusers pipeline that loads the base folder (and the exported one)."""
    return "StableDiffusionXLPipeline" if info.sdxl else "StableDiffusionPipeline"


def _export_info(run: Run, info: FolderInfo, kind: str, scheduler: dict, **extra) -> dict:
    return {"kind": kind, "method": run.config.method, "step": run.step, "base": os.path.abspath(info.path), "pipeline": pipeline_class(info), "scheduler": scheduler, **extra}


def _write_lora(tmp: str, run: Run, info: FolderInfo, lora: PyTree, spec, scheduler: dict) -> None:
    """``pytorch_lora_weights.safetensors``, ``scheduler/scheduler_config.json``, the info JSON and a README."""
    inner = lora.get("params", {}) if isinstance(lora, dict) else {}
    if set(inner) != {"unet"}:
        raise ConfigError(f"export: the LoRA student adapts {sorted(inner)}; a diffusers LoRA file holds the UNet's ('unet') only")
    export_diffusers_lora(inner["unet"], spec, os.path.join(tmp, LORA_FILE_NAME))
    _write_json(os.path.join(tmp, "scheduler", "scheduler_config.json"), scheduler)
    lora_info = {"rank": spec.rank, "alpha": spec.alpha, "scale_folded_into_B": spec.scale, "targets": list(spec.targets)}
    _write_json(os.path.join(tmp, INFO_FILE), _export_info(run, info, "lora", scheduler, lora=lora_info))
    with open(os.path.join(tmp, "README.md"), "w") as f:
        f.write(
            f"# {run.config.method} LoRA, step {run.step}\n\nA LoRA (rank {spec.rank}) for the UNet of `{os.path.abspath(info.path)}`, "
            f"exported by `jaxdistill export`. Sample it with its scheduler ({scheduler.get('_class_name')}):\n\n"
            "```python\nimport diffusers\n\n"
            f"pipe = diffusers.{pipeline_class(info)}.from_pretrained({os.path.abspath(info.path)!r})\n"
            f"pipe.scheduler = diffusers.{scheduler.get('_class_name')}.from_pretrained(THIS_FOLDER, subfolder='scheduler')\n"
            "pipe.load_lora_weights(THIS_FOLDER)\n```\n"
        )


def _write_pipeline(tmp: str, run: Run, info: FolderInfo, params: PyTree, scheduler: dict) -> str:
    """The diffusers folder of a full student; returns the note on PyTorch weights."""
    from diffusers import FlaxUNet2DConditionModel

    net = params.get("params", {}) if isinstance(params, dict) else {}
    extra = sorted(set(net) - {"unet", "time_cond_proj"})
    if "unet" not in net or extra:
        raise ConfigError(f"export: the student's parameters hold {sorted(net)}, expected a diffusers UNet ('unet', optionally LCM's 'time_cond_proj')")
    unet_config = dict(info.configs["unet"])
    module = FlaxUNet2DConditionModel.from_config(FlaxUNet2DConditionModel.load_config(info.path, subfolder="unet"))
    _check_like_teacher(module, net["unet"], info)
    unet = traverse_util.flatten_dict(jax.tree.map(np.asarray, net["unet"]))
    if "time_cond_proj" in net:
        kernel = np.asarray(net["time_cond_proj"]["kernel"])
        unet[COND_PROJ] = kernel
        unet_config["time_cond_proj_dim"] = int(kernel.shape[0])
    unet_params = traverse_util.unflatten_dict(unet)
    module.save_pretrained(os.path.join(tmp, "unet"), params=unet_params)
    _write_json(os.path.join(tmp, "unet", "config.json"), unet_config)  # the teacher's (PyTorch fields included) + time_cond_proj_dim
    with open(os.path.join(info.path, "model_index.json")) as f:
        index = json.load(f)
    for name in index:
        source = os.path.join(info.path, name)
        if name not in ("unet", "scheduler") and not name.startswith("_") and os.path.isdir(source):
            shutil.copytree(source, os.path.join(tmp, name), copy_function=_link_or_copy)
    _write_json(os.path.join(tmp, "scheduler", "scheduler_config.json"), scheduler)
    index["scheduler"] = ["diffusers", scheduler.get("_class_name", index.get("scheduler", [None, None])[1])]
    _write_json(os.path.join(tmp, "model_index.json"), index)
    note = _torch_unet(os.path.join(tmp, "unet"), unet_config, unet_params)
    _write_json(os.path.join(tmp, INFO_FILE), _export_info(run, info, "pipeline", scheduler, pytorch_weights=note))
    return note


def _check_like_teacher(module, unet: PyTree, info: FolderInfo) -> None:
    """A ConfigError unless ``unet`` has the teacher UNet's tree and shapes."""
    want = traverse_util.flatten_dict(jax.eval_shape(module.init_weights, jax.random.key(0)), sep="/")
    got = traverse_util.flatten_dict(unet, sep="/")
    bad = sorted(k for k in set(want) | set(got) if k not in want or k not in got or tuple(want[k].shape) != tuple(np.shape(got[k])))
    if bad:
        raise ConfigError(f"export: the student's UNet differs from the UNet of {os.path.join(info.path, 'unet')!r} at {bad[:3]}; it cannot be saved with that config")


def _torch_unet(folder: str, config: dict, unet_params: PyTree) -> str:
    """Add PyTorch safetensors weights of the UNet through diffusers' own Flax -> PyTorch loader, if torch imports."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "no PyTorch weights: torch is not importable here (export again where it is)"
    from diffusers import UNet2DConditionModel
    from diffusers.models.modeling_pytorch_flax_utils import load_flax_weights_in_pytorch_model

    model = load_flax_weights_in_pytorch_model(UNet2DConditionModel.from_config(config), unet_params)
    model.save_pretrained(folder, safe_serialization=True)
    _write_json(os.path.join(folder, "config.json"), config)
    return "PyTorch weights written by diffusers' load_flax_weights_in_pytorch_model"


def describe(exported: Exported, run: Run) -> str:
    """The CLI's summary line."""
    what = "a LoRA file" if exported.kind == "lora" else "a diffusers folder"
    return f"wrote {what} of the {run.config.method} student (step {run.step}) to {exported.out}: {', '.join(exported.files)}; {exported.torch_note}"
