"""Continuous-time consistency models, sCM (Lu & Song 2024, "Simplifying, Stabilizing and Scaling
Continuous-Time Consistency Models", ICLR 2025): distillation (sCD) and training (sCT).

TrigFlow (paper Sec. 3, ``process.TrigFlow``): x_t = cos(t) x0 + sin(t) z, z ~ N(0, sd^2 I),
t in [0, pi/2]. A diffusion model gives the PF-ODE velocity dx_t/dt = sd F(x_t / sd, c_noise(t)), and
the consistency model is

    f_theta(x_t, t) = cos(t) x_t - sin(t) sd F_theta(x_t / sd, c_noise(t)),

so f(x, 0) = x exactly (the boundary condition). The continuous-time objective (paper Sec. 4, with the
weighting 1 / (sd tan t) folded in) has the gradient of E[F_theta^T (-g)] with the tangent

    g = cos(t) df^-/dt = -cos^2(t) (sd F^- - dx_t/dt) - r cos(t) sin(t) (x_t + sd dF^-/dt),

F^- = F_{sg(theta)}, and dF^-/dt = d_x F . dx_t/dt + d_t F the total derivative along the PF-ODE: one
exact forward-mode product ``jax.jvp``, taken along the rearranged tangent (cos t sin t dx_t/dt,
cos t sin t), which gives cos t sin t dF^-/dt directly (paper Sec. 4.2, "JVP rearrangement").
dx_t/dt is the teacher's PF-ODE velocity (``scd``; a teacher of any process is read on TrigFlow
through ``diffusion.reparam``) or the conditional velocity cos(t) z - sin(t) x0 (``sct``).
Algorithm 1 of the paper then adds

* tangent warm-up: r = min(1, k / H), H = 10k updates, a function of the traced step k;
* tangent normalisation: g <- g / (||g|| + c), c = 0.1 (per sample, all dimensions);
* adaptive weighting: L = E[e^{w_phi(t)} / D ||F_theta - F^- - g||^2 - w_phi(t)], D the dimension,
  w_phi a small MLP on the time input, trained jointly (its own state ``"weighting"``);
* times t = arctan(e^tau / sd), tau ~ N(P_mean, P_std^2) (CIFAR-10: P_mean = -1.0, P_std = 1.4).

The network's time input is c_noise(t) = t (``time_input="identity"``, paper Sec. 4.1: EDM's
log(sd tan t) / 4 has an unbounded time derivative at both ends). ``time_input="edm"`` feeds EDM's
c_noise and negates the output, which makes an EDM-preconditioned network of sigma_data = sd *exactly*
the TrigFlow network (paper Sec. 3: c_skip = cos^2 t, c_out = sd sin t, c_in = cos t / sd at
sigma = sd tan t), so a student starts as an EDM teacher (init_from_teacher, as Algorithm 1 does).

Sampling (the paper's 1- and 2-step samplers): one step f(sd z, pi/2); two steps re-noise the first
output to t_mid = 1.1 and apply f again; more steps use nfe - 1 times evenly spaced on (0, t_mid].
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.process import TrigFlow, broadcast_to
from jaxdistill.diffusion.reparam import reparameterize
from jaxdistill.models.embeddings import sinusoidal_embedding
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad, teacher_passes
from jaxdistill.objectives.denoising import batch_labels

TIME_INPUTS = ("identity", "edm")
EDM_SIGMA_RANGE = (0.002, 80.0)  # the noise levels EDM networks are trained on (Karras et al. 2022)

TrigFn = Callable[[Array, Array], Array]  # (x_t [B, ...], t [B]) -> F(x_t / sd, c_noise(t))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCMSettings:
    """Settings shared by sCD and sCT (paper Algorithm 1 and App. G, CIFAR-10 values)."""

    section: ClassVar[str] = "scm"
    method: ClassVar[str] = ""
    distils: ClassVar[bool] = False

    p_mean: float = -1.0  # proposal tau ~ N(P_mean, P_std^2), t = arctan(e^tau / sd) (CIFAR-10; ImageNet 64: -0.8, 1.6)
    p_std: float = 1.4
    tangent_norm_c: float = 0.1  # g / (||g|| + c) (Sec. 4.2)
    tangent_warmup_steps: int = 10_000  # H: r = min(1, k / H) (Sec. 4.2, Alg. 1)
    time_input: str = "identity"  # c_noise(t) = t (Sec. 4.1); "edm": log(sd tan t) / 4 with the output negated
    weighting_width: int = 128  # hidden width of the adaptive weighting MLP w_phi(t) (ours; the paper does not give one)
    two_step_t: float = 1.1  # the 2-step sampler's intermediate time (the paper's sampling setup)
    init_from_teacher: bool = True  # Alg. 1: theta <- theta_pretrain

    def __post_init__(self):
        check_choice("time_input", self.time_input, TIME_INPUTS)
        if self.tangent_norm_c <= 0 or self.tangent_warmup_steps < 0:
            raise ValueError(f"need tangent_norm_c > 0 and tangent_warmup_steps >= 0, got {self.tangent_norm_c}, {self.tangent_warmup_steps}")
        if not 0.0 < self.two_step_t < math.pi / 2:
            raise ValueError(f"two_step_t must be in (0, pi/2), got {self.two_step_t}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCD(SCMSettings):
    """sCD: the tangent follows the teacher's PF-ODE velocity."""

    method: ClassVar[str] = "scd"
    distils: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCT(SCMSettings):
    """sCT: the tangent follows the conditional velocity cos(t) z - sin(t) x0 of the data."""

    method: ClassVar[str] = "sct"


