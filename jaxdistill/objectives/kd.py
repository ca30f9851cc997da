"""Knowledge distillation into a one-step generator (Luhman & Luhman 2021,
"Knowledge Distillation in Iterative Generative Models for Improved Sampling Speed").

The teacher's deterministic sampler defines a map z -> x = ODE_T(z) from prior noise
to data. A dataset of (z, ODE_T(z)) pairs is built once, and the student is trained
to reproduce the map in one evaluation:

    L(theta) = E_(z, x) || G_theta(z, c) - x ||^2,   G_theta(z, c) = D_theta(z, t_max, c)

where D_theta is the student's denoiser evaluated at the prior time t_max. With
``num_pairs = 0`` fresh pairs are drawn every step instead (an infinite pair set).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.predict import PREDICTIONS
from jaxdistill.losses import mean_per_sample
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad, teacher_passes
from jaxdistill.objectives.denoising import batch_labels

PAIR_CHUNK = 1024


def teacher_ode(
    teacher: Denoiser, params: PyTree, z: Array, cond: Optional[Array], guidance: Optional[float], sampler: str, nfe: int, rng: Array
) -> Array:
    """ODE_T(z): the teacher's sampler from prior noise z (guided when labels are given)."""
    guidance = guidance if cond is not None else None
    x0_fn = lambda x, t: teacher.x0(params, x, t, cond, guidance=guidance)
    return samplers.sample_nfe(x0_fn, teacher.process, z, nfe, sampler, rng=rng)


def _to_host(x: Array) -> np.ndarray:
    """The whole of ``x`` as a numpy array on this process, gathered from the other processes when a
    sharded teacher (``Trainer`` runs ``prepare`` on the placed one) left parts of it there."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def teacher_pair_set(sample_fn, prior_fn, teacher_params: PyTree, num_pairs: int, num_classes: int, rng: Array) -> dict:
    """``{"noise", "target"[, "label"]}``: ``num_pairs`` draws of (z, sample_fn(teacher_params, z, c, rng))
    with z = prior_fn(rng, n) and uniform labels c, built once in jitted chunks with a progress bar.
    A ``sample_fn`` returning a dict (with a ``"target"``) adds its other entries as pair fields."""
    sample = jax.jit(sample_fn)
    noise, targets, labels = [], [], []
    starts = range(0, num_pairs, PAIR_CHUNK)
    for i, start in enumerate(tqdm(starts, desc="teacher pairs", unit="chunk", disable=jax.process_index() > 0)):
        n = min(PAIR_CHUNK, num_pairs - start)
        key = jax.random.fold_in(rng, i)
        z = prior_fn(derive(key, "prior"), n)
        cond = None
        if num_classes > 0:
            cond = jax.random.randint(derive(key, "label"), (n,), 0, num_classes)
            labels.append(_to_host(cond))
        noise.append(_to_host(z))
        out = sample(teacher_params, z, cond, derive(key, "sampler"))
        targets.append(jax.tree.map(_to_host, out if isinstance(out, dict) else {"target": out}))
    pairs = {"noise": np.concatenate(noise), **jax.tree.map(lambda *parts: np.concatenate(parts), *targets)}
    if labels:
        pairs["label"] = np.concatenate(labels).astype(np.int32)
    return pairs


@dataclasses.dataclass(frozen=True, kw_only=True)
class KD:
    """Settings of knowledge distillation (Luhman & Luhman 2021)."""

    section: ClassVar[str] = "kd"
    method: ClassVar[str] = "kd"

    # The pair set: the teacher's deterministic sampler and its NFE (the paper uses DDIM with 1000
    # steps; ours is the teacher's Heun sampler), and the number of (z, ODE_T(z)) pairs (0: fresh
    # pairs every step).
    teacher_sampler: str = "heun"
    teacher_nfe: int = 31
    num_pairs: int = 16384
    init_from_teacher: bool = False  # the paper trains its student from scratch
    student_prediction: str = "edm"  # the student network's output kind

    def __post_init__(self):
        check_choice("teacher_sampler", self.teacher_sampler, samplers.METHODS)
        check_choice("student_prediction", self.student_prediction, PREDICTIONS)
        if self.teacher_nfe < 1 or self.num_pairs < 0:
            raise ValueError(f"need teacher_nfe >= 1 and num_pairs >= 0, got {self.teacher_nfe}, {self.num_pairs}")


class TeacherPairSet:
    """Members of an objective trained on a pair set built once before training: ``settings.num_pairs``
    pairs (z, ODE_T(z)) of the teacher's deterministic sampler ``settings.teacher_sampler`` at
    ``settings.teacher_nfe`` (``teacher_pair_set``; num_pairs = 0 builds none)."""

    @property
    def setup_passes(self) -> float:
        """One-off teacher passes: the pair set's teacher sampling."""
        return float(self.settings.num_pairs * self.settings.teacher_nfe * teacher_passes(self.guidance))

    def teacher_sample(self, teacher_params: PyTree, z: Array, cond: Optional[Array], rng: Array) -> Array:
        """ODE_T(z): the teacher's deterministic sampler from prior noise z."""
        return teacher_ode(self.teacher, teacher_params, z, cond, self.guidance, self.settings.teacher_sampler, self.settings.teacher_nfe, rng)

    def prepare(self, frozen: PyTree, rng: Array) -> PyTree:
        """Builds the (noise, teacher sample, label) pair set once, in jitted chunks."""
        if self.settings.num_pairs == 0:
            return frozen
        pairs = teacher_pair_set(self.teacher_sample, self.prior, frozen["teacher"], self.settings.num_pairs, self.num_classes, rng)
        return {**frozen, "pairs": pairs}


