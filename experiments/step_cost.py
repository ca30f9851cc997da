"""Step cost of DMD2 (and KD, a one-network baseline) on the real-scale networks (issue 26 §5).

For EDM's DDPM++ at CIFAR-10 shape (32x32x3, ``edm_ddpmpp`` preset ``cifar10_cond``) and DiT-S/2
at 32x32x4 latents (``dit_port``), each objective is built through the library
(``jaxdistill.build.build`` on ``configs/cifar10/dmd2.py`` / ``cifar10.student("kd")`` with the
network swapped and a random-weight converted teacher written to a temporary folder), and the
script reports

* the engine's compiled train step (``Trainer.compile_step``: ``objective.step`` + ``keep_finite``,
  trainable states donated): median seconds per step after warm-up, and its compile time;
* every network pass the objective performs, each jitted alone at the step's batch shapes
  (forward, or forward + backward where the step differentiates through it), summed; the ratio
  step / sum (issue goal <= 1.15); the optimiser updates (Adam + EMA) are timed alone too;
* on 8 simulated host devices (a subprocess with ``--xla_force_host_platform_device_count=8``,
  mesh data 1 x fsdp 8 and data 2 x fsdp 4), the compiled step's ``memory_analysis()``
  (argument / output / temp bytes per device) and the trainable (parameter + optimiser + EMA)
  bytes per device against total / fsdp (goal <= 1.05 x), read from the state shardings for the
  published widths too (abstract shapes only).

On a CPU the timed networks are width-reduced (below, stated in
the output) and timings are medians of several calls after a warm-up call. Writes
``results/step_cost.json`` and ``results/step_cost.md``.

Usage: python experiments/step_cost.py [--quick] [--repeats 5] [--networks ddpmpp,dit_s2] [--parts timing,memory,memory-compiled]
       [--critic-loop unrolled|loop] [--out results/step_cost]; python experiments/step_cost.py --merge A.json B.json --out results/step_cost
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.benchmarks import cifar10, images
from jaxdistill.build import build
from jaxdistill.config import load_config_file
from jaxdistill.data.sources import ArraySource
from jaxdistill.models.registry import default_network_config
from jaxdistill.objectives.denoising import batch_labels, denoising_loss
from jaxdistill.train import mesh as mesh_lib
from jaxdistill.train.engine import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10
# The timed networks: the published architectures with fewer channels / blocks (CPU time);
# ``full`` is the published size, used for the abstract (shape-only) memory accounting.
NETWORKS = {
    "ddpmpp": dict(
        label="EDM DDPM++ (cifar10_cond), 32x32x3",
        event_shape=(32, 32, 3),
        timed=dict(name="edm_ddpmpp", preset="cifar10_cond", model_channels=32, num_classes=NUM_CLASSES),
        quick=dict(name="edm_ddpmpp", preset="cifar10_cond", model_channels=16, num_blocks=1, num_classes=NUM_CLASSES),
        full=dict(name="edm_ddpmpp", preset="cifar10_cond", num_classes=NUM_CLASSES),
    ),
    "dit_s2": dict(
        label="DiT-S/2, 32x32x4",
        event_shape=(32, 32, 4),
        timed=dict(name="dit_port", size="S/2", depth=4, num_classes=NUM_CLASSES),
        quick=dict(name="dit_port", size="S/2", depth=1, num_classes=NUM_CLASSES),
        full=dict(name="dit_port", size="S/2", num_classes=NUM_CLASSES),
    ),
}
METHODS = ("kd", "dmd2")
PARTS = ("timing", "memory", "memory-compiled")
SD15_SECTION = "## Stable Diffusion 1.5 at full size"  # written by experiments/sd15_memory.py, kept when this script rewrites the file


def method_config(method: str, network: dict, teacher_path: str, batch: int):
    """The run config: ``configs/cifar10/dmd2.py`` (the paper's settings) or the CIFAR-10 KD
    student, with ``network``, the converted teacher at ``teacher_path`` and batch ``batch``;
    DiT predicts eps of DDPM's process (its converted teacher's), DDPM++ is EDM-preconditioned."""
    if method == "dmd2":
        c = load_config_file(os.path.join(ROOT, "configs", "cifar10", "dmd2.py"))
    else:
        c = cifar10.student(method)
        c.kd.num_pairs, c.kd.teacher_nfe = 4 * batch, 3  # the pair set is built once, outside the step
    c.network = images.edm_port("edm_ddpmpp", "cifar10_cond") if network["name"] == "edm_ddpmpp" else default_network_config("dit_port")
    c.network.update(network)
    if network["name"] == "dit_port":
        c.prediction = "eps"
    c.teacher.path = teacher_path
    c.batch_size = batch
    c.train.num_steps = 1000
    return c


def write_teacher(folder: str, network: dict, event_shape: tuple) -> str:
    """A converted teacher of ``network`` with random weights in ``folder``; its path."""
    return images.write_smoke_teacher(os.path.join(folder, "teacher.npz"), network, event_shape)


def build_objective(method: str, network: dict, event_shape: tuple, batch: int, folder: str, critic_loop: str = "unrolled"):
    """(built, example batch) for ``method`` on random data of ``event_shape``."""
    rng = np.random.default_rng(0)
    source = ArraySource(rng.standard_normal((max(4 * batch, 16), *event_shape)).astype(np.float32) * 0.5, rng.integers(0, NUM_CLASSES, max(4 * batch, 16)))
    c = method_config(method, network, write_teacher(folder, network, event_shape), batch)
    if method == "dmd2":
        c.dmd.critic_loop = critic_loop
    built = build(c, source=source)
    example = next(iter(built.data_factory(0)))
    return built, example


def median_seconds(fn, args: tuple, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def engine_step(built, folder: str):
    """(trainer, compiled step, placed trainable, frozen, batch, compile seconds) as the engine runs it."""
    mesh = mesh_lib.make_mesh(built.config.mesh)
    trainer = Trainer(built.objective, built.frozen, built.config, os.path.join(folder, "run"), built.data_factory, mesh=mesh, show_progress=False, annotated=built.annotated)
    frozen, frozen_sh = trainer._place_frozen()
    batch = mesh_lib.global_batch(next(iter(built.data_factory(0))), mesh)
    trainable, state_sh, _ = trainer._init_trainable(batch, frozen, frozen_sh)
    batch_sh = jax.tree.map(lambda _: mesh_lib.batch_sharding(mesh), batch)
    step = trainer.compile_step(state_sh, frozen_sh, batch_sh)
    start = time.perf_counter()
    compiled = step.lower(trainable, frozen, batch, jnp.int32(0), jnp.float32(0)).compile()
    return trainer, compiled, trainable, frozen, batch, time.perf_counter() - start


def time_step(compiled, trainable, frozen, batch, repeats: int) -> float:
    """Median seconds of the donated step, feeding each call's states to the next."""
    skipped = jnp.float32(0)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        trainable, metrics = compiled(trainable, frozen, batch, jnp.int32(i), skipped)
        jax.block_until_ready((trainable, metrics))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def network_passes(obj, trainable: dict, frozen: dict, batch: dict) -> list[tuple[str, int, object, tuple]]:
    """(name, count per step, jitted fn, args): every network pass of one step of ``obj``, at its batch shapes."""
    x = batch["x"]
    n = x.shape[0]
    cond = batch_labels(batch, obj.num_classes)
    t = jnp.full((n,), obj.process.t_max * 0.5, jnp.float32)
    key = jax.random.key(0)

    def fwd_bwd(apply):
        """Forward + backward with respect to the first argument (a cotangent of ones)."""
        return jax.jit(jax.grad(lambda p, *a: jnp.sum(apply(p, *a))))

    if obj.name == "kd":
        student = trainable["student"].params
        return [("student forward + backward", 1, fwd_bwd(lambda p, x, t, c: obj.student.x0(p, x, t, c)), (student, x, t, cond))]
    gen = trainable["generator"].params
    nets = {k: trainable[k].params for k in ("critic", "head")}
    m = obj.max_critic_updates
    xm, tm = jnp.concatenate([x] * m), jnp.concatenate([t] * m)
    cm = None if cond is None else jnp.concatenate([cond] * m)
    both = lambda a: None if a is None else jnp.concatenate([a, a])
    head_to_input = lambda x, nets, t, c: obj.head_logits(nets, frozen, x, t, c)
    dsm = lambda p, x, t, c: denoising_loss(obj.critic, p, x, x, t, c, {"dropout": key})
    return [
        (f"generator forward, critic samples ({m} x batch)", 1, jax.jit(obj.generator_x0), (gen, xm, tm, cm)),
        ("generator forward + backward", 1, fwd_bwd(obj.generator_x0), (gen, x, t, cond)),
        ("teacher forward", 1, jax.jit(lambda x, t, c: obj.teacher_x0(frozen, x, t, c)), (x, t, cond)),
        ("critic forward (score difference)", 1, jax.jit(obj.critic.x0), (nets["critic"], x, t, cond)),
        ("critic features + head, forward + backward to the input (generator GAN term)", 1, fwd_bwd(head_to_input), (x, nets, t, cond)),
        ("critic DSM forward + backward (per critic update)", m, fwd_bwd(dsm), (nets["critic"], x, t, cond)),
        ("critic features + head on real + fake, forward + backward (per critic update)", m, fwd_bwd(lambda nets, x, t, c: obj.head_logits(nets, frozen, x, t, c)), (nets, both(x), both(t), both(cond))),
    ]


