"""Score identity Distillation (SiD), adversarial SiD (SiDA) and Score Implicit Matching (SIM).

* ``sid`` — Zhou, Zheng, Wang, Yin & Huang 2024, "Score identity Distillation: Exponentially
  Fast Distillation of Pretrained Diffusion Models for One-Step Generation" (ICML 2024,
  arXiv:2404.04057); official code github.com/mingyuanzhou/SiD (``training/sid_loss.py``).
* ``sida`` — Zhou, Zheng, Gu, Wang & Huang 2025, "Adversarial Score identity Distillation:
  Rapidly Surpassing the Teacher in One Step" (ICLR 2025, arXiv:2410.14919); same repository
  (``SIDA_EDMLoss``, ``run_sida.sh``).
* ``sim`` — Luo, Huang, Geng, Kolter & Qi 2024, "One-Step Diffusion Distillation through Score
  Implicit Matching" (NeurIPS 2024, arXiv:2410.16794).

All three are data-free distribution matching with a fake-score **critic** F (x0-prediction
D_F, trained by the base's denoising score matching on stop-gradient generator samples) and
the frozen teacher T (x0-prediction D_T). The generator G is evaluated at the noise level
``init_sigma`` (SiD's ``init_sigma = 2.5``): x_g = G(sigma_init z, t_init), z ~ N(0, I). Its loss
uses x_t = alpha_t x_g + sigma_t eps with gradients flowing through x_t into *both* networks'
inputs and through x_g itself; the networks' parameters are stop-gradient.

**SiD** (paper eq. (20) / ``SID_EDMLoss.generator_loss``), per sample, with Delta = D_T - D_F:

    L_SiD = [(1 - alpha) ||Delta||^2 + Delta^T (D_F - x_g)] / (d w),  w = sg(mean_d |x_g - D_T|),

i.e. the code's (D_T - D_F)^T((D_T - x_g) - alpha (D_T - D_F)) / w (summed over the d dimensions
there, averaged here: a constant factor); w is the paper's omega(t) = d / ||x_g - D_T||_1 and
there is no further sigma factor (the code computes EDM's weight there but does not use it).
alpha = 1.2. Noise levels: u ~ U[0, 0.8] on the
Karras rho = 7 interpolation between sigma_min and sigma_max (the code's ``tmax = 800`` of
1000 steps, ``sigma = (max^(1/rho) + (1 - u)(min^(1/rho) - max^(1/rho)))^rho``), i.e. the base's
``u_range = (0, 0.8)``, ``rho = 7``. One critic update per generator update.

**SiDA** adds a GAN whose discriminator is the critic's encoder: here the base's
``DiscriminatorHead`` on the critic's features. Following ``SIDA_EDMLoss`` and ``run_sida.sh``:

* critic: DSM + lambda_D * mean_b(lambda(sigma_b)) / d * [BCE(D(x_t^real), 1) + BCE(D(x_t^fake), 0)] / 2
  with real and fake noised at the *same* sigma (EDM's lognormal) and noise as the DSM term,
  lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 EDM's weight, BCE averaged
  over the batch; the code adds it unnormalised to the DSM loss summed over d dimensions, hence
  our 1 / d (lambda_D = lsd / ls = 1);
* generator: L_SiD + lambda_G * BCE(clip(D(x_t), -10, 10), 1) / w, at the SiD x_t and with SiD's
  per-sample w; the code weighs 0.5 lsg L_SiD (summed over d) + 0.5 lsg_gan d BCE / w with
  lsg = 100, lsg_gan = 0.01, i.e. lambda_G = lsg_gan / lsg = 1e-4 in our per-dimension units.
  alpha = 1 (every ``run_sida.sh`` setting).

**SIM**: for a distance d on score differences the score-divergence gradient theorem gives
grad_theta E_{t, x_t ~ q_theta,t} d(s_T - s_q) = grad_theta E [d(y) + d'(y)^T (s_F(x_t) - grad log q_t(x_t | x_g))]
with y = s_T(x_t) - s_F(x_t) and F = sg(q_theta)'s score (derived with the score-projection
identity, checked in the tests against autodiff of the divergence itself; with d = ||.||^2 it
is SiD with alpha = 0.5). With s = (alpha D - x_t) / sigma^2 and k = alpha / sigma^2:
y = k Delta, s_F - grad log q_t(x_t | x_g) = k (D_F - x_g). Default d is the pseudo-Huber
distance d(y) = sqrt(||y||^2 + c^2) - c (paper Sec. 3.3). The paper gives no value for c; we use
c = 1e-3 (the SIM repository's issue #5 answer). Weighting (not stated in the paper; SIM follows
SiD's setup, e.g. its init_sigma = 2.5, SIM issue #4): sigma^2 / (alpha w) per sample, which
converts the score-space pseudo-Huber (homogeneous of degree one for ||y|| >> c) to x0 units and
applies SiD's normaliser w. Same noise levels and critic schedule as SiD.

**On a Stable Diffusion teacher** (``teacher.kind="diffusers"``) generator and critic are the
teacher's UNet, started from its weights (``generator.check_text_run``), and the data are the prompt
cache's text embeddings (SiDA's discriminator also reads the cache's image latents). SiD's
init_sigma = 2.5 is sigma ratio 2.5 on SD's scaled-linear schedule, process time 625.8, i.e. DDPM
step 624.8: the generator input time of SiD-LSG (Zhou et al. 2024, "Guided Score identity
Distillation for Data-Free One-Step Text-to-Image Generation", arXiv:2406.01561; its run_sid.sh:
``--init_timestep 625`` for SD 1.5 and 2.1-base). Its long-and-short guidance is not here.

Left out: SiD's NaN-sample filtering, SiDA's EDM2-only warm-ups (generator frozen for the first
100k images, GAN term from 200k) and the per-GPU batch means (ours are over the global batch).
Guidance (x_u + w (x_c - x_u)) applies to the teacher only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxdistill.core.objective import Metrics
from jaxdistill.core.rng import derive
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.process import broadcast_to
from jaxdistill.losses import discriminator_loss, generator_gan_loss, mean_per_sample
from jaxdistill.objectives.common import teacher_passes
from jaxdistill.objectives.generator import GeneratorDistillation, GeneratorSettings, check_text_run, generator_parts, mean_critic_updates

WEIGHT_FLOOR = 1e-5  # SiD code: weight_factor.clip(min=0.00001)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreIdentitySettings(GeneratorSettings):
    """Settings shared by SiD, SiDA and SIM; the subclasses below are the methods."""

    section: ClassVar[str] = "sid"

    # SiD code: sigma = Karras rho = 7 interpolation at u ~ U[0, tmax / 1000], tmax = 800.
    u_range: tuple[float, float] = (0.0, 0.8)
    # SiD / SiDA / SIM: generator input noise level init_sigma = 2.5.
    init_sigma: float = 2.5
    alpha: float = 1.2  # SiD paper default
    # SIM pseudo-Huber constant (not in the paper; SIM repository issue #5: c = 0.001).
    huber_c: float = 1e-3
    # SiDA's GAN weights (critic side, generator side) and the generator's logit clip.
    adv_critic_weight: float = 0.0
    adv_generator_weight: float = 0.0
    logit_clip: float = 10.0  # SiDA code: logits clipped to [-10, 10] in the generator's BCE

    def __post_init__(self):
        super().__post_init__()
        if self.huber_c <= 0:
            raise ValueError(f"huber_c must be > 0, got {self.huber_c}")
        if self.adv_critic_weight < 0 or self.adv_generator_weight < 0 or self.logit_clip <= 0:
            raise ValueError("adv_critic_weight and adv_generator_weight must be >= 0 and logit_clip > 0")
        if (self.adv_critic_weight > 0 or self.adv_generator_weight > 0) and self.method != "sida":
            raise ValueError(f"adversarial weights > 0 are SiDA's (method sida), not {self.method}'s")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SiD(ScoreIdentitySettings):
    """Score identity Distillation (Zhou et al. 2024, ICML), alpha = 1.2."""

    method: ClassVar[str] = "sid"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SiDA(ScoreIdentitySettings):
    """SiD with adversarial loss (Zhou et al. 2025, ICLR); run_sida.sh: alpha = 1, ls = 1,
    lsd = 1, lsg = 100, lsg_gan = 0.01, i.e. critic weight lsd / ls = 1 and generator weight
    lsg_gan / lsg = 1e-4."""

    method: ClassVar[str] = "sida"

    alpha: float = 1.0
    adv_critic_weight: float = 1.0
    adv_generator_weight: float = 1e-4


@dataclasses.dataclass(frozen=True, kw_only=True)
class SIM(ScoreIdentitySettings):
    """Score Implicit Matching (Luo et al. 2024) with the pseudo-Huber distance."""

    method: ClassVar[str] = "sim"


# ---------------------------------------------------------------- pure losses
def sid_loss(x_g: Array, d_teacher: Array, d_critic: Array, alpha: float) -> Array:
    """Per-sample [(1 - alpha) ||D_T - D_F||^2 + (D_T - D_F)^T (D_F - x_g)] / d, shape [B]."""
    diff = d_teacher - d_critic
    return mean_per_sample((1.0 - alpha) * jnp.square(diff) + diff * (d_critic - x_g))


def sim_loss(x_g: Array, d_teacher: Array, d_critic: Array, k: Array, c: float | Array) -> Array:
    """Per-sample d(y) + d'(y)^T e with the pseudo-Huber d(y) = sqrt(||y||^2 + c^2) - c,
    y = k (D_T - D_F) = s_T - s_F and e = k (D_F - x_g) = s_F(x_t) - grad log q_t(x_t | x_g)
    (k = alpha_t / sigma_t^2 per sample), shape [B]."""
    k = broadcast_to(k, x_g)
    y = (k * (d_teacher - d_critic)).reshape(x_g.shape[0], -1)
    e = (k * (d_critic - x_g)).reshape(x_g.shape[0], -1)
    norm = jnp.sqrt(jnp.sum(jnp.square(y), axis=1) + c**2)
    return norm - c + jnp.sum(y * e, axis=1) / norm


def edm_weight(sigma: Array, sigma_data: float) -> Array:
    """EDM's loss weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    return (jnp.square(sigma) + sigma_data**2) / jnp.square(sigma * sigma_data)


