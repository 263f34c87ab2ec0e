#!/usr/bin/env python3
"""Which of gradci's speed levers pay, measured on one selection of the reference suite.

    python benchmarks/levers.py            # the quick subset of bench_vs_pytest.py
    python benchmarks/levers.py --ops 'linalg.*'

Measured (each a whole `gradci run`, one after the other):
  * workers x intra-op threads: 2 x 1 (gradci's default on 2 cores), 1 x 2, 2 x 2 (oversubscribed);
  * forked workers (default on CPU) against spawned ones (what CUDA needs: each worker imports
    torch and the op databases itself).
Simulated from the default run's own test durations (list scheduling onto the workers):
  * run order: longest first (gradci), test-id order, and the order of a random shuffle.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_vs_pytest import QUICK  # noqa: E402


def run(
    ops: list[str], out: Path, label: str, *args: str, env: dict[str, str] | None = None
) -> tuple[float, dict]:
    results = out / f"{label}.json"
    command = [
        sys.executable,
        "-m",
        "gradci",
        "run",
        "--progress",
        "none",
        "--json",
        str(results),
        "--junit",
        "",
        *args,
    ] + (["--ops", ",".join(ops)] if ops else [])
    start = time.monotonic()
    subprocess.run(command, cwd=out, env={**os.environ, **(env or {})}, check=False, capture_output=True)
    return time.monotonic() - start, json.loads(results.read_text())


def makespan(durations: list[float], workers: int) -> float:
    loads = [0.0] * workers
    heapq.heapify(loads)
    for duration in durations:  # the next test goes to the worker that is free first
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return max(loads)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", default="", help="comma-separated op patterns (default: the quick subset)")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "levers")
    parser.add_argument(
        "--simulate",
        type=Path,
        metavar="RESULTS_JSON",
        help="only simulate run orders from these results (e.g. a full-suite run)",
    )
    args = parser.parse_args()
    ops = [p for p in args.ops.split(",") if p] or QUICK
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    if args.simulate:
        data = json.loads(args.simulate.read_text())
    else:
        wall, data = run(ops, out, "default")
        rows.append(("2 workers x 1 thread, forked (default)", wall))
        for label, extra in (
            ("1 worker x 2 threads", ["--workers", "1", "--threads", "2"]),
            ("2 workers x 2 threads", ["--workers", "2", "--threads", "2"]),
        ):
            rows.append((label, run(ops, out, label.replace(" ", "_"), *extra)[0]))
        rows.append(
            (
                "2 workers x 1 thread, spawned",
                run(ops, out, "spawned", env={"GRADCI_START_METHOD": "spawn"})[0],
            )
        )

    tests = data["tests"]
    workers = data["run"]["workers"] or 2
    by_id = {t["id"]: t["duration"] for t in tests}
    shuffled = list(by_id.values())
    random.Random(0).shuffle(shuffled)
    orders = {
        "longest first": sorted(by_id.values(), reverse=True),
        "test-id order": [by_id[k] for k in sorted(by_id)],
        "shuffled": shuffled,
    }
    counts = sorted({workers, 4, 8, 16})

    lines = (
        [f"{len(tests)} tests; measured wall time of `gradci run`:", ""] if rows else [f"{len(tests)} tests"]
    )
    lines += [f"  {label:<40} {seconds:7.1f} s" for label, seconds in rows]
    lines += ["", "simulated makespan from the measured test durations, by number of workers:", ""]
    lines.append(f"  {'':<16}" + "".join(f"{n:>10}" for n in counts))
    lines.append(f"  {'floor':<16}" + "".join(f"{sum(by_id.values()) / n:>9.1f}s" for n in counts))
    for label, order in orders.items():
        lines.append(f"  {label:<16}" + "".join(f"{makespan(order, n):>9.1f}s" for n in counts))
    text = "\n".join(lines)
    (out / "levers.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