def optimiser_updates(obj, trainable: dict) -> list[tuple[str, int, object, tuple]]:
    """The step's optimiser updates (Adam, clipping, EMA), each on zero gradients, timed alone."""
    out = []
    for name, state in trainable.items():
        count = obj.max_critic_updates if name in ("critic", "head") else 1
        update = jax.jit(lambda s: s.apply_gradients(jax.tree.map(jnp.zeros_like, s.params), obj.ema_decay if s.ema is not None else None))
        out.append((f"{name} optimiser update", count, update, (state,)))
    return out


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(method: str, case: str, size: str, batch: int, repeats: int, critic_loop: str) -> dict:
    spec = NETWORKS[case]
    with tempfile.TemporaryDirectory() as folder:
        built, _ = build_objective(method, spec[size], spec["event_shape"], batch, folder, critic_loop)
        obj = built.objective
        log(f"{case} {method}: built; compiling the step")
        trainer, compiled, trainable, frozen, batch_arr, compile_s = engine_step(built, folder)
        log(f"{case} {method}: compiled in {compile_s:.1f} s; timing the passes")
        passes = [(name, count, median_seconds(fn, args, repeats)) for name, count, fn, args in network_passes(obj, trainable, frozen, batch_arr)]
        optim = [(name, count, median_seconds(fn, args, repeats)) for name, count, fn, args in optimiser_updates(obj, trainable)]
        log(f"{case} {method}: passes timed; timing the step")
        step_s = time_step(compiled, trainable, frozen, batch_arr, repeats)
        trainer.checkpointer.close()
    passes_s = sum(c * s for _, c, s in passes)
    optim_s = sum(c * s for _, c, s in optim)
    return {
        "method": method, "network": case, "size": size, "config": spec[size], "batch": batch,
        "critic_updates": getattr(obj, "max_critic_updates", 0), "critic_loop": critic_loop if method == "dmd2" else None,
        "params": int(sum(x.size for x in jax.tree.leaves(trainable[next(iter(trainable))].params))),
        "step_s": step_s, "compile_s": compile_s,
        "passes": [{"pass": n, "count": c, "seconds": s} for n, c, s in passes],
        "optimiser": [{"update": n, "count": c, "seconds": s} for n, c, s in optim],
        "passes_s": passes_s, "optimiser_s": optim_s,
        "ratio": step_s / passes_s, "ratio_with_optimiser": step_s / (passes_s + optim_s),
    }


