"""The training loop: one engine for every objective.

It builds the mesh, places the frozen networks and the trainable states with their
shardings, jit-compiles ``objective.step`` once (trainable states donated, frozen
arguments not), and loops with a progress bar, JSONL metrics, periodic sample plots,
asynchronous Orbax checkpoints, skipping of non-finite updates and clean shutdown on
SIGTERM/SIGINT. It never names a method: everything method-specific lives in the objective.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from typing import Any, Callable, Optional, Protocol, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from jaxdistill.core.compilation import jit_once
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Objective, Trainable
from jaxdistill.core.paths import PathLike, as_path, is_remote, write_text_atomic
from jaxdistill.core.rng import derive, step_key
from jaxdistill.core.types import Array, PyTree
from jaxdistill.data.pipeline import prefetch
from jaxdistill.models.sharding import activation_mesh
from jaxdistill.plots import save_sample_figure
from jaxdistill.train import mesh as mesh_lib
from jaxdistill.train.checkpoint import Checkpointer, abstract_like
from jaxdistill.train.sampling import generate_samples


@dataclasses.dataclass
class TrainResult:
    trainable: Trainable
    frozen: PyTree
    step: int
    interrupted: bool
    last_metrics: dict[str, float]
    # Wall seconds of the training that produced ``step``: this call's, plus, after a resume,
    # those recorded with the checkpoint it resumed from (``TrainClock``).
    seconds: float = 0.0


class _StopFlag:
    """Turns SIGTERM/SIGINT into a stop request the loop checks between steps.

    With several processes every one must stop (and save) at the same step, or the others
    hang in the next collective. There SIGTERM is left to JAX's preemption notifier
    (installed by ``jax.distributed.initialize``), which tells all processes, and
    ``should_stop(step)`` is ``multihost_utils.reached_preemption_sync_point(step)``: true on
    every process at the same step. SIGINT keeps its default there (KeyboardInterrupt).
    """

    def __init__(self, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if self.multiprocess:
            return self
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def should_stop(self, step: int) -> bool:
        """Called once per step, with increasing ``step``, on every process."""
        if self.multiprocess and jax.config.jax_enable_preemption_service:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                self.signum = signal.SIGTERM
        return self.signum is not None

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class MetricsWriter:
    """Appends one JSON object per logged step to ``workdir/metrics.jsonl`` (and TensorBoard if
    available). A remote file (``gs://``), which cannot be appended to, is rewritten whole at each
    ``flush`` (the Trainer's checkpoints and its end): lines after the last checkpoint, which a
    resume drops anyway, are lost with the process."""

    def __init__(self, workdir: PathLike, enabled: bool = True):
        self.enabled = enabled
        self.path = as_path(workdir) / "metrics.jsonl"
        self._remote_lines: Optional[list[str]] = None  # a remote file's lines, read once
        self._unflushed = False
        self._tb = None
        if enabled:
            try:
                from tensorboardX import SummaryWriter  # optional

                self._tb = SummaryWriter(os.fspath(as_path(workdir) / "tensorboard"))
            except ImportError:
                pass

    def _read_lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def drop_after(self, step: int) -> None:
        """Remove the lines of steps after ``step``, which a run logged past the checkpoint it now
        resumes from (and lines a kill cut short); rewrites the file atomically."""
        if not self.enabled or not self.path.exists():
            return
        lines = self._read_lines()
        kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
        self._remote_lines = kept if is_remote(self.path) else None
        if kept != lines:
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        line = json.dumps({"step": step, **metrics})
        if is_remote(self.path):
            if self._remote_lines is None:
                self._remote_lines = self._read_lines()
            self._remote_lines.append(line)
            self._unflushed = True
        else:
            with self.path.open("a") as f:
                f.write(line + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)

    def flush(self) -> None:
        """Write a remote file's lines (a local file is appended to line by line)."""
        if self._unflushed:
            write_text_atomic(self.path, "".join(x + "\n" for x in self._remote_lines))
            self._unflushed = False


def _logged_step(line: str) -> Optional[int]:
    """The step of a ``metrics.jsonl`` line, or ``None`` for a line that is not a logged step."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, TypeError, KeyError):
        return None


class TrainClock:
    """Wall seconds of a run across resumes, in ``workdir/train_seconds.json`` ({step: seconds}).

    Each checkpoint records the seconds spent up to its step, written once its (asynchronous)
    save has committed; a run resumed from step s starts its clock at the seconds recorded for s,
    so work lost after the last checkpoint is counted once, when it is redone. A checkpoint
    written before this record existed starts at 0. An unreadable record stops the run with a
    ``ConfigError`` naming the file: the leaderboard's train time must not silently restart."""

    def __init__(self, workdir: PathLike, start_step: int, started: float, enabled: bool = True):
        """``started``: ``time.perf_counter()`` when this call of the training began."""
        self.path = as_path(workdir) / "train_seconds.json"
        self.enabled = enabled
        self.record = self._read()
        self.missing = start_step > 0 and str(start_step) not in self.record
        self.offset = float(self.record.get(str(start_step), 0.0)) if start_step > 0 else 0.0
        self._t0 = started
        self._pending: dict[int, float] = {}

    def _read(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        try:
            record = json.loads(self.path.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, found {type(record).__name__}")
            return {str(k): float(v) for k, v in record.items()}
        except (ValueError, TypeError) as err:  # json.JSONDecodeError is a ValueError
            raise ConfigError(
                f"{self.path} is not a readable train-time record ({err}); the checkpoints are "
                "untouched: repair the file (a JSON object {step: seconds}) or delete it, which "
                "restarts the clock at 0 for this run"
            ) from err

    def seconds(self) -> float:
        return self.offset + time.perf_counter() - self._t0

    def mark(self, step: int, seconds: Optional[float] = None) -> None:
        """Record ``seconds`` (default: now) as the train time up to ``step``, whose checkpoint is committed."""
        self.record[str(step)] = self.seconds() if seconds is None else seconds
        if self.enabled:
            write_text_atomic(self.path, json.dumps(self.record))

    def saving(self, step: int) -> None:
        """Note the seconds up to ``step``, whose checkpoint is being saved; ``commit`` records them."""
        self._pending[step] = self.seconds()

    def commit(self, committed: Callable[[int], bool]) -> None:
        """Record the noted steps whose checkpoints ``committed`` reports finalized on disk."""
        for step in [s for s in self._pending if committed(s)]:
            self.mark(step, self._pending.pop(step))


def keep_finite(old: Trainable, new: Trainable, metrics: dict[str, Array], skipped_total: Array) -> tuple[Trainable, dict[str, Array]]:
    """``new`` if every floating-point array in it is finite, else ``old``: an update that turns
    non-finite although its gradients were finite (a huge learning rate, an optimiser overflow) is
    skipped like one with non-finite gradients (``NetState.apply_gradients``). Metrics gain
    ``skipped`` (this step, for either reason) and ``skipped_total`` (``skipped_total`` plus it)."""
    finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(new) if jnp.issubdtype(x.dtype, jnp.inexact)]))
    kept = jax.lax.cond(finite, lambda: new, lambda: old)  # not a select, which fuses into the update and changes its rounding
    skipped = jnp.maximum(jnp.asarray(metrics.get("skipped", 0.0), jnp.float32), 1.0 - finite.astype(jnp.float32))
    return kept, {**metrics, "skipped": skipped, "skipped_total": skipped_total + skipped}


class Probe(Protocol):
    """Scores a sample set during training (``eval.probe.MixtureProbe``)."""

    def __call__(self, samples: np.ndarray) -> dict[str, float]: ...

    def summary(self, scores: dict[str, float]) -> str: ...


def to_host_metrics(metrics: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


class Trainer:
    """Runs ``objective`` on the data iterator under ``config.train`` and ``config.mesh``.

    ``data`` yields process-local numpy batches; ``data_factory(start_step)`` rebuilds
    the iterator at a given step so a resumed run sees the same batches.
    """

    def __init__(
        self,
        objective: Objective,
        frozen: PyTree,
        config: ml_collections.ConfigDict,
        workdir: PathLike,
        data_factory,
        *,
        mesh: Optional[jax.sharding.Mesh] = None,
        show_progress: bool = True,
        probe: Optional[Probe] = None,
        annotated: Sequence[mesh_lib.Annotated] = (),
    ):
        """``probe`` (e.g. ``eval.probe.MixtureProbe``, ``Built.probe``) scores the samples of
        each sample plot; its scores go to ``metrics.jsonl`` as ``probe/<name>`` and its
        ``summary`` to the progress bar. ``annotated`` (``Built.annotated``): the run's networks,
        whose parameters, optimiser moments, EMA and frozen copies are sharded as their logical
        annotations and ``mesh.logical_axis_rules`` say (``mesh.state_shardings``)."""
        self.objective = objective
        self.annotated = tuple(annotated)
        self.probe = probe
        self.config = config
        self.workdir = os.fspath(as_path(workdir))  # absolute if local; a URI (gs://...) as given
        self.data_factory = data_factory
        self.mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh)
        self.show_progress = show_progress and jax.process_index() == 0
        self.seed = int(config.seed)
        as_path(self.workdir).mkdir(parents=True, exist_ok=True)
        self.frozen_host = frozen
        self.checkpointer = Checkpointer(
            as_path(self.workdir) / "checkpoints",
            max_to_keep=int(config.train.max_to_keep),
            async_save=bool(config.train.async_checkpoint),
        )
        self._compiled_step = None

    # ----------------------------------------------------------------- placement
    def _place_frozen(self) -> tuple[PyTree, PyTree]:
        """The frozen arguments placed with their shardings, then ``objective.prepare`` run under the
        mesh on the placed teacher (its pair sets are computed by the sharded teacher) and what it
        adds placed too. A teacher restored with ``build(mesh=)`` is already in place and not moved."""
        placed = self._place(self.frozen_host)
        with jax.set_mesh(self.mesh):  # arrays prepare() creates (prior noise) live on the mesh
            frozen = self.objective.prepare(placed, derive(jax.random.key(self.seed), "prepare"))
        shardings = self._shardings(frozen)
        return mesh_lib.put_host_tree(frozen, shardings), shardings

    def _shardings(self, tree: PyTree) -> PyTree:
        """Shardings of a state or frozen tree on the mesh (``mesh.state_shardings``)."""
        return mesh_lib.state_shardings(
            tree,
            self.mesh,
            min_fsdp_size=int(self.config.mesh.min_fsdp_size),
            annotated=self.annotated,
            logical_axis_rules=mesh_lib.logical_rules(self.config.mesh),
        )

    def _place(self, frozen: PyTree) -> PyTree:
        return mesh_lib.put_host_tree(frozen, self._shardings(frozen))

    def _init_trainable(self, example_batch: dict, frozen: PyTree, frozen_sh: PyTree) -> tuple[Trainable, PyTree, int]:
        init_rng = derive(jax.random.key(self.seed), "init")
        abstract = jax.eval_shape(self.objective.init, init_rng, example_batch, frozen)
        shardings = self._shardings(abstract)
        latest = self.checkpointer.latest_step()
        if latest is not None:
            restored = self.checkpointer.restore(latest, abstract_like(abstract, shardings))
            return restored, shardings, int(latest)
        batch_sh = jax.tree.map(lambda _: mesh_lib.batch_sharding(self.mesh), example_batch)
        init = jit_once(
            self.objective.init,
            in_shardings=(mesh_lib.replicated(self.mesh), batch_sh, frozen_sh),
            out_shardings=shardings,
        )
        return init(init_rng, example_batch, frozen), shardings, 0

    def compile_step(self, state_sh: PyTree, frozen_sh: PyTree, batch_sh: PyTree):
        seed = self.seed
        objective = self.objective

        mesh = self.mesh

        def train_step(trainable, frozen, batch, step, skipped_total):
            with activation_mesh(mesh):
                new, metrics = objective.step(trainable, frozen, batch, step_key(seed, step), step)
            return keep_finite(trainable, new, metrics, skipped_total)

        replicated = mesh_lib.replicated(self.mesh)
        return jax.jit(
            train_step,
            in_shardings=(state_sh, frozen_sh, batch_sh, replicated, replicated),
            out_shardings=(state_sh, replicated),
            donate_argnums=(0,),
        )

    # ---------------------------------------------------------------------- loop
    def train(self, num_steps: Optional[int] = None) -> TrainResult:
        """Train to ``num_steps`` (default ``train.num_steps``), resuming from the workdir's latest
        checkpoint. The checkpointer is closed on return and on every error: a Trainer trains once."""
        total = int(self.config.train.num_steps if num_steps is None else num_steps)
        started = time.perf_counter()
        clock: Optional[TrainClock] = None
        try:
            latest = self.checkpointer.latest_step()
            if latest is not None and total < latest:
                raise ConfigError(
                    f"train.num_steps={total} is below the step {latest} this workdir's checkpoint already reached; "
                    "raise num_steps or use a fresh --workdir"
                )
            frozen, frozen_sh = self._place_frozen()
            example = mesh_lib.global_batch(next(iter(self.data_factory(0))), self.mesh)
            trainable, state_sh, start = self._init_trainable(example, frozen, frozen_sh)
            clock = TrainClock(self.workdir, start, started, enabled=jax.process_index() == 0)
            batch_sh = jax.tree.map(lambda _: mesh_lib.batch_sharding(self.mesh), example)
            self._compiled_step = self.compile_step(state_sh, frozen_sh, batch_sh)
            return self._loop(trainable, frozen, start, total, clock)
        finally:
            self.checkpointer.close()
            if clock is not None:
                clock.commit(self.checkpointer.is_committed)

    def _loop(self, trainable: Trainable, frozen: PyTree, start: int, total: int, clock: TrainClock) -> TrainResult:
        """Steps ``start`` to ``total`` with logging, sample plots, checkpoints and the stop flag."""
        cfg = self.config.train
        writer = MetricsWriter(self.workdir, enabled=jax.process_index() == 0)
        writer.drop_after(start)
        # The next global batches are placed on the devices by a background thread while the step runs.
        data = prefetch(self.data_factory(start), depth=2, place=lambda batch: mesh_lib.global_batch(batch, self.mesh))
        # Updates skipped since this call started, placed as the step returns it (one compilation).
        skipped_total = jax.device_put(jnp.zeros((), jnp.float32), mesh_lib.replicated(self.mesh))
        last: dict[str, float] = {}
        interrupted = False
        step = start
        bar = tqdm(total=total, initial=start, disable=not self.show_progress, desc=self.objective.name, dynamic_ncols=True)
        if clock.missing:
            bar.write(f"checkpoint {start} has no recorded train time: the run's train time counts from this resume")
        if start == total:
            bar.write(f"checkpoint {start} in {self.checkpointer.directory} already reached train.num_steps={total}: nothing to train")
        t_last, step_last = time.perf_counter(), start
        with _StopFlag(multiprocess=jax.process_count() > 1) as stop, contextlib.closing(data):  # closing stops the prefetch thread
            while step < total:
                batch = next(data)
                trainable, metrics = self._compiled_step(trainable, frozen, batch, jnp.asarray(step, jnp.int32), skipped_total)
                skipped_total = metrics["skipped_total"]
                step += 1
                bar.update(1)
                logged = step % int(cfg.log_every) == 0 or step == total
                if logged:
                    last = to_host_metrics(metrics)
                    last["steps_per_sec"] = (step - step_last) / max(time.perf_counter() - t_last, 1e-9)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in last.items() if k in ("loss", "steps_per_sec")})
                scores = self.save_samples(trainable, frozen, step, bar) if cfg.sample_every and (step % int(cfg.sample_every) == 0 or step == total) else {}
                if logged or scores:  # one line per step: the step's metrics and its probe's scores
                    writer.write(step, {**(last if logged else {}), **scores})
                if logged:
                    t_last, step_last = time.perf_counter(), step  # steps per second leave the plots out
                saved = False
                if step % int(cfg.checkpoint_every) == 0 or step == total:
                    saved = self._save(step, trainable, clock)
                    writer.flush()
                if stop.should_stop(step) and step < total:
                    if not saved:  # orbax refuses to save a step twice
                        self._save(step, trainable, clock, force=True)
                        writer.flush()
                    interrupted = True
                    bar.write(f"received signal {stop.signum}: saved checkpoint at step {step}; rerun to resume")
                    break
        bar.close()
        self.checkpointer.wait()
        return TrainResult(trainable, frozen, step, interrupted, last, seconds=clock.seconds())

    def _save(self, step: int, trainable: Trainable, clock: TrainClock, force: bool = False) -> bool:
        """Start saving checkpoint ``step``; its train time is recorded once the save has committed."""
        saved = self.checkpointer.save(step, trainable, self.config, force=force)
        if saved:
            clock.saving(step)
        clock.commit(self.checkpointer.is_committed)  # orbax's save waits for the previous one
        return saved

    def save_samples(self, trainable: Trainable, frozen: PyTree, step: int, bar: tqdm) -> dict[str, float]:
        """Write a scatter plot (2-D data) or an image grid of student samples to
        ``workdir/samples``; with a ``probe``, return its scores of them (``probe/<name>``)."""
        num = int(self.config.train.num_plot_samples)
        rng = derive(jax.random.key(self.seed), "plot")
        samples = np.asarray(generate_samples(self.objective, trainable, frozen, num, nfe=int(self.objective.eval_nfes[0]), rng=rng))
        if jax.process_index() != 0:
            return {}
        save_sample_figure(samples, as_path(self.workdir) / "samples" / f"step_{step:07d}.png", title=f"{self.objective.name} step {step}")
        if self.probe is None:
            return {}
        scores = self.probe(samples)
        bar.write(f"step {step}: {self.probe.summary(scores)}")
        return {f"probe/{k}": v for k, v in scores.items()}