@dataclasses.dataclass(frozen=True, kw_only=True)
class KnowledgeDistillation(TeacherPairSet, StudentDistillation):
    settings: KD
    teacher: Denoiser

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: the student's forward and backward
        (the pair set's teacher passes are a one-off cost; with num_pairs = 0 they recur)."""
        return 2.0 + (0.0 if self.settings.num_pairs else float(self.settings.teacher_nfe))

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(rng, batch, frozen)
        return {"student": NetState.create(params, self.tx)}

    def one_step(self, params: PyTree, z: Array, cond: Optional[Array]) -> Array:
        """G(z, c) = D_student(z, t_max, c)."""
        t = jnp.full((z.shape[0],), self.process.t_max, jnp.float32)
        return self.student.x0(params, z, t, cond)

    def minibatch(self, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Array, Optional[Array]]:
        n = batch["x"].shape[0]
        if self.settings.num_pairs == 0:
            z = self.prior(derive(rng, "prior"), n)
            cond = batch_labels(batch, self.num_classes)
            return z, self.teacher_sample(frozen["teacher"], z, cond, derive(rng, "sampler")), cond
        idx = jax.random.randint(derive(rng, "pairs"), (n,), 0, self.settings.num_pairs)
        pairs = frozen["pairs"]
        cond = pairs["label"][idx] if self.num_classes > 0 else None
        return pairs["noise"][idx], pairs["target"][idx], cond

    def loss(self, params: PyTree, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        """mean_b || G(z_b, c_b) - ODE_T(z_b) ||^2 / d over the batch's (noise, teacher sample) pairs."""
        z, target, cond = self.minibatch(frozen, batch, rng)
        loss = jnp.mean(mean_per_sample(jnp.square(self.one_step(params, z, cond) - jax.lax.stop_gradient(target))))
        return loss, {"loss": loss}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        loss = lambda params, part, key: self.loss(params, frozen, part, key)
        grads, metrics = microbatch_grad(loss, trainable["student"].params, batch, rng, self.microbatches)
        state, opt_metrics = trainable["student"].apply_gradients(grads, self.ema_decay)
        return {"student": state}, {**metrics, **opt_metrics}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        if nfe != 1:
            raise ValueError(f"the knowledge-distillation student is a one-step generator; got nfe={nfe}")
        return self.one_step(trainable["student"].eval_params, noise, cond)


def build(ctx, settings: KD) -> tuple[KnowledgeDistillation, PyTree]:
    """The knowledge-distillation objective of ``settings`` with the run's networks and teacher."""
    teacher, teacher_params = ctx.teacher()
    student, student_init = ctx.network(teacher.process, settings.student_prediction)
    objective = KnowledgeDistillation(
        settings=settings,
        teacher=teacher,
        student=student,
        student_init_fn=student_init,
        **ctx.run_fields(),
    )
    return objective, {"teacher": teacher_params}
