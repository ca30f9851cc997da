"""The Flax ports of EDM's DDPM++ and ADM (jaxdistill.models.ports.edm) against NVlabs/edm itself,
the torch-free network-pickle reader, the converter and its CLI (``jaxdistill convert --from edm-pkl``).

How the reference numbers were made: ``tests/reference/make_edm_reference.py`` (its docstring has
the versions and the commands) builds EDM's own ``EDMPrecond`` in PyTorch (float32, CPU) around
three tiny networks of ``MODELS``: ``ddpmpp_cond`` (SongUNet as ``--arch=ddpmpp``, 8x8x3, 4
channels x [1, 2], one block per level, attention at 4x4, 10 classes, augment_dim 9),
``ddpmpp_uncond`` (8x8x2, 4 x [1, 2, 2], two blocks, attention at 8x8, unconditional) and
``adm_cond`` (DhariwalUNet, 8x8x3, 32 x [2, 4], one block, attention at 8x8 and 4x4 with one and
two heads, 10 classes); sets every state-dict entry to the closed form ``synthetic_value`` (sin
waves, EDM's zero-initialised layers included; the fixed resampling filters kept) and runs them on
the closed-form inputs of ``inputs`` (sigma 0.002, 0.5, 2, 80; labels 0, 3, 9 and unconditional).
It stores ``D = EDMPrecond(x, sigma, one_hot)``, the raw network output ``F``, per-level features
(forward hooks) and EDM's parameter counts of the published configurations in
``tests/data/edm_reference.npz`` (67 KB), and pickles ``ddpmpp_cond`` the way EDM's training loop
writes ``network-snapshot-*.pkl`` into ``tests/data/edm_ddpmpp_tiny.pkl`` (118 KB; each
persistent object's pickled module source replaced by a placeholder). Measured max |port - EDM|
(float32 rounding; the tests allow 1e-5 of each array's scale): ddpmpp_cond D 3e-8 (scale 0.5),
F 2e-8 (0.048), features 1.2e-7 (1.7); ddpmpp_uncond D 3e-8 (0.54), F 3e-8 (0.25), features
7.5e-8 (0.51); adm_cond D 4.7e-8 (0.51), F 9.7e-8 (0.12), features 1.5e-6 (2.8).
"""
import functools
import importlib.util
import os
import pickle

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdistill.cli import main
from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import EDM
from jaxdistill.models.ports.converted import load_converted
from jaxdistill.models.ports.edm import EDM_PRESETS, make_edm_port
from jaxdistill.models.ports.edm_checkpoint import (
    RESAMPLE_FILTER,
    convert_state_dict,
    expected_shapes,
    flax_path,
    infer_config,
    network_config,
    select_network,
    state_dict,
    to_flax,
    torch_key,
)
from jaxdistill.models.ports.edm_pickle import PersistentObject, read_edm_pickle
from jaxdistill.models.registry import count_params, default_network_config, make_network

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
PKL = os.path.join(DATA, "edm_ddpmpp_tiny.pkl")
DIT_PT = os.path.join(DATA, "dit_tiny.pt")
_spec = importlib.util.spec_from_file_location("make_edm_reference", os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "make_edm_reference.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(os.path.join(DATA, "edm_reference.npz")) as data:
        return dict(data)


def nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1)


def assert_close(got, want: np.ndarray, what: str) -> None:
    """float32 agreement: max |got - want| below 1e-5 of want's scale."""
    assert np.shape(got) == want.shape, what
    assert float(np.abs(np.asarray(got) - want).max()) < 1e-5 * float(np.abs(want).max()), what


def unet_arguments(precond_kwargs: dict) -> tuple[str, dict]:
    """(UNet class, its constructor arguments) as EDMPrecond builds them from its own."""
    kwargs = {k: v for k, v in precond_kwargs.items() if k not in ("model_type", "img_channels")}
    return precond_kwargs["model_type"], {**kwargs, "in_channels": precond_kwargs["img_channels"], "out_channels": precond_kwargs["img_channels"]}


