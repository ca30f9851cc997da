"""Run in a subprocess with 8 simulated CPU devices: trains smoke configs on several
meshes and prints the final loss and a parameter checksum per config and mesh as JSON.

    python _sharded_run.py WORKDIR CONFIGS [MESHES]

CONFIGS is a comma-separated list of config names, ``configs/<name>.py`` loaded with "smoke"
(e.g. ``grid25/kd,grid25/cd``); MESHES a comma-separated subset of 1dev,data8,data2_fsdp4
(default: all three). One process for all configs saves a JAX start-up per config.
"""
import os
import sys

os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"  # after conftest.py's
os.environ["JAX_PLATFORMS"] = "cpu"

import json  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxdistill.build import build  # noqa: E402
from jaxdistill.config import load_config_file  # noqa: E402
from jaxdistill.train import mesh as mesh_lib  # noqa: E402
from jaxdistill.train.engine import Trainer  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
MESHES = {"1dev": (1, 1, 1), "data8": (8, 1, 8), "data2_fsdp4": (2, 4, 8)}

workdir, config_names = sys.argv[1], sys.argv[2].split(",")
names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(MESHES)
all_results = {}
for config_name, name in [(c, n) for c in config_names for n in names]:
    results = all_results.setdefault(config_name, {})
    data, fsdp, ndev = MESHES[name]
    config = load_config_file(os.path.join(CONFIGS, f"{config_name}.py") + ":smoke")
    config.mesh.data, config.mesh.fsdp, config.mesh.min_fsdp_size = data, fsdp, 16
    config.train.num_steps = 8
    config.train.log_every = 8
    config.train.checkpoint_every = 8
    mesh = mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:ndev])
    built = build(config)
    trainer = Trainer(built.objective, built.frozen, config, os.path.join(workdir, config_name, name), built.data_factory, mesh=mesh, show_progress=False, annotated=built.annotated)
    result = trainer.train()
    # every trainable array: NetState params (opt_state and EMA follow them) and carried copies
    trees = [getattr(state, "params", state) for state in result.trainable.values()]
    specs = [leaf.sharding.spec for tree in trees for leaf in jax.tree.leaves(tree)]
    leaves = [np.asarray(x, np.float64) for tree in trees for x in jax.tree.leaves(tree)]
    results[name] = {
        "loss": result.last_metrics["loss"],
        "params": [float(np.sum(np.abs(x))) for x in leaves],
        "first_leaf": leaves[0].ravel()[:16].tolist(),
        "fsdp_sharded": int(sum(any(a == "fsdp" for a in spec) for spec in specs)),
        "compilations": trainer._compiled_step._cache_size(),
    }
print("RESULTS " + json.dumps(all_results))
