"""The Flax port of EDM2's magnitude-preserving UNet (jaxdistill.models.ports.edm2) against NVlabs/edm2
itself, the torch-free network-pickle reader, the converter and its CLI (``jaxdistill convert --from edm2-pkl``).

How the reference numbers were made: ``tests/reference/make_edm2_reference.py`` (its docstring has
the versions and the commands) builds EDM2's own ``Precond`` in PyTorch (float32, CPU) around three
tiny UNets of ``MODELS``: ``cond`` (8x8x4, 8 channels x [1, 2], one block per level, attention at
4x4 with 4 heads, 10 classes, EDM2's other defaults), ``uncond`` (8x8x3, 8 x [1, 2, 3], two blocks,
attention at 8x8 and 2x2, every balance, the noise and embedding widths, clip_act 1.5 and
sigma_data 0.6 off their defaults) and ``labels`` (4x4x2, 5 classes, label_balance 0.7, no
clipping); sets every state-dict entry to the closed form ``synthetic_value`` (float16-exact) and
runs them on the closed-form inputs of ``inputs`` (sigma 0.002, 0.5, 2, 80; labels 0, 3, the last
and unconditional). It stores ``D = Precond(x, sigma, one_hot)``, the UNet's output ``F``, per-level
features (forward hooks), the uncertainty head's ``logvar``, the parameter counts of the tiny models
and of the published ImageNet-512 sizes in ``tests/data/edm2_reference.npz`` (49 KB), and pickles
``cond`` the way EDM2's training loop and ``reconstruct_phema.py`` write networks (float16) into
``tests/data/edm2_tiny-0002147-0.130.pkl`` (125 KB; each persistent object's pickled module source
replaced by a placeholder). Measured max |port - EDM2| (float32 rounding; the tests allow 1e-5 of
each array's scale): cond D 3.0e-7 (scale 0.70), F 6.6e-7 (1.4), features 3.3e-6 (4.4), logvar
6e-8; uncond D 7.0e-7 (0.84), F 1.2e-6 (1.2), features 2.8e-6 (1.5); labels D 2.8e-7 (0.78), F
6.0e-7 (1.7), features 8.3e-7 (2.4).
"""
import importlib.util
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.cli import main
from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import EDM
from jaxdistill.models.ports.converted import converted_teacher, load_converted
from jaxdistill.models.ports.edm2 import EVENT_SHAPE, SIZES, make_edm2_port
from jaxdistill.models.ports.edm2_checkpoint import (
    convert_state_dict,
    ema_profile,
    expected_shapes,
    flax_path,
    infer_config,
    network_config,
    select_network,
    to_flax,
    torch_key,
)
from jaxdistill.models.ports.edm_checkpoint import state_dict
from jaxdistill.models.ports.edm_pickle import PersistentObject, PickledArray, read_edm_pickle
from jaxdistill.models.registry import count_params, default_network_config, make_network

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
PKL = os.path.join(DATA, "edm2_tiny-0002147-0.130.pkl")
EDM_PKL = os.path.join(DATA, "edm_ddpmpp_tiny.pkl")
_spec = importlib.util.spec_from_file_location("make_edm2_reference", os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "make_edm2_reference.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(os.path.join(DATA, "edm2_reference.npz")) as data:
        return dict(data)


def nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1)


def assert_close(got, want: np.ndarray, what: str) -> None:
    """float32 agreement: max |got - want| below 1e-5 of want's scale."""
    assert np.shape(got) == want.shape, what
    assert float(np.abs(np.asarray(got) - want).max()) < 1e-5 * float(np.abs(want).max()), what


def unet_arguments(config: dict) -> tuple[dict, dict]:
    """(UNet arguments, Precond arguments) as Precond records them from its own."""
    return {k: v for k, v in config.items() if k not in ("sigma_data", "logvar_channels", "use_fp16")}, config


