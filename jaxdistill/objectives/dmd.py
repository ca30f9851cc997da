"""Distribution matching through the teacher-minus-critic score difference: VSD /
Diff-Instruct, DMD, DMD2 and f-distill.

All four train a generator G so that its noised samples' distribution p_g,t matches the
teacher's p_t at every noise level, using the gradient of KL(p_g,t || p_t):

    grad_theta = E_{t, z, eps} w(t) (s_F(x_t, t) - s_T(x_t, t)) d x_t / d theta,
    x_t = alpha_t G_theta(z) + sigma_t eps,

where s_T is the frozen teacher's score and s_F the score of a critic ("fake score") network
fitted by denoising score matching to stop-gradient generator samples. With x0-predictions
D, s = (alpha D - x_t) / sigma^2, so w(t) alpha_t (s_F - s_T) = w(t) alpha_t^2 / sigma_t^2 (D_F - D_T).
We implement the gradient through a stop-gradient pseudo-target,

    L_G = 1/2 mean || x_g - stopgrad(x_g - g) ||^2,   g = h (D_F - D_T) / n(x_g),

whose gradient with respect to x_g is g / d (d = event size), so the generator step follows
exactly the score-difference direction. Modes:

* ``vsd`` — Variational Score Distillation (Wang et al. 2023, "ProlificDreamer"; Luo et al.
  2023, "Diff-Instruct"; SwiftBrush, Nguyen & Tran 2024): n = 1, h = 1, i.e. the weighting
  w(t) = sigma_t^2 / alpha_t^2 that turns the score difference into the x0-space difference
  D_F - D_T.
* ``dmd`` — Distribution Matching Distillation (Yin et al. 2024, CVPR): g normalised per sample
  by n = mean_d |x_g - D_T(x_t)| (their w_t), plus a regression loss
  lambda_reg || G(z_ref) - ODE_T(z_ref) ||^2 on a fixed set of (noise, teacher ODE output) pairs
  built once (paper: LPIPS with lambda_reg = 0.25; we use L2). The paper's generator has one
  step. For a K-step generator the pairs train its first step (``regression_steps="first"``), or,
  with ``regression_steps="all"`` (ours), every step i on (ODE_T state at t_i, ODE_T output):
  the teacher ODE is integrated once from z through every generator time t_1..t_{K-1}, so step i
  learns the teacher's flow map from t_i to 0 on inputs with the marginal of p_{t_i}.
* ``dmd2`` — DMD2 (Yin et al. 2024, NeurIPS, "Improved Distribution Matching Distillation"):
  no regression loss; several critic updates per generator update (TTUR, paper: 5); a GAN
  head on the critic's features trained with real data (non-saturating logistic loss:
  critic side lambda_D [softplus(-D(x_t^real)) + softplus(D(x_t^fake))], generator side
  lambda_G softplus(-D(x_t^fake)); paper ImageNet-64: lambda_D = 1e-2, lambda_G = 3e-3);
  multi-step generators trained with backward simulation (``generator_steps``).
* ``fdistill`` — f-distill (Xu et al. 2025, "One-step Diffusion Models with f-Divergence
  Distribution Matching"): the DMD2 setup with g reweighted per sample by h(r) = r^2 f''(r),
  r = p_t / p_g,t, estimated as exp(logit) of the GAN head (the logistic discriminator's optimum
  is log r), normalised by its batch mean. reverse-KL: h = 1 (DMD2's gradient), forward-KL:
  h = r, Jensen-Shannon: h = r / (1 + r).

* ``swiftbrush`` — SwiftBrush (Nguyen & Tran 2024, "SwiftBrush: One-Step Text-to-Image Diffusion
  Model with Variational Score Distillation"): VSD as its official release computes it for a
  text-to-image teacher: the critic is guided like the teacher (``critic_guidance``: both
  x_u + w (x_c - x_u), w = 4.5), and the gradient is sigma_t^2 (eps_T - eps_F), i.e. in x0 terms
  h = alpha_t sigma_t (``score_weight="alpha_sigma"``); its critic is a LoRA on the teacher
  (``lora.critic_rank``, docs/lora.md) and its data are prompts only.

Guidance (x_u + w (x_c - x_u)) is applied to the teacher only, as in DMD/DMD2, unless
``critic_guidance`` guides the critic too (SwiftBrush).

Text-to-image teachers (``teacher.kind="diffusers"``, a Stable Diffusion folder): generator and
critic are the teacher's UNet (``generator.teacher_network``), the condition is the batch's
``TextCondition`` from a prompt cache, the GAN head reads the critic UNet's mid/up feature taps,
and its real-data term needs image latents in the cache (``jaxdistill cache --images``).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from jaxdistill.core.objective import Metrics
from jaxdistill.core.rng import derive
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.process import broadcast_to
from jaxdistill.diffusion.steps import karras_grid
from jaxdistill.losses import discriminator_loss, generator_gan_loss, mean_per_sample, squared_l2
from jaxdistill.objectives.common import check_choice, teacher_passes
from jaxdistill.objectives.generator import GeneratorDistillation, GeneratorSettings, check_text_run, generator_parts, mean_critic_updates
from jaxdistill.objectives.kd import teacher_ode, teacher_pair_set

DIVERGENCES = ("reverse_kl", "forward_kl", "js")
REGRESSION_STEPS = ("first", "all")
SCORE_WEIGHTS = ("x0", "alpha_sigma")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributionMatchingSettings(GeneratorSettings):
    """Settings shared by VSD, DMD, DMD2 and f-distill; the subclasses below are the methods."""

    section: ClassVar[str] = "dmd"

    # Noise levels of the score comparison: DMD / DMD2 draw t in [0.02, 0.98] T (Yin et al. 2024).
    u_range: tuple[float, float] = (0.02, 0.98)
    # DMD's regression loss on (noise, teacher ODE output) pairs: weight, which generator steps it
    # trains ("first", the paper's one-step setting, or "all", ours: see the module docstring),
    # and the pair set (size and the teacher sampler that solves the ODE).
    regression_weight: float = 0.0
    regression_steps: str = "first"
    num_pairs: int = 8192
    teacher_sampler: str = "heun"
    teacher_nfe: int = 31
    # DMD2's GAN head on the critic's features: critic-side and generator-side weights.
    gan_critic_weight: float = 0.0
    gan_generator_weight: float = 0.0
    # The per-sample weight h(t) of the x0 difference: "x0" (1) or "alpha_sigma" (alpha_t sigma_t,
    # SwiftBrush's sigma_t^2 on the eps difference); and whether the critic is guided like the teacher.
    score_weight: str = "x0"
    critic_guidance: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_choice("regression_steps", self.regression_steps, REGRESSION_STEPS)
        check_choice("score_weight", self.score_weight, SCORE_WEIGHTS)
        if self.regression_weight > 0 and self.num_pairs <= 0:
            raise ValueError("regression_weight > 0 needs num_pairs > 0 (noise, teacher ODE) pairs")
        if self.regression_weight > 0 and self.init_sigma > 0:
            raise ValueError("the regression pairs start from the teacher's prior at t_max: set init_sigma = 0 with regression_weight > 0")
        if self.regresses_every_step and self.teacher_sampler != "heun":
            raise ValueError(f"regression_steps='all' integrates the teacher ODE with Heun through the generator times; set teacher_sampler='heun' (got {self.teacher_sampler!r})")
        if self.regresses_every_step and self.later_step_sigmas:
            raise ValueError("regression_steps='all' places the generator times on the teacher's Karras ODE grid; it does not take later_step_sigmas")

    @property
    def uses_head(self) -> bool:
        return self.gan_critic_weight > 0 or self.gan_generator_weight > 0

    @property
    def regresses_every_step(self) -> bool:
        return self.regression_weight > 0 and self.regression_steps == "all" and self.generator_steps > 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class VSD(DistributionMatchingSettings):
    """Variational Score Distillation / Diff-Instruct: the unnormalised score difference, one
    critic update per generator update, no regression and no GAN term."""

    method: ClassVar[str] = "vsd"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SwiftBrush(VSD):
    """SwiftBrush (Nguyen & Tran 2024), its official release (VinAIResearch/SwiftBrush,
    ``train_swiftbrush.py``): VSD with the critic guided like the teacher and the gradient
    sigma_t^2 (eps_T - eps_F) = alpha_t sigma_t (D_F - D_T) in x0 terms; one critic update per
    generator update. The DM noise levels are uniform DDPM steps in [20, 981) there (here: the
    ``u_range`` Karras map, as for VSD)."""

    method: ClassVar[str] = "swiftbrush"

    score_weight: str = "alpha_sigma"
    critic_guidance: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class DMD(DistributionMatchingSettings):
    """DMD (Yin et al. 2024, CVPR): normalised score difference plus the regression loss."""

    method: ClassVar[str] = "dmd"

    regression_weight: float = 0.25  # lambda_reg = 0.25 (LPIPS in the paper, L2 here)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DMD2(DistributionMatchingSettings):
    """DMD2 (Yin et al. 2024, NeurIPS), ImageNet-64 settings: five critic updates per generator
    update (TTUR) and a GAN head with lambda_D = 1e-2, lambda_G = 3e-3; no regression loss."""

    method: ClassVar[str] = "dmd2"

    critic_schedule: tuple[tuple[int, int], ...] = ((0, 5),)
    gan_critic_weight: float = 1e-2
    gan_generator_weight: float = 3e-3


@dataclasses.dataclass(frozen=True, kw_only=True)
class FDistill(DMD2):
    """f-distill (Xu et al. 2025): DMD2's setup with the score difference reweighted by
    h(r) = r^2 f''(r); the paper's best one-step results use Jensen-Shannon."""

    method: ClassVar[str] = "fdistill"

    divergence: str = "js"

    def __post_init__(self):
        super().__post_init__()
        check_choice("divergence", self.divergence, DIVERGENCES)

    @property
    def uses_head(self) -> bool:
        return True  # the density ratio is read off the GAN head


