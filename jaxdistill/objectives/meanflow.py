"""MeanFlow (Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative Modeling").

On the rectified flow z_t = (1 - t) x0 + t eps (t = 1 noise, velocity v = dz/dt = eps - x0;
the paper uses this same convention, so no time reversal is needed) the average velocity

    u(z_t, r, t) = 1 / (t - r) int_r^t v(z_tau, tau) dtau,   so z_r = z_t - (t - r) u(z_t, r, t),

satisfies the MeanFlow identity (paper eq. 6), obtained by differentiating (t - r) u in t:

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),   d/dt u = v . d_z u + d_t u.

The network u_theta regresses the identity's right-hand side with stop-gradient; d/dt u is one
forward-mode product ``jax.jvp`` along the tangent (dz, dr, dt) = (v, 0, 1) (paper eq. 8, Alg. 1):

    L = E sg(w) ||u_theta(z_t, r, t) - sg(u_tgt)||^2,  u_tgt = v - (t - r) jvp,
    w = 1 / (||delta||^2 + c)^p  (adaptive weighting, paper Sec. 4.3; p = 1, c = 1e-3),

with ||.||^2 the squared L2 norm summed over the dimensions. v is the conditional velocity
eps - x0 (``target="data"``, the paper) or the frozen teacher's PF-ODE velocity at (z_t, t)
(``target="teacher"``, our distillation variant). Times: t, r = max / min of two logit-normal
draws sigmoid(N(-0.4, 1.0)), and r is reset to t for all but 25% of the samples (paper Table 1a
and 1c: the best of the ratios 0/25/50/100% and of the lognorm samplers). The network sees
(t, t - r) (paper Table 1b: the best positional-embedding variant), passed as the time and one
extra input (``num_times=2``). Sampling: z_r = z_t - (t - r) u(z_t, r, t) on a uniform grid of
nfe steps from t = 1 to 0 (paper eq. 9 for one step).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import RectifiedFlow, broadcast_to
from jaxdistill.losses import squared_l2
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad, teacher_passes
from jaxdistill.objectives.denoising import batch_labels
from jaxdistill.objectives.shortcut import TARGETS, build_flow_map

AverageVelocityFn = Callable[[Array, Array, Array], Array]  # (z [B, ...], r [B], t [B]) -> u(z, r, t)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanFlow:
    """Settings of MeanFlow (Geng et al. 2025, Table 1 ablations on ImageNet 256, best entries)."""

    section: ClassVar[str] = "meanflow"
    method: ClassVar[str] = "meanflow"

    target: str = "data"  # the paper trains from data; "teacher" uses the teacher's velocity as v
    p_mean: float = -0.4  # logit-normal time sampler lognorm(-0.4, 1.0) (Table 1c)
    p_std: float = 1.0
    ratio_r_neq_t: float = 0.25  # fraction of samples with r != t (Table 1a)
    weight_p: float = 1.0  # adaptive weighting power p (Table 1e)
    weight_c: float = 1e-3  # adaptive weighting constant c (Sec. 4.3)
    init_from_teacher: bool = False  # the paper trains from scratch

    def __post_init__(self):
        check_choice("target", self.target, TARGETS)
        if not 0.0 <= self.ratio_r_neq_t <= 1.0:
            raise ValueError(f"ratio_r_neq_t must be in [0, 1], got {self.ratio_r_neq_t}")
        if self.weight_c <= 0 or self.weight_p < 0:
            raise ValueError(f"need weight_c > 0 and weight_p >= 0, got c={self.weight_c}, p={self.weight_p}")



def meanflow_target(u_fn: AverageVelocityFn, z: Array, r: Array, t: Array, v: Array) -> tuple[Array, Array]:
    """(u(z, r, t), u_tgt) with u_tgt = v - (t - r) du/dt and du/dt = jvp of u along (v, 0, 1)."""
    u, dudt = jax.jvp(u_fn, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
    return u, v - broadcast_to(t - r, z) * dudt


def adaptive_weighted(sq_norm: Array, p: float, c: float) -> Array:
    """sg(w) ||delta||^2 with w = 1 / (||delta||^2 + c)^p (p = 0: plain squared L2)."""
    return jax.lax.stop_gradient(1.0 / (sq_norm + c) ** p) * sq_norm


def sample_times(rng: Array, n: int, p_mean: float, p_std: float, ratio_r_neq_t: float) -> tuple[Array, Array]:
    """(r, t): the min / max of two draws sigmoid(N(p_mean, p_std^2)); r = t with prob. 1 - ratio."""
    a, b = (jax.nn.sigmoid(p_mean + p_std * jax.random.normal(derive(rng, k), (n,), jnp.float32)) for k in ("t", "r"))
    keep = jax.random.bernoulli(derive(rng, "r_neq_t"), ratio_r_neq_t, (n,))
    t = jnp.maximum(a, b)
    return jnp.where(keep, jnp.minimum(a, b), t), t


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanFlowObjective(StudentDistillation):
    """Trains one average-velocity network u(z, r, t) (``"student"``) on the rectified flow."""

    settings: MeanFlow
    student: Denoiser  # prediction "flow", num_times = 2 (t, t - r)
    eval_nfes: Sequence[int] = (1, 2, 4)

    def __post_init__(self):
        if self.settings.target == "teacher" and self.teacher is None:
            raise ValueError("target='teacher' needs a teacher")
        if not isinstance(self.student.process, RectifiedFlow):
            raise ValueError(f"MeanFlow is defined on the rectified flow, got {type(self.student.process).__name__}")

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: the jvp (primal and tangent, two passes),
        the backward pass, and the teacher's velocity (``target="teacher"``; two under guidance)."""
        teacher = 0.0 if self.settings.target == "data" else teacher_passes(self.guidance)
        return 3.0 + teacher

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(rng, batch, frozen)
        return {"student": NetState.create(params, self.tx)}

    def u_fn(self, params: PyTree, cond: Optional[Array], train: bool = False, rngs=None) -> AverageVelocityFn:
        """u_theta(z, r, t): the network at time t with extra input t - r."""
        return lambda z, r, t: self.student.raw(params, z, t, cond, extra=t - r, train=train, rngs=rngs)

    def velocity(self, frozen: PyTree, x0: Array, eps: Array, z: Array, t: Array, cond: Optional[Array]) -> Array:
        """v: eps - x0 (data) or the teacher's PF-ODE velocity at (z_t, t)."""
        if self.settings.target == "data":
            return eps - x0
        guidance = self.guidance if cond is not None else None
        return jax.lax.stop_gradient(self.teacher.velocity(frozen["teacher"], z, t, cond, guidance=guidance))

    def loss(self, params: PyTree, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        x0 = batch["x"]
        n = x0.shape[0]
        cond = batch_labels(batch, self.num_classes)
        r, t = sample_times(derive(rng, "time"), n, self.settings.p_mean, self.settings.p_std, self.settings.ratio_r_neq_t)
        eps = jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype)
        z = self.process.add_noise(x0, eps, t)
        v = self.velocity(frozen, x0, eps, z, t, cond)
        u_fn = self.u_fn(params, cond, train=True, rngs={"dropout": derive(rng, "dropout")})
        u, u_tgt = meanflow_target(u_fn, z, r, t, v)
        delta = u - jax.lax.stop_gradient(u_tgt)
        sq_norm = jnp.sum(jnp.square(delta.reshape(n, -1)), axis=1)
        loss = jnp.mean(adaptive_weighted(sq_norm, self.settings.weight_p, self.settings.weight_c))
        return loss, {"loss": loss, "mse": jnp.mean(squared_l2(u, jax.lax.stop_gradient(u_tgt)))}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        state = trainable["student"]
        loss = lambda params, part, key: self.loss(params, frozen, part, key)
        grads, metrics = microbatch_grad(loss, state.params, batch, rng, self.microbatches)
        state, opt_metrics = state.apply_gradients(grads, self.ema_decay)
        return {"student": state}, {**metrics, **opt_metrics}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        """nfe steps z_r = z_t - (t - r) u(z_t, r, t) on t_i = 1 - i / nfe."""
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
        u_fn = self.u_fn(trainable["student"].eval_params, cond)
        h = jnp.full((noise.shape[0],), 1.0 / nfe, jnp.float32)

        def body(i, z):
            t = 1.0 - i * h
            return z - broadcast_to(h, z) * u_fn(z, t - h, t)

        return jax.lax.fori_loop(0, nfe, body, noise)


def build(ctx, settings: MeanFlow) -> tuple[MeanFlowObjective, PyTree]:
    """The MeanFlow objective of ``settings`` with the run's network and teacher."""
    return build_flow_map(ctx, settings, MeanFlowObjective)
