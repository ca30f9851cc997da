"""Helper of tests/test_multihost.py, run in subprocesses.

``worker PROCESS_ID PORT WORKDIR [SIGTERM_AT]``: one of two processes, each with 2 simulated
CPU devices, running ``jaxdistill train`` (the real CLI) with the ``distributed`` overrides;
with ``SIGTERM_AT`` the process sends itself SIGTERM while reading batch ``SIGTERM_AT``.
Prints ``WORKER {json}`` with its process index/count and the CLI's exit code.

``reference WORKDIR RUN_DIR...``: one process, one device, the same config fed the same
*global* batches as the two processes (the concatenation of the shards ``source[0::2]`` and
``source[1::2]``, in process order). Prints ``REFERENCE {json}`` with its final loss and the
largest parameter differences to each two-process run, restored from its checkpoint.

Both train ``CONFIG`` (grid25 teacher training) unless the environment's ``MULTIHOST_JOB`` (JSON)
names another ``config`` with ``overrides`` of its own, e.g. a DMD2 student of a checkpointed teacher.
"""
import os
import sys

mode = sys.argv[1]
os.environ["JAX_PLATFORMS"] = "cpu"
# Appended to the inherited flags (conftest.py's stay in force; the last device count wins).
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={2 if mode == 'worker' else 1}"

import json  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

NUM_STEPS = 24
OVERRIDES = {
    "train.num_steps": NUM_STEPS,
    "train.log_every": 12,
    "train.checkpoint_every": 12,
    "train.sample_every": 12,
    "train.num_plot_samples": 64,
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = json.loads(os.environ.get("MULTIHOST_JOB", '{"config": "configs/grid25/teacher.py:smoke"}'))
CONFIG = JOB["config"]
OVERRIDES = {**OVERRIDES, **JOB.get("overrides", {})}


def worker(process_id: int, port: int, workdir: str, sigterm_at: int = -1) -> None:
    from jaxdistill import build as build_lib
    from jaxdistill import cli

    if sigterm_at >= 0 and process_id == 1:  # preempt this process only
        original = build_lib.Built.data_factory

        def data_factory(self, start_step=0):
            for i, batch in enumerate(original(self, start_step)):
                if start_step == 0 and i == sigterm_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(2)  # let the notice reach the other process before going on
                yield batch

        build_lib.Built.data_factory = data_factory

    overrides = {
        **OVERRIDES,
        # FSDP over all 4 devices: parameters are split across the two processes.
        "mesh.fsdp": 4,
        "mesh.min_fsdp_size": 16,
        "distributed.coordinator_address": f"localhost:{port}",
        "distributed.num_processes": 2,
        "distributed.process_id": process_id,
    }
    argv = ["train", "--config", os.path.join(ROOT, CONFIG), "--workdir", workdir, "--quiet"]
    argv += [f"--config.{k}={v}" for k, v in overrides.items()]
    rc = cli.main(argv)
    info = {"rc": rc, "process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "devices": jax.device_count()}
    print("WORKER " + json.dumps(info), flush=True)


def reference(workdir: str, run_dirs: list[str]) -> None:
    from jaxdistill import config as config_lib
    from jaxdistill.build import build, load_run
    from jaxdistill.data.pipeline import BatchStream
    from jaxdistill.train.engine import Trainer

    config = config_lib.load(os.path.join(ROOT, CONFIG), [f"{k}={v}" for k, v in OVERRIDES.items()])
    built = build(config)
    shards = [BatchStream(built.source, config.batch_size, seed=config.seed, shard_index=i, shard_count=2) for i in range(2)]

    def global_batches(start_step=0):
        step = start_step
        while True:
            parts = [s[step] for s in shards]
            yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            step += 1

    result = Trainer(built.objective, built.frozen, config, workdir, global_batches, show_progress=False).train()
    ref = jax.tree.leaves(result.trainable)
    out = {"loss": result.last_metrics["loss"], "runs": {}}
    for run_dir in run_dirs:
        run = load_run(run_dir)
        got = jax.tree.leaves(run.trainable)
        assert len(got) == len(ref)
        diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in zip(ref, got))
        scale = max(float(np.max(np.abs(np.asarray(a)))) for a in ref)
        out["runs"][run_dir] = {"step": run.step, "max_abs_diff": diff, "max_abs": scale}
    print("REFERENCE " + json.dumps(out), flush=True)


if __name__ == "__main__":
    if mode == "worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else -1)
    else:
        reference(sys.argv[2], sys.argv[3:])
