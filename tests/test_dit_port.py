"""The Flax port of DiT (jaxdistill.models.ports.dit) against facebookresearch/DiT itself, the
torch-free .pt reader, the converter and its CLI (``jaxdistill convert --from dit-pt``).

How the reference numbers were made: ``tests/reference/make_dit_reference.py`` (its docstring has
the versions and the commands) builds DiT's own ``models.DiT`` in PyTorch (float32, CPU) for two
tiny configurations (``TINY``: 8x8x4 latents, patch 2, width 16, depth 2, 2 heads, 10 classes,
learn_sigma; ``TINY_EPS``: 8x8x3, patch 4, width 24, depth 1, 3 heads, 5 classes, no sigma),
sets every weight to the closed form ``synthetic_value`` (sin waves, no zeros, the zero-initialised
adaLN and output layers included), runs it on the closed-form inputs of ``inputs`` and stores the
outputs and each block's tokens in ``tests/data/dit_reference.npz`` (20 KB) and TINY's state dict
(``torch.save``) in ``tests/data/dit_tiny.pt`` (76 KB). Measured: max |port - DiT| = 1.2e-5 on
outputs of scale 2.9 (TINY), float32 rounding; a full-size DiT-XL/2 with the same closed-form
weights, converted from its 2.7 GB .pt, gave 1.3e-5 at scale 8.9 (the script's ``--xl2``, not in CI).
"""
import importlib.util
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdistill.cli import main
from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.models.ports.converted import load_converted
from jaxdistill.models.ports.dit import DIT_SIZES, make_dit_port, pos_embed
from jaxdistill.models.ports.dit_checkpoint import convert_state_dict, expected_shapes, flax_path, select_state_dict, torch_key
from jaxdistill.models.ports.torch_pt import read_pt
from jaxdistill.models.registry import count_params, default_network_config, make_network

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
PT = os.path.join(DATA, "dit_tiny.pt")
_spec = importlib.util.spec_from_file_location("make_dit_reference", os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "make_dit_reference.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(os.path.join(DATA, "dit_reference.npz")) as data:
        return dict(data)


def nhwc_inputs(config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference inputs in jaxdistill's conventions: NHWC, float t, NULL_LABEL for the null class."""
    x, t, y = reference.inputs(config)
    return x.transpose(0, 2, 3, 1), t.astype(np.float32), np.where(y == config["num_classes"], -1, y)


def assert_matches(name: str, out, features, expected: dict, config: dict) -> None:
    ref = expected[f"{name}_out"].transpose(0, 2, 3, 1)
    scale = float(np.abs(ref).max())
    assert out.shape == ref.shape
    assert float(np.abs(np.asarray(out) - ref).max()) < 1e-4 * scale
    assert len(features) == config["depth"]
    for i, tokens in enumerate(features):
        ref_tokens = expected[f"{name}_block{i}"]
        assert tokens.shape == (4, config["input_size"] // config["patch_size"], config["input_size"] // config["patch_size"], config["hidden_size"])
        assert float(np.abs(np.asarray(tokens).reshape(ref_tokens.shape) - ref_tokens).max()) < 1e-4 * float(np.abs(ref_tokens).max())


def test_reader_returns_the_closed_form_weights():
    state = read_pt(PT)
    shapes = {k: v.shape for k, v in state.items()}
    table = pos_embed(16, 4, 4)[None]
    want = reference.synthetic_state_dict(shapes, table)
    assert sorted(state) == sorted(want) and len(state) == 32
    for key, value in state.items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, want[key], atol=1e-6, err_msg=key)  # pos_embed: DiT's table equals the port's


def test_reader_layouts_dtypes_and_strides():
    """torch_layouts.pt (reference.layouts): a training checkpoint's structure, strided tensors, dtypes."""
    obj = read_pt(os.path.join(DATA, "torch_layouts.pt"))
    base = reference.synthetic_value(0, (3, 4))
    model, ema = obj["model"], obj["ema"]
    np.testing.assert_array_equal(model["t"], base.T)
    np.testing.assert_array_equal(model["slice"], base[1:, 2:])
    np.testing.assert_array_equal(model["half"], base.astype(np.float16))
    assert model["half"].dtype == np.float16 and ema["long"].dtype == np.int64
    np.testing.assert_array_equal(model["bf16"], np.array([1.0, -2.5, 0.1875], np.float32))
    np.testing.assert_array_equal(ema["long"], np.arange(5) - 2)
    np.testing.assert_array_equal(ema["bool"], [True, False])
    np.testing.assert_array_equal(ema["param"], base[0])
    assert obj["args"].model == "DiT-XL/2" and float(obj["opt"]["state"][0]["step"]) == 3.0
    assert select_state_dict(obj, "layouts.pt")[1] == "ema"


def test_converted_port_reproduces_dit(tmp_path, capsys, expected):
    out = str(tmp_path / "tiny.npz")
    assert main(["convert", "--from", "dit-pt", PT, "--out", out, "--num-heads", "2"]) == 0
    assert "inferred from the shapes" in capsys.readouterr().out
    network, params, info = load_converted(out)
    assert info["event_shape"] == [8, 8, 4] and info["entry"] == "state dict"
    x, t, y = nhwc_inputs(reference.TINY)
    full, features = network.module.clone(return_variance=True).apply(params, x, t, y, return_features=True)
    assert_matches("tiny", full, features, expected, reference.TINY)
    eps = network.apply(params, x, t, y)  # the contract's output: the eps channels only
    np.testing.assert_array_equal(eps, full[..., :4])
    # NULL_LABEL (-1), DiT's null index num_classes and cond=None are the same class.
    np.testing.assert_array_equal(network.apply(params, x, t, np.full(4, 10)), network.apply(params, x, t, np.full(4, -1)))
    np.testing.assert_array_equal(network.apply(params, x, t, None), network.apply(params, x, t, np.full(4, -1)))


def test_port_without_sigma_reproduces_dit(expected):
    """TINY_EPS (patch 4, 3 channels, learn_sigma False) from weights rebuilt here, not read from a file."""
    config = reference.TINY_EPS
    module = make_dit_port(None, **{k: config[k] for k in ("patch_size", "hidden_size", "depth", "num_heads", "num_classes", "learn_sigma")})
    shapes = expected_shapes(module, config["input_size"], config["in_channels"])
    state = reference.synthetic_state_dict(shapes, pos_embed(24, 2, 2)[None])
    params, fields = convert_state_dict(state, "tiny_eps", num_heads=3)
    assert fields["learn_sigma"] is False and fields["num_classes"] == 5
    x, t, y = nhwc_inputs(config)
    out, features = module.apply(params, x, t, y, return_features=True)
    assert_matches("tiny_eps", out, features, expected, config)


def test_sizes_parameter_counts_and_key_table():
    """DiT-XL/2 has the 675,129,632 parameters DiT's train.py counts (674,834,720 trainable plus the
    fixed 256 x 1152 pos_embed); S/B/L/XL-2 have the paper's 33M/130M/458M/675M trainable ones
    (Peebles & Xie 2023, Table 1). Counted from abstract shapes, nothing allocated."""
    counts = {}
    for size in ("S/2", "B/2", "L/2", "XL/2"):
        config = default_network_config("dit_port")
        config.size = size
        abstract = jax.eval_shape(make_network(config).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 4), jnp.float32))
        counts[size] = count_params(abstract)
    assert counts["XL/2"] + 256 * DIT_SIZES["XL/2"]["hidden_size"] == 675_129_632
    assert [round(counts[s] / 1e6) for s in ("S/2", "B/2", "L/2", "XL/2")] == [33, 130, 458, 675]

    table = expected_shapes(make_dit_port("XL/2"), 32, 4)
    assert len(table) == 28 * 10 + 12
    for key, shape in {
        "x_embedder.proj.weight": (1152, 4, 2, 2), "t_embedder.mlp.0.weight": (1152, 256), "t_embedder.mlp.2.bias": (1152,),
        "y_embedder.embedding_table.weight": (1001, 1152), "blocks.27.attn.qkv.weight": (3456, 1152),
        "blocks.27.attn.proj.weight": (1152, 1152), "blocks.27.mlp.fc1.weight": (4608, 1152), "blocks.27.mlp.fc2.bias": (1152,),
        "blocks.27.adaLN_modulation.1.weight": (6912, 1152), "final_layer.linear.weight": (32, 1152),
        "final_layer.adaLN_modulation.1.bias": (2304,), "pos_embed": (1, 256, 1152),
    }.items():
        assert table[key] == shape, key
    assert all(torch_key(flax_path(k)) == k for k in table if k != "pos_embed")
    assert flax_path("blocks.3.adaLN_modulation.1.weight") == ("blocks_3", "adaLN_modulation_1", "kernel")


