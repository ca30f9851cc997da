"""Shared machinery of distribution-matching and adversarial distillation.

These methods train a few-step generator G with a frozen teacher T and, depending on the
method, a trainable fake-score **critic** F (a denoiser fitted to G's own samples) and a
discriminator **head** on some backbone's features. One jit-compiled step runs

1. *critic phase*: ``n(step)`` updates of the critic and head (the two-time-scale update
   rule, TTUR), each on fresh stop-gradient generator samples; ``n`` comes from
   ``critic_schedule = ((from_step, n), ...)``, a traced function of the step, so changing
   ratio mid-run never recompiles. ``critic_loop`` says how the updates are compiled:
   ``"unrolled"`` (the largest ``n`` updates, those beyond ``n(step)`` discarded) or ``"loop"``
   (a ``lax.fori_loop`` to ``n(step)``: one compiled update whatever ``n``, and no work beyond
   ``n(step)``); ``"auto"`` unrolls on CPU, where convolution gradients inside control flow run
   much slower (``experiments/critic_phase_timing.py``), and loops on accelerators. The
   generator does not change during the phase, so the samples of all its updates come from one
   batched generator forward before the first (``critic_samples``; a looped phase with a varying
   schedule draws them inside the loop instead, so it never generates beyond ``n(step)``);
2. *generator phase*: one update of G on the method's ``generator_loss``, then G's EMA.

Subclasses supply ``generator_loss`` (and optionally ``critic_loss``, which defaults to
denoising score matching of F on the generator's samples) and ``passes_per_sample``.

**Generator.** G is a denoiser of the teacher's process used as a K-step sampler
(K = ``generator_steps``) on a Karras grid t_0 > t_1 > ... > t_{K-1} from t_0 = t_max, or from
the noise level ``init_sigma`` when it is > 0 (SiD's generator input, sigma = 2.5, Zhou et al.
2024; the input is then sigma(t_0) z). ``later_step_sigmas`` replaces t_1..t_{K-1} by given
noise levels, e.g. DMD2's SDXL grid (DDPM steps 999, 749, 499, 249: sigma 14.6, 4.08, 1.61,
0.69 for unit-variance data under SD's schedule; ``jaxdistill.diffusion.ddpm_grid``) scaled to
another benchmark's sigma_data:
x0 = G(x_{t_i}, t_i), then x_{t_{i+1}} = alpha x0 + sigma eps (the multistep consistency
sampler); stopping after ``nfe <= K`` steps returns that step's x0. Training draws the step
index i per sample; for i > 0 the input x_{t_i} comes from running G's own chain from noise
without gradient (DMD2's *backward simulation*, Yin et al. 2024) or, with
``backward_simulation=False``, from noised training data.

**Noise levels** for the teacher/critic comparison: u ~ U[u_min, u_max] mapped through
Karras' rho-interpolation between the process's smallest and largest noise ratio,
s(u) = (s_min^(1/rho) + u (s_max^(1/rho) - s_min^(1/rho)))^rho.

Guidance (x_u + w (x_c - x_u)) applies to the teacher only.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.rng import derive
from jaxdistill.core.state import NetState, make_optimizer
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.data.t2i_cache import latent_source, read_manifest
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess
from jaxdistill.diffusion.steps import karras_grid, karras_sigma, sigma_ratio_range
from jaxdistill.models.discriminator import DiscriminatorHead, apply_head
from jaxdistill.objectives.common import microbatch_grad, overlay_params, refuse_sample_plots
from jaxdistill.objectives.denoising import batch_labels, denoising_loss

CRITIC_NETS = ("critic", "head")
CRITIC_LOOPS = ("auto", "unrolled", "loop")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GeneratorSettings:
    """Settings every generator method shares; each method's subclass sets its paper's values
    (module docstring for what they mean)."""

    section: ClassVar[str] = ""  # the run config's section holding these settings
    method: ClassVar[str] = ""  # the method's name in the CLI and the registry

    generator_steps: int = 1
    init_sigma: float = 0.0  # generator input noise level; 0: the process's t_max (pure noise)
    later_step_sigmas: tuple[float, ...] = ()  # noise levels (sigma ratios) of steps 2..K, decreasing; (): the Karras grid
    backward_simulation: bool = True
    critic_schedule: tuple[tuple[int, int], ...] = ((0, 1),)  # ((from_step, critic updates per generator update), ...)
    critic_loop: str = "auto"  # "unrolled" | "loop" | "auto" (unrolled on CPU)
    u_range: tuple[float, float] = (0.02, 0.98)
    rho: float = 7.0
    init_from_teacher: bool = True  # generator from the teacher's weights (network teachers only)
    critic_from_teacher: bool = True  # critic from the teacher's weights (network teachers only)
    critic_lr: float = 0.0  # 0: the generator's optim.lr
    head_lr: float = 0.0
    head_hidden: int = 256
    head_per_position: bool = False  # a head at every feature position instead of on pooled features

    def __post_init__(self):
        if self.generator_steps < 1:
            raise ValueError(f"generator_steps must be >= 1, got {self.generator_steps}")
        starts = [int(s) for s, _ in self.critic_schedule]
        if not starts or starts[0] != 0 or starts != sorted(starts) or any(int(n) < 0 for _, n in self.critic_schedule):
            raise ValueError(f"critic_schedule must be ((0, n0), (step1, n1), ...) with increasing steps, n >= 0; got {self.critic_schedule}")
        if self.critic_loop not in CRITIC_LOOPS:
            raise ValueError(f"critic_loop must be one of {CRITIC_LOOPS}, got {self.critic_loop!r}")
        if not 0.0 <= self.u_range[0] < self.u_range[1] <= 1.0:
            raise ValueError(f"u_range must satisfy 0 <= u_min < u_max <= 1, got {self.u_range}")
        if self.critic_lr < 0 or self.head_lr < 0:
            raise ValueError(f"critic_lr and head_lr must be >= 0 (0: optim.lr), got {self.critic_lr}, {self.head_lr}")


def critic_updates(schedule: Sequence[Sequence[int]], step: Array) -> Array:
    """n(step) of a piecewise-constant schedule ((from_step, n), ...) sorted by from_step."""
    n = jnp.asarray(schedule[0][1], jnp.int32)
    for start, value in schedule[1:]:
        n = jnp.where(jnp.asarray(step) >= start, jnp.int32(value), n)
    return n


def generator_step_of_critic_update(schedule: Sequence[Sequence[int]], count: Array) -> Array:
    """The generator step (fractional) at which the critic makes its ``count``-th update:
    the inverse of the cumulative count of ``schedule``. Critic and head optimisers read
    their warm-up/decay schedules through it, so with n updates per generator update their
    learning rate still decays over the run's generator steps rather than n times faster."""
    count = jnp.asarray(count, jnp.float32)
    step, done = jnp.zeros_like(count), 0.0
    bounds = [int(s) for s, _ in schedule]
    for i, (start, n) in enumerate(schedule):
        if int(n) > 0:
            step = jnp.where(count >= done, start + (count - done) / int(n), step)
        if i + 1 < len(schedule):
            done += int(n) * (bounds[i + 1] - int(start))
    return step


