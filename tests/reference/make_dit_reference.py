"""Regenerate the DiT reference data that ``tests/test_dit_port.py`` checks the Flax port against.

The reference network is facebookresearch/DiT's ``models.py`` (commit ed81ce2, which needs timm's
``PatchEmbed``, ``Attention`` and ``Mlp``), run on PyTorch's CPU backend in float32. Neither it nor
PyTorch is needed by the tests: this script writes

* ``tests/data/dit_tiny.pt``: the state dict of :data:`TINY` (``torch.save``), read back by the
  torch-free reader and converter;
* ``tests/data/torch_layouts.pt``: :func:`layouts` (a DiT training checkpoint's structure with
  small tensors of other dtypes and strides), for the reader's tests;
* ``tests/data/dit_reference.npz``: for each model in :data:`MODELS`, the network's output on
  :func:`inputs` (``<name>_out``, NCHW) and each block's output tokens (``<name>_block<i>``,
  ``[B, T, D]``, from forward hooks).

Every weight is the closed form of :func:`synthetic_state_dict` (no random numbers, so either side
can rebuild it); ``pos_embed`` keeps DiT's fixed sin-cos table. Made with Python 3.11, torch
2.14.1, timm 1.0.31, numpy 2.4.6::

    python -m venv /tmp/ditref/venv && /tmp/ditref/venv/bin/pip install torch timm numpy
    git clone https://github.com/facebookresearch/DiT /tmp/ditref/DiT   # models.py only
    /tmp/ditref/venv/bin/python tests/reference/make_dit_reference.py /tmp/ditref/DiT

A full-size check, not in CI (its .pt is 2.7 GB): ``... make_dit_reference.py /tmp/ditref/DiT
--xl2 /tmp/ditref`` writes DiT-XL/2 with :func:`synthetic_value` weights as ``xl2.pt`` and its
output on :func:`inputs` of a 32x32x4, 1000-class model (first two examples: t 0 and 17, labels 0
and 3) as ``xl2_out.npz``; then ``jaxdistill convert --from dit-pt /tmp/ditref/xl2.pt --out
/tmp/ditref/xl2.npz`` and ``load_converted`` + ``apply(..., return_variance=True)`` on the same
NHWC inputs. Measured 2026-12-07: max |port - DiT| = 1.3e-5 on outputs of scale 8.9.
"""
from __future__ import annotations

import os
import sys

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

# DiT constructor arguments of the reference models (tiny so that the .pt stays small).
TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=2, num_heads=2, num_classes=10, learn_sigma=True)
TINY_EPS = dict(input_size=8, patch_size=4, in_channels=3, hidden_size=24, depth=1, num_heads=3, num_classes=5, learn_sigma=False)
MODELS = {"tiny": TINY, "tiny_eps": TINY_EPS}


def synthetic_value(index: int, shape: tuple[int, ...]) -> np.ndarray:
    """The ``index``-th state-dict entry (keys in sorted order) of shape ``shape``:
    ``sin(0.37 * arange(n) + index) * s`` reshaped, with ``s = 1 / sqrt(n / shape[0])`` (one over
    the square root of the fan-in) for matrices and kernels and ``s = 0.1`` for vectors."""
    n = int(np.prod(shape))
    scale = 0.1 if len(shape) == 1 else 1.0 / np.sqrt(n / shape[0])
    return (np.sin(0.37 * np.arange(n, dtype=np.float64) + index) * scale).astype(np.float32).reshape(shape)


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]], pos_embed: np.ndarray) -> dict[str, np.ndarray]:
    """Every entry of a DiT state dict with the given ``shapes`` by :func:`synthetic_value`,
    except ``pos_embed`` (DiT's fixed sin-cos table, not a trained weight)."""
    return {key: pos_embed if key == "pos_embed" else synthetic_value(i, shape) for i, (key, shape) in enumerate(sorted(shapes.items()))}


def inputs(config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x NCHW, t, y) for a model: ``x = 1.5 sin(0.73 k)`` over the flat index ``k``; the DDPM
    timesteps 0, 17, 500, 999; labels 0, 3, the last class and the null class ``num_classes``."""
    c, s, n = config["in_channels"], config["input_size"], config["num_classes"]
    x = (1.5 * np.sin(0.73 * np.arange(4 * c * s * s))).astype(np.float32).reshape(4, c, s, s)
    return x, np.array([0, 17, 500, 999], np.int64), np.array([0, 3, n - 1, n], np.int64)


def layouts(torch):
    """``{"model", "ema", "opt", "args"}`` like DiT's train.py saves, holding a transposed
    (non-contiguous) float32 tensor, a slice at a storage offset, float16, bfloat16 (values exact
    in 8 bits), int64, bool and an ``nn.Parameter``; values from :func:`synthetic_value`."""
    import argparse

    base = torch.from_numpy(synthetic_value(0, (3, 4)))
    model = {"t": base.t(), "slice": base[1:, 2:], "half": base.half(), "bf16": torch.tensor([1.0, -2.5, 0.1875]).bfloat16()}
    ema = {"long": torch.arange(5) - 2, "bool": torch.tensor([True, False]), "param": torch.nn.Parameter(base[0])}
    return {"model": model, "ema": ema, "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4}]}, "args": argparse.Namespace(model="DiT-XL/2")}


def main(dit_repo: str) -> None:
    import torch

    sys.path.insert(0, dit_repo)
    from models import DiT

    arrays = {}
    for name, config in MODELS.items():
        model = DiT(**config, class_dropout_prob=0.1).eval()
        state = model.state_dict()
        values = synthetic_state_dict({k: tuple(v.shape) for k, v in state.items()}, state["pos_embed"].numpy())
        model.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()})
        blocks = []
        for block in model.blocks:
            block.register_forward_hook(lambda module, args, out: blocks.append(out.detach().numpy().copy()))
        x, t, y = inputs(config)
        with torch.no_grad():
            arrays[f"{name}_out"] = model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y)).numpy()
        for i, tokens in enumerate(blocks):
            arrays[f"{name}_block{i}"] = tokens
        if name == "tiny":
            torch.save(model.state_dict(), os.path.join(DATA, "dit_tiny.pt"))
    torch.save(layouts(torch), os.path.join(DATA, "torch_layouts.pt"))
    np.savez_compressed(os.path.join(DATA, "dit_reference.npz"), **arrays)
    print({k: v.shape for k, v in arrays.items()})


def main_xl2(dit_repo: str, out_dir: str) -> None:
    import torch

    sys.path.insert(0, dit_repo)
    from models import DiT_XL_2

    model = DiT_XL_2(input_size=32).eval()
    state = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in synthetic_state_dict({k: tuple(v.shape) for k, v in state.items()}, state["pos_embed"].numpy()).items()})
    torch.save(model.state_dict(), os.path.join(out_dir, "xl2.pt"))
    x, t, y = (a[:2] for a in inputs(dict(in_channels=4, input_size=32, num_classes=1000)))
    with torch.no_grad():
        out = model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y)).numpy()
    np.savez(os.path.join(out_dir, "xl2_out.npz"), out=out)


if __name__ == "__main__":
    if "--xl2" in sys.argv:
        main_xl2(sys.argv[1], sys.argv[sys.argv.index("--xl2") + 1])
    else:
        main(sys.argv[1])
