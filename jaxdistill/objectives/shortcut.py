"""Shortcut models (Frans, Hafner, Levine & Abbeel 2025, "One Step Diffusion via Shortcut
Models", ICLR 2025).

A velocity network s_theta(x_t, t, d) is conditioned on the step size d it will be used
with; one Euler step of size d is x_{t-d} = x_t - d s(x_t, t, d). Time convention: we use the
rectified flow of ``process.RectifiedFlow``, x_t = (1 - t) x0 + t eps with t = 1 noise and
velocity dx/dt = eps - x0; the paper runs time the other way (t = 0 noise, t = 1 data), so its
t is our 1 - t and its step t -> t + d is our t -> t - d. Each batch is split (paper Sec. 3,
k = 1/4: a fraction ``self_consistency_fraction`` self-consistency, the rest flow matching):

* flow matching (d = 0): s(x_t, t, 0) regresses v = eps - x0 (``target="data"``, the paper),
  or the frozen teacher's velocity v_T(x_t, t) (``target="teacher"``, our distillation variant);
  t on the grid {1/M, 2/M, ..., 1} (official code, ``t_sampling="discrete-dt"``);
* self-consistency: the big step 2d is one of {2/M, 4/M, ..., 1} (uniform over the log2 M
  levels), t one of its multiples {2d, 4d, ..., 1}, and

      s(x_t, t, 2d)  <-  sg[ (s(x_t, t, d) + s(x'_{t-d}, t - d, d)) / 2 ],
      x'_{t-d} = x_t - d s(x_t, t, d)

  (paper eq. 5), with the target computed from the EMA parameters (official code
  ``bootstrap_ema=1``). The smallest step d = 1/M is queried at d = 0, the flow-matching level
  (official code: the base-case level log2 M is shared by flow matching and the last bootstrap).

L = mean over the batch of ||s_theta - target||^2 (mean over dimensions). d enters the network
as a float extra input (``num_times=2``); the paper's code embeds log2(1/d) instead, the same
information for d a power of two. ``generate(nfe)`` takes nfe Euler steps of size d = 1/nfe.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess, RectifiedFlow, broadcast_to
from jaxdistill.diffusion.reparam import reparameterize
from jaxdistill.losses import squared_l2
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad, teacher_passes
from jaxdistill.objectives.denoising import batch_labels

TARGETS = ("data", "teacher")

VelocityFn = Callable[[Array, Array, Array], Array]  # (x [B, ...], t [B], d [B]) -> s(x, t, d)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shortcut:
    """Settings of shortcut models (Frans et al. 2025, Sec. 3 and App. A; official code
    kvfrans/shortcut-models)."""

    section: ClassVar[str] = "shortcut"
    method: ClassVar[str] = "shortcut"

    target: str = "data"  # the paper trains from data; "teacher" regresses the teacher's velocity
    num_steps_max: int = 128  # M: the finest step 1/M (paper: M = 128)
    self_consistency_fraction: float = 0.25  # k = 1/4 of each batch (paper Sec. 3)
    target_ema: bool = True  # self-consistency targets from the EMA parameters (official bootstrap_ema=1)
    init_from_teacher: bool = False  # the paper trains from scratch

    def __post_init__(self):
        check_choice("target", self.target, TARGETS)
        m = self.num_steps_max
        if m < 2 or m & (m - 1):
            raise ValueError(f"num_steps_max must be a power of two >= 2, got {m}")
        if not 0.0 <= self.self_consistency_fraction <= 1.0:
            raise ValueError(f"self_consistency_fraction must be in [0, 1], got {self.self_consistency_fraction}")



def self_consistency_target(velocity: VelocityFn, x: Array, t: Array, d: Array) -> Array:
    """(s(x_t, t, d) + s(x_t - d s(x_t, t, d), t - d, d)) / 2: the velocity of two d-steps, one 2d-step."""
    s1 = velocity(x, t, d)
    x_next = x - broadcast_to(d, x) * s1
    s2 = velocity(x_next, t - d, d)
    return 0.5 * (s1 + s2)


def euler_steps(velocity: VelocityFn, x: Array, nfe: int) -> Array:
    """nfe uniform steps from t = 1: x_{t-d} = x_t - d s(x_t, t, d), d = 1 / nfe."""
    d = jnp.full((x.shape[0],), 1.0 / nfe, jnp.float32)

    def body(i, x):
        t = jnp.full((x.shape[0],), 1.0, jnp.float32) - i * d
        return x - broadcast_to(d, x) * velocity(x, t, d)

    return jax.lax.fori_loop(0, nfe, body, x)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShortcutObjective(StudentDistillation):
    """Trains one d-conditioned velocity network (``"student"``) on the rectified flow."""

    settings: Shortcut
    student: Denoiser  # prediction "flow", num_times = 2 (t, d)
    teacher: Optional[Denoiser] = None  # needed for target="teacher" (a Denoiser of the same process)
    eval_nfes: Sequence[int] = (1, 2, 4)

    def __post_init__(self):
        if self.settings.target == "teacher" and self.teacher is None:
            raise ValueError("target='teacher' needs a teacher")
        if not isinstance(self.student.process, RectifiedFlow):
            raise ValueError(f"shortcut models are defined on the rectified flow, got {type(self.student.process).__name__}")

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: the student's forward and backward, two
        target forwards on the self-consistency share, the teacher's velocity on the rest
        (``target="teacher"``; two passes under guidance)."""
        teacher = 0.0 if self.settings.target == "data" else teacher_passes(self.guidance)
        f = self.settings.self_consistency_fraction
        return 2.0 + 2.0 * f + (1.0 - f) * teacher

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(rng, batch, frozen)
        return {"student": NetState.create(params, self.tx)}

    def step_input(self, d: Array) -> Array:
        """The network's step-size input: d, or 0 (the flow-matching level) for d <= 1/M."""
        return jnp.where(d <= 1.0 / self.settings.num_steps_max, 0.0, d)

    def velocity_fn(self, params: PyTree, cond: Optional[Array], train: bool = False, rngs=None) -> VelocityFn:
        """s_theta(x, t, d) as a function of (x, t, d)."""
        return lambda x, t, d: self.student.raw(params, x, t, cond, extra=self.step_input(d), train=train, rngs=rngs)

    # ---------------------------------------------------------------- sampling
    def sample_self_consistency(self, rng: Array, n: int) -> tuple[Array, Array]:
        """(t, d): half step d = 2^-(level+1), level ~ U{0..log2 M - 1}; t = 2d k, k ~ U{1..1/(2d)}."""
        levels = int(math.log2(self.settings.num_steps_max))
        level = jax.random.randint(derive(rng, "level"), (n,), 0, levels)
        sections = jnp.left_shift(1, level)  # 1 / (2d)
        k = jax.random.randint(derive(rng, "multiple"), (n,), 1, sections + 1)
        big = 1.0 / sections.astype(jnp.float32)
        return big * k.astype(jnp.float32), 0.5 * big

    def sample_flow_t(self, rng: Array, n: int) -> Array:
        """t ~ U{1/M, 2/M, ..., 1}."""
        m = self.settings.num_steps_max
        return jax.random.randint(rng, (n,), 1, m + 1).astype(jnp.float32) / m

    def flow_target(self, frozen: PyTree, x0: Array, eps: Array, x_t: Array, t: Array, cond: Optional[Array]) -> Array:
        """eps - x0 (data) or the teacher's PF-ODE velocity at (x_t, t)."""
        if self.settings.target == "data":
            return eps - x0
        guidance = self.guidance if cond is not None else None
        return self.teacher.velocity(frozen["teacher"], x_t, t, cond, guidance=guidance)

    # -------------------------------------------------------------------- loss
    def loss(self, params: PyTree, target_params: PyTree, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        x0 = batch["x"]
        n = x0.shape[0]
        n_sc = int(round(n * self.settings.self_consistency_fraction))
        cond = batch_labels(batch, self.num_classes)
        eps = jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype)
        split = lambda a: (None, None) if a is None else (a[:n_sc], a[n_sc:])
        (x0_sc, x0_fm), (eps_sc, eps_fm), (cond_sc, cond_fm) = split(x0), split(eps), split(cond)

        t_sc, d_sc = self.sample_self_consistency(derive(rng, "self_consistency"), n_sc)
        x_sc = self.process.add_noise(x0_sc, eps_sc, t_sc)
        target_sc = self_consistency_target(self.velocity_fn(target_params, cond_sc), x_sc, t_sc, d_sc)

        t_fm = self.sample_flow_t(derive(rng, "time"), n - n_sc)
        x_fm = self.process.add_noise(x0_fm, eps_fm, t_fm)
        target_fm = self.flow_target(frozen, x0_fm, eps_fm, x_fm, t_fm, cond_fm)

        x = jnp.concatenate([x_sc, x_fm])
        t = jnp.concatenate([t_sc, t_fm])
        d = jnp.concatenate([2.0 * d_sc, jnp.zeros_like(t_fm)])
        target = jax.lax.stop_gradient(jnp.concatenate([target_sc, target_fm]))
        rngs = {"dropout": derive(rng, "dropout")}
        prediction = self.velocity_fn(params, cond, train=True, rngs=rngs)(x, t, d)
        per_sample = squared_l2(prediction, target)
        loss = jnp.mean(per_sample)
        metrics = {"loss": loss, "loss_flow": jnp.mean(per_sample[n_sc:]) if n_sc < n else jnp.zeros(())}
        metrics["loss_self_consistency"] = jnp.mean(per_sample[:n_sc]) if n_sc > 0 else jnp.zeros(())
        return loss, metrics

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        state = trainable["student"]
        target_params = state.eval_params if self.settings.target_ema else state.params
        loss = lambda params, part, key: self.loss(params, target_params, frozen, part, key)
        grads, metrics = microbatch_grad(loss, state.params, batch, rng, self.microbatches)
        state, opt_metrics = state.apply_gradients(grads, self.ema_decay)
        return {"student": state}, {**metrics, **opt_metrics}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
        return euler_steps(self.velocity_fn(trainable["student"].eval_params, cond), noise, nfe)


