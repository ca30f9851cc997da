"""Wall time of ``jaxdistill quickstart`` from a fresh start (issue 25: under 5 minutes on 2 cores).

Runs the README's command in a new process with an empty workdir (so the teacher is trained, not
reused, and every function is compiled anew), once per method, and records the wall time, the
machine's core count and the student's row of the printed table.

    python experiments/quickstart_timing.py [--methods kd] [--workdir /tmp/quickstart_timing]

Writes ``results/quickstart_timing.json`` and copies the first method's quality-vs-NFE plot to
``results/quickstart.png``; the README quotes the default method's figure and shows the plot.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

from jaxdistill.quickstart import DEFAULT_METHOD


def time_quickstart(method: str, workdir: str) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    command = [sys.executable, "-m", "jaxdistill.cli", "quickstart", "--method", method, "--workdir", workdir]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"quickstart --method {method} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(workdir, "quickstart.json")) as f:
        student = next(iter(json.load(f)["student"].values()))["1"]
    return {"method": method, "seconds": round(seconds, 1), "student_1nfe": {k: student[k] for k in ("sw2", "mmd", "mode_coverage")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=DEFAULT_METHOD)
    parser.add_argument("--workdir", default="/tmp/quickstart_timing")
    parser.add_argument("--out", default="results/quickstart_timing.json")
    args = parser.parse_args()
    rows = [time_quickstart(m, os.path.join(args.workdir, m)) for m in args.methods.split(",")]
    report = {"date": datetime.date.today().isoformat(), "cpu_cores": os.cpu_count(), "rows": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    shutil.copy(os.path.join(args.workdir, rows[0]["method"], "quality_vs_nfe.png"), os.path.join(os.path.dirname(args.out), "quickstart.png"))
    for r in rows:
        print(f"quickstart --method {r['method']}: {r['seconds'] / 60:.1f} min ({r['seconds']:.0f} s) on {report['cpu_cores']} cores; student at 1 NFE: {r['student_1nfe']}")


if __name__ == "__main__":
    main()
