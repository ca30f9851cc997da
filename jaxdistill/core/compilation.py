"""Compiling functions that run once per run.

Parameter and optimiser initialisation runs once, so time XLA spends optimising its code is
wasted, and on CPU that time is large: the random initialisers' code is long and LLVM's
optimisation passes dominate its compile. :func:`jit_once` compiles such functions without
LLVM optimisation on CPU (``xla_backend_optimization_level=0``); accelerator backends keep
their defaults.

``python experiments/init_compile_timing.py`` measures the saving; the initial values differ
from the optimised build's only by float32 rounding (the initialisers' transcendental
approximations round differently without fused multiply-adds).
"""
from __future__ import annotations

from typing import Any, Callable

import jax

ONCE_CPU_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0}


def once_compiler_options() -> dict[str, Any] | None:
    """XLA options for code that runs once: no LLVM optimisation on CPU, defaults elsewhere."""
    return dict(ONCE_CPU_OPTIONS) if jax.default_backend() == "cpu" else None


def jit_once(fn: Callable, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` compiled with :func:`once_compiler_options`. Call it at
    top level only: jax refuses compiler options on a jit traced inside another."""
    return jax.jit(fn, compiler_options=once_compiler_options(), **jit_kwargs)