@dataclasses.dataclass(frozen=True)
class ScoreIdentityDistillation(GeneratorDistillation):
    """SiD, SiDA and SIM on the shared generator/critic/head machinery."""

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.settings, ScoreIdentitySettings):
            raise ValueError(f"ScoreIdentityDistillation takes SiD, SiDA or SIM settings, got {type(self.settings).__name__}")
        if self.teacher is None or self.critic is None:
            raise ValueError(f"{self.name} needs a teacher and a critic")
        if self.settings.method == "sida" and self.head is None:
            raise ValueError("sida needs a discriminator head on the critic's features")
        if self.microbatches > 1 and self.adversarial:
            raise ValueError(
                f"train.microbatches={self.microbatches} cannot accumulate sida: its adversarial terms multiply two means over "
                "the whole batch (BCE times the mean loss weight), which couples the batch's samples; set train.microbatches=1"
            )

    @property
    def adversarial(self) -> bool:
        return self.settings.method == "sida"

    @property
    def passes_per_sample(self) -> float:
        """Per training sample and generator update: the generator's forward + backward (plus
        K - 1 backward-simulation forwards); teacher and critic forward + backward (the gradient
        flows through their inputs); SiDA's critic-feature forward + backward at x_t. Per critic
        update: a generator forward (plus simulation) and the critic's DSM forward + backward;
        SiDA's critic-feature forwards + backwards on real and fake samples."""
        sim = self.settings.generator_steps - 1 if self.settings.backward_simulation else 0
        generator = 2.0 + sim + 2.0 * teacher_passes(self.guidance) + 2.0
        critic = 1.0 + sim + 2.0
        if self.adversarial:
            generator += 2.0
            critic += 4.0
        return generator + mean_critic_updates(self.settings.critic_schedule, self.total_steps) * critic

    # ------------------------------------------------------------------- losses
    def critic_loss(self, params: dict, frozen: PyTree, batch: Batch, x_g: Array, cond: Array | None, rng: Array) -> tuple[Array, Metrics]:
        """DSM of the critic (base), plus SiDA's discriminator loss at the DSM term's sigma and noise."""
        loss, metrics = super().critic_loss(params, frozen, batch, x_g, cond, rng)
        if self.settings.adv_critic_weight <= 0:
            return loss, metrics
        # The base's DSM draws (same keys): SiDA noises real and fake with the DSM's sigma and noise.
        t = self.process.sample_t(derive(rng, "critic_time"), x_g.shape[0])
        eps = jax.random.normal(derive(rng, "critic_noise"), x_g.shape, x_g.dtype)
        logit_real, logit_fake = self.real_fake_logits(params, frozen, self.process.add_noise(batch["x"], eps, t), self.process.add_noise(x_g, eps, t), t, cond)
        bce = 0.5 * discriminator_loss(logit_real, logit_fake, "nonsaturating")
        weight = jnp.mean(edm_weight(self.process.sigma_ratio(t), self.critic.sigma_data)) / math.prod(self.event_shape)
        adv = weight * bce
        metrics = {**metrics, "adv_critic_loss": adv, "logit_real": jnp.mean(logit_real), "logit_fake": jnp.mean(logit_fake)}
        return loss + self.settings.adv_critic_weight * adv, metrics

    def generator_loss(self, params: PyTree, nets: dict, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Array, Metrics]:
        teacher = {"teacher": jax.lax.stop_gradient(frozen["teacher"])}
        critic = {k: jax.lax.stop_gradient(v) for k, v in nets.items()}
        x_g, cond = self.generate_train(params, batch, derive(rng, "sample"))
        t = self.sample_t(derive(rng, "time"), x_g.shape[0])
        x_t, _ = self.noised(x_g, derive(rng, "noise"), t)  # differentiable in x_g
        d_teacher = self.teacher_x0(teacher, x_t, t, cond)
        d_critic = self.critic.x0(critic["critic"], x_t, t, cond)
        scale = jax.lax.stop_gradient(jnp.maximum(mean_per_sample(jnp.abs(x_g - d_teacher)), WEIGHT_FLOOR))
        if self.settings.method == "sim":
            # sim_loss(k, c) / k = sim_loss(1, c / k): the same value in x0 units, without the
            # k = alpha / sigma^2 (up to 2.5e5) factors whose float32 rounding made 8 sharded steps
            # drift 7e-4 from 1 device
            k = self.process.alpha(t) / jnp.square(self.process.sigma(t))
            per_sample = sim_loss(x_g, d_teacher, d_critic, jnp.ones_like(k), self.settings.huber_c / k) / scale
        else:
            per_sample = sid_loss(x_g, d_teacher, d_critic, self.settings.alpha) / scale
        loss = jnp.mean(per_sample)
        metrics = {f"{'sim' if self.settings.method == 'sim' else 'sid'}_loss": loss, "score_gap": jnp.mean(mean_per_sample(jnp.abs(d_teacher - d_critic)))}
        if self.settings.adv_generator_weight > 0:
            logit = jnp.clip(self.head_logits(critic, frozen, x_t, t, cond), -self.settings.logit_clip, self.settings.logit_clip)
            adv = generator_gan_loss(logit, "nonsaturating") * jnp.mean(1.0 / scale)  # batch-mean BCE / w per sample
            loss = loss + self.settings.adv_generator_weight * adv
            metrics["adv_generator_loss"] = adv
        return loss, {**metrics, "loss": loss}


def build(ctx, settings: ScoreIdentitySettings) -> tuple[ScoreIdentityDistillation, PyTree]:
    """The SiD / SiDA / SIM objective of ``settings`` with the run's networks and teacher (on a Stable
    Diffusion teacher, ``generator.check_text_run``: SiDA's discriminator reads real image latents)."""
    check_text_run(ctx, settings, real_data="sida's discriminator (its real samples)" if settings.method == "sida" else None)
    parts, frozen = generator_parts(ctx, settings, critic=True, head=settings.method == "sida")
    return ScoreIdentityDistillation(settings=settings, **parts), frozen
