"""Regenerate the EDM reference data that ``tests/test_edm_port.py`` checks the Flax ports against.

The reference networks are NVlabs/edm's ``training/networks.py`` (commit 008a4e5): ``EDMPrecond``
around ``SongUNet`` (DDPM++ as ``train.py --arch=ddpmpp`` configures it) and ``DhariwalUNet``
(ADM), run on PyTorch's CPU backend in float32. Neither they nor PyTorch are needed by the tests:
this script writes

* ``tests/data/edm_ddpmpp_tiny.pkl``: a network pickle of :data:`MODELS` ``["ddpmpp_cond"]`` as
  EDM's ``training_loop.py`` writes ``network-snapshot-*.pkl`` (``pickle.dump`` of
  ``{"ema", "loss_fn", "augment_pipe", "dataset_kwargs"}`` with ``torch_utils.persistence``
  objects), read back by the torch-free converter. Each persistent object's ``module_src`` (the
  pickled source of EDM's modules) is replaced by :data:`SOURCE_PLACEHOLDER`, so that no EDM
  source is committed; the converter never reads it;
* ``tests/data/edm_reference.npz``: for each model in :data:`MODELS` on :func:`inputs`, the
  preconditioned output ``D(x, sigma, labels)`` (``<name>_D``, NCHW), the raw network output
  ``F`` (``<name>_F``), each encoder level's last output and the bottleneck (``<name>_feat<i>``,
  forward hooks; of the first :data:`FEATURE_EXAMPLES` examples), ``D`` with augmentation labels for models that have them (``<name>_D_aug``),
  and the parameter counts of EDM's published configurations :data:`PUBLISHED` (``count_<preset>``).

Every state-dict entry is the closed form of :func:`synthetic_state_dict` (no random numbers, so
either side can rebuild it; EDM's zero-initialised layers are overwritten too), except the fixed
``resample_filter`` buffers. Made with Python 3.11, torch 2.14.1 (CPU), numpy 2.4.6::

    git clone https://github.com/NVlabs/edm /tmp/edmref/edm     # networks.py, augment.py, loss.py,
                                                                # torch_utils/, dnnlib/ are used
    pip install --target /tmp/edmref/pylib requests             # dnnlib.util imports it
    PYTHONPATH=/tmp/edmref/pylib python tests/reference/make_edm_reference.py /tmp/edmref/edm
"""
from __future__ import annotations

import copy
import os
import pickle
import sys

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
SOURCE_PLACEHOLDER = "# EDM's training/networks.py source, left out of this test file"

_DDPMPP = dict(model_type="SongUNet", embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1])
# EDMPrecond constructor arguments of the reference models (tiny so that the pickle stays small).
MODELS = {
    "ddpmpp_cond": dict(img_resolution=8, img_channels=3, label_dim=10, augment_dim=9, dropout=0.13, **_DDPMPP, model_channels=4, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4]),
    "ddpmpp_uncond": dict(img_resolution=8, img_channels=2, label_dim=0, dropout=0.1, **_DDPMPP, model_channels=4, channel_mult=[1, 2, 2], num_blocks=2, attn_resolutions=[8]),
    "adm_cond": dict(img_resolution=8, img_channels=3, label_dim=10, dropout=0.1, model_type="DhariwalUNet", model_channels=32, channel_mult=[2, 4], num_blocks=1, attn_resolutions=[8, 4]),
}
# EDM's published networks (train.py's options for them, README "Pre-trained models").
PUBLISHED = {
    "cifar10_cond": dict(img_resolution=32, img_channels=3, label_dim=10, **_DDPMPP, model_channels=128, channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13),
    "cifar10_uncond": dict(img_resolution=32, img_channels=3, label_dim=0, **_DDPMPP, model_channels=128, channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13),
    "imagenet64_cond": dict(img_resolution=64, img_channels=3, label_dim=1000, model_type="DhariwalUNet", model_channels=192, channel_mult=[1, 2, 3, 4], dropout=0.1),
}
SIGMAS = (0.002, 0.5, 2.0, 80.0)
FEATURE_EXAMPLES = {"ddpmpp_cond": 4, "ddpmpp_uncond": 4, "adm_cond": 1}  # examples whose features are stored (ADM's are large)


