"""EDM network pickles (:mod:`.edm_pickle` records) -> :class:`~jaxdistill.models.ports.edm.EDMUNetPort`
parameters and config, every entry checked against the network it should fill.

The network pickle's ``ema`` entry is an ``EDMPrecond``; its ``model``'s class (``SongUNet`` or
``DhariwalUNet``) and recorded constructor arguments (``_init_kwargs``: ``img_resolution``,
``in_channels``, ``label_dim``, ``model_channels``, ``channel_mult``, ...) give the port's config
(:func:`infer_config`), ``EDMPrecond.sigma_data`` the preconditioning, and its modules'
``_parameters`` / ``_buffers``, flattened like ``state_dict()`` (:func:`state_dict`), the parameters. Key map (one-to-one, both ways; the fixed resampling filters excepted):

=========================================  =====================================  ========================
PyTorch state-dict key                     Flax parameter path                    array
=========================================  =====================================  ========================
``model.enc.<name>.<...>``                 ``enc_<name>/<...>``                   (same for ``dec``)
``<...>.weight`` of a Conv2d [O,I,k,k]     ``<...>/kernel`` [k,k,I,O]             ``w.transpose(2,3,1,0)``
``<...>.weight`` of a Linear [out,in]      ``<...>/kernel`` [in,out]              ``w.T``
``<...>.weight`` of a GroupNorm [C]        ``<...>/scale``                        as is
``<...>.bias``                             ``<...>/bias``                         as is
``<...>.resample_filter`` [1,1,2,2]        (none: the port averages / doubles)    must be EDM's [1,1] filter
=========================================  =====================================  ========================

with the ``model.`` prefix dropped and other dots turned into ``/``
(``model.map_layer0.weight`` -> ``map_layer0/kernel``).
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.models.ports.edm import ARCH_DEFAULTS, EDMUNetPort, make_edm_port
from jaxdistill.models.ports.edm_pickle import PersistentObject, TorchModule

PREFIX = "model."
RESAMPLE_FILTER = np.full((1, 1, 2, 2), 0.25, np.float32)  # EDM's [1, 1] filter: outer([1, 1], [1, 1]) / 4
_MODEL_TYPES = {"SongUNet": "ddpmpp", "DhariwalUNet": "adm"}
# SongUNet arguments that make it DDPM++ (EDM's train.py --arch=ddpmpp); other values are NCSN++ or variants.
_DDPMPP = dict(embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1])
_UNET_ARGS = ("img_resolution", "in_channels", "out_channels", "label_dim", "label_dropout")


def flax_path(key: str, prefix: str = PREFIX) -> tuple[str, ...]:
    """The Flax parameter path of a state-dict key of ``EDMPrecond`` (EDM2's ``Precond`` with its
    ``prefix``; ``ndim``-free: a ``weight`` becomes ``kernel``; :func:`to_flax` renames a group
    norm's to ``scale``)."""
    parts = key[len(prefix):].split(".") if key.startswith(prefix) else key.split(".")
    if parts[0] in ("enc", "dec") and len(parts) > 1:
        parts = [f"{parts[0]}_{parts[1]}", *parts[2:]]
    return (*parts[:-1], "kernel" if parts[-1] == "weight" else parts[-1])


def torch_key(path: tuple[str, ...]) -> str:
    """The state-dict key of a Flax parameter path (inverse of :func:`flax_path` and :func:`to_flax`)."""
    first, *rest = path
    head = first.split("_", 1) if first.startswith(("enc_", "dec_")) else [first]
    leaf = {"kernel": "weight", "scale": "weight"}.get(rest[-1], rest[-1])
    return PREFIX + ".".join([*head, *rest[:-1], leaf])


def to_flax(key: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """``(path, array)`` of a state-dict entry in the Flax layout (float32)."""
    value, path = np.asarray(value, np.float32), flax_path(key)
    if value.ndim == 4:
        return path, value.transpose(2, 3, 1, 0)
    if value.ndim == 2:
        return path, value.T
    if path[-1] == "kernel":
        return (*path[:-1], "scale"), value
    return path, value


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(reversed(shape))


def expected_shapes(module: EDMUNetPort, resolution: int, channels: int) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of the ``EDMPrecond`` that ``module`` ports for ``resolution``-square
    inputs with ``channels`` channels (abstract parameters; nothing allocated), with the
    ``resample_filter`` buffers of the down- and upsampling blocks."""
    x = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    t, y = jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.int32)
    abstract = jax.eval_shape(lambda x, t, y: nn.meta.unbox(module.init(jax.random.key(0), x, t, y)), x, t, y)
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract["params"])[0]:
        names = tuple(k.key for k in path)
        shapes[torch_key(names)] = _torch_shape(leaf.shape) if names[-1] == "kernel" else tuple(leaf.shape)
    for level in range(1, len(module.channel_mult)):
        res = resolution >> level
        for block in (f"enc.{res}x{res}_down", f"dec.{resolution >> (level - 1)}x{resolution >> (level - 1)}_up"):
            for conv in ("conv0", "skip"):
                shapes[f"{PREFIX}{block}.{conv}.resample_filter"] = RESAMPLE_FILTER.shape
    return shapes


def state_dict(obj: Any, source: str, prefix: str = "") -> dict[str, np.ndarray]:
    """``module.state_dict()`` of a pickled module record: its ``_parameters`` and persistent
    ``_buffers`` (None entries skipped), then its ``_modules``' recursively, keys joined by dots."""
    state = obj.state if isinstance(obj, (PersistentObject, TorchModule)) else None
    if not isinstance(state, Mapping) or not all(isinstance(state.get(k), Mapping) for k in ("_parameters", "_buffers", "_modules")):
        raise CheckpointFileError(f"{source!r} is not an EDM network pickle: {prefix.rstrip('.') or 'ema'} is no torch module")
    out = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in [*state["_parameters"].items(), *((k, v) for k, v in state["_buffers"].items() if k not in skip)]:
        if value is None:
            continue
        if not isinstance(value, np.ndarray):
            raise CheckpointFileError(f"{source!r} is not an EDM network pickle: {prefix}{name} is a {type(value).__name__}, not a tensor")
        out[prefix + name] = value
    for name, child in state["_modules"].items():
        if child is not None:
            out.update(state_dict(child, source, f"{prefix}{name}."))
    return out


def select_network(obj: Any, source: str) -> PersistentObject:
    """The ``ema`` network of an EDM network pickle; only ``EDMPrecond`` networks are ported."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("ema"), PersistentObject):
        found = sorted(map(str, obj))[:6] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointFileError(f"{source!r} is not an EDM network pickle (expected a dict with an 'ema' network; found {found})")
    ema = obj["ema"]
    if ema.class_name == "Precond":
        raise CheckpointFileError(f"{source!r} is an EDM2 network pickle (its 'ema' is EDM2's Precond), not EDM's; convert it with --from edm2-pkl")
    if ema.class_name != "EDMPrecond":
        raise CheckpointFileError(f"{source!r} holds a {ema.class_name} network; only EDMPrecond (EDM's own preconditioning) is supported")
    return ema


def infer_config(model_type: str, kwargs: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[int]]:
    """``(network fields, event shape [H, W, C])`` from the constructor arguments ``kwargs`` of EDM's
    UNet class ``model_type``: the fields of :func:`make_edm_port` (``arch`` and EDM's values, the
    class's defaults where absent)."""
    if model_type not in _MODEL_TYPES:
        raise CheckpointFileError(f"{source!r}: its network is a {model_type}; the ports are SongUNet (DDPM++) and DhariwalUNet (ADM)")
    arch = _MODEL_TYPES[model_type]
    if arch == "ddpmpp":
        differs = {k: kwargs[k] for k, v in _DDPMPP.items() if k in kwargs and list(np.atleast_1d(kwargs[k])) != list(np.atleast_1d(v))}
        if differs:
            raise CheckpointFileError(f"{source!r}: its SongUNet is not DDPM++ ({differs}; expected {_DDPMPP}); NCSN++ is not ported")
    known = set(_UNET_ARGS) | set(ARCH_DEFAULTS[arch]) | (set(_DDPMPP) if arch == "ddpmpp" else set())
    if set(kwargs) - known:
        raise CheckpointFileError(f"{source!r}: its {model_type} has arguments the port does not know: {sorted(set(kwargs) - known)}")
    try:
        fields = {k: kwargs.get(k, v) for k, v in ARCH_DEFAULTS[arch].items()}
        fields = {**fields, "channel_mult": [int(v) for v in fields["channel_mult"]], "attn_resolutions": [int(v) for v in fields["attn_resolutions"]]}
        fields.update(model_channels=int(fields["model_channels"]), channel_mult_emb=int(fields["channel_mult_emb"]), num_blocks=int(fields["num_blocks"]),
                      augment_dim=int(fields["augment_dim"]), dropout=float(fields["dropout"]))
        event_shape = [int(kwargs["img_resolution"])] * 2 + [int(kwargs["in_channels"])]
        label_dim = int(kwargs.get("label_dim", 0))
        if int(kwargs["out_channels"]) != event_shape[2]:
            raise ValueError(f"out_channels {kwargs['out_channels']} differ from in_channels {event_shape[2]}")
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointFileError(f"{source!r}: its {model_type} arguments are not those of an EDMPrecond network: {type(err).__name__}: {err}") from None
    return {"arch": arch, "num_classes": label_dim, **fields}, event_shape


def network_config(ema: PersistentObject, source: str) -> tuple[PersistentObject, dict[str, Any], list[int], float]:
    """``(UNet record, network fields, event shape, sigma_data)`` of an ``EDMPrecond`` record: its
    ``model``'s class and recorded constructor arguments (``_init_kwargs``), its ``sigma_data``."""
    model = ema.state.get("_modules", {}).get("model") if isinstance(ema.state.get("_modules"), Mapping) else None
    if not isinstance(model, PersistentObject) or not isinstance(model.state.get("_init_kwargs"), Mapping):
        raise CheckpointFileError(f"{source!r}: its EDMPrecond has no UNet 'model' with recorded constructor arguments (_init_kwargs)")
    fields, event_shape = infer_config(model.class_name, model.state["_init_kwargs"], source)
    sigma_data = ema.state.get("sigma_data", 0.5)
    if not isinstance(sigma_data, (int, float)) or not sigma_data > 0:
        raise CheckpointFileError(f"{source!r}: its EDMPrecond has sigma_data {sigma_data!r}, not a positive number")
    return model, fields, event_shape, float(sigma_data)


def check_shapes(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], what: str, source: str) -> None:
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        lacks = f"lacks {len(missing)} entries of {what} ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})" if missing else ""
        has = f"has {len(extra)} entries {what} does not ({', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''})" if extra else ""
        raise CheckpointFileError(f"{source!r} {' and '.join(s for s in (lacks, has) if s)}")
    wrong = [k for k in sorted(expected) if tuple(np.shape(state[k])) != tuple(expected[k])]
    if wrong:
        k = wrong[0]
        raise CheckpointFileError(f"{source!r} does not match {what}: {k} has shape {tuple(np.shape(state[k]))}, {what} expects {tuple(expected[k])} ({len(wrong)} of {len(expected)} entries differ)")


def describe(fields: Mapping[str, Any]) -> str:
    """``"DDPM++ (128 channels x (2, 2, 2), 4 blocks, 10 classes)"``."""
    name = {"ddpmpp": "DDPM++", "adm": "ADM"}[fields["arch"]]
    return f"{name} ({fields['model_channels']} channels x {tuple(fields['channel_mult'])}, {fields['num_blocks']} blocks, {fields['num_classes']} classes)"


def convert_state_dict(state: Mapping[str, np.ndarray], fields: Mapping[str, Any], event_shape: list[int], source: str) -> dict:
    """``{"params": ...}`` of the port with ``fields`` from an ``EDMPrecond`` state dict for inputs of
    ``event_shape``, every entry checked: keys, shapes, the resampling filters, finiteness."""
    try:
        module = make_edm_port(**fields)
    except ValueError as err:
        raise CheckpointFileError(f"{source!r}: its network config does not build: {err}") from None
    what = f"the {describe(fields)} its constructor arguments describe"
    check_shapes(state, expected_shapes(module, event_shape[0], event_shape[2]), what, source)
    for key, value in state.items():
        if key.endswith(".resample_filter") and not np.array_equal(np.asarray(value, np.float32), RESAMPLE_FILTER):
            raise CheckpointFileError(f"{source!r}: {key} is not EDM's [1, 1] resampling filter")
        if not np.all(np.isfinite(value)):
            raise CheckpointFileError(f"{source!r}: {key} holds NaN or infinite values")
    params: dict = {}
    for key, value in state.items():
        if key.endswith(".resample_filter"):
            continue
        (*parents, leaf), array = to_flax(key, value)
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = array
    return {"params": params}


def convert_network(ema: PersistentObject, source: str) -> tuple[dict, dict[str, Any], list[int], float]:
    """``({"params": ...}, network fields, event shape, sigma_data)`` of an ``EDMPrecond`` record
    (:func:`network_config`), every entry of its state dict checked."""
    _, fields, event_shape, sigma_data = network_config(ema, source)
    return convert_state_dict(state_dict(ema, source), fields, event_shape, source), fields, event_shape, sigma_data
