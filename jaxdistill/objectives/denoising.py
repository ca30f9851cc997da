"""Teacher training: denoising score matching and flow matching.

For x0 ~ data, eps ~ N(0, I), t ~ p(t) and x_t = alpha(t) x0 + sigma(t) eps, the
network of prediction kind k regresses its own target (Ho et al. 2020; Salimans & Ho
2022; Karras et al. 2022; Lipman et al. 2023 / Liu et al. 2023):

    L = E_t w(t) || F_theta(x_t, t, c) - target_k(x0, eps, t) ||^2

with target_eps = eps, target_x0 = x0, target_v = alpha eps - sigma x0,
target_flow = alpha'(t) x0 + sigma'(t) eps, and for "edm" the preconditioned target
(x0 - c_skip y) / c_out (which makes w = 1 exactly EDM's loss weighting).
Weightings: ``"none"`` (w = 1 on the network's own target) or ``"min_snr"``
(Hang et al. 2023: the x0-space error weighted by min(SNR(t), gamma)).
Label dropout replaces a class label by NULL_LABEL (a text condition by its empty prompt) with
probability p, so the network learns the unconditional model too and classifier-free guidance works.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxdistill.core.conditioning import Condition, TextCondition, as_condition
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.phema import EmaRule, ema_rule
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState
from jaxdistill.core.types import NULL_LABEL, Array, Batch, PyTree
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.predict import target_for
from jaxdistill.diffusion.process import NoiseProcess
from jaxdistill.losses import mean_per_sample
from jaxdistill.objectives.common import check_choice, microbatch_grad

WEIGHTINGS = ("none", "min_snr")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Denoising:
    """Settings of teacher training (method ``teacher``)."""

    section: ClassVar[str] = "denoising"
    method: ClassVar[str] = "teacher"

    weighting: str = "none"  # "none": each prediction kind's own target; "min_snr": Hang et al. 2023
    min_snr_gamma: float = 5.0  # Hang et al. 2023: gamma = 5
    label_dropout: float = 0.1  # classifier-free guidance's unconditional rate (Ho & Salimans 2022)

    def __post_init__(self):
        check_choice("weighting", self.weighting, WEIGHTINGS)
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")


def drop_labels(rng: Array, labels: Array, p: float) -> Array:
    """Replace each label by NULL_LABEL with probability ``p``."""
    drop = jax.random.bernoulli(rng, p, labels.shape)
    return jnp.where(drop, NULL_LABEL, labels)


def drop_condition(rng: Array, cond: Condition, p: float) -> Condition:
    """Each example's condition replaced by its unconditional counterpart with probability ``p``:
    a label by NULL_LABEL, a ``TextCondition``'s prompt by its negative (empty) prompt, as Stable
    Diffusion's training drops captions (Rombach et al. 2022; Ho & Salimans 2022)."""
    if not isinstance(cond, TextCondition):
        return drop_labels(rng, cond, p)
    drop = jax.random.bernoulli(rng, p, (cond.embeds.shape[0],))
    dropped = cond.unconditional()
    pick = lambda c, u: None if c is None else jnp.where(drop.reshape((-1,) + (1,) * (c.ndim - 1)), u, c)  # noqa: E731
    return cond.replace(embeds=pick(cond.embeds, dropped.embeds), pooled=pick(cond.pooled, dropped.pooled))


def batch_labels(batch: Batch, num_classes: int) -> Optional[PyTree]:
    """The batch's conditioning: its ``cond`` entry when the data carry one (a text-to-image cache's
    ``TextCondition`` fields become the ``TextCondition``), else its labels for a conditional
    objective, ``None`` for an unconditional one."""
    if "cond" in batch:
        return as_condition(batch["cond"])
    return batch["label"].astype(jnp.int32) if num_classes > 0 else None


def denoising_loss(
    denoiser: Denoiser, params: PyTree, x0: Array, eps: Array, t: Array, cond: Optional[Array], rngs=None
) -> Array:
    """Per-sample || F_theta(x_t, t, c) - target_k(x0, eps, t) ||^2 / d at x_t = alpha x0 + sigma eps, shape [B]."""
    x_t = denoiser.process.add_noise(x0, eps, t)
    out = denoiser.raw(params, x_t, t, cond, train=True, rngs=rngs)
    target = target_for(denoiser.prediction, x0, eps, t, denoiser.process, sigma_data=denoiser.sigma_data)
    return mean_per_sample(jnp.square(out - target))


