"""The objective protocol every distillation method follows.

A method is a frozen dataclass built from the config. It names the networks it
trains, creates their states, and exposes one pure step::

    init(rng, batch, frozen)                    -> {name: NetState}
    step(trainable, frozen, batch, rng, step)   -> (trainable, metrics)
    generate(trainable, frozen, noise, cond, *, nfe, rng) -> samples

``frozen`` holds the parameters of networks that are not trained (the teacher, and
any data derived from it such as cached (noise, sample) pairs); the engine passes it
as an explicit argument of the jitted step with its own shardings, never as a
constant closed over. Schedules (curricula, stage switches, update ratios) must be
functions of the traced ``step`` so the step compiles once. ``prepare`` runs once
before training and may add arrays to ``frozen`` (it must be deterministic in its rng
so a resumed run rebuilds the same arrays). ``passes_per_sample`` states the method's
compute per training sample, so rows of the results table can be compared at equal cost.
"""
from __future__ import annotations

from typing import Optional, Protocol, Sequence

from jaxdistill.core.state import NetState
from jaxdistill.core.types import Array, Batch, PyTree

Trainable = dict[str, NetState]
Metrics = dict[str, Array]


class Objective(Protocol):
    name: str
    event_shape: tuple[int, ...]
    num_classes: int
    eval_nfes: Sequence[int]

    def prepare(self, frozen: PyTree, rng: Array) -> PyTree: ...

    def init(self, rng: Array, batch: Batch, frozen: PyTree) -> Trainable: ...

    def step(self, trainable: Trainable, frozen: PyTree, batch: Batch, rng: Array, step: Array) -> tuple[Trainable, Metrics]: ...

    def generate(
        self, trainable: Trainable, frozen: PyTree, noise: Array, cond: Optional[Array], *, nfe: int, rng: Array
    ) -> Array: ...

    def prior(self, rng: Array, num: int) -> Array: ...

    @property
    def passes_per_sample(self) -> float:
        """Network passes (forward and backward, every network; a backward counts as one) per
        training sample and update: the cost column of the results table."""
        ...
