"""A pytest plugin that records each test's outcome and skip reason as JSON (the parity harness's
upstream side). Loaded with ``-p outcomes_plugin``; writes to ``$GRADCI_PARITY_OUT/<worker>.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_records: dict[str, dict[str, Any]] = {}


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
        return text.removeprefix("Skipped: ")
    return ""


def pytest_runtest_logreport(report: Any) -> None:
    name = report.nodeid.rsplit("::", 1)[-1]
    if report.when == "call" or report.outcome != "passed":
        if name in _records and _records[name]["outcome"] != "passed" and report.when == "teardown":
            return  # keep the call phase's verdict
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
            reason = str(report.wasxfail)
        elif report.skipped:
            outcome, reason = "skipped", _reason(report)
        else:
            outcome, reason = report.outcome, ""
        _records[name] = {
            "outcome": outcome,
            "reason": reason,
            "longrepr": str(report.longrepr)[-2000:] if report.failed else "",
        }


def pytest_sessionfinish(session: Any) -> None:
    out = os.environ.get("GRADCI_PARITY_OUT")
    if out:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(out, f"{worker}.json").write_text(json.dumps(_records))


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Keep the tests of the ops listed in ``$GRADCI_PARITY_OPS`` (formatted names, one per line)."""
    ops_file = os.environ.get("GRADCI_PARITY_OPS")
    if not ops_file:
        return
    from gradci.plan import TestId

    wanted = set(Path(ops_file).read_text().split())
    keep, drop = [], []
    for item in items:
        try:
            op = TestId.parse(item.name).op
        except Exception:
            op = None
        (keep if op in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
