"""Fingerprints of trained smoke runs: the guard that a refactoring leaves the numbers alone.

Each entry trains one config file's smoke preset in-process and records, per trained network,
a SHA-256 of every parameter, optimiser and EMA array (bit-identity) and the sum and absolute
sum of its parameters (of every array, for trainable entries that are not network states) (for a tolerant check on machines whose XLA rounds differently).

Record (once, on the code before a refactoring) or check every entry::

    python tests/smoke_fingerprints.py --record   # writes tests/data/smoke_fingerprints.json
    python tests/smoke_fingerprints.py            # compares, exits 1 on any difference

``test_smoke_fingerprints.py`` checks a few entries within a tolerance on every CI run, under the
suite's XLA flags (``conftest.py``). This script runs without LLVM optimisation but with XLA's
default CPU emitters, the flags the fingerprints were recorded with, so its bit-identity check
compares like with like.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RECORD = os.path.join(HERE, "data", "smoke_fingerprints.json")
DIGITS_TEACHER = "digits/teacher.py:smoke"

# Every method's smoke preset on grid25, the K-step generators, the conditional digits mixture,
# and the trained-teacher path on digits (each digits student distils the smoke teacher above).
ENTRIES = (
    [f"grid25/{m}.py:smoke" for m in ("teacher", "kd", "pd", "cd", "ct", "ict", "ect", "shortcut", "meanflow")]
    + [f"grid25/{m}.py:smoke" for m in ("vsd", "dmd", "dmd2", "fdistill", "sid", "sida", "sim", "add", "ladd")]
    + [f"grid25/{m}.py:smoke,4step" for m in ("dmd", "dmd2", "sid")]
    + [f"digits_gmm/{m}.py:smoke" for m in ("kd", "guided", "pd", "dmd2", "sida", "ladd")]
    + [DIGITS_TEACHER]
    + [f"digits/{m}.py:smoke" for m in ("cd", "ect", "guided", "dmd2", "sid", "add")]
)


def _state_fingerprint(state) -> dict:
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(str(array.dtype).encode() + str(array.shape).encode() + array.tobytes())
    params = [np.asarray(p, np.float64) for p in jax.tree.leaves(getattr(state, "params", state))]
    return {
        "sha256": digest.hexdigest(),
        "param_sum": float(sum(p.sum() for p in params)),
        "param_abs_sum": float(sum(np.abs(p).sum() for p in params)),
    }


def train_entry(entry: str, workdir: str, teacher_workdir: str = "") -> dict:
    """Train ``entry``'s smoke preset in ``workdir``; fingerprints of each trained network."""
    from jaxdistill.build import build
    from jaxdistill.config import load
    from jaxdistill.train.engine import Trainer

    overrides = [f"teacher.workdir={teacher_workdir}"] if entry.startswith("digits/") and entry != DIGITS_TEACHER else []
    config = load(os.path.join(ROOT, "configs", entry), overrides)
    built = build(config)
    result = Trainer(built.objective, built.frozen, config, workdir, built.data_factory, show_progress=False).train()
    return {name: _state_fingerprint(state) for name, state in sorted(result.trainable.items())}


def fingerprints(entries, root: str) -> dict:
    """Fingerprints of ``entries``, trained under ``root`` (the digits teacher first if needed)."""
    out = {}
    teacher = os.path.join(root, "digits_teacher")
    needs_teacher = any(e.startswith("digits/") for e in entries)
    ordered = ([DIGITS_TEACHER] if needs_teacher else []) + [e for e in entries if e != DIGITS_TEACHER or not needs_teacher]
    for i, entry in enumerate(ordered):
        workdir = teacher if entry == DIGITS_TEACHER else os.path.join(root, f"run{i}")
        out[entry] = train_entry(entry, workdir, teacher)
        print(entry, {k: v["sha256"][:12] for k, v in out[entry].items()}, flush=True)
    return {e: out[e] for e in entries}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write the fingerprints instead of checking them")
    parser.add_argument("entries", nargs="*", help="config entries (default: all)")
    args = parser.parse_args(argv)
    entries = args.entries or ENTRIES
    with tempfile.TemporaryDirectory() as root:
        found = fingerprints(entries, root)
    if args.record:
        os.makedirs(os.path.dirname(RECORD), exist_ok=True)
        with open(RECORD, "w") as f:
            json.dump(found, f, indent=1, sort_keys=True)
        print(f"wrote {RECORD}")
        return 0
    recorded = json.load(open(RECORD))
    changed = [e for e in entries if found[e] != recorded.get(e)]
    for e in changed:
        print(f"CHANGED {e}:\n  recorded {recorded.get(e)}\n  now      {found[e]}")
    print(f"{len(entries) - len(changed)} of {len(entries)} entries bit-identical")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
