"""Adversarial distillation: ADD and LADD.

* ``add`` — Adversarial Diffusion Distillation (Sauer, Lorenz, Blattmann & Rombach 2023,
  "Adversarial Diffusion Distillation", arXiv:2311.17042; SDXL-Turbo).
* ``ladd`` — Latent Adversarial Diffusion Distillation (Sauer, Boesel, Dockhorn, Blattmann,
  Esser & Rombach 2024, "Fast High-Resolution Image Synthesis with Latent Adversarial Diffusion
  Distillation", arXiv:2403.12015; SD3-Turbo).

Both train a K-step student G (initialised from the teacher) against a discriminator made of a
*frozen* feature network F and small trainable heads D (``DiscriminatorHead``); there is no
fake-score critic. The student's training inputs are forward-diffused data at its own K
timesteps, x_s = alpha_s x0 + sigma_s eps (step 0 starts from pure noise), i.e. the base's
``backward_simulation=False`` path; x̂ = G(x_s, s).

Discriminator (trained in the base's critic phase): hinge loss plus an R1 penalty taken, as in
ADD (Sec. 3.2), w.r.t. the inputs of the heads rather than the pixels:

    L_D = E[relu(1 - D(F(x_real)))] + E[relu(1 + D(F(x̂)))] + gamma/2 E ||grad_f D(f)|_{f = F(x_real)}||^2.

Student, with the generator's hinge loss L_adv = -E[D(F(x̂))] (or the non-saturating
E[softplus(-D(F(x̂)))], ``gan_loss="nonsaturating"``):

    L_G = L_adv + lambda E_{t, eps'}[c(t) d(x̂, sg(D_T(alpha_t x̂ + sigma_t eps', t)))],

ADD's distillation term (Sec. 3.3): the student's output renoised to a teacher time t
(``sample_t``) is denoised by the teacher D_T, whose stop-gradient prediction is the regression
target; d is the squared L2 distance averaged over dimensions. c(t) = ``"alpha"`` uses the
signal scale of the equivalent variance-preserving process for data of scale sigma_data,
c(t) = (1 + (s(t) / sigma_data)^2)^(-1/2) with s = sigma / alpha (= alpha_t on a VP process with
unit-variance data: ADD's weighting in which higher noise levels contribute less), ``"none"``
is c = 1.

The two methods differ in F and in the data:

* ADD: F is DINOv2 in the paper, a pretrained image network seeing clean images. On the
  benchmarks we have no such network, so F is the frozen *teacher's* intermediate features at
  one small fixed noise level s_F = ``feature_sigma`` x sigma_data, fed the clean sample (no
  noise is added: F stays a deterministic function of the image, as DINOv2 is),
  unconditionally (null label); for the exact mixture teacher F(x) = [E[x0 | x_t = x], p(k | x_t = x)] at s_F. The head is
  class-conditional by projection (the paper conditions on text and image embeddings). On a
  Stable Diffusion teacher ``discriminator = "dinov2"`` is the paper's F (below).
  Real data are the training set; lambda = 2.5, gamma = 1e-5.
* LADD: F is the teacher's own features at *noised* inputs: real and fake samples are renoised
  to a shared t̂ (fresh noise each) drawn from the logit-normal distribution pi(t; m, s) of
  rectified-flow time, shifted to high noise (paper: m = 1, s = 1). Since logit(t_RF) =
  ln(sigma / alpha) on the rectified flow, this is ln(s(t̂) / sigma_data) ~ N(m, s^2) for any
  process (SD3's latents have unit scale; ours are rescaled by sigma_data). The teacher sees the
  labels, and the heads are conditioned on the noise level (a column ln(s(t̂)) / 4 appended to
  the features) and on the label. "Real" data are teacher samples (the paper's synthetic data):
  a pool of ``num_synthetic`` teacher ODE samples built once in ``prepare`` (KD's pair set);
  the student's inputs are noised pool samples. No distillation loss and no R1 term (with
  synthetic data the adversarial loss alone suffices in the paper).

The heads read pooled features by default; ``head_per_position = True`` gives every feature map
its own head applied at each spatial position, as ADD's heads score every DINOv2 token
(``DiscriminatorHead``); the hinge losses then average over positions as well as samples.

Guidance (x_u + w (x_c - x_u)) applies to the teacher's denoiser only (ADD's distillation
target, LADD's synthetic data), never to features.

**Latent text-to-image teachers** (``teacher.kind = "diffusers"``, data a ``jaxdistill cache``):
the condition is the batch's ``TextCondition``; the student is the teacher's own UNet, started
from its weights (``generator.generator_parts``); the heads are conditioned on the text by
projection (``models.discriminator.text_vector``: the pooled prompt embedding where the teacher
has one, SDXL, else the mean of the token embeddings, SD 1.x / 2.x), and ADD's feature network
sees the teacher's features with the negative (empty) prompt. ``discriminator = "dinov2"`` is
ADD's own discriminator: the student's latents (and the real ones) are decoded by the teacher's VAE
and read by a frozen DINOv2 (``models.hf.dinov2``, the folder ``dinov2_path``) at ``dinov2_layers``,
with per-token heads; the gradient reaches the student through DINOv2 and the decoder. As in the
paper (Sec. 3.2) the heads are conditioned on an image embedding c_img besides the text
(``dinov2_image_condition``, on by default): DINOv2's final class token of the real image x0 whose
forward-diffused version x_s is the student's input, projected like the text vector; the real
sample's and the student's logits both read the c_img of the same x0, so the heads judge x̂ against
the image the student was given (its first step starts from pure noise, where x0 is the batch's
image all the same). LADD's pool
of teacher samples is drawn at class labels, which carry no prompts: with text, ``num_synthetic =
0`` and the cache's latents are the "real" data; a cache of the teacher's own samples for its
prompts (``jaxdistill cache --teacher-samples``) makes that the paper's synthetic data, and a
text-only cache is refused. The engine's sample plots carry no prompts (``train.sample_every = 0``, as LCM).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from jaxdistill.core.conditioning import unconditional
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.losses import GAN_LOSSES, discriminator_loss, generator_gan_loss, r1_penalty, squared_l2
from jaxdistill.models.discriminator import apply_head
from jaxdistill.models.hf.dinov2 import STYLEGAN_T_LAYERS, LatentDinov2, load_dinov2
from jaxdistill.models.hf.teacher import load_sd_vae
from jaxdistill.objectives.common import check_choice, teacher_passes
from jaxdistill.objectives.generator import GeneratorDistillation, GeneratorSettings, check_text_run, generator_parts, mean_critic_updates
from jaxdistill.objectives.kd import teacher_ode, teacher_pair_set

DISTILL_WEIGHTINGS = ("alpha", "none")
DISCRIMINATORS = ("teacher", "dinov2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdversarialSettings(GeneratorSettings):
    """Settings shared by ADD and LADD; the subclasses below are the methods."""

    section: ClassVar[str] = "adversarial"

    # Both papers: N = 4 student timesteps drawn uniformly, inputs forward-diffused from data, the
    # first one pure noise (ADD Sec. 3.1: tau_n = 1000 with zero terminal SNR; LADD: t in
    # {1, 0.75, 0.5, 0.25}). Ours are the first 4 points of the base's Karras grid.
    generator_steps: int = 4
    backward_simulation: bool = False
    critic_from_teacher: bool = False  # no critic network
    gan_loss: str = "hinge"  # ADD Sec. 3.2 (StyleGAN-T's hinge loss); LADD keeps it
    # ADD's distillation term: weight lambda and c(t) decaying with noise (Sec. 3.3 / 4).
    distill_weight: float = 0.0
    distill_weighting: str = "alpha"
    r1_weight: float = 0.0  # R1 on the heads' inputs
    # ADD's frozen feature network: the teacher at s_F = feature_sigma * sigma_data (our stand-in
    # for DINOv2, see the module docstring).
    feature_sigma: float = 0.1
    # ADD's feature network: "teacher" (the stand-in above) or "dinov2" (the paper's: the DINOv2 folder
    # dinov2_path on VAE-decoded latents, heads on the blocks dinov2_layers; text-to-image teachers only).
    discriminator: str = "teacher"
    dinov2_path: str = ""
    dinov2_layers: tuple[int, ...] = STYLEGAN_T_LAYERS
    # ADD (Sec. 3.2): the heads also read an image embedding c_img, DINOv2's class token of the real image x0 the
    # student's input was diffused from, projected like the text vector (discriminator="dinov2" only).
    dinov2_image_condition: bool = True
    # LADD: discriminator noise ln(s / sigma_data) ~ N(1, 1), the logit-normal pi(t; m=1, s=1).
    noise_mean: float = 1.0
    noise_std: float = 1.0
    # LADD's synthetic data: teacher ODE samples (size and sampler as KD's pair set); 0: the training
    # data are already teacher samples (a text-to-image cache written with --teacher-samples).
    num_synthetic: int = 16384
    teacher_sampler: str = "heun"
    teacher_nfe: int = 31

    def __post_init__(self):
        super().__post_init__()
        check_choice("gan_loss", self.gan_loss, GAN_LOSSES)
        check_choice("distill_weighting", self.distill_weighting, DISTILL_WEIGHTINGS)
        check_choice("discriminator", self.discriminator, DISCRIMINATORS)
        if self.discriminator == "dinov2" and (self.method != "add" or not self.dinov2_path):
            raise ValueError(f"discriminator='dinov2' is ADD's (method add, not {self.method}) and needs dinov2_path, a local DINOv2 folder; got {self.dinov2_path!r}")
        if self.distill_weight < 0 or self.r1_weight < 0:
            raise ValueError(f"distill_weight and r1_weight must be >= 0, got {self.distill_weight}, {self.r1_weight}")
        if self.method == "add" and self.feature_sigma <= 0:
            raise ValueError(f"feature_sigma must be > 0 (the feature network's noise level), got {self.feature_sigma}")
        if self.method == "ladd" and self.noise_std <= 0:
            raise ValueError(f"noise_std must be > 0, got {self.noise_std}")
        if self.method == "ladd" and self.num_synthetic < 0:
            raise ValueError(f"num_synthetic must be >= 0 (0: the data are teacher samples already), got {self.num_synthetic}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ADD(AdversarialSettings):
    """Adversarial Diffusion Distillation (Sauer et al. 2023): lambda = 2.5 (Sec. 4) and R1 with
    gamma = 1e-5 (Sec. 3.2; the paper finds it matters above 128^2 px)."""

    method: ClassVar[str] = "add"

    distill_weight: float = 2.5
    r1_weight: float = 1e-5


@dataclasses.dataclass(frozen=True, kw_only=True)
class LADD(AdversarialSettings):
    """Latent Adversarial Diffusion Distillation (Sauer et al. 2024): synthetic data, no
    distillation loss and no R1 term."""

    method: ClassVar[str] = "ladd"


@dataclasses.dataclass(frozen=True)
class AdversarialDistillation(GeneratorDistillation):
    """ADD and LADD on the shared generator/head machinery (no critic)."""

    per_position_logits: ClassVar[bool] = True  # hinge losses and R1 average / sum every logit
    image_features: Optional[LatentDinov2] = None  # ADD's DINOv2 on decoded latents; params frozen["discriminator"]

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.settings, AdversarialSettings):
            raise ValueError(f"AdversarialDistillation takes ADD or LADD settings, got {type(self.settings).__name__}")
        if self.teacher is None or self.head is None:
            raise ValueError(f"{self.settings.method} needs a teacher (its features are the discriminator's backbone) and a discriminator head")
        if self.critic is not None:
            raise ValueError(f"{self.settings.method} trains no critic network; build it with critic=False")

    @property
    def sigma_data(self) -> float:
        return float(self.generator.sigma_data)

    @property
    def passes_per_sample(self) -> float:
        """Per training sample and student update: the student's forward + backward, the
        teacher's features of x̂ forward + backward (the adversarial gradient flows through
        them), ADD's teacher denoiser forward (two under guidance); per discriminator update the
        student's forward and the teacher's features of the fake and the real sample (the heads
        and the R1 gradient w.r.t. their inputs are not counted: they are tiny MLPs). With ADD's
        DINOv2 the feature passes are decoder + DINOv2 passes, counted the same, plus the student
        update's forward pass for c_img of the real batch (the discriminator update takes it from
        the real features' pass)."""
        student = 4.0 + (teacher_passes(self.guidance) if self.settings.distill_weight > 0 else 0.0) + (1.0 if self.image_conditioned else 0.0)
        discriminator = 3.0
        return student + mean_critic_updates(self.settings.critic_schedule, self.total_steps) * discriminator

    @property
    def setup_passes(self) -> float:
        """One-off teacher passes: LADD's pool of synthetic samples."""
        if self.settings.method != "ladd":
            return 0.0
        return float(self.settings.num_synthetic * self.settings.teacher_nfe * teacher_passes(self.guidance))

    # ------------------------------------------------------------------ data
    def prepare(self, frozen: PyTree, rng: Array) -> PyTree:
        """LADD: the pool of teacher ODE samples (and their labels) that replaces real data."""
        if self.settings.method != "ladd" or self.settings.num_synthetic == 0:
            return frozen
        sample = lambda params, z, cond, key: teacher_ode(
            self.teacher, params, z, cond, self.guidance, self.settings.teacher_sampler, self.settings.teacher_nfe, key
        )
        pairs = teacher_pair_set(sample, self.teacher_prior, frozen["teacher"], self.settings.num_synthetic, self.num_classes, rng)
        synthetic = {"x": pairs["target"], **({"label": pairs["label"]} if "label" in pairs else {})}
        return {**frozen, "synthetic": synthetic}

    def synthetic_batch(self, frozen: PyTree, batch: Batch, rng: Array) -> Batch:
        """A batch of pool samples (uniform with replacement), the size of ``batch``."""
        idx = jax.random.randint(rng, (batch["x"].shape[0],), 0, self.settings.num_synthetic)
        return {k: v[idx] for k, v in frozen["synthetic"].items()}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        if self.settings.method == "ladd" and self.settings.num_synthetic > 0:
            batch = self.synthetic_batch(frozen, batch, derive(rng, "synthetic"))
        return super().step(trainable, frozen, batch, rng, step)

    # ----------------------------------------------------------- discriminator
    @property
    def image_conditioned(self) -> bool:
        """Whether the heads read ADD's image embedding c_img (the DINOv2 discriminator with ``dinov2_image_condition``)."""
        return self.image_features is not None and self.settings.dinov2_image_condition

    def head_image(self, frozen: PyTree, batch: Batch) -> Optional[Array]:
        """c_img of the batch's real samples x0: DINOv2's class token of the decoded latents (a constant
        of the data: stop-gradient), or None without image conditioning."""
        if not self.image_conditioned:
            return None
        return jax.lax.stop_gradient(self.image_features.outputs(frozen["discriminator"], batch["x"])[1])

    def feature_time(self) -> float:
        """ADD's fixed feature level t_F with s(t_F) = feature_sigma * sigma_data."""
        with jax.ensure_compile_time_eval():
            return float(self.process.t_from_sigma_ratio(self.settings.feature_sigma * self.sigma_data))

    def discriminator_time(self, rng: Array, n: int) -> Array:
        """t̂ per sample: ADD's fixed t_F; LADD's ln(s(t̂) / sigma_data) ~ N(noise_mean, noise_std^2)
        (clipped to the process's noise range)."""
        if self.settings.method == "add":
            return jnp.full((n,), self.feature_time(), jnp.float32)
        s_min, s_max = self.sigma_range()
        log_s = self.settings.noise_mean + self.settings.noise_std * jax.random.normal(rng, (n,), jnp.float32)
        return self.process.t_from_sigma_ratio(jnp.clip(self.sigma_data * jnp.exp(log_s), s_min, s_max))

    def discriminator_view(self, x0: Array, t: Array, rng: Array) -> Array:
        """What the feature network sees of a clean sample: itself (ADD) or alpha x0 + sigma eps (LADD)."""
        if self.settings.method == "add":
            return x0
        return self.noised(x0, rng, t)[0]

    def head_features(self, params: dict, frozen: PyTree, x_t: Array, t: Array, cond: Optional[Array]) -> list[Array]:
        """The frozen teacher's features of x_t at t: unconditional for ADD (a fixed feature
        network; or DINOv2's of the decoded latents); for LADD conditional, plus the noise-level
        column ln(s(t)) / 4."""
        if self.image_features is not None:
            return self.image_features(frozen["discriminator"], x_t)
        if self.settings.method == "add":
            return self.teacher.features(frozen["teacher"], x_t, t, unconditional(cond))
        features = self.teacher.features(frozen["teacher"], x_t, t, cond)
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x_t.shape[0],))
        return features + [(jnp.log(self.process.sigma_ratio(t)) / 4.0)[:, None]]

    def logits(self, head_params: PyTree, frozen: PyTree, x0: Array, cond: Optional[Array], rng: Array, image: Optional[Array] = None) -> Array:
        """D(F(view of x0)) for a batch of clean samples (real or generated), conditioned on ``cond``
        and the image embedding ``image`` (c_img, None: none)."""
        t = self.discriminator_time(derive(rng, "time"), x0.shape[0])
        x = self.discriminator_view(x0, t, derive(rng, "noise"))
        return apply_head(self.head, head_params, self.head_features({}, frozen, x, t, cond), cond, image)

    def critic_loss(self, params: dict, frozen: PyTree, batch: Batch, x_g: Array, cond: Optional[Array], rng: Array) -> tuple[Array, Metrics]:
        """The heads' GAN loss on real (ADD) / synthetic (LADD) data against stop-gradient student
        samples, at a shared t̂ with independent noise, plus ADD's R1 penalty on the real features.
        With image conditioning both read c_img of the real samples, from the real features' pass."""
        n = x_g.shape[0]
        t = self.discriminator_time(derive(rng, "disc_time"), n)
        real = self.discriminator_view(batch["x"], t, derive(rng, "disc_real_noise"))
        fake = self.discriminator_view(x_g, t, derive(rng, "disc_fake_noise"))
        if self.image_conditioned:  # ADD views x0 itself: its features and c_img in one pass
            features_real, image = self.image_features.outputs(frozen["discriminator"], real)
        else:
            features_real, image = self.head_features({}, frozen, real, t, cond), None
        logit_fn = lambda f: apply_head(self.head, params["head"], f, cond, image)
        logit_real = logit_fn(features_real)
        logit_fake = logit_fn(self.head_features({}, frozen, fake, t, cond))
        loss = discriminator_loss(logit_real, logit_fake, self.settings.gan_loss)
        metrics = {"disc_loss": loss, "logit_real": jnp.mean(logit_real), "logit_fake": jnp.mean(logit_fake)}
        if self.settings.r1_weight > 0:
            r1 = r1_penalty(logit_fn, features_real, self.settings.r1_weight)
            loss, metrics = loss + r1, {**metrics, "r1": r1}
        return loss, metrics

    # ---------------------------------------------------------------- student
    def distill_weights(self, t: Array) -> Array:
        """c(t): (1 + (s(t) / sigma_data)^2)^(-1/2) ("alpha") or 1 ("none"), shape [B]."""
        if self.settings.distill_weighting == "none":
            return jnp.ones_like(t)
        return jax.lax.rsqrt(1.0 + jnp.square(self.process.sigma_ratio(t) / self.sigma_data))

    def distill_noise(self, rng: Array, x_g: Array) -> tuple[Array, Array]:
        """(t, eps'): the teacher time (``sample_t``) and renoising noise of ADD's distillation term."""
        return self.sample_t(derive(rng, "distill_time"), x_g.shape[0]), jax.random.normal(derive(rng, "distill_noise"), x_g.shape, x_g.dtype)

    def distillation_loss(self, frozen: PyTree, x_g: Array, cond: Optional[Array], t: Array, eps: Array) -> Array:
        """mean_b c(t_b) ||x̂_b - sg(D_T(alpha_t x̂_b + sigma_t eps'_b, t_b))||^2 / d."""
        x_t = self.process.add_noise(jax.lax.stop_gradient(x_g), eps, t)
        target = jax.lax.stop_gradient(self.teacher_x0(frozen, x_t, t, cond))
        return jnp.mean(self.distill_weights(t) * squared_l2(x_g, target))

    def student_loss(
        self, nets: dict, frozen: PyTree, x_g: Array, cond: Optional[Array], rng: Array, image: Optional[Array] = None
    ) -> tuple[Array, Metrics]:
        """L_adv(x̂) + lambda L_distill(x̂) for student samples x̂ (differentiable); ``image``: c_img of
        the real samples the student's inputs were diffused from."""
        adv = generator_gan_loss(self.logits(nets["head"], frozen, x_g, cond, derive(rng, "gan"), image), self.settings.gan_loss)
        loss, metrics = adv, {"adv_loss": adv}
        if self.settings.distill_weight > 0:
            t, eps = self.distill_noise(derive(rng, "distill"), x_g)
            distill = self.distillation_loss(frozen, x_g, cond, t, eps)
            loss, metrics = loss + self.settings.distill_weight * distill, {**metrics, "distill_loss": distill}
        return loss, {**metrics, "loss": loss}

    def generator_loss(self, params: PyTree, nets: dict, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Array, Metrics]:
        x_g, cond = self.generate_train(params, batch, derive(rng, "sample"))
        return self.student_loss(nets, frozen, x_g, cond, rng, self.head_image(frozen, batch))


