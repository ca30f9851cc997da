"""LoRA adapters (Hu et al. 2021) over Flax kernels and their diffusers LoRA files."""
import diffusers
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from jaxdistill.core.errors import CheckpointFileError, ConfigError
from jaxdistill.core.state import NetState
from jaxdistill.models.lora import (
    LORA_FILE_NAME,
    LoraSpec,
    export_diffusers_lora,
    import_diffusers_lora,
    init_lora,
    merge,
    select_kernels,
    unmerge,
)


class DenseConv(nn.Module):
    """A Dense projection named like an attention query, then a strided 3x3 convolution."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(6, name="query")(x)
        return nn.Conv(5, (3, 3), strides=(2, 2), padding="SAME", name="conv")(x)


def _with_random_b(lora, rng):
    """The LoRA tree with B drawn at random, so that A @ B is not zero."""
    flat = traverse_util.flatten_dict(lora)
    for i, k in enumerate(sorted(flat)):
        if k[-1] == "lora_B":
            flat[k] = jax.random.normal(jax.random.fold_in(rng, i), flat[k].shape)
    return traverse_util.unflatten_dict(flat)


@pytest.fixture(scope="module")
def small():
    module = DenseConv()
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    base = module.init(jax.random.key(1), x)
    spec = LoraSpec(rank=2, alpha=4.0, targets=(r"query$", r"conv$"))
    lora = _with_random_b(init_lora(base, spec, jax.random.key(2)), jax.random.key(3))
    return module, x, base, spec, lora


def _tiny_unet(channels):
    return diffusers.FlaxUNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=channels, layers_per_block=1,
        attention_head_dim=8, cross_attention_dim=16,
    )


def _unet_shapes(channels):
    """The tiny UNet's parameter shapes (abstract: the key checks read only shapes)."""
    return jax.eval_shape(_tiny_unet(channels).init_weights, jax.random.key(0))


@pytest.fixture(scope="module")
def unet():
    return _unet_shapes((32, 64))


def test_a_zero_initialised_b_leaves_the_parameters_and_outputs_unchanged_exactly(small):
    module, x, base, spec, _ = small
    lora = init_lora(base, spec, jax.random.key(5))
    for k, b in traverse_util.flatten_dict(lora).items():
        if k[-1] == "lora_B":
            assert not np.any(np.asarray(b))
    merged = merge(base, lora, spec)
    jax.tree.map(lambda m, w: np.testing.assert_array_equal(m, w), merged, base)
    np.testing.assert_array_equal(module.apply(merged, x), module.apply(base, x))


