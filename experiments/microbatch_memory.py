"""Compiled temporary memory (and step time) of one training step with ``train.microbatches`` = k.

For each case, a run config's objective is built at the given batch, its step is jitted and
compiled, and ``memory_analysis().temp_size_in_bytes`` (XLA's scratch buffers: the activations kept
for the backward pass, the gradients, the optimiser's temporaries) is printed for every k, with the
median seconds per step when ``--repeats`` > 0. Cases: teacher training of the grid25 MLP
(``configs/grid25/teacher.py``, width 256), teacher training of the digits UNet
(``configs/digits/teacher.py``) and DMD2 on grid25 (two critic updates and one generator update
per step, every gradient accumulated).

Usage: python experiments/microbatch_memory.py [--cases grid25_teacher,digits_teacher,grid25_dmd2] [--ks 1,2,4,8] [--repeats 0]
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
CASES = {  # name: (config file, batch size, network overrides, method-section overrides)
    "grid25_teacher": ("grid25/teacher.py", 4096, {"width": 256}, {}),
    "digits_teacher": ("digits/teacher.py", 512, {}, {}),
    "grid25_dmd2": ("grid25/dmd2.py", 4096, {"width": 256}, {"dmd": {"critic_schedule": ((0, 2),)}}),
}


def compiled_step(case: str, k: int):
    """(compiled step, its arguments) of ``case`` with ``train.microbatches = k``."""
    path, batch_size, network, sections = CASES[case]
    config = load_config_file(os.path.join(CONFIGS, path))
    config.batch_size, config.train.microbatches = batch_size, k
    config.data.size = max(int(config.data.get("size", batch_size)), batch_size)
    config.network.update(network)
    for section, fields in sections.items():
        config[section].update(fields)
    built = build(config)
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    rng = jax.random.key(0)
    trainable = jax.jit(built.objective.init)(rng, batch, built.frozen)
    args = (trainable, built.frozen, batch, rng, jnp.int32(0))
    return jax.jit(built.objective.step).lower(*args).compile(), args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=0, help="timed steps per k after one warm-up (0: memory only)")
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}")
    for case in args.cases.split(","):
        _, batch_size, _, _ = CASES[case]
        base = None
        for k in (int(s) for s in args.ks.split(",")):
            step, step_args = compiled_step(case, k)
            temp = step.memory_analysis().temp_size_in_bytes
            base = base or temp
            line = f"{case:16s} batch {batch_size:5d} k={k}: temp {temp / 2**20:8.2f} MiB ({temp / base:.2f} of k=1)"
            if args.repeats > 0:
                jax.block_until_ready(step(*step_args))
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    jax.block_until_ready(step(*step_args))
                    times.append(time.perf_counter() - start)
                line += f", {statistics.median(times) * 1e3:.1f} ms/step"
            print(line, flush=True)


if __name__ == "__main__":
    main()