def synthetic_value(index: int, shape: tuple[int, ...]) -> np.ndarray:
    """The ``index``-th state-dict entry (keys in sorted order) of shape ``shape``:
    ``sin(0.37 * arange(n) + index) * s`` reshaped, with ``s = 1 / sqrt(n / shape[0])`` (one over
    the square root of the fan-in) for matrices and kernels and ``s = 0.1`` for vectors."""
    n = int(np.prod(shape))
    scale = 0.1 if len(shape) == 1 else 1.0 / np.sqrt(n / shape[0])
    return (np.sin(0.37 * np.arange(n, dtype=np.float64) + index) * scale).astype(np.float32).reshape(shape)


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]], filters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every entry of a state dict with the given ``shapes`` by :func:`synthetic_value`, except
    the ``resample_filter`` buffers, which keep their values ``filters``."""
    return {key: filters[key] if key in filters else synthetic_value(i, shape) for i, (key, shape) in enumerate(sorted(shapes.items()))}


def inputs(config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x NCHW, sigma, labels, augment labels): ``x = 0.5 sin(0.73 k) + sigma_b cos(1.37 k + b)``
    over the flat index ``k`` of example ``b``; :data:`SIGMAS`; labels 0, 3, the last class and
    -1 (unconditional: EDM's all-zero one-hot); augment labels ``0.5 sin(0.9 j)`` over ``[4, 9]``."""
    c, s = config["img_channels"], config["img_resolution"]
    k = np.arange(c * s * s, dtype=np.float64)
    sigma = np.array(SIGMAS, np.float64)
    x = np.stack([0.5 * np.sin(0.73 * k) + sigma[b] * np.cos(1.37 * k + b) for b in range(4)]).astype(np.float32).reshape(4, c, s, s)
    labels = np.array([0, 3, max(config["label_dim"] - 1, 0), -1], np.int64)
    augment = (0.5 * np.sin(0.9 * np.arange(36))).astype(np.float32).reshape(4, 9)
    return x, sigma.astype(np.float32), labels, augment


def one_hot(labels: np.ndarray, label_dim: int) -> np.ndarray:
    """EDM's ``class_labels``: one-hot rows, all zeros for label -1."""
    return np.stack([np.eye(label_dim, dtype=np.float32)[y] if y >= 0 else np.zeros(label_dim, np.float32) for y in labels])


def feature_blocks(config: dict) -> list[str]:
    """The UNet blocks whose outputs are the port's features: each encoder level's last block and
    the decoder's ``in1`` (the bottleneck)."""
    levels = len(config["channel_mult"])
    blocks = config.get("num_blocks", 4 if config["model_type"] == "SongUNet" else 3)
    names = [f"enc.{config['img_resolution'] >> lv}x{config['img_resolution'] >> lv}_block{blocks - 1}" for lv in range(levels)]
    low = config["img_resolution"] >> (levels - 1)
    return names + [f"dec.{low}x{low}_in1"]


def main(edm_repo: str) -> None:
    import torch

    sys.path.insert(0, edm_repo)
    from torch_utils import persistence
    from training.augment import AugmentPipe
    from training.loss import EDMLoss
    from training.networks import EDMPrecond

    arrays = {}
    for name, config in PUBLISHED.items():
        arrays[f"count_{name}"] = np.array(sum(p.numel() for p in EDMPrecond(**config).parameters()))
    for name, config in MODELS.items():
        net = EDMPrecond(**config).eval()
        state = net.state_dict()
        filters = {k: v.numpy() for k, v in state.items() if k.endswith("resample_filter")}
        values = synthetic_state_dict({k: tuple(v.shape) for k, v in state.items()}, filters)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()})
        ema = copy.deepcopy(net).eval().requires_grad_(False)  # as training_loop.py pickles it, before any hook
        modules = dict(net.model.named_modules())
        captured = {}
        for i, block in enumerate(feature_blocks(config)):
            modules[block].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(f"{name}_feat{i}", out.detach().numpy()[:FEATURE_EXAMPLES[name]].copy()))
        net.model.register_forward_hook(lambda m, a, out: captured.__setitem__(f"{name}_F", out.detach().numpy().copy()))
        x, sigma, labels, augment = inputs(config)
        class_labels = torch.from_numpy(one_hot(labels, config["label_dim"])) if config["label_dim"] else None
        with torch.no_grad():
            arrays[f"{name}_D"] = net(torch.from_numpy(x), torch.from_numpy(sigma), class_labels).numpy()
            arrays.update(captured)
            if config.get("augment_dim"):
                arrays[f"{name}_D_aug"] = net(torch.from_numpy(x), torch.from_numpy(sigma), class_labels, augment_labels=torch.from_numpy(augment)).numpy()
        if name == "ddpmpp_cond":
            augment_pipe = AugmentPipe(p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)
            data = dict(ema=ema, loss_fn=EDMLoss(), augment_pipe=augment_pipe,
                        dataset_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="tiny.zip", use_labels=True, xflip=False, cache=True))
            classes = {type(obj) for obj in (*ema.modules(), data["loss_fn"], augment_pipe) if persistence.is_persistent(obj)}
            sources = {cls: cls._orig_module_src for cls in classes}
            try:
                for cls in classes:
                    cls._orig_module_src = SOURCE_PLACEHOLDER
                with open(os.path.join(DATA, "edm_ddpmpp_tiny.pkl"), "wb") as f:
                    pickle.dump(data, f)
            finally:
                for cls, src in sources.items():
                    cls._orig_module_src = src
    np.savez_compressed(os.path.join(DATA, "edm_reference.npz"), **arrays)
    print({k: v.shape if v.ndim else int(v) for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1])
