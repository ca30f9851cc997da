"""Small pieces several objectives share: option checks, parameter overlay for teacher
initialisation, pass counts and noise-level draws."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxdistill.core.types import Array, PyTree


def check_choice(label: str, value, choices) -> None:
    """Raise ``ValueError("unknown <label> <value>; choose one of <choices>")`` unless ``value in choices``."""
    if value not in choices:
        raise ValueError(f"unknown {label} {value!r}; choose one of {tuple(choices)}")


def overlay_params(init: PyTree, source: PyTree) -> PyTree:
    """``init`` with every leaf that ``source`` has at the same path and shape replaced by a copy of it.

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
        flat_init[k] = jnp.array(flat_src[k], copy=True)
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
