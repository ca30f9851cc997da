"""Tiny instances of each registered network kind, with weights perturbed off their initialisation,
for checks of a network-level property on every kind (precision, remat) in tests and experiments."""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections

from jaxdistill.core.types import Array, PyTree
from jaxdistill.models.registry import make_network

# name -> (network config, input shape)
TINY_NETWORKS: dict[str, tuple[dict, tuple[int, ...]]] = {
    "mlp": (dict(name="mlp", width=32, depth=2), (4, 2)),
    "unet": (dict(name="unet", base_channels=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(4,), num_groups=4, num_heads=2), (2, 4, 4, 3)),
    "dit": (dict(name="dit", patch_size=2, hidden_size=16, depth=2, num_heads=2), (2, 4, 4, 3)),
    "dit_port": (dict(name="dit_port", size=None, patch_size=2, hidden_size=16, depth=2, num_heads=2, num_classes=10), (2, 4, 4, 4)),
    "edm_ddpmpp": (dict(name="edm_ddpmpp", preset=None, model_channels=8, channel_mult=(1,), num_blocks=1, attn_resolutions=(4,), num_classes=0), (2, 4, 4, 3)),
    "edm2": (dict(name="edm2", size=None, model_channels=8, channel_mult=(1,), num_blocks=1, attn_resolutions=(4,), channels_per_head=8, num_classes=0), (2, 4, 4, 4)),
}


def perturbed_network(name: str, **fields) -> tuple[Any, PyTree, Array, Array, Optional[Array]]:
    """(network, its initial weights plus N(0, 0.1^2) noise, x, t, cond) for ``TINY_NETWORKS[name]``
    with ``fields`` overriding its config. The noise makes zero-initialised layers live, so outputs
    are not identically 0."""
    config, shape = TINY_NETWORKS[name]
    net = make_network(ml_collections.ConfigDict({**config, **fields}))
    x = jax.random.normal(jax.random.key(1), shape)
    leaves, tree = jax.tree.flatten(net.init(jax.random.key(0), x))
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(tree, [w + 0.1 * jax.random.normal(k, w.shape) for w, k in zip(leaves, keys)])
    cond = jnp.arange(shape[0], dtype=jnp.int32) if net.num_classes else None
    return net, params, x, jnp.linspace(0.1, 0.9, shape[0]), cond
