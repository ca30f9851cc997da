"""Collectives of the compiled FSDP train step: a digits-shape (8x8x1) DMD2 step on 8 simulated
CPU devices (mesh data 2 x fsdp 4) for an MLP, a UNet and a DiT student, each with a randomly
initialised teacher of the same network. Prints per network the all-gathers, all-to-alls,
all-reduces and reduce-scatters in ``compiled.as_text()``, the compile's "involuntary full
rematerialization" warnings, the state and teacher leaves sharded along the dimension their logical
annotation chose instead of the default rule's (``annotated_leaves``, ``mesh.logical_axis_rules``),
and the per-device parameter + optimiser bytes against total / fsdp.

Usage: python experiments/fsdp_collectives.py [--nets mlp,unet,dit] [--method dmd2] [--tiny] [--json]

XLA:CPU forms no ``reduce-scatter`` (GPU and TPU run ReduceScatterCreator); its gradient
reduction is an ``all-reduce`` whose result is ``dynamic-slice``d to the device's fsdp shard: of the
``full_all_reduce`` (float all-reduces over all 8 devices of arrays the default rule would shard,
right after SPMD partitioning),
``sliced_full_all_reduce`` reach a dynamic-slice. ``gather_constraints`` counts the parameters the
networks gather whole (one per parameter per pass), the bound on ``all_gather``. Results and the
before/after comparison: docs/launch.md, "FSDP: what the compiled step communicates".
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
# No LLVM optimisation (the counts come from the SPMD partitioner, which runs before it); the train
# step's HLO right after SPMD partitioning is written to DUMP, before collectives are combined and fused.
DUMP = tempfile.mkdtemp(prefix="fsdp-collectives-")
atexit.register(shutil.rmtree, DUMP, ignore_errors=True)
os.environ["XLA_FLAGS"] += (
    f" --xla_backend_optimization_level=0 --xla_dump_to={DUMP} --xla_dump_hlo_pass_re=spmd-partitioning"
    " --xla_dump_hlo_module_re=.*train_step.*"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from jaxdistill import benchmarks  # noqa: E402
from jaxdistill.benchmarks import digits  # noqa: E402
from jaxdistill.build import build  # noqa: E402
from jaxdistill.models.registry import default_network_config  # noqa: E402
from jaxdistill.train import mesh as mesh_lib  # noqa: E402
from jaxdistill.train.engine import Trainer  # noqa: E402

REMAT_WARNING = "Involuntary full rematerialization"
jax.config.update("jax_enable_compilation_cache", False)  # a cache hit would skip the compile this script reads


def network(name: str, tiny: bool = False) -> ml_collections.ConfigDict:
    """The digits networks: the benchmark's MLP and UNet and a small DiT (2x2 patches); ``tiny``:
    widths of 32 and one block, for tests."""
    if name == "mlp":
        return benchmarks.mlp(num_classes=10, width=32 if tiny else 256, depth=1 if tiny else 3)
    if name == "unet":
        net = benchmarks.unet(num_classes=10, small=tiny)
        return net
    if name == "dit":
        net = default_network_config("dit")
        net.num_classes, net.hidden_size, net.depth, net.num_heads = 10, 32 if tiny else 64, 1 if tiny else 2, 4
        return net
    raise ValueError(f"unknown network {name!r}; choose mlp, unet or dit")


def student_config(net: str, method: str, tiny: bool = False) -> ml_collections.ConfigDict:
    c = digits.student(method, "smoke")
    c.network = network(net, tiny)
    c.mesh.data, c.mesh.fsdp, c.mesh.min_fsdp_size = 2, 4, 16
    return c


def random_teacher(config: ml_collections.ConfigDict):
    """(Denoiser, params) of an untrained teacher of ``config.network`` (shapes are what matter here)."""
    c = digits.teacher("smoke")
    c.network = config.network
    built = build(c)
    batch = jax.tree.map(jnp.asarray, next(iter(built.data_factory(0))))
    trainable = built.objective.init(jax.random.key(0), batch, built.frozen)
    return built.objective.denoiser, trainable["model"].eval_params


class StderrCapture:
    """Collects what the process (XLA's C++ included) writes to file descriptor 2."""

    def __enter__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()


def count_ops(hlo: str, op: str) -> int:
    """Instructions ``op`` (or its async ``op-start``) in an HLO module's text."""
    return len(re.findall(rf"= [^=]*? {op}(?:-start)?\(", hlo))


# ops a reduced gradient passes through on its way to the optimiser update
_ELEMENTWISE = {"copy", "add", "transpose", "reshape", "bitcast", "multiply", "divide", "select", "convert", "subtract", "negate", "broadcast"}


def partitioned_hlo() -> str:
    """The latest train step's HLO right after SPMD partitioning (from the dump)."""
    files = sorted(glob.glob(os.path.join(DUMP, "*train_step*after_spmd-partitioning*")), key=os.path.getmtime)
    return open(files[-1]).read()


def gradient_reductions(hlo: str, mesh, min_fsdp_size: int) -> tuple[int, int]:
    """(all-reduces over all devices of ``mesh`` of f32 arrays the default rule shards over fsdp,
    those whose result reaches a ``dynamic-slice`` through element-wise ops) in partitioned HLO.
    A weight gradient reduced and then sliced to the device's shard is what GPU/TPU XLA turns into
    a reduce-scatter; XLA:CPU keeps the all-reduce + dynamic-slice. Gradients of replicated
    parameters (too small, or no dimension divisible by fsdp) need no slice and are left out."""
    ops, users = {}, collections.defaultdict(list)
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?(%[\w.\-]+) = (\S+) ([\w\-]+)\((.*)", line)
        if m:
            name, shape, op, rest = m.groups()
            ops[name] = (shape, op, rest)
            for arg in re.findall(r"%[\w.\-]+", rest.split("),")[0]):
                users[arg].append(name)
    full = [
        n for n, (shape, op, rest) in ops.items()
        if op == "all-reduce" and shape.startswith("f32[") and _group_size(rest) == mesh.size
        and mesh_lib.fsdp_spec(_dims(shape), mesh.shape["fsdp"], min_fsdp_size) != mesh_lib.P()
    ]

    def sliced(name: str) -> bool:
        seen, todo = set(), list(users[name])
        while todo:
            user = todo.pop()
            if user in seen:
                continue
            seen.add(user)
            if ops[user][1] == "dynamic-slice":
                return True
            if ops[user][1] in _ELEMENTWISE:
                todo.extend(users[user])
        return False

    return len(full), sum(sliced(n) for n in full)


def gather_constraints(stablehlo: str) -> int:
    """Sharding constraints to "whole on every device" in the lowered step: one per parameter per
    network pass (``models.sharding.gather_params``), the most all-gathers FSDP needs."""
    return len(re.findall(r"sdy\.sharding_constraint \S+ <@\w+, \[(?:\{\}(?:, )?)*\]>", stablehlo))


def _dims(shape: str) -> tuple[int, ...]:
    """``f32[32,8]{1,0}`` -> (32, 8)."""
    inside = shape[shape.index("[") + 1 : shape.index("]")]
    return tuple(int(d) for d in inside.split(",")) if inside else ()


def _group_size(attrs: str) -> int:
    """Devices in each replica group of a collective's attributes (iota or mesh form)."""
    m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", attrs)
    if m:
        return int(m.group(2))
    m = re.search(r"replica_groups=mesh\[([^\]]*)\] \{([^}]*)\}", attrs)
    if m:
        sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
        return math.prod(int(sizes[a]) for a in re.findall(r"'(\w+)'", m.group(2)))
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]", attrs)
    return math.prod(int(v) for v in re.findall(r"=(\d+)", m.group(1))) if m else 0


def shard_bytes(tree) -> tuple[int, int]:
    """(bytes one device holds, total bytes) of the arrays of ``tree``."""
    leaves = jax.tree.leaves(tree)
    device = leaves[0].sharding.addressable_devices.__iter__().__next__()
    held = sum(s.data.nbytes for x in leaves for s in x.addressable_shards if s.device == device)
    return held, sum(x.nbytes for x in leaves)


def compile_report(net: str, method: str = "dmd2", tiny: bool = False) -> dict:
    """Counts for the compiled train step of ``method`` with network ``net`` on mesh data 2 x fsdp 4."""
    config = student_config(net, method, tiny)
    built = build(config, teacher=random_teacher(config))
    mesh = mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:8])
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(built.objective, built.frozen, built.config, workdir, built.data_factory, mesh=mesh, show_progress=False, annotated=built.annotated)
        frozen, frozen_sh = trainer._place_frozen()
        batch = mesh_lib.global_batch(next(iter(built.data_factory(0))), mesh)
        trainable, state_sh, _ = trainer._init_trainable(batch, frozen, frozen_sh)
        trainer.checkpointer.close()
    batch_sh = jax.tree.map(lambda _: mesh_lib.batch_sharding(mesh), batch)
    step = trainer.compile_step(state_sh, frozen_sh, batch_sh)
    lowered = step.lower(trainable, frozen, batch, jnp.asarray(0, jnp.int32), jnp.zeros((), jnp.float32))
    with StderrCapture() as err:
        compiled = lowered.compile()
    hlo = compiled.as_text()
    reductions, sliced = gradient_reductions(partitioned_hlo(), mesh, int(config.mesh.min_fsdp_size))
    held, total = shard_bytes(trainable)
    fsdp_leaves = [x for x in jax.tree.leaves(trainable) if "fsdp" in jax.tree.leaves(tuple(x.sharding.spec))]
    heuristic = lambda x: mesh_lib.fsdp_spec(x.shape, mesh.shape["fsdp"], int(config.mesh.min_fsdp_size))
    annotated = [x for x in jax.tree.leaves((trainable, frozen)) if x.sharding.spec != heuristic(x)]
    return {
        "net": net,
        "method": method,
        "params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(trainable))),
        "state_leaves": len(jax.tree.leaves(trainable)),
        "fsdp_leaves": len(fsdp_leaves),
        "annotated_leaves": len(annotated),  # trainable + frozen leaves split where their annotation says, not the default rule
        "all_gather": count_ops(hlo, "all-gather"),
        "all_to_all": count_ops(hlo, "all-to-all"),
        "all_reduce": count_ops(hlo, "all-reduce"),
        "full_all_reduce": reductions,
        "sliced_full_all_reduce": sliced,
        "gather_constraints": gather_constraints(lowered.as_text()),
        "reduce_scatter": count_ops(hlo, "reduce-scatter"),
        "remat_warnings": err.text.count(REMAT_WARNING),
        "state_bytes_per_device": held,
        "state_bytes_total": total,
        "bytes_ratio": held / (total / mesh.shape["fsdp"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="mlp,unet,dit")
    parser.add_argument("--method", default="dmd2")
    parser.add_argument("--tiny", action="store_true", help="widths of 32, one block (what the test compiles)")
    parser.add_argument("--json", action="store_true", help="one JSON line per network")
    args = parser.parse_args()
    for net in args.nets.split(","):
        report = compile_report(net, args.method, args.tiny)
        print(json.dumps(report) if args.json else "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()), flush=True)


if __name__ == "__main__":
    main()
