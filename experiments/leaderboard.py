"""Regenerate the results tables and figures (protocol: BENCHMARKS.md).

For each benchmark: the teacher's quality-vs-NFE curve for every sampler (unguided,
and guided at w = GUIDANCE on conditional benchmarks), the noise floor, and one row per
student method at each of its NFEs. Every student of a benchmark gets the same budget
(its config's number of updates at its batch size: grid25 4000 x 512, digits_gmm
4000 x 256, digits 1500 x 128), so rows are comparable.

    python experiments/leaderboard.py [--benchmarks grid25,digits_gmm,digits] [--methods kd,cd,...]
                                      [--seeds N] [--trained-only] [--quick] [--readme]

Each run's config is ``configs/<benchmark>/<method>.py`` (``:4step`` for ``<method>_4step`` rows).
Writes ``results/<benchmark>.json, ``.md`` and ``.png``. Training runs, teacher curves
and student scores are cached under ``runs/<benchmark>/`` and reused when they match the
current budget; delete a run's folder to redo it. A trained teacher (digits) is also kept as
``results/<benchmark>_teacher.npz`` (``jaxdistill.snapshot``, committed): a fresh checkout
restores it, bit for bit, instead of retraining while the teacher config is unchanged. The
tables list every finished and scored run of a benchmark, so ``--methods dmd2`` adds (or
redoes) the DMD2 row and keeps the others.
A method with no scored run on disk keeps its row from the committed ``results/<benchmark>.json``
(a fresh checkout has no runs/) while the teacher, sample count and budget are unchanged; the
teacher counts as unchanged when a recomputed point of its curve matches the committed one.
Rows record the config they were trained from (``trained_fields``): a committed row whose config
has changed since is dropped (rows committed before rows recorded it are kept), and a run folder
trained from another config is neither tabled nor reused: move it away first.
``--seeds 3`` also trains seeds 1 and 2 (``runs/<benchmark>/<method>_seed<k>``); a row then shows
the median and [min, max] over its method's scored seed runs (BENCHMARKS.md). ``--quick`` uses the smoke configs and
few samples, to check the script itself; the published tables use the defaults.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdistill.build import build, load_run, load_teacher
from jaxdistill.config import load_config_file
from jaxdistill.diffusion import samplers
from jaxdistill.eval.benchmark import Evaluator, evaluate_generator
from jaxdistill.plots import save_quality_vs_nfe
from jaxdistill.snapshot import restore_snapshot, save_snapshot, snapshot_config
from jaxdistill.train.checkpoint import CheckpointError, read_config_json
from jaxdistill.train.engine import Trainer
from jaxdistill.train.sampling import class_labels, generate_samples

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SAMPLERS = ("euler", "heun", "ddim", "dpmpp_2m")
TEACHER_NFES = (1, 2, 4, 8, 16, 32, 64)
GUIDANCE = 2.0  # guided teacher curve on conditional benchmarks (x_u + w (x_c - x_u))
HEADLINE = {"grid25": "sw2", "digits_gmm": "sw2", "digits": "fd_digits"}
# One-step generator methods also get a row with a FEW_STEPS-step generator (``<method>_4step``,
# the config file's ``4step`` argument), as the papers report both; ADD/LADD students have 4 steps already.
FEW_STEPS = 4
FEW_STEP_SUFFIX = f"_{FEW_STEPS}step"
ONE_STEP_GENERATORS = ("vsd", "dmd", "dmd2", "fdistill", "sid", "sida", "sim")  # distribution matching, score identity
METHODS = (
    ("kd", "pd", "guided", "cd", "ct", "ict", "ect", "shortcut", "meanflow", "ctm", "scd", "sct", "reflow", "instaflow")
    + tuple(v for m in ONE_STEP_GENERATORS for v in (m, m + FEW_STEP_SUFFIX))
    + ("add", "ladd")
)
CONDITIONAL_ONLY = ("guided",)  # methods that need class labels (not run on grid25)
# The trained UNet teacher is ~100x costlier per evaluation than the exact mixtures on a
# 2-core CPU, so its curve stops at NFE 32 (and its configs' eval.num_samples is 5,000).
TEACHER_NFES_BY_BENCHMARK = {"digits": (1, 2, 4, 8, 16, 32)}
CHUNK = 2048


def config_file(name: str, method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """``configs/<name>/<method>.py`` called with ``arg``."""
    path = os.path.join(CONFIGS, name, f"{method}.py")
    if not os.path.isfile(path):
        raise SystemExit(f"no config file {os.path.relpath(path)} for {method!r} on {name}")
    return load_config_file(f"{path}:{arg}" if arg else path)


def teacher_config(name: str, quick: bool) -> Optional[ml_collections.ConfigDict]:
    """The teacher training config, or None for an exact-mixture teacher."""
    return config_file("digits", "teacher", "smoke" if quick else None) if name == "digits" else None


def student_config(name: str, method: str, quick: bool, runs: str) -> ml_collections.ConfigDict:
    """``configs/<name>/<method>.py`` at the benchmark budget (``smoke`` if ``quick``; ``4step`` for
    ``<method>_4step``); digits students distill the teacher trained under ``runs``."""
    if name not in HEADLINE:
        raise SystemExit(f"unknown benchmark {name!r}; choose from {tuple(HEADLINE)}")
    args = ["smoke"] if quick else []
    base = method.removesuffix(FEW_STEP_SUFFIX)
    if base != method and base in ONE_STEP_GENERATORS:
        method = base
        args.append(f"{FEW_STEPS}step")
    config = config_file(name, method, ",".join(args) or None)
    if name == "digits":
        config.teacher.workdir = os.path.join(runs, "digits", "teacher")
    return config


def read_json(path: str) -> Optional[dict]:
    return json.load(open(path)) if os.path.exists(path) else None


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


# Config fields that do not change what a run learns: bookkeeping, file locations, device layout,
# and the seed (a row combines its method's seeds).
BOOKKEEPING_FIELDS = (
    "seed", "teacher.workdir", "teacher.path", "train.log_every", "train.sample_every", "train.checkpoint_every", "train.max_to_keep",
    "train.async_checkpoint", "train.num_plot_samples", "mesh", "distributed", "eval.num_samples",
)


def trained_fields(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """``config`` flattened to {"section.field": value} without BOOKKEEPING_FIELDS, with JSON's
    types (tuples as lists) and numbers as floats, so a run's saved config compares equal to the
    config it was trained from."""
    tree = json.loads(config.to_json_best_effort()) if isinstance(config, ml_collections.ConfigDict) else config
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if any(prefix == f or prefix.startswith(f + ".") for f in BOOKKEEPING_FIELDS):
            return
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        else:
            flat[prefix] = json.loads(json.dumps(node), parse_int=float)

    walk(tree, "")
    return flat


def config_changes(saved: dict[str, Any], config: ml_collections.ConfigDict) -> list[str]:
    """The fields of ``saved`` (``trained_fields`` of the config a run or row was trained from)
    whose value in ``config`` differs. Fields only one side has are not compared: a field added
    to the code later must default to the old behaviour."""
    wanted = trained_fields(config)
    return sorted(k for k in saved.keys() & wanted.keys() if saved[k] != wanted[k])


def run_config_changes(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
    """``config_changes`` of ``workdir``'s latest checkpoint (empty when it has none yet)."""
    directory = os.path.join(workdir, "checkpoints")
    steps = sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []
    if not steps:
        return []
    return config_changes(trained_fields(read_config_json(directory, steps[-1])), config)


