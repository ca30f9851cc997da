"""Turn a validated config into the pieces the engine runs: the objective, the frozen
teacher parameters and the data stream; and rebuild a finished run from its workdir."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdistill.config import OBJECT_TEACHER, base_config, lora_spec, validate
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import PathLike, as_path
from jaxdistill.core.phema import ema_rule
from jaxdistill.core.state import make_optimizer
from jaxdistill.core.types import PyTree
from jaxdistill.data.pipeline import batch_iterator
from jaxdistill.data.sources import data_mean, describe, make_source, mixture_of
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess, get_process
from jaxdistill.eval.probe import MixtureProbe
from jaxdistill.models import gaussian_mixture
from jaxdistill.models.hf.teacher import abstract_sd_unet, load_sd_teacher
from jaxdistill.models.lora import ATTENTION_TARGETS
from jaxdistill.models.ports.converted import converted_teacher
from jaxdistill.models.precision import cast_floats, with_compute_dtype
from jaxdistill.models.registry import Network, make_network, network_config
from jaxdistill.objectives import registry
from jaxdistill.objectives.lora_networks import LoraNetworks
from jaxdistill.train import mesh as mesh_lib
from jaxdistill.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from jaxdistill.train.sampling import class_labels

# Run-config fields added after runs were first saved, with the value that does what older runs did.
# Older runs sampled a zero-mean prior, kept a constant-decay EMA, computed in float32 and trained
# their students in full (lora.rank 0).
LATER_FIELDS = {
    "prior_mean": "zero", "ema_sigma_rel": None, "precision": {"compute": "float32", "teacher_params": "float32"},
    "lora": {"rank": 0, "alpha": None, "targets": list(ATTENTION_TARGETS), "critic_rank": 0, "critic_alpha": None, "critic_targets": list(ATTENTION_TARGETS)},
}


@dataclasses.dataclass
class Built:
    """What the engine needs for one run."""

    config: ml_collections.ConfigDict
    objective: object
    frozen: PyTree
    event_shape: tuple[int, ...]
    source: object
    # The networks this build made (student, critic, a checkpointed or converted teacher's), whose
    # logical axis annotations shard the states they back (``annotated``).
    networks: tuple[Network, ...] = ()

    @functools.cached_property
    def annotated(self) -> tuple[mesh_lib.Annotated, ...]:
        """``networks`` at the run's input shape, for ``Trainer(annotated=)`` and ``mesh.state_shardings``
        (their parameter trees are traced only where a mesh shards over fsdp)."""
        example = jax.ShapeDtypeStruct((1, *self.event_shape), jnp.float32)
        return tuple(mesh_lib.Annotated(network, example) for network in self.networks)

    def data_factory(self, start_step: int = 0) -> Iterator[dict]:
        return batch_iterator(
            self.source,
            int(self.config.batch_size),
            seed=int(self.config.seed),
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
            start_step=start_step,
        )

    @functools.cached_property
    def probe(self) -> Optional[MixtureProbe]:
        """A mode-coverage probe for the sample plots when the data are a known mixture (``Trainer(probe=)``)."""
        mixture = getattr(self.source, "mixture", None) or mixture_of(self.config.data)
        return None if mixture is None else MixtureProbe.of(mixture)


def make_process(config: ml_collections.ConfigDict) -> NoiseProcess:
    kwargs = {k: v for k, v in config.process.items() if k != "name"}
    try:
        return get_process(config.process.name, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"process: {err}") from err


def config_network(config: ml_collections.ConfigDict, num_times: int = 1) -> Network:
    """The config's network with ``num_times`` time-like inputs."""
    net_config = config.network.copy_and_resolve_references()
    net_config.num_times = num_times
    try:
        return make_network(net_config)
    except (ValueError, KeyError) as err:
        raise ConfigError(f"network: {err}") from err


def network_as_denoiser(network: Network, config: ml_collections.ConfigDict, process: NoiseProcess, prediction: str) -> Denoiser:
    """``network`` as a denoiser of ``process`` computing in ``precision.compute``."""
    try:
        return Denoiser(with_compute_dtype(network.apply, config.precision.compute), process, prediction, sigma_data=float(config.sigma_data))
    except ValueError as err:
        raise ConfigError(str(err)) from err