def test_the_merged_forward_is_x_w_plus_scale_x_a_b_for_dense_and_conv(small):
    module, x, base, spec, lora = small
    w_q, b_q = base["params"]["query"]["kernel"], base["params"]["query"]["bias"]
    a_q, bb_q = lora["params"]["query"]["lora_A"], lora["params"]["query"]["lora_B"]
    w_c, b_c = base["params"]["conv"]["kernel"], base["params"]["conv"]["bias"]
    a_c, bb_c = lora["params"]["conv"]["lora_A"], lora["params"]["conv"]["lora_B"]
    h = x @ w_q + spec.scale * (x @ a_q) @ bb_q + b_q
    conv = lambda inp, k, stride: jax.lax.conv_general_dilated(inp, k, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # A is a 3x3 convolution with the base's stride and padding, B a 1x1 convolution.
    expected = conv(h, w_c, 2) + spec.scale * conv(conv(h, a_c, 2), bb_c[None, None], 1) + b_c
    out = module.apply(merge(base, lora, spec), x)
    assert float(jnp.max(jnp.abs(expected))) > 1.0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_unmerge_returns_the_base_to_rounding(small):
    _, _, base, spec, lora = small
    merged = merge(base, lora, spec)
    assert not np.allclose(merged["params"]["conv"]["kernel"], base["params"]["conv"]["kernel"])
    back = unmerge(merged, lora, spec)
    jax.tree.map(lambda r, w: np.testing.assert_allclose(r, w, rtol=0, atol=1e-6), back, base)
    np.testing.assert_array_equal(back["params"]["conv"]["bias"], base["params"]["conv"]["bias"])


def test_only_the_lora_factors_get_gradients_and_optimiser_state(small):
    module, x, base, spec, lora = small
    state = NetState.create(lora, optax.adam(1e-2), use_ema=False)
    loss = lambda lora_params: jnp.mean(module.apply(merge(base, lora_params, spec), x) ** 2)
    grads = jax.jit(jax.grad(loss))(state.params)
    assert jax.tree.structure(grads) == jax.tree.structure(lora)
    assert {k[-1] for k in traverse_util.flatten_dict(grads)} == {"lora_A", "lora_B"}
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
    lora_size = sum(v.size for v in jax.tree.leaves(lora))
    moments = [v for v in jax.tree.leaves(state.opt_state) if v.ndim > 0]
    assert sum(v.size for v in moments) == 2 * lora_size  # Adam's mu and nu, of the LoRA leaves only
    new_state, _ = state.apply_gradients(grads)
    assert loss(new_state.params) < loss(state.params)


def test_export_then_import_is_exact(small, tmp_path):
    _, _, base, _, lora = small
    spec = LoraSpec(rank=2, alpha=4.0, targets=(r"query$", r"conv$"))  # scale 2: folding it into B is exact
    path = tmp_path / LORA_FILE_NAME
    shapes = export_diffusers_lora(lora, spec, path)
    assert shapes == {
        "unet.query.lora_A.weight": (2, 3), "unet.query.lora_B.weight": (6, 2),
        "unet.conv.lora_A.weight": (2, 6, 3, 3), "unet.conv.lora_B.weight": (5, 2, 1, 1),
    }
    back, back_spec = import_diffusers_lora(path, base)
    assert (back_spec.rank, back_spec.alpha) == (2, 2.0)
    for k, v in traverse_util.flatten_dict(lora).items():
        np.testing.assert_array_equal(traverse_util.flatten_dict(back)[k], v * (spec.scale if k[-1] == "lora_B" else 1.0))
    jax.tree.map(np.testing.assert_array_equal, merge(base, back, back_spec), merge(base, lora, spec))
    again = tmp_path / "again.safetensors"
    export_diffusers_lora(back, back_spec, again)
    first, second = load_file(path), load_file(again)
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def test_the_unet_keys_are_diffusers_torch_names(unet, tmp_path):
    from diffusers.models.modeling_flax_pytorch_utils import rename_key, rename_key_and_reshape_tensor

    params = unet
    spec = LoraSpec(rank=4, alpha=4.0, targets=(r"(to_q|to_k|to_v|to_out_0)$", r"resnets_\d+/conv1$"))
    lora = init_lora(params, spec, jax.random.key(0))
    shapes = export_diffusers_lora(lora, spec, tmp_path / LORA_FILE_NAME)
    flat = traverse_util.flatten_dict(params)
    kernels = select_kernels(params, spec.targets)
    assert len(shapes) == 2 * len(kernels) == 2 * (4 * 2 * 4 + 8)  # 4 transformer blocks x 2 attentions x 4 projections, 8 resnets
    for key, shape in shapes.items():
        prefix, *module, factor, weight = key.split(".")
        assert (prefix, weight) == ("unet", "weight")
        # diffusers' own PyTorch -> Flax renaming of the module's weight must land on the adapted kernel.
        pt_key = tuple(rename_key(".".join([*module, "weight"])).split("."))
        flax_key, _ = rename_key_and_reshape_tensor(pt_key, np.zeros((1,) * (len(shape))), flat)
        assert flax_key in kernels, key
        *window, fan_in, fan_out = flat[flax_key].shape
        expected = (4, fan_in, *window) if factor == "lora_A" else (fan_out, 4, *([1] * len(window)))
        assert shape == expected, key
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight" in shapes
    assert "unet.up_blocks.1.resnets.1.conv1.lora_B.weight" in shapes


def test_a_lora_file_for_another_network_is_a_one_line_error_naming_file_and_key(unet, tmp_path):
    params = unet
    spec = LoraSpec(rank=2, alpha=2.0)
    wider = _unet_shapes((32, 96))
    path = tmp_path / LORA_FILE_NAME
    export_diffusers_lora(init_lora(wider, spec, jax.random.key(0)), spec, path)
    with pytest.raises(CheckpointFileError, match=r"pytorch_lora_weights\.safetensors.*: key 'unet\.mid_block\..*' has shape") as err:
        import_diffusers_lora(path, params)
    assert "\n" not in str(err.value)
    save_file({"unet.not_a_module.lora_A.weight": np.zeros((2, 3), np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointFileError, match=r"other\.safetensors.*'unet\.not_a_module\.lora_A\.weight' names no Dense or Conv kernel"):
        import_diffusers_lora(tmp_path / "other.safetensors", params)
    with pytest.raises(CheckpointFileError, match=r"missing\.safetensors.*does not exist"):
        import_diffusers_lora(tmp_path / "missing.safetensors", params)
    with pytest.raises(ConfigError, match=r"is a folder; name the file"):
        export_diffusers_lora({}, spec, tmp_path)
    with pytest.raises(ValueError, match=r"lora.targets .*match no kernel; the network's kernels include"):
        init_lora(params, LoraSpec(targets=(r"no_such_layer$",)), jax.random.key(0))


def test_import_reads_lora_alpha_from_diffusers_adapter_metadata(small, tmp_path):
    _, _, base, spec, lora = small
    path = tmp_path / "with_metadata.safetensors"
    export_diffusers_lora(lora, spec, path)
    tensors = load_file(path)
    save_file(tensors, str(path), metadata={"format": "pt", "lora_adapter_metadata": '{"unet.r": 2, "unet.lora_alpha": 8}'})
    _, read_spec = import_diffusers_lora(path, base)
    assert (read_spec.rank, read_spec.alpha, read_spec.scale) == (2, 8.0, 4.0)
    assert read_spec.targets == ("^params/conv$", "^params/query$")


@pytest.fixture(scope="module")
def lora_kd():
    """A KD run whose student is a rank-2 LoRA on a small MLP network teacher."""
    from jaxdistill import benchmarks
    from jaxdistill.build import build, make_process, network_denoiser
    from jaxdistill.config import base_config

    c = benchmarks.smoke(benchmarks.with_method(base_config(), "kd"))
    c.network = ml_collections.ConfigDict({"name": "mlp", "num_classes": 0, "width": 16, "depth": 1})
    c.kd.num_pairs, c.kd.teacher_nfe, c.kd.init_from_teacher = 0, 2, True
    c.batch_size, c.eval.nfes, c.optim.warmup_steps = 8, (1,), 0
    teacher, init_fn = network_denoiser(c, make_process(c), "edm")
    # Perturbed: a freshly initialised network has a zero output layer, which would stop every gradient behind it.
    fresh = init_fn(jax.random.key(7), jnp.zeros((1, 2)))
    teacher_params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(p.size), p.shape), fresh)
    c.lora = ml_collections.ConfigDict({"rank": 2, "alpha": 4.0, "targets": (r"Dense_\d+$",)})
    return build(c, teacher=(teacher, teacher_params))


def test_a_lora_config_trains_only_adapters_on_the_teachers_weights(lora_kd):
    from jaxdistill.objectives.lora_networks import LoraNetworks

    built = lora_kd
    assert isinstance(built.objective, LoraNetworks) and built.objective.name == "kd" and set(built.objective.specs) == {"student"}
    batch = next(built.data_factory(0))
    trainable = built.objective.init(jax.random.key(0), batch, built.frozen)
    student = trainable["student"]
    assert {k[-1] for k in traverse_util.flatten_dict(student.params)} == {"lora_A", "lora_B"}
    assert jax.tree.structure(student.ema) == jax.tree.structure(student.params)
    noise = built.objective.prior(jax.random.key(1), 4)
    # B = 0: the LoRA student is the full student initialised from the teacher, exactly.
    np.testing.assert_array_equal(
        built.objective.generate(trainable, built.frozen, noise, None, nfe=1, rng=jax.random.key(2)),
        built.objective.inner.one_step(built.frozen["teacher"], noise, None),
    )
    step = jax.jit(built.objective.step)
    new, metrics = step(trainable, built.frozen, jax.tree.map(jnp.asarray, batch), jax.random.key(3), jnp.int32(0))
    assert jax.tree.structure(new) == jax.tree.structure(trainable) and float(metrics["skipped"]) == 0.0
    before, after = traverse_util.flatten_dict(student.params), traverse_util.flatten_dict(new["student"].params)
    for k in before:
        if k[-1] == "lora_A":  # dL/dA = scale * dL/dW B^T is zero while B = 0
            np.testing.assert_array_equal(after[k], before[k])
        else:
            assert float(jnp.max(jnp.abs(after[k] - before[k]))) > 0, k


def test_a_lora_config_the_method_or_teacher_cannot_take_is_a_config_error(lora_kd):
    from jaxdistill.build import build, config_from_json
    from jaxdistill.config import lora_spec, validate

    built = lora_kd
    c = built.config.copy_and_resolve_references()
    saved = c.to_dict()  # a run saved before the lora field existed reads back with a fully trained student
    del saved["lora"]
    assert lora_spec(c) is not None and lora_spec(config_from_json(saved)) is None
    c.lora.targets = (r"no_such_layer$",)
    with pytest.raises(ConfigError, match=r"lora.targets .* match no kernel"):
        build(c, teacher=(built.objective.teacher, built.frozen["teacher"]))
    c.lora.targets, c.lora.alpha = (r"Dense_\d+$",), -1.0
    with pytest.raises(ConfigError, match=r"lora.alpha must be positive"):
        validate(c)
    c.lora.alpha, c.teacher.kind = None, "mixture"
    with pytest.raises(ConfigError, match=r"needs a network teacher of the student's architecture"):
        build(c)