def differing(changes: list[str], shown: int = 6) -> str:
    """``changes`` (field names) for a message: the first ``shown``, then "..."."""
    return ", ".join(changes[:shown]) + (", ..." if len(changes) > shown else "")


def check_same_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Stop, saying what differs, when ``workdir`` holds a run trained from another config."""
    changes = run_config_changes(workdir, config)
    if changes:
        raise SystemExit(f"{workdir} holds a run trained from another config (differs in {differing(changes)}); move it away to retrain")


def is_trained(config: ml_collections.ConfigDict, workdir: str) -> bool:
    record = read_json(os.path.join(workdir, "cost.json"))
    return record is not None and record["updates"] == int(config.train.num_steps)


def train_timed(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (or reuse a finished run) and return its cost record (updates, wall time)."""
    record_path = os.path.join(workdir, "cost.json")
    if is_trained(config, workdir):
        print(f"reusing {workdir}")
        return read_json(record_path)
    built = build(config)
    result = Trainer(built.objective, built.frozen, config, workdir, built.data_factory, probe=built.probe).train()
    if result.step != int(config.train.num_steps):  # interrupted: checkpointed, but not a row
        raise SystemExit(f"{workdir}: training stopped at update {result.step} of {config.train.num_steps}; rerun to resume it")
    # the trainer's clock: a run resumed from a checkpoint counts the seconds spent before it too
    record = {"updates": result.step, "train_seconds": result.seconds, "batch_size": int(config.batch_size)}
    write_json(record_path, record)
    return record


