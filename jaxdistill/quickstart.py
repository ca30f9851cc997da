"""``jaxdistill quickstart``: the whole path on the built-in default in a few minutes.

1. train (or reuse) an MLP diffusion teacher on the 2-D 25-mode grid;
2. distil it into a one-step student with ``DEFAULT_METHOD`` or any method given;
3. print quality vs NFE (sliced W2, MMD, mode coverage against the exact mixture)
   for the teacher's samplers and the student, and save a plot and JSON.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import jax
import ml_collections
import numpy as np

from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25
from jaxdistill.build import build, load_run
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import as_path
from jaxdistill.data.sources import MixtureSource
from jaxdistill.eval.benchmark import Evaluator, evaluate_generator
from jaxdistill.objectives import registry
from jaxdistill.plots import save_quality_vs_nfe, save_sample_figure
from jaxdistill.train.checkpoint import Checkpointer
from jaxdistill.train.engine import Trainer
from jaxdistill.train.sampling import generate_samples

TEACHER_SAMPLERS = ("euler", "heun", "dpmpp_2m")
QUICK_TEACHER_STEPS, QUICK_STUDENT_STEPS, QUICK_PAIRS = 3000, 2000, 8192
# Methods that distil a trained teacher into a one-step (or, ADD/LADD, 4-step) student.
METHODS = ("kd", "cd", "ct", "ict", "ect", "vsd", "dmd", "dmd2", "fdistill", "sid", "sida", "sim", "add", "ladd")
# Consistency distillation: the best one-step student over the three benchmarks among the methods
# whose quickstart ends within 5 minutes on 2 cores (results/quickstart_timing.json), and it keeps
# every mode of mixtures nobody tuned it for (experiments/unseen_mixtures.py).
DEFAULT_METHOD = "cd"


def train_or_reuse(config: ml_collections.ConfigDict, workdir: str, source: Optional[MixtureSource] = None) -> None:
    """Train unless ``workdir`` already holds a checkpoint at the final step."""
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    latest = ckpt.latest_step()
    ckpt.close()
    if latest == int(config.train.num_steps):
        print(f"reusing the finished run in {workdir} (step {latest})")
        return
    built = build(config, source=source)
    Trainer(built.objective, built.frozen, built.config, workdir, built.data_factory, probe=built.probe, annotated=built.annotated).train()


def teacher_config(fast: bool) -> ml_collections.ConfigDict:
    """The grid25 teacher on a lighter budget than its benchmark row, to stay within minutes."""
    config = grid25.teacher("smoke" if fast else None)
    if not fast:
        config.train.num_steps = config.optim.decay_steps = QUICK_TEACHER_STEPS
    return config


def on_source(config: ml_collections.ConfigDict, source: Optional[MixtureSource]) -> ml_collections.ConfigDict:
    """``config`` for the data of ``source`` instead of the grid: its EDM ``sigma_data`` is the
    data's standard deviation (Karras et al. 2022)."""
    if source is not None:
        config.sigma_data = float(np.std(source.x))
    return config


def student_config(method: str, teacher_dir: str, fast: bool) -> ml_collections.ConfigDict:
    """``method`` with its paper settings distilling the trained grid25 teacher in ``teacher_dir``
    (students and critics start from its weights), on the quickstart's lighter budget."""
    if method not in METHODS:
        raise ConfigError(f"quickstart distils with one of {METHODS}, not {method!r}")
    config = grid25.student(method, "smoke" if fast else None, teacher_workdir=teacher_dir)
    if registry.section(method) == "consistency":
        config.eval.nfes = (1, 2, 4)  # consistency models also sample in a few steps
    if registry.section(method) == "adversarial":
        benchmarks.few_step(config, config.adversarial.generator_steps)  # the paper's 4-step student, read at 1 and 4 NFE
    if method == "sida":
        config.sid.adv_critic_weight = 2 / 3072  # SiDA's GAN weight scaled by d / 3072 (CIFAR-10's d), docs/methods/sida.md
    if not fast:
        config.train.num_steps = config.optim.decay_steps = QUICK_STUDENT_STEPS
        if method == "kd":
            config.kd.num_pairs = QUICK_PAIRS
    return config


