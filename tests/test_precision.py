"""Precision policy (``precision.compute`` / ``precision.teacher_params``) and block
rematerialisation (network field ``remat``): bfloat16 compute stays close to float32 with float32
master weights, a bfloat16 teacher halves its bytes, and remat changes neither parameters, outputs
nor gradients while lowering the backward pass's temporary memory."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdistill import benchmarks
from jaxdistill.build import build, config_from_json, network_denoiser
from jaxdistill.config import ConfigError, base_config, validate
from jaxdistill.diffusion.process import get_process
from jaxdistill.models.precision import cast_floats, with_compute_dtype
from jaxdistill.models.registry import make_network
from jaxdistill.models.tiny import TINY_NETWORKS, perturbed_network
from jaxdistill.objectives.common import overlay_params

# bfloat16 keeps 8 significant bits (unit round-off 2^-9 ~ 2e-3); over these nets' few layers the
# measured relative L2 error of the output is 0.6e-2 .. 2.0e-2 (docs/precision.md), so 5e-2 bounds it
# with margin while a float16 / float32 mix-up (1e-3 / 0) or a broken cast (O(1)) would not pass.
BF16_REL_TOL = 5e-2


def _rel(a, b) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("name", ["mlp", "unet", "edm2", "dit_port"])
def test_bf16_compute_is_close_to_float32_returns_float32_and_computes_in_bf16(name):
    net, params, x, t, cond = perturbed_network(name)
    reference = jax.jit(lambda p, x: net.apply(p, x, t, cond))(params, x)
    apply = with_compute_dtype(net.apply, "bfloat16")
    lowered = jax.jit(lambda p, x: apply(p, x, t, cond)).lower(params, x)
    out = lowered.compile()(params, x)
    assert out.dtype == jnp.float32
    assert 0 < _rel(out, reference) < BF16_REL_TOL
    # The heavy ops run in bf16: most matmuls / convolutions take and give bfloat16.
    ops = [line for line in lowered.as_text().splitlines() if "stablehlo.dot_general" in line or "stablehlo.convolution" in line]
    in_bf16 = [line for line in ops if line.rstrip().endswith("bf16>")]
    assert len(in_bf16) >= 0.75 * len(ops) > 0


def test_float32_compute_is_the_network_itself():
    apply = make_network(ml_collections.ConfigDict(TINY_NETWORKS["mlp"][0])).apply
    assert with_compute_dtype(apply, "float32") is apply


def _teacher_run_config(compute: str) -> ml_collections.ConfigDict:
    c = benchmarks.smoke(base_config())
    c.network = benchmarks.mlp(width=32, depth=2)
    c.batch_size, c.data.size = 64, 256
    c.precision.compute = compute
    return c


def _one_step(built):
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    frozen = built.objective.prepare(built.frozen, jax.random.key(1))
    trainable = built.objective.init(jax.random.key(0), batch, frozen)
    return jax.jit(built.objective.step)(trainable, frozen, batch, jax.random.key(2), jnp.int32(0))


def test_a_bf16_training_step_keeps_float32_state_and_matches_the_float32_loss():
    f32_state, f32_metrics = _one_step(build(_teacher_run_config("float32")))
    bf16_state, bf16_metrics = _one_step(build(_teacher_run_config("bfloat16")))
    assert {leaf.dtype for leaf in jax.tree.leaves(bf16_state) if jnp.issubdtype(leaf.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
    ema = bf16_state["model"].ema
    assert ema is not None and all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(ema))
    assert [(a.shape, a.dtype) for a in jax.tree.leaves(f32_state)] == [(a.shape, a.dtype) for a in jax.tree.leaves(bf16_state)]
    loss32, loss16 = float(f32_metrics["loss"]), float(bf16_metrics["loss"])
    assert np.isfinite(loss16) and abs(loss16 - loss32) < 2e-2 * abs(loss32)


def _kd_config(teacher_params: str) -> ml_collections.ConfigDict:
    c = benchmarks.smoke(benchmarks.with_method(base_config(), "kd"))
    c.network = benchmarks.mlp(width=32, depth=2)
    c.batch_size, c.data.size = 64, 256
    c.kd.num_pairs, c.kd.teacher_nfe = 64, 2
    c.precision.teacher_params = teacher_params
    return c


def test_bf16_teacher_params_halve_the_frozen_bytes_and_distil_close_to_float32():
    config = _kd_config("float32")
    denoiser, init = network_denoiser(config, get_process("edm"), "edm")
    params = init(jax.random.key(5), jnp.zeros((1, 2)))
    nbytes = lambda tree: sum(leaf.nbytes for leaf in jax.tree.leaves(tree))  # noqa: E731
    runs = {}
    for stored in ("float32", "bfloat16"):
        built = build(_kd_config(stored), teacher=(denoiser, params))
        runs[stored] = (built, _one_step(built)[1])
    f32_frozen, bf16_frozen = runs["float32"][0].frozen["teacher"], runs["bfloat16"][0].frozen["teacher"]
    assert {leaf.dtype for leaf in jax.tree.leaves(bf16_frozen)} == {jnp.dtype(jnp.bfloat16)}
    assert nbytes(bf16_frozen) * 2 == nbytes(f32_frozen) == nbytes(params)
    loss32, loss16 = float(runs["float32"][1]["loss"]), float(runs["bfloat16"][1]["loss"])
    assert np.isfinite(loss16) and abs(loss16 - loss32) < 2e-2 * abs(loss32)


def test_a_student_initialised_from_a_bf16_teacher_keeps_float32_master_weights():
    init = {"w": jnp.zeros((3,), jnp.float32)}
    teacher = cast_floats({"w": jnp.array([1.0, 2.0, 3.0])}, jnp.bfloat16)
    out = overlay_params(init, teacher)
    assert out["w"].dtype == jnp.float32 and np.array_equal(out["w"], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("name", ["unet", "dit", "dit_port", "edm_ddpmpp", "edm2"])
def test_remat_keeps_parameter_names_outputs_and_gradients(name):
    """Same parameter tree; loss and gradients equal up to float32 round-off (XLA fuses the
    recomputed blocks differently: measured <= 1.5e-6 of each gradient's largest entry)."""
    net, params, x, t, cond = perturbed_network(name)
    rematted = make_network(ml_collections.ConfigDict({**TINY_NETWORKS[name][0], "remat": True}))
    shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
    assert shapes(jax.eval_shape(rematted.init, jax.random.key(0), x)) == shapes(params)
    results = [jax.jit(jax.value_and_grad(lambda p, n=n: jnp.sum(n.apply(p, x, t, cond) ** 2)))(params) for n in (net, rematted)]
    (loss, grads), (loss_r, grads_r) = results
    assert abs(float(loss_r - loss)) <= 1e-6 * abs(float(loss))
    for g, g_r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_r)):
        assert float(jnp.max(jnp.abs(g_r - g))) <= 1e-5 * max(float(jnp.max(jnp.abs(g))), 1e-30)


