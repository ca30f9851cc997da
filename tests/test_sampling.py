"""Sampling a trained objective: the compiled sampler is reused across calls (periodic sample
plots and evaluations do not recompile)."""
import jax
import jax.numpy as jnp
import numpy as np
from protocol_checks import config

from jaxdistill.build import build
from jaxdistill.train import sampling


def test_generate_samples_compiles_once_per_objective_nfe_and_chunk_shape():
    built = build(config("grid25/kd"))
    example = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    trainable = built.objective.init(jax.random.key(0), example, built.frozen)
    before = sampling._generate_chunk._cache_size()
    draws = [sampling.generate_samples(built.objective, trainable, built.frozen, 300, nfe=1, rng=jax.random.key(i)) for i in range(3)]
    assert sampling._generate_chunk._cache_size() == before + 1
    assert all(d.shape == (300, 2) and np.all(np.isfinite(d)) for d in draws) and not np.array_equal(draws[0], draws[1])
    again = sampling.generate_samples(built.objective, trainable, built.frozen, 300, nfe=1, rng=jax.random.key(0))
    np.testing.assert_array_equal(again, draws[0])  # same key, same samples