def network_denoiser(config: ml_collections.ConfigDict, process: NoiseProcess, prediction: str, num_times: int = 1):
    """(Denoiser, init_fn) for the config's network with ``num_times`` time-like inputs."""
    network = config_network(config, num_times)
    return network_as_denoiser(network, config, process, prediction), network.init


def load_teacher(config: ml_collections.ConfigDict, event_shape: tuple[int, ...], mesh: Optional[jax.sharding.Mesh] = None) -> tuple[Denoiser, PyTree]:
    """The frozen teacher denoiser and its parameters, as the config's ``teacher`` says:
    ``mixture`` is the exact mixture the data are drawn from, ``checkpoint`` a trained teacher run,
    ``converted`` a published network converted by ``jaxdistill convert``, ``diffusers`` the UNet
    of a diffusers Stable Diffusion folder (``models.hf``; inputs are its latents). With ``mesh``, a
    checkpointed teacher's parameters are restored straight into their shardings on it
    (``load_run``, with the config's ``mesh`` rules); without, onto one device."""
    denoiser, params, _ = teacher_with_networks(config, event_shape, mesh)
    return denoiser, params


def teacher_with_networks(
    config: ml_collections.ConfigDict, event_shape: tuple[int, ...], mesh: Optional[jax.sharding.Mesh] = None, abstract: bool = False
) -> tuple[Denoiser, PyTree, tuple[Network, ...]]:
    """``load_teacher`` and the networks behind the teacher's parameters (none for the mixture);
    ``abstract``: a Stable Diffusion teacher from its folder's JSON files, parameters as shapes only."""
    kind = config.teacher.kind
    remat = bool(config.network.get("remat", False))  # a Stable Diffusion UNet's block remat
    if abstract:
        if kind != "diffusers":
            raise ConfigError(f"an abstract teacher (compile-only) is a Stable Diffusion folder's UNet: it needs teacher.kind='diffusers', not {kind!r}")
        denoiser, params = abstract_sd_unet(config.teacher.path, remat=remat)
        return _computing(denoiser, config), params, ()
    if kind == "mixture":
        try:
            mixture = mixture_of(config.data)
        except (ValueError, KeyError) as err:
            raise ConfigError(f"data: {err}") from err
        if mixture is None:
            raise ConfigError(f"teacher.kind='mixture' distils the exact mixture the data are drawn from; data.name={config.data.name!r} is no mixture")
        process = make_process(config)
        return Denoiser(gaussian_mixture.mixture_apply_fn(process), process, "x0"), mixture.params, ()
    if kind == "checkpoint":
        rules = mesh_lib.logical_rules(config.mesh)
        run = load_run(config.teacher.workdir, mesh=mesh, min_fsdp_size=int(config.mesh.min_fsdp_size), logical_axis_rules=rules)
        if run.config.method != "teacher":
            raise ConfigError(f"teacher.workdir={config.teacher.workdir!r} is a {run.config.method!r} run, not a teacher")
        if tuple(run.built.event_shape) != tuple(event_shape):
            raise ConfigError(f"teacher event shape {run.built.event_shape} does not match the data's {event_shape}")
        return _computing(run.built.objective.denoiser, config), run.trainable["model"].eval_params, run.built.networks
    if kind == "converted":
        denoiser, params, info = converted_teacher(config.teacher.path)
        if tuple(info["event_shape"]) != tuple(event_shape):
            raise ConfigError(f"teacher.path={config.teacher.path!r} takes inputs of shape {tuple(info['event_shape'])}, the data's are {tuple(event_shape)}")
        return _computing(denoiser, config), params, (make_network(ml_collections.ConfigDict(info["network"])),)
    if kind == "diffusers":  # diffusers' Flax classes carry no logical axis annotations: no networks to record
        sd = load_sd_teacher(config.teacher.path, remat=remat)
        if event_shape[-1] != sd.latent_channels:
            raise ConfigError(f"teacher.path={config.teacher.path!r} denoises latents of {sd.latent_channels} channels, the data's event shape is {tuple(event_shape)}")
        return _computing(sd.denoiser(), config), sd.unet_params, ()
    if kind == OBJECT_TEACHER:
        raise ConfigError("this run's teacher was passed as an object; pass it again (teacher=(denoiser, params))")
    raise ConfigError(f"method {config.method!r} needs a teacher: set teacher.kind to 'mixture', 'checkpoint', 'converted' or 'diffusers' (it is {kind!r})")


