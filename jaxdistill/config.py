"""Run configuration: the base ConfigDict every config file starts from, loading of
config files with ``:preset`` arguments, ``--config.key=value`` overrides, validation.

Config files live in ``configs/<dataset>/<method>.py`` and define ``get_config(arg)``
(big_vision style); ``arg`` selects a preset such as ``smoke`` (a run that takes
seconds, used by tests and CI).
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import numbers
import os
import types
from typing import Any, Iterator, Optional, Sequence

import ml_collections
from ml_collections import config_dict

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import as_path, is_remote
from jaxdistill.core.phema import SIGMA_REL_MAX
from jaxdistill.core.state import default_optimizer_config
from jaxdistill.diffusion.ddpm_grid import SPACINGS
from jaxdistill.diffusion.process import PROCESSES
from jaxdistill.diffusion.steps import GRIDS
from jaxdistill.models.lora import ATTENTION_TARGETS, LoraSpec
from jaxdistill.models.precision import DTYPES as PRECISIONS
from jaxdistill.models.registry import LOGICAL_AXIS_RULES
from jaxdistill.objectives import registry

__all__ = ["ConfigError", "apply_overrides", "base_config", "load", "load_config_file", "validate"]

OBJECT_TEACHER = "object"  # teacher.kind of a teacher passed to build() as an object
TEACHER_KINDS = ("none", "mixture", "checkpoint", "converted", "diffusers", OBJECT_TEACHER)
PRIOR_MEANS = ("data", "zero")


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by every run; config files override what they need."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.method = "teacher"
    c.batch_size = 512
    c.data = ml_collections.ConfigDict({"name": "grid25", "size": 100_000, "seed": 0})
    c.process = ml_collections.ConfigDict({"name": "edm"})
    c.prediction = "edm"  # the network's output kind: eps | x0 | v | flow | edm
    c.sigma_data = 0.5
    # Mean of the sampling prior x_{t_max} ~ N(alpha(t_max) mu, sigma(t_max)^2 I): "data" (mu = the
    # data's mean, what the teacher saw at t_max) or "zero" (the published samplers' N(0, sigma^2 I)).
    c.prior_mean = "data"
    c.network = ml_collections.ConfigDict({"name": "mlp", "num_classes": 0})
    # Frozen teacher for distillation: "mixture" (the exact mixture the data are drawn from),
    # "checkpoint" (a trained denoising run's workdir; its EMA parameters are used), "converted"
    # (a published network converted by `jaxdistill convert`, at teacher.path) or "diffusers" (the UNet of a
    # diffusers Stable Diffusion folder at teacher.path, jaxdistill.models.hf; the data are its latents).
    c.teacher = ml_collections.ConfigDict({"kind": "none", "workdir": "", "path": "", "guidance": config_dict.placeholder(float)})
    # Mixed precision (jaxdistill.models.precision): the networks compute in precision.compute; master
    # weights, optimiser state and EMA stay float32. teacher_params="bfloat16" stores a network teacher's
    # frozen weights in bfloat16 (half the bytes).
    c.precision = ml_collections.ConfigDict({"compute": "float32", "teacher_params": "float32"})
    # LoRA networks (Hu et al. 2021; docs/lora.md): rank > 0 trains the network the method samples with (a
    # student, or a generator method's generator) as low-rank adapters (scale alpha / rank; alpha None: = rank)
    # on the network teacher's frozen weights, on the kernels whose module path matches one of targets (regular
    # expressions); critic_rank / critic_alpha / critic_targets do the same for a generator method's critic
    # ("fake score"). Rank 0 trains that network in full.
    c.lora = ml_collections.ConfigDict({
        "rank": 0, "alpha": config_dict.placeholder(float), "targets": ATTENTION_TARGETS,
        "critic_rank": 0, "critic_alpha": config_dict.placeholder(float), "critic_targets": ATTENTION_TARGETS,
    })
    c.optim = default_optimizer_config()
    c.ema_decay = 0.999
    # Set: a power-function EMA of this relative width (EDM2; e.g. 0.05 or 0.10) replaces ema_decay.
    c.ema_sigma_rel = config_dict.placeholder(float)
    c.train = ml_collections.ConfigDict(
        dict(
            num_steps=2000,
            log_every=100,
            sample_every=1000,  # a sample plot in workdir/samples every this many steps and at the last (0: none)
            checkpoint_every=1000,
            max_to_keep=2,
            async_checkpoint=True,
            num_plot_samples=2000,
            # Gradient accumulation: every gradient is the mean over this many microbatches of the
            # batch, computed one after another (activation memory of batch_size / microbatches),
            # then one optimiser, EMA and schedule step. docs/launch.md has the measured memory.
            microbatches=1,
        )
    )
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "dcn_data": 1, "min_fsdp_size": 1024})
    # Flax logical axis rules, (logical name, "fsdp" or None) in priority order: which dimension of
    # an annotated kernel ("embed", "mlp", "heads", ...) is sharded over fsdp (docs/launch.md, FSDP).
    c.mesh.logical_axis_rules = LOGICAL_AXIS_RULES
    # Multi-host: auto=True (or coordinator_address="auto") lets jax.distributed.initialize() detect a
    # TPU VM slice or SLURM job; elsewhere give coordinator_address "host:port", num_processes, process_id.
    c.distributed = ml_collections.ConfigDict({"auto": False, "coordinator_address": "", "num_processes": 1, "process_id": 0})
    # Evaluation of the trained network: sampler and its time grid for multi-step networks, NFEs, guidance.
    c.eval = ml_collections.ConfigDict(
        {"sampler": "heun", "grid": "karras", "nfes": (1, 2, 4, 8, 16, 32, 64), "num_samples": 10_000, "guidance": config_dict.placeholder(float)}
    )
    c.denoising = registry.default_config("teacher")
    c.kd = registry.default_config("kd")
    return c


def split_config_spec(spec: str) -> tuple[str, str]:
    """(path, preset) of ``path/to/config.py[:preset]``; a URI keeps its ``scheme://`` colon."""
    scheme, sep, _ = spec.partition("://")
    start = len(scheme) + len(sep) if sep else 0
    path, _, arg = spec[start:].partition(":")
    return spec[:start] + path, arg


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load ``path/to/config.py[:arg]`` (a local file or a ``gs://`` URI) by calling its
    ``get_config(arg)``."""
    path, arg = split_config_spec(spec)
    source = as_path(path)
    if not source.is_file():
        raise ConfigError(f"config file not found: {path!r}")
    module = types.ModuleType(f"jaxdistill_config_{abs(hash(path))}")
    module.__file__ = path if is_remote(path) else os.fspath(source)
    try:
        exec(compile(source.read_text(), module.__file__, "exec"), module.__dict__)
    except Exception as err:
        raise ConfigError(f"error while executing config file {path}: {type(err).__name__}: {err}") from err
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config(arg) function")
    takes_arg = len(inspect.signature(module.get_config).parameters) > 0
    if arg and not takes_arg:
        raise ConfigError(f"config file {path} takes no preset, but ':{arg}' was given")
    try:
        config = module.get_config(arg or None) if takes_arg else module.get_config()
    except (ValueError, KeyError, AssertionError) as err:
        raise ConfigError(f"config {spec}: {err}") from err
    return config


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Apply ``key.sub=value`` overrides with the type of the existing field."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        parent, _, leaf = key.rpartition(".")
        node = config
        walked = []
        for part in [p for p in parent.split(".") if p]:
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise ConfigError(f"unknown config key {'.'.join(walked + [part])!r} in override {item!r}{_suggest(part, node)}")
            node = node[part]
            walked.append(part)
        if leaf not in node and walked == ["process"] and leaf in _process_fields(node):
            node[leaf] = _process_fields(node)[leaf]  # a field of the named process, not yet in the section
        if leaf not in node:
            raise ConfigError(f"unknown config key {key!r}{_suggest(leaf, node)}")
        value = _parse_value(raw)
        current = node[leaf]
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as err:
            raise ConfigError(f"bad value for {key}: {raw!r} ({err})") from err
    return config


def _process_fields(section: ml_collections.ConfigDict) -> dict[str, Any]:
    """{field: default} of the process ``section.name`` names (``diffusion.process.PROCESSES``), so
    ``--config.process.name=ddpm --config.process.schedule=cosine`` may set fields the section lacks."""
    cls = PROCESSES.get(section.get("name"))
    if cls is None:
        return {}
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.default is not dataclasses.MISSING}


def _suggest(name: str, node: ml_collections.ConfigDict) -> str:
    close = difflib.get_close_matches(name, list(node.keys()), n=3)
    return f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(sorted(node.keys()))}"


def validate(config: ml_collections.ConfigDict, num_devices: Optional[int] = None) -> ml_collections.ConfigDict:
    """Sanity checks with messages that name the field."""
    if config.method not in registry.METHODS:
        raise ConfigError(f"method={config.method!r} is not one of {tuple(registry.METHODS)}")
    registry.settings(config)  # unknown keys and bad types in the method's section name the field
    if config.teacher.kind not in TEACHER_KINDS:
        raise ConfigError(f"teacher.kind={config.teacher.kind!r} is not one of {TEACHER_KINDS}")
    if config.teacher.kind == "checkpoint" and not config.teacher.workdir:
        raise ConfigError("teacher.kind='checkpoint' needs teacher.workdir (the teacher run's --workdir)")
    if config.teacher.kind == "converted" and not config.teacher.get("path"):
        raise ConfigError("teacher.kind='converted' needs teacher.path (a file written by 'jaxdistill convert')")
    if config.teacher.kind == "diffusers" and not config.teacher.get("path"):
        raise ConfigError("teacher.kind='diffusers' needs teacher.path (a diffusers Stable Diffusion folder with model_index.json)")
    for field in ("batch_size",):
        if int(config[field]) <= 0:
            raise ConfigError(f"{field} must be positive, got {config[field]}")
    for field in ("num_steps", "log_every", "checkpoint_every", "max_to_keep", "num_plot_samples"):
        if int(config.train[field]) <= 0:
            raise ConfigError(f"train.{field} must be positive, got {config.train[field]}")
    if int(config.train.sample_every) < 0:
        raise ConfigError(f"train.sample_every must be >= 0 (0: no sample plots), got {config.train.sample_every}")
    if not math.isfinite(config.optim.lr) or config.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be a finite positive number, got {config.optim.lr}")
    for key, value in _float_leaves(config):
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be finite, got {value}")
    if config.prior_mean not in PRIOR_MEANS:
        raise ConfigError(f"prior_mean={config.prior_mean!r} is not one of {PRIOR_MEANS}")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {config.ema_decay}")
    if config.get("ema_sigma_rel") is not None and not 0.0 < config.ema_sigma_rel <= SIGMA_REL_MAX:
        raise ConfigError(f"ema_sigma_rel must be in (0, {SIGMA_REL_MAX:.4f}] (the widest power-function EMA), got {config.ema_sigma_rel}")
    if num_devices is not None and config.batch_size % num_devices:
        raise ConfigError(f"batch_size={config.batch_size} must be divisible by the {num_devices} devices")
    _check_microbatches(config, num_devices)
    grid = config.eval.get("grid", "karras")
    if grid not in GRIDS:
        raise ConfigError(f"eval.grid={grid!r} is not one of {tuple(GRIDS)}")
    if grid in SPACINGS and config.method == "teacher" and config.process.name != "ddpm":
        raise ConfigError(f"eval.grid={grid!r} spaces the discrete DDPM process's timesteps; process.name is {config.process.name!r}")
    if any(int(n) < 1 for n in config.eval.nfes):
        raise ConfigError(f"eval.nfes must be positive integers, got {tuple(config.eval.nfes)}")
    _check_mesh(config.mesh, num_devices)
    _check_data_and_seeds(config)
    _check_precision(config)
    lora_spec(config)
    lora_spec(config, "critic")
    return config


def lora_spec(config: ml_collections.ConfigDict, network: str = "") -> Optional[LoraSpec]:
    """The run's LoRA settings for the network it samples with (``network=""``: ``lora.rank``,
    ``alpha``, ``targets``) or its critic (``network="critic"``: ``lora.critic_rank`` ...); None
    when that rank is 0 (or the run predates the field)."""
    lora = config.get("lora")
    prefix = f"{network}_" if network else ""
    rank = None if lora is None else lora.get(f"{prefix}rank")
    if rank is None or int(rank) == 0:
        return None
    alpha = lora.get(f"{prefix}alpha")
    try:
        return LoraSpec(rank=int(rank), alpha=float(rank) if alpha is None else float(alpha), targets=tuple(lora[f"{prefix}targets"]))
    except ValueError as err:  # LoraSpec names the sampler's fields
        raise ConfigError(str(err).replace("lora.", f"lora.{prefix}")) from None


def _check_precision(config: ml_collections.ConfigDict) -> None:
    """Known dtype names; bfloat16 teacher weights only for a teacher that has network weights."""
    for field in ("compute", "teacher_params"):
        value = config.precision[field]
        if value not in PRECISIONS:
            raise ConfigError(f"precision.{field}={value!r} is not one of {PRECISIONS}")
    if config.precision.teacher_params != "float32" and config.teacher.kind in ("none", "mixture"):
        raise ConfigError(
            f"precision.teacher_params={config.precision.teacher_params!r} stores a network teacher's weights; "
            f"teacher.kind={config.teacher.kind!r} has none (set it to 'float32')"
        )


def _float_leaves(node: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted key, value) of every float in the config, nested sections and tuples included."""
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from _float_leaves(value, name + ".")
        elif isinstance(value, (tuple, list)):
            yield from ((f"{name}[{i}]", v) for i, v in enumerate(value) if isinstance(v, float))
        elif isinstance(value, float):
            yield name, value


