#!/usr/bin/env python3
"""gradci against pytest-xdist on PyTorch's reference suite, in one run, on the same selection.

    python benchmarks/bench_vs_pytest.py            # the whole CPU suite (about 50 minutes on 2 cores)
    python benchmarks/bench_vs_pytest.py --quick    # a subset with long and short tests (about 10 minutes)
    python benchmarks/bench_vs_pytest.py --ops 'linalg.*'
    python benchmarks/bench_vs_pytest.py --suite forward --no-plain   # the forward-mode AD suite

Runs, one after the other on an otherwise idle machine:

  1. ``gradci run`` with its defaults (one worker per core, one intra-op thread per worker, jemalloc
     or tcmalloc when installed) and, when it preloaded one, again with ``--allocator system``;
  2. ``OMP_NUM_THREADS=1 pytest -n 2`` on the reference file (what an expert would run);
  3. ``pytest -n 2`` on the reference file (what most people run);

and reports each wall time, the ratios, the compute floor (gradci's summed test durations divided by
its workers), gradci's overhead over that floor, its time to first result, the peak memory of the
largest process of each command and of a gradci worker, how evenly 4 shards planned from the shipped
durations split this run's time, and whether all runs agree on every test's outcome.

The reference file is $GRADCI_REFERENCE (default ../shared/reference/test_ops_gradients.py); with
--suite forward, $GRADCI_REFERENCE_FWD (default gradci's own oracle, tests/parity/fwd_reference.py). Results go
to --out (default .bench/) as bench.json and bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "parity"))
import harness  # noqa: E402 - the parity harness's pytest plugin records pytest's outcomes

# Long gradgrad tests, mid-size ones, and many quick skips: a small model of the full suite.
QUICK = [
    "cumprod",
    "linalg.svd",
    "nn.functional.max_pool2d",
    "addmm",
    "add",
    "mul",
    "div",
    "abs",
    "acosh",
    "cov",
    "nn.functional.hardsigmoid",
    "cdist",
    "resize_",
    "NumpyMulCustomOp",
    "cond",
    "sort",
    "nn.functional.conv2d",
    "linalg.det",
    "index_put",
    "masked.sum",
]

# Measures the command's whole process tree: RUSAGE_CHILDREN's maxrss is the largest descendant's.
_TIMER = (
    "import json, resource, subprocess, sys, time\n"
    "start = time.monotonic()\n"
    "code = subprocess.run(sys.argv[1:], stderr=subprocess.STDOUT).returncode\n"
    "wall = time.monotonic() - start\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'wall': wall, 'code': code, 'max_rss_mib': usage.ru_maxrss / 1024,"
    " 'cpu': usage.ru_utime + usage.ru_stime}), file=sys.stderr)\n"
)


def timed(command: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> dict[str, Any]:
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", _TIMER, *command],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    measured = json.loads(proc.stderr.strip().splitlines()[-1])
    if measured["code"] not in (0, 1):
        raise SystemExit(f"{command[:3]} failed with exit code {measured['code']}; see {log}")
    return dict(measured)


def machine(run: dict[str, Any]) -> dict[str, Any]:
    """The machine a gradci results file's ``run`` was measured on."""
    return {
        "cores": os.cpu_count(),
        "cpu": run.get("device_name"),
        "python": platform.python_version(),
        "torch": run["torch_version"],
    }


def reference_or_exit(parser: argparse.ArgumentParser, suite: str) -> Path:
    """The suite's upstream file, or a one-line usage error naming the variable to set."""
    reference = harness.reference_path(suite)
    if not reference.is_file():
        variable = "GRADCI_REFERENCE_FWD" if suite == "forward" else "GRADCI_REFERENCE"
        parser.error(f"reference suite not found at {reference}; set {variable}")
    return reference


def fresh_folder(folder: Path) -> Path:
    """``folder`` with no outcome records of an earlier run in it."""
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    return folder