def check_against_reference(name: str, module, params, expected: dict, denoiser: Denoiser) -> None:
    """D through the Denoiser of kind "edm", the raw output F (fed (c_in x, ln(sigma) / 4) by that
    Denoiser), the features and the uncertainty head against EDM2's Precond."""
    x, sigma, labels = reference.inputs(reference.MODELS[name])

    @jax.jit  # one compilation for all four (op-by-op dispatch of the four passes is slower)
    def outputs(params, x, sigma, labels):
        logvar = module.apply(params, x, jnp.log(sigma) / 4, labels, return_logvar=True)[1]
        return denoiser.x0(params, x, sigma, labels), denoiser.raw(params, x, sigma, labels), denoiser.features(params, x, sigma, labels), logvar

    d, f, features, logvar = outputs(params, nhwc(x), sigma, labels)
    assert_close(d, nhwc(expected[f"{name}_D"]), f"{name} D")
    assert_close(f, nhwc(expected[f"{name}_F"]), f"{name} F")
    assert len(features) == len(reference.MODELS[name]["channel_mult"]) + 1
    for i, feature in enumerate(features):
        assert_close(feature, nhwc(expected[f"{name}_feat{i}"]), f"{name} feature {i}")
    assert_close(logvar, expected[f"{name}_logvar"], f"{name} logvar")


def test_reader_returns_the_pickled_network():
    obj = read_edm_pickle(PKL, "EDM2")
    assert sorted(obj) == ["dataset_kwargs", "ema", "encoder", "loss_fn"]
    assert obj["loss_fn"].class_name == "EDM2Loss" and obj["loss_fn"].state["P_mean"] == -0.4
    encoder = obj["encoder"]
    assert encoder.class_name == "StabilityVAEEncoder" and isinstance(encoder.state["scale"], PickledArray)
    np.testing.assert_allclose(encoder.state["scale"].array, np.float32(0.5) / np.float32([4.17, 4.62, 3.71, 3.28]))
    net = select_network(obj, "tiny")
    fields, event_shape, sigma_data, use_fp16 = network_config(net, "tiny")
    assert event_shape == [8, 8, 4] and sigma_data == 0.5 and use_fp16
    assert fields == dict(num_classes=10, model_channels=8, channel_mult=[1, 2], channel_mult_noise=None, channel_mult_emb=None, num_blocks=1, attn_resolutions=[4],
                          label_balance=0.5, concat_balance=0.5, channels_per_head=4, dropout=0.1, res_balance=0.3, attn_balance=0.3, clip_act=256.0, logvar_channels=16)
    assert reference.SOURCE_PLACEHOLDER not in str(net.state)  # module_src is dropped, never kept or run
    state = state_dict(net, "tiny")
    want = reference.synthetic_state_dict({k: v.shape for k, v in state.items()})
    assert len(state) == 63
    for key, value in state.items():
        assert value.dtype == np.float16  # EDM2 pickles its networks in float16
        np.testing.assert_array_equal(value.astype(np.float32), want[key], err_msg=key)
    assert select_network({**obj, "ema_0.050": net}, "tiny", "ema_0.050") is net  # --ema picks one of several networks
    assert ema_profile(PKL) == {"kimg": 2147, "ema_std": 0.13} and ema_profile("edm2-img512-xs-2147483-0.135.pkl") == {"kimg": 2147483, "ema_std": 0.135}
    assert ema_profile("tiny.pkl") is None


def test_converted_edm2_reproduces_precond(tmp_path, capsys, expected):
    out = str(tmp_path / "tiny.npz")
    assert main(["convert", "--from", "edm2-pkl", PKL, "--out", out]) == 0
    assert "EDM2 UNet (8 channels x (1, 2), 1 blocks, 10 classes) (from its constructor arguments; ema, EMA std 0.13 at 2147 kimg" in capsys.readouterr().out
    network, params, info = load_converted(out)
    assert info["event_shape"] == [8, 8, 4] and info["sigma_data"] == 0.5 and info["prediction"] == "edm" and info["ema_std"] == 0.13 and info["entry"] == "ema"
    assert network.num_classes == 10 and network.module.channels_per_head == 4 and network.module.logvar_channels == 16
    check_against_reference("cond", network.module, params, expected, Denoiser(network.apply, EDM(), "edm", sigma_data=0.5))
    teacher, params, _ = converted_teacher(out)  # teacher.kind = "converted": EDM process, kind "edm", the pickle's sigma_data
    assert teacher.process == EDM() and teacher.prediction == "edm" and teacher.sigma_data == 0.5
    x, sigma, labels = reference.inputs(reference.MODELS["cond"])
    assert_close(jax.jit(teacher.x0)(params, nhwc(x), sigma, labels), nhwc(expected["cond_D"]), "converted teacher D")
    # The unconditional input: NULL_LABEL (-1), cond=None and an all-zero label row are the same.
    t = jnp.log(jnp.asarray(sigma)) / 4
    null, none, zeros = jax.jit(lambda p, x: [network.apply(p, x, t, c) for c in (jnp.full(4, -1), None, jnp.zeros((4, 10)))])(params, nhwc(x))
    np.testing.assert_array_equal(none, null)
    np.testing.assert_array_equal(zeros, null)


