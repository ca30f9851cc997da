"""Multi-host training: two local processes joined by ``jax.distributed.initialize`` (CPU,
gloo collectives, 2 simulated devices each) train through ``jaxdistill train`` exactly like
one process fed the same global batches, and stop together when one of them is preempted."""
import json
import os
import socket
import subprocess
import sys
from typing import Optional

import numpy as np
import pytest

from jaxdistill.cli import main

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_multihost_run.py")
NUM_STEPS = 24  # _multihost_run.NUM_STEPS
DMD2_STEPS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _tagged(stdout: str, tag: str) -> dict:
    lines = [l for l in stdout.splitlines() if l.startswith(tag + " ")]
    assert lines, f"no {tag} line in output:\n{stdout[-3000:]}"
    return json.loads(lines[-1][len(tag) + 1 :])


def _run_two_processes(workdir, sigterm_at: int = -1, timeout: int = 120, env: Optional[dict] = None) -> list[tuple[dict, str]]:
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, HELPER, "worker", str(i), str(port), str(workdir), str(sigterm_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    return [(_tagged(out, "WORKER"), out) for out in outs]


def _cli_line(out: str, prefix: str) -> str:
    return [l for l in out.splitlines() if l.startswith(prefix)][-1]


@pytest.fixture
def runs(tmp_path_factory):
    """Two processes preempted (SIGTERM to process 1 only) then resumed to the end in the
    same workdir, and the one-process reference fed the same global batches."""
    root = tmp_path_factory.mktemp("multihost")
    workdir = root / "run"
    # SIGTERM while batch 8 is read: the engine reads up to 3 batches ahead (prefetch), so at a step past 3
    preempted = _run_two_processes(workdir, sigterm_at=8)
    after_preemption = sorted(os.listdir(workdir / "checkpoints"), key=int)
    resumed = _run_two_processes(workdir)
    out = subprocess.run(
        [sys.executable, HELPER, "reference", str(root / "ref"), str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    reference = _tagged(out.stdout, "REFERENCE")
    return workdir, preempted, after_preemption, resumed, reference


def _check_two_processes_train_like_one_process_on_the_same_global_batches(runs) -> None:
    workdir, _, _, resumed, ref = runs
    for i, (info, out) in enumerate(resumed):
        assert info == {"rc": 0, "process_index": i, "process_count": 2, "local_devices": 2, "devices": 4}
        assert f"finished at step {NUM_STEPS}" in out
    # Both processes see the same (replicated) metrics.
    metrics = [_cli_line(out, "last metrics:").split("steps_per_sec")[0] for _, out in resumed]
    assert metrics[0] == metrics[1]
    # One checkpoint per step, written jointly (each process its own shards); metrics and
    # plots by process 0 only.
    ckpt = workdir / "checkpoints"
    assert sorted(os.listdir(ckpt), key=int) == ["12", "24"]
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(ckpt / "24" / "model"))
    lines = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
    assert [l["step"] for l in lines] == [12, NUM_STEPS]
    assert sorted(os.listdir(workdir / "samples")) == ["step_0000012.png", "step_0000024.png"]
    # Same loss and parameters as one process on one device fed the same global batches.
    assert np.isfinite(lines[-1]["loss"])
    np.testing.assert_allclose(lines[-1]["loss"], ref["loss"], rtol=1e-4)
    run = ref["runs"][str(workdir)]
    assert run["step"] == NUM_STEPS
    assert run["max_abs_diff"] <= 1e-4 * max(run["max_abs"], 1.0), run


def _check_preempting_one_process_stops_both_at_the_same_step(runs) -> None:
    _, preempted, after_preemption, _, _ = runs
    stops = []
    for info, out in preempted:
        assert info["rc"] == 0 and info["process_count"] == 2
        stops.append(int(_cli_line(out, "interrupted at step").split()[3].rstrip(";")))
    assert stops[0] == stops[1] and 3 < stops[0] < NUM_STEPS, stops
    assert str(stops[0]) in after_preemption


def test_preempted_two_process_run_stops_together_and_resumes_like_one_process(runs):
    """One test for both checks: under pytest-xdist two tests could land on two workers and
    run the ~70 s fixture twice."""
    _check_preempting_one_process_stops_both_at_the_same_step(runs)
    _check_two_processes_train_like_one_process_on_the_same_global_batches(runs)


def test_two_processes_distil_a_checkpointed_teacher_with_dmd2_like_one_process(tmp_path):
    """DMD2 (generator, critic and GAN head) distilling a trained teacher restored from its
    checkpoint on each process, FSDP over both processes' devices: the same parameters as one
    process on one device fed the same global batches."""
    teacher = tmp_path / "teacher"
    # The teacher trains in this process (one device, like the reference): a subprocess would only add a JAX start-up.
    config = os.path.join(os.path.dirname(os.path.dirname(HELPER)), "configs", "grid25", "teacher.py:smoke")
    assert main(["train", "--config", config, "--workdir", str(teacher), "--quiet", "--config.train.num_steps=10"]) == 0
    job = {
        "config": "configs/grid25/dmd2.py:smoke",
        "overrides": {
            "teacher.kind": "checkpoint", "teacher.workdir": str(teacher), "dmd.init_from_teacher": True, "dmd.critic_from_teacher": True,
            "dmd.critic_loop": "loop",  # the five critic updates compile once, not five times, in each of the three processes
            # 6 updates (30 critic updates), one checkpoint, no sample plots: the compiles of three processes dominate.
            "train.num_steps": DMD2_STEPS, "train.log_every": DMD2_STEPS, "train.checkpoint_every": DMD2_STEPS, "train.sample_every": 0,
        },
    }
    env = {**os.environ, "MULTIHOST_JOB": json.dumps(job)}
    workdir = tmp_path / "dmd2"
    for i, (info, out) in enumerate(_run_two_processes(workdir, timeout=400, env=env)):
        assert info == {"rc": 0, "process_index": i, "process_count": 2, "local_devices": 2, "devices": 4}, out[-3000:]
    out = subprocess.run([sys.executable, HELPER, "reference", str(tmp_path / "ref"), str(workdir)], capture_output=True, text=True, timeout=400, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    ref = _tagged(out.stdout, "REFERENCE")
    lines = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
    np.testing.assert_allclose(lines[-1]["loss"], ref["loss"], rtol=1e-4)
    run = ref["runs"][str(workdir)]
    assert run["step"] == DMD2_STEPS
    assert run["max_abs_diff"] <= 1e-4 * max(run["max_abs"], 1.0), run