def _computing(denoiser: Denoiser, config: ml_collections.ConfigDict) -> Denoiser:
    """A network teacher computing in the run's ``precision.compute`` (a checkpoint teacher trained
    in bfloat16 computes in bfloat16 either way)."""
    return dataclasses.replace(denoiser, apply_fn=with_compute_dtype(denoiser.apply_fn, config.precision.compute))


@dataclasses.dataclass
class BuildContext:
    """What an objective module's ``build`` gets: the config and shared factories."""

    config: ml_collections.ConfigDict
    event_shape: tuple[int, ...]
    teacher_object: Optional[tuple[Denoiser, PyTree]] = None
    data_mean: Optional[tuple[float, ...]] = None  # flat; None: the prior is zero-mean (config.prior_mean)
    mesh: Optional[jax.sharding.Mesh] = None  # the run's mesh: a checkpointed teacher is restored onto it
    abstract_teacher: bool = False  # teacher parameters as shapes only (build(abstract_teacher=True))
    networks: list[Network] = dataclasses.field(default_factory=list)  # every network made so far (``Built.networks``)

    @property
    def num_classes(self) -> int:
        return int(self.config.network.num_classes)

    def optimizer(self):
        return make_optimizer(self.config.optim)

    @property
    def microbatches(self) -> int:
        """``train.microbatches`` (1 for runs saved before the field existed)."""
        return int(self.config.train.get("microbatches", 1))

    def process(self) -> NoiseProcess:
        return make_process(self.config)

    def teacher(self) -> tuple[Denoiser, PyTree]:
        """The teacher (object or ``load_teacher``), its weights stored in ``precision.teacher_params``."""
        if self.teacher_object is not None:
            denoiser, params = self.teacher_object
        else:
            denoiser, params, networks = teacher_with_networks(self.config, self.event_shape, self.mesh, self.abstract_teacher)
            self.networks.extend(networks)
        stored = self.config.precision.teacher_params
        return denoiser, params if stored == "float32" else cast_floats(params, jnp.dtype(stored))

    def network(self, process: NoiseProcess, prediction: str, num_times: int = 1):
        """(Denoiser, init_fn) of the config's network as a denoiser of ``process``."""
        network = config_network(self.config, num_times)
        self.networks.append(network)
        return network_as_denoiser(network, self.config, process, prediction), network.init

    def run_fields(self) -> dict[str, Any]:
        """The objective fields every method takes from the run: optimiser, event shape, updates,
        classes, the teacher's guidance, EMA rule (decay or power EMA), the evaluation NFEs, the prior's
        data mean and the microbatches each gradient accumulates over."""
        c = self.config
        return dict(
            tx=self.optimizer(),
            event_shape=self.event_shape,
            total_steps=int(c.train.num_steps),
            num_classes=self.num_classes,
            guidance=c.teacher.guidance,
            ema_decay=ema_rule(c.ema_decay, c.get("ema_sigma_rel")),
            eval_nfes=tuple(int(n) for n in c.eval.nfes),
            data_mean=self.data_mean,
            microbatches=self.microbatches,
        )

    def require_teacher_weights(self, settings: Any, *fields: str) -> None:
        """A ConfigError if any of ``settings``' flags ``fields`` asks to start from the teacher's
        weights while the teacher has none (not a trained network)."""
        wanted = [f"{settings.section}.{f}" for f in fields if getattr(settings, f)]
        if wanted and self.teacher_object is None and self.config.teacher.kind not in ("checkpoint", "converted", "diffusers"):
            raise ConfigError(
                f"{settings.method}: {' / '.join(wanted)} need a trained network teacher (teacher.kind='checkpoint'); "
                f"the exact mixture has no weights to copy — set {' and '.join(wanted)} to False"
            )


