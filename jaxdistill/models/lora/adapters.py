"""Low-rank adapters over the kernels of any Flax parameter tree (Hu et al. 2021, "LoRA: Low-Rank
Adaptation of Large Language Models").

A selected kernel W, read as [..., in, out] (a Dense kernel [in, out], or a convolution kernel
[kh, kw, in, out] with its window first), is adapted as

    W' = W + (alpha / r) * A @ B,    A [..., in, r] ~ N(0, 1 / fan_in),   B [r, out] = 0,

with the product over the rank axis. For a Dense layer x W' = x W + (alpha / r) (x A) B; for a
convolution, A is a kh x kw x in x r convolution (the base's stride and padding) and B a 1 x 1
r x out convolution, the factorisation diffusers and PEFT use for convolutional LoRA. Since B starts
at zero, the adapted network starts as the base network exactly.

The LoRA tree mirrors the base tree: the kernel at ``(..., "to_q", "kernel")`` gets
``(..., "to_q", "lora_A")`` and ``(..., "to_q", "lora_B")``. All functions are pure.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxdistill.core.types import Array, PyTree

# The attention projections of diffusers' Flax UNet and transformer blocks (to_q, to_k, to_v, to_out_0).
ATTENTION_TARGETS: tuple[str, ...] = (r"(^|/)(to_q|to_k|to_v|to_out_0)$",)
# The LCM-LoRA module set (diffusers' examples/consistency_distillation/train_lcm_distill_lora_*.py default
# lora_target_modules, SD 1.5 and SDXL alike): attention projections, feed-forwards, proj_in / proj_out,
# ResNet convolutions and time projections, down/upsampler convolutions.
LCM_LORA_TARGETS: tuple[str, ...] = (
    *ATTENTION_TARGETS,
    r"ff/net_0/proj$",
    r"ff/net_2$",
    r"(^|/)proj_(in|out)$",
    r"resnets_\d+/(conv1|conv2|conv_shortcut|time_emb_proj)$",
    r"(down|up)samplers_0/conv$",
)


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """Which kernels get adapters and how large they are.

    ``targets``: regular expressions searched (``re.search``) in each kernel's module path, its
    tree path without the final ``kernel`` joined by "/" (e.g.
    ``params/down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_q``); a kernel is adapted if
    any matches. ``rank`` r and ``alpha`` set the scale alpha / r.
    """

    rank: int = 4
    alpha: float = 4.0
    targets: tuple[str, ...] = ATTENTION_TARGETS

    def __post_init__(self):
        if int(self.rank) < 1:
            raise ValueError(f"lora.rank must be a positive integer, got {self.rank}")
        if not float(self.alpha) > 0:
            raise ValueError(f"lora.alpha must be positive, got {self.alpha}")
        if isinstance(self.targets, str) or not self.targets:
            raise ValueError(f"lora.targets must be a non-empty sequence of regular expressions, got {self.targets!r}")
        for pattern in self.targets:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"lora.targets: {pattern!r} is no regular expression ({err})") from None
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def scale(self) -> float:
        """alpha / r, the factor of A @ B."""
        return float(self.alpha) / int(self.rank)


def module_path(kernel_path: Sequence[str]) -> str:
    """The "/"-joined path of the module that owns the kernel at ``kernel_path``."""
    return "/".join(kernel_path[:-1])


def select_kernels(params: PyTree, targets: Sequence[str]) -> list[tuple[str, ...]]:
    """Paths (sorted) of the ``kernel`` leaves of rank >= 2 whose module path matches one of ``targets``
    (``params`` may be abstract, e.g. from ``jax.eval_shape``). Raises ``ValueError`` naming a few kernels when nothing matches."""
    kernels = [k for k, v in traverse_util.flatten_dict(params).items() if k[-1] == "kernel" and len(v.shape) >= 2]
    chosen = sorted(k for k in kernels if any(re.search(p, module_path(k)) for p in targets))
    if not chosen:
        examples = ", ".join(module_path(k) for k in sorted(kernels)[:4])
        raise ValueError(f"lora.targets {tuple(targets)} match no kernel; the network's kernels include {examples}")
    return chosen


def init_lora(base_params: PyTree, spec: LoraSpec, rng: Array) -> PyTree:
    """LoRA factors for every kernel ``spec.targets`` selects: A ~ N(0, 1 / fan_in) with fan_in the
    product of A's input axes (window and in), B = 0; float32 whatever the base's dtype. Only the
    base's shapes are read, so ``base_params`` may be abstract."""
    flat = traverse_util.flatten_dict(base_params)
    lora = {}
    for i, path in enumerate(select_kernels(base_params, spec.targets)):
        shape = flat[path].shape
        fan_in = 1
        for d in shape[:-1]:
            fan_in *= d
        a = jax.random.normal(jax.random.fold_in(rng, i), (*shape[:-1], spec.rank), jnp.float32) / jnp.sqrt(fan_in)
        lora[(*path[:-1], "lora_A")] = a
        lora[(*path[:-1], "lora_B")] = jnp.zeros((spec.rank, shape[-1]), jnp.float32)
    return traverse_util.unflatten_dict(lora)


def lora_delta(a: Array, b: Array, scale: float) -> Array:
    """scale * A @ B over the rank axis: [..., in, r] x [r, out] -> [..., in, out], in float32."""
    return scale * jnp.tensordot(a.astype(jnp.float32), b.astype(jnp.float32), axes=1)


def _adapted(params: PyTree, lora: PyTree, spec: LoraSpec, sign: float) -> PyTree:
    flat = traverse_util.flatten_dict(params)
    factors = traverse_util.flatten_dict(lora)
    for path in sorted({k[:-1] for k in factors}):
        kernel_path = (*path, "kernel")
        if kernel_path not in flat:
            raise ValueError(f"the LoRA tree adapts {'/'.join(path)}, which has no kernel in the network's parameters")
        w = flat[kernel_path]
        delta = lora_delta(factors[(*path, "lora_A")], factors[(*path, "lora_B")], spec.scale)
        if delta.shape != jnp.shape(w):
            raise ValueError(f"the LoRA factors of {'/'.join(path)} make a {delta.shape} update for a {jnp.shape(w)} kernel")
        flat[kernel_path] = (w.astype(jnp.float32) + sign * delta).astype(w.dtype)
    return traverse_util.unflatten_dict(flat)


def merge(base_params: PyTree, lora: PyTree, spec: LoraSpec) -> PyTree:
    """The adapted parameters: every adapted kernel W becomes W + scale * A @ B (in W's dtype),
    every other leaf is the base's."""
    return _adapted(base_params, lora, spec, 1.0)


def unmerge(merged_params: PyTree, lora: PyTree, spec: LoraSpec) -> PyTree:
    """The base parameters back from :func:`merge`'s output: W' - scale * A @ B (to rounding)."""
    return _adapted(merged_params, lora, spec, -1.0)
