"""The Flax FID Inception network (jaxdistill.models.ports.fid_inception) against pytorch-fid's
``fid_inception_v3`` itself, its key map, the legacy-format .pth reader and ``jaxdistill convert
--from fid-inception-pth``.

How the reference numbers were made: ``tests/reference/make_fid_reference.py`` (its docstring has the
versions and the command) builds pytorch-fid's FID Inception in PyTorch (float32, CPU), sets every
weight to the closed form ``synthetic_value`` (a sin chirp, BatchNorm variances in [0.5, 1.5]),
runs pytorch-fid's ``InceptionV3`` pipeline (bilinear resize to 299x299, ``2x - 1``) on the two
32x32 ``images`` and stores their pool3 features and logits in
``tests/data/fid_inception_reference.npz`` (22 KB), and five entries of the state dict in torch's
legacy format in ``tests/data/fid_inception_few.pth`` (9 KB). The test rebuilds the 23.9M weights
in numpy. Measured: max |Flax - pytorch-fid| = 2.4e-6 on pool3 features of scale 3.4 and 2.1e-6 on
logits of scale 2.4 (float32 rounding).
"""
import importlib.util
import os

import jax
import numpy as np
import pytest

from jaxdistill.cli import main
from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.models.ports import convert
from jaxdistill.models.ports import fid_inception_checkpoint as ckpt
from jaxdistill.models.ports.converted import save_converted
from jaxdistill.models.ports.fid_inception import FIDInceptionV3
from jaxdistill.models.ports.torch_pt import read_pt

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
FEW = os.path.join(DATA, "fid_inception_few.pth")
_spec = importlib.util.spec_from_file_location("make_fid_reference", os.path.join(HERE, "reference", "make_fid_reference.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    """The closed-form state dict, as torch's state_dict() has it (num_batches_tracked included)."""
    shapes = ckpt.expected_shapes()
    shapes.update({k.replace("running_var", "num_batches_tracked"): () for k in shapes if k.endswith("running_var")})
    return reference.synthetic_state_dict(shapes)


def test_key_map_and_shapes():
    shapes = ckpt.expected_shapes()
    assert len(shapes) == 94 * 5 + 2 and sum(int(np.prod(s)) for s in shapes.values()) == 23_885_392
    for key, shape in {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,), "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7), "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1), "Mixed_7c.branch_pool.bn.bias": (192,), "fc.weight": (1008, 2048), "fc.bias": (1008,),
    }.items():
        assert shapes[key] == shape, key
    assert all(ckpt.torch_key(ckpt.flax_path(k)) == k for k in shapes)
    assert ckpt.flax_path("Mixed_7c.branch3x3dbl_3a.bn.running_var") == ("Mixed_7c", "branch3x3dbl_3a", "bn", "var")
    assert ckpt.flax_path("Mixed_5b.branch1x1.bn.weight")[-1] == "scale" and ckpt.flax_path("fc.weight")[-1] == "kernel"


def test_legacy_reader_and_layouts(state):
    """The few entries torch.save wrote in the legacy format read back as the closed form; a
    state dict with only these is refused by name, exit 2."""
    few = read_pt(FEW)
    assert sorted(few) == sorted(reference.FEW)
    for key, value in few.items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    assert few["Conv2d_1a_3x3.bn.num_batches_tracked"].dtype == np.int64
    kernel = ckpt.convert_state_dict(state, "s")["params"]["Conv2d_1a_3x3"]["conv"]["kernel"]
    np.testing.assert_array_equal(kernel[1, 2, 0], few["Conv2d_1a_3x3.conv.weight"][:, 0, 1, 2])  # OIHW -> HWIO