def check_against_reference(name: str, apply_fn, params, expected: dict) -> None:
    """D through jaxdistill's Denoiser of kind "edm", the raw network output F (fed (c_in x, ln(sigma) / 4)
    by that Denoiser) and the features against EDMPrecond's."""
    x, sigma, labels, _ = reference.inputs(reference.MODELS[name])
    denoiser = Denoiser(apply_fn, EDM(), "edm", sigma_data=0.5)
    assert_close(denoiser.x0(params, nhwc(x), sigma, labels), nhwc(expected[f"{name}_D"]), f"{name} D")
    assert_close(denoiser.raw(params, nhwc(x), sigma, labels), nhwc(expected[f"{name}_F"]), f"{name} F")
    features = denoiser.features(params, nhwc(x), sigma, labels)
    count = len(reference.MODELS[name]["channel_mult"]) + 1
    assert len(features) == count
    for i, feature in enumerate(features):
        want = nhwc(expected[f"{name}_feat{i}"])
        assert_close(feature[: len(want)], want, f"{name} feature {i}")


def test_reader_returns_the_pickled_network():
    obj = read_edm_pickle(PKL)
    assert sorted(obj) == ["augment_pipe", "dataset_kwargs", "ema", "loss_fn"]
    assert obj["loss_fn"].class_name == "EDMLoss" and obj["augment_pipe"].state["p"] == 0.12
    ema = select_network(obj, "tiny")
    assert ema.state["_init_kwargs"]["model_type"] == "SongUNet" and ema.state["sigma_data"] == 0.5
    model, fields, event_shape, sigma_data = network_config(ema, "tiny")
    assert model.class_name == "SongUNet" and event_shape == [8, 8, 3] and sigma_data == 0.5
    assert fields == dict(arch="ddpmpp", num_classes=10, augment_dim=9, model_channels=4, channel_mult=[1, 2], channel_mult_emb=4, num_blocks=1, attn_resolutions=[4], dropout=0.13)
    assert reference.SOURCE_PLACEHOLDER not in str(ema.state)  # module_src is dropped, never kept or run
    state = state_dict(ema, "tiny")
    filters = {k: v for k, v in state.items() if k.endswith("resample_filter")}
    want = reference.synthetic_state_dict({k: v.shape for k, v in state.items()}, filters)
    assert len(state) == 149 and len(filters) == 4
    for key, value in state.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, want[key], err_msg=key)
    for value in filters.values():
        np.testing.assert_array_equal(value, RESAMPLE_FILTER)


def test_converted_ddpmpp_reproduces_edm(tmp_path, capsys, expected):
    out = str(tmp_path / "tiny.npz")
    assert main(["convert", "--from", "edm-pkl", PKL, "--out", out]) == 0
    assert "EDM's DDPM++ (4 channels x (1, 2), 1 blocks, 10 classes)" in capsys.readouterr().out
    network, params, info = load_converted(out)
    assert info["event_shape"] == [8, 8, 3] and info["sigma_data"] == 0.5 and info["prediction"] == "edm"
    assert network.num_classes == 10 and network.module.augment_dim == 9 and network.module.dropout == 0.13
    check_against_reference("ddpmpp_cond", network.apply, params, expected)
    x, sigma, labels, augment = reference.inputs(reference.MODELS["ddpmpp_cond"])
    augmented = Denoiser(functools.partial(network.module.apply, augment_labels=augment), EDM(), "edm")
    assert_close(augmented.x0(params, nhwc(x), sigma, labels), nhwc(expected["ddpmpp_cond_D_aug"]), "D with augment labels")
    # The unconditional input: NULL_LABEL (-1), cond=None and an all-zero label row are the same.
    t = jnp.log(jnp.asarray(sigma)) / 4
    null = network.apply(params, nhwc(x), t, np.full(4, -1))
    np.testing.assert_array_equal(network.apply(params, nhwc(x), t, None), null)
    np.testing.assert_array_equal(network.apply(params, nhwc(x), t, np.zeros((4, 10), np.float32)), null)


