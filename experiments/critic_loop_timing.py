"""Compile time and seconds per step of a generator-distillation train step with its critic
phase unrolled and looped (``critic_loop``, see ``jaxdistill/objectives/generator.py``).

Prints, for each form, the time to compile the step and the median time of a step after a
warm-up call, on the default JAX backend.

Usage: python experiments/critic_loop_timing.py [--config grid25/dmd2] [--smoke] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp

from jaxdistill.build import build
from jaxdistill.config import load_config_file

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def time_step(name: str, smoke: bool, loop: str, repeats: int) -> tuple[float, float]:
    """(compile seconds, median seconds per step) of ``configs/<name>.py`` with ``critic_loop = loop``."""
    config = load_config_file(os.path.join(CONFIGS, f"{name}.py") + (":smoke" if smoke else ""))
    config.dmd.critic_loop = loop
    built = build(config)
    obj = built.objective
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    frozen = obj.prepare(built.frozen, jax.random.key(0))
    state = jax.jit(obj.init)(jax.random.key(1), batch, frozen)
    args = (state, frozen, batch, jax.random.key(2), jnp.int32(0))
    start = time.perf_counter()
    step = jax.jit(obj.step).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(step(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(*args))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="grid25/dmd2", help="a distribution-matching config file, configs/<config>.py")
    parser.add_argument("--smoke", action="store_true", help="the config's smoke variant (small batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per form (after one warm-up step)")
    args = parser.parse_args()
    print(f"{args.config}{' (smoke)' if args.smoke else ''}, backend {jax.default_backend()}")
    for loop in ("unrolled", "loop"):
        compile_s, step_s = time_step(args.config, args.smoke, loop, args.repeats)
        print(f"{loop:>9}: compile {compile_s:.1f} s, {step_s:.3f} s per step")


if __name__ == "__main__":
    main()