def test_network_reproduces_pytorch_fid(tmp_path, monkeypatch, capsys, state):
    """Through the converter's CLI (the reader is swapped for the rebuilt state dict: the full .pth
    would be 95 MB) and load_inception: pool3 and logits match pytorch-fid to float32 rounding."""
    monkeypatch.setattr(convert, "read_pt", lambda path: state)
    src, out = tmp_path / ckpt.WEIGHTS_FILE, str(tmp_path / "inception.npz")
    src.write_bytes(b"stand-in")
    assert main(["convert", "--from", "fid-inception-pth", str(src), "--out", out]) == 0
    assert "not the published file" in capsys.readouterr().out
    params, info = ckpt.load_inception(out)
    assert info["source"] == ckpt.WEIGHTS_FILE and info["params_sha256"] == ckpt.params_digest(params)
    with np.load(os.path.join(DATA, "fid_inception_reference.npz")) as data:
        expected = dict(data)
    pool3, logits = jax.jit(FIDInceptionV3().apply)(params, reference.images().transpose(0, 2, 3, 1))
    for name, got in (("pool3", pool3), ("logits", logits)):
        scale = float(np.abs(expected[name]).max())
        assert got.shape == expected[name].shape
        assert float(np.abs(np.asarray(got) - expected[name]).max()) < 1e-5 * scale, name
    assert float(np.abs(expected["pool3"][0] - expected["pool3"][1]).max()) > 0.1  # the features see the image


@pytest.mark.parametrize("case, message", [
    ("missing", "no checkpoint file"),
    ("truncated", "is a corrupt PyTorch .pt file: ValueError: storage"),
    ("few", "lacks 468 of its 472 weights"),
    ("shape", "fc.bias has shape [1007], expected [1008]"),
    ("nan", "Mixed_6a.branch3x3.conv.weight holds NaN or inf"),
    ("variance", "Mixed_5b.branch1x1.bn.running_var holds a negative variance"),
])
def test_convert_bad_inputs(tmp_path, monkeypatch, capsys, state, case, message):
    """One stderr line naming the file, exit 2, the existing --out untouched and no stray files."""
    src = str(tmp_path / "in.pth")
    if case == "few":
        src = FEW
    elif case == "truncated":  # the legacy format's storages cut short
        open(src, "wb").write(open(FEW, "rb").read()[:4000])
    elif case != "missing":
        broken = dict(state)
        key = {"shape": "fc.bias", "nan": "Mixed_6a.branch3x3.conv.weight", "variance": "Mixed_5b.branch1x1.bn.running_var"}[case]
        broken[key] = {"shape": lambda v: v[1:], "nan": lambda v: v * np.nan, "variance": lambda v: -v}[case](state[key])
        monkeypatch.setattr(convert, "read_pt", lambda path: broken)
    out = tmp_path / "out" / "inception.npz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier conversion")
    capsys.readouterr()
    assert main(["convert", "--from", "fid-inception-pth", src, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and src in lines[0] and message in lines[0], lines
    assert out.read_bytes() == b"an earlier conversion" and os.listdir(out.parent) == ["inception.npz"]


def test_load_inception_bad_files(tmp_path):
    with pytest.raises(CheckpointFileError, match=f"no FID Inception weights file .*nope.npz.*{ckpt.WEIGHTS_URL}"):
        ckpt.load_inception(str(tmp_path / "nope.npz"))
    other = str(tmp_path / "dit.npz")
    save_converted(other, {"params": {"x": np.zeros(2)}}, {"name": "dit_port"}, {})
    with pytest.raises(CheckpointFileError, match="holds the network 'dit_port', not the FID Inception network: download"):
        ckpt.load_inception(other)
    partial = str(tmp_path / "partial.npz")
    save_converted(partial, {"params": {"fc": {"bias": np.zeros(1008, np.float32)}}}, {"name": ckpt.NETWORK_NAME}, {})
    with pytest.raises(CheckpointFileError, match="does not hold the FID Inception weights: params/Conv2d_1a_3x3/bn/bias is missing"):
        ckpt.load_inception(partial)
    with pytest.raises(CheckpointFileError, match="not a converted checkpoint"):
        ckpt.load_inception(os.path.join(DATA, "fid_inception_reference.npz"))
