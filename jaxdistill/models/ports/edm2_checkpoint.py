"""EDM2 network pickles (:mod:`.edm_pickle` records) -> :class:`~jaxdistill.models.ports.edm2.EDM2UNetPort`
parameters and config, every entry checked against the network it should fill.

What EDM2 publishes and what a pickle holds (NVlabs/edm2): ``training_loop.py`` writes, per EMA
profile, ``network-snapshot-<kimg>-<std>.pkl`` = ``pickle.dump(EasyDict(encoder, dataset_kwargs,
loss_fn, ema))``, ``ema`` a ``Precond`` in float16 averaged with the power-function EMA of
relative std ``<std>`` (two profiles, 0.050 and 0.100 by default). ``reconstruct_phema.py`` solves
for any other EMA length from a run's snapshots and writes ``<prefix>-<kimg>-<std>.pkl`` in the
same layout; the published ``edm2-img512-{xs..xxl}-{fid,dino}.pkl`` (``generate_images.py``'s
presets) are such reconstructions, one network each. So the EMA profile is chosen by choosing the
file: every file of this layout converts (its ``ema`` entry, or the entry ``--ema`` names), and the
std and training length its name carries (:func:`ema_profile`) are recorded. Post-hoc EMA
reconstruction from converted snapshots is ``jaxdistill phema`` (:mod:`.phema_snapshots`).

The ``Precond``'s ``unet`` (class ``UNet``) records its constructor arguments (``_init_kwargs``),
which give the port's config (:func:`infer_config`); ``Precond`` its ``sigma_data`` and
``logvar_channels``. Key map of the state dict (one-to-one, both ways; :func:`flax_path`):

==========================================  =========================================  ==========================
PyTorch state-dict key                      Flax parameter path                        array
==========================================  =========================================  ==========================
``unet.enc.<name>.<...>``                   ``enc_<name>/<...>``                       (same for ``dec``)
``<...>.weight`` of a 3x3 / 1x1 MPConv      ``<...>/kernel`` [k,k,I,O]                 ``w.transpose(2,3,1,0)``
``<...>.weight`` of a linear MPConv         ``<...>/kernel`` [in,out]                  ``w.T``
``unet.<...>.emb_gain``, ``unet.out_gain``  ``<...>/emb_gain``, ``out_gain`` (scalars)  as is
``unet.emb_fourier.freqs`` / ``phases``     ``emb_fourier/freqs`` / ``phases``         as is (buffers)
``logvar_fourier.*``, ``logvar_linear.*``   ``logvar_fourier/*``, ``logvar_linear/*``  as above
==========================================  =========================================  ==========================

with the ``unet.`` prefix dropped and other dots turned into ``/``. Float16 entries become float32.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.models.ports.edm2 import DEFAULTS, SIZES, EDM2UNetPort, make_edm2_port
from jaxdistill.models.ports.edm_checkpoint import check_shapes, state_dict
from jaxdistill.models.ports.edm_checkpoint import flax_path as edm_flax_path
from jaxdistill.models.ports.edm_pickle import PersistentObject

PREFIX = "unet."
_UNET_ARGS = ("img_resolution", "img_channels", "label_dim", "resample_filter")
_INTS = ("model_channels", "num_blocks", "channels_per_head", "logvar_channels")
_FLOATS = ("label_balance", "concat_balance", "dropout", "res_balance", "attn_balance")


def flax_path(key: str) -> tuple[str, ...]:
    """The Flax parameter path of a state-dict key of EDM2's ``Precond`` (EDM's map, its prefix)."""
    return edm_flax_path(key, PREFIX)


def torch_key(path: tuple[str, ...]) -> str:
    """The state-dict key of a Flax parameter path (inverse of :func:`flax_path`)."""
    first, *rest = path
    head = first.split("_", 1) if first.startswith(("enc_", "dec_")) else [first]
    names = [*head, *rest[:-1], "weight" if rest and rest[-1] == "kernel" else (rest[-1] if rest else None)]
    return ("" if first.startswith("logvar_") else PREFIX) + ".".join(n for n in names if n is not None)


def to_flax(key: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """``(path, array)`` of a state-dict entry in the Flax layout (float32)."""
    value = np.asarray(value, np.float32)
    if value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:
        value = value.T
    return flax_path(key), value


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(reversed(shape))


def expected_shapes(module: EDM2UNetPort, resolution: int, channels: int) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of the ``Precond`` that ``module`` ports for ``resolution``-square
    inputs with ``channels`` channels (abstract parameters; nothing allocated)."""
    x = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    t, y = jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.int32)
    abstract = jax.eval_shape(lambda x, t, y: nn.meta.unbox(module.init(jax.random.key(0), x, t, y)), x, t, y)
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract["params"])[0]:
        names = tuple(k.key for k in path)
        shapes[torch_key(names)] = _torch_shape(leaf.shape) if names[-1] == "kernel" else tuple(leaf.shape)
    return shapes


