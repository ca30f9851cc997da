"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling
of Diffusion Models").

A student that samples with N deterministic DDIM steps is distilled from a teacher that
takes 2N steps on the same grid, then becomes the teacher of a student with N/2 steps, and
so on. For z_t on the student's grid (z_t = alpha_t x + sigma_t eps, x a data sample), the
teacher takes two DDIM steps t -> t' -> t'' (t' the midpoint on its finer grid),

    DDIM(z_s, x0, s -> r) = alpha_r x0 + (sigma_r / sigma_s) (z_s - alpha_s x0),

and the student regresses the x0 for which ONE DDIM step t -> t'' lands exactly on z_t'':

    x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t),

with the x-space loss and the paper's "truncated SNR" weighting,

    L = max(SNR(t), 1) || x_student(z_t, t) - x~ ||^2,   SNR = alpha^2 / sigma^2.

Grid. Every stage uses the same nested grid t(u), u = i / N, i = 0..N, so the N-step grid is
every other point of the 2N-step grid (u = i/N = 2i/2N exactly in floating point) and ends at
clean data t(1) = 0:

* ``"uniform"``: t(u) = t_max (1 - u), the paper's grid for its VP cosine process.
* ``"karras"`` (default): sigma/alpha spaced as Karras et al. (2022, eq. 5) with rho = 7,
  s(u) = (s_max^(1/rho) + u (s_min^(1/rho) - s_max^(1/rho)))^rho for u < 1, t(1) = 0. For
  EDM/VE processes (sigma = t up to 80) DDIM is Euler in sigma; a grid uniform in sigma would
  put almost every step at noise levels far above the data scale, the Karras spacing is the
  one the EDM teacher's samplers are tuned for. (The last student step jumps from
  s((N-1)/N) to 0, as the EDM sampler's last step jumps from s_min to 0.)

Stages run inside one compiled step: stage 0 takes ``first_stage_steps`` = F updates (by
default F = ``steps_per_stage``), every later stage ``steps_per_stage`` = S, so stage
k = min(0 if step < F else 1 + (step - F) // S, K - 1) trains a student of N_0 / 2^(k+1)
steps (K stages, N_0 / 2^K = ``final_steps``). A longer stage 0 is for students that start
from scratch (exact mixture teachers): there stage 0 also has to learn the denoiser itself.
Stage 0's teacher is the original frozen teacher (any apply function, e.g. the exact
mixture) taking N_0 steps; stage k > 0's teacher is a copy of the student carried in ``trainable["stage_teacher"]``, selected with ``lax.cond``. At a stage
boundary (a function of the traced step) the student's EMA parameters are copied into the
stage teacher, the student restarts from them (Alg. 2: the student is initialised from its
teacher) and the optimiser state is re-initialised: each stage is a fresh optimisation, so
Adam moments fitted to the previous stage's targets are dropped and the learning-rate
schedule (warm-up, decay) restarts per stage. The EMA restarts from the same parameters.

Sampling: DDIM with ``nfe`` steps on the grid t(i / nfe). As in the paper, an N-step sampler
is the student of the stage that distilled to N steps: a student distilled further predicts,
at the shared grid points, the x0 of a longer jump, so it is not an N-step sampler any more
(measured on grid25: after distilling to 1 step, running it with 2 or 4 steps is far worse
than with 1). So at each stage switch the finished stage's student (its EMA) is kept in
``trainable["snapshots"]`` for every eval NFE that is a power-of-two multiple of N_final
below N_0, and ``generate(nfe)`` uses that snapshot once its stage has finished, and the
current student otherwise (including every nfe with no snapshot: any nfe >= 1 runs on the
grid t(i / nfe), but only the distilled counts come with the guarantee).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess, VPCosine, VPLinear, broadcast_to
from jaxdistill.diffusion.steps import karras_sigma, sigma_ratio_range
from jaxdistill.losses import squared_l2
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad, teacher_passes
from jaxdistill.objectives.denoising import batch_labels

