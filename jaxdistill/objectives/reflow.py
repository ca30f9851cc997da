"""Reflow (Liu, Gong & Liu 2023, "Flow Straight and Fast: Learning to Generate and Transfer Data with
Rectified Flow", ICLR) with the improved recipe of Lee, Lin & Fanti (2024, "Improving the Training
of Rectified Flows", NeurIPS), and one-step distillation after reflow (Liu, Zhang, Ma, Peng & Liu
2024, "InstaFlow: One Step is Enough for High-Quality Diffusion-Based Text-to-Image Generation", ICLR).

Time runs as in ``process.RectifiedFlow``: x_t = (1 - t) x + t z, t = 1 noise, dx/dt = z - x (Lee et
al. use the same convention; Liu et al. run it the other way). The teacher (the 1-rectified flow:
any denoiser, re-parameterised onto the flow with ``diffusion.reparam``) maps noise to data with its
deterministic sampler, x = ODE_T(z). Reflow fits a velocity network to the straight interpolation of
those couplings (Liu et al. eq. 6 with (X_0, X_1) = (z, ODE_T(z))):

    L(theta) = E_{(z, x), t ~ p_t} d( v_theta(x_t, t), z - x ),   x_t = (1 - t) x + t z,

whose minimiser (the 2-rectified flow) has straighter paths than the teacher's, so few Euler steps
x_{t-h} = x_t - h v(x_t, t) sample it well. The (z, ODE_T(z)) pairs are built once
(``kd.teacher_pair_set``). Lee et al.'s recipe, the settings' defaults: t from the U-shaped density

    p_t(t) = a cosh(a (t - 1/2)) / (2 sinh(a / 2)),   a = 4

(their code: an equal mixture of the density ~ e^{a t} on [0, 1] and its mirror image), the
pseudo-Huber distance d = (sqrt(||delta||^2 + c^2) - c) / D with c = 0.00054 D over D dimensions
(their code's "huber"; the paper adds LPIPS, which needs image features this library does not
load), and the student initialised from the teacher (the previous flow). Liu et al.'s original:
``time_distribution="uniform"``, ``distance="l2"``.

InstaFlow chains both stages in one run whose step compiles once: for the first
``reflow_fraction`` of the updates the student is trained by reflow; at the switch (a function of the
traced step, as progressive distillation's stages) its EMA is frozen as the reflow teacher and the
student restarts from it with a fresh optimiser; from then on its one Euler step from t = 1 regresses
the reflow teacher's ODE end point (InstaFlow Sec. 3; Liu et al. 2023, Sec. 2.3 "distillation"):

    L = E_z d( z - v_theta(z, 1), ODE_2RF(z) ),  ODE_2RF(z) = ``distill_nfe`` Euler steps of the frozen copy,

computed on each batch's pair-set noises (an infinite distillation set: the nearly straight 2-RF
is integrated in a few steps, so its pairs are cheaper online than stored). One run rather than a
reflow run as the teacher of a second: the objective protocol's teacher is a denoiser, and a
chained run also keeps the reflow stage's pair set, guidance and checkpoints in one folder.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import RectifiedFlow
from jaxdistill.diffusion.reparam import reparameterize
from jaxdistill.diffusion.straightness import VelocityFn, euler_sample, straightness
from jaxdistill.losses import pseudo_huber, squared_l2
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad
from jaxdistill.objectives.kd import TeacherPairSet
from jaxdistill.objectives.progressive import restart_at

TIME_DISTRIBUTIONS = ("u_shaped", "uniform")
DISTANCES = ("pseudo_huber", "l2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reflow:
    """Settings of reflow with the improved recipe (Lee et al. 2024 unless noted; official code
    sangyun884/rfpp)."""

    section: ClassVar[str] = "reflow"
    method: ClassVar[str] = "reflow"

    # The coupling set: the teacher's deterministic sampler and NFE (Lee et al. generate their
    # CIFAR-10 pairs with EDM's Heun sampler, 18 steps = 35 evaluations), and the number of pairs
    # (theirs: 1M on CIFAR-10, 5M on ImageNet 64; ours, as KD's, fits a CPU; benchmarks set their own).
    teacher_sampler: str = "heun"
    teacher_nfe: int = 35
    num_pairs: int = 16384
    time_distribution: str = "u_shaped"  # Sec. 4.1; Liu et al. 2023: "uniform"
    u_shape_a: float = 4.0  # a of the U-shaped density (rfpp README: --a 4)
    distance: str = "pseudo_huber"  # Sec. 4.2 (rfpp "huber"); Liu et al. 2023: "l2"
    huber_c_per_dim: float = 0.00054  # c = 0.00054 D (rfpp train.py), after Song & Dhariwal's 0.00054
    init_from_teacher: bool = True  # Sec. 4.3: the 2-rectified flow starts from the pre-trained diffusion model

    def __post_init__(self):
        check_choice("teacher_sampler", self.teacher_sampler, samplers.METHODS)
        check_choice("time_distribution", self.time_distribution, TIME_DISTRIBUTIONS)
        check_choice("distance", self.distance, DISTANCES)
        if self.teacher_nfe < 1 or self.num_pairs < 1:
            raise ValueError(f"need teacher_nfe >= 1 and num_pairs >= 1, got {self.teacher_nfe}, {self.num_pairs}")
        if self.u_shape_a <= 0 or self.huber_c_per_dim <= 0:
            raise ValueError(f"need u_shape_a > 0 and huber_c_per_dim > 0, got {self.u_shape_a}, {self.huber_c_per_dim}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstaFlow(Reflow):
    """Settings of InstaFlow (Liu et al. 2024): reflow (the settings above), then one-step distillation."""

    section: ClassVar[str] = "instaflow"
    method: ClassVar[str] = "instaflow"

    reflow_fraction: float = 0.5  # the share of the run's updates spent on reflow (ours: half each)
    distill_nfe: int = 16  # Euler steps of the frozen 2-rectified flow giving each distillation target (ours)
    distill_distance: str = "l2"  # Liu et al. 2023's distillation loss; InstaFlow uses LPIPS on images

    def __post_init__(self):
        super().__post_init__()
        check_choice("distill_distance", self.distill_distance, DISTANCES)
        if not 0.0 < self.reflow_fraction < 1.0 or self.distill_nfe < 1:
            raise ValueError(f"need 0 < reflow_fraction < 1 and distill_nfe >= 1, got {self.reflow_fraction}, {self.distill_nfe}")

    def stage_lengths(self, num_updates: int) -> tuple[int, int]:
        """(F, S): the reflow stage's updates, round(reflow_fraction * num_updates), and the distillation's, the rest."""
        first = int(round(self.reflow_fraction * num_updates))
        return first, num_updates - first


# ------------------------------------------------------------------ pure math
def u_shaped_density(t: Array, a: float) -> Array:
    """p_t(t) = a cosh(a (t - 1/2)) / (2 sinh(a / 2)) on [0, 1] (Lee et al. 2024, Sec. 4.1)."""
    return a * jnp.cosh(a * (jnp.asarray(t) - 0.5)) / (2.0 * math.sinh(a / 2.0))


def sample_u_shaped(rng: Array, n: int, a: float) -> Array:
    """n draws of ``u_shaped_density``: u = log(1 + U (e^a - 1)) / a has density a e^{a u} / (e^a - 1)
    on [0, 1] (inverse CDF), mirrored to 1 - u with probability 1/2."""
    u = jnp.log1p(jax.random.uniform(derive(rng, "u"), (n,), jnp.float32) * math.expm1(a)) / a
    return jnp.where(jax.random.bernoulli(derive(rng, "mirror"), 0.5, (n,)), 1.0 - u, u)


def reflow_distance(prediction: Array, target: Array, kind: str, huber_c_per_dim: float) -> Array:
    """Per-sample d(prediction, target): ``l2`` ||delta||^2 / D, ``pseudo_huber`` (sqrt(||delta||^2 + c^2) - c) / D, c = huber_c_per_dim D."""
    if kind == "l2":
        return squared_l2(prediction, target)
    dim = math.prod(prediction.shape[1:])
    return pseudo_huber(prediction, target, huber_c_per_dim * dim) / dim


def velocity_of(denoiser: Denoiser, params: PyTree, cond: Optional[Array], train: bool = False, rngs=None) -> VelocityFn:
    """v(x, t): the network output of a ``"flow"`` denoiser, else its PF-ODE velocity."""
    if denoiser.prediction == "flow":
        return lambda x, t: denoiser.raw(params, x, t, cond, train=train, rngs=rngs)
    return lambda x, t: denoiser.velocity(params, x, t, cond, train=train, rngs=rngs)


def one_euler_step(velocity: VelocityFn, z: Array) -> Array:
    """z - v(z, 1): the flow's one-step sample."""
    return z - velocity(z, jnp.ones((z.shape[0],), jnp.float32))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReflowObjective(TeacherPairSet, StudentDistillation):
    """Trains one velocity network (``"student"``) on the teacher's (noise, ODE end point) couplings."""

    settings: Reflow
    teacher: Denoiser  # the 1-rectified flow: a denoiser of the student's process
    eval_nfes: Sequence[int] = (1, 2, 4)

    def __post_init__(self):
        if not isinstance(self.process, RectifiedFlow):
            raise ValueError(f"reflow is defined on the rectified flow, got {type(self.process).__name__}")
        if self.teacher.process != self.process:
            raise ValueError("the teacher must be a denoiser of the student's rectified flow (diffusion.reparam.reparameterize)")

    @property
    def passes_per_sample(self) -> float:
        """The student's forward and backward (the pair set is a one-off cost)."""
        return 2.0

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        return {"student": NetState.create(self.initial_student(rng, batch, frozen), self.tx)}

    def sample_t(self, rng: Array, n: int) -> Array:
        """t ~ p_t (``time_distribution``), mapped into [t_min, 1]."""
        if self.settings.time_distribution == "uniform":
            u = jax.random.uniform(rng, (n,), jnp.float32)
        else:
            u = sample_u_shaped(rng, n, self.settings.u_shape_a)
        return self.process.t_min + (1.0 - self.process.t_min) * u

    def pairs_batch(self, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Array, Optional[Array]]:
        """(z, x, c): a batch-sized draw (with replacement) from the coupling set."""
        idx = jax.random.randint(derive(rng, "pairs"), (batch["x"].shape[0],), 0, self.settings.num_pairs)
        pairs = frozen["pairs"]
        return pairs["noise"][idx], pairs["target"][idx], pairs["label"][idx] if self.num_classes > 0 else None

    def reflow_loss(self, params: PyTree, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        """mean_b d(v_theta(x_t, t), z - x) on the straight interpolation x_t = (1 - t) x + t z of coupled (z, x)."""
        z, x, cond = self.pairs_batch(frozen, batch, rng)
        t = self.sample_t(derive(rng, "time"), z.shape[0])
        x_t = self.process.add_noise(x, z, t)
        v = velocity_of(self.student, params, cond, train=True, rngs={"dropout": derive(rng, "dropout")})(x_t, t)
        per_sample = reflow_distance(v, jax.lax.stop_gradient(z - x), self.settings.distance, self.settings.huber_c_per_dim)
        loss = jnp.mean(per_sample)
        return loss, {"loss": loss, "mse": jnp.mean(squared_l2(v, z - x))}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        loss = lambda params, part, key: self.reflow_loss(params, frozen, part, key)
        grads, metrics = microbatch_grad(loss, trainable["student"].params, batch, rng, self.microbatches)
        state, opt_metrics = trainable["student"].apply_gradients(grads, self.ema_decay)
        return {"student": state}, {**metrics, **opt_metrics}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        """nfe uniform Euler steps of the student's flow from t = 1."""
        return euler_sample(velocity_of(self.student, trainable["student"].eval_params, cond), noise, nfe)

    def straightness(self, params: PyTree, noise: Array, cond: Optional[Array], nfe: int, *, teacher: bool = False) -> Array:
        """Per-sample straightness S (``diffusion.straightness``) of the student's flow with ``params``, or
        with ``teacher`` of the teacher's flow (``params`` its parameters), along nfe Euler steps."""
        denoiser = self.teacher if teacher else self.student
        guidance = self.guidance if teacher and cond is not None else None
        if guidance is None:
            velocity = velocity_of(denoiser, params, cond)
        else:
            velocity = lambda x, t: denoiser.velocity(params, x, t, cond, guidance=guidance)
        return straightness(velocity, noise, nfe)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstaFlowObjective(ReflowObjective):
    """Reflow, then one-step distillation of the frozen 2-rectified flow, in one compiled step."""

    settings: InstaFlow
    eval_nfes: Sequence[int] = (1,)

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.switch_step < self.total_steps:
            raise ValueError(f"instaflow needs updates in both stages: reflow_fraction={self.settings.reflow_fraction} of {self.total_steps} updates")

    @property
    def switch_step(self) -> int:
        """F = round(reflow_fraction * updates): the first distillation update."""
        return self.settings.stage_lengths(self.total_steps)[0]

    @property
    def passes_per_sample(self) -> float:
        """Reflow's two passes, and during distillation ``distill_nfe`` forward passes of the frozen flow
        (averaged over the run)."""
        return 2.0 + (1.0 - self.settings.reflow_fraction) * self.settings.distill_nfe

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(rng, batch, frozen)
        return {"student": NetState.create(params, self.tx), "reflow": jax.tree.map(jnp.copy, params)}

    def distill_loss(self, params: PyTree, reflow: PyTree, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        """mean_b d(z - v_theta(z, 1), ODE_2RF(z)) on the pair set's noises."""
        z, _, cond = self.pairs_batch(frozen, batch, rng)
        target = jax.lax.stop_gradient(euler_sample(velocity_of(self.student, reflow, cond), z, self.settings.distill_nfe))
        student = velocity_of(self.student, params, cond, train=True, rngs={"dropout": derive(rng, "dropout")})
        one_step = one_euler_step(student, z)
        loss = jnp.mean(reflow_distance(one_step, target, self.settings.distill_distance, self.settings.huber_c_per_dim))
        return loss, {"loss": loss, "mse": jnp.mean(squared_l2(one_step, target))}

    def loss(self, params: PyTree, reflow: PyTree, frozen: PyTree, batch: Batch, rng: Array, distilling: Array) -> tuple[Array, Metrics]:
        """Reflow's loss before the switch, the distillation loss after (``lax.cond`` on the traced step)."""
        loss, metrics = jax.lax.cond(
            distilling,
            lambda: self.distill_loss(params, reflow, frozen, batch, rng),
            lambda: self.reflow_loss(params, frozen, batch, rng),
        )
        return loss, {**metrics, "stage": distilling.astype(jnp.float32)}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        """At the switch the student's EMA becomes the frozen reflow flow and the student restarts from it."""
        step = jnp.asarray(step, jnp.int32)
        state, reflow = restart_at(step == self.switch_step, trainable["student"], trainable["reflow"])
        distilling = step >= self.switch_step
        loss = lambda params, part, key: self.loss(params, reflow, frozen, part, key, distilling)
        grads, metrics = microbatch_grad(loss, state.params, batch, rng, self.microbatches)
        state, opt_metrics = state.apply_gradients(grads, self.ema_decay)
        return {"student": state, "reflow": reflow}, {**metrics, **opt_metrics}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        """z - v(z, 1): the distilled one-step generator."""
        if nfe != 1:
            raise ValueError(f"the InstaFlow student is a one-step generator; got nfe={nfe}")
        return one_euler_step(velocity_of(self.student, trainable["student"].eval_params, cond), noise)


def build(ctx, settings: Reflow) -> tuple[ReflowObjective, PyTree]:
    """The reflow (or InstaFlow) objective of ``settings``: the teacher re-parameterised onto the run's
    rectified flow, and a velocity network, or with ``init_from_teacher`` the teacher's network in its
    own parameterisation on the flow (so it starts as the teacher's flow)."""
    process = ctx.process()
    if not isinstance(process, RectifiedFlow):
        raise ConfigError(f"{settings.method} needs process.name='rectified_flow', got {ctx.config.process.name!r}")
    ctx.require_teacher_weights(settings, "init_from_teacher")
    teacher, teacher_params = ctx.teacher()
    if settings.init_from_teacher:
        network, init_fn = ctx.network(teacher.process, teacher.prediction)
        student = reparameterize(network, process)
    else:
        student, init_fn = ctx.network(process, "flow")
    cls = InstaFlowObjective if isinstance(settings, InstaFlow) else ReflowObjective
    objective = cls(settings=settings, teacher=reparameterize(teacher, process), student=student, student_init_fn=init_fn, **ctx.run_fields())
    return objective, {"teacher": teacher_params}