def distil(workdir: str, method: str, *, fast: bool = False, source: Optional[MixtureSource] = None) -> tuple[str, str]:
    """Train (or reuse) the teacher in ``workdir/teacher`` on the grid (or on ``source``), then
    distil it by ``method`` into ``workdir/<method>_student``; returns both run folders."""
    teacher_dir, student_dir = os.path.join(workdir, "teacher"), os.path.join(workdir, f"{method}_student")
    student_cfg = on_source(student_config(method, teacher_dir, fast), source)  # a bad method fails before any training
    data = "the 25-mode grid" if source is None else f"the given {source.mixture.num_components}-component mixture"
    print(f"== 1/3 teacher: MLP diffusion model on {data} ==")
    train_or_reuse(on_source(teacher_config(fast), source), teacher_dir, source)
    print(f"== 2/3 student: one-step distillation of that teacher by {method} ==")
    train_or_reuse(student_cfg, student_dir, source)
    return teacher_dir, student_dir


def run_quickstart(workdir: str = "runs/quickstart", *, fast: bool = False, num_samples: Optional[int] = None, method: str = DEFAULT_METHOD) -> dict:
    teacher_dir, student_dir = distil(workdir, method, fast=fast)
    print("== 3/3 evaluation against the exact mixture ==")
    teacher_run, student_run = load_run(teacher_dir), load_run(student_dir)
    evaluator = Evaluator(teacher_run.config.data, num_samples=int(num_samples or teacher_run.config.eval.num_samples))
    nfes = (1, 2, 4, 8, 16, 32) if not fast else (1, 2, 4)
    curves = {}
    for sampler in TEACHER_SAMPLERS:
        objective = dataclasses.replace(teacher_run.built.objective, sampler=sampler)
        curves[f"teacher {sampler}"] = evaluate_generator(evaluator, _generator(objective, teacher_run), nfes)
    students = {f"{method} student": evaluate_generator(evaluator, _generator(student_run.built.objective, student_run), (1,))}

    report = {"noise_floor": evaluator.floor, "teacher": curves, "student": students}
    as_path(os.path.join(workdir, "quickstart.json")).write_text(json.dumps(report, indent=2))
    plot = save_quality_vs_nfe(
        {k: {n: v["sw2"] for n, v in c.items()} for k, c in curves.items()},
        os.path.join(workdir, "quality_vs_nfe.png"),
        metric="sliced W2 (lower is better)",
        points={k: {n: v["sw2"] for n, v in c.items()} for k, c in students.items()},
        floor=evaluator.floor["sw2"],
        title="grid25: teacher samplers vs one-step student",
    )
    student_samples, _ = _generator(student_run.built.objective, student_run)(1, 2000)
    save_sample_figure(student_samples, os.path.join(workdir, "student_samples.png"), title=f"{method} student, 1 NFE", reference=evaluator.reference[:2000])
    print(format_quickstart(report))
    print(f"plot: {plot}\nresults: {os.path.join(workdir, 'quickstart.json')}")
    return report


def _generator(objective, run):
    def generate(nfe: int, n: int):
        x = generate_samples(objective, run.trainable, run.frozen, n, nfe=nfe, rng=jax.random.key(123))
        return x, None

    return generate


def format_quickstart(report: dict) -> str:
    lines = ["| model | NFE | SW2 | MMD | mode coverage |", "|---|---|---|---|---|"]
    for group in ("teacher", "student"):
        for name, by_nfe in report[group].items():
            for nfe, m in by_nfe.items():
                lines.append(f"| {name} | {nfe} | {m['sw2']:.4f} | {m['mmd']:.2e} | {m['mode_coverage']:.2f} |")
    f = report["noise_floor"]
    lines.append(f"| noise floor | - | {f['sw2']:.4f} | {f['mmd']:.2e} | {f['mode_coverage']:.2f} |")
    return "\n".join(lines)