def test_registry_and_checkpoint_layouts():
    config = default_network_config("dit_port")
    config.num_times = 2
    with pytest.raises(ValueError, match="one time input"):
        make_network(config)
    with pytest.raises(ValueError, match="no fields"):
        make_dit_port("S/8", dropout=0.1)
    state = read_pt(PT)
    other = {k: v + 1 for k, v in state.items()}
    assert select_state_dict({"model": other, "ema": state, "args": None}, "c.pt")[1] == "ema"
    assert select_state_dict({"model": other, "ema": state}, "c.pt", use_ema=False) == (other, "model")
    with pytest.raises(CheckpointFileError, match="holds no DiT state dict"):
        select_state_dict({"opt": {}}, "c.pt")
    with pytest.raises(CheckpointFileError, match="c.pt. is not a DiT checkpoint: x_embedder.proj.weight has shape"):
        convert_state_dict({**state, "x_embedder.proj.weight": state["x_embedder.proj.weight"][0]}, "c.pt", num_heads=2)
    with pytest.raises(CheckpointFileError, match="c.pt.: pos_embed is not DiT's fixed sin-cos table"):
        convert_state_dict({**state, "pos_embed": state["pos_embed"][:, ::-1]}, "c.pt", num_heads=2)
    with pytest.raises(CheckpointFileError, match="c.pt.: blocks.1.attn.qkv.bias holds NaN"):
        convert_state_dict({**state, "blocks.1.attn.qkv.bias": state["blocks.1.attn.qkv.bias"] * np.nan}, "c.pt", num_heads=2)