@pytest.mark.parametrize("name", ["uncond", "labels"])
def test_port_from_closed_form_weights_reproduces_precond(name, expected):
    """The other two reference networks, their state dicts rebuilt here from the closed form."""
    config = reference.MODELS[name]
    fields, event_shape = infer_config(*unet_arguments(config), name)
    module = make_edm2_port(**fields)
    shapes = expected_shapes(module, event_shape[0], event_shape[2])
    params = convert_state_dict(reference.synthetic_state_dict(shapes), fields, event_shape, name)
    assert count_params(params) == int(expected[f"{name}_params"]) + int(expected[f"{name}_buffers"])
    check_against_reference(name, module, params, expected, Denoiser(module.apply, EDM(), "edm", sigma_data=config.get("sigma_data", 0.5)))


def test_published_parameter_counts_and_key_table(expected):
    """EDM2-XS ... XXL (125M, 280M, 498M, 777M, 1.1B, 1.5B in the paper) have exactly the parameters
    EDM2's own Precond counts (its Fourier buffers, parameters here, aside); abstract shapes only."""
    for size in SIZES:
        config = default_network_config("edm2")
        config.size = size
        abstract = jax.eval_shape(make_network(config).init, jax.random.key(0), jax.ShapeDtypeStruct((1, *EVENT_SHAPE), jnp.float32))["params"]
        buffers = sum(leaf.size for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0] if path[-1].key in ("freqs", "phases"))
        assert count_params(abstract) - buffers == int(expected[f"count_{size}"]), size
    assert [round(int(expected[f"count_{s}"]) / 1e6) for s in SIZES] == [125, 280, 498, 777, 1119, 1523]
    table = expected_shapes(make_edm2_port("XS"), 64, 4)
    for key, shape in {
        "unet.emb_fourier.freqs": (128,), "unet.emb_noise.weight": (512, 128), "unet.emb_label.weight": (512, 1000), "unet.out_gain": (),
        "unet.enc.64x64_conv.weight": (128, 5, 3, 3), "unet.enc.32x32_down.conv_res0.weight": (128, 128, 3, 3), "unet.enc.32x32_block0.conv_skip.weight": (256, 128, 1, 1),
        "unet.enc.16x16_block2.attn_qkv.weight": (1152, 384, 1, 1), "unet.dec.8x8_in0.attn_proj.weight": (512, 512, 1, 1), "unet.dec.8x8_in1.emb_gain": (),
        "unet.dec.64x64_block3.conv_res0.weight": (128, 256, 3, 3), "unet.out_conv.weight": (4, 128, 3, 3), "logvar_fourier.phases": (128,), "logvar_linear.weight": (1, 128),
    }.items():
        assert table[key] == shape, key
    assert "unet.dec.8x8_in1.attn_qkv.weight" not in table and "unet.enc.32x32_block0.attn_qkv.weight" not in table
    for key, shape in table.items():
        path, array = to_flax(key, np.zeros(shape))
        assert torch_key(path) == key
    assert flax_path("unet.dec.8x8_in0.attn_qkv.weight") == ("dec_8x8_in0", "attn_qkv", "kernel") and flax_path("logvar_linear.weight") == ("logvar_linear", "kernel")


