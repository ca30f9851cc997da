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
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax.numpy as jnp

from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.objectives import tcd
from jaxdistill.objectives.lcm import check_solver_settings
from jaxdistill.objectives.tcd import TCDObjective


def check_gamma(gamma: float) -> None:
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


OBJECTIVES = {HyperSD: HyperSDObjective}


def build(ctx, settings) -> tuple[TCDObjective, PyTree]:
    """The method's objective on the teacher's own network (a LoRA of it with a ``lora`` section), as TCD's."""
    return tcd.build(ctx, settings, OBJECTIVES[type(settings)])