def _disallowed_global_pt(path: str) -> None:
    class Payload:
        def __reduce__(self):
            return os.system, ("echo should-never-run",)

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x_embedder.proj.weight": Payload()}, protocol=2))


def _corrupt_storage_pt(path: str) -> None:
    """A copy of the tiny .pt with one byte of a storage flipped (its zip CRC no longer matches)."""
    raw = bytearray(open(PT, "rb").read())
    with zipfile.ZipFile(PT) as archive:
        storage = archive.read("dit_tiny/data/3")
    raw[raw.find(storage) + len(storage) // 2] ^= 0xFF
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize(
    "case, extra, names",
    [
        ("missing", [], ["no checkpoint file"]),
        ("text", [], ["not a readable PyTorch .pt file"]),
        ("truncated", [], ["not a readable PyTorch .pt file"]),
        ("crc", [], ["Bad CRC-32"]),
        ("npz", [], ["not a PyTorch .pt file"]),
        ("global", [], ["refused to unpickle", "system, which a checkpoint reader does not load"]),
        ("size", ["--size", "S/2"], ["DiT-S/2", "depth 2"]),
        ("heads", [], ["--num-heads"]),
        ("edm", [], ["is a zip archive", "not an EDM2 network pickle"]),
        ("same", [], ["is the input"]),
    ],
)
def test_convert_bad_inputs(tmp_path, capsys, case, extra, names):
    """One stderr line naming the file, exit 2, the existing --out untouched and no stray files."""
    src = str(tmp_path / "in.pt")
    if case == "missing":
        pass
    elif case == "text":
        open(src, "w").write("not a checkpoint\n")
    elif case == "truncated":
        open(src, "wb").write(open(PT, "rb").read()[:40_000])
    elif case == "crc":
        _corrupt_storage_pt(src)
    elif case == "npz":
        with open(src, "wb") as f:
            np.savez(f, x=np.zeros(3))
    elif case == "global":
        _disallowed_global_pt(src)
    else:  # a good file that does not fit the request
        src = PT
    out = tmp_path / "out" / "dit.npz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier conversion")
    if case == "same":
        src = str(out)
    kind = "edm2-pkl" if case == "edm" else "dit-pt"
    capsys.readouterr()
    assert main(["convert", "--from", kind, src, "--out", str(out), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxdistill: error: ") and src in lines[0], lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert out.read_bytes() == b"an earlier conversion" and os.listdir(out.parent) == ["dit.npz"]


def test_load_converted_checks_the_network(tmp_path):
    out = str(tmp_path / "tiny.npz")
    assert main(["convert", "--from", "dit-pt", PT, "--out", out, "--num-heads", "2"]) == 0
    wrong = ml_collections.ConfigDict(dict(name="dit_port", size=None, patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=10))
    with pytest.raises(CheckpointFileError, match=r"tiny.npz. does not match the network .dit_port.: params/blocks_0/adaLN_modulation_1/bias is float32\[96\], the network expects float32\[192\]"):
        load_converted(out, wrong)
    with pytest.raises(CheckpointFileError, match="not a converted checkpoint"):
        load_converted(os.path.join(DATA, "dit_reference.npz"))
