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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gradci.compare import Category, Comparison

from .client import Api

COMMENT_LIMIT = 65_536  # characters GitHub accepts in a comment body
MAX_COMMENTS = 5000  # comments of a pull request read when looking for ours


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


@dataclass(frozen=True)
class Result:
    action: str  # created, updated, unchanged, skipped
    url: str | None


def _ours(comments: list[Any], mark: str) -> Any | None:
    """Our comment: the oldest that starts with the marker (as ours do; a quote of it does not),
    preferring those a bot (the Actions token) wrote."""
    marked = [c for c in comments if (c.body or "").startswith(mark)]
    by_bot = [c for c in marked if getattr(c.user, "type", None) == "Bot"]
    chosen = by_bot or marked
    return chosen[0] if chosen else None


def upsert(api: Api, number: int, body: str, *, check_name: str, create: bool) -> Result:
    """Edit our comment on pull request ``number``, or create it when ``create``."""
    mark = marker(check_name)
    text = f"{mark}\n{body}"
    issue = api.repo.get_issue(number)
    comments = list(
        api.iterate(
            f"list the comments of pull request #{number}",
            issue.get_comments(),
            limit=MAX_COMMENTS,
        )
    )
    existing = _ours(comments, mark)
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
        lambda: issue.create_comment(text),
        permission="pull-requests: write",
    )
    return Result("created", created.html_url)


def body_budget(check_name: str) -> int:
    """Characters (bytes, to be safe) left for the report after the marker line."""
    return COMMENT_LIMIT - len((marker(check_name) + "\n").encode())
