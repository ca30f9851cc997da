"""Trajectory Consistency Distillation (Zheng, Hu, Fan, Wang, Ding, Tao & Cham 2024, "Trajectory Consistency
Distillation: Improved Latent Consistency Distillation by Semi-Linear Consistency Function with Trajectory
Mapping", arXiv 2402.19159): LCM (``objectives.lcm``) with a consistency function that maps to any s <= t
instead of to the boundary, and a sampler whose stochasticity is set by one number, gamma.

Trajectory consistency function, in the semi-linear (exponential-integrator) form of the PF-ODE: from the
network's x0 prediction F(x, t) (eps = (x - alpha_t F) / sigma_t), one first-order step from t to s,

    f(x, t, s) = (sigma_s / sigma_t) x + (alpha_s - alpha_t sigma_s / sigma_t) F(x, t),      s <= t,

which is DDIM t -> s (``objectives.progressive.ddim_step``) with its terms regrouped so that the boundary
condition f(x, t, t) = x holds exactly in floating point (the coefficients are 1 and 0), and f(x, t, 0) = F.
No c_skip / c_out scalings: the network's own prediction is used, as in diffusers' ``TCDScheduler``.

Training (trajectory mapping): LCM's draw (``LCMObjective.solver_pair``: n uniform on the N skipping-step
levels, x at tau_n, the guided teacher's DDIM step x_e to tau_e = max(tau_n - k, 0)), plus a target index
per example: m uniform on {0, .., n} and s_m = max(tau_m - k, 0), so s_m runs over the solver grid from
index 0 up to tau_e (m = n gives s = tau_e, where the target is x_e itself). Then

    L = d( f_theta(x, tau_n, s_m), f_target(x_e, tau_e, s_m) ),

the target the stop-gradient online student (LoRA) or its EMA. The authors released inference code only
(jabir-zheng/TCD); the draw of m follows the public re-implementation built on diffusers' LCM scripts
(rootonchair/consistency_models_distill, ``tcd/train_tcd_distill_lora_sd_wds.py``). Teacher grid, guidance
(our w = 1 + the scripts' w), distance and target network are LCM's (``objectives.lcm``).

Strategic stochastic sampling (SSS; the paper's Alg. 4, diffusers' ``TCDScheduler.step``): on LCM's
sampling times t_0 > ... > t_nfe = 0 (``LCMObjective.sampling_times``, the same indices as
``TCDScheduler.set_timesteps`` with ``original_inference_steps`` = N), at each step

    s = floor((1 - gamma) t_next),   x_s = f(x, t, s),
    x   = (alpha_next / alpha_s) x_s + sqrt(sigma_next^2 - (alpha_next / alpha_s)^2 sigma_s^2) z,   z ~ N(0, I),

i.e. deterministically to s, then fresh noise forward from s to t_next. gamma = 0 is the deterministic
trajectory (DDIM with the student's x0), gamma = 1 is LCM's multistep sampler (s = 0: x0, re-noised).
Times are process times (t = DDPM index + 1, 0 the clean data): ``TCDScheduler`` floors (1 - gamma) times
the next DDPM index instead, so our s is its index or one lower, and its last step lands on index 0
(abar = 0.99915 for SD) where ours lands on t = 0 (as ``LCMScheduler``'s returned x0 does); this is also
what makes gamma = 1 LCM's sampler exactly.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.process import DDPM, NoiseProcess, broadcast_to
from jaxdistill.diffusion.samplers import X0Fn
from jaxdistill.objectives.common import refuse_sample_plots
from jaxdistill.objectives.lcm import LCMObjective, check_solver_settings, ddim_indices, scheduler_config


@dataclasses.dataclass(frozen=True, kw_only=True)
class TCD:
    """Settings of trajectory consistency distillation (method ``tcd``). The teacher solver, guidance range,
    distance and target are LCM's defaults (``objectives.lcm.LCM``; TCD builds on LCM and its public code
    releases no training settings); ``gamma`` is the sampler's."""

    section: ClassVar[str] = "tcd"
    method: ClassVar[str] = "tcd"

    num_ddim_timesteps: int = 50  # N (TCDScheduler's original_inference_steps default), skipping k = T // N = 20
    w_min: float = 3.0  # our w = 1 + omega, LCM's omega in [2, 14]
    w_max: float = 15.0
    distance: str = "pseudo_huber"
    huber_c: float = 0.001
    target_ema: float = 0.0  # 0: the online student, stop-gradient (a LoRA student, as TCD's released LoRAs)
    init_from_teacher: bool = True  # the student starts as the teacher's UNet
    gamma: float = 0.3  # SSS stochasticity (TCDScheduler.step's eta default; the TCD README: "0.3 often yields good results")

    def __post_init__(self):
        check_solver_settings(self)
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1] (0: deterministic, 1: LCM's multistep sampler), got {self.gamma}")


def trajectory_step(process: NoiseProcess, x: Array, x0: Array, t: Array, s: Array) -> Array:
    """f(x, t, s) = (sigma_s / sigma_t) x + (alpha_s - alpha_t sigma_s / sigma_t) x0: DDIM t -> s, exactly x at s = t."""
    ratio = broadcast_to(process.sigma(s) / process.sigma(t), x)
    return ratio * x + (broadcast_to(process.alpha(s), x) - broadcast_to(process.alpha(t), x) * ratio) * x0


def sss_times(t_next: Array, gamma: float) -> Array:
    """SSS's intermediate time s = floor((1 - gamma) t_next)."""
    return jnp.floor((1.0 - gamma) * jnp.asarray(t_next, jnp.float32))


def strategic_stochastic_sampling(x0_fn: X0Fn, process: NoiseProcess, x: Array, times: Array, gamma: float, rng: Optional[Array]) -> Array:
    """SSS down the decreasing process times ``times`` (ending at 0), returning the last x (see the module
    docstring); step i draws its noise from ``fold_in(rng, i)``, as ``samplers``' consistency sampler."""
    if rng is None and gamma > 0:
        raise ValueError(f"strategic stochastic sampling with gamma={gamma} > 0 draws noise and needs rng")
    times = jnp.asarray(times, jnp.float32)

    def step(x, a):
        t, t_next, i = a
        s = sss_times(t_next, gamma)
        x_s = trajectory_step(process, x, x0_fn(x, t), t, s)
        if gamma == 0.0:  # s = t_next: no noise to add
            return x_s, None
        ratio = process.alpha(t_next) / process.alpha(s)
        scale = jnp.sqrt(jnp.maximum(process.sigma(t_next) ** 2 - (ratio * process.sigma(s)) ** 2, 0.0))
        return ratio * x_s + scale * jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype), None

    out, _ = jax.lax.scan(step, x, (times[:-1], times[1:], jnp.arange(times.shape[0] - 1)))
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class TCDObjective(LCMObjective):
    """TCD of a DDPM teacher with classifier-free guidance into the teacher's own network (module docstring);
    the student is the teacher's denoiser itself, read through ``trajectory_step``."""

    settings: TCD

    def f(self, params: PyTree, x: Array, t: Array, s: Array, cond: TextCondition, **kwargs) -> Array:
        """The student's trajectory consistency function f(x, t, s)."""
        return trajectory_step(self.process, x, self.student.x0(params, x, t, cond, **kwargs), t, s)

    def target_times(self, level: Array, rng: Array) -> Array:
        """s_m = max(tau_m - k, 0) + 1 (process time) for m uniform on {0, .., level}: tau_m - k = m k - 1."""
        skip = self.process.num_train_timesteps // self.settings.num_ddim_timesteps
        m = jax.random.randint(rng, level.shape, 0, level + 1)
        return jnp.maximum(m * skip - 1, 0).astype(jnp.float32) + 1.0

    def loss(self, params: PyTree, target_params: PyTree, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        pair = self.solver_pair(frozen["teacher"], batch, rng)
        s = self.target_times(pair.level, derive(rng, "trajectory"))
        rngs = {"dropout": derive(rng, "dropout")}
        target = jax.lax.stop_gradient(self.f(target_params, pair.x_end, pair.t_end, s, pair.cond, train=True, rngs=rngs))
        prediction = self.f(params, pair.x, pair.t, s, pair.cond, train=True, rngs=rngs)
        loss = jnp.mean(self.distance(prediction, target))
        return loss, {"loss": loss, "guidance": jnp.mean(pair.w), "target_time": jnp.mean(s)}

    @property
    def guidance_input(self) -> bool:
        """TCD's students read no w (the released TCD LoRAs are not w-conditioned)."""
        return False

    def diffusers_scheduler_config(self, teacher_config: dict) -> dict:
        """diffusers' ``TCDScheduler`` config of this sampler (its ``eta`` is our gamma, a ``step`` argument)."""
        return scheduler_config("TCDScheduler", teacher_config, self.settings.num_ddim_timesteps)

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        if cond is None:
            raise ValueError("the TCD student is text-conditional: generate needs the prompts' TextCondition (a t2i cache batch's cond)")
        params = trainable["student"].eval_params
        x0_fn = lambda x, t: self.student.x0(params, x, t, cond)  # noqa: E731
        return strategic_stochastic_sampling(x0_fn, self.process, noise, self.sampling_times(nfe), self.settings.gamma, rng)


def build(ctx, settings: TCD, objective_class: type = TCDObjective) -> tuple[TCDObjective, PyTree]:
    """The TCD objective (or a subclass's, ``objectives.segmented``): the student is the teacher's own network
    (a LoRA of it with a ``lora`` section)."""
    method = settings.method
    refuse_sample_plots(ctx.config, method)
    ctx.require_teacher_weights(settings, "init_from_teacher")
    teacher, teacher_params = ctx.teacher()
    if not isinstance(teacher.process, DDPM):
        raise ConfigError(f"{method} distils a discrete DDPM teacher (a Stable Diffusion folder: teacher.kind='diffusers'); this teacher's process is {type(teacher.process).__name__}")
    try:
        ddim_indices(teacher.process.num_train_timesteps, settings.num_ddim_timesteps)
    except ValueError as err:
        raise ConfigError(f"{method}: {err}") from err

    def init_fn(rng: Array, x: Array) -> PyTree:
        """float32 zeros of the teacher's tree, overlaid with the teacher's weights (``init_from_teacher``)."""
        return jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), teacher_params)

    fields = ctx.run_fields()
    fields.pop("guidance")  # the teacher's guidance is sampled per example
    objective = objective_class(settings=settings, student=teacher, student_init_fn=init_fn, teacher=teacher, **fields)
    return objective, {"teacher": teacher_params}