def learns_the_same_teacher(saved: dict, config: ml_collections.ConfigDict) -> bool:
    """Whether a saved teacher config trains the same networks as ``config``: no ``config_changes``
    (fields only one side has, such as a section a teacher does not read, are not compared) and
    equal seed (a teacher is one network, not a row over seeds)."""
    return not config_changes(trained_fields(saved), config) and saved.get("seed") == config.seed


def trained_teacher(config: ml_collections.ConfigDict, workdir: str, snapshot: Optional[str]) -> dict:
    """The teacher's cost record. A finished run in ``workdir`` is reused; else the committed
    ``snapshot`` is restored when it was trained from this same config (``learns_the_same_teacher``:
    bookkeeping fields such as ``eval.num_samples`` may differ; it holds the trained networks bit
    for bit, so a fresh checkout skips the training); else the teacher is trained
    and the snapshot rewritten. Delete the snapshot to retrain."""
    has_checkpoints = os.path.isdir(os.path.join(workdir, "checkpoints"))
    if snapshot is not None and os.path.exists(snapshot) and not has_checkpoints:
        record = restored_teacher(config, workdir, snapshot)
        if record is not None:
            return record
    fresh = not is_trained(config, workdir)
    record = train_timed(config, workdir)
    if fresh and snapshot is not None:
        save_snapshot(workdir, snapshot, info=record)
    return record


def restored_teacher(config: ml_collections.ConfigDict, workdir: str, snapshot: str) -> Optional[dict]:
    """Restore ``snapshot`` into ``workdir`` and return its cost record, or None (saying why) when
    it was trained from another config or no longer matches the networks (changed code)."""
    try:
        if not learns_the_same_teacher(snapshot_config(snapshot), config):
            print(f"{snapshot} holds a teacher trained from another config: training this one")
            return None
        record = restore_snapshot(snapshot, workdir)
    except CheckpointError as err:
        print(f"{snapshot} could not be restored ({err}): training the teacher")
        return None
    write_json(os.path.join(workdir, "cost.json"), record)
    print(f"restored the teacher from {snapshot} (trained in {record['train_seconds']:.0f} s); delete it to retrain")
    return record


def teacher_generator(denoiser, params, event_shape, num_classes: int, sampler: str, guidance: Optional[float], mean=None):
    """``generate(nfe, n) -> (samples, labels)`` for a teacher and sampler, balanced labels, from
    the prior around ``mean`` (the run's ``data_mean``; None: zero)."""

    def generate(nfe: int, n: int):
        labels = class_labels(num_classes, n)
        run = jax.jit(
            lambda p, z, c, r: samplers.sample_nfe(
                lambda x, t: denoiser.x0(p, x, t, c, guidance=guidance), denoiser.process, z, nfe, sampler, rng=r
            )
        )
        out = []
        for i, start in enumerate(range(0, n, CHUNK)):
            m = min(CHUNK, n - start)
            key = jax.random.fold_in(jax.random.key(7), i)
            z = denoiser.process.prior_sample(jax.random.fold_in(key, 0), (m, *event_shape), mean)
            c = None if labels is None else jnp.asarray(labels[start : start + m])
            out.append(np.asarray(run(params, z, c, jax.random.fold_in(key, 1))))
        return np.concatenate(out), labels

    return generate


def student_generator(run):
    objective = run.built.objective

    def generate(nfe: int, n: int):
        labels = class_labels(objective.num_classes, n)
        x = generate_samples(objective, run.trainable, run.frozen, n, nfe=nfe, rng=jax.random.key(11), labels=labels)
        return x, labels

    return generate


def network_evaluations(config: ml_collections.ConfigDict, objective, updates: int) -> Optional[float]:
    """Per-sample network passes of a run (forward and backward, every network; a backward
    pass counts as one): the objective's ``passes_per_sample`` per update times the batch, plus
    its one-off teacher cost ``setup_passes`` (KD's and DMD's pair sets)."""
    per_sample = getattr(objective, "passes_per_sample", None)  # user objectives may omit it
    if per_sample is None:
        return None
    return float(getattr(objective, "setup_passes", 0.0) + per_sample * updates * int(config.batch_size))