# ------------------------------------------------------------------ FSDP memory (8 simulated devices)
def tree_bytes(tree) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def per_device_bytes(abstract, shardings) -> int:
    """The largest device's bytes of ``abstract`` under ``shardings`` (shard shapes)."""
    return int(sum(np.prod(s.shard_shape(a.shape), dtype=np.int64) * np.dtype(a.dtype).itemsize for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings))))


def fsdp_memory(method: str, case: str, size: str, data: int, fsdp: int, compile_step: bool) -> dict:
    """Per-device bytes of the step's states on a data x fsdp mesh of the 8 simulated devices;
    with ``compile_step`` also the compiled step's ``memory_analysis()`` (critic_loop="loop", as on accelerators)."""
    spec = NETWORKS[case]
    with tempfile.TemporaryDirectory() as folder:
        built, _ = build_objective(method, spec[size], spec["event_shape"], 2 * len(jax.devices()), folder, critic_loop="loop")
        built.config.mesh.data, built.config.mesh.fsdp = data, fsdp
        mesh = mesh_lib.make_mesh(built.config.mesh)
        min_size = int(built.config.mesh.min_fsdp_size)
        example = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), next(iter(built.data_factory(0))))
        frozen = built.objective.prepare(built.frozen, jax.random.key(0))
        abstract = jax.eval_shape(built.objective.init, jax.random.key(0), example, frozen)
        rules = dict(min_fsdp_size=min_size, annotated=built.annotated, logical_axis_rules=mesh_lib.logical_rules(built.config.mesh))
        state_sh = mesh_lib.state_shardings(abstract, mesh, **rules)
        frozen_sh = mesh_lib.state_shardings(frozen, mesh, **rules)
        total, per_device = tree_bytes(abstract), per_device_bytes(abstract, state_sh)
        out = {"method": method, "network": case, "size": size, "mesh": f"data {data} x fsdp {fsdp}", "trainable_bytes": total,
               "trainable_bytes_per_device": per_device, "trainable_ratio": per_device / (total / fsdp),
               "frozen_bytes": tree_bytes(frozen), "frozen_bytes_per_device": per_device_bytes(frozen, frozen_sh)}
        if compile_step:
            trainer = Trainer(built.objective, built.frozen, built.config, os.path.join(folder, "run"), built.data_factory, mesh=mesh, show_progress=False, annotated=built.annotated)
            batch_sh = jax.tree.map(lambda _: mesh_lib.batch_sharding(mesh), example)
            place = lambda tree, sh: jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, sh)
            start = time.perf_counter()
            compiled = trainer.compile_step(state_sh, frozen_sh, batch_sh).lower(
                place(abstract, state_sh), place(frozen, frozen_sh), place(example, batch_sh), jnp.int32(0), jnp.float32(0)
            ).compile()
            trainer.checkpointer.close()
            mem = compiled.memory_analysis()
            hlo = compiled.as_text()
            batch_bytes = per_device_bytes(example, batch_sh)
            out.update(
                compile_s=time.perf_counter() - start, argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
                temp_bytes=int(mem.temp_size_in_bytes), alias_bytes=int(mem.alias_size_in_bytes),
                # arguments = trainable + frozen + batch (+ step scalars): the trainable part per device
                trainable_bytes_from_analysis=int(mem.argument_size_in_bytes) - out["frozen_bytes_per_device"] - batch_bytes - 8,
                all_gathers=hlo.count(" all-gather("), reduce_scatters=hlo.count(" reduce-scatter("), all_reduces=hlo.count(" all-reduce("),
            )
            out["trainable_ratio_from_analysis"] = out["trainable_bytes_from_analysis"] / (total / fsdp)
        return out


