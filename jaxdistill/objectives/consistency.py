"""Consistency models: distillation (CD), training (CT), improved CT (iCT) and easy CT (ECT).

A consistency function maps any point of a probability-flow ODE trajectory to its origin,
f(x_t, t) = x_0, and satisfies the boundary condition f(x, t_min) = x. The student is a
denoiser of prediction kind ``"cm"`` (Song et al. 2023, App. C):

    f_theta(x, s) = c_skip(s) x + c_out(s) F_theta(c_in(s) x, c_noise(s)),
    c_skip = sd^2 / ((s - s_min)^2 + sd^2),  c_out = (s - s_min) sd / sqrt(s^2 + sd^2),

so the boundary condition holds exactly by construction (ECT keeps the teacher's EDM
parameterisation, whose boundary is s = 0). Noise levels ``s`` are sigma/alpha of the
teacher's process (EDM: s = t); discretisation (Song et al. 2023, eq. 5 / Karras rho = 7):

    s_i = (s_min^(1/rho) + i / (N - 1) (s_max^(1/rho) - s_min^(1/rho)))^rho,  i = 0..N-1.

With shared noise z, x_{i+1} = x_0 + s_{i+1} z and a target x_i, every variant minimises

    L = E lambda(i) d( f_theta(x_{i+1}, s_{i+1}), f_target(x_i, s_i) ).

* ``cd`` — Consistency Distillation (Song, Dhariwal, Chen & Sutskever 2023, "Consistency
  Models", Alg. 2): x_i is one teacher ODE step (Euler or Heun) from x_{i+1}; fixed N
  (paper CIFAR-10: 18); f_target uses an EMA copy theta^- with rate mu (paper CIFAR-10: 0.95).
* ``ct`` — Consistency Training (same paper, Alg. 3): x_i = x_0 + s_i z; curriculum
  N(k) = ceil(sqrt(k/K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1 and target EMA
  mu(k) = exp(s0 log mu0 / N(k)) (paper CIFAR-10: s0 = 2, s1 = 150, mu0 = 0.9).
* ``ict`` — improved CT (Song & Dhariwal 2023, "Improved Techniques for Training Consistency
  Models"): no EMA target (theta^- = stopgrad theta), pseudo-Huber d with c = 0.00054 sqrt(d),
  lambda(i) = 1 / (s_{i+1} - s_i), i drawn with p(i) ∝ erf((ln s_{i+1} - P_mean) / (sqrt 2 P_std))
  - erf((ln s_i - P_mean) / (sqrt 2 P_std)) (P_mean = -1.1, P_std = 2.0), and the doubling
  curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1))
  (s0 = 10, s1 = 1280).
* ``ect`` — Easy Consistency Tuning (Geng, Pokle, Luo, Lin & Kolter 2024, "Consistency Models
  Made Easy"): start from the teacher's weights; continuous t with ln t ~ N(-1.1, 2.0^2),
  r = max(0, t (1 - q^-(a+1) (1 + k sigmoid(-b t)))) with stage a = floor(step / stage_steps),
  q = 2, k = 8, b = 1 (the paper's sigmoid mapping; the gap t - r halves each stage, and early
  stages with r = 0 are plain denoising), target f_{stopgrad theta}(x_r, r) (x_0 where r = 0),
  loss (sqrt(||delta||^2 + c^2) - c) / (t - r).

All curricula and EMA rates are functions of the traced step, so the step compiles once.
Sampling is the multistep consistency sampler (Song et al. 2023, Alg. 1).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.process import broadcast_to
from jaxdistill.diffusion.steps import karras_grid, karras_sigma, sigma_ratio_range
from jaxdistill.losses import pseudo_huber, squared_l2
from jaxdistill.objectives.common import StudentDistillation, check_choice, lognormal_t, microbatch_grad, teacher_passes
from jaxdistill.objectives.denoising import batch_labels

DISTANCES = ("l2", "pseudo_huber", "feature")
SOLVERS = ("euler", "heun")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConsistencySettings:
    """Settings shared by CD, CT, iCT and ECT (each paper's CIFAR-10 values); the subclasses
    below are the methods."""

    section: ClassVar[str] = "consistency"
    method: ClassVar[str] = ""

    rho: float = 7.0  # Song et al. 2023, following Karras et al. 2022
    # cd: N = 18 noise levels, target EMA mu = 0.95, Heun teacher (Song et al. 2023, Table 3).
    num_scales: int = 18
    target_ema: float = 0.95
    teacher_solver: str = "heun"
    # ct curriculum: s0 = 2, s1 = 150, mu0 = 0.9 (Song et al. 2023, Table 3).
    s0: int = 2
    s1: int = 150
    mu0: float = 0.9
    # ict / ect lognormal noise levels: P_mean = -1.1, P_std = 2.0 (both papers).
    p_mean: float = -1.1
    p_std: float = 2.0
    # Distance: Song et al. 2023 found LPIPS best; "feature" uses the teacher network's own
    # features (our stand-in for LPIPS). pseudo_huber's c: < 0 means iCT's 0.00054 sqrt(d).
    distance: str = "l2"
    huber_c: float = -1.0
    feature_sigma: float = 0.5  # noise level at which teacher features are taken ("feature" distance)
    # ect mapping r(t) (Geng et al. 2024): q = 2, k = 8, b = 1; stage_steps = 0 means the run's
    # updates / 8 (our budget choice: eight halvings of t - r over a run).
    ect_q: float = 2.0
    ect_k: float = 8.0
    ect_b: float = 1.0
    stage_steps: int = 0
    init_from_teacher: bool = False  # start from the teacher's weights (a network teacher of the same architecture)

    # What sets the variants apart, as small functions of the traced step (the core is
    # ``ConsistencyObjective``): whether the target point comes from a teacher ODE step (CD) or
    # from the data (CT, iCT, ECT), whether the target network is an EMA copy, the number of
    # levels N(k), the target EMA mu(k), and how the pair of noise levels is drawn.
    distils: ClassVar[bool] = False
    uses_target_network: ClassVar[bool] = False

    def __post_init__(self):
        check_choice("distance", self.distance, DISTANCES)
        check_choice("teacher_solver", self.teacher_solver, SOLVERS)
        if self.num_scales < 2 or self.s0 < 1 or self.s1 < self.s0:
            raise ValueError(f"need num_scales >= 2 and 1 <= s0 <= s1, got {self.num_scales}, {self.s0}, {self.s1}")

    def levels(self, step: Array, total: int) -> Array:
        """N(k): the number of noise levels at step k (fixed N by default)."""
        return jnp.asarray(self.num_scales, jnp.int32)

    def target_ema_rate(self, step: Array, total: int) -> Array:
        """mu(k) of the EMA target network (fixed mu by default)."""
        return jnp.asarray(self.target_ema, jnp.float32)

    def noise_pair(self, rng: Array, n: int, step: Array, total: int, s_range: tuple[float, float]) -> tuple[Array, Array, Array]:
        """(s_hi, s_lo, lambda) per sample: adjacent levels (s_{i+1}, s_i) of the N(k)-level Karras
        grid, i uniform, and weight 1."""
        s_min, s_max = s_range
        levels = self.levels(step, total)
        u = jax.random.uniform(rng, (n,))
        i = jnp.minimum(jnp.floor(u * (levels - 1)).astype(jnp.int32), levels - 2)
        s_lo = karras_sigmas(i, levels, s_min, s_max, self.rho)
        s_hi = karras_sigmas(i + 1, levels, s_min, s_max, self.rho)
        return s_hi, s_lo, jnp.ones_like(s_hi)

    def target_level(self, s_lo: Array, s_min: float) -> Array:
        """The noise level at which the target network is evaluated (s_lo by default)."""
        return s_lo

    def boundary_target(self, target: Array, x0: Array, s_lo: Array) -> Array:
        """The target after the boundary condition (the target network's output by default)."""
        return target

    def schedule_metrics(self, step: Array, total: int) -> dict[str, Array]:
        return {"num_scales": self.levels(step, total).astype(jnp.float32)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CD(ConsistencySettings):
    """Consistency distillation (Song et al. 2023, Alg. 2): the target point is one teacher ODE step
    from the student's; fixed N, EMA target network; the student starts from the teacher."""

    method: ClassVar[str] = "cd"
    distils: ClassVar[bool] = True
    uses_target_network: ClassVar[bool] = True

    init_from_teacher: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class CT(ConsistencySettings):
    """Consistency training (Song et al. 2023, Alg. 3), from scratch: the target point is the same
    data noised to the lower level; curricula N(k) and mu(k) for the EMA target network."""

    method: ClassVar[str] = "ct"
    uses_target_network: ClassVar[bool] = True

    def levels(self, step: Array, total: int) -> Array:
        return ct_num_scales(step, total, self.s0, self.s1)

    def target_ema_rate(self, step: Array, total: int) -> Array:
        return ct_target_ema(self.levels(step, total), self.s0, self.mu0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ICT(ConsistencySettings):
    """Improved consistency training (Song & Dhariwal 2023): s0 = 10, s1 = 1280 (Sec. 3.4) and
    the pseudo-Huber distance with c = 0.00054 sqrt(d)."""

    method: ClassVar[str] = "ict"

    s0: int = 10
    s1: int = 1280
    distance: str = "pseudo_huber"

    def levels(self, step: Array, total: int) -> Array:
        return ict_num_scales(step, total, self.s0, self.s1)

    def noise_pair(self, rng: Array, n: int, step: Array, total: int, s_range: tuple[float, float]) -> tuple[Array, Array, Array]:
        """i from the discretised lognormal over the N(k)-level grid; weight 1 / (s_{i+1} - s_i)."""
        s_min, s_max = s_range
        levels = self.levels(step, total)
        logits = ict_index_logits(levels, self.s1 + 1, s_min, s_max, self.rho, self.p_mean, self.p_std)
        i = jax.random.categorical(rng, logits, shape=(n,))
        s_lo = karras_sigmas(i, levels, s_min, s_max, self.rho)
        s_hi = karras_sigmas(i + 1, levels, s_min, s_max, self.rho)
        return s_hi, s_lo, 1.0 / (s_hi - s_lo)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ECT(ConsistencySettings):
    """Easy consistency tuning (Geng et al. 2024): from the teacher's weights, pseudo-Huber with
    c = 0 (the ECT code's default)."""

    method: ClassVar[str] = "ect"

    distance: str = "pseudo_huber"
    huber_c: float = 0.0
    init_from_teacher: bool = True

    def stage(self, step: Array, total: int) -> Array:
        """a = floor(k / stage_steps); stage_steps = 0: the run's updates / 8."""
        stage_steps = self.stage_steps or max(total // 8, 1)
        return jnp.asarray(step, jnp.int32) // stage_steps

    def noise_pair(self, rng: Array, n: int, step: Array, total: int, s_range: tuple[float, float]) -> tuple[Array, Array, Array]:
        """Continuous t with ln t ~ N(P_mean, P_std^2), r = r(t, a), weight 1 / (t - r)."""
        t = lognormal_t(rng, n, self.p_mean, self.p_std)
        r = ect_r(t, self.stage(step, total), self.ect_q, self.ect_k, self.ect_b)
        return t, r, 1.0 / (t - r)

    def target_level(self, s_lo: Array, s_min: float) -> Array:
        return jnp.maximum(s_lo, s_min)

    def boundary_target(self, target: Array, x0: Array, s_lo: Array) -> Array:
        """x_0 itself where r = 0: early stages are plain denoising."""
        return jnp.where(broadcast_to(s_lo > 0, x0), target, x0)

    def schedule_metrics(self, step: Array, total: int) -> dict[str, Array]:
        return {"stage": self.stage(step, total).astype(jnp.float32)}



def karras_sigmas(i: Array, n: Array, s_min: float, s_max: float, rho: float) -> Array:
    """s_i = (s_min^(1/rho) + i / (n - 1) (s_max^(1/rho) - s_min^(1/rho)))^rho (traced i and n)."""
    return karras_sigma(jnp.asarray(i, jnp.float32) / (jnp.asarray(n, jnp.float32) - 1.0), s_min, s_max, rho)


def ct_num_scales(step: Array, total: int, s0: int, s1: int) -> Array:
    """Song et al. (2023) CT curriculum N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1."""
    k = jnp.asarray(step, jnp.float32)
    inner = jnp.sqrt(k / total * ((s1 + 1.0) ** 2 - s0**2) + s0**2)
    return (jnp.ceil(inner - 1.0) + 1.0).astype(jnp.int32)


def ict_num_scales(step: Array, total: int, s0: int, s1: int) -> Array:
    """Song & Dhariwal (2023) doubling curriculum N(k) = min(s0 2^floor(k/K'), s1) + 1."""
    k_prime = max(math.floor(total / (math.log2(math.floor(s1 / s0)) + 1.0)), 1)
    doublings = jnp.asarray(step, jnp.int32) // k_prime
    return jnp.minimum(s0 * 2 ** jnp.minimum(doublings, 30), s1) + 1


def ct_target_ema(num_scales: Array, s0: int, mu0: float) -> Array:
    """mu(k) = exp(s0 log mu0 / N(k)) (Song et al. 2023)."""
    return jnp.exp(s0 * math.log(mu0) / jnp.asarray(num_scales, jnp.float32))


def ect_r(t: Array, stage: Array, q: float, k: float, b: float) -> Array:
    """ECT's mapping r = max(0, t (1 - q^-(stage+1) (1 + k sigmoid(-b t)))) (Geng et al. 2024)."""
    decay = jnp.asarray(q, jnp.float32) ** (-(jnp.asarray(stage, jnp.float32) + 1.0))
    return jnp.maximum(t * (1.0 - decay * (1.0 + k * jax.nn.sigmoid(-b * t))), 0.0)


def ict_index_logits(n: Array, max_scales: int, s_min: float, s_max: float, rho: float, p_mean: float, p_std: float) -> Array:
    """log p(i), i = 0..max_scales-2, of iCT's discretised lognormal over the pairs (s_i, s_{i+1}) of an
    n-level grid; pairs with i >= n - 1 get -inf."""
    i = jnp.arange(max_scales - 1)
    lo = karras_sigmas(i, n, s_min, s_max, rho)
    hi = karras_sigmas(i + 1, n, s_min, s_max, rho)
    cdf = lambda s: erf((jnp.log(s) - p_mean) / (math.sqrt(2.0) * p_std))
    mass = jnp.maximum(cdf(hi) - cdf(lo), 1e-30)
    return jnp.where(i < n - 1, jnp.log(mass), -jnp.inf)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConsistencyObjective(StudentDistillation):
    """The consistency core shared by CD, CT, iCT and ECT: f_theta(x_hi, s_hi) regressed onto the
    target network's f at the target point, with the variant's noise pairs, curricula and
    target point given by its settings class."""

    settings: ConsistencySettings
    eval_nfes: Sequence[int] = (1, 2, 4)

    def __post_init__(self):
        if self.settings.distils and self.teacher is None:
            raise ValueError("consistency distillation needs a teacher")
        if self.settings.distance == "feature" and self.teacher is None:
            raise ValueError("distance='feature' uses the teacher network's features and needs a teacher")

    # ------------------------------------------------------------------ basics
    @property
    def sigma_range(self) -> tuple[float, float]:
        """(s_min, s_max) of the process, with s_max = 80 if sigma/alpha is infinite at t_max."""
        return sigma_ratio_range(self.process)

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: student forward + backward, the target's
        forward, CD's teacher step (Heun 2, Euler 1; doubled under guidance) and, for the feature
        distance, two teacher feature passes and a backward through one."""
        passes = 3.0
        if self.settings.distils:
            passes += (2.0 if self.settings.teacher_solver == "heun" else 1.0) * teacher_passes(self.guidance)
        if self.settings.distance == "feature":
            passes += 3.0
        return passes

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(rng, batch, frozen)
        trainable = {"student": NetState.create(params, self.tx)}
        if self.settings.uses_target_network:
            trainable["target"] = jax.tree.map(jnp.copy, params)
        return trainable

    def noisy(self, x0: Array, z: Array, s: Array) -> tuple[Array, Array]:
        """(x at noise level s, process time of s): x = alpha(t) (x0 + s z)."""
        t = self.process.t_from_sigma_ratio(s)
        return broadcast_to(self.process.alpha(t), x0) * (x0 + broadcast_to(s, x0) * z), t

    def f(self, params: PyTree, x: Array, t: Array, cond: Optional[Array], rngs) -> Array:
        return self.student.x0(params, x, t, cond, train=True, rngs=rngs)

    # ------------------------------------------------------------------- pairs
    def teacher_step(self, teacher_params: PyTree, x: Array, t: Array, t_next: Array, cond: Optional[Array]) -> Array:
        """One teacher PF-ODE step t -> t_next (per-sample times), Euler or Heun (Karras et al. 2022)."""
        guidance = self.guidance if cond is not None else None
        velocity = lambda y, tt: self.teacher.velocity(teacher_params, y, tt, cond, guidance=guidance)  # noqa: E731
        step = samplers.euler_step if self.settings.teacher_solver == "euler" else samplers.heun_step
        return step(velocity, x, t, t_next)

    def distance_fn(self, frozen: PyTree, cond: Optional[Array]) -> Callable[[Array, Array], Array]:
        """Per-sample distance d(a, b), shape [B]."""
        if self.settings.distance == "l2":
            return squared_l2
        if self.settings.distance == "pseudo_huber":
            dim = math.prod(self.event_shape)
            c = 0.00054 * math.sqrt(dim) if self.settings.huber_c < 0 else self.settings.huber_c
            return lambda a, b: pseudo_huber(a, b, c)
        return lambda a, b: self.feature_distance(frozen["teacher"], a, b, cond)

    def feature_distance(self, teacher_params: PyTree, a: Array, b: Array, cond: Optional[Array]) -> Array:
        """Mean squared distance of the teacher network's intermediate features at noise level
        ``feature_sigma`` (an LPIPS stand-in that needs no download), averaged over layers."""
        t = self.process.t_from_sigma_ratio(jnp.full((a.shape[0],), self.settings.feature_sigma, jnp.float32))

        feats = lambda x: self.teacher.features(teacher_params, broadcast_to(self.process.alpha(t), x) * x, t, cond)
        pairs = list(zip(feats(a), feats(b)))
        return sum(squared_l2(fa, fb) for fa, fb in pairs) / len(pairs)

    # -------------------------------------------------------------------- loss
    def loss(
        self, params: PyTree, target_params: PyTree, frozen: PyTree, batch: Batch, rng: Array, step: Array
    ) -> tuple[Array, Metrics]:
        x0 = batch["x"]
        n = x0.shape[0]
        cond = batch_labels(batch, self.num_classes)
        s_hi, s_lo, weight = self.settings.noise_pair(derive(rng, "levels"), n, step, self.total_steps, self.sigma_range)
        z = jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype)
        rngs = {"dropout": derive(rng, "dropout")}  # the same dropout mask for both evaluations
        x_hi, t_hi = self.noisy(x0, z, s_hi)
        if self.settings.distils:
            t_lo = self.process.t_from_sigma_ratio(s_lo)
            x_lo = jax.lax.stop_gradient(self.teacher_step(frozen["teacher"], x_hi, t_hi, t_lo, cond))
        else:
            x_lo, t_lo = self.noisy(x0, z, self.settings.target_level(s_lo, self.sigma_range[0]))
        target = self.settings.boundary_target(self.f(target_params, x_lo, t_lo, cond, rngs), x0, s_lo)
        target = jax.lax.stop_gradient(target)
        prediction = self.f(params, x_hi, t_hi, cond, rngs)
        per_sample = weight * self.distance_fn(frozen, cond)(prediction, target)
        loss = jnp.mean(per_sample)
        return loss, {"loss": loss, **self.settings.schedule_metrics(step, self.total_steps)}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        state = trainable["student"]
        target_params = trainable["target"] if self.settings.uses_target_network else jax.lax.stop_gradient(state.params)
        loss = lambda params, part, key: self.loss(params, target_params, frozen, part, key, step)
        grads, metrics = microbatch_grad(loss, state.params, batch, rng, self.microbatches)
        state, opt_metrics = state.apply_gradients(grads, self.ema_decay)
        out = {"student": state}
        if self.settings.uses_target_network:
            mu = self.settings.target_ema_rate(step, self.total_steps)
            out["target"] = jax.tree.map(lambda p_t, p: mu * p_t + (1.0 - mu) * p, trainable["target"], state.params)
            metrics["target_ema"] = mu
        return out, {**metrics, **opt_metrics}

    # ---------------------------------------------------------------- sampling
    def sampling_times(self, nfe: int) -> Array:
        """nfe + 1 times: nfe Karras points from t_max down (t_min excluded), then 0."""
        ts = karras_grid(self.process, nfe, rho=self.settings.rho, t_end=self.process.t_min)
        return ts.at[-1].set(0.0)

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        params = trainable["student"].eval_params
        x0_fn = lambda x, t: self.student.x0(params, x, t, cond)
        return samplers.sample(x0_fn, self.process, noise, self.sampling_times(nfe), "consistency", rng=rng)


def build(ctx, settings: ConsistencySettings) -> tuple[ConsistencyObjective, PyTree]:
    """The consistency objective of ``settings`` with the run's networks and teacher."""
    method = settings.method
    ctx.require_teacher_weights(settings, "init_from_teacher")
    needs_teacher = method == "cd" or settings.distance == "feature" or settings.init_from_teacher
    teacher, frozen = None, {}
    if needs_teacher:
        teacher, teacher_params = ctx.teacher()
        frozen = {"teacher": teacher_params}
        process = teacher.process
    else:
        process = ctx.process()
    student, init_fn = ctx.network(process, "edm" if method == "ect" else "cm")
    objective = ConsistencyObjective(settings=settings, student=student, student_init_fn=init_fn, teacher=teacher, **ctx.run_fields())
    return objective, frozen
