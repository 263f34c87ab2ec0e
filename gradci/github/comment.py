"""One pull-request comment per check name, found again by a hidden marker and edited in place.

``comment-mode`` decides when a comment is written:

========  =====================================================================================
always    on every run
changes   when the comparison found a change (a new failure, fix, flaky test, new or removed
          test, ...), or failures without base results to compare with
failures  when there are new failures (without base results: any failure)
off       never; an existing comment is left as it is
========  =====================================================================================

Where the mode says not to comment but a comment exists, it is updated anyway, so the pull request
never shows an outdated report.

The comment ends in a hidden line, ``<!-- gradci-state: v1 sha=COMMIT failing=N ids=... -->``:
the commit it reports on and a 32-bit hash of each failing test's id (at most ``MAX_TRACKED``).
The next version of the comment reads it to say what was fixed since (``fixed_since``). It is
stored on GitHub, where anyone with write access to the pull request can edit it, so it is read
strictly (one such line, exact form, bounded size) and used only as a set of hashes to look the
current tests up in: nothing in it is shown, and a line that is not exactly as gradci writes it
is ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gradci.compare import Category, Comparison
from gradci.report import Since
from gradci.results import Outcome, Results

from .client import Api

COMMENT_LIMIT = 65_536  # characters GitHub accepts in a comment body
MAX_COMMENTS = 5000  # comments of a pull request read when looking for ours
MAX_TRACKED = 1_000  # failing tests a comment remembers for the next one (5,334 characters)
_HASH_BYTES = 4  # per test: a wrong "fixed" needs a passing test to collide with a failing one
_MAX_IDS = -(-MAX_TRACKED * _HASH_BYTES * 4 // 3)  # base64 characters, unpadded
_STATE = re.compile(
    r"<!-- gradci-state: v1 sha=([0-9a-f]{40}) failing=([0-9]{1,7}) "
    rf"ids=([A-Za-z0-9_-]{{0,{_MAX_IDS}}}) -->"
)
_BROKEN = (Outcome.FAILED, Outcome.ERROR)


def marker(check_name: str) -> str:
    """An HTML comment GitHub does not render; the check name keeps CPU and CUDA reports apart."""
    safe = re.sub(r"[^\w .:/+-]", "_", check_name)[:100]
    return f"<!-- gradci-comment: {safe} -->"


def wanted(mode: str, comparison: Comparison) -> bool:
    if mode == "always":
        return True
    if mode == "off":
        return False
    if comparison.base is None:
        return bool(comparison.head.failing)
    if mode == "failures":
        return comparison.count(Category.NEW_FAILURE) > 0
    return any(comparison.count(c) for c in Category if c is not Category.STILL_FAILING)


# --- what the previous version of the comment showed ----------------------------------------------


def _digest(test_id: str) -> bytes:
    return hashlib.sha256(test_id.encode("utf-8", "surrogatepass")).digest()[:_HASH_BYTES]


@dataclass(frozen=True)
class State:
    """What a version of the comment reported: its commit and the hashes of the tests failing."""

    sha: str
    failing: frozenset[bytes] | None  # None: more than MAX_TRACKED, not remembered


def state(sha: str, failing_ids: Iterable[str]) -> str:
    """The hidden line that ends the comment (``sha``: a full commit SHA)."""
    digests = sorted({_digest(i) for i in failing_ids})
    packed = b"".join(digests) if len(digests) <= MAX_TRACKED else b""
    ids = base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")
    return f"<!-- gradci-state: v1 sha={sha} failing={len(digests)} ids={ids} -->"


def read_state(body: str | None) -> State | None:
    """The state an earlier version of our comment left, or None where it holds none to use."""
    found = _STATE.findall((body or "")[: 2 * COMMENT_LIMIT])
    if len(found) != 1:  # none, or an edit that added another: neither is ours to believe
        return None
    sha, count, ids = found[0]
    if int(count) > MAX_TRACKED:
        return State(sha, None) if not ids else None
    try:
        packed = base64.urlsafe_b64decode(ids + "=" * (-len(ids) % 4))
    except (ValueError, binascii.Error):
        return None
    digests = [packed[i : i + _HASH_BYTES] for i in range(0, len(packed), _HASH_BYTES)]
    if len(packed) != int(count) * _HASH_BYTES or digests != sorted(set(digests)):
        return None  # not as gradci writes it
    return State(sha, frozenset(digests))


def failing_ids(head: Results) -> list[str]:
    """The tests a comment remembers: those failing (not an xfail marker out of date)."""
    return [t.id for t in head.tests if t.outcome in _BROKEN]


def fixed_since(previous: State | None, head: Results, sha: str) -> Since | None:
    """Tests the previous version showed failing that pass now (not merely on a re-run)."""
    if previous is None or previous.failing is None:
        return None
    failing = previous.failing
    fixed = [
        t for t in head.tests if t.outcome is Outcome.PASSED and not t.flaky and _digest(t.id) in failing
    ]
    fixed.sort(key=lambda t: (t.op, t.id))
    return Since(fixed, previous.sha, same_commit=previous.sha == sha)


# --- writing it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    action: str  # created, updated, unchanged, skipped
    url: str | None


@dataclass(frozen=True)
class Found:
    """The pull request's issue and our comment on it, if there is one."""

    issue: Any
    comment: Any | None

    @property
    def body(self) -> str | None:
        return None if self.comment is None else str(self.comment.body or "")


def _ours(comments: list[Any], mark: str) -> Any | None:
    """Our comment: the oldest that starts with the marker (as ours do; a quote of it does not),
    preferring those a bot (the Actions token) wrote."""
    marked = [c for c in comments if (c.body or "").startswith(mark)]
    by_bot = [c for c in marked if getattr(c.user, "type", None) == "Bot"]
    chosen = by_bot or marked
    return chosen[0] if chosen else None


def find(api: Api, number: int, *, check_name: str) -> Found:
    """Our comment on pull request ``number`` (one listing of its comments)."""
    issue = api.repo.get_issue(number)
    comments = list(
        api.iterate(
            f"list the comments of pull request #{number}",
            issue.get_comments(),
            limit=MAX_COMMENTS,
        )
    )
    return Found(issue, _ours(comments, marker(check_name)))


def write(api: Api, found: Found, number: int, body: str, *, check_name: str, create: bool) -> Result:
    """Edit the comment ``find`` found, or create one when ``create``."""
    text = f"{marker(check_name)}\n{body}"
    existing = found.comment
    if existing is not None:
        if existing.body == text:
            return Result("unchanged", existing.html_url)
        api.call(
            f"edit comment {existing.id} on pull request #{number}",
            lambda: existing.edit(text),
            permission="pull-requests: write",
        )
        return Result("updated", existing.html_url)
    if not create:
        return Result("skipped", None)
    created = api.call(
        f"comment on pull request #{number}",
        lambda: found.issue.create_comment(text),
        permission="pull-requests: write",
    )
    return Result("created", created.html_url)


def upsert(api: Api, number: int, body: str, *, check_name: str, create: bool) -> Result:
    """Edit our comment on pull request ``number``, or create it when ``create``."""
    return write(
        api, find(api, number, check_name=check_name), number, body, check_name=check_name, create=create
    )


def body_budget(check_name: str) -> int:
    """Characters (bytes, to be safe) left for the report after the marker line."""
    return COMMENT_LIMIT - len((marker(check_name) + "\n").encode())
