"""Regenerate the EDM2 reference data that ``tests/test_edm2_port.py`` checks the Flax port against.

The reference network is NVlabs/edm2's ``training/networks_edm2.py`` (commit 4bf8162,
"Autoguidance release."): ``Precond`` around its magnitude-preserving ``UNet``, run on PyTorch's
CPU backend in float32 (``use_fp16`` only applies on CUDA). Neither it nor PyTorch are needed by
the tests: this script writes

* ``tests/data/edm2_tiny-0002147-0.130.pkl``: a network pickle of :data:`MODELS` ``["cond"]`` as
  EDM2's ``training_loop.py`` writes its snapshots and ``reconstruct_phema.py`` its outputs (named
  ``<prefix>-<kimg>-<ema std>.pkl``): ``pickle.dump`` of ``EasyDict(encoder, dataset_kwargs,
  loss_fn, ema)`` with ``torch_utils.persistence`` objects, ``ema`` cast to float16. Each persistent
  object's ``module_src`` (the pickled source of EDM2's modules) is replaced by
  :data:`SOURCE_PLACEHOLDER`, so that no EDM2 source is committed; the converter never reads it;
* ``tests/data/edm2_reference.npz``: for each model in :data:`MODELS` on :func:`inputs`, the
  preconditioned output ``D(x, sigma, labels)`` (``<name>_D``, NCHW), the raw network output
  ``F = unet(c_in x, ln(sigma) / 4, labels)`` (``<name>_F``), each encoder level's last output and
  the bottleneck (``<name>_feat<i>``, forward hooks), the uncertainty head ``<name>_logvar``
  (``return_logvar=True``); the parameter and buffer counts of each model (``<name>_params``,
  ``<name>_buffers``) and of the published ImageNet-512 sizes :data:`PUBLISHED`
  (``count_<size>``, built on the meta device, nothing allocated).

Every state-dict entry is the closed form of :func:`synthetic_state_dict` (no random numbers, so
either side can rebuild it), rounded to float16 so that the float16 pickle holds the very weights
the float32 reference ran with. Made with Python 3.11, torch 2.14.1 (CPU), numpy 2.4.6::

    git clone https://github.com/NVlabs/edm2 /tmp/edm2ref               # networks_edm2.py, encoders.py,
    git -C /tmp/edm2ref checkout 4bf8162                                # training_loop.py, torch_utils/, dnnlib/
    pip install --target /tmp/edm2ref/pylib requests psutil             # dnnlib and training_loop import them
    PYTHONPATH=/tmp/edm2ref/pylib python tests/reference/make_edm2_reference.py /tmp/edm2ref
"""
from __future__ import annotations

import copy
import os
import pickle
import sys

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
PICKLE = "edm2_tiny-0002147-0.130.pkl"
SOURCE_PLACEHOLDER = "# EDM2's training/networks_edm2.py source, left out of this test file"

# Precond constructor arguments of the reference models (tiny so that the pickle stays small).
# "cond" keeps EDM2's defaults but for the sizes; "uncond" sets every other argument off its default.
MODELS = {
    "cond": dict(img_resolution=8, img_channels=4, label_dim=10, model_channels=8, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
                 channels_per_head=4, logvar_channels=16, dropout=0.1),
    "uncond": dict(img_resolution=8, img_channels=3, label_dim=0, model_channels=8, channel_mult=[1, 2, 3], channel_mult_noise=2, channel_mult_emb=3,
                   num_blocks=2, attn_resolutions=[8, 2], concat_balance=0.4, channels_per_head=8, res_balance=0.25, attn_balance=0.35, clip_act=1.5,
                   sigma_data=0.6, logvar_channels=8),
    "labels": dict(img_resolution=4, img_channels=2, label_dim=5, model_channels=8, channel_mult=[1, 1], num_blocks=1, attn_resolutions=[],
                   label_balance=0.7, clip_act=None, use_fp16=False),
}
# EDM2's published ImageNet-512 networks (train_edm2.py's presets edm2-img512-{xs..xxl}).
PUBLISHED = {size: dict(img_resolution=64, img_channels=4, label_dim=1000, model_channels=c, dropout=d)
             for size, c, d in (("XS", 128, 0.0), ("S", 192, 0.0), ("M", 256, 0.1), ("L", 320, 0.1), ("XL", 384, 0.1), ("XXL", 448, 0.1))}
SIGMAS = (0.002, 0.5, 2.0, 80.0)


