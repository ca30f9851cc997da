"""Regenerate the digits text-to-image benchmark's table (issue 27 §6; BENCHMARKS.md's columns):
results/digits_t2i.json, .md and .png.

    python experiments/digits_t2i.py [--methods lcm_lora,...] [--seeds 3] [--num-samples 2000] [--rebuild] [--quick]

The pipeline (VAE, text encoder, UNet teacher: ``jaxdistill/benchmarks/digits_t2i.py``) is restored
from the committed snapshot ``results/digits_t2i_teacher.npz`` into ``runs/digits_t2i/pipeline``;
``--rebuild`` trains it from scratch instead and rewrites the snapshot (the time each part took is
stored in the snapshot's info and the table). Every sample set is decoded by the VAE and scored by
FD-digits against all real digits and prompt adherence (the digits classifier's accuracy against the
digit the caption names), with the noise floor (two halves of the real digits; the classifier on the
real digits under their true captions) and the VAE's own reconstruction score beside it.

Rows: the teacher at NFE 1..32 with DDIM and DPM-Solver++(2M), guided at w = GUIDANCE; each student
(one config file ``configs/digits_t2i/<method>.py`` per row, trained into ``runs/digits_t2i/<method>``
and reused when finished) at NFE 1, 2, 4 with its own sampler, from the same noise and captions.
``--seeds N`` trains each selected method at training seeds 0..N-1 (seed k > 0 in ``runs/digits_t2i/<method>_seed<k>``,
``experiments/leaderboard.py``'s layout) and its row shows the median and [min, max] over them (BENCHMARKS.md).
A method not trained this time keeps its committed row while the snapshot is the same, and the
teacher's curve is reused from the committed json while the snapshot and sample count are the same.
This sibling of ``experiments/leaderboard.py`` exists because that script's teachers and students
sample class labels in data space; here sampling runs through prompts, latents and the VAE.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import time

from leaderboard import combine_seeds, seed_workdir, with_seed  # experiments/leaderboard.py, this script's folder

from jaxdistill.benchmarks import digits_t2i as bench
from jaxdistill.build import build
from jaxdistill.config import load_config_file
from jaxdistill.data.t2i_cache import read_manifest
from jaxdistill.eval.digits_classifier import DigitsEvaluator
from jaxdistill.models.hf.teacher import load_sd_teacher
from jaxdistill.plots import save_quality_vs_nfe
from jaxdistill.snapshot import folder_snapshot_info
from jaxdistill.train.engine import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs", "digits_t2i")
OUT = os.path.join(ROOT, "results")
SAMPLERS = ("ddim", "dpmpp_2m")
TEACHER_NFES = (1, 2, 4, 8, 16, 32)
NUM_SAMPLES = 1000  # not BENCHMARKS.md's 5,000: the guided teacher curve (2 x 63 steps on a doubled batch) would take ~45 min on 2 busy CPU cores


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def methods_available() -> list[str]:
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIGS, "*.py")))


def pipeline(rebuild: bool, runs: str) -> tuple[str, str]:
    """(folder, cache): the restored or rebuilt pipeline and its captions cache."""
    folder, cache = os.path.join(runs, "pipeline"), os.path.join(runs, "cache")
    if rebuild:
        for path in (folder, cache, os.path.join(runs, "teacher")):
            shutil.rmtree(path, ignore_errors=True)
        print(json.dumps(bench.build_pipeline(folder, cache, os.path.join(runs, "teacher"))), flush=True)
    bench.teacher_folder(folder)
    if read_manifest(cache) is None:
        bench.write_digits_cache(load_sd_teacher(folder), cache)
    return folder, cache


def train_student(method: str, folder: str, cache: str, runs: str, quick: bool, seed: int = 0) -> tuple[dict, object, object]:
    """(row fields, objective, train result) of ``method`` at training seed ``seed`` trained (or resumed) into
    runs/<method> (seed 0) or runs/<method>_seed<seed>."""
    config = with_seed(load_config_file(os.path.join(CONFIGS, f"{method}.py") + (":smoke" if quick else "")), seed)
    config.teacher.path, config.data.path = folder, cache
    built = build(config)
    start = time.time()
    workdir = seed_workdir(os.path.dirname(runs), os.path.basename(runs), method, seed)
    result = Trainer(built.objective, built.frozen, built.config, workdir, built.data_factory, show_progress=False).train()
    updates, batch = int(config.train.num_steps), int(config.batch_size)
    evals = getattr(built.objective, "passes_per_sample", None)
    row = {
        "updates": updates, "batch_size": batch, "train_seconds": round(float(result.seconds or time.time() - start), 1),
        "network_evals": None if evals is None else float(getattr(built.objective, "setup_passes", 0.0) + evals * updates * batch),
        "nfes": [int(n) for n in config.eval.nfes], "seed": seed,
    }
    return row, built.objective, result


def markdown(report: dict) -> str:
    floor, best, where = report["noise_floor"], *teacher_best(report)
    lines = [
        f"### digits_t2i ({report['num_samples']} samples per row; FD-digits lower is better, adherence higher)",
        "",
        f"Teacher best FD-digits: **{best:.4g}** ({where}, guided w = {report['guidance']}); noise floor {floor['fd_digits']:.4g} "
        f"(adherence floor {floor['adherence']:.4f}); VAE reconstruction FD-digits {report['vae_reconstruction']['fd_digits']:.4g}, "
        f"adherence {report['vae_reconstruction']['adherence']:.4f}.",
        f"Pipeline: {report['pipeline']}.",
        *(["Rows of several training seeds: the median and [min, max] over seeds."] if any("seeds" in s for s in report["students"].values()) else []),
        "",
        "**Students**",
        "",
        "| method | NFE | fd_digits | adherence | fd_digits / teacher best | fd_digits / floor | updates x batch | network evals | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in sorted(report["students"].items()):
        label = f"{method} ({s['seeds']} seeds)" if "seeds" in s else method
        for nfe, v in sorted(s["by_nfe"].items(), key=lambda kv: int(kv[0])):
            evals = "–" if s["network_evals"] is None else f"{s['network_evals']:.3g}"
            spread = s.get("spread", {}).get(nfe, {})
            fd, acc = (f"{v[k]:{f}}" + (f" [{spread[k][0]:{f}}, {spread[k][1]:{f}}]" if k in spread else "") for k, f in (("fd_digits", ".4g"), ("adherence", ".4f")))
            lines.append(
                f"| {label} | {nfe} | {fd} | {acc} | {v['fd_digits'] / best:.3g} | {v['fd_digits'] / floor['fd_digits']:.3g} "
                f"| {s['updates']} x {s['batch_size']} | {evals} | {s['train_seconds']:.0f} |"
            )
    nfes = sorted({int(n) for c in report["teacher"].values() for n in c})
    lines += ["", "**Teacher** (fd_digits / adherence)", "", "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---" * (len(nfes) + 1) + "|"]
    for sampler, curve in report["teacher"].items():
        lines.append(f"| {sampler} | " + " | ".join(f"{curve[str(n)]['fd_digits']:.4g} / {curve[str(n)]['adherence']:.3f}" for n in nfes) + " |")
    return "\n".join(lines) + "\n"


def teacher_best(report: dict) -> tuple[float, str]:
    best = min((v["fd_digits"], f"{s} @ {n}") for s, c in report["teacher"].items() for n, v in c.items())
    return best


def write_outputs(report: dict, out: str) -> None:
    """results/digits_t2i.json, .md and .png (teacher curves as lines, students as stars)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "digits_t2i.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "digits_t2i.md"), "w") as f:
        f.write(markdown(report))
    save_quality_vs_nfe(
        {s: {int(n): v["fd_digits"] for n, v in c.items()} for s, c in report["teacher"].items()}, os.path.join(out, "digits_t2i.png"), metric="fd_digits",
        points={m: {int(n): v["fd_digits"] for n, v in s["by_nfe"].items()} for m, s in report["students"].items()},
        floor=report["noise_floor"]["fd_digits"], title="digits_t2i: teacher samplers (lines, w = 2) vs students (stars)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="", help=f"comma-separated rows to (re)train and score; available: {','.join(methods_available())}")
    parser.add_argument("--seeds", type=int, default=1, help="train each selected method at seeds 0..N-1; its row: median [min, max]")
    parser.add_argument("--num-samples", type=int, default=NUM_SAMPLES)
    parser.add_argument("--rebuild", action="store_true", help="train the pipeline from scratch and rewrite the committed snapshot")
    parser.add_argument("--quick", action="store_true", help="smoke configs and 200 samples into runs/digits_t2i_quick and results/quick/ (checks the script)")
    args = parser.parse_args()
    unknown = sorted(set(filter(None, args.methods.split(","))) - set(methods_available()))
    if unknown:
        raise SystemExit(f"no config file for {unknown} in {os.path.relpath(CONFIGS)}; available: {methods_available()}")
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    runs = os.path.join("runs", "digits_t2i_quick" if args.quick else "digits_t2i")
    out = os.path.join(OUT, "quick") if args.quick else OUT
    num = 200 if args.quick else args.num_samples
    folder, cache = pipeline(args.rebuild, runs)
    snapshot_sha = sha256(bench.SNAPSHOT)
    committed_path = os.path.join(out, "digits_t2i.json")
    committed = json.load(open(committed_path)) if os.path.isfile(committed_path) else {}
    same_teacher = committed.get("snapshot_sha256") == snapshot_sha
    sd, evaluator = load_sd_teacher(folder), DigitsEvaluator()
    captions, _ = bench.eval_prompts(num)
    info = folder_snapshot_info(bench.SNAPSHOT)
    report = {
        "benchmark": "digits_t2i", "num_samples": num, "guidance": bench.GUIDANCE, "snapshot_sha256": snapshot_sha,
        "pipeline": f"VAE {info['vae_steps']} updates ({info['vae_seconds']:.0f} s), UNet teacher {info['teacher']['steps']} updates at batch "
                    f"{bench.teacher_config().batch_size} ({info['teacher']['seconds']:.0f} s); whole rebuild {info['total_seconds']:.0f} s on 2 busy CPU cores",
        "noise_floor": bench.noise_floor(evaluator), "vae_reconstruction": bench.reconstruction(sd, evaluator),
    }
    if same_teacher and committed.get("num_samples") == num:
        report["teacher"] = committed["teacher"]
    else:
        report["teacher"] = {s: {str(n): bench.score(evaluator, bench.teacher_images(sd, captions, n, s), captions) for n in TEACHER_NFES} for s in SAMPLERS}
    report["students"] = {m: row for m, row in committed.get("students", {}).items() if same_teacher and committed.get("num_samples") == num}
    write_outputs(report, out)  # the teacher's curve stays on disk if a student fails
    for method in filter(None, args.methods.split(",")):
        rows = []
        for seed in range(args.seeds):
            row, objective, result = train_student(method, folder, cache, runs, args.quick, seed)
            row["by_nfe"] = {
                str(n): bench.score(evaluator, bench.student_images(sd, objective, result.trainable, result.frozen, captions, n), captions) for n in row["nfes"]
            }
            rows.append(row)
            report["students"][method] = {**combine_seeds(rows), "seed_rows": rows} if len(rows) > 1 else row
            write_outputs(report, out)
    print(markdown(report))


if __name__ == "__main__":
    main()