def rectified_flow_teacher(ctx, settings, process: NoiseProcess) -> tuple[Optional[Denoiser], PyTree]:
    """(teacher Denoiser on ``process`` or None, frozen) for shortcut models and MeanFlow.

    The teacher is loaded when ``target="teacher"`` or ``init_from_teacher``; a teacher of another
    process (the EDM digits teacher) is re-parameterised onto ``process`` (``diffusion.reparam``).
    """
    ctx.require_teacher_weights(settings, "init_from_teacher")
    if settings.target != "teacher" and not settings.init_from_teacher:
        return None, {}
    teacher, teacher_params = ctx.teacher()
    return reparameterize(teacher, process), {"teacher": teacher_params}


def build_flow_map(ctx, settings, objective_cls) -> tuple[object, PyTree]:
    """A flow-map objective (shortcut models, MeanFlow) of ``settings``: a two-time velocity
    network on the rectified flow, and the teacher when its settings need one."""
    config = ctx.config
    process = ctx.process()
    if not isinstance(process, RectifiedFlow):
        raise ConfigError(f"{settings.method} needs process.name='rectified_flow', got {config.process.name!r}")
    teacher, frozen = rectified_flow_teacher(ctx, settings, process)
    student, init_fn = ctx.network(process, "flow", num_times=2)
    return objective_cls(settings=settings, student=student, student_init_fn=init_fn, teacher=teacher, **ctx.run_fields()), frozen


def build(ctx, settings: Shortcut) -> tuple[ShortcutObjective, PyTree]:
    """The shortcut-model objective of ``settings`` with the run's network and teacher."""
    return build_flow_map(ctx, settings, ShortcutObjective)
