"""Trainable network state: parameters, optimiser state and an EMA copy.

An objective owns one ``NetState`` per trainable network (student, critic, ...).
The optimiser is a static field, so a ``NetState`` is a pytree of arrays only and
can be sharded, donated and checkpointed as a whole.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jaxdistill.core.phema import PowerEma
from jaxdistill.core.types import Array, PyTree


class NetState(struct.PyTreeNode):
    """``params``, ``opt_state`` and ``ema`` (an EMA of params, or ``None``)."""

    params: PyTree
    opt_state: PyTree
    ema: Optional[PyTree]
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, params: PyTree, tx: optax.GradientTransformation, *, use_ema: bool = True) -> "NetState":
        ema = jax.tree.map(jnp.copy, params) if use_ema else None
        return cls(params=params, opt_state=tx.init(params), ema=ema, tx=tx)

    def apply_gradients(self, grads: PyTree, ema_decay: Any = None) -> tuple["NetState", dict[str, Array]]:
        """One optimiser update; skipped (state unchanged) if any gradient is non-finite.

        EMA: ema <- decay * ema + (1 - decay) * params_new, applied only on accepted updates.
        ``ema_decay`` is a constant or a :class:`PowerEma`, whose decay at the t-th accepted update
        is (1 - 1/t)^(gamma + 1) (weight :meth:`PowerEma.weight`), t read from the optimiser's
        update count (:func:`update_count`).
        Returns the new state and metrics ``grad_norm`` and ``skipped`` (0/1).
        """
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(grad_norm)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        ema = self.ema
        if ema is not None and ema_decay is not None:
            if isinstance(ema_decay, PowerEma):
                w = ema_decay.weight(update_count(self.opt_state) + 1)
                ema = jax.tree.map(lambda e, p: (1.0 - w) * e + w * p, ema, params)
            else:
                d = jnp.asarray(ema_decay, jnp.float32)
                ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
        elif ema is not None:
            ema = params
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = self.replace(
            params=keep(params, self.params),
            opt_state=keep(opt_state, self.opt_state),
            ema=None if ema is None else keep(ema, self.ema),
        )
        return new_state, {"grad_norm": grad_norm, "skipped": 1.0 - finite.astype(jnp.float32)}

    @property
    def eval_params(self) -> PyTree:
        """The parameters used for sampling: the EMA if kept, else the raw params."""
        return self.params if self.ema is None else self.ema


def update_count(opt_state: PyTree) -> Array:
    """The updates an optimiser state has taken: its first ``count`` field (optax's Adam and
    schedules keep one; ``apply_gradients`` rolls it back with the rest on skipped updates)."""
    found = optax.tree_utils.tree_get_all_with_path(opt_state, "count")
    if not found:
        raise ValueError("a power-function EMA reads the update count from the optimiser state, which has no 'count' field")
    return found[0][1]


def make_optimizer(cfg: ml_collections.ConfigDict, clock: Optional[Callable[[Array], Array]] = None) -> optax.GradientTransformation:
    """Adam(W) with linear warm-up, optional cosine decay and global-norm clipping.

    Fields: ``lr``, ``warmup_steps``, ``decay_steps`` (0 = constant after warm-up),
    ``b1``, ``b2``, ``eps``, ``weight_decay``, ``grad_clip`` (0 = off). ``clock`` maps the
    optimiser's update count to the step the schedule reads (default: the count itself).
    """
    if cfg.decay_steps > 0:
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, cfg.lr, max(cfg.warmup_steps, 1), max(cfg.decay_steps, cfg.warmup_steps + 1), end_value=0.0
        )
    elif cfg.warmup_steps > 0:
        schedule = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    else:
        schedule = cfg.lr
    if clock is not None and callable(schedule):
        schedule = _on_clock(schedule, clock)
    chain = []
    if cfg.grad_clip > 0:
        chain.append(optax.clip_by_global_norm(cfg.grad_clip))
    chain.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    return optax.chain(*chain)


def _on_clock(schedule: optax.Schedule, clock: Callable[[Array], Array]) -> optax.Schedule:
    """``schedule`` read at ``clock(count)`` instead of the update count."""

    def clocked(count: Array) -> Array:
        return schedule(clock(count))

    return clocked


def default_optimizer_config(lr: float = 1e-3) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(lr=lr, warmup_steps=100, decay_steps=0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0)
    )
