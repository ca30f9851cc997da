"""Per-device memory of distillation steps at true Stable Diffusion 1.5 size under FSDP (issue 27 §7).

Each variant's step is the engine's (``Trainer.compile_step`` on the objective ``jaxdistill.build.build``
makes of a run config, with the state shardings the engine computes), compiled without running
(``jax.jit(step).lower(...).compile()``) on 8 simulated host devices (a subprocess with
``--xla_force_host_platform_device_count=8``, mesh data 1 x fsdp 8) from abstract shapes: the
SD 1.5 UNet (runwayml/stable-diffusion-v1-5 ``unet/config.json``, 859.5M parameters) comes from
``build(abstract_teacher=True)`` (``models.hf.abstract_sd_unet``: a folder of its JSON files, no weights), the batch is 512x512 images' 64x64x4
latents and CLIP text embeddings [B, 77, 768] from the prompt cache (the text encoder and VAE are
not in the step). Reported per device: ``compiled.memory_analysis()``'s argument, output (aliased
into the donated arguments), temp and generated-code bytes, and the states' bytes (trainable:
parameters + Adam moments + EMA of every trained network; frozen: the teacher) against total / 8.

Variants (``method:precision:batch:remat``): the method (LCM-LoRA from ``configs/sd15/lcm_lora.py``; DMD2 from
``configs/sd15/dmd2.py``, full generator and critic, its critic updates in a ``lax.fori_loop``),
``precision`` float32 or the bf16 policy (``precision.compute`` and ``precision.teacher_params``
bfloat16, docs/precision.md), the per-device batch, and ``network.remat`` (the UNet's blocks
rematerialised, ``models.hf.unet``) or not.

Each variant runs alone (one compile of an 860M-parameter step takes minutes on a CPU) and is
cached in ``results/sd15_memory.json``; its section of ``results/step_cost.md`` is regenerated from the JSON.

Usage: python experiments/sd15_memory.py [--variants lcm_lora:float32:1,...] [--redo]
       python experiments/sd15_memory.py --report   (rewrite the section of results/step_cost.md from the JSON)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_PATH = os.path.join(ROOT, "results", "sd15_memory.json")
MD_PATH = os.path.join(ROOT, "results", "step_cost.md")  # this script's section, the file's last (experiments/step_cost.py keeps it)
SECTION = "## Stable Diffusion 1.5 at full size"
DEVICES = 8
GIB = 2**30

# runwayml/stable-diffusion-v1-5 unet/config.json and scheduler/scheduler_config.json (the fields diffusers reads)
SD15_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
}
LATENT_SHAPE, TEXT_SHAPE = (64, 64, 4), (77, 768)
CONFIGS = {"lcm_lora": "configs/sd15/lcm_lora.py", "dmd2": "configs/sd15/dmd2.py"}
PRECISIONS = ("float32", "bfloat16")
REMAT = ("noremat", "remat")
DEFAULT_VARIANTS = ("lcm_lora:float32:1:noremat", "dmd2:bfloat16:1:remat", "lcm_lora:bfloat16:1:noremat", "lcm_lora:bfloat16:1:remat", "dmd2:float32:1:noremat")


class ZeroTextSource:
    """``size`` records shaped like the prompt cache's at 512x512 (``data.t2i_cache.T2ICacheSource``):
    zero latents [64, 64, 4] and text embeddings [77, 768] (only shapes matter: nothing is run)."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        batch = self.get_batch([index])
        return {"x": batch["x"][0], "label": batch["label"][0], "cond": {k: v[0] for k, v in batch["cond"].items()}}

    def get_batch(self, indices) -> dict:
        import numpy as np

        n = len(indices)
        text = np.zeros((n, *TEXT_SHAPE), np.float32)
        return {"x": np.zeros((n, *LATENT_SHAPE), np.float32), "label": np.full(n, -1, np.int32), "cond": {"embeds": text, "negative_embeds": text}}


def tree_bytes(tree) -> int:
    import jax
    import numpy as np

    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def per_device_bytes(abstract, shardings) -> int:
    """The largest device's bytes of ``abstract`` under ``shardings`` (shard shapes)."""
    import jax
    import numpy as np

    return int(sum(np.prod(s.shard_shape(a.shape), dtype=np.int64) * np.dtype(a.dtype).itemsize for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings))))


def write_config_folder(path: str) -> str:
    """An SD 1.5 folder of JSON files only (UNet and scheduler configs, the tokenizer's length): what
    ``build(abstract_teacher=True)`` reads."""
    for sub, name, content in (("unet", "config.json", SD15_UNET), ("scheduler", "scheduler_config.json", SD15_SCHEDULER), ("tokenizer", "tokenizer_config.json", {"model_max_length": TEXT_SHAPE[0]})):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
        with open(os.path.join(path, sub, name), "w") as f:
            json.dump(content, f)
    return path


