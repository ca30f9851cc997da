"""Segmented and target-driven consistency distillation of a discrete DDPM (Stable Diffusion) teacher, on
TCD's trajectory consistency function f(x, t, s) (``objectives.tcd``) and LCM's skipping-step teacher solver
(``objectives.lcm``: n uniform on the N solver levels, x at tau_n = (n + 1) k - 1, the guided teacher's step to
tau_e = max(tau_n - k, 0)). The methods differ in where f maps to (the target time s) and in the solver:

Hyper-SD's trajectory-segmented CD (TSCD; Ren, Xia, Lu, Zhang, Wu, Xie, Wang & Xiao 2024, "Hyper-SD: Trajectory
Segmented Consistency Model for Efficient Image Synthesis", §3.1), method ``hypersd``. The time range is cut into
K segments and f is trained to map every point to the start of its own segment; K falls over training stages,
8 -> 4 -> 2 -> 1, the last stage being the global consistency model. Segment edges lie on the solver grid, in
TCD's target units m (index m k - 1, process time max(m k - 1, 0) + 1): b_j = N - floor(j N / K), j = 1..K
(b_K = 0), which are exactly the LCM/TCD sampler's times at nfe = K (``LCMObjective.sampling_times``), so a
K-step sampler jumps from each segment's top to its start. Level n (target point at m-units n) maps to

    m(n) = max{ b_j <= n } = N - floor(j* N / K),   j* = ceil((N - n) K / N),

so s <= tau_e < tau_n always, and at the lowest level of a segment tau_e = s (the target is x_e itself). The
stage is a function of the traced step (``stage_segments``), so the step compiles once. Not here: Hyper-SD's
adversarial term, its human-feedback learning and its score-distillation (DMD) one-step stage.

Target-driven distillation (TDD; Wang, Guo, Duan, Li, Chen, Tang & Hu 2024, "Target-Driven Distillation:
Consistency Distillation with Target Timestep Selection and Decoupled Guidance", arXiv 2409.01347), method
``tdd``; the selection follows the authors' released training scripts (RedAIGC/Target-Driven-Distillation).
Target timestep selection: the targets are restricted to the union S of the equidistant few-step schedules with
K_min..K_max steps (the solver indices reversed, picked at floor(i N / K), i < K; plus index 0, less the top
index). For the target point tau_e, the nearest schedule time below it, u = max{S <= tau_e}, and a candidate c
uniform on S within [u - 260, u]; then TCD's gamma offset, s = floor((1 - eta s_ratio) c), eta ~ U[0, 1), so
that gamma-sampling's intermediate times are trained. Decoupled guidance: a fraction ``uncond_prob`` of the
prompts is replaced by the negative (empty) prompt for both the student and the teacher's conditional branch,
so for those the guided target x0_u + w (x0_c - x0_u) is the unguided teacher's; the student learns its
unconditional branch too and is sampled with its own guidance (``guidance_scale``, x_u + g (x_c - x_u) on the
student's x0). Not here: TDD's non-equidistant sampling schedule and x0 clipping (optional at inference), its
adversarial variant.

SCott (Liu, Xie, Ye, Deng, Chen, Tang, Fu, Lu & Zha 2024, "SCott: Accelerating Diffusion Models with Stochastic
Consistency Distillation"), method ``scott``: LCM's consistency distillation (``objectives.lcm``, f(x, t) to the
boundary) with a stochastic teacher solver. The guided teacher's step tau_n -> tau_e is ``solver_steps``
sub-steps of the generalised DDIM / SDE step (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models",
eq. 12) with noise strength eta: from a to b,

    c   = eta sqrt((sigma_b^2 / sigma_a^2) (1 - alpha_a^2 / alpha_b^2)),
    x_b = alpha_b x0_w + sqrt(sigma_b^2 - c^2) eps_w + c z,   eps_w = (x_a - alpha_a x0_w) / sigma_a,  z ~ N(0, I),

eta = 0 the deterministic DDIM solver, eta = 1 DDPM's ancestral step (the reverse SDE's discretisation). Not
here: SCott's adversarial loss (a LoRA discriminator).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.process import NoiseProcess, broadcast_to
from jaxdistill.objectives import lcm, tcd
from jaxdistill.objectives.lcm import LCM, LCMObjective, check_solver_settings, ddim_indices
from jaxdistill.objectives.tcd import TCDObjective, strategic_stochastic_sampling


def check_gamma(gamma: float) -> None:
    """TCD's range for the sampler's gamma."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1] (0: deterministic, 1: LCM's multistep sampler), got {gamma}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HyperSD:
    """Settings of trajectory-segmented consistency distillation (method ``hypersd``; Hyper-SD §3.1). The
    teacher solver, guidance range and target are LCM's (``objectives.lcm.LCM``; Hyper-SD builds on LCM's
    training and reports none of its own)."""

    section: ClassVar[str] = "hypersd"
    method: ClassVar[str] = "hypersd"

    segments: tuple[int, ...] = (8, 4, 2, 1)  # K per stage (Hyper-SD §3.1: "8 -> 4 -> 2 -> 1")
    steps_per_stage: int = 0  # updates per stage; 0: the run's updates split evenly (the paper gives no counts)
    num_ddim_timesteps: int = 50  # N, skipping k = T // N = 20 (LCM's)
    w_min: float = 3.0  # our w = 1 + omega, LCM's omega in [2, 14]
    w_max: float = 15.0
    distance: str = "l2"  # Hyper-SD §3.1 trains TSCD with an MSE loss (its adversarial term is left out)
    huber_c: float = 0.001
    target_ema: float = 0.0  # the online student under a stopped gradient (LoRA students, as LCM-LoRA)
    init_from_teacher: bool = True
    gamma: float = 0.0  # deterministic sampling (Hyper-SD's multistep LoRAs are sampled with DDIM, its README)

    def __post_init__(self):
        check_solver_settings(self)
        check_gamma(self.gamma)
        if not self.segments or any(not 1 <= k <= self.num_ddim_timesteps for k in self.segments):
            raise ValueError(f"segments must be a non-empty tuple of counts in [1, num_ddim_timesteps={self.num_ddim_timesteps}], got {self.segments}")
        if any(a < b for a, b in zip(self.segments, self.segments[1:])):
            raise ValueError(f"segments must not increase over the stages (Hyper-SD: 8 -> 4 -> 2 -> 1), got {self.segments}")
        if self.steps_per_stage < 0:
            raise ValueError(f"steps_per_stage must be >= 0 (0: the run's updates split evenly), got {self.steps_per_stage}")