def build(
    config: ml_collections.ConfigDict,
    *,
    source: Any = None,
    teacher: Optional[tuple[Denoiser, PyTree]] = None,
    network: Optional[nn.Module] = None,
    mesh: Optional[jax.sharding.Mesh] = None,
    abstract_teacher: bool = False,
) -> Built:
    """Objective, frozen arguments and data source for a run.

    A library user may pass objects instead of names: ``source`` (any random-access source of
    ``{"x", "label"}`` records, e.g. ``MixtureSource(my_mixture, size)``), ``teacher`` (a
    ``(Denoiser, params)`` pair) and ``network`` (a linen module following the ``models``
    contract). ``Built.config`` records them, and is the config to train with: a source that
    describes itself (``MixtureSource``) and a module-level network class are written into it, so
    ``load_run`` and ``jaxdistill eval`` read the run back; other objects are marked, and reading
    the run back takes them again. ``mesh``, the mesh the run will train on (``Trainer(mesh=)``),
    restores a checkpointed teacher (``teacher.kind='checkpoint'``) straight into its shardings
    there, with no copy of it on one device or host; without it, the teacher goes onto one device.
    ``abstract_teacher`` (``teacher.kind='diffusers'`` only) reads the Stable Diffusion folder's JSON
    files alone and makes the teacher's parameters ``jax.ShapeDtypeStruct`` leaves
    (``models.hf.abstract_sd_unet``): for compiling a step from abstract shapes, not for training.
    """
    config = config.copy_and_resolve_references()
    if source is not None:
        config.data = ml_collections.ConfigDict(describe(source))
    if network is not None:
        try:
            config.network = network_config(network, int(config.network.get("num_classes", 0)))
        except ValueError as err:
            raise ConfigError(f"network: {err}") from err
    if teacher is not None:
        config.teacher.kind = OBJECT_TEACHER
    validate(config, num_devices=jax.device_count())
    if source is None:
        try:
            source = make_source(config.data)
        except (ValueError, KeyError, FileNotFoundError) as err:
            raise ConfigError(f"data: {err}") from err
    if len(source) < int(config.batch_size):
        raise ConfigError(f"the data source holds {len(source)} records, fewer than one batch (batch_size={config.batch_size}): lower batch_size or raise data.size")
    event_shape = tuple(source[0]["x"].shape)
    mean = tuple(float(m) for m in data_mean(source).ravel()) if config.prior_mean == "data" else None
    context = BuildContext(config, event_shape, teacher, mean, mesh, abstract_teacher=abstract_teacher)
    objective, frozen = registry.build(context)
    sampler, critic = lora_spec(config), lora_spec(config, "critic")
    if sampler is not None or critic is not None:
        try:
            objective = LoraNetworks.wrap(objective, frozen, jnp.asarray(source[0]["x"])[None], sampler=sampler, critic=critic)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    return Built(config, objective, frozen, event_shape, source, tuple(context.networks))


@dataclasses.dataclass
class Run:
    """A trained run restored from its workdir."""

    config: ml_collections.ConfigDict
    built: Built
    trainable: dict
    frozen: PyTree
    step: int

    def nfe_problem(self, nfe: int) -> Optional[str]:
        """Why the run's generator cannot take ``nfe`` evaluations, or None if it can (only traced)."""
        objective = self.built.objective
        labels = class_labels(objective.num_classes, 1)
        cond = None if labels is None else jnp.asarray(labels)
        rng = jax.random.key(0)
        try:
            jax.eval_shape(lambda: objective.generate(self.trainable, self.frozen, objective.prior(rng, 1), cond, nfe=nfe, rng=rng))
        except ValueError as err:
            return f"{err} (this {self.config.method} run evaluates NFEs {tuple(objective.eval_nfes)} by default)"
        return None


