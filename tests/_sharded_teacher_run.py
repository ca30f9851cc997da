"""Run in a subprocess with 8 simulated CPU devices: a KD student (with its teacher pair set) of a
checkpointed grid25 teacher, once on one device (the teacher read back by ``load_run`` onto it)
and once on a data 2 x fsdp 4 mesh with the teacher restored straight into its shardings
(``build(mesh=)``). Prints JSON: the teacher leaves' shardings after the restore and after the
Trainer placed them, whether placement moved any of them, and both students' parameters.

    python _sharded_teacher_run.py WORKDIR
"""
import os
import sys

os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"  # after conftest.py's
os.environ["JAX_PLATFORMS"] = "cpu"

import json  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxdistill.benchmarks import grid25  # noqa: E402
from jaxdistill.build import build  # noqa: E402
from jaxdistill.train import mesh as mesh_lib  # noqa: E402
from jaxdistill.train.engine import Trainer  # noqa: E402


def short(config, steps: int = 2):
    config.train.num_steps = config.train.log_every = config.train.checkpoint_every = steps
    config.train.sample_every = 0
    return config


workdir = sys.argv[1]
teacher_dir = os.path.join(workdir, "teacher")
teacher_cfg = short(grid25.teacher("smoke"))
teacher_cfg.mesh.data = 1
built = build(teacher_cfg)
Trainer(built.objective, built.frozen, teacher_cfg, teacher_dir, built.data_factory, mesh=mesh_lib.make_mesh(teacher_cfg.mesh, jax.devices()[:1]), show_progress=False).train()

out = {}
for name, (data, fsdp, ndev) in {"1dev": (1, 1, 1), "data2_fsdp4": (2, 4, 8)}.items():
    config = short(grid25.student("kd", "smoke", teacher_workdir=teacher_dir))
    config.mesh.data, config.mesh.fsdp, config.mesh.min_fsdp_size = data, fsdp, 16
    mesh = mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:ndev])
    built = build(config, mesh=mesh if ndev > 1 else None)  # one device: the laptop path (load_run onto one device)
    restored = jax.tree.leaves(built.frozen["teacher"])
    rules = mesh_lib.logical_rules(config.mesh)
    target = jax.tree.leaves(mesh_lib.state_shardings(built.frozen["teacher"], mesh, min_fsdp_size=16, annotated=built.annotated, logical_axis_rules=rules))
    result = Trainer(built.objective, built.frozen, config, os.path.join(workdir, name), built.data_factory, mesh=mesh, show_progress=False, annotated=built.annotated).train()
    placed = jax.tree.leaves(result.frozen["teacher"])
    out[name] = {
        "restored_as_target": all(x.sharding.is_equivalent_to(s, x.ndim) for x, s in zip(restored, target)),
        "restored_fsdp": sum("fsdp" in x.sharding.spec for x in restored if isinstance(x.sharding, jax.sharding.NamedSharding)),
        "placed_fsdp": sum("fsdp" in x.sharding.spec for x in placed),
        "placed_as_annotated": sum(x.sharding.spec != mesh_lib.fsdp_spec(x.shape, fsdp, 16) for x in placed),
        "placed_devices": sorted({len(x.sharding.device_set) for x in placed}),
        "unmoved": sum(a is b for a, b in zip(restored, placed)),
        "num_teacher_leaves": len(placed),
        "pairs_sharding_devices": len(result.frozen["pairs"]["target"].sharding.device_set),
        "student": [np.asarray(x, np.float64).ravel().tolist() for x in jax.tree.leaves(result.trainable["student"].params)],
        "pairs": np.asarray(result.frozen["pairs"]["target"], np.float64).ravel()[:64].tolist(),
    }
print("RESULTS " + json.dumps(out))
