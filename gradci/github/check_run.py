"""The check run: a conclusion, the report as its summary, and an annotation per new failure.

An annotation points at the file and line that construct the failing op's OpInfo
(``TestResult.location``) when that file is in the repository; otherwise (an upstream op of an
installed torch, a file outside the repository) at gradci's config file, else the workflow file,
its message naming the definition. In fork mode a failure of a backward formula (``grad``,
``gradgrad`` and their in-place checks) also has one on its entry of
``tools/autograd/derivatives.yaml`` (``TestResult.derivative``): one per entry, listing its failures.
GitHub takes at most 50 annotations per request: the check run is created with the first 50 and
updated with 50 more at a time, up to ``MAX_ANNOTATIONS`` (the rest are counted in the summary; the
results JSON holds them all).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gradci.compare import Category, Comparison
from gradci.errors import GitHubError
from gradci.failure import details, headline
from gradci.locate import FORMULA_CHECKS, Derivative, Location
from gradci.results import TestResult

from .client import Api

PER_REQUEST = 50
MAX_ANNOTATIONS = 500
TITLE_LIMIT = 255  # characters
TEXT_LIMIT = 65_535  # bytes: GitHub says "64 KB" for an annotation's message and raw details
SUMMARY_LIMIT = 65_535  # characters (the report counts bytes, which is stricter)
CONFIG_FILES = (".gradci.yml", ".gradci.yaml", "pyproject.toml")


def cut(text: str, limit: int, *, unit: str = "chars") -> str:
    """``text`` within ``limit`` characters (or UTF-8 bytes), marked with … where cut."""
    measure = (lambda s: len(s.encode("utf-8", "surrogatepass"))) if unit == "bytes" else len
    if measure(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with the mark
        mid = (low + high + 1) // 2
        if measure(text[:mid] + "…") <= limit:
            low = mid
        else:
            high = mid - 1
    return text[:low] + "…"


@dataclass(frozen=True)
class Annotation:
    path: str
    line: int
    title: str
    message: str
    details: str | None = None
    level: str = "failure"

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "start_line": self.line,
            "end_line": self.line,
            "annotation_level": self.level,
            "title": cut(self.title, TITLE_LIMIT),
            "message": cut(self.message, TEXT_LIMIT, unit="bytes"),
        }
        if self.details:
            data["raw_details"] = cut(self.details, TEXT_LIMIT, unit="bytes")
        return data


def fallback_location(root: Path, workflow_path: str | None) -> tuple[str, int]:
    """Where an annotation goes when its op is not defined in the repository."""
    for name in CONFIG_FILES:
        path = root / name
        if not path.is_file():
            continue
        if name != "pyproject.toml":
            return name, 1
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(lines, 1):
            if re.match(r"\s*\[tool\.gradci\]", line):
                return name, number
    if workflow_path:
        return workflow_path, 1
    return "pyproject.toml", 1


def placed(location: Location | None, root: Path, *, check_disk: bool) -> bool:
    """Whether an annotation can go on ``location``: a file of the repository."""
    return (
        location is not None
        and location.relative_to is None
        and _in_repository(location.file, root, check_disk=check_disk)
    )


def _in_repository(file: str, root: Path, *, check_disk: bool) -> bool:
    path = PurePosixPath(file)
    if path.is_absolute() or ".." in path.parts or not path.parts or re.match(r"^[A-Za-z]:", file):
        return False
    return (root / file).is_file() if check_disk else True


def failures_to_annotate(comparison: Comparison) -> tuple[str, list[TestResult]]:
    """The failures a person should look at: new ones, or without base results all of them."""
    if comparison.base is not None:
        tests = [c.head for c in comparison.changes.get(Category.NEW_FAILURE, ()) if c.head is not None]
        return "New failure", tests
    return "Failure", sorted(comparison.head.failing, key=lambda t: (t.op, t.id))


def describe(test: TestResult) -> str:
    """Plain text: the headline, then what failed on which sample, by how much (for a crash: the
    fatal error, the op's stack, its last output) and how to reproduce it (``gradci.failure``)."""
    return "\n".join(part for part in (headline(test), details(test)) if part)


def annotations_for(
    comparison: Comparison, *, root: Path, workflow_path: str | None, check_disk: bool = True
) -> tuple[list[Annotation], int]:
    """Annotations, at most ``MAX_ANNOTATIONS``, and how many there are in all: one per failure,
    and in fork mode one per derivatives.yaml entry of failing backward formulas, after its first
    failure's."""
    label, tests = failures_to_annotate(comparison)
    fallback = fallback_location(root, workflow_path)
    formulas: dict[tuple[str, int], list[TestResult]] = {}
    for test in tests:
        key = _formula_key(test, root, check_disk=check_disk)
        if key is not None:
            formulas.setdefault(key, []).append(test)
    total = len(tests) + len(formulas)
    made: list[Annotation] = []
    for test in tests:
        if len(made) >= MAX_ANNOTATIONS:
            break
        made.append(_failure(test, label, fallback, root, check_disk=check_disk))
        key = _formula_key(test, root, check_disk=check_disk)
        if test.derivative is not None and key in formulas and len(made) < MAX_ANNOTATIONS:
            made.append(_formula(test.derivative, formulas.pop(key), label))
    return made, total


def _formula_key(test: TestResult, root: Path, *, check_disk: bool) -> tuple[str, int] | None:
    """The derivatives.yaml entry a failure's annotation also goes on, if any."""
    d = test.derivative
    if (
        d is None
        or test.check not in FORMULA_CHECKS
        or not _in_repository(d.file, root, check_disk=check_disk)
    ):
        return None
    return PurePosixPath(d.file).as_posix(), d.line


def _failure(
    test: TestResult, label: str, fallback: tuple[str, int], root: Path, *, check_disk: bool
) -> Annotation:
    location = test.location
    notes = []
    if location is not None and placed(location, root, check_disk=check_disk):
        path, line = PurePosixPath(location.file).as_posix(), max(1, location.line)
    else:
        path, line = fallback
        if location is not None:  # say where it is, since the annotation cannot point there
            where = " (in the installed torch package)" if location.relative_to == "torch" else ""
            notes.append(f"OpInfo: {location}{where}")
    if test.derivative is not None and test.check in FORMULA_CHECKS:
        notes.append(f"backward formula: {test.derivative} ({test.derivative.name})")
    title = f"{label}: {test.id}" + (f" (op {test.op})" if test.op not in test.id else "")
    details = "\n\n".join(part for part in (test.traceback, test.output) if part) or None
    return Annotation(path, line, title, "\n".join([describe(test), *notes]), details)


def _formula(derivative: Derivative, tests: list[TestResult], label: str) -> Annotation:
    """On a derivatives.yaml entry: the failures of its backward formula, the first in full."""
    first = tests[0]
    more = f" (+{len(tests) - 1} more)" if len(tests) > 1 else ""
    title = f"{label} in the derivative of {derivative.name}: {first.id}{more}"
    listed = "\n".join(f"- {t.id}" for t in tests)
    count = f"{len(tests)} failing tests check" if len(tests) > 1 else "1 failing test checks"
    message = f"{count} this backward formula:\n{listed}\n\n{describe(first)}"
    details = "\n\n".join(part for part in (first.traceback, first.output) if part) or None
    return Annotation(
        PurePosixPath(derivative.file).as_posix(), max(1, derivative.line), title, message, details
    )


@dataclass(frozen=True)
class Published:
    url: str | None
    annotations: int  # annotations GitHub accepted
    warning: str | None  # a follow-up update failed


def publish(
    api: Api,
    *,
    name: str,
    head_sha: str,
    conclusion: str,
    title: str,
    summary: str,
    annotations: Sequence[Annotation],
    details_url: str | None = None,
) -> Published:
    """Create the completed check run, then add the annotations beyond the first 50."""
    batches = [list(annotations[i : i + PER_REQUEST]) for i in range(0, len(annotations), PER_REQUEST)] or [
        []
    ]
    output = {"title": cut(title, TITLE_LIMIT), "summary": cut(summary, SUMMARY_LIMIT)}
    arguments: dict[str, Any] = {
        "name": name,
        "head_sha": head_sha,
        "status": "completed",
        "conclusion": conclusion,
        "output": {**output, "annotations": [a.to_api() for a in batches[0]]},
    }
    if details_url:
        arguments["details_url"] = details_url
    run = api.call(
        f"create the check run {name!r}",
        lambda: api.repo.create_check_run(**arguments),
        permission="checks: write",
    )
    sent = len(batches[0])
    for batch in batches[1:]:
        payload = {**output, "annotations": [a.to_api() for a in batch]}
        try:
            api.call(
                f"add annotations to the check run {name!r}",
                functools.partial(run.edit, output=payload),
                permission="checks: write",
            )
        except GitHubError as exc:
            return Published(run.html_url, sent, f"{exc} ({sent} of {len(annotations)} annotations added)")
        sent += len(batch)
    return Published(run.html_url, sent, None)
