"""Memory of the sCM step (a jax.jvp through the network, then the student's forward and backward) against a plain
denoising step, with and without rematerialisation (issue 28 §1).

For EDM's DDPM++ (``edm_ddpmpp``; ``--size published``: preset ``cifar10_uncond`` at 32x32x3, 55.7M parameters;
``--size small``, the default: the smoke presets' one-level DDPM++ without attention at 32 channels, at 8x8x3), each
variant is built through the library (``jaxdistill.build.build`` on ``configs/cifar10/{scd,sct}.py``, and the same
config switched to ``method="teacher"`` for the denoising step; a random-weight converted teacher for sCD), and the
engine's train step (``Trainer.compile_step``: ``objective.step`` + ``keep_finite``, trainable states donated) is
lowered from abstract shapes and compiled, never run. ``network.remat`` wraps every residual and attention block in
``flax.linen.remat`` (``jaxdistill.models.remat``). Reported: ``compiled.memory_analysis()``'s argument, output,
alias and temp bytes, on one CPU device. XLA:CPU's temp size is its buffer assignment's, a compile-time estimate;
run the script on the accelerator you train on for its numbers.

The published size takes many minutes per compile on a loaded 2-core CPU; the small one a few.

Usage: python experiments/scm_memory.py [--size small|published] [--batch 32] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.benchmarks import images, with_method
from jaxdistill.build import build
from jaxdistill.config import load_config_file
from jaxdistill.data.sources import ArraySource
from jaxdistill.train.engine import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {
    "published": ({"name": "edm_ddpmpp", "preset": "cifar10_uncond", "num_classes": 0}, (32, 32, 3)),
    "small": (
        {"name": "edm_ddpmpp", "preset": None, "num_classes": 0, "model_channels": 32, "channel_mult": (1,), "channel_mult_emb": 1, "num_blocks": 1, "attn_resolutions": ()},
        (8, 8, 3),
    ),
}
VARIANTS = ("teacher", "sct", "scd")  # the denoising step, then sCT (JVP) and sCD (JVP + the teacher's velocity)


def variant_config(method: str, remat: bool, batch: int, network: dict, teacher_path: str):
    """configs/cifar10/<method>.py (sct for the denoising step, switched to method "teacher") at ``batch``,
    with ``network``, its blocks rematerialised or not."""
    c = load_config_file(os.path.join(ROOT, "configs", "cifar10", f"{'sct' if method == 'teacher' else method}.py"))
    if method == "teacher":
        c = with_method(c, "teacher")
        c.process = c.process.copy_and_resolve_references()
        c.process.name = "edm"
        del c.process["sigma_data"]
    else:
        c.scm.init_from_teacher = False  # the weights do not change the memory
    c.network.update(network)
    c.network.remat = remat
    c.teacher.path = teacher_path
    c.batch_size = batch
    return c


def measure(method: str, remat: bool, batch: int, size: str, folder: str, teacher_path: str) -> dict:
    network, event_shape = SIZES[size]
    config = variant_config(method, remat, batch, network, teacher_path)
    rng = np.random.default_rng(0)
    source = ArraySource(rng.standard_normal((2 * batch, *event_shape)).astype(np.float32) * 0.5)
    built = build(config, source=source)
    example = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), source.get_batch(np.arange(batch)))
    frozen = jax.eval_shape(built.objective.prepare, built.frozen, jax.random.key(0))
    abstract = jax.eval_shape(built.objective.init, jax.random.key(0), example, frozen)
    trainer = Trainer(built.objective, built.frozen, built.config, os.path.join(folder, f"{method}_{remat}"), built.data_factory, show_progress=False)
    state_sh, frozen_sh = trainer._shardings(abstract), trainer._shardings(frozen)
    batch_sh = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), example)
    started = time.perf_counter()
    compiled = trainer.compile_step(state_sh, frozen_sh, batch_sh).lower(abstract, frozen, example, jnp.int32(0), jnp.float32(0)).compile()
    compile_s = time.perf_counter() - started
    trainer.checkpointer.close()
    mem = compiled.memory_analysis()
    params = int(sum(x.size for x in jax.tree.leaves(abstract["student" if method != "teacher" else "model"].params)))
    return {
        "method": method, "remat": remat, "batch": batch, "size": size, "event_shape": list(event_shape), "student_params": params,
        "argument_bytes": int(mem.argument_size_in_bytes), "output_bytes": int(mem.output_size_in_bytes),
        "alias_bytes": int(mem.alias_size_in_bytes), "temp_bytes": int(mem.temp_size_in_bytes),
        "compile_s": compile_s, "load_average_1min": os.getloadavg()[0],
    }


def table(rows: list[dict]) -> str:
    """Markdown: per variant, MiB of arguments, temporaries and their sum, and temp against the plain step's."""
    base = {r["remat"]: r["temp_bytes"] for r in rows if r["method"] == "teacher"}
    mb = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    lines = ["| step | remat | arguments MiB | temp MiB | arguments + temp MiB | temp / denoising step's (same remat) |", "|---|---|---|---|---|---|"]
    for r in rows:
        name = {"teacher": "denoising (EDM)", "sct": "sCT (JVP)", "scd": "sCD (JVP + teacher)"}[r["method"]]
        ratio = r["temp_bytes"] / base[r["remat"]] if base.get(r["remat"]) else float("nan")
        lines.append(f"| {name} | {'yes' if r['remat'] else 'no'} | {mb(r['argument_bytes'])} | {mb(r['temp_bytes'])} | {mb(r['argument_bytes'] + r['temp_bytes'])} | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    faulthandler.dump_traceback_later(300, repeat=True)  # where a long compile is, every 5 minutes
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        network, event_shape = SIZES[args.size]
        teacher_path = images.write_smoke_teacher(os.path.join(folder, "teacher.npz"), {**images.edm_port("edm_ddpmpp", "").to_dict(), **network}, event_shape)
        for remat in (False, True):
            for method in VARIANTS:
                rows.append(measure(method, remat, args.batch, args.size, folder, teacher_path))
                print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "jax": jax.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
