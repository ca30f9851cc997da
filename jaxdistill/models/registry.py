"""Build networks from ConfigDicts and expose them through the shared ApplyFn signature.

Config fields (``default_network_config(name)`` gives every default):

* common: ``name`` in {"mlp", "unet", "dit"}, or the import path ``package.module:Class`` of a
  linen module written elsewhere (``network_config`` records one); ``num_classes`` (0 = unconditional,
  otherwise labels ``0..num_classes-1`` plus the null label ``-1``); ``num_times``
  (1: ``t`` is ``[B]``; k > 1: ``t`` is ``[B, k]``, the noise level plus k - 1 extra
  scalar conditions, see ``ConditionEmbedding``); ``dropout``;
  ``time_embedding`` ("sinusoidal" | "fourier"); ``time_scale`` (multiplier of ``t``
  for sinusoidal features, 1000 suits ``t in [0, 1]``; Fourier-frequency std otherwise).
* ``remat`` (unet, dit and the ports; False): ``flax.linen.remat`` around each residual /
  attention / transformer block, so its activations are recomputed in the backward pass
  (:mod:`jaxdistill.models.remat`); parameter names are unchanged.
* mlp: ``width``, ``depth``, ``mlp_ratio``, ``use_layer_norm``.
* unet: ``base_channels``, ``channel_mult``, ``num_res_blocks``, ``attn_resolutions``,
  ``num_heads``, ``num_groups``.
* dit: ``patch_size``, ``hidden_size``, ``depth``, ``num_heads``, ``mlp_ratio``.
* dit_port: the published DiT (:mod:`jaxdistill.models.ports.dit`), none of the common fields but
  ``num_classes`` (1000) and ``num_times`` (1 only): ``size`` (``"XL/2"`` ... ``"S/8"``, or None
  with every dimension given), ``patch_size`` / ``hidden_size`` / ``depth`` / ``num_heads``
  (None: the size's), ``mlp_ratio``, ``learn_sigma``, ``return_variance``; ``t`` is the DDPM step.
* edm_ddpmpp, edm_adm: EDM's DDPM++ and ADM (:mod:`jaxdistill.models.ports.edm`), the raw network
  of a ``Denoiser`` of prediction kind ``"edm"`` (``t`` is ``c_noise = ln(sigma) / 4``): ``preset``
  (``"cifar10_cond"``, ``"cifar10_uncond"`` for DDPM++, ``"imagenet64_cond"`` for ADM, or None for
  EDM's defaults), and ``num_classes`` (EDM's ``label_dim``), ``augment_dim``, ``model_channels``,
  ``channel_mult``, ``channel_mult_emb``, ``num_blocks``, ``attn_resolutions``, ``dropout`` (None:
  the preset's); ``num_times`` > 1 adds zero-initialised embeddings of the extra times (a network that
  starts as the published one, e.g. CTM's jump G(x, t, s)).
* edm2: EDM2's magnitude-preserving UNet (:mod:`jaxdistill.models.ports.edm2`), likewise the raw
  network of a ``Denoiser`` of kind ``"edm"``: ``size`` (``"XS"`` ... ``"XXL"``, the published
  ImageNet-512 networks on 64x64x4 latents, or None for EDM2's class defaults), and
  ``num_classes`` (EDM2's ``label_dim``), ``model_channels``, ``channel_mult``, ``num_blocks``,
  ``attn_resolutions``, ``label_balance``, ``concat_balance``, ``channels_per_head``, ``dropout``,
  ``res_balance``, ``attn_balance``, ``logvar_channels`` (None: the size's), ``channel_mult_noise``,
  ``channel_mult_emb`` (None: EDM2's choice from ``channel_mult``), ``clip_act`` (None: no clipping);
  ``num_times`` 1 only.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdistill.core.types import Array, PyTree
from jaxdistill.models.dit import DiT
from jaxdistill.models.mlp import ResidualMLP
from jaxdistill.models.ports.dit import make_dit_port
from jaxdistill.models.ports.edm import make_edm_port
from jaxdistill.models.ports.edm2 import DEFAULTS as EDM2_DEFAULTS
from jaxdistill.models.ports.edm2 import make_edm2_port
from jaxdistill.models.sharding import constrain_batch, gather_params
from jaxdistill.models.unet import UNet

# Logical axis -> mesh axis, the default of the run config's ``mesh.logical_axis_rules``
# (``train.mesh.state_shardings``). Flax assigns rules in order and never reuses a mesh
# axis within one array, so for a kernel annotated ("embed", "mlp") only "embed"
# is sharded over "fsdp"; "mlp"/"conv_in" act as fall-backs for kernels without
# the earlier names. Data-sized, vocabulary and spatial axes stay replicated.
LOGICAL_AXIS_RULES: tuple[tuple[str, Optional[str]], ...] = (
    ("embed", "fsdp"),
    ("conv_out", "fsdp"),
    ("mlp", "fsdp"),
    ("conv_in", "fsdp"),
    ("heads", None),
    ("io", None),
    ("vocab", None),
    ("conv_h", None),
    ("conv_w", None),
)

_COMMON = dict(num_classes=0, num_times=1, dropout=0.0, time_embedding="sinusoidal", time_scale=1000.0, label_init_std=0.02)
_DEFAULTS: dict[str, dict] = {
    "mlp": dict(width=256, depth=3, mlp_ratio=2, use_layer_norm=True),
    "unet": dict(
        base_channels=64,
        channel_mult=(1, 2, 2),
        num_res_blocks=2,
        attn_resolutions=(8,),
        num_heads=4,
        num_groups=32,
        remat=False,
    ),
    "dit": dict(patch_size=2, hidden_size=256, depth=6, num_heads=4, mlp_ratio=4.0, remat=False),
}
_MODULES = {"mlp": ResidualMLP, "unet": UNet, "dit": DiT}
# Ports of published networks: their own fields only (the common ones above do not apply).
_PORTS: dict[str, dict] = {
    "dit_port": dict(
        size="XL/2", patch_size=None, hidden_size=None, depth=None, num_heads=None, mlp_ratio=4.0,
        num_classes=1000, learn_sigma=True, return_variance=False, remat=False,
    ),
    **{
        f"edm_{arch}": dict(
            preset=preset, num_classes=None, augment_dim=None, model_channels=None, channel_mult=None, channel_mult_emb=None,
            num_blocks=None, attn_resolutions=None, dropout=None, remat=False,
        )
        for arch, preset in (("ddpmpp", "cifar10_cond"), ("adm", "imagenet64_cond"))
    },
    "edm2": dict(size="XS", **{k: EDM2_DEFAULTS[k] if k in ("channel_mult_noise", "channel_mult_emb", "clip_act") else None for k in EDM2_DEFAULTS}, remat=False),
}
EXTRA_TIME_PORTS = ("edm_ddpmpp", "edm_adm")  # ports that take extra time inputs (num_times > 1: zero-initialised embeddings)
_PORT_BUILDERS = {"dit_port": make_dit_port, "edm_ddpmpp": lambda **kw: make_edm_port("ddpmpp", **kw), "edm_adm": lambda **kw: make_edm_port("adm", **kw), "edm2": make_edm2_port}


def default_network_config(name: str) -> ml_collections.ConfigDict:
    """Default hyper-parameters for ``name`` in {"mlp", "unet", "dit", "dit_port", "edm_ddpmpp", "edm_adm", "edm2"}."""
    if name in _PORTS:
        return ml_collections.ConfigDict(dict(name=name, num_times=1, **_PORTS[name]))
    if name not in _DEFAULTS:
        raise ValueError(f"unknown network {name!r}; choose from {sorted({**_DEFAULTS, **_PORTS})}")
    return ml_collections.ConfigDict(dict(name=name, **_COMMON, **_DEFAULTS[name]))


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A Flax module plus pure ``init`` / ``apply`` functions in the ApplyFn convention."""

    module: nn.Module
    num_classes: int = 0
    num_times: int = 1

    def _example_inputs(self, example_x: Array) -> tuple[Array, Array, Optional[Array]]:
        x = jnp.asarray(example_x, jnp.float32)
        t = jnp.zeros((x.shape[0],) if self.num_times == 1 else (x.shape[0], self.num_times), jnp.float32)
        cond = jnp.zeros((x.shape[0],), jnp.int32) if self.num_classes > 0 else None
        return x, t, cond

    def _boxed_init(self, rng: Array, example_x: Array) -> PyTree:
        x, t, cond = self._example_inputs(example_x)
        params_rng, dropout_rng = jax.random.split(rng)
        return self.module.init({"params": params_rng, "dropout": dropout_rng}, x, t, cond, train=False)

    def init(self, rng: Array, example_x: Array) -> PyTree:
        """Unboxed variables ``{"params": ...}`` for inputs shaped like ``example_x`` (jit-compiled)."""
        return jax.jit(lambda r, x: nn.meta.unbox(self._boxed_init(r, x)))(rng, example_x)

    def logical_specs(self, rng: Array, example_x: Array) -> PyTree:
        """Logical ``PartitionSpec`` per parameter (same tree as :meth:`init`), without compute."""
        return self.parameter_axes(rng, example_x)[1]

    def parameter_axes(self, rng: Array, example_x: Array) -> tuple[PyTree, PyTree]:
        """(ShapeDtypeStruct, logical ``PartitionSpec``) trees of the parameters :meth:`init` gives
        for inputs shaped like ``example_x`` (an array or ShapeDtypeStruct), from one trace without compute."""
        boxed = jax.eval_shape(self._boxed_init, rng, example_x)
        return nn.meta.unbox(boxed), nn.get_partition_spec(boxed)

    def apply(
        self,
        params: PyTree,
        x: Array,
        t: Array,
        cond: Optional[Array],
        *,
        train: bool = False,
        rngs: Optional[Mapping[str, Array]] = None,
        return_features: bool = False,
    ):
        """Network output (shape of ``x``); with ``return_features`` also intermediate features.
        Inputs and outputs are split by example over the mesh of :func:`sharding.activation_mesh`."""
        x, t, cond = jax.tree.map(constrain_batch, (x, t, cond))
        out = self.module.apply(gather_params(params), x, t, cond, train=train, rngs=rngs, return_features=return_features)
        return jax.tree.map(constrain_batch, out)