class AdaptiveWeight(nn.Module):
    """w_phi(t): a SiLU MLP on sinusoidal features of the time input; the output layer starts at
    zero, so training starts with unit weights (Lu & Song 2024, Sec. 4.2, Alg. 1)."""

    width: int = 128

    @nn.compact
    def __call__(self, c_noise: Array) -> Array:
        h = nn.silu(nn.Dense(self.width)(sinusoidal_embedding(1000.0 * c_noise, self.width)))
        return nn.Dense(1, kernel_init=nn.initializers.zeros)(h)[:, 0]


def trigflow_times(rng: Array, n: int, p_mean: float, p_std: float, sigma_data: float) -> Array:
    """t = arctan(e^tau / sd), tau ~ N(p_mean, p_std^2): EDM's lognormal levels on TrigFlow."""
    return jnp.arctan(jnp.exp(p_mean + p_std * jax.random.normal(rng, (n,), jnp.float32)) / sigma_data)


def tangent_warmup(step: Array, warmup_steps: int) -> Array:
    """r = min(1, k / H) (1 for H = 0)."""
    if warmup_steps == 0:
        return jnp.ones((), jnp.float32)
    return jnp.minimum(jnp.asarray(step, jnp.float32) / warmup_steps, 1.0)


def per_sample(a: Array, x: Array) -> Array:
    """[B] -> [B, 1, ..., 1] to broadcast over ``x``, keeping a's dtype (float64 in the JVP's test)."""
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def tangent_jvp(F_fn: TrigFn, x: Array, t: Array, dxdt: Array) -> tuple[Array, Array]:
    """(F(x, t), cos t sin t dF/dt) with dF/dt = d_x F . dx/dt + d_t F: one ``jax.jvp`` along the
    rearranged tangent (cos t sin t dx/dt, cos t sin t)."""
    cs = jnp.cos(t) * jnp.sin(t)
    return jax.jvp(F_fn, (x, t), (per_sample(cs, x) * dxdt, cs))


