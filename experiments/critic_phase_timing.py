"""Time one digits-UNet critic update plain, inside ``lax.cond`` and inside ``lax.scan``.

The update is what ``GeneratorDistillation.critic_update`` runs per TTUR step: the gradient
of the denoising loss of the digits benchmark's UNet (``configs/digits/teacher.py``) on a batch
of 128 8x8 images, then an Adam update. This is why the critic phase is unrolled rather
than written with control flow: on XLA:CPU the gradients of convolutions compiled inside
``lax.cond`` / ``lax.scan`` ran many times slower. Prints the median seconds per update of
each variant on the default JAX backend.

Usage: python experiments/critic_phase_timing.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from jaxdistill.build import make_process, network_denoiser
from jaxdistill.config import load_config_file
from jaxdistill.objectives.denoising import denoising_loss

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per variant (after one warm-up call)")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    config = load_config_file(os.path.join(CONFIGS, "digits", "teacher.py"))
    critic, init = network_denoiser(config, make_process(config), "edm")
    x = jax.random.normal(jax.random.key(0), (args.batch, 8, 8, 1))
    eps = jax.random.normal(jax.random.key(1), x.shape)
    t = jax.random.uniform(jax.random.key(2), (args.batch,), minval=0.01, maxval=80.0)
    labels = jnp.arange(args.batch) % 10
    tx = optax.adam(1e-4)
    params = init(jax.random.key(3), x)
    state = (params, tx.init(params))

    def update(state):
        params, opt_state = state
        loss = lambda p: jnp.mean(denoising_loss(critic, p, x, eps, t, labels))
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    # ``run`` is a traced argument, so XLA cannot fold the condition away.
    variants = {
        "plain": lambda s, run: update(s),
        "lax.cond": lambda s, run: jax.lax.cond(run, update, lambda s: s, s),
        "lax.scan (1 step)": lambda s, run: jax.lax.scan(lambda c, _: (update(c), None), s, None, length=1)[0],
    }
    print(f"digits UNet critic update, batch {args.batch}, backend {jax.default_backend()}")
    for name, fn in variants.items():
        step = jax.jit(fn)
        run = jnp.asarray(True)
        jax.block_until_ready(step(state, run))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(step(state, run))
            times.append(time.perf_counter() - start)
        print(f"{name:>18}: {statistics.median(times):.3f} s per update")


if __name__ == "__main__":
    main()