def _check_mesh(mesh: ml_collections.ConfigDict, num_devices: Optional[int]) -> None:
    """Mesh sizes that no device set fits; ``make_mesh`` checks the exact device count."""
    fsdp, data = int(mesh.fsdp), int(mesh.data)
    if fsdp < 1:
        raise ConfigError(f"mesh.fsdp={fsdp} must be >= 1")
    if data != -1 and data < 1:
        raise ConfigError(f"mesh.data={data} must be >= 1, or -1 for every device mesh.fsdp leaves")
    if int(mesh.get("dcn_data", 1)) < 1:
        raise ConfigError(f"mesh.dcn_data={mesh.dcn_data} must be >= 1 (the number of slices the data axis spans)")
    _check_logical_rules(mesh.get("logical_axis_rules", ()))
    needed = fsdp * max(data, 1)
    if num_devices is not None and needed > num_devices:
        sizes = f"mesh.fsdp={fsdp}" if data == -1 else f"mesh.data={data} x mesh.fsdp={fsdp}"
        raise ConfigError(f"{sizes} needs {needed} devices; there are {num_devices} (mesh.data=-1 takes every device mesh.fsdp leaves)")


def _check_logical_rules(rules: Any) -> None:
    """``mesh.logical_axis_rules``: a sequence of (logical axis name, "fsdp" or None) pairs, in Flax's convention."""
    pairs = rules if isinstance(rules, (tuple, list)) else [rules]
    for rule in pairs:
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str) and rule[1] in ("fsdp", None)):
            raise ConfigError(
                f"mesh.logical_axis_rules must be pairs (logical axis name, 'fsdp' or None), e.g. (('embed', 'fsdp'), ('mlp', None)); got {rule!r}"
            )


