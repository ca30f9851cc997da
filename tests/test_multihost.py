"""Multi-host training: two local processes joined by ``jax.distributed.initialize`` (CPU,
gloo collectives, 2 simulated devices each) train through ``jaxdistill train`` exactly like
one process fed the same global batches, stop together when one of them is preempted, and
distil the teacher they wrote with DMD2 like one process."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from jaxdistill import config as config_lib
from jaxdistill.build import build, load_run
from jaxdistill.data.pipeline import BatchStream
from jaxdistill.train.engine import Trainer

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_multihost_run.py")
ROOT = os.path.dirname(os.path.dirname(HELPER))
NUM_STEPS = 24
TEACHER_JOB = {
    "config": "configs/grid25/teacher.py:smoke",
    "overrides": {"train.num_steps": NUM_STEPS, "train.log_every": 12, "train.checkpoint_every": 12, "train.sample_every": 12, "train.num_plot_samples": 64},
}
DMD2_STEPS = 6


def _dmd2_job(teacher: str) -> dict:
    """DMD2 (generator, critic and GAN head) distilling the checkpointed teacher in ``teacher``."""
    return {
        "config": "configs/grid25/dmd2.py:smoke",
        "overrides": {
            "teacher.kind": "checkpoint", "teacher.workdir": teacher, "dmd.init_from_teacher": True, "dmd.critic_from_teacher": True,
            "dmd.critic_loop": "loop",  # the five critic updates compile once, not five times, in each of the three processes
            # 6 updates (30 critic updates), one checkpoint, no sample plots: the compiles of three processes dominate.
            "train.num_steps": DMD2_STEPS, "train.log_every": DMD2_STEPS, "train.checkpoint_every": DMD2_STEPS, "train.sample_every": 0,
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _tagged(stdout: str, tag: str) -> dict:
    lines = [l for l in stdout.splitlines() if l.startswith(tag + " ")]
    assert lines, f"no {tag} line in output:\n{stdout[-3000:]}"
    return json.loads(lines[-1][len(tag) + 1 :])


def _run_two_processes(workdir, job: dict, sigterm_at: int = -1, timeout: int = 400) -> list[tuple[dict, str]]:
    port = _free_port()
    env = {**os.environ, "MULTIHOST_JOB": json.dumps(job)}
    procs = [
        subprocess.Popen(
            [sys.executable, HELPER, str(i), str(port), str(workdir), str(sigterm_at)],
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


def reference(job: dict, workdir, run_dirs: list) -> dict:
    """One process on one device (this test's), ``job``'s config fed the same *global* batches as
    the two processes (the concatenation of the shards ``source[0::2]`` and ``source[1::2]``, in
    process order): its final loss and, per two-process run restored from its checkpoint, the
    step and the largest parameter difference to the reference (``max_abs_diff``, ``max_abs``)."""
    assert jax.device_count() == 1
    config = config_lib.load(os.path.join(ROOT, job["config"]), [f"{k}={v}" for k, v in job["overrides"].items()])
    built = build(config)
    shards = [BatchStream(built.source, config.batch_size, seed=config.seed, shard_index=i, shard_count=2) for i in range(2)]

    def global_batches(start_step=0):
        step = start_step
        while True:
            parts = [s[step] for s in shards]
            yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            step += 1

    result = Trainer(built.objective, built.frozen, config, str(workdir), global_batches, show_progress=False).train()
    ref = jax.tree.leaves(result.trainable)
    out = {"loss": result.last_metrics["loss"], "runs": {}}
    for run_dir in run_dirs:
        run = load_run(run_dir)
        got = jax.tree.leaves(run.trainable)
        assert len(got) == len(ref)
        diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in zip(ref, got))
        scale = max(float(np.max(np.abs(np.asarray(a)))) for a in ref)
        out["runs"][str(run_dir)] = {"step": run.step, "max_abs_diff": diff, "max_abs": scale}
    return out


def _cli_line(out: str, prefix: str) -> str:
    return [l for l in out.splitlines() if l.startswith(prefix)][-1]


def _check_two_processes_train_like_one_process_on_the_same_global_batches(workdir, resumed, ref) -> None:
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


def _check_preempting_one_process_stops_both_at_the_same_step(preempted, after_preemption) -> None:
    stops = []
    for info, out in preempted:
        assert info["rc"] == 0 and info["process_count"] == 2
        stops.append(int(_cli_line(out, "interrupted at step").split()[3].rstrip(";")))
    assert stops[0] == stops[1] and 3 < stops[0] < NUM_STEPS, stops
    assert str(stops[0]) in after_preemption


def _check_two_processes_distil_the_checkpointed_teacher_with_dmd2_like_one_process(workdir, ref) -> None:
    lines = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
    np.testing.assert_allclose(lines[-1]["loss"], ref["loss"], rtol=1e-4)
    run = ref["runs"][str(workdir)]
    assert run["step"] == DMD2_STEPS
    assert run["max_abs_diff"] <= 1e-4 * max(run["max_abs"], 1.0), run


def test_two_processes_stop_together_resume_and_distil_with_dmd2_like_one_process(tmp_path):
    """Two processes train the grid25 teacher, preempted (SIGTERM to process 1 only) then resumed
    to the end in the same workdir, like one process fed the same global batches; then DMD2
    (generator, critic and GAN head) distils that teacher, restored from its two-process checkpoint
    on each process, FSDP over both processes' devices: the same parameters as one process on one
    device. One test, so that pytest-xdist cannot run the teacher's training on two workers."""
    teacher = tmp_path / "run"
    # SIGTERM while batch 8 is read: the engine reads up to 3 batches ahead (prefetch), so at a step past 3
    preempted = _run_two_processes(teacher, TEACHER_JOB, sigterm_at=8)
    after_preemption = sorted(os.listdir(teacher / "checkpoints"), key=int)
    resumed = _run_two_processes(teacher, TEACHER_JOB)
    _check_preempting_one_process_stops_both_at_the_same_step(preempted, after_preemption)
    ref = reference(TEACHER_JOB, tmp_path / "ref", [teacher])
    _check_two_processes_train_like_one_process_on_the_same_global_batches(teacher, resumed, ref)

    job, student = _dmd2_job(str(teacher)), tmp_path / "dmd2"
    for i, (info, out) in enumerate(_run_two_processes(student, job)):
        assert info == {"rc": 0, "process_index": i, "process_count": 2, "local_devices": 2, "devices": 4}, out[-3000:]
    _check_two_processes_distil_the_checkpointed_teacher_with_dmd2_like_one_process(student, reference(job, tmp_path / "dmd2_ref", [student]))