@dataclasses.dataclass(frozen=True)
class DenoisingObjective:
    """Trains one network (``"model"``) as a diffusion / flow teacher."""

    settings: Denoising
    denoiser: Denoiser
    init_fn: object  # (rng, example_x) -> params
    tx: optax.GradientTransformation
    event_shape: tuple[int, ...]
    num_classes: int = 0
    ema_decay: EmaRule = 0.999  # a constant decay or a power-function EMA (core.phema.PowerEma)
    sampler: str = "heun"
    grid: str = "karras"  # the sampler's time grid (diffusion.steps.GRIDS; DDPM also leading / linspace / trailing)
    guidance: Optional[float] = None
    eval_nfes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64)
    data_mean: Optional[tuple[float, ...]] = None  # the prior's mean is alpha(t_max) times this
    microbatches: int = 1  # train.microbatches: gradients accumulated over this many parts of the batch
    name: ClassVar[str] = "teacher"

    @property
    def process(self) -> NoiseProcess:
        return self.denoiser.process

    @property
    def passes_per_sample(self) -> float:
        """One forward and one backward pass of the model per sample."""
        return 2.0

    def prepare(self, frozen: PyTree, rng: Array) -> PyTree:
        return frozen

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        params = self.init_fn(rng, batch["x"])
        return {"model": NetState.create(params, self.tx)}

    def loss(self, params: PyTree, batch: Batch, rng: Array) -> tuple[Array, Metrics]:
        x0 = batch["x"]
        n = x0.shape[0]
        t = self.process.sample_t(derive(rng, "time"), n)
        eps = jax.random.normal(derive(rng, "noise"), x0.shape, x0.dtype)
        cond = batch_labels(batch, self.num_classes)
        if cond is not None and self.settings.label_dropout > 0:
            cond = drop_condition(derive(rng, "label_dropout"), cond, self.settings.label_dropout)
        rngs = {"dropout": derive(rng, "dropout")}
        if self.settings.weighting == "none":
            per_sample = denoising_loss(self.denoiser, params, x0, eps, t, cond, rngs)
        else:
            x_t = self.process.add_noise(x0, eps, t)
            x0_hat = self.denoiser.x0(params, x_t, t, cond, train=True, rngs=rngs)
            snr = jnp.exp(self.process.logsnr(t))
            per_sample = jnp.minimum(snr, self.settings.min_snr_gamma) * mean_per_sample(jnp.square(x0_hat - x0))
        loss = jnp.mean(per_sample)
        return loss, {"loss": loss}

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        state = trainable["model"]
        grads, metrics = microbatch_grad(self.loss, state.params, batch, rng, self.microbatches)
        state, opt_metrics = state.apply_gradients(grads, self.ema_decay)
        return {"model": state}, {**metrics, **opt_metrics}

    def x0_fn(self, params: PyTree, cond: Optional[Array], guidance: Optional[float]):
        """The denoiser as ``x0_fn(x, t)`` for the samplers."""
        return lambda x, t: self.denoiser.x0(params, x, t, cond, guidance=guidance)

    def prior(self, rng: Array, num: int) -> Array:
        return self.process.prior_sample(rng, (num, *self.event_shape), self.data_mean)

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        params = trainable["model"].eval_params
        guidance = self.guidance if cond is not None else None
        return samplers.sample_nfe(self.x0_fn(params, cond, guidance), self.process, noise, nfe, self.sampler, grid=self.grid, rng=rng)


def build(ctx, settings: Denoising) -> tuple[DenoisingObjective, PyTree]:
    """The teacher-training objective of ``settings`` with the run's network."""
    config = ctx.config
    denoiser, init_fn = ctx.network(ctx.process(), config.prediction)
    objective = DenoisingObjective(
        settings=settings,
        denoiser=denoiser,
        init_fn=init_fn,
        tx=ctx.optimizer(),
        event_shape=ctx.event_shape,
        num_classes=ctx.num_classes,
        ema_decay=ema_rule(config.ema_decay, config.get("ema_sigma_rel")),
        sampler=config.eval.sampler,
        grid=config.eval.get("grid", "karras"),
        guidance=config.eval.guidance,
        eval_nfes=tuple(int(n) for n in config.eval.nfes),
        data_mean=ctx.data_mean,
        microbatches=ctx.microbatches,
    )
    return objective, {}
