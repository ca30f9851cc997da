"""``jaxdistill quickstart``: the whole path on the built-in default in a few minutes.

1. train (or reuse) an MLP diffusion teacher on the 2-D 25-mode grid;
2. distil it into a one-step student with ``DEFAULT_METHOD`` (the best one-step method on
   the digits benchmark, see README's results) or any method given;
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

from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25
from jaxdistill.build import build, load_run
from jaxdistill.core.errors import ConfigError
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
DEFAULT_METHOD = "dmd2"  # the best one-step method on digits in README's results (FD-digits 4.94 at 1 NFE; ECT 7.7)


def train_or_reuse(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Train unless ``workdir`` already holds a checkpoint at the final step."""
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    latest = ckpt.latest_step()
    ckpt.close()
    if latest == int(config.train.num_steps):
        print(f"reusing the finished run in {workdir} (step {latest})")
        return
    built = build(config)
    Trainer(built.objective, built.frozen, config, workdir, built.data_factory).train()


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


def run_quickstart(workdir: str = "runs/quickstart", *, fast: bool = False, num_samples: Optional[int] = None, method: str = DEFAULT_METHOD) -> dict:
    preset = "smoke" if fast else None
    teacher_dir = os.path.join(workdir, "teacher")
    student_cfg = student_config(method, teacher_dir, fast)  # a bad method fails before any training
    student_dir = os.path.join(workdir, f"{method}_student")

    print("== 1/3 teacher: MLP diffusion model on the 25-mode grid ==")
    teacher_cfg = grid25.teacher(preset)
    if not fast:  # a lighter budget than the benchmark row, to stay within a few minutes
        teacher_cfg.train.num_steps = teacher_cfg.optim.decay_steps = QUICK_TEACHER_STEPS
    train_or_reuse(teacher_cfg, teacher_dir)

    print(f"== 2/3 student: one-step distillation of that teacher by {method} ==")
    train_or_reuse(student_cfg, student_dir)

    print("== 3/3 evaluation against the exact mixture ==")
    num = int(num_samples or teacher_cfg.eval.num_samples)
    evaluator = Evaluator(teacher_cfg.data, num_samples=num)
    teacher_run, student_run = load_run(teacher_dir), load_run(student_dir)
    nfes = (1, 2, 4, 8, 16, 32) if not fast else (1, 2, 4)
    curves = {}
    for sampler in TEACHER_SAMPLERS:
        objective = dataclasses.replace(teacher_run.built.objective, sampler=sampler)
        curves[f"teacher {sampler}"] = evaluate_generator(evaluator, _generator(objective, teacher_run), nfes)
    students = {f"{method} student": evaluate_generator(evaluator, _generator(student_run.built.objective, student_run), (1,))}

    report = {"noise_floor": evaluator.floor, "teacher": curves, "student": students}
    with open(os.path.join(workdir, "quickstart.json"), "w") as f:
        json.dump(report, f, indent=2)
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