def _check_microbatches(config: ml_collections.ConfigDict, num_devices: Optional[int]) -> None:
    """``train.microbatches`` k >= 1 splits every device's share of the batch evenly: k * devices divides batch_size."""
    k = config.train.get("microbatches", 1)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"train.microbatches must be an integer >= 1 (1: no gradient accumulation), got {k!r}")
    devices = num_devices or 1
    if int(config.batch_size) % (k * devices):
        share = f"each of the {devices} devices' {int(config.batch_size) // devices} examples" if devices > 1 else f"batch_size={config.batch_size}"
        raise ConfigError(f"train.microbatches={k} must divide {share} (batch_size must be a multiple of microbatches x devices = {k * devices})")


def _check_data_and_seeds(config: ml_collections.ConfigDict) -> None:
    """``data.size`` holds one batch; every seed fits the 32 bits every random generator takes."""
    if "size" in config.data and int(config.data.size) < int(config.batch_size):
        raise ConfigError(f"data.size={config.data.size} is smaller than one batch (batch_size={config.batch_size})")
    seeds = {"seed": config.seed, **{f"data.{k}": config.data[k] for k in ("seed", "mixture_seed") if k in config.data}}
    for field, value in seeds.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < 2**32:
            raise ConfigError(f"{field}={value!r} must be an integer in [0, 2**32)")


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load a config file with a preset, apply overrides and validate."""
    return validate(apply_overrides(load_config_file(spec), overrides))
