"""Parity harness: run the reference suite with pytest and gradci side by side, compare per test id.

Used by ``tests/test_parity.py`` (a varied subset) and ``scripts/parity.py`` (any selection, the
whole suite included). The reference file is PyTorch's ``test/test_ops_gradients.py``; its path comes
from ``GRADCI_REFERENCE`` (default: ``../shared/reference/test_ops_gradients.py`` beside the checkout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference" / "test_ops_gradients.py"
HERE = Path(__file__).resolve().parent

# gradci's outcome as pytest reports it: an error (crash, timeout) and an unexpected success are
# both failures to pytest.
AS_PYTEST = {
    "passed": "passed",
    "failed": "failed",
    "error": "failed",
    "xpassed": "failed",
    "skipped": "skipped",
    "xfailed": "xfailed",
}


# gradci's own oracle for the forward suite, for where the upstream file is absent (fwd_reference.py).
FWD_ORACLE = HERE / "fwd_reference.py"


def reference_path(suite: str = "backward") -> Path:
    """The upstream file of a suite: GRADCI_REFERENCE (backward), GRADCI_REFERENCE_FWD (forward;
    default: gradci's own oracle of it)."""
    if suite == "forward":
        return Path(os.environ.get("GRADCI_REFERENCE_FWD", FWD_ORACLE))
    return Path(os.environ.get("GRADCI_REFERENCE", DEFAULT_REFERENCE))


@dataclass
class Side:
    outcomes: dict[str, str]
    reasons: dict[str, str]
    seconds: float


@dataclass
class Report:
    gradci: Side
    pytest: Side
    only_gradci: list[str] = field(default_factory=list)
    only_pytest: list[str] = field(default_factory=list)
    differing: list[tuple[str, str, str, str, str]] = field(
        default_factory=list
    )  # id, g, p, g reason, p reason

    @property
    def ok(self) -> bool:
        return not (self.only_gradci or self.only_pytest or self.differing)

    def describe(self) -> str:
        lines = [
            f"{len(self.pytest.outcomes)} pytest tests, {len(self.gradci.outcomes)} gradci tests; "
            f"pytest {self.pytest.seconds:.1f}s, gradci {self.gradci.seconds:.1f}s"
        ]
        counts: dict[str, int] = {}
        for outcome in self.gradci.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        lines.append("gradci outcomes: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        lines += [f"only in gradci: {t}" for t in self.only_gradci[:50]]
        lines += [f"only in pytest: {t}" for t in self.only_pytest[:50]]
        lines += [
            f"differs: {t}: gradci {g} ({gr!r}) vs pytest {p} ({pr!r})"
            for t, g, p, gr, pr in self.differing[:100]
        ]
        lines.append(
            "PARITY OK"
            if self.ok
            else f"PARITY BROKEN: {len(self.only_gradci)} only in gradci, {len(self.only_pytest)} only "
            f"in pytest, {len(self.differing)} differ"
        )
        return "\n".join(lines)


def formatted_names(ops: Sequence[str], exclude: Sequence[str]) -> list[str]:
    from gradci.catalog import load_upstream, select

    return sorted({e.formatted_name for e in select(load_upstream(), ops, exclude)})


def run_gradci(
    ops: Sequence[str], exclude: Sequence[str], workers: int, out: Path, extra: Sequence[str] = ()
) -> Side:
    results = out / "gradci-results.json"
    command = [
        sys.executable,
        "-m",
        "gradci",
        "run",
        "--workers",
        str(workers),
        "--progress",
        "plain",
        "--json",
        str(results),
        "--junit",
        str(out / "gradci-junit.xml"),
        *extra,
    ]
    if ops:
        command += ["--ops", ",".join(ops)]
    if exclude:
        command += ["--exclude", ",".join(exclude)]
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=out)
    seconds = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"gradci failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(results.read_text())
    return Side(
        {t["id"]: t["outcome"] for t in data["tests"]},
        {t["id"]: t.get("message", "") for t in data["tests"]},
        seconds,
    )


def pytest_invocation(
    reference: Path, out: Path, workers: int, records: Path, names_file: Path, *, one_thread: bool = True
) -> tuple[list[str], dict[str, str]]:
    """The pytest command on the reference file, recording outcomes of the ops in ``names_file``."""
    ini = out / "pytest.ini"
    ini.write_text("[pytest]\n")  # keep the project's pytest settings away from the reference run
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(
        GRADCI_PARITY_OUT=str(records),
        GRADCI_PARITY_OPS=str(names_file),
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    )
    if one_thread:  # one intra-op thread per xdist worker, as gradci: same outcomes, no oversubscription
        env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(reference),
        "-c",
        str(ini),
        "--rootdir",
        str(out),
        "-p",
        "outcomes_plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
    ]
    if workers > 1:
        command += ["-n", str(workers)]
    return command, env


def read_records(records: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Outcomes and skip reasons the plugin wrote, per test id."""
    outcomes: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for file in records.glob("*.json"):
        for name, record in json.loads(file.read_text()).items():
            outcomes[name] = record["outcome"]
            reasons[name] = record["reason"]
    return outcomes, reasons


def run_pytest(names: Sequence[str], workers: int, out: Path, reference: Path) -> Side:
    records = out / "pytest-outcomes"
    records.mkdir(exist_ok=True)
    names_file = out / "ops.txt"
    names_file.write_text("\n".join(names))
    command, env = pytest_invocation(reference, out, workers, records, names_file)
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=out, env=env)
    seconds = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError(
            f"pytest failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
        )
    return Side(*read_records(records), seconds)


def compare(gradci: Side, pytest: Side) -> Report:
    report = Report(gradci, pytest)
    report.only_gradci = sorted(set(gradci.outcomes) - set(pytest.outcomes))
    report.only_pytest = sorted(set(pytest.outcomes) - set(gradci.outcomes))
    for test_id in sorted(set(gradci.outcomes) & set(pytest.outcomes)):
        ours, theirs = AS_PYTEST[gradci.outcomes[test_id]], pytest.outcomes[test_id]
        same_reason = ours != "skipped" or gradci.reasons[test_id] == pytest.reasons[test_id]
        if ours != theirs or not same_reason:
            report.differing.append(
                (test_id, gradci.outcomes[test_id], theirs, gradci.reasons[test_id], pytest.reasons[test_id])
            )
    return report


def run_parity(
    ops: Sequence[str],
    exclude: Sequence[str],
    out: Path,
    *,
    workers: int = 2,
    reference: Path | None = None,
    suite: str = "backward",
) -> Report:
    """pytest on the suite's reference file and gradci on its checks, the same ops, compared."""
    out.mkdir(parents=True, exist_ok=True)
    names = formatted_names(ops, exclude)
    pytest_side = run_pytest(names, workers, out, reference or reference_path(suite))
    gradci_side = run_gradci(ops, exclude, workers, out, extra=("--checks", suite))
    return compare(gradci_side, pytest_side)