def residual_bytes(net, params, x, t) -> int:
    """Bytes the forward pass keeps for the backward pass (the leaves of ``jax.vjp``'s pullback), traced only."""
    pullback = jax.eval_shape(lambda p: jax.vjp(lambda q: jnp.sum(net.apply(q, x, t, None) ** 2), p)[1], params)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(pullback))


def test_remat_keeps_only_block_inputs_for_the_backward_pass():
    """A DiT of 8 blocks on 64 tokens of width 64, batch 8: 51.6 MB of residuals without remat,
    4.1 MB with it (docs/precision.md). XLA's CPU ``memory_analysis()`` does not show this (its temp
    size is the same with ``jax.checkpoint``), so the residuals are counted instead."""
    config = dict(name="dit", patch_size=2, hidden_size=64, depth=8, num_heads=4)
    x, t = jnp.zeros((8, 16, 16, 3)), jnp.full((8,), 0.5)
    kept = {}
    for remat in (False, True):
        net = make_network(ml_collections.ConfigDict({**config, "remat": remat}))
        kept[remat] = residual_bytes(net, jax.eval_shape(net.init, jax.random.key(0), x), x, t)
    assert kept[True] < kept[False] / 10


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("compute", "float16", "precision.compute='float16' is not one of"),
        ("teacher_params", "bf16", "precision.teacher_params='bf16' is not one of"),
        ("teacher_params", "bfloat16", "precision.teacher_params='bfloat16' stores a network teacher's weights; teacher.kind='mixture'"),
    ],
)
def test_bad_precision_settings_are_refused_naming_the_field(field, value, expected):
    c = benchmarks.with_method(base_config(), "kd")
    c.teacher.kind = "mixture"
    c.precision[field] = value
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        validate(c)


def test_a_run_saved_before_the_precision_section_reads_back_in_float32():
    saved = base_config().to_dict()
    del saved["precision"]
    config = config_from_json(saved)
    assert config.precision.to_dict() == {"compute": "float32", "teacher_params": "float32"}
