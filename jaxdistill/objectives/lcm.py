"""Latent Consistency Distillation (Luo, Tan, Huang, Li & Zhao 2023, "Latent Consistency Models:
Synthesizing High-Resolution Images with Few-Step Inference", Alg. 1) and LCM-LoRA (Luo, Tan,
Patil, Gu, von Platen, Passos, Huang, Li & Zhao 2023, "LCM-LoRA: A Universal Stable-Diffusion
Acceleration Module"), in a discrete DDPM teacher's latent space.

Teacher grid: the T = 1000 DDPM indices are skipped k = T // N at a time (N = ``num_ddim_timesteps``,
LCM: N = 50, k = 20): tau_n = (n + 1) k - 1, n = 0..N-1 (diffusers' index convention; the process time
is t = tau + 1, ``DDPM``). A training sample draws n uniformly, z ~ N(0, I) and

    x      = sqrt(abar(tau_n)) x_0 + sqrt(1 - abar(tau_n)) z,           the end index tau_e = max(tau_n - k, 0),
    x0_w   = x0_u + w (x0_c - x0_u)                                      (teacher CFG at tau_n, w ~ U[w_min, w_max]),
    x_e    = sqrt(abar(tau_e)) x0_w + sqrt(1 - abar(tau_e)) eps(x0_w)    (one DDIM step tau_n -> tau_e, eps affine in x0),
    L      = d( f_theta(x, tau_n), f_target(x_e, tau_e) )

with the consistency parameterisation on top of the network's own x0 prediction F:

    f(x, tau) = c_skip(tau) x + c_out(tau) F(x, tau),
    c_skip = sd^2 / ((s tau)^2 + sd^2),  c_out = s tau / sqrt((s tau)^2 + sd^2)   (sd = 0.5, s = 10),

so f(x, tau = 0) = x exactly: the boundary at the least noisy trained step (process time t_min = 1).

Guidance convention: LCM writes the guided teacher as (1 + omega) x0_c - omega x0_u, omega in [2, 14]
(LCM paper); ours (``diffusion.denoiser``) is x0_u + w (x0_c - x0_u), so w = 1 + omega, [3, 15].
diffusers' LCM scripts (``examples/consistency_distillation``) compute x0_c + w' (x0_c - x0_u) with
w' ~ U[5, 15] by default (LoRA scripts), i.e. our w = 1 + w' ~ U[6, 16]. Configs hold our w.

Distance: ``"pseudo_huber"`` is the mean over every latent element of sqrt((a - b)^2 + c^2) - c with
c = 0.001 (the diffusers LCM scripts' ``--loss_type=huber``; elementwise, unlike iCT's norm form in
``losses.pseudo_huber``); ``"l2"`` the mean squared error.

Target: LCM keeps an EMA copy of the student (rate 0.95 in diffusers' full-model script); LCM-LoRA
uses the online student with a stopped gradient ("no separate target network", diffusers' LoRA
scripts), ``target_ema = 0``.

Guidance input: LCM's student is w-conditioned, f(x, tau, w): ``guidance_embedding_dim`` > 0 gives
the teacher's UNet LCM's guidance embedding (``models.hf.unet``: sinusoidal features of w - 1,
projected by a zero-initialised ``time_cond_proj``, so the student starts as the teacher) and feeds
it the sampled w; sampling then uses ``eval.guidance`` (default ``DEFAULT_GUIDANCE``, diffusers'
LCM pipeline's 8.5). The LCM-LoRA student (``guidance_embedding_dim = 0``) sees no w: it learns the
teacher guided at weights drawn from the range, as diffusers' LoRA scripts do. The embedding adds
a parameter the teacher lacks, so it trains the full network, not a LoRA.

Sampling: LCM's multistep sampler (diffusers' ``LCMScheduler``): ``nfe`` indices picked from the N
training ones, tau_n for n = N - 1 - floor(i N / nfe), i = 0..nfe-1; at each, x0 = f(x, tau) and
the next point is x0 re-noised to the next index (Song et al. 2023, Alg. 1).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.predict import to_x0
from jaxdistill.diffusion.process import DDPM, broadcast_to
from jaxdistill.losses import mean_pseudo_huber, squared_l2
from jaxdistill.models.hf.teacher import load_sd_teacher
from jaxdistill.models.hf.unet import unet_network
from jaxdistill.models.precision import with_compute_dtype
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad, refuse_sample_plots, teacher_passes
from jaxdistill.objectives.denoising import batch_labels
from jaxdistill.objectives.progressive import ddim_step

DISTANCES = ("pseudo_huber", "l2")
DEFAULT_GUIDANCE = 8.5  # diffusers' LatentConsistencyModelPipeline guidance_scale (its w embedded as 8.5 - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LCM:
    """Settings of latent consistency distillation (method ``lcm``); defaults: the LCM paper and
    diffusers' LCM-LoRA script (``train_lcm_distill_lora_sd_wds.py``)."""

    section: ClassVar[str] = "lcm"
    method: ClassVar[str] = "lcm"

    num_ddim_timesteps: int = 50  # N; skipping interval k = T // N = 20 (LCM paper's k; diffusers script default N)
    w_min: float = 3.0  # our w = 1 + omega, omega in [2, 14] (LCM paper)
    w_max: float = 15.0
    distance: str = "pseudo_huber"
    huber_c: float = 0.001  # the diffusers LCM scripts' default
    sigma_data: float = 0.5  # boundary scalings (diffusers LCMScheduler)
    timestep_scaling: float = 10.0
    target_ema: float = 0.0  # 0: the online student, stop-gradient (LCM-LoRA); LCM's full script: 0.95
    init_from_teacher: bool = True  # the student starts as the teacher's UNet
    guidance_embedding_dim: int = 0  # 0: no w input (LCM-LoRA); LCM: 256 (diffusers' full script, --unet_time_cond_proj_dim)

    def __post_init__(self):
        check_solver_settings(self)
        if self.guidance_embedding_dim < 0:
            raise ValueError(f"guidance_embedding_dim must be >= 0 (0: no guidance input), got {self.guidance_embedding_dim}")
        if self.sigma_data <= 0 or self.timestep_scaling <= 0:
            raise ValueError(f"need sigma_data > 0 and timestep_scaling > 0, got {self.sigma_data}, {self.timestep_scaling}")