def ema_profile(path: str) -> Optional[dict[str, float]]:
    """``{"kimg", "ema_std"}`` from an EDM2 pickle's name ``<prefix>-<kimg>-<std>.pkl`` (the
    training loop's snapshots and ``reconstruct_phema.py``'s outputs), None for other names."""
    match = re.fullmatch(r".*-(\d+)-(\d+\.\d+)\.pkl", os.path.basename(path))
    return {"kimg": int(match.group(1)), "ema_std": float(match.group(2))} if match else None


def select_network(obj: Any, source: str, entry: str = "ema") -> PersistentObject:
    """The ``Precond`` network under ``entry`` of an EDM2 network pickle."""
    if not isinstance(obj, Mapping):
        raise CheckpointFileError(f"{source!r} is not an EDM2 network pickle (expected a dict with an {entry!r} network; found a {type(obj).__name__})")
    nets = sorted(str(k) for k, v in obj.items() if isinstance(v, PersistentObject) and v.class_name in ("Precond", "EDMPrecond"))
    if entry not in obj:
        raise CheckpointFileError(f"{source!r} has no entry {entry!r}; its networks: {nets or 'none'} (entries {sorted(map(str, obj))[:6]})")
    net = obj[entry]
    if isinstance(net, PersistentObject) and net.class_name == "EDMPrecond":
        raise CheckpointFileError(f"{source!r} is an EDM network pickle (its {entry!r} is an EDMPrecond), not EDM2's; convert it with --from edm-pkl")
    if not isinstance(net, PersistentObject) or net.class_name != "Precond":
        what = net.class_name if isinstance(net, PersistentObject) else type(net).__name__
        raise CheckpointFileError(f"{source!r}: its entry {entry!r} is a {what}, not an EDM2 Precond network (networks: {nets or 'none'})")
    return net