@pytest.mark.parametrize("name", ["ddpmpp_uncond", "adm_cond"])
def test_port_from_closed_form_weights_reproduces_edm(name, expected):
    """The other two reference networks, their state dicts rebuilt here from the closed form."""
    fields, event_shape = infer_config(*unet_arguments(reference.MODELS[name]), name)
    module = make_edm_port(**fields)
    shapes = expected_shapes(module, event_shape[0], event_shape[2])
    state = reference.synthetic_state_dict(shapes, {k: RESAMPLE_FILTER for k in shapes if k.endswith("resample_filter")})
    params = convert_state_dict(state, fields, event_shape, name)
    check_against_reference(name, module.apply, params, expected)


def test_published_parameter_counts_and_key_table(expected):
    """EDM's CIFAR-10 DDPM++ (55.7M, with augment_dim 9) and ImageNet-64 ADM (295.9M) have exactly
    the parameters EDM's own classes count for the same configs; abstract shapes, nothing allocated."""
    for preset, (arch, _, event_shape) in EDM_PRESETS.items():
        config = default_network_config(f"edm_{arch}")
        config.preset = preset
        abstract = jax.eval_shape(make_network(config).init, jax.random.key(0), jax.ShapeDtypeStruct((1, *event_shape), jnp.float32))
        assert count_params(abstract) == int(expected[f"count_{preset}"]), preset
    assert [round(int(expected[f"count_{p}"]) / 1e5) / 10 for p in EDM_PRESETS] == [55.7, 55.7, 295.9]
    table = expected_shapes(make_edm_port(preset="cifar10_cond"), 32, 3)
    for key, shape in {
        "model.map_label.weight": (128, 10), "model.map_augment.weight": (128, 9), "model.map_layer1.bias": (512,),
        "model.enc.32x32_conv.weight": (128, 3, 3, 3), "model.enc.16x16_block0.qkv.weight": (768, 256, 1, 1),
        "model.enc.16x16_down.conv0.resample_filter": (1, 1, 2, 2), "model.dec.8x8_in0.norm2.weight": (256,),
        "model.dec.32x32_block4.conv0.weight": (256, 384, 3, 3), "model.dec.32x32_aux_conv.weight": (3, 256, 3, 3),
    }.items():
        assert table[key] == shape, key
    adm = expected_shapes(make_edm_port(preset="imagenet64_cond"), 64, 3)
    assert adm["model.map_label.weight"] == (768, 1000) and adm["model.enc.32x32_block0.affine.weight"] == (768, 768)
    assert "model.enc.32x32_down.skip.weight" not in adm and "model.enc.32x32_down.skip.resample_filter" in adm
    for key, shape in table.items():
        if not key.endswith("resample_filter"):
            path, array = to_flax(key, np.zeros(shape))
            assert torch_key(path) == key
    assert flax_path("model.dec.8x8_in0.norm2.weight") == ("dec_8x8_in0", "norm2", "kernel")


def test_registry_presets_and_errors():
    config = default_network_config("edm_adm")
    assert config.preset == "imagenet64_cond"
    edm2 = default_network_config("edm2")
    edm2.num_times = 2
    with pytest.raises(ValueError, match="one time input"):
        make_network(edm2)
    with pytest.raises(ValueError, match="is an ddpmpp network, not adm"):
        make_edm_port("adm", preset="cifar10_cond")
    with pytest.raises(ValueError, match="no fields"):
        make_edm_port("ddpmpp", label_dim=10)
    module = make_edm_port(preset="cifar10_uncond", dropout=0.0)
    assert module.num_classes == 0 and module.augment_dim == 9 and module.dropout == 0.0 and module.channel_mult == (2, 2, 2)
    with pytest.raises(CheckpointFileError, match="NCSN\\+\\+ is not ported"):
        infer_config(*unet_arguments(dict(reference.PUBLISHED["cifar10_cond"], embedding_type="fourier")), "n.pkl")
    with pytest.raises(CheckpointFileError, match="holds a VPPrecond network"):
        select_network({"ema": PersistentObject("VPPrecond", {})}, "v.pkl")


