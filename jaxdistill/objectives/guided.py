"""Guided distillation (Meng, Rombach, Gao, Kingma, Ermon, Ho & Salimans 2023, "On
Distillation of Guided Diffusion Models").

Classifier-free guidance costs two teacher evaluations per step and many steps; the
student learns the guided model for a whole range of guidance weights w in one network
x_eta(z_t, w, c) (w enters as an extra scalar input, ``num_times = 2``), then is
progressively distilled to few steps.

Guidance convention (ours, everywhere in jaxdistill): x_cfg = x_u + w (x_c - x_u), w = 1
unguided. The paper writes (1 + w') x_c - w' x_u, so w = w' + 1; its range w' ~ U[0, 4]
is our [1, 5] (converted in ``Guided``; configs hold our w).

* Stage one (``stage_one_steps`` updates): with w ~ U[w_min, w_max], t drawn as in teacher
  training (``process.sample_t``) and z_t = alpha_t x + sigma_t eps,

      L_1 = max(SNR(t), 1) || x_eta(z_t, w, c) - [x_u(z_t) + w (x_c(z_t) - x_u(z_t))] ||^2.

* Stage two: progressive distillation (``jaxdistill.objectives.progressive``, Salimans &
  Ho 2022) of the w-conditioned student, w ~ U[w_min, w_max] per sample: the teacher is a
  copy of the student (its EMA at each stage switch) taking two DDIM steps t -> t' -> t'',
  the target x~ makes one student DDIM step land there, with the same weighting as L_1. The
  first PD stage's teacher is the end of stage one and takes N_0 steps.

Both stages run inside one compiled step; the phase, the PD stage k =
min((step - S_1) // steps_per_stage, K - 1) and the switches (at step S_1 + k steps_per_stage,
k = 0..K-1: stage teacher <- student EMA, student restarts there with a fresh optimiser
state, as in progressive.py) are functions of the traced step. The student starts from a
network teacher's weights (its w-embedding starts at zero, so it computes x_c for every w),
or from scratch for the exact mixture teachers.

Sampling: DDIM on progressive.py's nested grid with ``nfe`` steps at the fixed guidance
weight ``guidance`` (config ``eval.guidance``, our convention), one evaluation per step, with
the student of the stage distilled to ``nfe`` steps (progressive.py's snapshots).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.losses import squared_l2
from jaxdistill.objectives.common import check_choice
from jaxdistill.objectives.denoising import batch_labels
from jaxdistill.objectives.progressive import (
    GRIDS,
    STUDENT_PREDICTIONS,
    Phases,
    StagedDistillation,
    check_init_from_teacher,
    count_stages,
    ddim_sample,
    pd_target,
    resolve_prediction,
    sample_grid_times,
    sampling_params,
    truncated_snr_weight,
)

DEFAULT_GUIDANCE = 2.0  # our w = 2 is the paper's w' = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Guided:
    """Settings of guided distillation (Meng et al. 2023 unless noted)."""

    section: ClassVar[str] = "guided"
    method: ClassVar[str] = "guided"

    # Guidance range in OUR convention x_u + w (x_c - x_u): the paper's w' ~ U[0, 4] with
    # (1 + w') x_c - w' x_u, i.e. w = w' + 1 ~ U[1, 5].
    w_min: float = 1.0
    w_max: float = 5.0
    # Stage one updates; 0 = the run's updates // (K + 1), an equal share with each PD stage.
    stage_one_steps: int = 0
    # Stage two: progressive distillation as in progressive.py (student parameterisation,
    # nested Karras grid, N_0 = 64 halved to 1; the paper starts at 1024).
    student_prediction: str = "auto"
    grid: str = "karras"
    rho: float = 7.0
    start_steps: int = 64
    final_steps: int = 1
    steps_per_stage: int = 0  # 0 = (the run's updates - stage_one_steps) // K
    init_from_teacher: bool = True  # the paper starts from the teacher's weights; needs a network teacher

    def __post_init__(self):
        check_choice("grid", self.grid, GRIDS)
        check_choice("student_prediction", self.student_prediction, STUDENT_PREDICTIONS)
        if not self.w_min <= self.w_max:
            raise ValueError(f"need w_min <= w_max, got [{self.w_min}, {self.w_max}]")
        count_stages(self.start_steps, self.final_steps)
        if self.stage_one_steps < 0 or self.steps_per_stage < 0:
            raise ValueError(f"need stage_one_steps >= 0 and steps_per_stage >= 0 (0: automatic), got {self.stage_one_steps}, {self.steps_per_stage}")

    def stage_lengths(self, num_updates: int) -> tuple[int, int]:
        """(stage_one_steps, steps_per_stage) in a run of ``num_updates``, resolving the 0 =
        automatic defaults."""
        stages = count_stages(self.start_steps, self.final_steps)
        stage_one = self.stage_one_steps or num_updates // (stages + 1)
        per_stage = self.steps_per_stage or (num_updates - stage_one) // stages
        return stage_one, per_stage



@dataclasses.dataclass(frozen=True, kw_only=True)
class GuidedDistillation(StagedDistillation):
    settings: Guided
    teacher: Denoiser
    student: Denoiser  # built with num_times = 2: w is its extra input
    guidance: float = DEFAULT_GUIDANCE
    eval_nfes: Sequence[int] = (1, 2, 4)

    def __post_init__(self):
        if self.num_classes < 1:
            raise ValueError("guided distillation needs a class-conditional teacher (network.num_classes > 0)")
        if not self.settings.w_min <= self.guidance <= self.settings.w_max:
            raise ValueError(f"eval.guidance={self.guidance} is outside the trained range [{self.settings.w_min}, {self.settings.w_max}]")
        if self.stage_one_steps < 1 or self.steps_per_stage < 1:
            raise ValueError(
                f"need stage_one_steps >= 1 and steps_per_stage >= 1, got {self.stage_one_steps}, {self.steps_per_stage} "
                f"(train.num_steps={self.total_steps})"
            )

    @property
    def stage_one_steps(self) -> int:
        return self.stage_lengths[0]

    @property
    def phases(self) -> Phases:
        """Stage one (S_1 updates), then the K PD stages of ``steps_per_stage`` each; switches at S_1 + k S."""
        return Phases(self.stage_one_steps, self.steps_per_stage, self.num_stages + 1)

    def pd_stage(self, step: Array) -> Array:
        """k = min((step - S_1) // steps_per_stage, K - 1), 0 during stage one."""
        return jnp.maximum(self.phases.phase(step) - 1, 0)

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: the student's forward and backward plus
        two teacher passes (stage one: the CFG teacher's conditional and unconditional halves;
        stage two: two DDIM steps of the w-conditioned stage teacher)."""
        return 4.0

    def student_x0(self, params: PyTree, z: Array, t: Array, cond: Array, w: Array, **kwargs) -> Array:
        """x_eta(z_t, w, c): the student's x0 with w as its extra input."""
        return self.student.x0(params, z, t, cond, extra=w, **kwargs)

    def stage_one_target(self, teacher_params: PyTree, x: Array, eps: Array, cond: Array, w: Array, rng: Array):
        """(z_t, t, x_u + w (x_c - x_u)) with t ~ the process's training distribution."""
        t = self.process.sample_t(rng, x.shape[0])
        z = self.process.add_noise(x, eps, t)
        return z, t, self.teacher.x0(teacher_params, z, t, cond, guidance=w)

    def stage_two_target(self, stage_teacher: PyTree, x: Array, eps: Array, cond: Array, w: Array, rng: Array, stage: Array):
        """(z_t, t, x~): the PD target of the w-conditioned stage teacher on the student's grid."""
        times = sample_grid_times(self.process, rng, x.shape[0], self.student_steps(stage), self.settings.grid, self.settings.rho)
        z = self.process.add_noise(x, eps, times[0])
        x0 = lambda y, s: self.student_x0(stage_teacher, y, s, cond, w)
        return z, times[0], pd_target(self.process, x0, z, *times)

    def loss(self, params: PyTree, frozen: PyTree, stage_teacher: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Array, Metrics]:
        x = batch["x"]
        cond = batch_labels(batch, self.num_classes)
        w = jax.random.uniform(derive(rng, "guidance"), (x.shape[0],), jnp.float32, self.settings.w_min, self.settings.w_max)
        eps = jax.random.normal(derive(rng, "noise"), x.shape, x.dtype)
        stage_one = jnp.asarray(step, jnp.int32) < self.stage_one_steps
        stage = self.pd_stage(step)
        z, t, target = jax.lax.cond(
            stage_one,
            lambda _: self.stage_one_target(frozen["teacher"], x, eps, cond, w, derive(rng, "time")),
            lambda _: self.stage_two_target(stage_teacher, x, eps, cond, w, derive(rng, "time"), stage),
            None,
        )
        target = jax.lax.stop_gradient(target)
        pred = self.student_x0(params, z, t, cond, w, train=True, rngs={"dropout": derive(rng, "dropout")})
        loss = jnp.mean(truncated_snr_weight(self.process, t) * squared_l2(pred, target))
        metrics = {
            "loss": loss,
            "stage": jnp.where(stage_one, -1, stage).astype(jnp.float32),  # -1: stage one
            "student_steps": jnp.where(stage_one, 0, self.student_steps(stage)).astype(jnp.float32),
        }
        return loss, metrics

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        if cond is None:
            raise ValueError("the guided student is class-conditional: generate needs labels")
        params = sampling_params(trainable, nfe)
        w = jnp.full((noise.shape[0],), self.guidance, jnp.float32)
        x0_fn = lambda x, t: self.student_x0(params, x, t, cond, w)
        return ddim_sample(self.process, x0_fn, noise, nfe, self.settings.grid, self.settings.rho)


def build(ctx, settings: Guided) -> tuple[GuidedDistillation, PyTree]:
    """The guided-distillation objective of ``settings`` with the run's networks and teacher."""
    config = ctx.config
    if ctx.num_classes < 1:
        raise ConfigError("guided: guided distillation needs class labels (network.num_classes > 0 and a conditional teacher)")
    teacher, teacher_params = ctx.teacher()
    prediction = resolve_prediction(settings.student_prediction, teacher.process)
    check_init_from_teacher(ctx, settings, teacher, prediction)
    student, init_fn = ctx.network(teacher.process, prediction, num_times=2)
    guidance = DEFAULT_GUIDANCE if config.eval.guidance is None else float(config.eval.guidance)
    objective = GuidedDistillation(
        settings=settings,
        teacher=teacher,
        student=student,
        student_init_fn=init_fn,
        **{**ctx.run_fields(), "guidance": guidance},
    )
    return objective, {"teacher": teacher_params}