def variant_config(method: str, precision: str, batch_per_device: int, remat: bool, folder: str):
    """The run config of ``method`` on the SD 1.5 config folder ``folder``, with the bf16 policy or not, global batch
    8 x ``batch_per_device``, mesh fsdp 8, the UNet's blocks rematerialised or not; DMD2's critic updates in a
    ``lax.fori_loop`` (``critic_loop="loop"``, as on accelerators)."""
    from jaxdistill.config import load_config_file

    c = load_config_file(os.path.join(ROOT, CONFIGS[method]))
    c.teacher.path = folder
    if method == "dmd2":
        c.dmd.critic_loop = "loop"
    c.precision.compute = c.precision.teacher_params = precision
    c.batch_size = DEVICES * batch_per_device
    c.mesh.data, c.mesh.fsdp = 1, DEVICES
    c.network.remat = remat
    return c


def measure(method: str, precision: str, batch_per_device: int, remat: bool) -> dict:
    """Compile the variant's step on the 8 simulated devices; its memory analysis per device."""
    import jax
    import jax.numpy as jnp

    from jaxdistill.build import build
    from jaxdistill.train import mesh as mesh_lib
    from jaxdistill.train.engine import Trainer

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        config = variant_config(method, precision, batch_per_device, remat, write_config_folder(os.path.join(folder, "sd15")))
        built = build(config, source=ZeroTextSource(config.batch_size), abstract_teacher=True)
        mesh = mesh_lib.make_mesh(built.config.mesh)
        example = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), next(iter(built.data_factory(0))))
        frozen = jax.eval_shape(built.objective.prepare, built.frozen, jax.random.key(0))
        abstract = jax.eval_shape(built.objective.init, jax.random.key(0), example, frozen)
        trainer = Trainer(built.objective, built.frozen, built.config, os.path.join(folder, "run"), built.data_factory, mesh=mesh, show_progress=False, annotated=built.annotated)
        state_sh, frozen_sh = trainer._shardings(abstract), trainer._shardings(frozen)
        batch_sh = jax.tree.map(lambda _: mesh_lib.batch_sharding(mesh), example)
        place = lambda tree, sh: jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, sh)  # noqa: E731
        lowered = trainer.compile_step(state_sh, frozen_sh, batch_sh).lower(place(abstract, state_sh), place(frozen, frozen_sh), place(example, batch_sh), jnp.int32(0), jnp.float32(0))
        compile_start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - compile_start
        trainer.checkpointer.close()
    mem = compiled.memory_analysis()
    trainable_params = {name: int(sum(x.size for x in jax.tree.leaves(state.params))) for name, state in abstract.items()}
    return {
        "method": method, "precision": precision, "batch_per_device": batch_per_device, "remat": remat, "mesh": f"data 1 x fsdp {DEVICES}",
        "trainable_params": trainable_params, "teacher_params": int(sum(x.size for x in jax.tree.leaves(frozen["teacher"]))),
        "trainable_bytes": tree_bytes(abstract), "trainable_bytes_per_device": per_device_bytes(abstract, state_sh),
        "frozen_bytes": tree_bytes(frozen), "frozen_bytes_per_device": per_device_bytes(frozen, frozen_sh),
        "batch_bytes_per_device": per_device_bytes(example, batch_sh),
        "argument_bytes": int(mem.argument_size_in_bytes), "output_bytes": int(mem.output_size_in_bytes), "alias_bytes": int(mem.alias_size_in_bytes),
        "temp_bytes": int(mem.temp_size_in_bytes), "code_bytes": int(mem.generated_code_size_in_bytes),
        "compile_s": compile_s, "total_s": time.perf_counter() - started, "load_average_1min": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "jax": jax.__version__,
    }


def peak_bytes(r: dict) -> int:
    """Per-device bytes the step needs: its arguments, its temporaries and the outputs not aliased into donated arguments, plus code."""
    return r["argument_bytes"] + r["temp_bytes"] + r["output_bytes"] - r["alias_bytes"] + r["code_bytes"]


def load_results() -> dict:
    if not os.path.isfile(JSON_PATH):
        return {}
    with open(JSON_PATH) as f:
        return json.load(f)


def save_results(results: dict) -> None:
    os.makedirs(os.path.dirname(JSON_PATH), exist_ok=True)
    with open(JSON_PATH, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)


def run_variant(variant: str) -> dict:
    """One variant measured in a subprocess on 8 simulated host devices."""
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}").strip(), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", variant], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gib(b: float) -> str:
    return f"{b / GIB:.2f}"


