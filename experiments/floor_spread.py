"""Spread of a mixture benchmark's noise floor: the metrics between independent exact sample sets, over seed pairs.

The results tables' noise floor is one pair of exact sample sets (the evaluator's seeds 1 and 2,
pair 0 here); another pair gives another value. The spread over pairs says how far apart two
rows must be before the difference is more than the draw of the samples.

Usage: python experiments/floor_spread.py --benchmark digits_gmm [--pairs 10] [--num 10000]
"""
from __future__ import annotations

import argparse

import ml_collections
import numpy as np

from jaxdistill.eval.benchmark import Evaluator
from jaxdistill.models.gaussian_mixture import MIXTURES


def floor_pairs(name: str, pairs: int, num: int) -> list[dict[str, float]]:
    """The noise floor of ``benchmark.Evaluator`` with seeds ``0, 2, ..., 2 (pairs - 1)``: pair i
    scores exact samples of key ``2i + 2`` against the reference of key ``2i + 1`` (pair 0 is the
    tables' floor)."""
    if name not in MIXTURES:
        raise SystemExit(f"unknown mixture benchmark {name!r}; choose from {tuple(MIXTURES)}")
    data = ml_collections.ConfigDict({"name": name})
    return [Evaluator(data, num_samples=num, seed=2 * i).floor for i in range(pairs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True, choices=sorted(MIXTURES))
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--num", type=int, default=10_000, help="samples per set (the tables use 10,000)")
    args = parser.parse_args()
    if args.pairs < 2 or args.num < 2:
        parser.error("need --pairs >= 2 and --num >= 2")
    rows = floor_pairs(args.benchmark, args.pairs, args.num)
    for i, row in enumerate(rows):
        print(f"pair {i}: sw2 {row['sw2']:.5f}, mmd {row['mmd']:.3g}" + (" (the tables' floor)" if i == 0 else ""), flush=True)
    for key in ("sw2", "mmd"):
        v = np.array([r[key] for r in rows])
        print(f"{key}: mean {v.mean():.4g}, std {v.std(ddof=1):.2g}, min {v.min():.4g}, max {v.max():.4g} over {len(v)} pairs")


if __name__ == "__main__":
    main()