def load_run(
    workdir: PathLike,
    step: Optional[int] = None,
    *,
    source: Any = None,
    teacher: Optional[tuple[Denoiser, PyTree]] = None,
    mesh: Optional[jax.sharding.Mesh] = None,
    min_fsdp_size: int = 1024,
    logical_axis_rules: Optional[Sequence[tuple[str, Optional[str]]]] = None,
) -> Run:
    """Rebuild the objective from the saved config and restore the latest checkpoint (or
    ``step``). A run trained on a source or teacher passed as an object that the config could not
    record (``build``) takes it again here. The states are restored onto one device (a pod's run
    reads back on a laptop), or with ``mesh`` straight into the shardings a Trainer on ``mesh``
    gives them (``mesh.state_shardings`` with the run's networks' annotations and
    ``logical_axis_rules``, default the saved config's ``mesh.logical_axis_rules``): each device
    reads only its own shards."""
    ckpt_dir = as_path(workdir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"no checkpoints in {workdir!r}: train there first (jaxdistill train --workdir ...)")
    checkpointer = Checkpointer(ckpt_dir, async_save=False)
    try:
        step = _pick_step(checkpointer, step)
        config = _saved_config(checkpointer, step)
        built = build(_on_one_device(config), source=source, teacher=teacher)
        abstract = abstract_trainable(built)
        if mesh is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # addressable on every host
            shardings = jax.tree.map(lambda _: device, abstract)
        else:
            rules = mesh_lib.logical_rules(config.mesh) if logical_axis_rules is None else tuple(logical_axis_rules)
            shardings = mesh_lib.state_shardings(abstract, mesh, min_fsdp_size=min_fsdp_size, annotated=built.annotated, logical_axis_rules=rules)
        try:
            trainable = checkpointer.restore(step, abstract_like(abstract, shardings))
        except CheckpointError as err:
            raise CheckpointError(f"{err}{_other_steps(checkpointer, step)}") from err
    finally:
        checkpointer.close()
    return Run(config, built, trainable, built.frozen, int(step))


def _on_one_device(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of a saved config whose mesh fits this host: a run is read back onto one device,
    whatever mesh it trained on (a pod's run can be sampled on a laptop)."""
    config = config.copy_and_resolve_references()
    config.mesh.data, config.mesh.fsdp = -1, 1
    return config


def _pick_step(checkpointer: Checkpointer, step: Optional[int]) -> int:
    """``step``, or the latest finished one; a CheckpointError listing the steps there are."""
    steps = sorted(checkpointer.manager.all_steps())
    if not steps:
        raise CheckpointError(f"no finished checkpoint in {checkpointer.directory}")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointError(f"no checkpoint step {step} in {checkpointer.directory}; its steps are {', '.join(map(str, steps))}")
    return step


def _other_steps(checkpointer: Checkpointer, step: int) -> str:
    """A hint naming the run's other checkpoint steps (to read with ``step`` / ``--step``)."""
    others = [s for s in sorted(checkpointer.manager.all_steps()) if s != step]
    return f" Other steps to read (--step): {', '.join(map(str, others))}." if others else ""


def _saved_config(checkpointer: Checkpointer, step: int) -> ml_collections.ConfigDict:
    """The run config saved with checkpoint ``step``; a CheckpointError if it is unreadable."""
    try:
        saved = checkpointer.restore_config(step)
        problem = _run_config_problem(saved)
    except ValueError as err:  # not JSON, or not UTF-8
        problem = f"{type(err).__name__}: {err}"
    if problem:
        raise CheckpointError(f"the saved config of checkpoint step {step} in {checkpointer.directory} is corrupt ({problem}).{_other_steps(checkpointer, step)}")
    return config_from_json(saved)


def _run_config_problem(saved: Any) -> Optional[str]:
    """What keeps the JSON ``saved`` from being a run config (a field every run has is missing), or None."""
    if not isinstance(saved, dict):
        return f"a JSON {type(saved).__name__}, not a run config"
    sections = {registry.section(method) for method in registry.METHODS}
    missing = [key for key in base_config() if key not in saved and key not in sections and key not in LATER_FIELDS]
    return f"no field {', '.join(missing)}" if missing else None


def abstract_trainable(built: Built) -> dict:
    """Shapes and dtypes of every trainable network state of ``built`` (nothing is computed)."""
    example = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    return jax.eval_shape(built.objective.init, jax.random.key(0), example, built.frozen)


def config_from_json(saved: dict) -> ml_collections.ConfigDict:
    """A run config from its saved JSON; JSON turns tuples into lists, so the known tuple
    fields get their type back, and a field added since the run was saved gets ``LATER_FIELDS``' value."""
    config = ml_collections.ConfigDict(saved)
    config.eval.nfes = tuple(config.eval.nfes)
    for key, value in LATER_FIELDS.items():
        if key not in config:
            config[key] = value
    return config