def mean_critic_updates(schedule: Sequence[Sequence[int]], total_steps: int) -> float:
    """Average n(step) over a run of ``total_steps`` generator updates."""
    bounds = [int(s) for s, _ in schedule] + [max(total_steps, int(schedule[-1][0]))]
    counts = [max(min(b, total_steps) - min(a, total_steps), 0) for a, b in zip(bounds[:-1], bounds[1:])]
    return sum(c * int(n) for c, (_, n) in zip(counts, schedule)) / max(total_steps, 1)


@dataclasses.dataclass(frozen=True)
class GeneratorDistillation:
    """Base of the generator/critic/head objectives; see the module docstring."""

    settings: GeneratorSettings
    generator: Denoiser
    generator_init_fn: object  # (rng, example_x) -> params
    tx: optax.GradientTransformation
    event_shape: tuple[int, ...]
    total_steps: int
    teacher: Optional[Denoiser] = None
    critic: Optional[Denoiser] = None
    critic_init_fn: object = None
    tx_critic: Optional[optax.GradientTransformation] = None
    head: Optional[DiscriminatorHead] = None
    tx_head: Optional[optax.GradientTransformation] = None
    num_classes: int = 0
    guidance: Optional[float] = None
    ema_decay: float = 0.999
    eval_nfes: Sequence[int] = (1,)
    data_mean: Optional[tuple[float, ...]] = None  # the prior's mean is alpha(t_max) times this
    microbatches: int = 1  # train.microbatches: every gradient accumulated over this many parts of the batch
    # Whether the method's losses take a head's per-position logits [B, P] (GAN losses that
    # average every logit) or need one logit per sample (a density ratio, a per-sample weight).
    per_position_logits: ClassVar[bool] = False

    def __post_init__(self):
        if self.head is not None and self.head.per_position and not self.per_position_logits:
            raise ValueError(f"{self.name} needs one discriminator logit per sample: set head_per_position = False")
        s_min, s_max = self.sigma_range()
        if not 0.0 <= self.settings.init_sigma <= s_max:
            raise ValueError(f"init_sigma must be in [0, {s_max:g}] (0: the process's largest noise level), got {self.settings.init_sigma}")
        if self.settings.later_step_sigmas:
            first = self.settings.init_sigma if self.settings.init_sigma > 0 else s_max
            levels = [first, *self.settings.later_step_sigmas, s_min]
            if len(self.settings.later_step_sigmas) != self.settings.generator_steps - 1 or any(a <= b for a, b in zip(levels[:-1], levels[1:])):
                raise ValueError(
                    f"later_step_sigmas must hold generator_steps - 1 = {self.settings.generator_steps - 1} decreasing noise levels "
                    f"between the first step's {first:g} and the smallest {levels[-1]:g}, got {self.settings.later_step_sigmas}"
                )
        bad = [n for n in self.eval_nfes if not 1 <= n <= self.settings.generator_steps]
        if bad:
            raise ValueError(f"eval NFEs {bad} outside 1..generator_steps={self.settings.generator_steps}")

    # ------------------------------------------------------------------ basics
    @property
    def name(self) -> str:
        return self.settings.method

    @property
    def process(self) -> NoiseProcess:
        return self.generator.process

    @property
    def max_critic_updates(self) -> int:
        return max(int(n) for _, n in self.settings.critic_schedule)

    @property
    def loops_critic_updates(self) -> bool:
        """Whether the critic phase is a ``lax.fori_loop`` (see ``critic_loop``); one update is
        never looped."""
        if self.max_critic_updates < 2:
            return False
        return self.settings.critic_loop == "loop" or (self.settings.critic_loop == "auto" and jax.default_backend() != "cpu")

    @property
    def trains_critic_phase(self) -> bool:
        return self.max_critic_updates > 0 and (self.critic is not None or self.head is not None)

    def prior(self, rng: Array, num: int) -> Array:
        """The generator's input: the process prior at t_max, or at t_0 = t(init_sigma) when ``init_sigma`` > 0."""
        t0 = None if self.settings.init_sigma <= 0 else self.generator_times()[0]
        return self.process.prior_sample(rng, (num, *self.event_shape), self.data_mean, t0)

    def prepare(self, frozen: PyTree, rng: Array) -> PyTree:
        return frozen

    def teacher_prior(self, rng: Array, num: int) -> Array:
        """Pure noise at t_max, where the teacher's ODE sampler starts (pair sets, synthetic data)."""
        return self.process.prior_sample(rng, (num, *self.event_shape), self.data_mean)

    def generator_times(self) -> Array:
        """t_0 > ... > t_{K-1}: the first K points of a K-step Karras grid from t_max (or from
        ``init_sigma``) down to the smallest noise level; t_1.. at ``later_step_sigmas`` when given."""
        if self.settings.init_sigma <= 0:
            times = karras_grid(self.process, self.settings.generator_steps, rho=self.settings.rho, t_end=self.process.t_min)[: self.settings.generator_steps]
        else:
            s_min = self.sigma_range()[0]
            ratios = [karras_sigma(i / self.settings.generator_steps, self.settings.init_sigma, s_min, self.settings.rho) for i in range(self.settings.generator_steps)]
            times = self.process.t_from_sigma_ratio(jnp.asarray(ratios, jnp.float32))
        if not self.settings.later_step_sigmas:
            return times
        later = self.process.t_from_sigma_ratio(jnp.asarray(self.settings.later_step_sigmas, jnp.float32))
        return jnp.concatenate([times[:1], later])

    def sigma_range(self) -> tuple[float, float]:
        return sigma_ratio_range(self.process)

    def sample_t(self, rng: Array, n: int) -> Array:
        """Noise times for the teacher/critic comparison (Karras rho-map of u ~ U[u_min, u_max])."""
        s_min, s_max = self.sigma_range()
        u = jax.random.uniform(rng, (n,), minval=self.settings.u_range[0], maxval=self.settings.u_range[1])
        return self.process.t_from_sigma_ratio(karras_sigma(u, s_min, s_max, self.settings.rho))

    def noised(self, x0: Array, rng: Array, t: Array) -> tuple[Array, Array]:
        """(x_t = alpha x0 + sigma eps, eps)."""
        eps = jax.random.normal(rng, x0.shape, x0.dtype)
        return self.process.add_noise(x0, eps, t), eps

    def teacher_x0(self, frozen: PyTree, x_t: Array, t: Array, cond: Optional[Array]) -> Array:
        guidance = self.guidance if cond is not None else None
        return self.teacher.x0(frozen["teacher"], x_t, t, cond, guidance=guidance)

    # ---------------------------------------------------------------- states
    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        x = batch["x"]
        params = self.generator_init_fn(derive(rng, "generator"), x)
        if self.settings.init_from_teacher:
            params = overlay_params(params, frozen["teacher"])
        trainable = {"generator": NetState.create(params, self.tx)}
        if self.critic is not None:
            critic_params = self.critic_init_fn(derive(rng, "critic"), x)
            if self.settings.critic_from_teacher:
                critic_params = overlay_params(critic_params, frozen["teacher"])
            trainable["critic"] = NetState.create(critic_params, self.tx_critic, use_ema=False)
        if self.head is not None:
            t = jnp.full((x.shape[0],), self.process.t_max, jnp.float32)
            features = self.head_features({k: s.params for k, s in trainable.items()}, frozen, x, t, batch_labels(batch, self.num_classes))
            head_params = self.head.init(derive(rng, "head"), features, batch_labels(batch, self.num_classes), self.head_image(frozen, batch))
            trainable["head"] = NetState.create(head_params, self.tx_head, use_ema=False)
        return trainable

    def head_image(self, frozen: PyTree, batch: Batch) -> Optional[Array]:
        """The image embedding [B, E] the head is conditioned on for ``batch`` (ADD's c_img); none by default."""
        return None

    def head_features(self, params: dict, frozen: PyTree, x_t: Array, t: Array, cond: Optional[Array]) -> list[Array]:
        """The backbone features the head reads: the critic's (DMD2, f-distill, SiDA) by default;
        adversarial methods override this with the teacher's."""
        return self.critic.features(params["critic"], x_t, t, cond)

    def head_logits(self, params: dict, frozen: PyTree, x_t: Array, t: Array, cond: Optional[Array]) -> Array:
        """The discriminator's logits D(features of x_t at t) with the head ``params["head"]``."""
        return apply_head(self.head, params["head"], self.head_features(params, frozen, x_t, t, cond), cond)

    # -------------------------------------------------------------- generator
    def generator_x0(self, params: PyTree, x: Array, t: Array, cond: Optional[Array]) -> Array:
        return self.generator.x0(params, x, t, cond)

    def chain(self, params: PyTree, z: Array, cond: Optional[Array], rng: Array, nfe: int) -> tuple[Array, list[Array]]:
        """Run G's first ``nfe`` steps from noise z: (final x0, inputs x_{t_i} of each step)."""
        ts = self.generator_times()
        x, inputs = z, []
        x0 = z
        for i in range(nfe):
            inputs.append(x)
            x0 = self.generator_x0(params, x, ts[i], cond)
            if i + 1 < nfe:
                x = self.process.add_noise(x0, jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype), ts[i + 1])
        return x0, inputs

    def generator_inputs(self, params: PyTree, batch: Batch, cond: Optional[Array], rng: Array) -> tuple[Array, Array]:
        """(x_{t_i}, t_i) per sample: the input of a uniformly drawn generator step i."""
        n = batch["x"].shape[0]
        z = self.prior(derive(rng, "prior"), n)
        ts = self.generator_times()
        if self.settings.generator_steps == 1:
            return z, jnp.broadcast_to(ts[0], (n,))
        index = jax.random.randint(derive(rng, "gen_step"), (n,), 0, self.settings.generator_steps)
        if self.settings.backward_simulation:
            _, inputs = self.chain(jax.lax.stop_gradient(params), z, cond, derive(rng, "simulate"), self.settings.generator_steps)
            stacked = jnp.stack(inputs)
        else:
            eps = jax.random.normal(derive(rng, "data_noise"), batch["x"].shape, batch["x"].dtype)
            stacked = jnp.stack([z] + [self.process.add_noise(batch["x"], eps, t) for t in ts[1:]])
        x = jnp.take_along_axis(stacked, index.reshape((1, n) + (1,) * (stacked.ndim - 2)), axis=0)[0]
        return jax.lax.stop_gradient(x), ts[index]

    def generate_train(self, params: PyTree, batch: Batch, rng: Array) -> tuple[Array, Optional[Array]]:
        """(x_g, cond): generator samples (differentiable in ``params``) at the batch's labels."""
        cond = batch_labels(batch, self.num_classes)
        x, t = self.generator_inputs(params, batch, cond, rng)
        return self.generator_x0(params, x, t, cond), cond

    # ----------------------------------------------------------------- critic
    def critic_loss(self, params: dict, frozen: PyTree, batch: Batch, x_g: Array, cond: Optional[Array], rng: Array) -> tuple[Array, Metrics]:
        """Denoising score matching of the critic on stop-gradient generator samples,
        at the teacher's training noise distribution."""
        t = self.process.sample_t(derive(rng, "critic_time"), x_g.shape[0])
        eps = jax.random.normal(derive(rng, "critic_noise"), x_g.shape, x_g.dtype)
        loss = jnp.mean(denoising_loss(self.critic, params["critic"], x_g, eps, t, cond, {"dropout": derive(rng, "dropout")}))
        return loss, {"critic_loss": loss}

    def critic_samples(self, generator_params: PyTree, batch: Batch, rngs: Array) -> Array:
        """x_g [M, B, ...]: stop-gradient generator samples (at the batch's labels) for the M
        critic updates whose keys are ``rngs`` [M], update i's what ``generate_train`` draws on
        derive(rngs[i], "critic_samples"), in one batched generator forward (``vmap`` folds M
        into the networks' batch dimension)."""
        draw = lambda key: self.generate_train(generator_params, batch, derive(key, "critic_samples"))[0]
        return jax.lax.stop_gradient(jax.vmap(draw)(rngs))

    def critic_update(self, trainable: Trainable, frozen: PyTree, batch: Batch, x_g: Array, cond: Optional[Array], rng: Array) -> tuple[Trainable, Metrics]:
        """One update of the critic and head on the stop-gradient generator samples ``x_g`` drawn at
        the labels ``cond``, the gradient accumulated over ``microbatches`` parts of batch, samples and labels."""
        names = [k for k in CRITIC_NETS if k in trainable]
        params = {k: trainable[k].params for k in names}
        loss = lambda p, part, key: self.critic_loss(p, frozen, part["batch"], part["x_g"], part["cond"], key)
        grads, metrics = microbatch_grad(loss, params, {"batch": batch, "x_g": x_g, "cond": cond}, rng, self.microbatches)
        out = dict(trainable)
        for k in names:
            out[k], opt_metrics = trainable[k].apply_gradients(grads[k])
            metrics[f"{k}_grad_norm"] = opt_metrics["grad_norm"]
        return out, metrics

    def critic_phase(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        """``critic_updates(step)`` critic updates, update i on key fold_in(rng, i) and samples
        ``critic_samples`` draws for that key. Looped (``loops_critic_updates``): a
        ``lax.fori_loop`` to n(step). Unrolled: the schedule's maximum, update i kept where
        i < n(step) (so a varying schedule computes its maximum every step); on XLA:CPU this is
        the fast form, as convolution gradients inside control flow run much slower there
        (``experiments/critic_phase_timing.py`` measures it; README has the numbers)."""
        n = critic_updates(self.settings.critic_schedule, step)
        varying = len({int(k) for _, k in self.settings.critic_schedule}) > 1
        keys = jax.vmap(lambda i: jax.random.fold_in(derive(rng, "critic_phase"), i))(jnp.arange(self.max_critic_updates))
        generator_params = trainable["generator"].params
        # Drawn per update where a looped varying phase must do no generator work beyond n(step), and
        # under accumulation, where M batches of samples at once would outgrow a microbatch's memory.
        if (self.loops_critic_updates and varying) or self.microbatches > 1:
            x_g = lambda i: self.critic_samples(generator_params, batch, keys[i][None])[0]
        else:
            x_all = self.critic_samples(generator_params, batch, keys)
            x_g = lambda i: x_all[i]
        cond = batch_labels(batch, self.num_classes)
        update = lambda state, i: self.critic_update(state, frozen, batch, x_g(i), cond, keys[i])
        metrics: Metrics = {}
        if varying or self.loops_critic_updates:  # metrics of the updates skipped at n(step) = 0
            _, metric_shapes = jax.eval_shape(update, trainable, 0)
            metrics = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)
        if self.loops_critic_updates:
            body = lambda i, carry: update(carry[0], i)
            trainable, metrics = jax.lax.fori_loop(0, n, body, (trainable, metrics))
            return trainable, {**metrics, "critic_updates": n.astype(jnp.float32)}
        for i in range(self.max_critic_updates):
            updated, update_metrics = update(trainable, i)
            if varying:
                keep = i < n
                updated = jax.tree.map(lambda new, old: jnp.where(keep, new, old), updated, trainable)
                update_metrics = jax.tree.map(lambda new, old: jnp.where(keep, new, old), update_metrics, metrics)
            trainable, metrics = updated, update_metrics
        return trainable, {**metrics, "critic_updates": n.astype(jnp.float32)}

    def real_fake_logits(self, params: dict, frozen: PyTree, real_t: Array, fake_t: Array, t: Array, cond: Optional[Array]) -> tuple[Array, Array]:
        """(D(real_t), D(fake_t)) at the same times and labels, from one feature pass and head
        call on concat([real_t, fake_t]) (networks and heads act per sample)."""
        both = lambda tree: jax.tree.map(lambda a: jnp.concatenate([a, a]), tree)  # labels, a TextCondition or None
        logits = self.head_logits(params, frozen, jnp.concatenate([real_t, fake_t]), both(t), both(cond))
        return logits[: real_t.shape[0]], logits[real_t.shape[0] :]

    # ------------------------------------------------------------------- step
    def generator_loss(self, params: PyTree, nets: dict, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Array, Metrics]:
        """The method's generator loss; ``nets`` holds the current critic/head parameters."""
        raise NotImplementedError

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        metrics: Metrics = {}
        if self.trains_critic_phase:
            trainable, metrics = self.critic_phase(trainable, frozen, batch, derive(rng, "critic"), step)
        nets = {k: jax.lax.stop_gradient(trainable[k].params) for k in CRITIC_NETS if k in trainable}
        loss = lambda params, part, key: self.generator_loss(params, nets, frozen, part, key, step)
        grads, gen_metrics = microbatch_grad(loss, trainable["generator"].params, batch, derive(rng, "generator"), self.microbatches)
        state, opt_metrics = trainable["generator"].apply_gradients(grads, self.ema_decay)
        return {**trainable, "generator": state}, {**metrics, **gen_metrics, **opt_metrics}

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        if not 1 <= nfe <= self.settings.generator_steps:
            raise ValueError(f"this generator has {self.settings.generator_steps} step(s); nfe must be in 1..{self.settings.generator_steps}, got {nfe}")
        x0, _ = self.chain(trainable["generator"].eval_params, noise, cond, rng, nfe)
        return x0