def write_markdown(results: dict) -> None:
    rows = [results[k] for k in sorted(results)]
    lines = [
        f"{SECTION}: per-device memory of the compiled step on {DEVICES} FSDP devices",
        "",
        "Written by `python experiments/sd15_memory.py` (issue 27 §7) from `results/sd15_memory.json`. Each step is the engine's",
        "(`Trainer.compile_step` on `jaxdistill.build.build` of the method's config, the engine's state shardings), compiled",
        f"without running on {DEVICES} simulated host devices (XLA:CPU, mesh data 1 x fsdp {DEVICES}) from abstract shapes:",
        "the SD 1.5 UNet from its config alone (`models.hf.abstract_sd_unet`, 859.5M parameters), 512x512 images as 64x64x4",
        "latents and CLIP embeddings [B, 77, 768] from the prompt cache (no text encoder or VAE in the step).",
        "",
        "Per device, GiB: *states* = trainable (parameters + Adam moments + EMA) + frozen teacher, from the shardings, against",
        f"their total / {DEVICES}; *argument*, *temp*, *output* and *code* are `compiled.memory_analysis()`; *needed* = argument + temp",
        "+ output not aliased into the donated arguments + code.",
        "",
        "| method | precision | remat | batch / device | trainable params | states / device | total / 8 | argument | temp | output (aliased) | needed | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        states = r["trainable_bytes_per_device"] + r["frozen_bytes_per_device"]
        params = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in r["trainable_params"].items())
        lines.append(
            f"| {r['method']} | {r['precision']} | {'yes' if r['remat'] else 'no'} | {r['batch_per_device']} | {params} | {gib(states)} | {gib((r['trainable_bytes'] + r['frozen_bytes']) / DEVICES)} | "
            f"{gib(r['argument_bytes'])} | {gib(r['temp_bytes'])} | {gib(r['output_bytes'])} ({gib(r['alias_bytes'])}) | **{gib(peak_bytes(r))}** | {r['compile_s']:.0f} |"
        )
    lines += ["", "### What fits", ""]
    for r in rows:
        need = peak_bytes(r)
        fits = [f"{size} GiB: {'fits' if need <= size * GIB else 'does not fit'}" for size in (16, 80)]
        lines.append(f"- {r['method']}, {r['precision']}, {'remat' if r['remat'] else 'no remat'}, batch {r['batch_per_device']} per device: {gib(need)} GiB per device; " + "; ".join(fits) + ".")
    if rows:
        loads = sorted({f"{r['load_average_1min']:.1f}" for r in rows})
        lines += ["", f"Measured {min(r['date'] for r in rows)} to {max(r['date'] for r in rows)}, jax {rows[0]['jax']}, {platform.machine()}; compile times on a shared 2-core machine (1-minute load {', '.join(loads)} at the end of each compile, up to 18 during them), many times a quiet machine's."]
    lines += [
        "",
        "Settings: each config as written (LCM-LoRA rank 64; DMD2 stage 1: full generator and critic, ten critic updates per",
        "generator update in a `lax.fori_loop`, guided teacher, no GAN head), with the global batch set to 8 x the per-device batch.",
        "",
        "Caveats: XLA:CPU's buffer assignment is not an accelerator's (no fusion-specific scratch, different layouts, its own",
        "scheduling), so *needed* is an estimate; docs/precision.md found that XLA:CPU's `memory_analysis()` does not show what",
        "remat saves, and it may compute bfloat16 convolutions and matrix products through float32, which likely keeps the bf16",
        "policy's temporaries larger here than on a GPU or TPU: compare remat and precision (and confirm any number here) with",
        "`memory_analysis()` of the step on the accelerator you train on.",
    ]
    before = ""
    if os.path.isfile(MD_PATH):
        with open(MD_PATH) as f:
            before = f.read().split(SECTION)[0].rstrip() + "\n\n"
    with open(MD_PATH, "w") as f:
        f.write(before + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated method:precision:batch_per_device:remat|noremat")
    parser.add_argument("--redo", action="store_true", help="measure variants already in the JSON again")
    parser.add_argument("--report", action="store_true", help="only rewrite the markdown from the JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, precision, batch, remat = args.worker.split(":")
        print(json.dumps(measure(method, precision, int(batch), remat == "remat")))
        return
    results = load_results()
    for variant in [] if args.report else args.variants.split(","):
        method, precision, batch, remat = (variant.split(":") + [""] * 4)[:4]
        if method not in CONFIGS or precision not in PRECISIONS or not batch.isdigit() or remat not in REMAT:
            raise SystemExit(f"--variants: {variant!r} is not method:precision:batch:remat with method in {sorted(CONFIGS)}, precision in {PRECISIONS}, remat in {REMAT}")
        if variant in results and not args.redo:
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {variant} ...", flush=True)
        results[variant] = run_variant(variant)
        save_results(results)
        print(f"[{time.strftime('%H:%M:%S')}] {variant}: needed {gib(peak_bytes(results[variant]))} GiB per device", flush=True)
    write_markdown(results)
    print(f"wrote the section {SECTION!r} of {MD_PATH}")


if __name__ == "__main__":
    main()
