"""Tests for jaxdistill.models: shapes, conditioning, dropout, jit and partition specs."""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdistill.models.registry import (
    LOGICAL_AXIS_RULES,
    Network,
    count_params,
    default_network_config,
    make_network,
)

TINY = {
    "mlp": dict(width=32, depth=2),
    "unet": dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4),
    "dit": dict(hidden_size=32, depth=2, num_heads=2, mlp_ratio=2.0),
}
SHAPES = {"mlp": [(3, 2), (3, 64)], "unet": [(3, 8, 8, 1), (3, 16, 16, 3)], "dit": [(3, 8, 8, 1), (3, 16, 16, 3)]}


def tiny_network(name: str, num_classes: int = 10, dropout: float = 0.3) -> Network:
    cfg = ml_collections.ConfigDict(dict(name=name, num_classes=num_classes, dropout=dropout, **TINY[name]))
    return make_network(cfg)


@functools.lru_cache(maxsize=None)
def tiny_setup(name: str, shape: tuple[int, ...]):
    """Network, input and fresh params, shared between tests (init compiles are the slow part)."""
    net = tiny_network(name)
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    return net, x, net.init(jax.random.PRNGKey(0), x)


def perturb(params, seed: int = 1, scale: float = 0.1):
    """Add noise to every leaf so zero-initialised layers stop masking the conditioning."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda v: v + scale * rng.standard_normal(v.shape).astype(np.float32), params)


@pytest.mark.parametrize("name,shape", [(n, s) for n, shapes in SHAPES.items() for s in shapes])
def test_shape_and_specs(name, shape):
    net, x, params = tiny_setup(name, shape)
    assert set(params) == {"params"}
    assert not any(isinstance(leaf, nn.meta.AxisMetadata) for leaf in jax.tree_util.tree_leaves(
        params, is_leaf=lambda v: isinstance(v, nn.meta.AxisMetadata)))
    t = jnp.linspace(0.1, 0.9, shape[0])
    out = jax.jit(net.apply)(params, x, t, None)
    assert out.shape == x.shape and out.dtype == jnp.float32
    # Zero-initialised output layer: the fresh network predicts zeros.
    np.testing.assert_allclose(out, 0.0, atol=1e-6)
    specs = net.logical_specs(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_structure(specs) == jax.tree_util.tree_structure(params)
    mesh_specs = nn.logical_to_mesh(specs, LOGICAL_AXIS_RULES)
    assert any("fsdp" in tuple(s) for s in jax.tree_util.tree_leaves(mesh_specs))
    print(f"{name} {shape}: {count_params(params):,} parameters")


@pytest.mark.parametrize("name", list(SHAPES))
def test_conditioning_dropout_and_jit(name):
    shape = SHAPES[name][0]
    net, x, params = tiny_setup(name, shape)
    params = perturb(params)
    # One batch holds every label variant: the same x under labels a, b, null and 0.
    xs = jnp.concatenate([x] * 4)
    t = jnp.full((xs.shape[0],), 0.5)
    labels = jnp.array([0, 1, 2, 3, 4, 5, -1, -1, -1, 0, 0, 0])
    apply = jax.jit(functools.partial(net.apply, return_features=True), static_argnames="train")

    out, feats = apply(params, xs, t, labels)
    out_a, out_b, out_null, out_zero = jnp.split(out, 4)
    assert float(jnp.abs(out_a - out_b).max()) > 1e-4
    assert float(jnp.abs(out_null - out_zero).max()) > 1e-4
    assert len(feats) >= 2 and all(f.shape[0] == xs.shape[0] for f in feats)
    np.testing.assert_array_equal(apply(params, xs, t, labels)[0], out)

    d1, _ = apply(params, xs, t, labels, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    d2, _ = apply(params, xs, t, labels, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert float(jnp.abs(d1 - d2).max()) > 1e-5
    assert float(jnp.abs(d1 - out).max()) > 1e-5


def test_unconditional_and_defaults():
    for name in SHAPES:
        cfg = default_network_config(name)
        assert cfg.name == name and cfg.num_classes == 0
    net = tiny_network("mlp", num_classes=0)
    x = jnp.ones((2, 2))
    params = net.init(jax.random.PRNGKey(0), x)
    assert "LabelEmbedding_0" not in str(jax.tree_util.tree_structure(params))
    assert net.apply(params, x, jnp.zeros(2), None).shape == (2, 2)
    # cond=None on a class-conditional network means all-null labels.
    net, x, params = tiny_setup("mlp", (3, 2))
    params = perturb(params)
    np.testing.assert_allclose(
        net.apply(params, x, jnp.zeros(3), None), net.apply(params, x, jnp.zeros(3), jnp.full((3,), -1)), atol=1e-6
    )
    with pytest.raises(ValueError):
        default_network_config("resnet")


# The UNet case costs ~25 s of compilation on 2 cores; mlp and dit cover the overlay in the fast run.
@pytest.mark.parametrize("name", ["mlp", pytest.param("unet", marks=pytest.mark.slow), "dit"])
def test_extra_time_inputs_start_as_the_plain_network(name):
    """A num_times=2 network initialised from a num_times=1 network's parameters (overlay) computes
    the same function for any extra input, through the Denoiser and with guidance."""
    from jaxdistill.diffusion.denoiser import Denoiser
    from jaxdistill.diffusion.process import get_process
    from jaxdistill.objectives.common import overlay_params

    cfg = default_network_config(name)
    cfg.num_classes = 3
    if name == "unet":
        cfg.base_channels, cfg.channel_mult, cfg.num_res_blocks, cfg.attn_resolutions, cfg.num_groups = 8, (1,), 1, (), 4
    if name == "dit":
        cfg.hidden_size, cfg.depth = 32, 1
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1) if name != "mlp" else (4, 5))
    plain = make_network(cfg)
    cfg2 = cfg.copy_and_resolve_references()
    cfg2.num_times = 2
    extra = make_network(cfg2)
    params = plain.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params)
    merged = overlay_params(extra.init(jax.random.key(3), x), params)
    process = get_process("edm")
    d1, d2 = Denoiser(plain.apply, process, "edm"), Denoiser(extra.apply, process, "edm")
    cond = jnp.array([0, 1, 2, -1])
    np.testing.assert_allclose(d2.x0(merged, x, 1.3, cond, extra=jnp.full((4,), 0.7)), d1.x0(params, x, 1.3, cond), atol=1e-6)
    np.testing.assert_allclose(
        d2.x0(merged, x, 1.3, cond, guidance=2.0, extra=jnp.arange(4.0)), d1.x0(params, x, 1.3, cond, guidance=2.0), atol=1e-6
    )
    assert set(jax.tree.leaves(jax.tree.map(jnp.shape, params))) <= set(jax.tree.leaves(jax.tree.map(jnp.shape, merged)))
    with pytest.raises(ValueError, match="share no parameter"):
        overlay_params(merged, {"other": jnp.zeros(3)})
