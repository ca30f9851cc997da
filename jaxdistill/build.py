"""Turn a validated config into the pieces the engine runs: the objective, the frozen
teacher parameters and the data stream; and rebuild a finished run from its workdir."""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections

from jaxdistill.config import ConfigError, validate
from jaxdistill.data.pipeline import batch_iterator
from jaxdistill.data.sources import make_source
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess, get_process
from jaxdistill.models import gaussian_mixture
from jaxdistill.models.registry import make_network
from jaxdistill.objectives.denoising import DenoisingObjective
from jaxdistill.objectives.kd import KnowledgeDistillation
from jaxdistill.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from jaxdistill.train.state import make_optimizer
from jaxdistill.types import PyTree

MIXTURES = {"grid25": gaussian_mixture.grid25, "digits_gmm": gaussian_mixture.digits_gmm}


@dataclasses.dataclass
class Built:
    """What the engine needs for one run."""

    config: ml_collections.ConfigDict
    objective: object
    frozen: PyTree
    event_shape: tuple[int, ...]
    source: object

    def data_factory(self, start_step: int = 0) -> Iterator[dict]:
        return batch_iterator(
            self.source,
            int(self.config.batch_size),
            seed=int(self.config.seed),
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
            start_step=start_step,
        )


def make_process(config: ml_collections.ConfigDict) -> NoiseProcess:
    kwargs = {k: v for k, v in config.process.items() if k != "name"}
    try:
        return get_process(config.process.name, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"process: {err}") from err


def make_mixture(name: str):
    if name not in MIXTURES:
        raise ConfigError(f"teacher.mixture={name!r} is not one of {tuple(MIXTURES)}")
    return MIXTURES[name]()


def network_denoiser(config: ml_collections.ConfigDict, process: NoiseProcess, prediction: str):
    """(Denoiser, init_fn) for the config's network."""
    try:
        network = make_network(config.network)
    except (ValueError, KeyError) as err:
        raise ConfigError(f"network: {err}") from err
    return Denoiser(network.apply, process, prediction, sigma_data=float(config.sigma_data)), network.init


def load_teacher(config: ml_collections.ConfigDict, event_shape: tuple[int, ...]) -> tuple[Denoiser, PyTree]:
    """The frozen teacher denoiser and its parameters, as the config's ``teacher`` says."""
    kind = config.teacher.kind
    if kind == "mixture":
        mixture = make_mixture(config.teacher.mixture)
        if tuple(mixture.event_shape) != tuple(event_shape):
            raise ConfigError(
                f"teacher mixture {config.teacher.mixture!r} has event shape {mixture.event_shape}, data has {event_shape}"
            )
        process = make_process(config)
        return Denoiser(gaussian_mixture.mixture_apply_fn(process), process, "x0"), mixture.params
    if kind == "checkpoint":
        run = load_run(config.teacher.workdir)
        if not isinstance(run.built.objective, DenoisingObjective):
            raise ConfigError(f"teacher.workdir={config.teacher.workdir!r} is a {run.config.method!r} run, not a teacher")
        if tuple(run.built.event_shape) != tuple(event_shape):
            raise ConfigError(f"teacher event shape {run.built.event_shape} does not match the data's {event_shape}")
        return run.built.objective.denoiser, run.trainable["model"].eval_params
    raise ConfigError(f"method {config.method!r} needs a teacher (teacher.kind is {kind!r})")


def build(config: ml_collections.ConfigDict) -> Built:
    """Objective, frozen arguments and data source for a run."""
    validate(config, num_devices=jax.device_count())
    try:
        source = make_source(config.data)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise ConfigError(f"data: {err}") from err
    event_shape = tuple(source[0]["x"].shape)
    num_classes = int(config.network.num_classes)
    tx = make_optimizer(config.optim)
    eval_guidance = config.eval.guidance
    if config.method == "teacher":
        process = make_process(config)
        denoiser, init_fn = network_denoiser(config, process, config.prediction)
        objective = DenoisingObjective(
            denoiser=denoiser,
            init_fn=init_fn,
            tx=tx,
            event_shape=event_shape,
            num_classes=num_classes,
            weighting=config.denoising.weighting,
            min_snr_gamma=float(config.denoising.min_snr_gamma),
            label_dropout=float(config.denoising.label_dropout),
            ema_decay=float(config.ema_decay),
            sampler=config.eval.sampler,
            guidance=eval_guidance,
            eval_nfes=tuple(int(n) for n in config.eval.nfes),
        )
        return Built(config, objective, {}, event_shape, source)
    teacher, teacher_params = load_teacher(config, event_shape)
    student, student_init = network_denoiser(config, teacher.process, config.kd.student_prediction)
    objective = KnowledgeDistillation(
        teacher=teacher,
        student=student,
        student_init_fn=student_init,
        tx=tx,
        event_shape=event_shape,
        num_classes=num_classes,
        teacher_sampler=config.kd.teacher_sampler,
        teacher_nfe=int(config.kd.teacher_nfe),
        guidance=config.teacher.guidance,
        num_pairs=int(config.kd.num_pairs),
        init_from_teacher=bool(config.kd.init_from_teacher),
        ema_decay=float(config.ema_decay),
    )
    return Built(config, objective, {"teacher": teacher_params}, event_shape, source)


@dataclasses.dataclass
class Run:
    """A trained run restored from its workdir."""

    config: ml_collections.ConfigDict
    built: Built
    trainable: dict
    frozen: PyTree
    step: int


def load_run(workdir: str, step: Optional[int] = None) -> Run:
    """Rebuild the objective from the saved config and restore the latest checkpoint."""
    ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise CheckpointError(f"no checkpoints in {workdir!r}: train there first (jaxdistill train --workdir ...)")
    checkpointer = Checkpointer(ckpt_dir, async_save=False)
    step = checkpointer.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no finished checkpoint in {ckpt_dir}")
    config = ml_collections.ConfigDict(checkpointer.restore_config(step))
    _restore_tuples(config)
    built = build(config)
    example = next(built.data_factory(0))
    example = jax.tree.map(jnp.asarray, example)
    rng = jax.random.key(0)
    frozen = built.frozen
    abstract = jax.eval_shape(built.objective.init, rng, example, frozen)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
    trainable = checkpointer.restore(step, abstract_like(abstract, shardings))
    checkpointer.close()
    return Run(config, built, trainable, frozen, int(step))


def _restore_tuples(config: ml_collections.ConfigDict) -> None:
    """JSON turns tuples into lists; give the known tuple fields their type back."""
    config.eval.nfes = tuple(config.eval.nfes)