def density_ratio_weight(logit: Array, divergence: str) -> Array:
    """h(r) = r^2 f''(r) at r = exp(logit): reverse-KL (f = -log r) 1, forward-KL (f = r log r) r,
    Jensen-Shannon (f = r log r - (1 + r) log((1 + r) / 2)) r / (1 + r)."""
    if divergence == "reverse_kl":
        return jnp.ones_like(logit)
    if divergence == "forward_kl":
        return jnp.exp(jnp.clip(logit, -20.0, 20.0))
    if divergence == "js":
        return jax.nn.sigmoid(logit)
    raise ValueError(f"unknown divergence {divergence!r}; choose one of {DIVERGENCES}")


def pseudo_target_loss(x_g: Array, g: Array) -> Array:
    """1/2 mean over batch and dimensions of || x_g - stopgrad(x_g - g) ||^2: gradient g / (B d) w.r.t. x_g."""
    target = jax.lax.stop_gradient(x_g - g)
    return 0.5 * jnp.mean(jnp.square(x_g - target))


@dataclasses.dataclass(frozen=True)
class DistributionMatching(GeneratorDistillation):
    """VSD, DMD, DMD2 and f-distill on the shared generator/critic/head machinery."""

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.settings, DistributionMatchingSettings):
            raise ValueError(f"DistributionMatching takes VSD, SwiftBrush, DMD, DMD2 or FDistill settings, got {type(self.settings).__name__}")
        if self.teacher is None or self.critic is None:
            raise ValueError(f"{self.name} needs a teacher and a critic")
        if self.settings.uses_head and self.head is None:
            raise ValueError(f"{self.name} with GAN weights > 0 needs a discriminator head")
        if self.microbatches > 1 and self.settings.method == "fdistill":
            raise ValueError(
                f"train.microbatches={self.microbatches} cannot accumulate fdistill: its density-ratio weights are normalised by "
                "their mean over the whole batch, which couples the batch's samples; set train.microbatches=1"
            )

    @property
    def normalised(self) -> bool:
        return self.settings.method not in ("vsd", "swiftbrush")

    @property
    def passes_per_sample(self) -> float:
        """Per training sample and generator update: generator forward + backward (plus K - 1
        backward-simulation forwards), the teacher's and critic's forwards (two each when guided); the regression pair's
        generator forward + backward; per critic update a generator forward (plus simulation) and
        the critic's forward + backward; the GAN head's critic-feature passes (real and fake
        forwards + backwards in the critic phase, a fake forward + backward in the generator's)."""
        sim = self.settings.generator_steps - 1 if self.settings.backward_simulation else 0
        critic_passes = teacher_passes(self.guidance) if self.settings.critic_guidance else 1.0
        generator = 2.0 + sim + teacher_passes(self.guidance) + critic_passes
        if self.settings.regression_weight > 0:
            generator += 2.0
        critic = 1.0 + sim + 2.0
        if self.settings.uses_head:
            generator += 2.0
            critic += 4.0
        return generator + mean_critic_updates(self.settings.critic_schedule, self.total_steps) * critic

    @property
    def setup_passes(self) -> float:
        """One-off teacher passes: DMD's (noise, ODE output) pair set."""
        if self.settings.regression_weight <= 0:
            return 0.0
        nfe = len(self.ode_grid()) * 2 - 3 if self.settings.regresses_every_step else self.settings.teacher_nfe  # Heun; Euler onto 0
        return float(self.settings.num_pairs * nfe * teacher_passes(self.guidance))

    # ------------------------------------------------------------------ setup
    @property
    def ode_steps_per_interval(self) -> int:
        """m: teacher ODE steps per generator interval, m K ≈ the Heun steps of ``teacher_nfe``."""
        return max(1, round(samplers.steps_for_nfe("heun", self.settings.teacher_nfe)[0] / self.settings.generator_steps))

    def ode_grid(self) -> Array:
        """With ``regression_steps="all"``: the teacher's ODE grid, a Karras grid to t_min with
        m = ``ode_steps_per_interval`` steps per generator interval, the generator times at
        indices m i exactly, then 0."""
        per = self.ode_steps_per_interval
        fine = karras_grid(self.process, per * self.settings.generator_steps, rho=self.settings.rho, t_end=self.process.t_min)
        fine = fine.at[per * jnp.arange(self.settings.generator_steps)].set(self.generator_times())
        return jnp.concatenate([fine, jnp.zeros((1,), jnp.float32)])

    def teacher_ode_states(self, params: PyTree, z: Array, cond: Optional[Array], rng: Array) -> dict:
        """``{"target": ODE_T(z), "states": [n, K - 1, ...]}``: the teacher's Heun ODE from z on
        ``ode_grid``, with its states at t_1..t_{K-1} (the inputs of the generator's later steps)."""
        del rng  # deterministic
        guidance = self.guidance if cond is not None else None
        x0_fn = lambda x, t: self.teacher.x0(params, x, t, cond, guidance=guidance)  # noqa: E731
        ts = self.ode_grid()
        starts = [self.ode_steps_per_interval * i for i in range(self.settings.generator_steps)] + [len(ts) - 1]
        x, states = z, []
        for start, end in zip(starts[:-1], starts[1:]):  # generator time t_i to t_{i+1} (the last: to 0)
            x = samplers.sample(x0_fn, self.process, x, ts[start : end + 1], "heun")
            states.append(x)
        return {"target": states.pop(), "states": jnp.stack(states, axis=1)}

    def prepare(self, frozen: PyTree, rng: Array) -> PyTree:
        """DMD's fixed (noise, teacher ODE output[, ODE states at the generator times]) pairs, built once."""
        if self.settings.regression_weight <= 0:
            return frozen
        if self.settings.regresses_every_step:
            sample = self.teacher_ode_states
        else:
            sample = lambda params, z, cond, key: teacher_ode(
                self.teacher, params, z, cond, self.guidance, self.settings.teacher_sampler, self.settings.teacher_nfe, key
            )
        return {**frozen, "pairs": teacher_pair_set(sample, self.teacher_prior, frozen["teacher"], self.settings.num_pairs, self.num_classes, rng)}

    def regression_inputs(self, frozen: PyTree, rng: Array, n: int) -> tuple[Array, Array, Optional[Array], Array]:
        """(x, t, cond, target) of ``n`` drawn pairs: the pair's noise at t_max, or with
        ``regression_steps="all"`` its ODE state at a uniformly drawn generator time."""
        pairs = frozen["pairs"]
        idx = jax.random.randint(derive(rng, "pairs"), (n,), 0, self.settings.num_pairs)
        cond = pairs["label"][idx] if self.num_classes > 0 else None
        if not self.settings.regresses_every_step:
            return pairs["noise"][idx], jnp.full((n,), self.process.t_max, jnp.float32), cond, pairs["target"][idx]
        step = jax.random.randint(derive(rng, "pair_step"), (n,), 0, self.settings.generator_steps)
        inputs = jnp.concatenate([pairs["noise"][idx][:, None], pairs["states"][idx]], axis=1)  # [n, K, ...]
        x = jnp.take_along_axis(inputs, step.reshape((n, 1) + (1,) * (inputs.ndim - 2)), axis=1)[:, 0]
        return x, self.generator_times()[step], cond, pairs["target"][idx]

    # ------------------------------------------------------------------ losses
    def critic_loss(self, params: dict, frozen: PyTree, batch: Batch, x_g: Array, cond: Optional[Array], rng: Array) -> tuple[Array, Metrics]:
        """DSM of the critic on generator samples, plus (DMD2, f-distill) the head's logistic loss
        separating noised real data from noised generator samples at shared noise levels."""
        loss, metrics = super().critic_loss(params, frozen, batch, x_g, cond, rng)
        if not self.settings.uses_head:
            return loss, metrics
        t = self.sample_t(derive(rng, "gan_time"), x_g.shape[0])
        real_t, _ = self.noised(batch["x"], derive(rng, "gan_real_noise"), t)
        fake_t, _ = self.noised(x_g, derive(rng, "gan_fake_noise"), t)
        # the generator samples were drawn at the batch's labels, so both sides share ``cond``
        logit_real, logit_fake = self.real_fake_logits(params, frozen, real_t, fake_t, t, cond)
        gan = discriminator_loss(logit_real, logit_fake, "nonsaturating")
        metrics = {**metrics, "gan_critic_loss": gan, "logit_real": jnp.mean(logit_real), "logit_fake": jnp.mean(logit_fake)}
        return loss + self.settings.gan_critic_weight * gan, metrics

    def score_difference(self, nets: dict, frozen: PyTree, x_g: Array, cond: Optional[Array], rng: Array) -> tuple[Array, Array, Array]:
        """(g, x_t, t): the per-sample generator direction g = h (D_F - D_T) / n at x_t (stop-gradient)."""
        t = self.sample_t(derive(rng, "time"), x_g.shape[0])
        x_t, _ = self.noised(jax.lax.stop_gradient(x_g), derive(rng, "noise"), t)
        d_teacher = self.teacher_x0(frozen, x_t, t, cond)
        critic_guidance = self.guidance if self.settings.critic_guidance and cond is not None else None
        d_critic = self.critic.x0(nets["critic"], x_t, t, cond, guidance=critic_guidance)
        g = d_critic - d_teacher
        if self.settings.score_weight == "alpha_sigma":
            g = g * broadcast_to(self.process.alpha(t) * self.process.sigma(t), g)
        if self.normalised:
            scale = jnp.maximum(mean_per_sample(jnp.abs(jax.lax.stop_gradient(x_g) - d_teacher)), 1e-8)
            g = g / scale.reshape((-1,) + (1,) * (g.ndim - 1))
        if self.settings.method == "fdistill":
            h = density_ratio_weight(self.head_logits(nets, frozen, x_t, t, cond), self.settings.divergence)
            h = h / jnp.maximum(jnp.mean(h), 1e-8)
            g = g * h.reshape((-1,) + (1,) * (g.ndim - 1))
        return jax.lax.stop_gradient(g), x_t, t

    def generator_loss(self, params: PyTree, nets: dict, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Array, Metrics]:
        x_g, cond = self.generate_train(params, batch, derive(rng, "sample"))
        g, _, _ = self.score_difference(nets, frozen, x_g, cond, derive(rng, "dm"))
        dm = pseudo_target_loss(x_g, g)
        loss, metrics = dm, {"dm_loss": dm, "score_gap": jnp.mean(mean_per_sample(jnp.abs(g)))}
        if self.settings.regression_weight > 0:
            x, t, pair_cond, target = self.regression_inputs(frozen, rng, x_g.shape[0])
            reg = jnp.mean(squared_l2(self.generator_x0(params, x, t, pair_cond), target))
            loss, metrics = loss + self.settings.regression_weight * reg, {**metrics, "regression_loss": reg}
        if self.settings.gan_generator_weight > 0:
            t = self.sample_t(derive(rng, "gan_time"), x_g.shape[0])
            fake_t, _ = self.noised(x_g, derive(rng, "gan_noise"), t)
            gan = generator_gan_loss(self.head_logits(nets, frozen, fake_t, t, cond), "nonsaturating")
            loss, metrics = loss + self.settings.gan_generator_weight * gan, {**metrics, "gan_generator_loss": gan}
        return loss, {**metrics, "loss": loss}


def build(ctx, settings: DistributionMatchingSettings) -> tuple[DistributionMatching, PyTree]:
    """The distribution-matching objective of ``settings`` with the run's networks and teacher."""
    real_data = f"the GAN head (dmd.gan_critic_weight={settings.gan_critic_weight:g})" if settings.uses_head else None
    check_text_run(ctx, settings, real_data=real_data)
    parts, frozen = generator_parts(ctx, settings, critic=True, head=settings.uses_head)
    return DistributionMatching(settings=settings, **parts), frozen