def check_solver_settings(settings) -> None:
    """The checks every guided skipping-step distillation's settings share (LCM, TCD): a known distance,
    N >= 1, 0 <= w_min <= w_max, a target EMA rate in [0, 1) and huber_c >= 0."""
    check_choice("distance", settings.distance, DISTANCES)
    if settings.num_ddim_timesteps < 1:
        raise ValueError(f"num_ddim_timesteps must be >= 1, got {settings.num_ddim_timesteps}")
    if not 0.0 <= settings.w_min <= settings.w_max:
        raise ValueError(f"need 0 <= w_min <= w_max, got [{settings.w_min}, {settings.w_max}]")
    if not 0.0 <= settings.target_ema < 1.0:
        raise ValueError(f"target_ema must be in [0, 1) (0: no target network), got {settings.target_ema}")
    if settings.huber_c < 0:
        raise ValueError(f"huber_c must be >= 0, got {settings.huber_c}")


def ddim_indices(num_train_timesteps: int, n: int) -> np.ndarray:
    """The N teacher-solver indices tau_n = (n + 1) k - 1, k = T // N, n = 0..N-1 (increasing, diffusers' DDIMSolver)."""
    if not 1 <= n <= num_train_timesteps:
        raise ValueError(f"num_ddim_timesteps={n} must be in [1, {num_train_timesteps}] (num_train_timesteps)")
    return np.arange(1, n + 1) * (num_train_timesteps // n) - 1


def boundary_scalings(index: Array, sigma_data: float, scaling: float) -> tuple[Array, Array]:
    """(c_skip, c_out) at DDPM index tau: sd^2 / ((s tau)^2 + sd^2) and s tau / sqrt((s tau)^2 + sd^2)."""
    st = scaling * jnp.asarray(index, jnp.float32)
    return sigma_data**2 / (st**2 + sigma_data**2), st / jnp.sqrt(st**2 + sigma_data**2)


def consistency_denoiser(teacher: Denoiser, sigma_data: float = 0.5, scaling: float = 10.0) -> Denoiser:
    """The teacher's network as LCM's consistency function, an ``"x0"`` denoiser of the same DDPM process:
    f(x, t) = c_skip(tau) x + c_out(tau) F(x, t), F the network's x0 prediction and tau = t - 1. A
    network with a guidance input takes t as [B, 2] (time, w; ``Denoiser`` ``extra``): time is column 0."""
    process = teacher.process
    if not isinstance(process, DDPM):
        raise ValueError(f"lcm distils a discrete DDPM teacher (a Stable Diffusion folder: teacher.kind='diffusers'); this teacher's process is {type(process).__name__}")

    def apply(params, x, t, cond, **kwargs):
        time = t if t.ndim == 1 else t[:, 0]
        x0 = to_x0(teacher.apply_fn(params, x, t, cond, **kwargs), teacher.prediction, x, time, process, sigma_data=teacher.sigma_data)
        c_skip, c_out = boundary_scalings(process.timestep(time), sigma_data, scaling)
        return broadcast_to(c_skip, x) * x + broadcast_to(c_out, x) * x0

    return Denoiser(apply, process, "x0")


class SolverPair(NamedTuple):
    """One training draw: the prompts' condition, the solver level n [B], the process times of tau_n and
    tau_e [B], the noisy latent x at tau_n, the teacher's guided DDIM step x_e at tau_e and the weights w [B]."""

    cond: TextCondition
    level: Array
    t: Array
    x: Array
    t_end: Array
    x_end: Array
    w: Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class LCMObjective(StudentDistillation):
    """LCD of a DDPM teacher with classifier-free guidance into the teacher's own network (see the module docstring)."""

    settings: LCM
    teacher: Denoiser
    eval_nfes: Sequence[int] = (1, 2, 4)
    guidance: Optional[float] = None  # the w-conditioned student's sampling w (None: DEFAULT_GUIDANCE)

    @property
    def indices(self) -> np.ndarray:
        return ddim_indices(self.process.num_train_timesteps, self.settings.num_ddim_timesteps)

    @property
    def passes_per_sample(self) -> float:
        """Student forward and backward, the target's forward, and the guided teacher's two passes."""
        return 3.0 + teacher_passes(guidance=1.0)

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(rng, batch, frozen)
        trainable = {"student": NetState.create(params, self.tx)}
        if self.settings.target_ema > 0:
            trainable["target"] = jax.tree.map(jnp.copy, params)
        return trainable

    def f(self, params: PyTree, x: Array, t: Array, cond: TextCondition, w: Array, **kwargs) -> Array:
        """The student's consistency function, given w where it takes a guidance input."""
        extra = w if self.settings.guidance_embedding_dim else None
        return self.student.x0(params, x, t, cond, extra=extra, **kwargs)

    def distance(self, a: Array, b: Array) -> Array:
        """Per-sample distance, shape [B]."""
        return mean_pseudo_huber(a, b, self.settings.huber_c) if self.settings.distance == "pseudo_huber" else squared_l2(a, b)

    def teacher_target_point(self, teacher_params: PyTree, x: Array, t: Array, t_end: Array, cond: TextCondition, w: Array, rng: Optional[Array] = None) -> Array:
        """x_e: one DDIM step t -> t_end with the guided teacher's x0_u + w (x0_c - x0_u). ``rng`` is the key of
        a stochastic solver's noise (SCott, ``objectives.segmented``); deterministic DDIM draws none."""
        x0 = self.teacher.x0(teacher_params, x, t, cond, guidance=w)
        return ddim_step(self.process, x, x0, t, t_end)

    def solver_pair(self, teacher_params: PyTree, batch: Batch, rng: Array) -> SolverPair:
        """Draw n, w and z per example; the noisy point x at tau_n and the guided teacher's DDIM step x_e to tau_e."""
        x0 = batch["x"]
        n = x0.shape[0]
        cond = batch_labels(batch, self.num_classes)
        skip = self.process.num_train_timesteps // self.settings.num_ddim_timesteps
        level = jax.random.randint(derive(rng, "levels"), (n,), 0, self.settings.num_ddim_timesteps)
        tau = jnp.asarray(self.indices, jnp.float32)[level]
        t, t_end = tau + 1.0, jnp.maximum(tau - skip, 0.0) + 1.0  # process times of tau_n and tau_e
        w = jax.random.uniform(derive(rng, "guidance"), (n,), jnp.float32, self.settings.w_min, self.settings.w_max)
        z = jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype)
        x = self.process.add_noise(x0, z, t)
        x_end = jax.lax.stop_gradient(self.teacher_target_point(teacher_params, x, t, t_end, cond, w, rng=derive(rng, "solver")))
        return SolverPair(cond, level, t, x, t_end, x_end, w)

    def loss(self, params: PyTree, target_params: PyTree, frozen: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        pair = self.solver_pair(frozen["teacher"], batch, rng)
        cond, w = pair.cond, pair.w
        rngs = {"dropout": derive(rng, "dropout")}
        target = jax.lax.stop_gradient(self.f(target_params, pair.x_end, pair.t_end, cond, w, train=True, rngs=rngs))
        prediction = self.f(params, pair.x, pair.t, cond, w, train=True, rngs=rngs)
        loss = jnp.mean(self.distance(prediction, target))
        return loss, {"loss": loss, "guidance": jnp.mean(w)}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        state = trainable["student"]
        ema_target = self.settings.target_ema > 0
        target_params = trainable["target"] if ema_target else jax.lax.stop_gradient(state.params)
        loss = lambda params, part, key: self.loss(params, target_params, frozen, part, key)  # noqa: E731
        grads, metrics = microbatch_grad(loss, state.params, batch, rng, self.microbatches)
        state, opt_metrics = state.apply_gradients(grads, self.ema_decay)
        out = {"student": state}
        if ema_target:
            mu = self.settings.target_ema
            out["target"] = jax.tree.map(lambda p_t, p: mu * p_t + (1.0 - mu) * p, trainable["target"], state.params)
        return out, {**metrics, **opt_metrics}

    def sampling_times(self, nfe: int) -> Array:
        """nfe + 1 process times: LCMScheduler's nfe indices + 1, then 0."""
        n = self.settings.num_ddim_timesteps
        if not 1 <= nfe <= n:
            raise ValueError(f"the LCM sampler takes 1 to num_ddim_timesteps={n} steps, got nfe={nfe}")
        picked = self.indices[::-1][np.floor(np.arange(nfe) * n / nfe).astype(int)]
        return jnp.asarray(np.append(picked + 1.0, 0.0), jnp.float32)

    @property
    def guidance_input(self) -> bool:
        """Whether the student reads w (LCM's guidance embedding); its sampling w is then ``guidance``."""
        return bool(self.settings.guidance_embedding_dim)

    def diffusers_scheduler_config(self, teacher_config: dict) -> dict:
        """diffusers' ``LCMScheduler`` config of this sampler: the teacher scheduler's DDPM schedule and
        prediction type, ``original_inference_steps`` = N and ``timestep_scaling`` = s (its timesteps
        for ``num_inference_steps = nfe`` are ``sampling_times(nfe)[:-1] - 1``); LCMScheduler fixes
        sigma_data = 0.5."""
        if self.settings.sigma_data != 0.5:
            raise ValueError(f"lcm.sigma_data={self.settings.sigma_data}: diffusers' LCMScheduler fixes sigma_data = 0.5")
        return {**scheduler_config("LCMScheduler", teacher_config, self.settings.num_ddim_timesteps), "timestep_scaling": self.settings.timestep_scaling}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        if cond is None:
            raise ValueError("the LCM student is text-conditional: generate needs the prompts' TextCondition (a t2i cache batch's cond)")
        params = trainable["student"].eval_params
        w = jnp.full((noise.shape[0],), DEFAULT_GUIDANCE if self.guidance is None else self.guidance, jnp.float32)
        x0_fn = lambda x, t: self.f(params, x, t, cond, w)  # noqa: E731
        return samplers.sample(x0_fn, self.process, noise, self.sampling_times(nfe), "consistency", rng=rng)


def scheduler_config(class_name: str, teacher_config: dict, num_ddim_timesteps: int) -> dict:
    """A diffusers consistency scheduler's config (``LCMScheduler``, ``TCDScheduler``) on the teacher
    scheduler's DDPM schedule and prediction type, with ``original_inference_steps`` = N."""
    kept = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "set_alpha_to_one")
    return {
        "_class_name": class_name, **{k: teacher_config[k] for k in kept if k in teacher_config},
        "original_inference_steps": num_ddim_timesteps, "timestep_spacing": "leading", "steps_offset": 0,
        "clip_sample": False, "rescale_betas_zero_snr": False,
    }


