"""Helper of tests/test_multihost.py, run in subprocesses.

``PROCESS_ID PORT WORKDIR [SIGTERM_AT]``: one of two processes, each with 2 simulated
CPU devices, running ``jaxdistill train`` (the real CLI) with the ``distributed`` overrides;
with ``SIGTERM_AT`` the process sends itself SIGTERM while reading batch ``SIGTERM_AT``.
Prints ``WORKER {json}`` with its process index/count and the CLI's exit code.

The environment's ``MULTIHOST_JOB`` (JSON) names the ``config`` and its ``overrides`` (grid25
teacher training, or a DMD2 student of that checkpointed teacher). The one-process reference
(``reference`` in tests/test_multihost.py) runs in the test's own process, on its one device.
"""
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
# Appended to the inherited flags (conftest.py's stay in force; the last device count wins).
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"

import json  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = json.loads(os.environ["MULTIHOST_JOB"])


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
        **JOB["overrides"],
        # FSDP over all 4 devices: parameters are split across the two processes.
        "mesh.fsdp": 4,
        "mesh.min_fsdp_size": 16,
        "distributed.coordinator_address": f"localhost:{port}",
        "distributed.num_processes": 2,
        "distributed.process_id": process_id,
    }
    argv = ["train", "--config", os.path.join(ROOT, JOB["config"]), "--workdir", workdir, "--quiet"]
    argv += [f"--config.{k}={v}" for k, v in overrides.items()]
    rc = cli.main(argv)
    info = {"rc": rc, "process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "devices": jax.device_count()}
    print("WORKER " + json.dumps(info), flush=True)


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else -1)