def infer_config(unet_kwargs: Mapping[str, Any], precond_kwargs: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[int]]:
    """``(network fields, event shape [H, W, C])`` from the recorded constructor arguments of EDM2's
    ``UNet`` and ``Precond``: the fields of :func:`make_edm2_port` (EDM2's defaults where absent)."""
    fields = {k: v for k, v in DEFAULTS.items() if k != "num_classes"}
    unknown = set(unet_kwargs) - set(fields) - set(_UNET_ARGS)
    if unknown:
        raise CheckpointFileError(f"{source!r}: its UNet has arguments the port does not know: {sorted(unknown)}")
    try:
        if list(np.atleast_1d(unet_kwargs.get("resample_filter", [1, 1]))) != [1, 1]:
            raise ValueError(f"resample_filter {unet_kwargs['resample_filter']} (only EDM2's [1, 1] is ported)")
        fields.update({k: v for k, v in unet_kwargs.items() if k in fields})
        fields.update({k: int(fields[k]) for k in _INTS}, **{k: float(fields[k]) for k in _FLOATS})
        fields["logvar_channels"] = int(precond_kwargs.get("logvar_channels", DEFAULTS["logvar_channels"]))
        fields["channel_mult"] = [int(v) for v in fields["channel_mult"]]
        fields["attn_resolutions"] = [int(v) for v in fields["attn_resolutions"]]
        for key in ("channel_mult_noise", "channel_mult_emb"):
            fields[key] = None if fields[key] is None else int(fields[key])
        fields["clip_act"] = None if fields["clip_act"] is None else float(fields["clip_act"])
        event_shape = [int(unet_kwargs["img_resolution"])] * 2 + [int(unet_kwargs["img_channels"])]
        num_classes = int(unet_kwargs["label_dim"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointFileError(f"{source!r}: its UNet arguments are not those of an EDM2 network: {type(err).__name__}: {err}") from None
    return {"num_classes": num_classes, **fields}, event_shape


def size_of(fields: Mapping[str, Any]) -> Optional[str]:
    """The published size (``"XS"`` ... ``"XXL"``) whose configuration ``fields`` are, or None."""
    port = make_edm2_port(**fields)
    return next((size for size in SIZES if make_edm2_port(size) == port), None)


def describe(fields: Mapping[str, Any]) -> str:
    """``"EDM2-XS (128 channels x (1, 2, 3, 4), 3 blocks, 1000 classes)"``."""
    size = size_of(fields)
    name = f"EDM2-{size}" if size else "EDM2 UNet"
    return f"{name} ({fields['model_channels']} channels x {tuple(fields['channel_mult'])}, {fields['num_blocks']} blocks, {fields['num_classes']} classes)"


def network_config(net: PersistentObject, source: str) -> tuple[dict[str, Any], list[int], float, bool]:
    """``(network fields, event shape, sigma_data, use_fp16)`` of a ``Precond`` record: its ``unet``'s
    recorded constructor arguments (``_init_kwargs``), its own ``sigma_data`` and ``use_fp16``."""
    modules = net.state.get("_modules")
    unet = modules.get("unet") if isinstance(modules, Mapping) else None
    if not isinstance(unet, PersistentObject) or unet.class_name != "UNet" or not isinstance(unet.state.get("_init_kwargs"), Mapping):
        raise CheckpointFileError(f"{source!r}: its Precond has no EDM2 'unet' (class UNet) with recorded constructor arguments (_init_kwargs)")
    if unet.state.get("_init_args") or net.state.get("_init_args"):
        raise CheckpointFileError(f"{source!r}: its network was built with positional arguments, which the port cannot read")
    precond_kwargs = net.state.get("_init_kwargs") if isinstance(net.state.get("_init_kwargs"), Mapping) else {}
    fields, event_shape = infer_config(unet.state["_init_kwargs"], precond_kwargs, source)
    sigma_data = net.state.get("sigma_data", 0.5)
    if not isinstance(sigma_data, (int, float)) or not sigma_data > 0:
        raise CheckpointFileError(f"{source!r}: its Precond has sigma_data {sigma_data!r}, not a positive number")
    return fields, event_shape, float(sigma_data), bool(net.state.get("use_fp16", True))


def convert_state_dict(state: Mapping[str, np.ndarray], fields: Mapping[str, Any], event_shape: list[int], source: str) -> dict:
    """``{"params": ...}`` of the port with ``fields`` from a ``Precond`` state dict for inputs of
    ``event_shape``, every entry checked: keys, shapes, finiteness."""
    try:
        module = make_edm2_port(**fields)
    except ValueError as err:
        raise CheckpointFileError(f"{source!r}: its network config does not build: {err}") from None
    check_shapes(state, expected_shapes(module, event_shape[0], event_shape[2]), f"the {describe(fields)} its constructor arguments describe", source)
    params: dict = {}
    for key, value in state.items():
        if not np.all(np.isfinite(value)):
            raise CheckpointFileError(f"{source!r}: {key} holds NaN or infinite values")
        (*parents, leaf), array = to_flax(key, value)
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = array
    return {"params": params}


def convert_network(net: PersistentObject, source: str) -> tuple[dict, dict[str, Any], list[int], float, bool]:
    """``({"params": ...}, network fields, event shape, sigma_data, use_fp16)`` of a ``Precond``
    record (:func:`network_config`), every entry of its state dict checked."""
    fields, event_shape, sigma_data, use_fp16 = network_config(net, source)
    return convert_state_dict(state_dict(net, source), fields, event_shape, source), fields, event_shape, sigma_data, use_fp16
