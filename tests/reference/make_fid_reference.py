"""Regenerate the FID Inception reference data that ``tests/test_fid.py`` checks the Flax network against.

The reference network is pytorch-fid's (0.3.0) ``fid_inception_v3()`` architecture, built here
without its download: torchvision's ``inception_v3(num_classes=1008, aux_logits=False,
init_weights=False)`` with the blocks pytorch-fid patches in (``FIDInceptionA/C/E_1/E_2``), run
through pytorch-fid's ``InceptionV3`` block pipeline (resize to 299x299 bilinear, ``2x - 1``) on
PyTorch's CPU backend in float32. Every weight is the closed form :func:`synthetic_state_dict` (no
random numbers, so either side can rebuild it). Neither PyTorch nor pytorch-fid is needed by the
tests: this script writes

* ``tests/data/fid_inception_reference.npz``: the pool3 features ``pool3`` [2, 2048] and the logits
  ``fc(pool3)`` ``logits`` [2, 1008] of the images of :func:`images`;
* ``tests/data/fid_inception_few.pth``: a few entries of the synthetic state dict (:data:`FEW`),
  written in torch's legacy format (``_use_new_zipfile_serialization=False``, the format of the
  published weights, which predate torch 1.6), for the reader's and the key map's tests.

Made with Python 3.11, torch 2.14.1 (CPU), torchvision 0.29.1, pytorch-fid 0.3.0, numpy 2.4.6::

    python -m venv /tmp/fidref/venv && /tmp/fidref/venv/bin/pip install torch torchvision pytorch-fid numpy
    /tmp/fidref/venv/bin/python tests/reference/make_fid_reference.py
"""
import os
import sys

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
FEW = ("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.weight", "Conv2d_1a_3x3.bn.running_var", "Conv2d_1a_3x3.bn.num_batches_tracked", "fc.bias")
CONV_GAIN = 2.0  # keeps activations O(1) through the 17 blocks: ReLU halves the energy, sin rows have RMS 1/sqrt(2)


def synthetic_value(key: str, index: int, shape: tuple[int, ...]) -> np.ndarray:
    """The ``index``-th weight (keys in sorted order, ``num_batches_tracked`` left out) named ``key``:
    with ``s = sin(0.37 k + 1e-4 k^2 + index)`` over ``k = arange(n)``, reshaped to ``shape`` (the
    chirp makes every weight matrix full rank; a pure sinusoid gives rank 2), a convolution or linear weight
    is ``CONV_GAIN * s / sqrt(fan_in)``, a BatchNorm weight ``1 + 0.2 s``, a running variance
    ``1 + 0.5 s`` (in [0.5, 1.5]), any other vector (biases, running means) ``0.1 s``."""
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.float64)
    s = np.sin(0.37 * k + 1e-4 * k**2 + index).reshape(shape)
    if len(shape) > 1:
        value = CONV_GAIN * s / np.sqrt(n / shape[0])
    elif key.endswith("bn.weight"):
        value = 1.0 + 0.2 * s
    elif key.endswith("running_var"):
        value = 1.0 + 0.5 * s
    else:
        value = 0.1 * s
    return value.astype(np.float32)


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Every weight of a state dict with the given ``shapes`` by :func:`synthetic_value`
    (``num_batches_tracked`` entries, if any, are int64 zeros)."""
    weights = sorted(k for k in shapes if not k.endswith("num_batches_tracked"))
    state = {key: synthetic_value(key, i, shapes[key]) for i, key in enumerate(weights)}
    state.update({k: np.zeros(shapes[k], np.int64) for k in shapes if k.endswith("num_batches_tracked")})
    return state


def images() -> np.ndarray:
    """Two 32x32 RGB images (NCHW, in [0, 1]) that the network resizes to 299x299:
    ``0.5 + 0.5 sin(0.173 k + 0.05 (k // 1024)^2)`` over the flat index ``k``."""
    k = np.arange(2 * 3 * 32 * 32, dtype=np.float64)
    return (0.5 + 0.5 * np.sin(0.173 * k + 0.05 * (k // 1024) ** 2)).astype(np.float32).reshape(2, 3, 32, 32)


def main() -> None:
    import torch
    from pytorch_fid import inception as fid

    net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block, arg in [
        ("Mixed_5b", fid.FIDInceptionA, (192, 32)), ("Mixed_5c", fid.FIDInceptionA, (256, 64)), ("Mixed_5d", fid.FIDInceptionA, (288, 64)),
        ("Mixed_6b", fid.FIDInceptionC, (768, 128)), ("Mixed_6c", fid.FIDInceptionC, (768, 160)), ("Mixed_6d", fid.FIDInceptionC, (768, 160)),
        ("Mixed_6e", fid.FIDInceptionC, (768, 192)), ("Mixed_7b", fid.FIDInceptionE_1, (1280,)), ("Mixed_7c", fid.FIDInceptionE_2, (2048,)),
    ]:
        setattr(net, name, block(*arg))
    state = synthetic_state_dict({k: tuple(v.shape) for k, v in net.state_dict().items()})
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    net.eval()
    fid.fid_inception_v3 = lambda: net  # pytorch-fid's InceptionV3 wrapper around it, without the download
    model = fid.InceptionV3([3]).eval()
    with torch.no_grad():
        pool3 = model(torch.from_numpy(images()))[0].flatten(1)
        logits = net.fc(pool3)
    arrays = {"pool3": pool3.numpy(), "logits": logits.numpy()}
    np.savez_compressed(os.path.join(DATA, "fid_inception_reference.npz"), **arrays)
    torch.save({k: torch.from_numpy(state[k]) for k in FEW}, os.path.join(DATA, "fid_inception_few.pth"), _use_new_zipfile_serialization=False)
    print({k: (v.shape, float(np.abs(v).max()), float(v.std())) for k, v in arrays.items()}, file=sys.stderr)


if __name__ == "__main__":
    main()