def network_config(module: nn.Module, num_classes: int = 0) -> ml_collections.ConfigDict:
    """The network config that rebuilds a linen ``module`` written outside jaxdistill: ``name``
    is its import path ``package.module:Class`` and the other fields its constructor fields.
    ``num_classes`` is the module's own field if it has one, else the given value."""
    cls = type(module)
    if "<" in cls.__qualname__:
        raise ValueError(f"{cls.__qualname__} is defined inside a function: define the network class at module level so runs can rebuild it")
    fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module) if f.init and f.name not in ("parent", "name")}
    config = ml_collections.ConfigDict({"name": f"{cls.__module__}:{cls.__qualname__}", "num_times": 1, **fields})
    if "num_classes" not in config:
        config.num_classes = int(num_classes)
    return config


def _import_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"network {path!r} cannot be imported ({err}); is its module on the Python path?") from err
    return obj


def _make_imported(config: ml_collections.ConfigDict) -> Network:
    """A network named by import path (``network_config``): its class with the config's fields."""
    cls = _import_class(config.name)
    fields = {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}
    unknown = sorted(set(config.keys()) - fields - {"name", "num_times", "num_classes"})
    if unknown:
        raise ValueError(f"network {config.name!r} has no fields {unknown}; its fields are {sorted(fields)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields}
    return Network(cls(**kwargs), int(config.get("num_classes", 0)), int(config.get("num_times", 1)))


def make_network(config: ml_collections.ConfigDict) -> Network:
    """Instantiate the network described by ``config``: a built-in name (missing fields take
    defaults) or a ``package.module:Class`` import path (``network_config``)."""
    if ":" in config.name:
        return _make_imported(config)
    cfg = default_network_config(config.name)
    cfg.update(config)
    kwargs = {k: v for k, v in cfg.items() if k not in ("name", "num_times")}
    if int(cfg.num_times) < 1:
        raise ValueError(f"num_times must be >= 1, got {cfg.num_times}")
    if cfg.name in _PORTS:
        if int(cfg.num_times) != 1 and cfg.name not in EXTRA_TIME_PORTS:
            raise ValueError(f"{cfg.name} takes one time input (num_times=1), not {cfg.num_times}")
        module = _PORT_BUILDERS[cfg.name](**kwargs)
        return Network(module, int(module.num_classes), int(cfg.num_times))
    for key in ("channel_mult", "attn_resolutions"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return Network(_MODULES[cfg.name](**kwargs), int(cfg.num_classes), int(cfg.num_times))


def count_params(params: PyTree) -> int:
    """Total number of scalar parameters in a pytree."""
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)))
