"""Does the quickstart keep every mode of a mixture nobody tuned it for? (issue 25)

For each mixture seed: a random mixture of unequal full-covariance Gaussians
(``gaussian_mixture.random(seed, components, dim)``: means ~ N(0, 9 I), weights ~ Dirichlet(2)),
200,000 samples of it, and the quickstart's own path on them (``quickstart.distil``: its MLP
teacher trained on the samples, then each method's one-step student at the quickstart's budget).
Students and the teacher are scored against the exact mixture: modes kept (a component counts as
kept with at least 20% of its expected share), the smallest kept/expected share, sliced W2 and
the multi-scale MMD.

    python experiments/unseen_mixtures.py [--methods kd,cd] [--seeds 0,1,2] [--dim 16] [--components 7]

Prints a table and writes ``results/unseen_mixtures.json``, keeping the rows already there that
this call does not redo; runs are kept under ``runs/unseen_mixtures/`` and reused.
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import ml_collections
import numpy as np

from jaxdistill import quickstart
from jaxdistill.build import load_run
from jaxdistill.data.sources import MixtureSource
from jaxdistill.eval import metrics
from jaxdistill.eval.benchmark import Evaluator
from jaxdistill.models import gaussian_mixture
from jaxdistill.train.sampling import generate_samples

NUM_SAMPLES, DATA_SIZE, TEACHER_NFE = 5000, 200_000, 32


def score(evaluator: Evaluator, samples: np.ndarray) -> dict:
    """The evaluator's metrics plus the modes kept and the smallest count / expected count."""
    share = metrics.mode_shares(np.asarray(evaluator.mixture.assign(samples)), evaluator.mixture.weights)
    out = evaluator.score(samples)
    return {**out, "modes_kept": int(np.sum(share >= metrics.MODE_COVERAGE_THRESHOLD)), "min_share": float(share.min())}


def run_samples(workdir: str, nfe: int) -> np.ndarray:
    run = load_run(workdir)
    return np.asarray(generate_samples(run.built.objective, run.trainable, run.frozen, NUM_SAMPLES, nfe=nfe, rng=jax.random.key(7)))


def merged(path: str, args: argparse.Namespace, rows: list[dict]) -> list[dict]:
    """``rows`` and the rows of the report already at ``path`` (same mixtures and sample count)
    that they do not redo, so ``--methods dmd2`` adds DMD2's rows to the committed ones."""
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        old = json.load(f)
    if (old["dim"], old["components"], old["num_samples"]) != (args.dim, args.components, NUM_SAMPLES):
        return rows
    redone = {(r["seed"], r["model"]) for r in rows}
    kept = [r for r in old["rows"] if (r["seed"], r["model"]) not in redone]
    return sorted(kept + rows, key=lambda r: (r["seed"], r["model"] in ("teacher", "exact samples"), r["model"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="kd,cd")
    parser.add_argument("--seeds", default="0,1,2", help="mixture seeds (each a different mixture)")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--components", type=int, default=7)
    parser.add_argument("--runs", default="runs/unseen_mixtures")
    parser.add_argument("--out", default="results/unseen_mixtures.json")
    args = parser.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        mixture = gaussian_mixture.random(seed, args.components, args.dim)
        source = MixtureSource(mixture, DATA_SIZE, seed=seed)
        evaluator = Evaluator(ml_collections.ConfigDict(source.config()), num_samples=NUM_SAMPLES)
        workdir = os.path.join(args.runs, f"d{args.dim}_k{args.components}_seed{seed}")
        for method in args.methods.split(","):
            teacher_dir, student_dir = quickstart.distil(workdir, method, source=source)
            rows.append({"seed": seed, "model": f"{method} student", "nfe": 1, **score(evaluator, run_samples(student_dir, 1))})
        rows.append({"seed": seed, "model": "teacher", "nfe": TEACHER_NFE, **score(evaluator, run_samples(teacher_dir, TEACHER_NFE))})
        rows.append({"seed": seed, "model": "exact samples", "nfe": 0, **score(evaluator, np.asarray(mixture.sample(jax.random.key(99), NUM_SAMPLES)[0]))})
    report = {"dim": args.dim, "components": args.components, "num_samples": NUM_SAMPLES, "rows": merged(args.out, args, rows)}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"| mixture seed | model | NFE | modes kept (of {args.components}) | min kept/expected | sw2 | mmd |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['seed']} | {r['model']} | {r['nfe']} | {r['modes_kept']} | {r['min_share']:.2f} | {r['sw2']:.4f} | {r['mmd']:.3g} |")


if __name__ == "__main__":
    main()
