#!/usr/bin/env python3
"""gradci and pytest side by side, one test process each, at the same time: what each test costs.

    python benchmarks/per_test.py --suite forward --ops 'a*,b*,e*,f*,l*'
    python benchmarks/per_test.py --suite forward --ops 'cumprod,linalg.svd,linalg.lu_solve'

``bench_vs_pytest.py`` times whole runs one after another. This one asks a narrower question, free
of the machine's drift between runs: for the same tests, how long does each take inside gradci and
inside pytest? Both start together, each with one test process and one intra-op thread (on two
cores, one each), gradci with the system malloc (``--allocator`` to change it), so what differs is
the runner. It reports, per outcome, both sums of test durations (pytest's from its JUnit XML:
setup, call and teardown) and the mean difference per test, both wall times, and how much of
pytest's wall is the tests' own compute (gradci's durations): the most any runner can save.

The reference file is $GRADCI_REFERENCE, or with --suite forward $GRADCI_REFERENCE_FWD, as for
bench_vs_pytest.py. Results go to --out (default .bench/per-test/) as per-test.json and per-test.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "parity"))
import harness  # noqa: E402 - the parity harness: the pytest command and its op filter
from bench_vs_pytest import fresh_folder, machine, reference_or_exit  # noqa: E402 - beside this file


def _started(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> tuple[subprocess.Popen[bytes], float]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        ), time.monotonic()


def pytest_durations(junit: Path) -> dict[str, float]:
    return {
        case.get("name", ""): float(case.get("time", 0))
        for case in ET.parse(junit).getroot().iter("testcase")
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", required=True, help="comma-separated op patterns")
    parser.add_argument("--exclude", default="", help="comma-separated op patterns to leave out")
    parser.add_argument("--suite", choices=("backward", "forward"), default="forward")
    parser.add_argument(
        "--allocator", default="system", help="gradci's --allocator (default: system, as pytest)"
    )
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "per-test")
    args = parser.parse_args()
    reference = reference_or_exit(parser, args.suite)
    ops = [p for p in args.ops.replace(" ", ",").split(",") if p]
    exclude = [p for p in args.exclude.replace(" ", ",").split(",") if p]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = out / "ops.txt"
    names.write_text("\n".join(harness.formatted_names(ops, exclude)))
    records = fresh_folder(out / "pytest-outcomes")

    gradci_cmd = [sys.executable, "-m", "gradci", "run", "--checks", args.suite, "--ops", ",".join(ops)]
    gradci_cmd += ["--exclude", ",".join(exclude)] if exclude else []
    gradci_cmd += ["--workers", "1", "--threads", "1", "--allocator", args.allocator, "--progress", "none"]
    gradci_cmd += ["--json", str(out / "gradci.json"), "--junit", str(out / "gradci.xml")]
    pytest_cmd, pytest_env = harness.pytest_invocation(reference, out, 1, records, names)
    pytest_cmd += ["--junitxml", str(out / "pytest.xml")]

    print(
        f"gradci and pytest on {len(names.read_text().split())} ops, one test process each, at once ...",
        flush=True,
    )
    runs = {
        "gradci": _started(gradci_cmd, {**os.environ, "OMP_NUM_THREADS": "1"}, out, out / "gradci.log"),
        "pytest": _started(pytest_cmd, pytest_env, out, out / "pytest.log"),
    }
    wall: dict[str, float] = {}
    pending = dict(runs)
    while pending:
        for label, (proc, start) in list(pending.items()):
            if proc.poll() is not None:
                wall[label] = round(time.monotonic() - start, 1)
                if proc.returncode not in (0, 1):
                    raise SystemExit(f"{label} exited with {proc.returncode}; see {out / (label + '.log')}")
                del pending[label]
        time.sleep(0.1)

    data = json.loads((out / "gradci.json").read_text())
    tests = data["tests"]
    theirs = pytest_durations(out / "pytest.xml")
    outcomes = harness.read_records(records)[0]
    same = {t["id"]: harness.AS_PYTEST[t["outcome"]] for t in tests} == outcomes
    by_outcome: dict[str, dict[str, Any]] = defaultdict(lambda: {"tests": 0, "gradci": 0.0, "pytest": 0.0})
    for test in tests:
        if test["id"] not in theirs:
            continue
        row = by_outcome[test["outcome"]]
        row["tests"] += 1
        row["gradci"] += test["duration"]
        row["pytest"] += theirs[test["id"]]
    total = {
        "tests": sum(r["tests"] for r in by_outcome.values()),
        "gradci": sum(r["gradci"] for r in by_outcome.values()),
        "pytest": sum(r["pytest"] for r in by_outcome.values()),
    }
    rows = {**dict(sorted(by_outcome.items())), "all": total}
    for row in rows.values():
        row["mean_difference_ms"] = round(1000 * (row["pytest"] - row["gradci"]) / max(row["tests"], 1), 1)
        row["gradci"], row["pytest"] = round(row["gradci"], 2), round(row["pytest"], 2)
    summary = {
        "machine": machine(data["run"]),
        "suite": args.suite,
        "selection": {"ops": ops, "exclude": exclude},
        "gradci_allocator": args.allocator,
        "wall": wall,
        "ratio_wall": round(wall["gradci"] / wall["pytest"], 3),
        "durations": rows,
        "compute_share_of_pytest_wall": round(total["gradci"] / wall["pytest"], 3),
        "same_outcomes": same,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    (out / "per-test.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        f"| {args.suite} suite, {total['tests']} tests | tests | gradci | pytest | pytest - gradci, per test |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {r['tests']} | {r['gradci']} s | {r['pytest']} s | {r['mean_difference_ms']} ms |"
            for name, r in rows.items()
        ),
        f"| wall (one process each, at once) | | {wall['gradci']} s | {wall['pytest']} s | ratio {summary['ratio_wall']} |",
    ]
    notes = (
        f"the tests' own compute is {summary['compute_share_of_pytest_wall']:.0%} of pytest's wall; "
        f"gradci's malloc: {args.allocator}; same outcomes: {same}; machine: {summary['machine']}"
    )
    (out / "per-test.md").write_text("\n".join(lines) + "\n\n" + notes + "\n")
    print("\n".join(lines))
    print(notes)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
