"""Head results against base results: what a change newly broke, fixed, or left as it was.

Every test id is classified by the first rule that applies (``classify``):

======================  ===============================================================================
removed_test            on base only
new_test                on head only, of a check the base run did not select (the forward suite added
                        by a change, say): failing or not, there is nothing to compare it with
flaky                   on head it failed (or errored) first and passed when re-run
new_failure             failed or errored on head; on base it did not fail, or did not exist
still_failing           failed or errored on both (broken on the base branch: not the change's fault)
unexpected_pass         an expected failure passed on head (xpassed)
new_test                on head only
fixed                   passed on head; failed, errored or passed unexpectedly on base
skip_changed            any other change of outcome: now skipped or no longer skipped, now or no
                        longer an expected failure
======================  ===============================================================================

A test whose outcome is the same on both sides is unchanged and in no category.

Base results that cannot be used (missing, truncated, another schema version, no tests, another
device) make a ``Comparison`` with ``base=None`` and ``baseline_problem`` saying why; the head
results are still reported, and ``--fail-on new`` then fails on any failing test, since any of them
may be new. Base results from another torch, CUDA or device model are compared, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import ResultsFileError
from .options import FAIL_ON
from .results import Outcome, Results, TestResult, load, write_output

COMPARISON_SCHEMA = "gradci.comparison"
COMPARISON_VERSION = 1


class Category(str, Enum):
    NEW_FAILURE = "new_failure"
    STILL_FAILING = "still_failing"
    FIXED = "fixed"
    FLAKY = "flaky"
    NEW_TEST = "new_test"
    REMOVED_TEST = "removed_test"
    UNEXPECTED_PASS = "unexpected_pass"
    SKIP_CHANGED = "skip_changed"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """Plural noun phrase for a count: '2 new failures'."""
        return _LABELS[self][0]

    def counted(self, n: int) -> str:
        singular, plural = _LABELS[self][1], _LABELS[self][0]
        return f"{n:,} {singular if n == 1 else plural}"


_LABELS = {
    Category.NEW_FAILURE: ("new failures", "new failure"),
    Category.STILL_FAILING: ("still failing on base", "still failing on base"),
    Category.FIXED: ("fixed", "fixed"),
    Category.FLAKY: ("flaky", "flaky"),
    Category.NEW_TEST: ("new tests", "new test"),
    Category.REMOVED_TEST: ("removed tests", "removed test"),
    Category.UNEXPECTED_PASS: ("unexpected passes", "unexpected pass"),
    Category.SKIP_CHANGED: ("skip-status changes", "skip-status change"),
}

# failed and error are failures of the check; xpassed only means an xfail marker is out of date.
_BROKEN = frozenset({Outcome.FAILED, Outcome.ERROR})
# When one file holds a test id twice (an overlapping merge), the worse result counts.
SEVERITY = {
    Outcome.ERROR: 5,
    Outcome.FAILED: 5,
    Outcome.XPASSED: 4,
    Outcome.PASSED: 3,
    Outcome.XFAILED: 2,
    Outcome.SKIPPED: 1,
}


@dataclass(frozen=True)
class Change:
    id: str
    category: Category
    base: TestResult | None
    head: TestResult | None

    @property
    def test(self) -> TestResult:
        """The head result, or the base one for a removed test."""
        result = self.head or self.base
        assert result is not None
        return result

    @property
    def op(self) -> str:
        return self.test.op


@dataclass(frozen=True)
class Comparison:
    head: Results
    base: Results | None
    baseline_problem: str | None
    changes: Mapping[Category, Sequence[Change]]  # every category, each sorted by op and id
    warnings: tuple[str, ...] = ()  # comparable, but with a caveat (another torch, duplicate ids)

    def count(self, category: Category) -> int:
        return len(self.changes.get(category, ()))

    @property
    def compared(self) -> bool:
        return self.base is not None

    def should_fail(self, fail_on: str) -> bool:
        """Whether ``--fail-on`` turns this comparison into exit code 1.

        new: a new failure. Without usable base results, any failing test, as any may be new.
        any: any test failing on head (failed, error, xpassed), whatever the base says.
        none: never.
        """
        if fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {FAIL_ON}, not {fail_on!r}")
        if fail_on == "none":
            return False
        if fail_on == "any" or self.base is None:
            return bool(self.head.failing)
        return self.count(Category.NEW_FAILURE) > 0

    def ids(self) -> dict[str, list[str]]:
        return {c.value: [change.id for change in self.changes.get(c, ())] for c in Category}

    def to_json(self, fail_on: str = "new") -> dict[str, Any]:
        """For machines: per category, the test ids (schema ``gradci.comparison``, version 1)."""

        def side(results: Results | None) -> dict[str, Any] | None:
            if results is None:
                return None
            run = results.run
            return {
                "torch_version": run.torch_version,
                "device": run.device,
                "device_name": run.device_name,
                "git_sha": run.git_sha,
                "started_at": run.started_at,
                "summary": results.summary(),
            }

        return {
            "schema": COMPARISON_SCHEMA,
            "version": COMPARISON_VERSION,
            "compared": self.compared,
            "baseline_problem": self.baseline_problem,
            "warnings": list(self.warnings),
            "fail_on": fail_on,
            "failed": self.should_fail(fail_on),
            "head": side(self.head),
            "base": side(self.base),
            "counts": {c.value: self.count(c) for c in Category},
            "tests": self.ids(),
        }

    def save_json(self, path: Path, fail_on: str = "new") -> None:
        write_output(path, json.dumps(self.to_json(fail_on), indent=1) + "\n")


def classify(base: TestResult | None, head: TestResult | None, *, base_ran: bool = True) -> Category | None:
    """The category of one test id, or None when it is unchanged.

    ``base_ran``: whether the base run selected this test's check at all. A check the base did not
    run (the forward suite, added in this change) makes new tests, failing or not: nothing says
    the change broke them.
    """
    if head is None:
        return None if base is None else Category.REMOVED_TEST
    if base is None and not base_ran:
        return Category.NEW_TEST
    if head.flaky:
        return Category.FLAKY
    if head.outcome in _BROKEN:
        return (
            Category.STILL_FAILING if base is not None and base.outcome in _BROKEN else Category.NEW_FAILURE
        )
    if head.outcome is Outcome.XPASSED:
        return Category.UNEXPECTED_PASS
    if base is None:
        return Category.NEW_TEST
    if head.outcome is Outcome.PASSED and base.outcome.failing:
        return Category.FIXED
    if head.outcome is not base.outcome:
        return Category.SKIP_CHANGED
    return None


def by_id(tests: Iterable[TestResult]) -> tuple[dict[str, TestResult], list[str]]:
    """One result per id (the worse one where an id repeats) and the ids that repeat."""
    chosen: dict[str, TestResult] = {}
    repeated: list[str] = []
    for test in tests:
        kept = chosen.get(test.id)
        if kept is None:
            chosen[test.id] = test
            continue
        if test.id not in repeated:
            repeated.append(test.id)
        if SEVERITY[test.outcome] > SEVERITY[kept.outcome]:
            chosen[test.id] = test
    return chosen, repeated


def _duplicates_warning(side: str, repeated: list[str]) -> str:
    shown = ", ".join(repeated[:3]) + (f" and {len(repeated) - 3} more" if len(repeated) > 3 else "")
    return f"{side} results hold {len(repeated)} test id(s) more than once ({shown}); the worse result counts"


def incompatibility(base: Results, head: Results) -> str | None:
    """Why base results cannot be compared with head at all, if they cannot."""
    if base.run.device != head.run.device:
        return (
            f"base results are from device {base.run.device}, head from {head.run.device}: "
            "their test ids differ, so nothing can be compared"
        )
    if not base.tests:
        return "base results hold no tests"
    return None


def caveats(base: Results, head: Results) -> list[str]:
    """Differences that leave the comparison possible but may explain some of its changes."""
    notes: list[str] = []
    b, h = base.run, head.run
    if b.torch_version != h.torch_version or (
        b.torch_git_version and h.torch_git_version and b.torch_git_version != h.torch_git_version
    ):
        b_torch = b.torch_version + (f" ({b.torch_git_version[:10]})" if b.torch_git_version else "")
        h_torch = h.torch_version + (f" ({h.torch_git_version[:10]})" if h.torch_git_version else "")
        notes.append(
            f"base ran torch {b_torch}, head torch {h_torch}: changes may come from torch, not this change"
        )
    if b.cuda_version != h.cuda_version:
        notes.append(f"base ran CUDA {b.cuda_version or 'none'}, head CUDA {h.cuda_version or 'none'}")
    if b.device == "cuda" and b.device_name and h.device_name and b.device_name != h.device_name:
        notes.append(f"base ran on {b.device_name}, head on {h.device_name}")
    if b.interrupted:
        notes.append("the base run was interrupted: tests it did not reach count as new tests")
    if h.interrupted:
        notes.append("the head run was interrupted: tests it did not reach count as removed tests")
    b_shard, h_shard = b.selection.get("shard"), h.selection.get("shard")
    if b_shard != h_shard:
        notes.append(
            f"base results cover shard {b_shard or 'all'}, head results shard {h_shard or 'all'}: "
            "tests outside the common part show as new or removed"
        )
    return notes


def compare(base: Results | None, head: Results, *, baseline_problem: str | None = None) -> Comparison:
    """Classify every test id of head and base. ``base=None``: nothing to compare with."""
    warnings: list[str] = []
    heads, repeated = by_id(head.tests)
    if repeated:
        warnings.append(_duplicates_warning("head", repeated))
    if base is not None and baseline_problem is None:
        baseline_problem = incompatibility(base, head)
    if baseline_problem is not None:
        base = None

    changes: dict[Category, list[Change]] = {c: [] for c in Category}
    if base is None:
        # Without a base, only what the head results say by themselves.
        for test in heads.values():
            if test.flaky:
                changes[Category.FLAKY].append(Change(test.id, Category.FLAKY, None, test))
            elif test.outcome is Outcome.XPASSED:
                changes[Category.UNEXPECTED_PASS].append(
                    Change(test.id, Category.UNEXPECTED_PASS, None, test)
                )
    else:
        bases, base_repeated = by_id(base.tests)
        if base_repeated:
            warnings.append(_duplicates_warning("base", base_repeated))
        warnings[:0] = caveats(base, head)
        base_checks = base.run.selection.get("checks")
        ran = set(base_checks) if isinstance(base_checks, list) and base_checks else None
        for test_id in sorted(heads.keys() | bases.keys()):
            b, h = bases.get(test_id), heads.get(test_id)
            category = classify(b, h, base_ran=ran is None or h is None or h.check in ran)
            if category is not None:
                changes[category].append(Change(test_id, category, b, h))
    for found in changes.values():
        found.sort(key=lambda c: (c.op, c.id))
    return Comparison(
        head=head,
        base=base,
        baseline_problem=baseline_problem,
        changes={c: tuple(found) for c, found in changes.items()},
        warnings=tuple(warnings),
    )


def load_baseline(path: Path | None) -> tuple[Results | None, str | None]:
    """Base results and, where they cannot be used, why not. Never raises for a bad base file."""
    if path is None:
        return None, "no base results were given"
    try:
        return load(Path(path)), None
    except ResultsFileError as exc:
        return None, f"base results unusable: {exc}"


def problem_error(comparison: Comparison) -> ResultsFileError | None:
    """The exit-code-3 error for a comparison whose base results could not be used."""
    if comparison.baseline_problem is None:
        return None
    return ResultsFileError(comparison.baseline_problem)
