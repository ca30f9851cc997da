"""What several objectives share: option checks, parameter overlay for teacher initialisation,
pass counts, noise-level draws, gradient accumulation over microbatches, and
``StudentDistillation``, the base of the single-student methods."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.objective import Metrics
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess


def check_choice(label: str, value, choices) -> None:
    """Raise ``ValueError("unknown <label> <value>; choose one of <choices>")`` unless ``value in choices``."""
    if value not in choices:
        raise ValueError(f"unknown {label} {value!r}; choose one of {tuple(choices)}")


def overlay_params(init: PyTree, source: PyTree) -> PyTree:
    """``init`` with every leaf that ``source`` has at the same path and shape replaced by a copy of it
    in ``init``'s dtype (float32 master weights from a teacher stored in bfloat16).

    A student with extra conditioning inputs (``num_times > 1``) initialised this way from a
    plain teacher computes the teacher's function, since the extra embeddings start at zero.
    Raises ``ValueError`` if the trees share no leaf (a different architecture).
    """
    flat_init = traverse_util.flatten_dict(init)
    flat_src = traverse_util.flatten_dict(source)
    shared = [k for k in flat_init if k in flat_src and jnp.shape(flat_init[k]) == jnp.shape(flat_src[k])]
    if not shared:
        raise ValueError("the student and teacher networks share no parameter: init_from_teacher needs the same architecture")
    for k in shared:
        flat_init[k] = jnp.array(flat_src[k], dtype=jnp.result_type(flat_init[k]), copy=True)
    return traverse_util.unflatten_dict(flat_init)


def initial_student_params(init_fn, rng: Array, example_x: Array, frozen: PyTree, from_teacher: bool) -> PyTree:
    """The student's initial parameters: ``init_fn(rng, example_x)``, overlaid with the teacher's
    (``frozen["teacher"]``) when ``from_teacher``."""
    params = init_fn(rng, example_x)
    return overlay_params(params, frozen["teacher"]) if from_teacher else params


def teacher_passes(guidance) -> float:
    """Network passes of one teacher evaluation: two under classifier-free guidance (a batched
    conditional and unconditional pair), else one."""
    return 2.0 if guidance is not None else 1.0


def lognormal_t(rng: Array, n: int, p_mean: float, p_std: float) -> Array:
    """ln t ~ N(p_mean, p_std^2) (Karras et al. 2022), shape [n]."""
    return jnp.exp(p_mean + p_std * jax.random.normal(rng, (n,), jnp.float32))


def split_microbatches(tree: PyTree, k: int) -> PyTree:
    """Every leaf [B, ...] as [k, B / k, ...], microbatch i holding rows i, i + k, i + 2k, ...

    Strided rather than contiguous: a batch sharded over d devices in contiguous blocks of B / d
    rows keeps every microbatch spread over all d devices when k divides B / d.
    """

    def split(a: Array) -> Array:
        if a.ndim == 0 or a.shape[0] % k:
            raise ValueError(f"train.microbatches={k} must divide the batch; got an argument of shape {a.shape}")
        return jnp.swapaxes(a.reshape(a.shape[0] // k, k, *a.shape[1:]), 0, 1)

    return jax.tree.map(split, tree)


def microbatch_grad(
    loss_fn: Callable[[PyTree, PyTree, Array], tuple[Array, Metrics]], params: PyTree, batched: PyTree, rng: Array, microbatches: int = 1
) -> tuple[PyTree, Metrics]:
    """(grads, metrics) of ``loss_fn(params, batched, rng) -> (loss, metrics)``, accumulated over
    ``microbatches`` = k microbatches of the batch-sized tree ``batched`` (``split_microbatches``).

    k = 1 is ``jax.grad(loss_fn, has_aux=True)(params, batched, rng)``. For k > 1 a ``lax.scan``
    computes microbatch i's gradient with key ``fold_in(rng, i)`` and returns
    grad = 1/k sum_i grad L(params, batch_i, rng_i) and every metric's mean over the microbatches
    (sums in float32), so a loss that is a mean over equally sized microbatches gets its
    full-batch gradient and only one microbatch's activations are live at a time. Arguments that are
    not batch-sized (targets, other networks' parameters, the step) belong in ``loss_fn``'s closure.
    """
    grad_fn = jax.grad(loss_fn, has_aux=True)
    if microbatches == 1:
        return grad_fn(params, batched, rng)
    if microbatches < 1:
        raise ValueError(f"train.microbatches must be >= 1, got {microbatches}")
    parts = split_microbatches(batched, microbatches)
    first = jax.tree.map(lambda a: a[0], parts)
    shapes = jax.eval_shape(grad_fn, params, first, rng)
    wide = lambda s: jnp.promote_types(s.dtype, jnp.float32)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, wide(s)), shapes)

    def body(total, xs):
        i, part = xs
        out = grad_fn(params, part, jax.random.fold_in(rng, i))
        return jax.tree.map(lambda acc, x: acc + x.astype(acc.dtype), total, out), None

    total, _ = jax.lax.scan(body, zeros, (jnp.arange(microbatches), parts))
    return jax.tree.map(lambda acc, s: (acc / microbatches).astype(s.dtype), total, shapes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentDistillation:
    """What every method that trains one student network shares (KD, PD, guided distillation,
    consistency models, shortcut models, MeanFlow): its settings, the student denoiser with its
    init function and optimiser, the frozen teacher (when the method has one) and the run-level
    fields; the student's prior is its process's."""

    settings: Any
    student: Denoiser
    student_init_fn: Any  # (rng, example_x) -> params
    tx: optax.GradientTransformation
    event_shape: tuple[int, ...]
    teacher: Optional[Denoiser] = None
    num_classes: int = 0
    guidance: Optional[float] = None
    total_steps: int = 0  # the run's updates (curricula and automatic stage lengths read it)
    ema_decay: float = 0.999
    eval_nfes: Sequence[int] = (1,)
    data_mean: Optional[tuple[float, ...]] = None  # the prior's mean is alpha(t_max) times this
    microbatches: int = 1  # train.microbatches: gradients accumulated over this many parts of the batch

    @property
    def name(self) -> str:
        return self.settings.method

    @property
    def process(self) -> NoiseProcess:
        return self.student.process

    def prior(self, rng: Array, num: int) -> Array:
        return self.process.prior_sample(rng, (num, *self.event_shape), self.data_mean)

    def prepare(self, frozen: PyTree, rng: Array) -> PyTree:
        return frozen

    def initial_student(self, rng: Array, batch: Batch, frozen: PyTree) -> PyTree:
        """The student's initial parameters, the teacher's where ``settings.init_from_teacher``."""
        return initial_student_params(self.student_init_fn, rng, batch["x"], frozen, self.settings.init_from_teacher)


def refuse_sample_plots(config, method: str) -> None:
    """A ConfigError where ``train.sample_every`` > 0: the engine's sample plots draw class labels (or none),
    and a text-to-image student needs prompts' embeddings; sample from a cache batch's cond instead."""
    if int(config.train.sample_every) > 0:
        raise ConfigError(f"{method}: sample plots need prompts' embeddings, which train.sample_every's plots do not carry; set train.sample_every=0")