# A teacher point recomputed now agrees with the committed table's to this relative tolerance
# when the teacher is the same one. Floating-point differences between machines move it: the
# exact digits_gmm teacher's dpmpp_2m @ 64 SW2 was 0.0147289 on one 2-core machine and 0.0147502
# (+0.14%) on another (AMD EPYC), so the tolerance is 1%; a changed teacher moves it by more.
SAME_TEACHER_RTOL = 1e-2


def committed_report(out_dir: str, name: str, num_samples: int, nfes) -> Optional[dict]:
    """The committed ``results/<name>.json``, if it was scored at this sample count and teacher NFEs."""
    report = read_json(os.path.join(out_dir, f"{name}.json"))
    if report is None or report.get("num_samples") != num_samples:
        return None
    if any(list(curve) != [str(n) for n in nfes] for curve in report["teacher"].values()):
        return None
    return report


def teacher_curves(
    name: str, config: ml_collections.ConfigDict, evaluator: Evaluator, nfes, runs: str, committed: Optional[dict] = None
) -> tuple[dict, bool]:
    """Quality vs NFE of every teacher sampler (cached in runs/<name>/teacher_curves.json), and
    whether the teacher is the one behind ``committed`` (the committed table).

    Without a cache, the committed table's best teacher point is recomputed first; if it agrees
    (``SAME_TEACHER_RTOL``), the teacher is the same one and its committed curves are reused
    (a fresh checkout has no runs/, and the digits curves cost ~100x the probe). Otherwise every
    curve is recomputed and the committed student rows no longer apply."""
    cache = os.path.join(runs, name, "teacher_curves.json")
    key = {"num_samples": evaluator.num_samples, "nfes": list(nfes)}
    cached = read_json(cache)
    if cached is not None and cached["key"] == key:
        return cached["curves"], committed is not None and same_curves(cached["curves"], committed["teacher"], name)
    built = build(config)
    denoiser, teacher_params = load_teacher(config, built.event_shape)
    num_classes = int(config.network.num_classes)

    def curve(sampler: str, w: Optional[float], curve_nfes) -> dict:
        gen = teacher_generator(denoiser, teacher_params, built.event_shape, num_classes, sampler, w, built.objective.data_mean)
        return {str(k): v for k, v in evaluate_generator(evaluator, gen, curve_nfes).items()}

    if committed is not None:
        _, where = teacher_best(committed, HEADLINE[name])
        sampler, nfe = where.split(" @ ")
        probe = curve(sampler, None, (int(nfe),))[nfe][HEADLINE[name]]
        expected = committed["teacher"][sampler][nfe][HEADLINE[name]]
        if same_value(probe, expected):
            print(f"{name} teacher {where}: {probe:.6g}, committed {expected:.6g}: same teacher, reusing the committed curves")
            write_json(cache, {"key": key, "curves": committed["teacher"]})
            return committed["teacher"], True
        print(f"{name} teacher {where}: {probe:.6g}, committed {expected:.6g}: another teacher, recomputing every curve")
    curves = {}
    for sampler in SAMPLERS:
        for w in [None] + ([GUIDANCE] if num_classes > 0 else []):
            label = sampler if w is None else f"{sampler} w={w:g}"
            curves[label] = curve(sampler, w, nfes)
            print(f"{name} teacher {label}: " + ", ".join(f"{k}:{v[HEADLINE[name]]:.4g}" for k, v in curves[label].items()))
    write_json(cache, {"key": key, "curves": curves})
    return curves, committed is not None and same_curves(curves, committed["teacher"], name)


def same_value(value: float, committed: float) -> bool:
    """A teacher metric agrees with its committed value to ``SAME_TEACHER_RTOL``."""
    return bool(np.isclose(value, committed, rtol=SAME_TEACHER_RTOL, atol=0.0))


def same_curves(curves: dict, committed: dict, name: str) -> bool:
    """Every teacher point's headline metric agrees with the committed one (``SAME_TEACHER_RTOL``)."""
    metric = HEADLINE[name]
    if set(curves) != set(committed):
        return False
    return all(
        set(curves[s]) == set(committed[s])
        and all(same_value(curves[s][n][metric], committed[s][n][metric]) for n in curves[s])
        for s in curves
    )