def build(ctx, settings: AdversarialSettings) -> tuple[AdversarialDistillation, PyTree]:
    """The ADD / LADD objective of ``settings`` with the run's networks and teacher (and ADD's
    DINOv2 and the teacher's VAE decoder with ``discriminator = "dinov2"``)."""
    config, method = ctx.config, settings.method
    text = config.teacher.kind == "diffusers"
    check_text_run(ctx, settings, real_data="the discriminator's real samples", critic=False)
    if text and method == "ladd" and settings.num_synthetic > 0:
        raise ConfigError(
            "ladd: its pool of teacher samples is drawn at class labels, which carry no prompts; on a Stable Diffusion teacher "
            "set adversarial.num_synthetic=0 and train on a cache of the teacher's own samples ('jaxdistill cache --teacher-samples', LADD's synthetic data)"
        )
    if settings.discriminator == "dinov2" and not text:
        raise ConfigError(f"adversarial.discriminator='dinov2' reads VAE-decoded images: it needs teacher.kind='diffusers', not {config.teacher.kind!r}")
    parts, frozen = generator_parts(ctx, settings, critic=False, head=True)
    if settings.discriminator == "dinov2":
        decoder, vae_params = load_sd_vae(config.teacher.path)
        try:
            dinov2, dinov2_params = load_dinov2(settings.dinov2_path, settings.dinov2_layers)
        except ValueError as err:
            raise ConfigError(f"adversarial.{err}") from err
        parts["image_features"] = LatentDinov2(decoder, dinov2)
        frozen = {**frozen, "discriminator": {"vae": vae_params, "dinov2": dinov2_params}}
    return AdversarialDistillation(settings=settings, **parts), frozen