def test_registry_presets_and_errors():
    config = default_network_config("edm2")
    assert config.size == "XS" and config.clip_act == 256.0
    config.num_times = 2
    with pytest.raises(ValueError, match="one time input"):
        make_network(config)
    with pytest.raises(ValueError, match="unknown EDM2 size"):
        make_edm2_port("XXXL")
    with pytest.raises(ValueError, match="no fields"):
        make_edm2_port("S", label_dim=10)
    module = make_edm2_port("M", num_classes=0, clip_act=None)
    assert module.model_channels == 256 and module.dropout == 0.1 and module.num_classes == 0 and module.clip_act is None
    unet, precond = unet_arguments(reference.MODELS["cond"])
    with pytest.raises(CheckpointFileError, match=r"resample_filter \[1, 3, 3, 1\]"):
        infer_config({**unet, "resample_filter": [1, 3, 3, 1]}, precond, "f.pkl")
    with pytest.raises(CheckpointFileError, match="arguments the port does not know: \\['attn_heads'\\]"):
        infer_config({**unet, "attn_heads": 2}, precond, "f.pkl")
    with pytest.raises(CheckpointFileError, match="is an EDM network pickle .* --from edm-pkl"):
        select_network({"ema": PersistentObject("EDMPrecond", {})}, "e.pkl")
    fields, event_shape = infer_config(unet, precond, "f.pkl")
    state = reference.synthetic_state_dict(expected_shapes(make_edm2_port(**fields), 8, 4))
    state["unet.out_gain"] = np.float32(np.nan)
    with pytest.raises(CheckpointFileError, match="unet.out_gain holds NaN"):
        convert_state_dict(state, fields, event_shape, "f.pkl")


def _pickle_with_global(path: str) -> None:
    class Payload:
        def __reduce__(self):
            return os.system, ("echo should-never-run",)

    with open(path, "wb") as f:
        pickle.dump({"ema": Payload()}, f)


def _edited(path: str, old: bytes, new: bytes) -> None:
    """The tiny pickle with the first ``old`` after the first ``b"model_channels"`` made ``new`` (same length)."""
    raw = open(PKL, "rb").read()
    at = raw.index(old, raw.index(b"model_channels"))
    open(path, "wb").write(raw[:at] + new + raw[at + len(old):])


@pytest.mark.parametrize(
    "case, kind, extra, names",
    [
        ("missing", "edm2-pkl", [], ["no checkpoint file"]),
        ("text", "edm2-pkl", [], ["is not a pickle, so not an EDM2 network pickle"]),
        ("edm", "edm2-pkl", [], ["is an EDM network pickle", "--from edm-pkl"]),
        ("edm2", "edm-pkl", [], ["is an EDM2 network pickle", "--from edm2-pkl"]),
        ("truncated", "edm2-pkl", [], ["is a truncated EDM2 network pickle"]),
        ("global", "edm2-pkl", [], ["refused to unpickle", "system, which an EDM network reader does not load"]),
        ("mismatch", "edm2-pkl", [], ["does not match the EDM2 UNet (12 channels x (1, 2), 1 blocks, 10 classes)", "has shape"]),
        ("entry", "edm2-pkl", ["--ema", "ema_std"], ["has no entry 'ema_std'", "its networks: ['ema']"]),
        ("ema_option", "edm-pkl", ["--ema", "ema"], ["--ema applies to --from edm2-pkl only"]),
    ],
)
def test_convert_bad_inputs(tmp_path, capsys, case, kind, extra, names):
    """One stderr line naming the file, exit 2, the existing --out untouched and no stray files."""
    src = str(tmp_path / "in.pkl")
    if case == "text":
        open(src, "w").write("not a checkpoint\n")
    elif case in ("edm", "ema_option"):
        src = EDM_PKL
    elif case in ("edm2", "entry"):
        src = PKL
    elif case == "truncated":
        open(src, "wb").write(open(PKL, "rb").read()[:60_000])
    elif case == "global":
        _pickle_with_global(src)
    elif case == "mismatch":  # the constructor arguments say 12 channels, the tensors hold 8
        _edited(src, b"K\x08", b"K\x0c")
    out = tmp_path / "out" / "edm2.npz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier conversion")
    capsys.readouterr()
    assert main(["convert", "--from", kind, src, "--out", str(out), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxdistill: error: ") and src in lines[0], lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert out.read_bytes() == b"an earlier conversion" and os.listdir(out.parent) == ["edm2.npz"]