def segment_start(level: Array, segments: Array, n: int) -> Array:
    """m(n) = N - floor(j* N / K), j* = ceil((N - n) K / N): the start of level n's segment in TCD's target units."""
    level, segments = jnp.asarray(level, jnp.int32), jnp.asarray(segments, jnp.int32)
    j = ((n - level) * segments + n - 1) // n
    return n - (j * n) // segments


def target_time(m: Array, skip: int) -> Array:
    """Process time of TCD's target unit m: DDPM index max(m k - 1, 0), plus 1."""
    return jnp.maximum(m * skip - 1, 0).astype(jnp.float32) + 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class HyperSDObjective(TCDObjective):
    """TSCD: TCD's loss with s the start of the point's segment, K = ``segments[stage]`` (module docstring)."""

    settings: HyperSD
    stage_segments: Optional[Array] = None  # K of the current stage, set by ``step`` from the traced step (None: stage 0's)

    @property
    def steps_per_stage(self) -> int:
        return self.settings.steps_per_stage or max(self.total_steps // len(self.settings.segments), 1)

    def segments_at(self, step: Array) -> Array:
        """K at update ``step``: ``segments[min(step // steps_per_stage, stages - 1)]``, traced."""
        stage = jnp.minimum(jnp.asarray(step) // self.steps_per_stage, len(self.settings.segments) - 1)
        return jnp.asarray(self.settings.segments, jnp.int32)[stage]

    def target_times(self, level: Array, rng: Array) -> Array:
        segments = self.segments_at(0) if self.stage_segments is None else self.stage_segments
        skip = self.process.num_train_timesteps // self.settings.num_ddim_timesteps
        return target_time(segment_start(level, segments, self.settings.num_ddim_timesteps), skip)

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        staged = dataclasses.replace(self, stage_segments=self.segments_at(step))
        trainable, metrics = TCDObjective.step(staged, trainable, frozen, batch, rng, step)
        return trainable, {**metrics, "segments": staged.stage_segments.astype(jnp.float32)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TDD:
    """Settings of target-driven distillation (method ``tdd``); defaults: the authors' SDXL training script
    (``train/SDXL/train_tdd.sh``, RedAIGC/Target-Driven-Distillation) and README."""

    section: ClassVar[str] = "tdd"
    method: ClassVar[str] = "tdd"

    num_ddim_timesteps: int = 250  # N, skipping k = 4 (--num_ddim_timesteps=250)
    schedule_min: int = 4  # the few-step schedules' step counts K_min..K_max (--num_inference_steps_min/max)
    schedule_max: int = 8
    window: int = 260  # DDPM indices below the nearest schedule time the candidates span (select_s's 260)
    s_ratio: float = 0.3  # gamma offset s = floor((1 - eta s_ratio) c) (--s_ratio=0.3)
    uncond_prob: float = 0.2  # decoupled guidance: prompts replaced by the empty one (--proportion_empty_prompts=0.2)
    w_min: float = 4.5  # our w = 1 + w', the script's w' = 3.5 (--w_min = --w_max = 3.5)
    w_max: float = 4.5
    distance: str = "pseudo_huber"  # --loss_type="huber"
    huber_c: float = 0.001
    target_ema: float = 0.0  # the online LoRA student under a stopped gradient
    init_from_teacher: bool = True
    gamma: float = 0.2  # sampling stochasticity (the README's eta=0.2)
    guidance_scale: float = 1.7  # the student's own guidance at sampling, x_u + g (x_c - x_u) (the README's guidance_scale)

    def __post_init__(self):
        check_solver_settings(self)
        check_gamma(self.gamma)
        if not 1 <= self.schedule_min <= self.schedule_max <= self.num_ddim_timesteps:
            raise ValueError(f"need 1 <= schedule_min <= schedule_max <= num_ddim_timesteps, got {self.schedule_min}, {self.schedule_max}, {self.num_ddim_timesteps}")
        if self.window < 0 or not 0.0 <= self.s_ratio <= 1.0 or not 0.0 <= self.uncond_prob <= 1.0:
            raise ValueError(f"need window >= 0, s_ratio and uncond_prob in [0, 1], got {self.window}, {self.s_ratio}, {self.uncond_prob}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0 (1: the student unguided), got {self.guidance_scale}")


def schedule_set(num_train_timesteps: int, n: int, k_min: int, k_max: int) -> np.ndarray:
    """S: the DDPM indices of the equidistant K-step schedules on the N solver indices, K = k_min..k_max, with
    index 0 added and the top index (the start of every schedule, never a target) removed; sorted."""
    origin = ddim_indices(num_train_timesteps, n)[::-1]
    picked = [origin[np.floor(np.linspace(0, n, k, endpoint=False)).astype(int)] for k in range(k_min, k_max + 1)]
    return np.insert(np.unique(np.concatenate(picked)), 0, 0)[:-1]


def decouple(batch: Batch, drop: Array) -> Batch:
    """``batch`` with the prompts of the examples where ``drop`` replaced by their negative (empty) prompt."""
    cond = dict(batch["cond"])
    for field, negative in (("embeds", "negative_embeds"), ("pooled", "negative_pooled")):
        if cond.get(field) is not None:
            cond[field] = jnp.where(broadcast_to(drop, cond[field]), cond[negative], cond[field])
    return {**batch, "cond": cond}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TDDObjective(TCDObjective):
    """TDD: TCD's loss with targets selected from the few-step schedules, and decoupled guidance (module docstring)."""

    settings: TDD

    @property
    def schedule(self) -> np.ndarray:
        st = self.settings
        return schedule_set(self.process.num_train_timesteps, st.num_ddim_timesteps, st.schedule_min, st.schedule_max)

    def schedule_targets(self, end_index: Array, rng: Array) -> Array:
        """c: uniform on the schedule times in [u - window, u], u = max{S <= end_index} (DDPM indices)."""
        schedule = jnp.asarray(self.schedule, jnp.int32)
        upper = jnp.searchsorted(schedule, end_index, side="right") - 1
        lower = jnp.searchsorted(schedule, jnp.maximum(schedule[upper] - self.settings.window, 0), side="left")
        return schedule[jax.random.randint(rng, end_index.shape, lower, upper + 1)]

    def target_times(self, level: Array, rng: Array) -> Array:
        skip = self.process.num_train_timesteps // self.settings.num_ddim_timesteps
        end_index = jnp.maximum(level * skip - 1, 0)  # tau_e = max(tau_n - k, 0)
        c = self.schedule_targets(end_index, derive(rng, "schedule"))
        eta = jax.random.uniform(derive(rng, "offset"), level.shape)
        return jnp.floor((1.0 - eta * self.settings.s_ratio) * c) + 1.0

    def solver_pair(self, teacher_params: PyTree, batch: Batch, rng: Array) -> lcm.SolverPair:
        """LCM's draw on the batch whose prompts are dropped to the negative one with probability ``uncond_prob``."""
        drop = jax.random.uniform(derive(rng, "uncond"), (batch["x"].shape[0],)) < self.settings.uncond_prob
        return super().solver_pair(teacher_params, decouple(batch, drop), rng)

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        """Strategic stochastic sampling with the student guided by itself at ``guidance_scale``."""
        if cond is None:
            raise ValueError("the TDD student is text-conditional: generate needs the prompts' TextCondition (a t2i cache batch's cond)")
        params, scale = trainable["student"].eval_params, self.settings.guidance_scale
        x0_fn = lambda x, t: self.student.x0(params, x, t, cond, guidance=None if scale == 1.0 else scale)  # noqa: E731
        return strategic_stochastic_sampling(x0_fn, self.process, noise, self.sampling_times(nfe), self.settings.gamma, rng)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCott(LCM):
    """Settings of stochastic consistency distillation (method ``scott``): LCM's (``objectives.lcm.LCM``, SCott
    builds on LCM-LoRA's training) plus the stochastic solver's noise strength and sub-steps."""

    section: ClassVar[str] = "scott"
    method: ClassVar[str] = "scott"

    eta: float = 0.5  # SCott controls the SDE solver's noise strength; the value is ours (not in its public text)
    solver_steps: int = 2  # sub-steps per skipping step (SCott's multi-step SDE solver); the count is ours

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM's ancestral step), got {self.eta}")
        if self.solver_steps < 1:
            raise ValueError(f"solver_steps must be >= 1, got {self.solver_steps}")


def stochastic_ddim_step(process: NoiseProcess, x: Array, x0: Array, t: Array, t_next: Array, eta: float, z: Array) -> Array:
    """x_b = alpha_b x0 + sqrt(sigma_b^2 - c^2) eps + c z, c = eta sqrt((sigma_b^2 / sigma_a^2)(1 - alpha_a^2 / alpha_b^2))."""
    a, s = broadcast_to(process.alpha(t), x), broadcast_to(process.sigma(t), x)
    a1, s1 = broadcast_to(process.alpha(t_next), x), broadcast_to(process.sigma(t_next), x)
    c = eta * jnp.sqrt(jnp.maximum((s1 / s) ** 2 * (1.0 - (a / a1) ** 2), 0.0))
    return a1 * x0 + jnp.sqrt(jnp.maximum(s1**2 - c**2, 0.0)) * (x - a * x0) / s + c * z


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCottObjective(LCMObjective):
    """SCott: LCM's consistency distillation with the stochastic teacher solver (module docstring)."""

    settings: SCott

    def teacher_target_point(self, teacher_params: PyTree, x: Array, t: Array, t_end: Array, cond: TextCondition, w: Array, rng: Optional[Array] = None) -> Array:
        """``solver_steps`` stochastic DDIM sub-steps t -> t_end (times floored to DDPM indices, process time
        t = index + 1) with the guided teacher's x0_u + w (x0_c - x0_u); sub-step i draws from fold_in(rng, i)."""
        steps, eta = self.settings.solver_steps, self.settings.eta
        if rng is None and eta > 0:
            raise ValueError(f"the stochastic solver with eta={eta} > 0 draws noise and needs rng")
        def sub_step(x, i):
            a, b = (jnp.where(j == steps, t_end, jnp.floor(t + (t_end - t) * j / steps)) for j in (i, i + 1))
            x0 = self.teacher.x0(teacher_params, x, a, cond, guidance=w)
            z = jnp.zeros_like(x) if eta == 0 else jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
            return stochastic_ddim_step(self.process, x, x0, a, b, eta, z), None

        return jax.lax.scan(sub_step, x, jnp.arange(steps))[0]


OBJECTIVES = {HyperSD: HyperSDObjective, TDD: TDDObjective}


def build(ctx, settings) -> tuple[LCMObjective, PyTree]:
    """The method's objective on the teacher's own network (a LoRA of it with a ``lora`` section), as TCD's
    (``hypersd``, ``tdd``) or LCM's (``scott``)."""
    if isinstance(settings, SCott):
        return lcm.build(ctx, settings, SCottObjective)
    return tcd.build(ctx, settings, OBJECTIVES[type(settings)])