def generator_parts(ctx, settings: GeneratorSettings, *, critic: bool, head: bool) -> tuple[dict, PyTree]:
    """The networks, optimisers and run-level fields of a ``GeneratorDistillation`` (everything
    but its settings), and the frozen tree (the teacher's parameters)."""
    config = ctx.config
    ctx.require_teacher_weights(settings, "init_from_teacher", *(("critic_from_teacher",) if critic else ()))
    teacher, teacher_params = ctx.teacher()
    process = teacher.process
    network = functools.partial(teacher_network, teacher, teacher_params) if config.teacher.kind == "diffusers" else ctx.network
    generator, generator_init = network(process, config.prediction)
    parts = dict(generator=generator, generator_init_fn=generator_init, teacher=teacher, **ctx.run_fields())
    if critic:
        parts["critic"], parts["critic_init_fn"] = network(process, config.prediction)
        parts["tx_critic"] = _optimizer_with_lr(config.optim, settings.critic_lr, settings.critic_schedule)
    if head:
        parts["head"] = DiscriminatorHead(hidden=settings.head_hidden, num_classes=ctx.num_classes, per_position=settings.head_per_position)
        parts["tx_head"] = _optimizer_with_lr(config.optim, settings.head_lr, settings.critic_schedule)
    return parts, {"teacher": teacher_params}