def committed_rows(committed: Optional[dict], configs: dict[str, ml_collections.ConfigDict]) -> dict[str, dict]:
    """The committed table's student rows that still hold: same teacher (the caller checks),
    same sample count (``committed_report``), each method's current budget and, for rows that
    record their config, the current config (a changed config drops its row, said)."""
    if committed is None:
        return {}
    rows = committed["students"]
    kept = {}
    for m, c in configs.items():
        if m not in rows or rows[m]["updates"] != int(c.train.num_steps) or rows[m]["batch_size"] != int(c.batch_size):
            continue
        changes = config_changes(rows[m].get("config", {}), c)
        if changes:
            print(f"{m}: the committed row was trained from another version of its config (differs in {differing(changes)}); rerun it for a row")
            continue
        kept[m] = rows[m]
    return kept


def seed_workdir(runs: str, name: str, method: str, seed: int) -> str:
    """``runs/<name>/<method>`` for training seed 0, ``runs/<name>/<method>_seed<k>`` for seed k."""
    return os.path.join(runs, name, method if seed == 0 else f"{method}_seed{seed}")


def with_seed(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
    """The run config with training seed ``seed`` (initialisation, noise draws; same data set)."""
    config = config.copy_and_resolve_references()
    config.seed = seed
    return config


def student_row(workdir: str, config: ml_collections.ConfigDict, evaluator: Evaluator) -> dict:
    """Train (or reuse) one student run and score it at its eval NFEs (cached in its workdir)."""
    check_same_config(workdir, config)
    cost = train_timed(config, workdir)
    cache = os.path.join(workdir, "scores.json")
    key = {"num_samples": evaluator.num_samples, "updates": cost["updates"]}
    cached = read_json(cache)
    if cached is not None and cached["key"] == key:
        return {**cached["row"], "config": trained_fields(config)}
    run = load_run(workdir)
    nfes = tuple(int(n) for n in run.config.eval.nfes)
    scores = evaluate_generator(evaluator, student_generator(run), nfes)
    row = {
        "by_nfe": {str(k): v for k, v in scores.items()},
        "updates": cost["updates"],
        "batch_size": cost["batch_size"],
        "train_seconds": cost["train_seconds"],
        "network_evaluations": network_evaluations(run.config, run.built.objective, cost["updates"]),
        "config": trained_fields(config),
    }
    write_json(cache, {"key": key, "row": row})
    return row


def scored_row(workdir: str, config: ml_collections.ConfigDict, num_samples: int) -> Optional[dict]:
    """A finished run's cached row at the current budget and sample count, else None; None (said)
    for a run trained from another config than ``config``."""
    if not is_trained(config, workdir):
        return None
    changes = run_config_changes(workdir, config)
    if changes:
        print(f"{workdir}: trained from another config (differs in {differing(changes)}); not in the table")
        return None
    cached = read_json(os.path.join(workdir, "scores.json"))
    key = {"num_samples": num_samples, "updates": int(config.train.num_steps)}
    return {**cached["row"], "config": trained_fields(config)} if cached is not None and cached["key"] == key else None


def scored_seed_rows(name: str, method: str, config: ml_collections.ConfigDict, num_samples: int, runs: str) -> list[dict]:
    """Cached rows of every finished, scored seed run of a method (seeds 0, 1, ... while their folders exist)."""
    rows, seed = [], 0
    while os.path.isdir(seed_workdir(runs, name, method, seed)):
        row = scored_row(seed_workdir(runs, name, method, seed), config, num_samples)
        if row is not None:
            rows.append(row)
        seed += 1
    return rows


def combine_seeds(rows: list[dict]) -> dict:
    """One table row from per-seed rows: the median of every metric at every NFE, its
    [min, max] under ``spread`` and the seed count (BENCHMARKS.md: "three seeds where time
    allows: report median and min-max"); the wall time is the median over seeds. One seed: unchanged."""
    if len(rows) == 1:
        return rows[0]
    by_nfe, spread = {}, {}
    for nfe in rows[0]["by_nfe"]:
        metrics = rows[0]["by_nfe"][nfe]
        values = {k: np.array([r["by_nfe"][nfe][k] for r in rows], dtype=float) for k in metrics}
        by_nfe[nfe] = {k: float(np.median(v)) for k, v in values.items()}
        spread[nfe] = {k: [float(v.min()), float(v.max())] for k, v in values.items()}
    seconds = float(np.median([r["train_seconds"] for r in rows]))
    return {**rows[0], "train_seconds": seconds, "by_nfe": by_nfe, "spread": spread, "seeds": len(rows)}


def run_benchmark(
    name: str, methods: list[str], quick: bool, runs: str, out_dir: str, trained_only: bool = False, seeds: int = 1
) -> dict:
    """Train and score ``methods`` at training seeds 0..seeds-1; a row combines every scored seed
    run of its method on disk. The table also keeps every other method's finished, scored runs,
    so per-method invocations add rows instead of replacing the table."""
    methods = [m for m in methods if not (name == "grid25" and m in CONDITIONAL_ONLY)]
    configs = {m: student_config(name, m, quick, runs) for m in methods}
    if trained_only:
        skipped = [m for m, c in configs.items() if not is_trained(c, seed_workdir(runs, name, m, 0))]
        if skipped:
            print(f"{name}: skipping untrained {', '.join(skipped)} (--trained-only)")
        configs = {m: c for m, c in configs.items() if m not in skipped}
        if not configs:
            raise SystemExit(f"{name}: no trained student runs under {runs}/{name}")
    any_config = next(iter(configs.values()))
    num_samples = 1000 if quick else int(any_config.eval.num_samples)
    evaluator = Evaluator(any_config.data, num_samples=num_samples)
    report: dict = {"benchmark": name, "num_samples": num_samples, "noise_floor": evaluator.floor, "teacher": {}, "students": {}}
    t_config = teacher_config(name, quick)
    if t_config is not None:
        snapshot = None if quick else os.path.join(out_dir, f"{name}_teacher.npz")
        report["teacher_training"] = trained_teacher(t_config, os.path.join(runs, name, "teacher"), snapshot)
    nfes = TEACHER_NFES[:3] if quick else TEACHER_NFES_BY_BENCHMARK.get(name, TEACHER_NFES)
    committed = committed_report(out_dir, name, num_samples, nfes)
    report["teacher"], same_teacher = teacher_curves(name, configs.get("kd", any_config), evaluator, nfes, runs, committed)
    tabled = [m for m in METHODS if not (name == "grid25" and m in CONDITIONAL_ONLY)]
    all_configs = {m: configs[m] if m in configs else student_config(name, m, quick, runs) for m in tabled}
    carried = committed_rows(committed if same_teacher else None, all_configs)

    def scored_rows() -> dict:  # every method's scored seed runs on disk, else its committed row; METHODS order
        rows = {m: scored_seed_rows(name, m, c, num_samples, runs) for m, c in all_configs.items()}
        return {m: combine_seeds(r) if r else carried[m] for m, r in rows.items() if r or m in carried}

    for method in configs:
        for seed in range(seeds):
            workdir = seed_workdir(runs, name, method, seed)
            if not (trained_only and not is_trained(configs[method], workdir)):  # --trained-only trains nothing
                student_row(workdir, with_seed(configs[method], seed), evaluator)
        # The table is rewritten only with every scored row, so an interrupted run never truncates it.
        report["students"] = scored_rows()
        write_outputs(report, out_dir)
    report["students"] = scored_rows()
    write_outputs(report, out_dir)
    return report


def teacher_best(report: dict, metric: str) -> tuple[float, str]:
    best = min(
        ((v[metric], f"{s} @ {n}") for s, curve in report["teacher"].items() for n, v in curve.items() if " w=" not in s),
        key=lambda p: p[0],
    )
    return best


def table_metrics(report: dict) -> list[str]:
    """The students table's metric columns: every metric of a teacher point or a student row, in
    first-seen order (rows scored before a metric existed show "–" in its column)."""
    points = [v for curve in report["teacher"].values() for v in curve.values()]
    points += [v for s in report["students"].values() for v in s["by_nfe"].values()]
    keys = dict.fromkeys(k for v in points for k in v)
    return [k for k in keys if k not in ("sample_seconds", "nonfinite_frac")]


def markdown(report: dict) -> str:
    name = report["benchmark"]
    metric = HEADLINE[name]
    best, where = teacher_best(report, metric)
    floor = report["noise_floor"][metric]
    keys = table_metrics(report)
    lines = [f"### {name} ({report['num_samples']} samples per row; headline metric {metric}, lower is better)", ""]
    lines.append(f"Teacher best {metric}: **{best:.4g}** ({where}); noise floor {floor:.4g}.")
    if any("seeds" in s for s in report["students"].values()):
        lines.append("Rows with several training seeds show the median and [min, max] over seeds.")
    if "teacher_training" in report:
        t = report["teacher_training"]
        lines.append(f"Teacher: trained for {t['updates']} updates at batch {t['batch_size']} ({t['train_seconds']:.0f} s).")
    lines += ["", "**Students**", ""]
    lines.append("| method | NFE | " + " | ".join(keys) + f" | {metric} / teacher best | {metric} / floor | updates | network evals | wall time (s) |")
    lines.append("|---" * (len(keys) + 7) + "|")
    for method, s in report["students"].items():
        evals = "n/a" if s["network_evaluations"] is None else f"{s['network_evaluations']:.3g}"
        label = f"{method} ({s['seeds']} seeds)" if "seeds" in s else method
        for nfe, v in s["by_nfe"].items():
            spread = s.get("spread", {}).get(nfe, {})
            cells = [
                (f"{v[k]:.4g}" if k in v else "–") + (f" [{spread[k][0]:.3g}, {spread[k][1]:.3g}]" if k in spread else "")
                for k in keys
            ]
            lines.append(
                f"| {label} | {nfe} | " + " | ".join(cells)
                + f" | {v[metric] / best:.3g} | {v[metric] / floor:.3g} | {s['updates']} | {evals} | {s['train_seconds']:.0f} |"
            )
    lines += ["", f"**Teacher {metric} vs NFE**", ""]
    nfes = list(next(iter(report["teacher"].values())))
    lines.append("| sampler | " + " | ".join(nfes) + " |")
    lines.append("|---" * (len(nfes) + 1) + "|")
    for sampler, curve in report["teacher"].items():
        lines.append(f"| {sampler} | " + " | ".join(f"{curve[n][metric]:.4g}" for n in nfes) + " |")
    lines.append("| noise floor | " + " | ".join(f"{floor:.4g}" for _ in nfes) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(report: dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    name = report["benchmark"]
    metric = HEADLINE[name]
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(markdown(report))
    save_quality_vs_nfe(
        {s: {int(n): v[metric] for n, v in c.items()} for s, c in report["teacher"].items()},
        os.path.join(out_dir, f"{name}.png"),
        metric=metric,
        points={m: {int(n): v[metric] for n, v in s["by_nfe"].items()} for m, s in report["students"].items()},
        floor=report["noise_floor"][metric],
        title=f"{name}: teacher samplers (lines) vs students (stars)",
    )


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
RESULTS_PAGE = "docs/results.md"
SUMMARY_NFES = (1, 4)


def replace_block(path: str, block: str) -> None:
    """Replace the text between the results markers of ``path`` with ``block``."""
    text = open(path).read()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{path} has no {README_START} ... {README_END} block")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    with open(path, "w") as f:
        f.write(head + README_START + "\n" + block + README_END + tail)


def update_results_page(out_dir: str, page: str = RESULTS_PAGE) -> None:
    """Every benchmark's full table in ``out_dir`` (not only those just run, so ``--benchmarks
    digits --readme`` keeps the others) into the results block of ``page``."""
    image_dir = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(page)))
    parts = []
    for name in [n for n in HEADLINE if os.path.exists(os.path.join(out_dir, f"{n}.md"))]:
        md = open(os.path.join(out_dir, f"{name}.md")).read()
        parts.append(md + f"\n![{name}]({image_dir}/{name}.png)\n")
    replace_block(page, "\n".join(parts))


def summary_markdown(out_dir: str) -> str:
    """One row per method: each benchmark's headline metric at 1 and 4 NFE, then the teachers'
    best and the noise floors (full tables: ``RESULTS_PAGE``)."""
    reports = {n: read_json(os.path.join(out_dir, f"{n}.json")) for n in HEADLINE}
    reports = {n: r for n, r in reports.items() if r is not None}
    columns = [(n, nfe) for n in reports for nfe in SUMMARY_NFES]
    header = "| method | " + " | ".join(f"{n} {HEADLINE[n]} @ {nfe} NFE" for n, nfe in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    methods = dict.fromkeys(m for r in reports.values() for m in r["students"])

    def cell(name: str, method: str, nfe: int) -> str:
        point = reports[name]["students"].get(method, {}).get("by_nfe", {}).get(str(nfe))
        return "–" if point is None else f"{point[HEADLINE[name]]:.3g}"

    for method in methods:
        lines.append(f"| {method} | " + " | ".join(cell(n, method, nfe) for n, nfe in columns) + " |")
    def per_benchmark(label: str, text) -> str:  # one value per benchmark, in its first column
        blanks = [""] * (len(SUMMARY_NFES) - 1)
        return f"| {label} | " + " | ".join(c for n in reports for c in (text(n), *blanks)) + " |"

    lines.append(per_benchmark("*teacher, best sampler*", lambda n: "{:.3g} ({})".format(*teacher_best(reports[n], HEADLINE[n]))))
    lines.append(per_benchmark("*noise floor*", lambda n: f"{reports[n]['noise_floor'][HEADLINE[n]]:.3g}"))
    return "\n".join(lines) + "\n"


CARDS = "docs/methods"
CARD_RESULTS = "## Results"


def card_markdown(out_dir: str, method: str) -> str:
    """``method``'s rows (and its ``_4step`` rows) in every benchmark's table: the headline metric,
    its ratio to the teacher's best, mode coverage or class accuracy where scored, and the cost."""
    lines = ["| benchmark | row | NFE | headline | / teacher best | modes or classes | updates | wall time (s) |", "|---" * 8 + "|"]
    for name, metric in HEADLINE.items():
        report = read_json(os.path.join(out_dir, f"{name}.json"))
        if report is None:
            continue
        best, _ = teacher_best(report, metric)
        for row in (method, method + FEW_STEP_SUFFIX):
            student = report["students"].get(row)
            for nfe, v in ({} if student is None else student["by_nfe"]).items():
                extra = next((f"{k} {v[k]:.3g}" for k in ("mode_coverage", "class_acc") if k in v), "–")
                lines.append(f"| {name} | {row} | {nfe} | {metric} {v[metric]:.4g} | {v[metric] / best:.3g} | {extra} | {student['updates']} | {student['train_seconds']:.0f} |")
    if len(lines) == 2:
        return "No rows yet: run `python experiments/leaderboard.py --methods " + method + " --readme`.\n"
    return "\n".join(lines) + "\n\nAll metrics and the teachers' curves: `docs/results.md`. Regenerated by `experiments/leaderboard.py --readme`.\n"


def update_method_cards(out_dir: str, cards: str = CARDS) -> None:
    """Each card's text after its results heading becomes its rows (``card_markdown``)."""
    for method in METHODS:
        path = os.path.join(cards, f"{method}.md")
        if not os.path.exists(path):
            continue
        text = open(path).read()
        if CARD_RESULTS not in text:
            raise SystemExit(f"{path} has no '{CARD_RESULTS}' heading for its rows")
        head = text.split(CARD_RESULTS, 1)[0]
        with open(path, "w") as f:
            f.write(head + CARD_RESULTS + "\n\n" + card_markdown(out_dir, method))


def update_readme(out_dir: str, readme: str = "README.md", page: str = RESULTS_PAGE) -> None:
    """The full tables into ``page``, each method's rows into its card and the summary table into ``readme``."""
    update_results_page(out_dir, page)
    update_method_cards(out_dir)
    replace_block(readme, summary_markdown(out_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", default="grid25,digits_gmm,digits")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"student methods (default: all of {', '.join(METHODS)})")
    parser.add_argument("--trained-only", action="store_true", help="tabulate finished runs only; train nothing new")
    parser.add_argument("--seeds", type=int, default=1, help="train seeds 0..N-1 of each selected method (rows: median [min, max])")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default="results")
    parser.add_argument("--readme", action="store_true", help=f"also rewrite the summary in README.md and the tables in {RESULTS_PAGE}")
    args = parser.parse_args()
    names = args.benchmarks.split(",")
    for name in names:
        methods = [m for m in args.methods.split(",") if m]
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
        runs = os.path.join(args.runs, "quick") if args.quick else args.runs
        run_benchmark(name, methods, args.quick, runs, args.out, trained_only=args.trained_only, seeds=args.seeds)
        print(open(os.path.join(args.out, f"{name}.md")).read())
    if args.readme:
        update_readme(args.out)


if __name__ == "__main__":
    main()