GRIDS = ("karras", "uniform")
STUDENT_PREDICTIONS = ("auto", "v", "x0", "edm")
X0Fn = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class Phases:
    """A run cut into ``count`` phases: the first of ``first`` updates, each later one of ``later``
    (the last runs to the end). Functions of the traced step, so the train step compiles once;
    progressive distillation's stages and guided distillation's stage one + stages use it."""

    first: int
    later: int
    count: int

    def phase(self, step: Array) -> Array:
        """p = min(0 if step < F else 1 + (step - F) // S, count - 1)."""
        since = jnp.asarray(step, jnp.int32) - self.first
        p = jnp.where(since < 0, 0, 1 + jnp.maximum(since, 0) // self.later)
        return jnp.minimum(p, self.count - 1)

    def starts(self, step: Array) -> Array:
        """True at the first update of phases 1..count-1 (steps F + (p - 1) S)."""
        since = jnp.asarray(step, jnp.int32) - self.first
        return (since >= 0) & (since % self.later == 0) & (since // self.later < self.count - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PD:
    """Settings of progressive distillation (Salimans & Ho 2022 unless noted)."""

    section: ClassVar[str] = "pd"
    method: ClassVar[str] = "pd"

    # Student parameterisation: "auto" = the paper's v for VP processes; for EDM/VE/flow
    # processes "edm" (an x0-prediction with EDM's skip/out preconditioning; at s >> sigma_data,
    # where the few-step student lives, it is x-prediction, c_skip -> 0; it keeps the network's
    # inputs unit-scale at sigma = 80 where raw v or x0 would not, and it is the parameterisation
    # of our EDM teachers, so the student can start from their weights).
    student_prediction: str = "auto"
    # Nested sampling grid t(i/N), see the module docstring; rho = 7 (Karras et al. 2022).
    grid: str = "karras"
    rho: float = 7.0
    # N_0 halved to N_final: the original teacher's DDIM steps. The paper starts from 1024 and
    # halves down to 1; 64 -> 1 (6 halvings) fits budgets of a few thousand updates.
    start_steps: int = 64
    final_steps: int = 1
    # Updates per stage; 0 = the run's updates // (number of stages). (The paper spends tens of
    # thousands of updates on every stage.)
    steps_per_stage: int = 0
    # Updates of stage 0; 0 = steps_per_stage (equal stages, as in the paper, whose students
    # start from the teacher's weights). With only this one set, the later stages share the rest.
    first_stage_steps: int = 0
    # The paper initialises the first student from the teacher's weights; needs a network
    # teacher of the same architecture (the exact mixture has no weights: set False there).
    init_from_teacher: bool = True

    def __post_init__(self):
        check_choice("grid", self.grid, GRIDS)
        check_choice("student_prediction", self.student_prediction, STUDENT_PREDICTIONS)
        count_stages(self.start_steps, self.final_steps)
        if self.steps_per_stage < 0 or self.first_stage_steps < 0:
            raise ValueError(f"need steps_per_stage >= 0 and first_stage_steps >= 0 (0: automatic), got {self.steps_per_stage}, {self.first_stage_steps}")

    def stage_lengths(self, num_updates: int) -> tuple[int, int]:
        """(F, S): updates of stage 0 and of each later stage in a run of ``num_updates``,
        resolving the 0 = automatic defaults."""
        stages = count_stages(self.start_steps, self.final_steps)
        first, per_stage = self.first_stage_steps, self.steps_per_stage
        if not per_stage:
            per_stage = (num_updates - first) // (stages - 1) if first and stages > 1 else num_updates // stages
        return first or per_stage, per_stage



def count_stages(start_steps: int, final_steps: int) -> int:
    """K = log2(start_steps / final_steps); ValueError unless that is a whole number >= 1."""
    ratio = start_steps // final_steps if final_steps >= 1 else 0
    if final_steps < 1 or ratio < 2 or start_steps % final_steps or ratio & (ratio - 1):
        raise ValueError(f"start_steps / final_steps must be a power of two >= 2, got {start_steps} / {final_steps}")
    return ratio.bit_length() - 1


def resolve_prediction(kind: str, process: NoiseProcess) -> str:
    """``"auto"`` -> ``"v"`` for VP processes (the paper), ``"edm"`` otherwise."""
    if kind != "auto":
        return kind
    return "v" if isinstance(process, (VPCosine, VPLinear)) else "edm"


# ------------------------------------------------------------------ pure math
def ddim_step(process: NoiseProcess, z: Array, x0: Array, t: Array, t_next: Array) -> Array:
    """Deterministic DDIM: alpha_r x0 + (sigma_r / sigma_s) (z - alpha_s x0), per-sample times [B]."""
    a, s = broadcast_to(process.alpha(t), z), broadcast_to(process.sigma(t), z)
    a1, s1 = broadcast_to(process.alpha(t_next), z), broadcast_to(process.sigma(t_next), z)
    return a1 * x0 + (s1 / s) * (z - a * x0)


def pd_target(process: NoiseProcess, teacher_x0: X0Fn, z: Array, t: Array, t_mid: Array, t_next: Array) -> Array:
    """x~ = (z'' - (sigma''/sigma) z) / (alpha'' - (sigma''/sigma) alpha), z'' two teacher DDIM steps from z.

    One DDIM step t -> t_next with x0 = x~ lands exactly on z'' (Salimans & Ho 2022, Alg. 2).
    """
    z_mid = ddim_step(process, z, teacher_x0(z, t), t, t_mid)
    z_next = ddim_step(process, z_mid, teacher_x0(z_mid, t_mid), t_mid, t_next)
    ratio = broadcast_to(process.sigma(t_next) / process.sigma(t), z)
    a, a1 = broadcast_to(process.alpha(t), z), broadcast_to(process.alpha(t_next), z)
    return (z_next - ratio * z) / (a1 - ratio * a)


def truncated_snr_weight(process: NoiseProcess, t: Array) -> Array:
    """max(SNR(t), 1), SNR = alpha^2 / sigma^2 (Salimans & Ho 2022, "truncated SNR" weighting)."""
    return jnp.maximum(jnp.exp(process.logsnr(t)), 1.0)


def grid_time(process: NoiseProcess, i: Array, n: Array, grid: str = "karras", rho: float = 7.0) -> Array:
    """t(u) at u = i / n of the nested grid (module docstring); t(0) = t_max, t(1) = 0; traced i, n."""
    u = jnp.asarray(i, jnp.float32) / jnp.asarray(n, jnp.float32)
    if grid == "uniform":
        t = process.t_max * (1.0 - u)
    elif grid == "karras":
        s_lo, s_hi = sigma_ratio_range(process)
        t = process.t_from_sigma_ratio(karras_sigma(jnp.minimum(u, 1.0), s_hi, s_lo, rho))
        t = jnp.where(u <= 0.0, process.t_max, t)
    else:
        raise ValueError(f"unknown grid {grid!r}; choose one of {GRIDS}")
    return jnp.where(u >= 1.0, 0.0, t)


def sample_grid_times(process: NoiseProcess, rng: Array, batch: int, n: Array, grid: str, rho: float) -> tuple[Array, Array, Array]:
    """(t, t', t'') per sample: t = t(i/n), i ~ U{0..n-1}, t' = t((2i+1)/2n), t'' = t((i+1)/n)."""
    i = jnp.minimum(jnp.floor(jax.random.uniform(rng, (batch,)) * n).astype(jnp.int32), n - 1)
    t = grid_time(process, i, n, grid, rho)
    t_mid = grid_time(process, 2 * i + 1, 2 * n, grid, rho)
    t_next = grid_time(process, i + 1, n, grid, rho)
    return t, t_mid, t_next


def pick(flag: Array, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where the scalar ``flag`` holds, else ``old``, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def restart_at(switch: Array, state: NetState, stage_teacher: PyTree) -> tuple[NetState, PyTree]:
    """Where ``switch``: stage teacher <- student's EMA, student restarts there with fresh optimiser state."""
    fresh = NetState.create(state.eval_params, state.tx, use_ema=state.ema is not None)
    return pick(switch, fresh, state), pick(switch, state.eval_params, stage_teacher)


def snapshot_steps(eval_nfes: Sequence[int], start_steps: int, final_steps: int) -> tuple[int, ...]:
    """Eval NFEs taken by an earlier stage's student: N_final 2^j in (N_final, N_0 / 2]."""
    ratio = lambda n: n // final_steps
    return tuple(
        sorted({int(n) for n in eval_nfes if final_steps < n < start_steps and n % final_steps == 0 and not ratio(n) & (ratio(n) - 1)})
    )


def with_snapshots(trainable: Trainable, counts: Sequence[int]) -> Trainable:
    """Adds ``trainable["snapshots"]``: one (params, filled) slot per step count in ``counts``
    (``filled`` = 0 until that stage ends); nothing when ``counts`` is empty."""
    if counts:
        params = trainable["student"].params
        trainable["snapshots"] = {str(n): {"params": jax.tree.map(jnp.copy, params), "filled": jnp.int32(0)} for n in counts}
    return trainable


def keep_snapshots(switch: Array, finished_steps: Array, trainable: Trainable) -> Trainable:
    """``{"snapshots": ...}`` updated at a switch: the finished stage's student (its EMA, which
    took ``finished_steps`` DDIM steps) fills its slot; ``{}`` without snapshots."""
    if "snapshots" not in trainable:
        return {}
    params = trainable["student"].eval_params
    out = {}
    for key, slot in trainable["snapshots"].items():
        take = switch & (finished_steps == int(key))
        out[key] = {"params": pick(take, params, slot["params"]), "filled": jnp.where(take, 1, slot["filled"]).astype(jnp.int32)}
    return {"snapshots": out}


def sampling_params(trainable: Trainable, nfe: int) -> PyTree:
    """The student for ``nfe`` steps: the stage student that was distilled to ``nfe`` steps if that
    stage has finished, else the current student's EMA."""
    current = trainable["student"].eval_params
    slot = trainable.get("snapshots", {}).get(str(nfe))
    if slot is None:
        return current
    return pick(slot["filled"] > 0, slot["params"], current)


def ddim_sample(process: NoiseProcess, x0_fn: X0Fn, noise: Array, nfe: int, grid: str, rho: float) -> Array:
    """``nfe`` DDIM steps on the grid t(i / nfe), i = 0..nfe."""
    ts = grid_time(process, jnp.arange(nfe + 1), nfe, grid, rho)
    return samplers.sample(x0_fn, process, noise, ts, "ddim")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StagedDistillation(StudentDistillation):
    """Stage machinery shared by progressive and guided distillation: a student and its stage
    teacher (the student's EMA at each stage switch), N_0 / 2^(k+1) student steps in PD stage k,
    the finished stages' students kept as snapshots, and one compiled step in which the
    switches, restarts and snapshots are functions of the traced step. Subclasses give the
    ``phases`` of the run, the PD stage of a step, and the loss."""

    @property
    def stage_lengths(self) -> tuple[int, int]:
        """(first phase's updates, each later stage's updates) of this run."""
        return self.settings.stage_lengths(self.total_steps)

    @property
    def steps_per_stage(self) -> int:
        """S: the updates of each stage after the first phase."""
        return self.stage_lengths[1]

    @property
    def num_stages(self) -> int:
        """K = log2(N_0 / N_final)."""
        return count_stages(self.settings.start_steps, self.settings.final_steps)

    @property
    def phases(self) -> Phases:
        raise NotImplementedError

    def pd_stage(self, step: Array) -> Array:
        """The PD stage k (the student takes N_0 / 2^(k+1) steps) at ``step``."""
        raise NotImplementedError

    def student_steps(self, stage: Array) -> Array:
        """N = N_0 / 2^(k+1): the student's DDIM steps in PD stage k."""
        return jnp.right_shift(jnp.int32(self.settings.start_steps), stage + 1)

    def switches(self, step: Array) -> Array:
        """True at the first update of every phase after the first."""
        return self.phases.starts(step)

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(rng, batch, frozen)
        trainable = {"student": NetState.create(params, self.tx), "stage_teacher": jax.tree.map(jnp.copy, params)}
        return with_snapshots(trainable, snapshot_steps(self.eval_nfes, self.settings.start_steps, self.settings.final_steps))

    def loss(self, params: PyTree, frozen: PyTree, stage_teacher: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Array, Metrics]:
        raise NotImplementedError

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        """At a switch: keep the finished stage's student as its snapshot (N_0 / 2^k steps; none
        for guided distillation's stage one, whose N_0 has no slot), restart the student from
        its EMA with a fresh optimiser and copy it to the stage teacher; then one update."""
        switch = self.switches(step)
        finished = jnp.right_shift(jnp.int32(self.settings.start_steps), self.pd_stage(step))
        out = keep_snapshots(switch, finished, trainable)
        out["student"], out["stage_teacher"] = restart_at(switch, trainable["student"], trainable["stage_teacher"])
        loss = lambda params, part, key: self.loss(params, frozen, out["stage_teacher"], part, key, step)
        grads, metrics = microbatch_grad(loss, out["student"].params, batch, rng, self.microbatches)
        out["student"], opt_metrics = out["student"].apply_gradients(grads, self.ema_decay)
        return out, {**metrics, **opt_metrics}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProgressiveDistillation(StagedDistillation):
    settings: PD
    teacher: Denoiser
    eval_nfes: Sequence[int] = (1, 2, 4)

    def __post_init__(self):
        first, per_stage = self.stage_lengths
        if per_stage < 1 or first < 1:
            raise ValueError(f"stages need at least one update each: stage 0 gets {first}, later stages {per_stage} (train.num_steps={self.total_steps})")

    @property
    def first_stage(self) -> int:
        """F: the updates of stage 0."""
        return self.stage_lengths[0]

    @property
    def phases(self) -> Phases:
        """The K stages: F updates, then S each; switches at F + (k - 1) S."""
        return Phases(self.first_stage, self.steps_per_stage, self.num_stages)

    def stage(self, step: Array) -> Array:
        """k = min(0 if step < F else 1 + (step - F) // S, K - 1)."""
        return self.phases.phase(step)

    def pd_stage(self, step: Array) -> Array:
        return self.stage(step)

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: the student's forward and backward and
        the two teacher DDIM steps (each a batched CFG pair under guidance, counted as two)."""
        return 2.0 + 2.0 * teacher_passes(self.guidance)

    def target(self, frozen: PyTree, stage_teacher: PyTree, z: Array, times: tuple[Array, Array, Array], cond: Optional[Array], stage: Array) -> Array:
        """PD target x~ with the original teacher in stage 0 and the stage-teacher copy after."""
        guidance = self.guidance if cond is not None else None

        def original(_):
            x0 = lambda x, t: self.teacher.x0(frozen["teacher"], x, t, cond, guidance=guidance)
            return pd_target(self.process, x0, z, *times)

        def copied(_):
            x0 = lambda x, t: self.student.x0(stage_teacher, x, t, cond)
            return pd_target(self.process, x0, z, *times)

        return jax.lax.cond(stage == 0, original, copied, None)

    def loss(self, params: PyTree, frozen: PyTree, stage_teacher: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Array, Metrics]:
        x = batch["x"]
        cond = batch_labels(batch, self.num_classes)
        stage = self.stage(step)
        n = self.student_steps(stage)
        times = sample_grid_times(self.process, derive(rng, "time"), x.shape[0], n, self.settings.grid, self.settings.rho)
        t = times[0]
        z = self.process.add_noise(x, jax.random.normal(derive(rng, "noise"), x.shape, x.dtype), t)
        target = jax.lax.stop_gradient(self.target(frozen, stage_teacher, z, times, cond, stage))
        pred = self.student.x0(params, z, t, cond, train=True, rngs={"dropout": derive(rng, "dropout")})
        loss = jnp.mean(truncated_snr_weight(self.process, t) * squared_l2(pred, target))
        return loss, {"loss": loss, "stage": stage.astype(jnp.float32), "student_steps": n.astype(jnp.float32)}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        params = sampling_params(trainable, nfe)
        x0_fn = lambda x, t: self.student.x0(params, x, t, cond)
        return ddim_sample(self.process, x0_fn, noise, nfe, self.settings.grid, self.settings.rho)


def check_init_from_teacher(ctx, settings, teacher: Denoiser, prediction: str) -> None:
    """``settings.init_from_teacher`` needs a network teacher with the student's parameterisation."""
    ctx.require_teacher_weights(settings, "init_from_teacher")
    if settings.init_from_teacher and teacher.prediction != prediction:
        raise ConfigError(
            f"{settings.method}: the student ({prediction!r}) starts from the teacher's weights, so it needs the "
            f"teacher's prediction kind {teacher.prediction!r}; set {settings.section}.student_prediction"
        )


def build(ctx, settings: PD) -> tuple[ProgressiveDistillation, PyTree]:
    """The progressive-distillation objective of ``settings`` with the run's networks and teacher."""
    teacher, teacher_params = ctx.teacher()
    prediction = resolve_prediction(settings.student_prediction, teacher.process)
    check_init_from_teacher(ctx, settings, teacher, prediction)
    student, init_fn = ctx.network(teacher.process, prediction)
    objective = ProgressiveDistillation(
        settings=settings,
        teacher=teacher,
        student=student,
        student_init_fn=init_fn,
        **ctx.run_fields(),
    )
    return objective, {"teacher": teacher_params}