def check_text_run(ctx, settings: GeneratorSettings, *, real_data: Optional[str], critic: bool = True) -> None:
    """ConfigErrors for a generator method on a text-to-image teacher (``teacher.kind="diffusers"``):
    its generator and critic (``critic``: the method has one) are the teacher's UNet, so they start from its weights; the engine's
    sample plots carry no prompts (as for ``lcm``); and a term that reads data latents (``real_data``
    names it, None: none does; later generator steps without backward simulation start from noised
    data too) needs a cache written with them (``jaxdistill cache --images`` or ``--teacher-samples``)."""
    config = ctx.config
    if config.teacher.kind != "diffusers":
        return
    name = settings.method
    flags = [f for f in ("init_from_teacher", *(("critic_from_teacher",) if critic else ())) if not getattr(settings, f)]
    if flags:
        raise ConfigError(f"{name}: with a Stable Diffusion teacher the generator and critic are its UNet and start from its weights; set {settings.section}.{flags[0]}=True")
    refuse_sample_plots(config, name)
    if real_data is None and settings.generator_steps > 1 and not settings.backward_simulation:
        real_data = f"{settings.section}.backward_simulation=False (later generator steps start from noised data)"
    if real_data is None or config.data.name != "t2i_cache":
        return
    manifest = read_manifest(str(config.data.path))
    if manifest is not None and latent_source(manifest["settings"]) is None:
        raise ConfigError(
            f"{name}: {real_data} reads image latents, but the cache {config.data.path!r} holds text only; write it with 'jaxdistill cache --images FIELD' "
            "(real images) or '--teacher-samples' (the teacher's own samples, LADD's synthetic data)"
        )


