"""Consistency Trajectory Models (Kim, Lai, Liao, Murata, Takida, Uesaka, He, Mitsufuji & Ermon 2024, ICLR,
"Consistency Trajectory Model: Learning Probability Flow ODE Trajectory of Diffusion"; official code sony/ctm).

CTM learns the whole PF-ODE flow map: an anytime-to-anytime jump G_theta(x_t, t, s) from time t to any s <= t.
In EDM's VE time (x_t = x_0 + t z) the paper writes

    G_theta(x_t, t, s) = (s / t) x_t + (1 - s / t) g_theta(x_t, t, s),

one Euler step of the ODE with the denoiser g_theta, an EDM-preconditioned network that also reads s (its
noise embedding ln(s) / 4 enters as the network's extra time input, ``num_times = 2``). On any other process
the same jump acts on the scaled variable x / alpha, which is DDIM t -> s with x0 = g_theta
(``objectives.tcd.trajectory_step``): G = (sigma_s / sigma_t) x + (alpha_s - alpha_t sigma_s / sigma_t) g.
G(x, t, t) = x exactly (the coefficients are 1 and 0), and G(x, t, 0) = g.

Soft consistency matching (paper eq. 6, Alg. 1; the code's defaults): on the N-level Karras grid t_0 = t_max >
... > t_{N-1} = t_min (rho = 7), a batch draws one k in 1..K with p(k) ∝ k (``heun_step_strategy='weighted'``),
and each example an index n uniform on 0..N-1-k, t = t_n, u = t_{n+k} and s = t_m, m uniform on n+k..N-1. Then

    estimate = G_{sg theta^-}( G_theta(x_t, t, s), s, t_min ),
    target   = G_{sg theta^-}( G_{sg theta}( Solver_phi(x_t, t -> u), u, s ), s, t_min ),
    L_CTM    = E d(estimate, target),

Solver_phi k Heun steps of the teacher's ODE along the grid; both sides are compared after the stop-gradient
EMA student theta^- (rate 0.999) maps them to t_min (the paper's "time 0": its code maps to sigma_min), the
gradient reaching theta through the inner jump of the estimate only. The paper's d is LPIPS (or a CNN/ViT
feature distance); here d is the library's squared L2 or pseudo-Huber (``distance``): LPIPS needs a download.

DSM auxiliary loss (paper eq. 7): denoising score matching through g at s = t,

    L_DSM = E lambda(sigma) ||g_theta(x_t, t, t) - x_0||^2 / d,   lambda = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2

(EDM's weighting, the code's ``karras_weight``), sigma from the code's ``halflognormal``: half of each batch
ln sigma ~ N(-1.2, 1.2^2), the other half the Karras map of u ~ U[0, 0.7] from sigma_max (large noise levels).
Its weight is adaptive (paper Sec. 4.3, after VQGAN): lambda_DSM = ||grad L_CTM|| / (||grad L_DSM|| + 1e-4),
clipped to [0, 1e4]. The paper's code takes the norms over the network's last layer; ours over every parameter
(the library's networks name their output layers differently), from the two terms' separate gradients
(``microbatch_grad`` of the parameters passed once per term), so the weighting costs no extra pass.

GAN option (paper eq. 8, ``gan_weight > 0``; the paper's best FIDs): a discriminator head (``DiscriminatorHead``)
on the frozen teacher's features of clean samples at the fixed noise level ``feature_sigma`` x sigma_data (ADD's
stand-in for a pretrained feature network; the paper's is StyleGAN-XL's projected discriminator on DeiT and
EfficientNet), hinge loss, real = data (``gan_real_free``), fake = the CTM estimate. It updates once per student
update (the code alternates, ``g_learning_period = 2``); the student's term -E D(fake) has the adaptive weight
clip(||grad L_CTM|| / (||grad L_GAN|| + 1e-4), 0.01, 10), switched on at ``gan_start_step``.

gamma-sampling (paper Alg. 2): on the nfe-step Karras grid t_0 = t_max > ... > t_nfe = t_min, each step jumps to
s_tilde = sqrt(1 - gamma^2) (s_{n+1} - s_min) + s_min (sigma ratios; the code's offset form of sqrt(1 - gamma^2)
t_{n+1}) and re-noises to t_{n+1}: x <- x + sqrt(s_{n+1}^2 - s_tilde^2) z on x / alpha (no noise after the last
jump). gamma = 0 is deterministic anytime-to-anytime jumping along the ODE, gamma = 1 the consistency models'
multistep sampler (jump to t_min, re-noise).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxdistill.core.conditioning import unconditional
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState, make_optimizer
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.predict import PRECONDITIONED
from jaxdistill.diffusion.process import NoiseProcess
from jaxdistill.diffusion.steps import karras_grid, karras_sigma, sigma_ratio_range
from jaxdistill.losses import discriminator_loss, generator_gan_loss, pseudo_huber, squared_l2
from jaxdistill.models.discriminator import DiscriminatorHead, apply_head
from jaxdistill.objectives.common import StudentDistillation, check_choice, microbatch_grad, teacher_passes
from jaxdistill.objectives.denoising import batch_labels
from jaxdistill.objectives.tcd import trajectory_step

DISTANCES = ("l2", "pseudo_huber")
SOLVERS = ("euler", "heun")
STEP_WEIGHTINGS = ("linear", "uniform")

JumpFn = Callable[[Array, Array, Array], Array]  # (x [B, ...], t [B], s [B]) -> G(x, t, s)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CTM:
    """Settings of CTM (paper Sec. 4-5 and App.; sony/ctm ``script_util.py`` defaults, CIFAR-10 values)."""

    section: ClassVar[str] = "ctm"
    method: ClassVar[str] = "ctm"

    num_scales: int = 18  # N, the Karras grid's levels (code start_scales: CIFAR-10 18, ImageNet-64 40)
    rho: float = 7.0
    max_solver_steps: int = 17  # K, teacher steps t -> u drawn from 1..K (code num_heun_step: 17; ImageNet-64 39)
    solver_step_weighting: str = "linear"  # p(k) ∝ k (code heun_step_strategy='weighted', multiplier 1) or "uniform"
    teacher_solver: str = "heun"  # the teacher's ODE solver (Heun, as EDM's sampler)
    target_ema: float = 0.999  # theta^- rate (code start_ema, target_ema_mode='fixed')
    distance: str = "l2"  # paper: LPIPS; here squared L2 or pseudo-Huber (c < 0: iCT's 0.00054 sqrt(d))
    huber_c: float = -1.0
    dsm_weight: float = 1.0  # multiplies lambda_DSM (code denoising_weight)
    adaptive_weight: bool = True  # lambda_DSM = ||grad L_CTM|| / ||grad L_DSM|| (code apply_adaptive_weight)
    dsm_p_mean: float = -1.2  # DSM noise: half ln sigma ~ N(-1.2, 1.2^2) (code LogNormal sampler) ...
    dsm_p_std: float = 1.2
    dsm_high_noise: float = 0.7  # ... half Karras(u), u ~ U[0, 0.7] from sigma_max (code diffusion_mult)
    gan_weight: float = 0.0  # the GAN term's weight; 0: off (code gan_training=False); the paper's best FIDs: 1.0
    gan_adaptive_weight: bool = True  # lambda_GAN = clip(||grad L_CTM|| / ||grad L_GAN||, 0.01, 10) (code d_apply_adaptive_weight)
    gan_start_step: int = 0  # code discriminator_start_itr
    head_lr: float = 2e-3  # discriminator learning rate (code d_lr)
    head_hidden: int = 256
    feature_sigma: float = 0.1  # the teacher features' noise level / sigma_data (ADD's stand-in discriminator backbone)
    gamma: float = 0.0  # gamma-sampling's stochasticity (the code's 'exact' sampler: 0)
    init_from_teacher: bool = True  # the student starts as the teacher (its s-embedding at zero)

    def __post_init__(self):
        check_choice("distance", self.distance, DISTANCES)
        check_choice("teacher_solver", self.teacher_solver, SOLVERS)
        check_choice("solver_step_weighting", self.solver_step_weighting, STEP_WEIGHTINGS)
        if self.num_scales < 2 or not 1 <= self.max_solver_steps <= self.num_scales - 1:
            raise ValueError(f"need num_scales >= 2 and 1 <= max_solver_steps <= num_scales - 1, got {self.num_scales}, {self.max_solver_steps}")
        if not 0.0 <= self.target_ema < 1.0:
            raise ValueError(f"target_ema must be in [0, 1), got {self.target_ema}")
        if self.dsm_weight < 0 or self.gan_weight < 0:
            raise ValueError(f"dsm_weight and gan_weight must be >= 0, got {self.dsm_weight}, {self.gan_weight}")
        if not 0.0 < self.dsm_high_noise <= 1.0:
            raise ValueError(f"dsm_high_noise must be in (0, 1], got {self.dsm_high_noise}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1] (0: deterministic jumps, 1: the consistency multistep sampler), got {self.gamma}")
        if self.gan_weight > 0 and self.feature_sigma <= 0:
            raise ValueError(f"feature_sigma must be > 0 (the discriminator features' noise level), got {self.feature_sigma}")


def solver_step_logits(max_steps: int, weighting: str) -> Array:
    """log p(k) for k = 1..K: p ∝ k ("linear") or uniform."""
    k = jnp.arange(1, max_steps + 1, dtype=jnp.float32)
    return jnp.log(k) if weighting == "linear" else jnp.zeros_like(k)


def grid_indices(rng: Array, n: int, num_scales: int, k: Array) -> tuple[Array, Array, Array]:
    """(i_t, i_u, i_s) per example: i_t ~ U{0..N-1-k}, i_u = i_t + k, i_s ~ U{i_u..N-1}."""
    i_t = jax.random.randint(derive(rng, "t"), (n,), 0, num_scales - k)
    i_u = i_t + k
    return i_t, i_u, jax.random.randint(derive(rng, "s"), (n,), i_u, num_scales)


def gamma_sampling(jump: JumpFn, process: NoiseProcess, x: Array, times: Sequence[float] | Array, gamma: float, rng: Optional[Array]) -> Array:
    """gamma-sampling (module docstring) down the decreasing ``times`` (t_0 > ... > t_n, t_n the smallest level):
    step i jumps t_i -> t(s_tilde) and, but for the last, re-noises to t_{i+1} with noise from fold_in(rng, i)."""
    if gamma > 0 and rng is None:
        raise ValueError(f"gamma-sampling with gamma={gamma} > 0 draws noise and needs rng")
    times = jnp.asarray(times, jnp.float32)
    n = times.shape[0] - 1
    s_end = process.sigma_ratio(times[-1])
    full = lambda t: jnp.full((x.shape[0],), t, jnp.float32)  # noqa: E731
    for i in range(n):
        t_next = times[i + 1]
        if gamma == 0.0:
            x = jump(x, full(times[i]), full(t_next))
            continue
        s_next = process.sigma_ratio(t_next)
        s_tilde = math.sqrt(1.0 - gamma**2) * (s_next - s_end) + s_end
        t_tilde = process.t_from_sigma_ratio(s_tilde)
        x = jump(x, full(times[i]), full(t_tilde))
        if i + 1 < n:
            z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
            scale = process.alpha(t_next) / process.alpha(t_tilde)
            x = scale * x + process.alpha(t_next) * jnp.sqrt(jnp.maximum(s_next**2 - s_tilde**2, 0.0)) * z
    return x


def adaptive_weight(grads_main: PyTree, grads_aux: PyTree, low: float, high: float) -> Array:
    """sg(clip(||grads_main|| / (||grads_aux|| + 1e-4), low, high)) (VQGAN's adaptive weight, CTM Sec. 4.3)."""
    ratio = optax.tree.norm(grads_main) / (optax.tree.norm(grads_aux) + 1e-4)
    return jax.lax.stop_gradient(jnp.clip(ratio, low, high))


@dataclasses.dataclass(frozen=True, kw_only=True)
class CTMObjective(StudentDistillation):
    """CTM of a teacher's PF-ODE into a student jump G(x, t, s) (``"student"``, ``num_times = 2``), with the EMA
    target theta^- (``"target"``) and, for ``gan_weight > 0``, a discriminator head (``"head"``)."""

    settings: CTM
    head: Optional[DiscriminatorHead] = None
    tx_head: Optional[optax.GradientTransformation] = None
    eval_nfes: Sequence[int] = (1, 2, 4)

    def __post_init__(self):
        if self.teacher is None:
            raise ValueError("ctm distils a teacher's ODE: it needs a teacher")
        if self.uses_gan and (self.head is None or self.tx_head is None):
            raise ValueError("ctm with gan_weight > 0 needs a discriminator head and its optimiser")

    # ------------------------------------------------------------------ basics
    @property
    def uses_gan(self) -> bool:
        return self.settings.gan_weight > 0

    @property
    def passes_per_sample(self) -> float:
        """Network passes per training sample and update: the estimate's two jumps forward and backward (4), the
        target's two jumps, the teacher's mean number of solver steps E[k] (two passes a Heun step, doubled under
        guidance), DSM forward and backward; with the GAN the fake's two jumps again, the teacher's features of
        fake (forward and backward) and, for the head, the fake's two jumps and the features of real and fake."""
        ks = range(1, self.settings.max_solver_steps + 1)
        mean_k = sum(k * k for k in ks) / sum(ks) if self.settings.solver_step_weighting == "linear" else (ks[-1] + 1) / 2
        per_step = (2.0 if self.settings.teacher_solver == "heun" else 1.0) * teacher_passes(self.guidance)
        passes = 4.0 + 2.0 + mean_k * per_step + 2.0
        return passes + (4.0 + 2.0 + 2.0 + 2.0 if self.uses_gan else 0.0)

    def levels(self) -> Array:
        """t_0 = t_max > ... > t_{N-1} = t_min: the N-level Karras grid (rho) of training."""
        return karras_grid(self.process, self.settings.num_scales - 1, rho=self.settings.rho, t_end=self.process.t_min)

    def sampling_times(self, nfe: int) -> Array:
        """nfe + 1 Karras times from t_max to t_min (the code's sampling grid; G never jumps below t_min)."""
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
        return karras_grid(self.process, nfe, rho=self.settings.rho, t_end=self.process.t_min)

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.initial_student(derive(rng, "student"), batch, frozen)
        trainable = {"student": NetState.create(params, self.tx), "target": jax.tree.map(jnp.copy, params)}
        if self.uses_gan:
            cond = batch_labels(batch, self.num_classes)
            head_params = self.head.init(derive(rng, "head"), self.features(frozen, batch["x"], cond), cond)
            trainable["head"] = NetState.create(head_params, self.tx_head, use_ema=False)
        return trainable

    # -------------------------------------------------------------- the jump G
    def time_input(self, s: Array) -> Array:
        """The network's input for s, as the denoiser feeds t: EDM's c_noise = ln(sigma_ratio(s)) / 4 for
        preconditioned kinds, else s itself."""
        if self.student.prediction in PRECONDITIONED:
            return jnp.log(self.process.sigma_ratio(s)) / 4.0
        return s

    def g(self, params: PyTree, x: Array, t: Array, s: Array, cond: Optional[Array], **kwargs) -> Array:
        """g_theta(x_t, t, s): the network's x0 prediction at t with s as extra input."""
        return self.student.x0(params, x, t, cond, extra=self.time_input(s), **kwargs)

    def jump(self, params: PyTree, cond: Optional[Array], **kwargs) -> JumpFn:
        """G_theta(x, t, s) = trajectory_step(x, g_theta(x, t, s), t, s); exactly x at s = t."""
        return lambda x, t, s: trajectory_step(self.process, x, self.g(params, x, t, s, cond, **kwargs), t, s)

    # ------------------------------------------------------------------ pairs
    def teacher_solve(self, teacher_params: PyTree, x: Array, i_t: Array, k: Array, cond: Optional[Array]) -> Array:
        """k teacher ODE steps along the training grid from level i_t (per example) to i_t + k."""
        levels = self.levels()
        guidance = self.guidance if cond is not None else None
        velocity = lambda y, tt: self.teacher.velocity(teacher_params, y, tt, cond, guidance=guidance)  # noqa: E731
        step = samplers.heun_step if self.settings.teacher_solver == "heun" else samplers.euler_step
        return jax.lax.fori_loop(0, k, lambda j, y: step(velocity, y, levels[i_t + j], levels[i_t + j + 1]), x)

    def solver_steps(self, rng: Array) -> Array:
        """k for the whole batch (the code draws one per update): p(k) ∝ k on 1..K, or uniform."""
        logits = solver_step_logits(self.settings.max_solver_steps, self.settings.solver_step_weighting)
        return jax.random.categorical(rng, logits) + 1

    def distance(self, a: Array, b: Array) -> Array:
        """Per-sample d(a, b), shape [B]."""
        if self.settings.distance == "l2":
            return squared_l2(a, b)
        c = 0.00054 * math.sqrt(math.prod(self.event_shape)) if self.settings.huber_c < 0 else self.settings.huber_c
        return pseudo_huber(a, b, c)

    # ------------------------------------------------------------------ losses
    def ctm_estimate(self, params: PyTree, target_params: PyTree, x_t: Array, t: Array, s: Array, cond, rngs) -> Array:
        """G_{sg theta^-}(G_theta(x_t, t, s), s, t_min): differentiable in ``params`` through the inner jump."""
        inner = self.jump(params, cond, train=True, rngs=rngs)(x_t, t, s)
        t_min = jnp.full_like(s, self.process.t_min)
        return self.jump(jax.lax.stop_gradient(target_params), cond, train=True, rngs=rngs)(inner, s, t_min)

    def ctm_target(self, params: PyTree, target_params: PyTree, x_u: Array, u: Array, s: Array, cond, rngs) -> Array:
        """sg[G_{theta^-}(G_{theta}(x_u, u, s), s, t_min)], x_u the teacher's solution at u."""
        inner = self.jump(params, cond, train=True, rngs=rngs)(x_u, u, s)
        t_min = jnp.full_like(s, self.process.t_min)
        return jax.lax.stop_gradient(self.jump(target_params, cond, train=True, rngs=rngs)(inner, s, t_min))

    def draw(self, batch: Batch, rng: Array, k: Array) -> tuple[Array, Array, Array, Array, Array]:
        """(x_t, i_t, i_u, i_s, t): the grid levels of each example and its noisy point at t = t_{i_t}."""
        x0 = batch["x"]
        i_t, i_u, i_s = grid_indices(derive(rng, "levels"), x0.shape[0], self.settings.num_scales, k)
        t = self.levels()[i_t]
        return self.process.add_noise(x0, jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype), t), i_t, i_u, i_s, t

    def estimate(self, params: PyTree, target_params: PyTree, batch: Batch, rng: Array, k: Array) -> Array:
        """The CTM estimate of the draw ``rng`` makes (the GAN term's fake), differentiable in ``params``."""
        x_t, _, _, i_s, t = self.draw(batch, rng, k)
        rngs = {"dropout": derive(rng, "dropout")}
        return self.ctm_estimate(params, target_params, x_t, t, self.levels()[i_s], batch_labels(batch, self.num_classes), rngs)

    def ctm_loss(self, params: PyTree, target_params: PyTree, frozen: PyTree, batch: Batch, rng: Array, k: Array) -> Array:
        """L_CTM (module docstring)."""
        cond = batch_labels(batch, self.num_classes)
        levels = self.levels()
        x_t, i_t, i_u, i_s, t = self.draw(batch, rng, k)
        u, s = levels[i_u], levels[i_s]
        x_u = jax.lax.stop_gradient(self.teacher_solve(frozen["teacher"], x_t, i_t, k, cond))
        rngs = {"dropout": derive(rng, "dropout")}
        estimate = self.ctm_estimate(params, target_params, x_t, t, s, cond, rngs)
        target = self.ctm_target(jax.lax.stop_gradient(params), target_params, x_u, u, s, cond, rngs)
        return jnp.mean(self.distance(estimate, target))

    def dsm_sigmas(self, rng: Array, n: int) -> Array:
        """The code's ``halflognormal``: n // 2 draws ln sigma ~ N(p_mean, p_std^2), the rest Karras(u), u ~ U[0, 0.7]."""
        s_min, s_max = sigma_ratio_range(self.process)
        half = n // 2
        lognormal = jnp.exp(self.settings.dsm_p_mean + self.settings.dsm_p_std * jax.random.normal(derive(rng, "lognormal"), (half,)))
        u = jax.random.uniform(derive(rng, "uniform"), (n - half,), maxval=self.settings.dsm_high_noise)
        return jnp.concatenate([lognormal, karras_sigma(u, s_max, s_min, self.settings.rho)])

    def dsm_loss(self, params: PyTree, batch: Batch, rng: Array) -> Array:
        """L_DSM = E lambda(sigma) ||g_theta(x_t, t, t) - x0||^2 / d with EDM's lambda (module docstring)."""
        x0 = batch["x"]
        cond = batch_labels(batch, self.num_classes)
        sigma = self.dsm_sigmas(derive(rng, "sigma"), x0.shape[0])
        t = self.process.t_from_sigma_ratio(sigma)
        x_t = self.process.add_noise(x0, jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype), t)
        denoised = self.g(params, x_t, t, t, cond, train=True, rngs={"dropout": derive(rng, "dropout")})
        sd2 = self.student.sigma_data**2
        weight = (sigma**2 + sd2) / (sigma**2 * sd2)
        return jnp.mean(weight * squared_l2(denoised, x0))

    # --------------------------------------------------------------------- GAN
    def features(self, frozen: PyTree, x: Array, cond: Optional[Array]) -> list[Array]:
        """The frozen teacher's unconditional features of clean samples at feature_sigma x sigma_data."""
        with jax.ensure_compile_time_eval():
            t = float(self.process.t_from_sigma_ratio(self.settings.feature_sigma * self.student.sigma_data))
        return self.teacher.features(frozen["teacher"], x, jnp.full((x.shape[0],), t, jnp.float32), unconditional(cond))

    def logits(self, head_params: PyTree, frozen: PyTree, x: Array, cond: Optional[Array]) -> Array:
        return apply_head(self.head, head_params, self.features(frozen, x, cond), cond)

    def head_update(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, k: Array) -> tuple[Trainable, Metrics]:
        """One hinge-loss update of the head: data against stop-gradient CTM estimates."""
        cond = batch_labels(batch, self.num_classes)
        fake = jax.lax.stop_gradient(self.estimate(trainable["student"].params, trainable["target"], batch, rng, k))

        def loss(head_params):
            real_logits, fake_logits = self.logits(head_params, frozen, batch["x"], cond), self.logits(head_params, frozen, fake, cond)
            value = discriminator_loss(real_logits, fake_logits, "hinge")
            return value, {"disc_loss": value, "logit_real": jnp.mean(real_logits), "logit_fake": jnp.mean(fake_logits)}

        grads, metrics = jax.grad(loss, has_aux=True)(trainable["head"].params)
        head, opt_metrics = trainable["head"].apply_gradients(grads)
        return {**trainable, "head": head}, {**metrics, "head_grad_norm": opt_metrics["grad_norm"]}

    # -------------------------------------------------------------------- step
    def term_losses(self, params: tuple, target_params: PyTree, head_params: PyTree, frozen: PyTree, batch: Batch, rng: Array, k: Array) -> tuple[Array, Metrics]:
        """L_CTM(params[0]) + L_DSM(params[1]) (+ L_GAN(params[2])): one copy of the parameters per term, so the
        gradient w.r.t. the tuple holds each term's own gradient (for the adaptive weights)."""
        ctm = self.ctm_loss(params[0], target_params, frozen, batch, derive(rng, "ctm"), k)
        dsm = self.dsm_loss(params[1], batch, derive(rng, "dsm"))
        total, metrics = ctm + dsm, {"ctm_loss": ctm, "dsm_loss": dsm}
        if self.uses_gan:  # the fake is the estimate again, differentiable in the GAN term's copy
            fake = self.estimate(params[2], target_params, batch, derive(rng, "ctm"), k)
            gan = generator_gan_loss(self.logits(head_params, frozen, fake, batch_labels(batch, self.num_classes)), "hinge")
            total, metrics = total + gan, {**metrics, "gan_loss": gan}
        return total, metrics

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        k = self.solver_steps(derive(rng, "solver_steps"))
        metrics: Metrics = {}
        if self.uses_gan:
            trainable, metrics = self.head_update(trainable, frozen, batch, derive(rng, "head"), k)
        state, target_params = trainable["student"], trainable["target"]
        head_params = jax.lax.stop_gradient(trainable["head"].params) if self.uses_gan else None
        copies = (state.params,) * (3 if self.uses_gan else 2)
        loss = lambda params, part, key: self.term_losses(params, target_params, head_params, frozen, part, key, k)  # noqa: E731
        grads, term_metrics = microbatch_grad(loss, copies, batch, derive(rng, "student"), self.microbatches)
        lam_dsm = self.settings.dsm_weight * (adaptive_weight(grads[0], grads[1], 0.0, 1e4) if self.settings.adaptive_weight else 1.0)
        total = jax.tree.map(lambda a, b: a + lam_dsm * b, grads[0], grads[1])
        loss_value = term_metrics["ctm_loss"] + lam_dsm * term_metrics["dsm_loss"]
        metrics = {**metrics, **term_metrics, "dsm_weight": jnp.asarray(lam_dsm, jnp.float32), "solver_steps": k.astype(jnp.float32)}
        if self.uses_gan:
            lam_gan = adaptive_weight(grads[0], grads[2], 0.01, 10.0) if self.settings.gan_adaptive_weight else 1.0
            lam_gan = jnp.where(step >= self.settings.gan_start_step, self.settings.gan_weight * lam_gan, 0.0)
            total = jax.tree.map(lambda a, b: a + lam_gan * b, total, grads[2])
            loss_value = loss_value + lam_gan * term_metrics["gan_loss"]
            metrics["gan_weight"] = lam_gan
        state, opt_metrics = state.apply_gradients(total, self.ema_decay)
        mu = self.settings.target_ema
        target = jax.tree.map(lambda p_t, p: mu * p_t + (1.0 - mu) * p, target_params, state.params)
        return {**trainable, "student": state, "target": target}, {**metrics, "loss": loss_value, **opt_metrics}

    # ---------------------------------------------------------------- sampling
    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        """gamma-sampling with the EMA student's jumps on ``sampling_times(nfe)``."""
        jump = self.jump(trainable["student"].eval_params, cond)
        return gamma_sampling(jump, self.process, noise, self.sampling_times(nfe), self.settings.gamma, rng)


def build(ctx, settings: CTM) -> tuple[CTMObjective, PyTree]:
    """The CTM objective of ``settings``: the run's network with a second time input, the teacher, and the
    discriminator head for ``gan_weight > 0``."""
    config = ctx.config
    ctx.require_teacher_weights(settings, "init_from_teacher")
    teacher, teacher_params = ctx.teacher()
    student, init_fn = ctx.network(teacher.process, config.prediction, num_times=2)
    head, tx_head = None, None
    if settings.gan_weight > 0:
        head = DiscriminatorHead(hidden=settings.head_hidden, num_classes=ctx.num_classes)
        optim = config.optim.copy_and_resolve_references()
        optim.lr = settings.head_lr
        tx_head = make_optimizer(optim)
    try:
        objective = CTMObjective(settings=settings, student=student, student_init_fn=init_fn, teacher=teacher, head=head, tx_head=tx_head, **ctx.run_fields())
    except ValueError as err:
        raise ConfigError(f"ctm: {err}") from err
    return objective, {"teacher": teacher_params}
