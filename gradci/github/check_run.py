"""The check run: a conclusion, the report as its summary, and an annotation per new failure.

An annotation points at the file and line that define the failing op (``TestResult.location``)
when that file is in the repository; otherwise (an upstream op, a file outside the repository) at
gradci's config file, else the workflow file. GitHub takes at most 50 annotations per request:
the check run is created with the first 50 and updated with 50 more at a time, up to
``MAX_ANNOTATIONS`` (the rest are counted in the summary; the results JSON holds them all).
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
    """Annotations, at most ``MAX_ANNOTATIONS``, and how many failures there are in all."""
    label, tests = failures_to_annotate(comparison)
    fallback = fallback_location(root, workflow_path)
    made = []
    for test in tests[:MAX_ANNOTATIONS]:
        location = test.location
        if location is not None and _in_repository(location.file, root, check_disk=check_disk):
            path, line = PurePosixPath(location.file).as_posix(), max(1, location.line)
        else:
            path, line = fallback
        title = f"{label}: {test.id}" + (f" (op {test.op})" if test.op not in test.id else "")
        details = "\n\n".join(part for part in (test.traceback, test.output) if part) or None
        made.append(Annotation(path, line, title, describe(test), details))
    return made, len(tests)


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
