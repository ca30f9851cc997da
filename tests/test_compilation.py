"""jaxdistill.core.compilation: run-once functions compile without LLVM optimisation on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.core.compilation import jit_once, once_compiler_options
from jaxdistill.models.registry import default_network_config, make_network


def test_cpu_options_turn_llvm_optimisation_off():
    assert jax.default_backend() == "cpu"
    assert once_compiler_options() == {"xla_backend_optimization_level": 0}


def test_jit_once_initialises_like_jit_and_keeps_jit_arguments():
    cfg = default_network_config("mlp")
    cfg.num_classes = 3
    net = make_network(cfg)
    x = jnp.ones((4, 2))
    once = jit_once(net._boxed_init)(jax.random.key(0), x)
    plain = jax.jit(net._boxed_init)(jax.random.key(0), x)
    for a, b in zip(jax.tree.leaves(once), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_max_ulp(np.asarray(a), np.asarray(b), maxulp=2)
    # jit's own arguments pass through.
    doubled = jit_once(lambda v, k: v * k, static_argnums=1)
    assert float(doubled(jnp.float32(1.5), 2)) == 3.0
    with pytest.raises(ValueError, match="top-level"):  # jax refuses options on a nested jit
        jax.jit(lambda v: jit_once(jnp.sin)(v))(jnp.float32(0.0))