def shard_balance(tests: list[dict[str, Any]], count: int) -> float:
    """Slowest over mean shard, for the partition gradci plans (shipped durations), timed with this run's."""
    from gradci.durations import shipped_durations
    from gradci.plan import PlannedTest, partition

    planned = [PlannedTest(t["id"], t["check"], t["op"], t["db"], t["device"], t["dtype"]) for t in tests]
    measured = {t["id"]: t["duration"] for t in tests}
    loads = [
        sum(measured[t.id] for t in shard) for shard in partition(planned, count, shipped_durations("cpu"))
    ]
    return round(max(loads) / (sum(loads) / count), 3)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", default="", help="comma-separated op patterns (default: the whole suite)")
    parser.add_argument("--quick", action="store_true", help=f"a quick subset: {','.join(QUICK)}")
    parser.add_argument("--workers", type=int, default=2, help="pytest -n (gradci uses its default)")
    parser.add_argument("--out", type=Path, default=REPO / ".bench")
    parser.add_argument(
        "--suite",
        choices=("backward", "forward"),
        default="backward",
        help="forward: test_ops_fwd_gradients.py ($GRADCI_REFERENCE_FWD) against gradci run --checks forward",
    )
    parser.add_argument(
        "--no-plain", action="store_true", help="leave out plain pytest -n 2 (the slowest, by far)"
    )
    args = parser.parse_args()
    reference = reference_or_exit(parser, args.suite)
    ops = QUICK if args.quick else [p for p in args.ops.replace(" ", ",").split(",") if p]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    names = out / "ops.txt"
    names.write_text("\n".join(harness.formatted_names(ops, [])))
    runs: dict[str, dict[str, Any]] = {}

    gradci_cmd = [
        sys.executable,
        "-m",
        "gradci",
        "run",
        "--progress",
        "plain",
        "--json",
        str(out / "gradci.json"),
        "--junit",
        str(out / "gradci.xml"),
        "--checks",
        args.suite,
    ] + (["--ops", ",".join(ops)] if ops else [])
    print("gradci run ...", flush=True)
    runs["gradci"] = timed(gradci_cmd, env=dict(os.environ), cwd=out, log=out / "gradci.log")
    allocator = json.loads((out / "gradci.json").read_text())["run"].get("allocator") or "system"
    if allocator != "system":  # show what the preloaded malloc is worth
        print("gradci run --allocator system ...", flush=True)
        system_cmd = [*gradci_cmd, "--allocator", "system", "--json", str(out / "gradci-system-malloc.json")]
        runs["gradci_system_malloc"] = timed(
            system_cmd, env=dict(os.environ), cwd=out, log=out / "gradci-system.log"
        )

    pytest_runs = (("pytest_omp1", True),) + (() if args.no_plain else (("pytest", False),))
    for label, one_thread in pytest_runs:
        records = fresh_folder(out / f"{label}-outcomes")
        command, env = harness.pytest_invocation(
            reference, out, args.workers, records, names, one_thread=one_thread
        )
        print(f"{label.replace('_omp1', ' (OMP_NUM_THREADS=1)')} -n {args.workers} ...", flush=True)
        runs[label] = timed(command, env=env, cwd=out, log=out / f"{label}.log")
        runs[label]["outcomes"] = harness.read_records(records)[0]

    data = json.loads((out / "gradci.json").read_text())
    tests = data["tests"]
    workers = data["run"]["workers"]
    floor = sum(t["duration"] for t in tests) / workers
    ours = {t["id"]: harness.AS_PYTEST[t["outcome"]] for t in tests}
    if "gradci_system_malloc" in runs:
        other = json.loads((out / "gradci-system-malloc.json").read_text())["tests"]
        runs["gradci_system_malloc"]["outcomes"] = {t["id"]: harness.AS_PYTEST[t["outcome"]] for t in other}
    same = all(r["outcomes"] == ours for k, r in runs.items() if k != "gradci")
    balance = shard_balance(tests, 4)
    summary = {
        "machine": machine(data["run"]),
        "selection": ops or "all",
        "tests": len(tests),
        "gradci_workers": workers,
        "gradci_threads_per_worker": data["run"]["threads_per_worker"],
        "gradci_allocator": allocator,
        "wall": {k: round(v["wall"], 1) for k, v in runs.items()},
        "ratio_vs_pytest_omp1": round(runs["gradci"]["wall"] / runs["pytest_omp1"]["wall"], 3),
        **(
            {"ratio_vs_pytest": round(runs["gradci"]["wall"] / runs["pytest"]["wall"], 3)}
            if "pytest" in runs
            else {}
        ),
        **(
            {
                "system_malloc_ratio_vs_pytest_omp1": round(
                    runs["gradci_system_malloc"]["wall"] / runs["pytest_omp1"]["wall"], 3
                )
            }
            if "gradci_system_malloc" in runs
            else {}
        ),
        "compute_floor": round(floor, 1),
        "gradci_overhead_over_floor": round(runs["gradci"]["wall"] - floor, 1),
        "time_to_first_result": data["run"].get("first_result_after"),
        "peak_rss_mib": {k: round(v["max_rss_mib"]) for k, v in runs.items()},
        "gradci_worker_peak_rss_mib": data["run"].get("worker_peak_rss_mib"),
        "same_outcomes": same,
        "shards_4_slowest_over_mean": balance,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    (out / "bench.json").write_text(json.dumps(summary, indent=1) + "\n")
    table = "\n".join(
        [
            f"| {summary['tests']} tests ({'quick subset' if args.quick else summary['selection']}) | wall | ratio gradci/this |",
            "|---|---|---|",
            f"| gradci run ({workers} workers x {summary['gradci_threads_per_worker']} thread, malloc: {allocator}) | {summary['wall']['gradci']} s | |",
            *(
                [f"| gradci run --allocator system | {summary['wall']['gradci_system_malloc']} s | |"]
                if "gradci_system_malloc" in runs
                else []
            ),
            f"| OMP_NUM_THREADS=1 pytest -n {args.workers} | {summary['wall']['pytest_omp1']} s | {summary['ratio_vs_pytest_omp1']} |",
            *(
                [
                    f"| pytest -n {args.workers} | {summary['wall']['pytest']} s | {summary['ratio_vs_pytest']} |"
                ]
                if "pytest" in runs
                else []
            ),
            f"| compute floor (gradci's test durations / {workers}) | {summary['compute_floor']} s | |",
        ]
    )
    notes = (
        f"gradci over the floor: {summary['gradci_overhead_over_floor']} s; first result after "
        f"{summary['time_to_first_result']} s; peak RSS of the largest process (MiB): {summary['peak_rss_mib']}, "
        f"of a gradci worker: {summary['gradci_worker_peak_rss_mib']}; "
        f"same outcomes on all three: {same}; 4 shards planned from the shipped durations, timed with this run's: "
        f"slowest/mean = {balance}; machine: {summary['machine']}"
    )
    (out / "bench.md").write_text(table + "\n\n" + notes + "\n")
    print(table)
    print(notes)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
