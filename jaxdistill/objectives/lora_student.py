"""A single-student method trained as a LoRA (Hu et al. 2021) on the teacher's weights.

``LoraStudent`` wraps any :class:`StudentDistillation` objective (KD, progressive distillation,
consistency distillation, ECT, ...) whose student has the teacher's architecture. The student's
parameters, optimiser state and EMA are the LoRA factors only; inside every traced ``init``,
``step`` and ``generate`` the wrapped objective gets a student whose network computes with
``merge(frozen["teacher"], lora)`` = W + (alpha / r) A @ B, so the base weights are the frozen
teacher's (an explicit argument of the jitted step, never a constant) and are never trained or
checkpointed. A fresh LoRA (B = 0) makes the student the teacher exactly, which is what
``init_from_teacher`` asks of a full student.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax

from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.models.lora import LoraSpec, init_lora, merge
from jaxdistill.objectives.common import StudentDistillation


@dataclasses.dataclass(frozen=True)
class LoraStudent:
    """``inner`` with its student trained as a LoRA of ``spec`` on ``frozen["teacher"]``; every other
    attribute (name, event shape, eval NFEs, prior, pass counts ...) is ``inner``'s."""

    inner: StudentDistillation
    spec: LoraSpec

    @classmethod
    def wrap(cls, inner: Any, frozen: PyTree, example_x: Array, spec: LoraSpec) -> "LoraStudent":
        """The wrapper, after checking that ``inner`` trains one student of the teacher's architecture."""
        if not isinstance(inner, StudentDistillation):
            raise ValueError(f"lora: method {inner.name!r} trains more than one network; a LoRA student needs a single-student method")
        teacher = frozen.get("teacher") if isinstance(frozen, dict) else None
        student_shapes = jax.eval_shape(inner.student_init_fn, jax.random.key(0), example_x)
        same = teacher is not None and jax.tree.structure(teacher) == jax.tree.structure(student_shapes) and all(
            a.shape == b.shape for a, b in zip(jax.tree.leaves(teacher), jax.tree.leaves(student_shapes))
        )
        if not same:
            raise ValueError(f"lora: a LoRA student adapts the teacher's weights, so it needs a network teacher of the student's architecture (method {inner.name!r})")
        init_lora(student_shapes, spec, jax.random.key(0))  # targets that match no kernel fail here, naming some
        return cls(inner, spec)

    def bound(self, frozen: PyTree) -> StudentDistillation:
        """``inner`` whose student computes with ``merge(frozen["teacher"], lora)`` from LoRA parameters."""
        base, spec = frozen["teacher"], self.spec
        apply_fn = self.inner.student.apply_fn

        def lora_apply(lora: PyTree, *args, **kwargs):
            return apply_fn(merge(base, lora, spec), *args, **kwargs)

        student = dataclasses.replace(self.inner.student, apply_fn=lora_apply)
        settings = dataclasses.replace(self.inner.settings, init_from_teacher=False)
        return dataclasses.replace(self.inner, student=student, settings=settings, student_init_fn=lambda rng, x: init_lora(base, spec, rng))

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        return self.bound(frozen).init(rng, batch, frozen)

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        return self.bound(frozen).step(trainable, frozen, batch, rng, step)

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        return self.bound(frozen).generate(trainable, frozen, noise, cond, nfe=nfe, rng=rng)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("inner", "spec"):
            raise AttributeError(name)
        return getattr(self.inner, name)
