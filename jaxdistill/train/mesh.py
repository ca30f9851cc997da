"""Device mesh, partition rules and placement of batches and states.

The mesh has two axes, ``data`` and ``fsdp``. The batch is split over both (every
device sees a different slice of the global batch); parameters, optimiser state and
EMA are sharded over ``fsdp`` by partition rules and replicated over ``data``.

Partition rules are ``(regex, PartitionSpec)`` pairs matched against a leaf's
``/``-joined key path (e.g. ``student/params/params/Dense_0/kernel``); optimiser
moments have the same path suffix as their parameter, so one rule covers both. Leaves
no rule matches follow the network's logical axis annotations when the network is known
(``Annotated``), else the default FSDP rule: shard the largest dimension divisible by
the ``fsdp`` axis size over ``fsdp`` when the leaf has at least ``min_fsdp_size``
elements, else replicate. The default makes any apply-function shardable, including
models that carry no annotations of their own.

Logical annotations (``nn.with_logical_partitioning``: "embed", "mlp", "heads", ...) are mapped
to mesh axes by Flax's rules (``mesh.logical_axis_rules``, ``nn.logical_to_mesh_axes``). They
reach a state by its parameter tree: every subtree of a state (a network's ``params``, each Adam
moment, the EMA, a frozen teacher) whose paths and shapes equal an ``Annotated`` network's
parameter tree gets that network's specs, so two networks that share a path suffix never swap
rules. Within a matched tree a leaf takes the default rule when it is unannotated (biases, norms),
when its annotation resolves to no mesh axis, or when the mesh axis does not divide the dimension
the annotation chose; leaves under ``min_fsdp_size`` elements are replicated either way. Networks
that are not ``Annotated`` (the GAN head, a teacher passed as an object with its own architecture)
take the default rule throughout.

The device grid comes from JAX's topology-aware helpers (``mesh_utils.create_device_mesh``,
and ``create_hybrid_device_mesh`` over ``mesh.dcn_data`` slices on a multi-slice pod, where
the data axis spans slices over DCN and fsdp stays within a slice's ICI).
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.types import PyTree
from jaxdistill.models.registry import Network

MESH_AXES = ("data", "fsdp")
BATCH_SPEC = P(MESH_AXES)


def mesh_shape(cfg: Optional[ml_collections.ConfigDict], num_devices: int) -> tuple[int, int]:
    """(data, fsdp) sizes of ``cfg`` on ``num_devices``; a ConfigError naming the field if they do not fit."""
    fsdp = int(cfg.fsdp) if cfg is not None else 1
    data = int(cfg.data) if cfg is not None else -1
    if fsdp < 1 or num_devices % fsdp:
        raise ConfigError(f"mesh.fsdp={fsdp} must be >= 1 and divide the device count {num_devices}")
    if data == -1:
        data = num_devices // fsdp
    if data * fsdp != num_devices:
        raise ConfigError(f"mesh.data * mesh.fsdp = {data} * {fsdp} must equal the device count {num_devices} (use mesh.data=-1)")
    return data, fsdp


def device_grid(shape: tuple[int, int], devices: Sequence[jax.Device], dcn_data: int = 1) -> np.ndarray:
    """Devices laid out as ``shape`` = (data, fsdp) by JAX's topology-aware helpers; with
    ``dcn_data > 1`` slices the data axis is ``dcn_data`` slices (DCN) times ``data // dcn_data`` (ICI)."""
    data, fsdp = shape
    if dcn_data == 1:
        return mesh_utils.create_device_mesh(shape, devices)
    if dcn_data < 1 or data % dcn_data:
        raise ConfigError(f"mesh.dcn_data={dcn_data} must be >= 1 and divide the data axis size {data}")
    return mesh_utils.create_hybrid_device_mesh((data // dcn_data, fsdp), (dcn_data, 1), devices)


def make_mesh(cfg: Optional[ml_collections.ConfigDict] = None, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """Mesh with axes (data, fsdp); ``cfg.data = -1`` takes all devices not used by fsdp,
    ``cfg.dcn_data`` (default 1) is the number of slices the data axis spans."""
    devices = list(jax.devices() if devices is None else devices)
    dcn_data = int(cfg.get("dcn_data", 1)) if cfg is not None else 1
    return Mesh(device_grid(mesh_shape(cfg, len(devices)), devices, dcn_data), MESH_AXES)


def key_path_str(path: tuple) -> str:
    parts = []
    for k in path:
        name = getattr(k, "key", getattr(k, "name", getattr(k, "idx", None)))
        parts.append(str(name if name is not None else k))
    return "/".join(parts)


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int, min_fsdp_size: int) -> P:
    """Shard the largest dimension divisible by ``fsdp_size`` over ``fsdp``."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_fsdp_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


LogicalRules = Sequence[tuple[str, Optional[str]]]


@dataclasses.dataclass(frozen=True, eq=False)
class Annotated:
    """The parameter tree of ``network`` for inputs shaped like ``example``: ``shapes``
    (ShapeDtypeStructs) and ``logical`` (each parameter's logical ``PartitionSpec``, ``P()`` where
    unannotated), traced on first use (``Network.parameter_axes``)."""

    network: Network
    example: jax.ShapeDtypeStruct

    @functools.cached_property
    def _traced(self) -> tuple[PyTree, PyTree, jax.tree_util.PyTreeDef]:
        shapes, logical = self.network.parameter_axes(jax.random.key(0), self.example)
        return shapes, logical, jax.tree.structure(shapes)

    @property
    def shapes(self) -> PyTree:
        return self._traced[0]

    @property
    def logical(self) -> PyTree:
        return self._traced[1]

    def matches(self, node: PyTree) -> bool:
        """Whether ``node`` has exactly this parameter tree: the same paths and shapes."""
        if not isinstance(node, dict):
            return False
        shapes, _, treedef = self._traced
        if jax.tree.structure(node) != treedef:
            return False
        return all(tuple(jnp.shape(a)) == tuple(b.shape) for a, b in zip(jax.tree.leaves(node), jax.tree.leaves(shapes)))


def logical_rules(cfg: Optional[ml_collections.ConfigDict]) -> tuple[tuple[str, Optional[str]], ...]:
    """``cfg.logical_axis_rules`` as a tuple of pairs (a saved run's JSON has lists); ``()`` when the
    field is absent (a config from before it existed: every leaf takes the heuristic, as then)."""
    rules = cfg.get("logical_axis_rules", ()) if cfg is not None else ()
    return tuple((str(name), axis) for name, axis in rules or ())


def annotated_spec(logical: P, shape: tuple[int, ...], mesh: Mesh, rules: LogicalRules) -> Optional[P]:
    """The mesh ``PartitionSpec`` that ``rules`` give the logical annotation ``logical`` of a leaf of
    ``shape``, or ``None`` (use the heuristic) when the leaf is unannotated, no dimension gets a
    mesh axis, or a mesh axis does not divide its dimension."""
    if len(logical) != len(shape) or not rules:
        return None
    spec = nn.logical_to_mesh_axes(tuple(logical), rules)
    axes = [(dim, (axis,) if isinstance(axis, str) else tuple(axis or ())) for dim, axis in enumerate(spec)]
    if not any(names for _, names in axes):
        return None
    if any(shape[dim] % int(np.prod([mesh.shape[a] for a in names], dtype=np.int64)) for dim, names in axes):
        return None
    return spec


def state_shardings(
    tree: PyTree,
    mesh: Mesh,
    rules: Sequence[tuple[str, P]] = (),
    min_fsdp_size: int = 1024,
    *,
    annotated: Sequence[Annotated] = (),
    logical_axis_rules: LogicalRules = (),
) -> PyTree:
    """NamedShardings for every leaf of ``tree`` (arrays or ShapeDtypeStructs): a ``rules`` regex's
    spec, else (inside a subtree matching an ``annotated`` network) the spec ``logical_axis_rules``
    give its annotation, else the heuristic ``fsdp_spec``. See the module docstring."""
    compiled = [(re.compile(pattern), spec) for pattern, spec in rules]
    fsdp_size = mesh.shape["fsdp"]
    annotated = annotated if fsdp_size > 1 else ()  # one fsdp device: every spec replicates

    def leaf_sharding(path, leaf, logical: P = P()) -> NamedSharding:
        name = key_path_str(path)
        for pattern, spec in compiled:
            if pattern.search(name):
                return NamedSharding(mesh, spec)
        shape = tuple(jnp.shape(leaf))
        spec = annotated_spec(logical, shape, mesh, logical_axis_rules)
        if spec is None or int(np.prod(shape, dtype=np.int64)) < min_fsdp_size:
            spec = fsdp_spec(shape, fsdp_size, min_fsdp_size)
        return NamedSharding(mesh, spec)

    def network(node) -> Optional[Annotated]:
        return next((a for a in annotated if a.matches(node)), None)

    def one(path, node):
        found = network(node)
        if found is None:
            return leaf_sharding(path, node)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(node)
        specs = treedef.flatten_up_to(found.logical)
        return treedef.unflatten([leaf_sharding(path + sub, leaf, spec) for (sub, leaf), spec in zip(leaves, specs)])

    return jax.tree_util.tree_map_with_path(one, tree, is_leaf=lambda node: network(node) is not None)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_host_tree(tree: PyTree, shardings: PyTree) -> PyTree:
    """Place a tree every process holds whole and alike (a restored teacher, a pair set) with
    ``shardings``: ``device_put`` on one process; on several, each process builds its addressable
    shards from its own copy (``device_put`` refuses shardings over other hosts' devices). A leaf
    that already has its sharding (a teacher restored into it) is left as it is."""
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def put(leaf, sharding):
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree, shardings)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble process-local numpy batches (dicts of arrays, nested for dict conditioning) into
    global arrays split over the mesh along their first axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)), local_batch)


def maybe_initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
    """Join the processes of a multi-host run with ``jax.distributed.initialize``.

    * ``cfg.auto`` (or ``coordinator_address="auto"``): called with no arguments, so JAX detects
      the cluster itself (TPU VMs, SLURM, Open MPI); every host runs the same command.
    * ``cfg.coordinator_address`` ``host:port``: with ``num_processes`` and ``process_id`` (other
      clusters; each process gets its own ``process_id``).
    * neither: a single process, nothing to do.
    """
    address = cfg.get("coordinator_address") or ""
    if cfg.get("auto", False) or address == "auto":
        jax.distributed.initialize()
    elif address:
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=int(cfg.num_processes),
            process_id=int(cfg.process_id),
        )