def teacher_network(teacher: Denoiser, teacher_params: PyTree, process: NoiseProcess, prediction: str) -> tuple[Denoiser, Callable]:
    """(denoiser, init_fn) of a network with the teacher's architecture, for a teacher that brings its
    own network (a Stable Diffusion folder's UNet, ``teacher.kind="diffusers"``): the teacher's
    denoiser (its process, prediction and text conditioning; the run's ``prediction`` does not apply)
    and float32 zeros of its parameter tree, which ``init_from_teacher`` / ``critic_from_teacher``
    (or a LoRA on the teacher's weights) fill."""
    del process, prediction  # the teacher's own
    init_fn = lambda rng, x: jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32), teacher_params)  # noqa: E731
    return teacher, init_fn


def _optimizer_with_lr(optim: ml_collections.ConfigDict, lr: float, critic_schedule: tuple) -> optax.GradientTransformation:
    """The run's optimiser for a critic or head with learning rate ``lr`` (0 keeps ``optim.lr``):
    per-network rates, on a warm-up/decay clock of generator steps (see
    ``generator_step_of_critic_update``)."""
    cfg = optim.copy_and_resolve_references()
    if lr > 0:
        cfg.lr = lr
    return make_optimizer(cfg, clock=functools.partial(generator_step_of_critic_update, critic_schedule))