def build(ctx, settings: LCM, objective_class: type = LCMObjective) -> tuple[LCMObjective, PyTree]:
    """The LCD objective (or a subclass's, ``objectives.segmented``): the student is the teacher's own network in
    LCM's parameterisation."""
    config = ctx.config
    refuse_sample_plots(config, settings.method)
    ctx.require_teacher_weights(settings, "init_from_teacher")
    teacher, teacher_params = ctx.teacher()
    network, abstract = teacher, lambda rng, x: teacher_params  # noqa: E731
    if settings.guidance_embedding_dim:
        network, abstract = guidance_network(config, settings.guidance_embedding_dim)
    try:
        student = consistency_denoiser(network, settings.sigma_data, settings.timestep_scaling)
        ddim_indices(teacher.process.num_train_timesteps, settings.num_ddim_timesteps)
    except ValueError as err:
        raise ConfigError(f"{settings.method}: {err}") from err

    def init_fn(rng: Array, x: Array) -> PyTree:
        """float32 zeros of the student's tree, overlaid with the teacher's weights (``init_from_teacher``)."""
        return jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), jax.eval_shape(abstract, rng, x))

    fields = ctx.run_fields()
    fields.pop("guidance")  # the teacher's guidance is sampled per example; eval.guidance is the student's sampling w
    guidance = None if config.eval.guidance is None else float(config.eval.guidance)
    objective = objective_class(settings=settings, student=student, student_init_fn=init_fn, teacher=teacher, guidance=guidance, **fields)
    return objective, {"teacher": teacher_params}


def guidance_network(config, dim: int) -> tuple[Denoiser, Callable]:
    """(the Stable Diffusion folder's UNet with LCM's guidance embedding of ``dim`` features as a
    denoiser, its init function): its tree is the teacher's plus a ``time_cond_proj`` kernel."""
    if config.teacher.kind != "diffusers":
        raise ConfigError(f"lcm.guidance_embedding_dim={dim} adds LCM's guidance embedding to a Stable Diffusion UNet: it needs teacher.kind='diffusers', not {config.teacher.kind!r}")
    sd = load_sd_teacher(config.teacher.path, remat=bool(config.network.get("remat", False)))
    if sd.network.module.time_cond_proj_dim:
        raise ConfigError(f"teacher.path={config.teacher.path!r} already has a guidance embedding (time_cond_proj_dim): it is a distilled LCM, not a teacher")
    net = sd.network
    network = unet_network(net.module.unet, net.context_length, net.pooled_dim, dim, net.module.remat)
    denoiser = dataclasses.replace(sd, network=network).denoiser()
    return dataclasses.replace(denoiser, apply_fn=with_compute_dtype(denoiser.apply_fn, config.precision.compute)), network.init