def run_fsdp_worker(args) -> None:
    print(json.dumps(fsdp_memory(args.method, args.network, args.size, args.data, args.fsdp, args.compile)))


def fsdp_in_subprocess(method: str, case: str, size: str, data: int, fsdp: int, compile_step: bool) -> dict:
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip(), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, os.path.abspath(__file__), "--fsdp-worker", "--method", method, "--network", case, "--size", size, "--data", str(data), "--fsdp", str(fsdp)]
    cmd += ["--compile"] if compile_step else []
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"FSDP worker failed ({' '.join(cmd[2:])}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ report
def mib(b: float) -> str:
    return f"{b / 2**20:.2f}"


def write_markdown(path: str, result: dict) -> None:
    env = result["environment"]
    lines = [
        "# Step cost: the compiled step against its network passes, and FSDP memory",
        "",
        f"Written by `python experiments/step_cost.py{' --quick' if result['quick'] else ''}` (issue 26 §5); {env['date']}, jax {env['jax']}, "
        f"{env['device']} ({env['cores']} cores, 1-minute load average {env.get('load_average_1min', float('nan')):.1f} at the start), {result['repeats']} timed calls after one warm-up, medians."
        + (f" Joined with `--merge` from runs of parts of it (`--networks`, `--parts`, `--critic-loop {result['critic_loop']}`): {', '.join(result['merged_from'])}." if result.get("merged_from") else ""),
        "",
        "Objectives built through `jaxdistill.build.build`: DMD2 from `configs/cifar10/dmd2.py` (5 critic updates per generator",
        f"update, GAN head, one-step generator; `critic_loop=\"{result['critic_loop']}\"`), KD from `cifar10.student(\"kd\")`",
        "(a one-network baseline). Teachers: random weights in the converted format. The *step* is the engine's compiled step",
        "(`Trainer.compile_step`: `objective.step` + `keep_finite`, states donated). *Passes* are the step's network passes,",
        "each jitted alone at the same shapes (a forward, or forward + backward where the step differentiates through it),",
        "times their count per step. Optimiser updates (Adam, clipping, EMA) are not network passes; they are timed alone too.",
        "",
        "## Step time against its network passes (1 device)",
        "",
        "| network (timed size) | method | batch | params | step s | passes s | step / passes (goal <= 1.15) | optimiser s | step / (passes + optimiser) | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["timing"]:
        lines.append(
            f"| {r['network']} `{json.dumps(r['config'])}` | {r['method']} | {r['batch']} | {r['params'] / 1e6:.2f}M | {r['step_s']:.3f} | {r['passes_s']:.3f} | "
            f"**{r['ratio']:.2f}** | {r['optimiser_s']:.3f} | {r['ratio_with_optimiser']:.2f} | {r['compile_s']:.1f} |"
        )
    lines += ["", "Passes of each step (seconds of one call x count):", ""]
    for r in result["timing"]:
        lines.append(f"- {r['network']} {r['method']}: " + "; ".join(f"{p['pass']} {p['seconds']:.4f} x {p['count']}" for p in r["passes"]))
    lines += [
        "",
        "## Per-device memory under FSDP (8 simulated host devices)",
        "",
        "Trainable = parameters + optimiser state + EMA of every trained network; per device from the state shardings",
        "(`train.mesh.state_shardings`, the engine's rules, `min_fsdp_size` 1024), and, where the step was compiled",
        "(`critic_loop=\"loop\"`, as on accelerators), from its `memory_analysis()`: argument bytes minus the frozen teacher's and",
        "the batch's per-device bytes. Goal: trainable per device <= 1.05 x total / fsdp.",
        "",
        "| network (size) | method | mesh | trainable total MiB | per device MiB | / (total / fsdp) | from memory_analysis | argument MiB | output MiB | temp MiB | all-gather / reduce-scatter / all-reduce | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["fsdp"]:
        compiled = "argument_bytes" in r
        lines.append(
            f"| {r['network']} ({r['size']}) | {r['method']} | {r['mesh']} | {mib(r['trainable_bytes'])} | {mib(r['trainable_bytes_per_device'])} | **{r['trainable_ratio']:.3f}** | "
            + (f"{r['trainable_ratio_from_analysis']:.3f} | {mib(r['argument_bytes'])} | {mib(r['output_bytes'])} | {mib(r['temp_bytes'])} | "
               f"{r['all_gathers']} / {r['reduce_scatters']} / {r['all_reduces']} | {r['compile_s']:.1f} |" if compiled else "- | - | - | - | - | - |")
        )
    lines += ["", "## Reading", ""]
    for r in result["timing"]:
        residual = r["step_s"] - r["passes_s"] - r["optimiser_s"]
        verdict = "meets" if r["ratio"] <= 1.15 else "misses"
        lines.append(
            f"- {r['network']} {r['method']}: step / passes {r['ratio']:.2f} {verdict} the goal 1.15; the optimiser updates are "
            f"{r['optimiser_s'] / r['step_s']:.0%} of the step, the rest of the step outside passes and optimiser {residual:+.3f} s ({residual / r['step_s']:+.0%})."
        )
    for r in result["fsdp"]:
        verdict = "meets" if r["trainable_ratio"] <= 1.05 else "misses"
        lines.append(f"- {r['network']} ({r['size']}) on {r['mesh']}: trainable bytes per device {r['trainable_ratio']:.3f} x total / fsdp, {verdict} the goal 1.05.")
    lines += [
        "",
        "Caveats: CPU timings on a few cores are noisy, the more so the higher the load average (in the JSON of each merged run);",
        "the networks are width-reduced, so fixed per-call costs and the elementwise optimiser work weigh more than at the",
        "published sizes; with `critic_loop=\"loop\"` the critic updates run inside `lax.fori_loop`, where XLA:CPU runs",
        "convolution gradients slower than outside control flow (`experiments/critic_phase_timing.py`), which inflates DDPM++'s",
        "DMD2 step on CPU only. Rerun on an accelerator (`python experiments/step_cost.py`, default sizes) for the numbers the goals are about.",
    ]
    kept = ""  # experiments/sd15_memory.py's section, the file's last, is its own
    if os.path.isfile(path):
        with open(path) as f:
            old = f.read()
        if SD15_SECTION in old:
            kept = "\n" + SD15_SECTION + old.split(SD15_SECTION, 1)[1]
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n" + kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller networks, batch and repeats (a smoke run of the script)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement after a warm-up (default 5, quick 2)")
    parser.add_argument("--batch", type=int, default=None, help="timed batch (default 4, quick 2)")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "step_cost"), help="output path without extension (.json and .md are written)")
    parser.add_argument("--critic-loop", default="unrolled", choices=("unrolled", "loop"), help="DMD2's critic_loop in the timed step (unrolled: the CPU default)")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated subset of " + ", ".join(NETWORKS))
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS) + " (memory: from the shardings; memory-compiled: the compiled FSDP step's memory_analysis)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="write --out from the results of earlier runs (e.g. one per --networks) instead of measuring")
    parser.add_argument("--fsdp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="dmd2", help=argparse.SUPPRESS)
    parser.add_argument("--network", default="ddpmpp", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="timed", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fsdp", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fsdp_worker:
        return run_fsdp_worker(args)
    if args.merge:
        return write_results(args.out, merge_results(args.merge))
    size = "quick" if args.quick else "timed"
    repeats = args.repeats or (2 if args.quick else 5)
    batch = args.batch or (2 if args.quick else 4)
    started = time.perf_counter()
    result = {
        "quick": args.quick, "repeats": repeats, "critic_loop": args.critic_loop,
        "environment": {"jax": jax.__version__, "device": f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()})", "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "timing": [], "fsdp": [], "seconds": 0.0,
    }
    cases, parts = args.networks.split(","), args.parts.split(",")
    if set(parts) - set(PARTS) or set(cases) - set(NETWORKS):
        raise SystemExit(f"--parts takes {PARTS}, --networks {tuple(NETWORKS)}; got {args.parts!r}, {args.networks!r}")
    for case in cases if "timing" in parts else ():  # results are rewritten after every row, so an interrupted run keeps what it measured
        for method in METHODS:
            row = measure(method, case, size, batch, repeats, args.critic_loop)
            result["timing"].append(row)
            result["seconds"] = time.perf_counter() - started
            write_results(args.out, result)
            print(f"{case} {method}: step {row['step_s']:.3f} s, passes {row['passes_s']:.3f} s, ratio {row['ratio']:.2f}", flush=True)
    for case in cases:  # the published size from the shardings alone, then the timed size's step compiled on the mesh
        for data, n, compiled, net_size in ((1, 8, False, "full"), (2, 4, False, "full"), (2, 4, True, size)):
            if ("memory-compiled" if compiled else "memory") not in parts:
                continue
            row = fsdp_in_subprocess("dmd2", case, net_size, data, n, compile_step=compiled)
            result["fsdp"].append(row)
            result["seconds"] = time.perf_counter() - started
            write_results(args.out, result)
            print(f"{case} ({net_size}) dmd2 {row['mesh']}: trainable/device {row['trainable_ratio']:.3f} x total/fsdp", flush=True)
    write_results(args.out, result)


def merge_results(paths: list[str]) -> dict:
    """One result of several runs' JSON files (their timing and FSDP rows in order; the first's settings)."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    settings = {k: runs[0][k] for k in ("quick", "repeats", "critic_loop", "environment")}
    settings["environment"] = next((r["environment"] for r in runs if r["timing"]), settings["environment"])
    if any({k: r[k] for k in ("quick", "repeats", "critic_loop")} != {k: settings[k] for k in ("quick", "repeats", "critic_loop")} for r in runs):
        raise SystemExit(f"--merge: the runs {paths} were made with different --quick / --repeats / --critic-loop")
    fsdp = {}  # one row per (network, size, mesh, compiled or not): the first run's
    for row in (m for r in runs for m in r["fsdp"]):
        fsdp.setdefault((row["method"], row["network"], row["size"], row["mesh"], "argument_bytes" in row), row)
    return {**settings, "timing": [t for r in runs for t in r["timing"]], "fsdp": list(fsdp.values()),
            "seconds": sum(r["seconds"] for r in runs), "merged_from": [os.path.basename(p) for p in paths]}


def write_results(out: str, result: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    write_markdown(out + ".md", result)
    print(f"wrote {out}.json and .md ({result['seconds']:.0f} s of measuring)")


if __name__ == "__main__":
    main()
