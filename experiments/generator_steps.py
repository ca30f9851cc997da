"""Step by step through a few-step generator run: which of its K steps gains or loses quality.

A K-step generator (``<method>_4step`` rows) samples x0 = G(x_{t_i}, t_i), then re-noises it to
t_{i+1} (``GeneratorDistillation.chain``). For every step i this prints the benchmark's metrics of

* ``chain``: the samples after i + 1 steps from noise (what ``jaxdistill eval`` scores at NFE i + 1);
* ``data@t_i``: training data (its labels kept) re-noised at t_i, the input a perfect chain
  would hand step i;
* ``G(data@t_i)``: the generator's one step from that input;
* ``teacher x0``: the teacher's denoiser from that input (the exact posterior mean on mixtures;
  one step, so blurred where the posterior is wide).

A step whose ``G(data@t_i)`` scores no better than its input passes the noise through instead of
removing it. The data sets are the training data (on digits all 1797 real digits, which are also
the FD reference, so ``data@t_i``'s FD-digits at small noise is near 0 by construction). Read
this way, digits_gmm's DMD 4-step run (README, results) ends with such a step: at sigma 0.17 its
output's Mahalanobis ratio is 3.8 against the input's 4.7 and the exact posterior mean's 0.53,
which is where its NFE-4 class match (0.70, against 1.00 at NFE 1) is lost.

Usage: python experiments/generator_steps.py --workdir runs/digits_gmm/dmd_4step [--num 4000]
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.build import load_run
from jaxdistill.data.sources import make_source
from jaxdistill.eval.benchmark import Evaluator
from jaxdistill.objectives.generator import GeneratorDistillation
from jaxdistill.train.sampling import class_labels, generate_samples

SHOWN = ("sw2", "mode_coverage", "class_match", "nearest_mean_match", "mahalanobis", "fd_digits", "class_acc")


def data_with_labels(data_config, num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num`` training records drawn without replacement (all of them if fewer): (x, labels)."""
    source = make_source(data_config)
    picks = np.random.default_rng(seed).permutation(len(source))[:num]
    records = [source[int(i)] for i in picks]
    return np.stack([r["x"] for r in records]), np.array([r["label"] for r in records], np.int32)


def step_report(objective: GeneratorDistillation, trainable, frozen, evaluator: Evaluator, data, labels, num: int) -> list[dict]:
    """Per generator step: metrics of the chain, of re-noised data, of G's and the teacher's one step."""
    cond = None if objective.num_classes == 0 else jnp.asarray(labels)
    params = trainable["generator"].eval_params
    times = objective.generator_times()
    chain_labels = class_labels(objective.num_classes, num)
    score = lambda x, y: evaluator.score(np.asarray(x), y)  # noqa: E731
    rows = []
    for i in range(objective.settings.generator_steps):
        t = jnp.broadcast_to(times[i], (len(data),))
        x_t, _ = objective.noised(jnp.asarray(data), jax.random.key(10 + i), t)
        chain = generate_samples(objective, trainable, frozen, num, nfe=i + 1, rng=jax.random.key(100), labels=chain_labels)
        rows.append({
            "step": i,
            "sigma": float(objective.process.sigma_ratio(times[i])),
            "chain": score(chain, chain_labels),
            "data@t_i": score(x_t, labels),
            "G(data@t_i)": score(objective.generator_x0(params, x_t, t, cond), labels),
            "teacher x0": score(objective.teacher_x0(frozen, x_t, t, cond), labels),
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    """One markdown table: a line per (step, sample set), the metrics the benchmark reports."""
    keys = [k for k in SHOWN if k in rows[0]["chain"]]
    lines = ["| step | sigma | samples | " + " | ".join(keys) + " |", "|---" * (len(keys) + 3) + "|"]
    for row in rows:
        for name in ("chain", "data@t_i", "G(data@t_i)", "teacher x0"):
            cells = " | ".join(f"{row[name][k]:.4g}" for k in keys)
            lines.append(f"| {row['step']} | {row['sigma']:.3g} | {name} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained generator run (dmd, sid, fdistill, ... with generator_steps > 1)")
    parser.add_argument("--num", type=int, default=4000, help="samples per set")
    args = parser.parse_args()
    run = load_run(args.workdir)
    objective = run.built.objective
    if not isinstance(objective, GeneratorDistillation) or objective.teacher is None:
        raise SystemExit(f"{args.workdir} trains {run.config.method!r}; this reads generator methods with a teacher")
    if objective.settings.generator_steps < 2:
        raise SystemExit(f"{args.workdir} has a 1-step generator; train one with the ':4step' preset")
    data, labels = data_with_labels(run.config.data, args.num)
    evaluator = Evaluator(run.config.data, num_samples=len(data))
    print(f"{args.workdir} (step {run.step}), {len(data)} samples per set")
    print(format_rows(step_report(objective, run.trainable, run.frozen, evaluator, data, labels, len(data))))


if __name__ == "__main__":
    main()