def synthetic_value(index: int, shape: tuple[int, ...]) -> np.ndarray:
    """The ``index``-th state-dict entry (keys in sorted order) of shape ``shape``, rounded to
    float16: ``sin(0.37 * arange(n) + index)`` reshaped for weights (EDM2 normalises each output
    unit's weights, so their scale does not matter; no row is all zeros), ``2 pi sin(...)`` for the
    Fourier ``freqs`` and ``phases`` (vectors), ``1 + 0.5 sin(index)`` for the scalar gains."""
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.float64)
    wave = np.sin(0.37 * k + 0.0011 * k * k + index)
    value = 1 + 0.5 * wave if len(shape) == 0 else wave * (2 * np.pi if len(shape) == 1 else 1.0)
    return value.astype(np.float16).astype(np.float32).reshape(shape)


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Every entry of a state dict with the given ``shapes`` by :func:`synthetic_value`."""
    return {key: synthetic_value(i, shape) for i, (key, shape) in enumerate(sorted(shapes.items()))}


def inputs(config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x NCHW, sigma, labels): ``x = 0.5 sin(0.73 k) + sigma_b cos(1.37 k + b)`` over the flat
    index ``k`` of example ``b``; :data:`SIGMAS`; labels 0, 3, the last class and -1
    (unconditional: the all-zero one-hot)."""
    c, s = config["img_channels"], config["img_resolution"]
    k = np.arange(c * s * s, dtype=np.float64)
    sigma = np.array(SIGMAS, np.float64)
    x = np.stack([0.5 * np.sin(0.73 * k) + sigma[b] * np.cos(1.37 * k + b) for b in range(4)]).astype(np.float32).reshape(4, c, s, s)
    labels = np.array([0, 3, max(config["label_dim"] - 1, 0), -1], np.int64)
    return x, sigma.astype(np.float32), labels


def one_hot(labels: np.ndarray, label_dim: int) -> np.ndarray:
    """EDM2's ``class_labels``: one-hot rows, all zeros for label -1."""
    return np.stack([np.eye(label_dim, dtype=np.float32)[y] if y >= 0 else np.zeros(label_dim, np.float32) for y in labels])


def feature_blocks(config: dict) -> list[str]:
    """The UNet blocks whose outputs are the port's features: each encoder level's last block and
    the decoder's ``in1`` (the bottleneck)."""
    levels, blocks, res = len(config["channel_mult"]), config.get("num_blocks", 3), config["img_resolution"]
    low = res >> (levels - 1)
    return [f"enc.{res >> lv}x{res >> lv}_block{blocks - 1}" for lv in range(levels)] + [f"dec.{low}x{low}_in1"]


def main(edm2_repo: str) -> None:
    import torch

    sys.path.insert(0, edm2_repo)
    import dnnlib
    from torch_utils import persistence
    from training.encoders import StabilityVAEEncoder
    from training.networks_edm2 import Precond
    from training.training_loop import EDM2Loss

    arrays = {}
    with torch.device("meta"):
        for size, config in PUBLISHED.items():
            arrays[f"count_{size}"] = np.array(sum(p.numel() for p in Precond(**config).parameters()))
    for name, config in MODELS.items():
        net = Precond(**config).eval()
        arrays[f"{name}_params"] = np.array(sum(p.numel() for p in net.parameters()))
        arrays[f"{name}_buffers"] = np.array(sum(b.numel() for b in net.buffers()))
        values = synthetic_state_dict({k: tuple(v.shape) for k, v in net.state_dict().items()})
        net.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()})
        ema = copy.deepcopy(net).eval().requires_grad_(False).to(torch.float16)  # as training_loop.py pickles it, before any hook
        modules = dict(net.unet.named_modules())
        captured = {}
        for i, block in enumerate(feature_blocks(config)):
            modules[block].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(f"{name}_feat{i}", out.detach().numpy().copy()))
        net.unet.register_forward_hook(lambda m, a, out: captured.__setitem__(f"{name}_F", out.detach().numpy().copy()))
        x, sigma, labels = inputs(config)
        class_labels = torch.from_numpy(one_hot(labels, config["label_dim"])) if config["label_dim"] else None
        with torch.no_grad():
            d, logvar = net(torch.from_numpy(x), torch.from_numpy(sigma), class_labels, return_logvar=True)
        arrays.update(captured, **{f"{name}_D": d.numpy(), f"{name}_logvar": logvar.numpy().reshape(-1)})
        if name == "cond":
            data = dnnlib.EasyDict(encoder=StabilityVAEEncoder(), loss_fn=EDM2Loss(P_mean=-0.4, P_std=1.0),
                                   dataset_kwargs=dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="tiny.zip", use_labels=True))
            data.ema = ema
            classes = {type(obj) for obj in (*ema.modules(), data.encoder, data.loss_fn) if persistence.is_persistent(obj)}
            sources = {cls: cls._orig_module_src for cls in classes}
            try:
                for cls in classes:
                    cls._orig_module_src = SOURCE_PLACEHOLDER
                with open(os.path.join(DATA, PICKLE), "wb") as f:
                    pickle.dump(data, f)
            finally:
                for cls, src in sources.items():
                    cls._orig_module_src = src
    np.savez_compressed(os.path.join(DATA, "edm2_reference.npz"), **arrays)
    print({k: v.shape if v.ndim else int(v) for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1])