def test_extra_time_inputs_start_as_the_published_network():
    """num_times = 2 (CTM's s) adds one zero-initialised embedding: the published weights plus it compute the
    published network whatever the extra time, and the new layer is the only new parameter (DDPM++; ADM shares
    the embedding code)."""
    from jaxdistill.benchmarks.images import TINY_DDPMPP
    from jaxdistill.objectives.common import overlay_params

    config = ml_collections.ConfigDict(TINY_DDPMPP)
    one, two = make_network(config), make_network(ml_collections.ConfigDict({**config.to_dict(), "num_times": 2}))
    x, labels = jax.random.normal(jax.random.key(0), (3, 8, 8, 3)), jnp.array([0, 3, 7])
    published = one.init(jax.random.key(1), x)
    params = overlay_params(two.init(jax.random.key(2), x), published)
    assert set(params["params"]) - set(published["params"]) == {"map_extra0"}
    t = jnp.array([-1.0, 0.2, 1.0])
    reference = one.apply(published, x, t, labels)
    for s in (t, jnp.array([-2.0, 0.0, 0.5])):
        np.testing.assert_array_equal(two.apply(params, x, jnp.stack([t, s], 1), labels), reference)


def _pickle_with_global(path: str) -> None:
    class Payload:
        def __reduce__(self):
            return os.system, ("echo should-never-run",)

    with open(path, "wb") as f:
        pickle.dump({"ema": Payload()}, f)


def _edited(path: str, old: bytes, new: bytes) -> None:
    """The tiny pickle with the first ``old`` after the first ``b"model_channels"`` made ``new`` (same length)."""
    raw = open(PKL, "rb").read()
    at = raw.index(old, raw.index(b"model_channels")) if old == b"K\x04" else raw.index(old)
    open(path, "wb").write(raw[:at] + new + raw[at + len(old):])


@pytest.mark.parametrize(
    "case, names",
    [
        ("missing", ["no checkpoint file"]),
        ("text", ["is not a pickle"]),
        ("dit", ["is a zip archive", "not an EDM network pickle"]),
        ("truncated", ["is a truncated EDM network pickle"]),
        ("global", ["refused to unpickle", "system, which an EDM network reader does not load"]),
        ("mismatch", ["does not match the DDPM++ (8 channels x (1, 2), 1 blocks, 10 classes)", "has shape"]),
        ("other", ["holds a XYZPrecond network"]),
        ("dit_options", ["apply to --from dit-pt only"]),
    ],
)
def test_convert_bad_inputs(tmp_path, capsys, case, names):
    """One stderr line naming the file, exit 2, the existing --out untouched and no stray files."""
    src = str(tmp_path / "in.pkl")
    if case == "text":
        open(src, "w").write("not a checkpoint\n")
    elif case == "dit":
        src = DIT_PT
    elif case == "truncated":
        open(src, "wb").write(open(PKL, "rb").read()[:60_000])
    elif case == "global":
        _pickle_with_global(src)
    elif case == "mismatch":  # the constructor arguments say 8 channels, the tensors hold 4
        _edited(src, b"K\x04", b"K\x08")
    elif case == "other":
        _edited(src, b"EDMPrecond", b"XYZPrecond")
    elif case == "dit_options":
        src = PKL
    out = tmp_path / "out" / "edm.npz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier conversion")
    capsys.readouterr()
    extra = ["--size", "XL/2"] if case == "dit_options" else []
    assert main(["convert", "--from", "edm-pkl", src, "--out", str(out), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxdistill: error: ") and src in lines[0], lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert out.read_bytes() == b"an earlier conversion" and os.listdir(out.parent) == ["edm.npz"]


def test_load_converted_checks_the_network(tmp_path):
    out = str(tmp_path / "tiny.npz")
    assert main(["convert", "--from", "edm-pkl", PKL, "--out", out]) == 0
    wrong = ml_collections.ConfigDict(dict(name="edm_ddpmpp", preset=None, num_classes=10, augment_dim=9, model_channels=8, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4]))
    with pytest.raises(CheckpointFileError, match=r"does not match the network .edm_ddpmpp.: params/dec_4x4_block0/affine/bias is float32\[8\], the network expects float32\[16\]"):
        load_converted(out, wrong)