def scm_tangent(F_minus: Array, jvp: Array, x: Array, t: Array, dxdt: Array, sigma_data: float, r: Array, c: float) -> Array:
    """g = -cos^2 t (sd F^- - dx/dt) - r (cos t sin t x + sd jvp), normalised to g / (||g|| + c)."""
    cos, sin = per_sample(jnp.cos(t), x), per_sample(jnp.sin(t), x)
    g = -(cos**2) * (sigma_data * F_minus - dxdt) - r * (cos * sin * x + sigma_data * jvp)
    norm = jnp.sqrt(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1))
    return g / per_sample(norm + c, g)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCMObjective(StudentDistillation):
    """Trains the TrigFlow network F_theta (``"student"``) and the weighting w_phi (``"weighting"``)."""

    settings: SCMSettings
    eval_nfes: Sequence[int] = (1, 2)

    def __post_init__(self):
        if not isinstance(self.process, TrigFlow):
            raise ValueError(f"sCM is defined on TrigFlow, got {type(self.process).__name__}")
        if self.settings.distils and self.teacher is None:
            raise ValueError("sCD needs a teacher")

    @property
    def sigma_data(self) -> float:
        return self.process.sigma_data

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: the jvp (primal and tangent), the
        student's forward and backward, and sCD's teacher velocity (two under guidance)."""
        return 4.0 + (teacher_passes(self.guidance) if self.settings.distils else 0.0)

    def weighting_net(self) -> AdaptiveWeight:
        return AdaptiveWeight(self.settings.weighting_width)

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(derive(rng, "student"), batch, frozen)
        n = batch["x"].shape[0]
        phi = self.weighting_net().init(derive(rng, "weighting"), jnp.zeros((n,), jnp.float32))
        return {"student": NetState.create(params, self.tx), "weighting": NetState.create(phi, self.tx, use_ema=False)}

    # ------------------------------------------------------------- the network
    def c_noise(self, t: Array) -> Array:
        """The network's time input: t, or EDM's log(sd tan t) / 4 on EDM's range of levels."""
        if self.settings.time_input == "identity":
            return t
        lo, hi = (math.atan(s / self.sigma_data) for s in EDM_SIGMA_RANGE)
        return jnp.log(self.sigma_data * jnp.tan(jnp.clip(t, lo, hi))) / 4.0

    def trig_fn(self, params: PyTree, cond: Optional[Array], train: bool = False, rngs=None) -> TrigFn:
        """F_theta(x / sd, c_noise(t)) as a function of (x, t); negated for ``time_input="edm"``."""
        sign = 1.0 if self.settings.time_input == "identity" else -1.0
        return lambda x, t: sign * self.student.apply_fn(params, x / self.sigma_data, self.c_noise(t), cond, train=train, rngs=rngs)

    def consistency_fn(self, params: PyTree, cond: Optional[Array]) -> Callable[[Array, Array], Array]:
        """f(x, t) = cos(t) x - sin(t) sd F(x / sd, c_noise(t)) (alpha clipped at 0 at pi/2)."""
        F_fn = self.trig_fn(params, cond)
        return lambda x, t: broadcast_to(self.process.alpha(t), x) * x - broadcast_to(self.process.sigma(t), x) * F_fn(x, t)

    # -------------------------------------------------------------------- loss
    def velocity(self, frozen: PyTree, x0: Array, eps: Array, x: Array, t: Array, cond: Optional[Array]) -> Array:
        """dx_t/dt: the teacher's PF-ODE velocity (sCD) or cos(t) z - sin(t) x0 (sCT)."""
        if not self.settings.distils:
            return broadcast_to(self.process.dalpha(t), x0) * x0 + broadcast_to(self.process.dsigma(t), x0) * eps
        guidance = self.guidance if cond is not None else None
        return jax.lax.stop_gradient(self.teacher.velocity(frozen["teacher"], x, t, cond, guidance=guidance))

    def loss(self, params: PyTree, phi: PyTree, frozen: PyTree, batch: Batch, rng: Array, r: Array) -> tuple[Array, Metrics]:
        x0 = batch["x"]
        n = x0.shape[0]
        cond = batch_labels(batch, self.num_classes)
        t = trigflow_times(derive(rng, "time"), n, self.settings.p_mean, self.settings.p_std, self.sigma_data)
        eps = jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype)
        x = self.process.add_noise(x0, eps, t)
        dxdt = self.velocity(frozen, x0, eps, x, t, cond)
        rngs = {"dropout": derive(rng, "dropout")}  # one dropout mask for F_theta and F^-
        F_minus, jvp = tangent_jvp(self.trig_fn(jax.lax.stop_gradient(params), cond, True, rngs), x, t, dxdt)
        g = jax.lax.stop_gradient(scm_tangent(F_minus, jvp, x, t, dxdt, self.sigma_data, r, self.settings.tangent_norm_c))
        F = self.trig_fn(params, cond, True, rngs)(x, t)
        sq = jnp.mean(jnp.square((F - jax.lax.stop_gradient(F_minus) - g).reshape(n, -1)), axis=1)  # ||.||^2 / D
        w = self.weighting_net().apply(phi, self.c_noise(t))
        loss = jnp.mean(jnp.exp(w) * sq - w)
        return loss, {"loss": loss, "mse": jnp.mean(sq), "weight_log": jnp.mean(w)}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        student, weighting = trainable["student"], trainable["weighting"]
        r = tangent_warmup(step, self.settings.tangent_warmup_steps)
        loss = lambda both, part, key: self.loss(both["student"], both["weighting"], frozen, part, key, r)
        grads, metrics = microbatch_grad(loss, {"student": student.params, "weighting": weighting.params}, batch, rng, self.microbatches)
        student, opt_metrics = student.apply_gradients(grads["student"], self.ema_decay)
        weighting, weight_metrics = weighting.apply_gradients(grads["weighting"])
        opt_metrics["skipped"] = jnp.maximum(opt_metrics["skipped"], weight_metrics["skipped"])
        return {"student": student, "weighting": weighting}, {**metrics, **opt_metrics, "tangent_warmup": r}

    # ---------------------------------------------------------------- sampling
    def sampling_times(self, nfe: int) -> list[float]:
        """pi/2, then nfe - 1 times evenly spaced on (0, two_step_t] from the top (2 steps: pi/2, 1.1)."""
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
        mid = self.settings.two_step_t
        return [self.process.t_max] + [mid * (nfe - 1 - i) / (nfe - 1) for i in range(nfe - 1)]

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        """x0 = f(x_T, pi/2); each further step re-noises x0 to the next time and applies f."""
        f = self.consistency_fn(trainable["student"].eval_params, cond)
        n = noise.shape[0]
        times = self.sampling_times(nfe)
        x0 = f(noise, jnp.full((n,), times[0], jnp.float32))
        for i, t in enumerate(times[1:]):
            t = jnp.full((n,), t, jnp.float32)
            x0 = f(self.process.add_noise(x0, jax.random.normal(jax.random.fold_in(rng, i), noise.shape, noise.dtype), t), t)
        return x0


def build(ctx, settings: SCMSettings) -> tuple[SCMObjective, PyTree]:
    """The sCM objective of ``settings``: the config's network on TrigFlow (``process.name='trigflow'``,
    ``process.sigma_data`` = the run's ``sigma_data``) and, for sCD or a teacher initialisation, the
    teacher read on TrigFlow."""
    process = ctx.process()
    if not isinstance(process, TrigFlow):
        raise ConfigError(f"{settings.method} needs process.name='trigflow', got {ctx.config.process.name!r}")
    if not math.isclose(process.sigma_data, float(ctx.config.sigma_data)):
        raise ConfigError(f"{settings.method}: process.sigma_data={process.sigma_data} must equal sigma_data={ctx.config.sigma_data} (TrigFlow's sd is the data's)")
    ctx.require_teacher_weights(settings, "init_from_teacher")
    teacher, frozen = None, {}
    if settings.distils or settings.init_from_teacher:
        source, teacher_params = ctx.teacher()
        teacher, frozen = reparameterize(source, process), {"teacher": teacher_params}
    student, init_fn = ctx.network(process, "flow")
    return SCMObjective(settings=settings, student=student, student_init_fn=init_fn, teacher=teacher, **ctx.run_fields()), frozen
