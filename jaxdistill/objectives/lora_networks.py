"""A method's networks trained as LoRAs (Hu et al. 2021) on the frozen teacher's weights.

``LoraNetworks`` wraps an objective whose trained networks have the teacher's architecture and
adapts some of them: the student of a single-student method (:class:`StudentDistillation`: KD,
PD, consistency distillation, LCM-LoRA, ...) or the generator and/or the critic ("fake score") of a
generator method (:class:`GeneratorDistillation`: DMD2 with a LoRA generator, SwiftBrush with a
LoRA critic, ...). Each adapted network's state (parameters, optimiser moments, EMA) holds its LoRA
factors only; inside every traced ``init``, ``step`` and ``generate`` the wrapped objective gets that
network computing with ``merge(frozen["teacher"], lora)`` = W + (alpha / r) A @ B, so the base
weights are the frozen teacher's (an explicit argument of the jitted step, never a constant) and are
never trained or checkpointed. A fresh LoRA (B = 0) makes the network the teacher exactly, which is
what ``init_from_teacher`` / ``critic_from_teacher`` ask of a full network.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax

from jaxdistill.core.objective import Metrics, Trainable
from jaxdistill.core.types import Array, Batch, PyTree
from jaxdistill.models.lora import LoraSpec, init_lora, merge
from jaxdistill.objectives.common import StudentDistillation
from jaxdistill.objectives.generator import GeneratorDistillation

# network -> (the objective's denoiser field, its init-function field, the settings flag that starts it from the teacher)
NETWORKS: dict[str, tuple[str, str, str]] = {
    "student": ("student", "student_init_fn", "init_from_teacher"),
    "generator": ("generator", "generator_init_fn", "init_from_teacher"),
    "critic": ("critic", "critic_init_fn", "critic_from_teacher"),
}


def sampling_network(objective: Any) -> Optional[str]:
    """The network ``objective`` samples with: "student", "generator", or None (neither kind)."""
    if isinstance(objective, StudentDistillation):
        return "student"
    if isinstance(objective, GeneratorDistillation):
        return "generator"
    return None


def sampler_params(objective: Any, trainable: Trainable) -> tuple[PyTree, Optional[LoraSpec]]:
    """The evaluation (EMA) parameters of the network ``objective`` samples with and, where it is
    trained as a LoRA (``LoraNetworks``), the spec they are factors of: (LoRA factors, spec) or
    (full parameters, None). What an export writes. A ValueError for a method with no student or generator."""
    wrapped = isinstance(objective, LoraNetworks)
    name = sampling_network(objective.inner if wrapped else objective)
    if name is None:
        raise ValueError(f"method {objective.name!r} trains no student or generator (its states are {sorted(trainable)})")
    if wrapped and name in objective.specs:
        return objective.sampler_lora(trainable)
    return trainable[name].eval_params, None


def _same_tree(a: PyTree, b: PyTree) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(x.shape == y.shape for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _merged_apply(apply_fn, base: PyTree, spec: LoraSpec):
    """``apply_fn`` taking LoRA factors where it took parameters: it computes with merge(base, lora)."""

    def apply(lora: PyTree, *args, **kwargs):
        return apply_fn(merge(base, lora, spec), *args, **kwargs)

    return apply


@dataclasses.dataclass(frozen=True)
class LoraNetworks:
    """``inner`` with the networks named in ``specs`` ("student", "generator", "critic") trained as
    LoRAs of their spec on ``frozen["teacher"]``; every other attribute (name, event shape, eval NFEs,
    prior, pass counts ...) is ``inner``'s."""

    inner: Any
    specs: Mapping[str, LoraSpec]

    @classmethod
    def wrap(cls, inner: Any, frozen: PyTree, example_x: Array, *, sampler: Optional[LoraSpec] = None, critic: Optional[LoraSpec] = None) -> "LoraNetworks":
        """The wrapper with ``sampler`` on the network the method samples with (its student or
        generator) and ``critic`` on its critic, after checking that each has the teacher's architecture."""
        main = sampling_network(inner)
        specs: dict[str, LoraSpec] = {}
        if sampler is not None:
            if main is None:
                raise ValueError(f"lora: method {inner.name!r} has no student or generator a LoRA can adapt")
            specs[main] = sampler
        if critic is not None:
            if getattr(inner, "critic", None) is None:
                raise ValueError(f"lora.critic_rank: method {inner.name!r} trains no critic; set lora.critic_rank=0")
            specs["critic"] = critic
        teacher = frozen.get("teacher") if isinstance(frozen, dict) else None
        for name, spec in specs.items():
            shapes = jax.eval_shape(getattr(inner, NETWORKS[name][1]), jax.random.key(0), example_x)
            if teacher is None or not _same_tree(teacher, shapes):
                raise ValueError(f"lora: a LoRA {name} adapts the teacher's weights, so it needs a network teacher of the {name}'s architecture (method {inner.name!r})")
            try:
                init_lora(shapes, spec, jax.random.key(0))  # targets that match no kernel fail here, naming some
            except ValueError as err:
                raise ValueError(str(err).replace("lora.targets", "lora.critic_targets") if name == "critic" else str(err)) from None
        return cls(inner, specs)

    def bound(self, frozen: PyTree) -> Any:
        """``inner`` whose adapted networks compute with ``merge(frozen["teacher"], lora)`` from LoRA parameters."""
        base = frozen["teacher"]
        changes: dict[str, Any] = {}
        flags: dict[str, bool] = {}
        for name, spec in self.specs.items():
            denoiser_field, init_field, flag = NETWORKS[name]
            denoiser = getattr(self.inner, denoiser_field)
            changes[denoiser_field] = dataclasses.replace(denoiser, apply_fn=_merged_apply(denoiser.apply_fn, base, spec))
            changes[init_field] = lambda rng, x, spec=spec: init_lora(base, spec, rng)
            flags[flag] = False
        return dataclasses.replace(self.inner, settings=dataclasses.replace(self.inner.settings, **flags), **changes)

    def sampler_lora(self, trainable: Trainable) -> tuple[PyTree, LoraSpec]:
        """(LoRA factors, spec) of the network the method samples with, its evaluation (EMA) factors:
        what an export writes (``models.lora.export_diffusers_lora``)."""
        name = sampling_network(self.inner)
        if name not in self.specs:
            raise ValueError(f"this {self.inner.name} run trains its {name} in full, not as a LoRA")
        return trainable[name].eval_params, self.specs[name]

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable:
        return self.bound(frozen).init(rng, batch, frozen)

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]:
        return self.bound(frozen).step(trainable, frozen, batch, rng, step)

    def generate(self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array) -> Array:
        return self.bound(frozen).generate(trainable, frozen, noise, cond, nfe=nfe, rng=rng)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("inner", "specs"):
            raise AttributeError(name)
        return getattr(self.inner, name)
