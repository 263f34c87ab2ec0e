"""Where gradci publishes: the repository, commit, pull request and base branch of this run.

Read from the GitHub Actions environment (``GITHUB_*`` variables) and the event payload at
``GITHUB_EVENT_PATH``. The payload is data someone else wrote (a pull request's branch name, a
fork's repository): only the fields used here are read, each checked for its type and form.

=================  =============================================================================
event              head commit, pull request, base
=================  =============================================================================
pull_request(*)    ``pull_request.head.sha``; its number; base ``pull_request.base.ref``; a fork
                   when the head repository is another one
push               ``after``; no pull request; base: the pushed branch, from ``before``
workflow_dispatch  ``GITHUB_SHA``; no pull request; base: the repository's default branch
workflow_run       the triggering run's ``head_sha``; its pull request (when GitHub lists it; a
                   fork's run lists none, see ``publish``); results come from that run's artifact
other              ``GITHUB_SHA`` on ``GITHUB_REF``'s branch
=================  =============================================================================
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradci.errors import UsageError

_SHA = re.compile(r"^[0-9a-f]{40}$")
_ZERO_SHA = "0" * 40
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")


@dataclass(frozen=True)
class Context:
    repository: str  # owner/name of the repository the run belongs to (the base repository)
    event_name: str
    head_sha: str  # the commit the results are for
    api_url: str = "https://api.github.com"
    server_url: str = "https://github.com"
    repository_id: int | None = None
    default_branch: str | None = None
    head_ref: str | None = None  # the branch of the head commit
    pr_number: int | None = None
    base_ref: str | None = None  # the branch to compare with
    base_sha: str | None = None  # its tip when the event happened (push: the commit before)
    fork: bool = False  # the head commit comes from another repository
    head_repository: str | None = None
    run_id: int | None = None
    workflow_path: str | None = None  # .github/workflows/ci.yml, for annotations of last resort
    triggering_run_id: int | None = None  # workflow_run: the run whose artifact holds the results
    triggering_event: str | None = None
    workspace: Path = Path()

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def run_url(self) -> str | None:
        if self.run_id is None:
            return None
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _str(data: Any, *keys: str) -> str | None:
    value = _get(data, *keys)
    return value if isinstance(value, str) and value else None


def _int(data: Any, *keys: str) -> int | None:
    value = _get(data, *keys)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sha(value: str | None) -> str | None:
    if value is None or value == _ZERO_SHA or not _SHA.match(value):
        return None
    return value


def _branch(ref: str | None) -> str | None:
    if ref and ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    return None


def read_event(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def from_environment(environ: Mapping[str, str] | None = None) -> Context:
    """The context of this GitHub Actions run. Raises ``UsageError`` outside GitHub Actions."""
    env = os.environ if environ is None else environ
    event = read_event(env.get("GITHUB_EVENT_PATH"))
    repository = _str(event, "repository", "full_name") or env.get("GITHUB_REPOSITORY", "")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise UsageError(
            "gradci publish needs a GitHub Actions run: GITHUB_REPOSITORY is not set",
            hint="outside GitHub Actions, 'gradci report' writes the same summary",
        )
    event_name = env.get("GITHUB_EVENT_NAME", "")
    common: dict[str, Any] = {
        "repository": repository,
        "event_name": event_name,
        "api_url": (env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
        "server_url": (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/"),
        "repository_id": _int(event, "repository", "id"),
        "default_branch": _str(event, "repository", "default_branch"),
        "run_id": int(env["GITHUB_RUN_ID"]) if env.get("GITHUB_RUN_ID", "").isdigit() else None,
        "workflow_path": _workflow_path(env.get("GITHUB_WORKFLOW_REF"), repository),
        "workspace": Path(env.get("GITHUB_WORKSPACE") or "."),
    }
    env_sha = _sha(env.get("GITHUB_SHA"))

    if event_name in PULL_REQUEST_EVENTS and isinstance(event.get("pull_request"), Mapping):
        pr = event["pull_request"]
        head_repo = _str(pr, "head", "repo", "full_name")
        base_repo = _str(pr, "base", "repo", "full_name") or repository
        head_sha = _sha(_str(pr, "head", "sha")) or env_sha
        return Context(
            **common,
            head_sha=_required(head_sha, "pull_request.head.sha"),
            head_ref=_str(pr, "head", "ref"),
            pr_number=_int(pr, "number") or _int(event, "number"),
            base_ref=_str(pr, "base", "ref") or env.get("GITHUB_BASE_REF") or None,
            base_sha=_sha(_str(pr, "base", "sha")),
            # A deleted fork leaves head.repo null: still not this repository.
            fork=head_repo is None or head_repo.lower() != base_repo.lower(),
            head_repository=head_repo,
        )
    if event_name == "push":
        branch = _branch(_str(event, "ref") or env.get("GITHUB_REF"))
        return Context(
            **common,
            head_sha=_required(_sha(_str(event, "after")) or env_sha, "after"),
            head_ref=branch,
            base_ref=branch,
            base_sha=_sha(_str(event, "before")),
            head_repository=repository,
        )
    if event_name == "workflow_run" and isinstance(event.get("workflow_run"), Mapping):
        run = event["workflow_run"]
        head_sha = _required(_sha(_str(run, "head_sha")), "workflow_run.head_sha")
        head_repo = _str(run, "head_repository", "full_name")
        listed = [
            p
            for p in run.get("pull_requests") or []
            if isinstance(p, Mapping) and _str(p, "head", "sha") == head_sha
        ]
        pr = listed[0] if len(listed) == 1 else None
        fields = {
            **common,
            "workflow_path": _str(run, "path") or common["workflow_path"],
            "head_sha": head_sha,
            "head_ref": _str(run, "head_branch"),
            "head_repository": head_repo,
            "triggering_run_id": _int(run, "id"),
            "triggering_event": _str(run, "event"),
        }
        if _str(run, "event") in PULL_REQUEST_EVENTS or pr is not None:
            return Context(
                **fields,
                pr_number=_int(pr, "number"),
                base_ref=_str(pr, "base", "ref"),
                base_sha=_sha(_str(pr, "base", "sha")),
                fork=head_repo is not None and head_repo.lower() != repository.lower(),
            )
        return Context(**fields, base_ref=_str(run, "head_branch"))
    # workflow_dispatch, schedule and the rest: the checked-out commit on its branch
    branch = _branch(_str(event, "ref") or env.get("GITHUB_REF"))
    return Context(
        **common,
        head_sha=_required(env_sha, "GITHUB_SHA"),
        head_ref=branch,
        base_ref=common["default_branch"] or branch,
        head_repository=repository,
    )


def _required(sha: str | None, where: str) -> str:
    if sha is None:
        raise UsageError(
            f"the GitHub event gives no commit ({where} and GITHUB_SHA are missing or malformed)"
        )
    return sha


def _workflow_path(workflow_ref: str | None, repository: str) -> str | None:
    """``owner/repo/.github/workflows/ci.yml@refs/heads/main`` -> ``.github/workflows/ci.yml``."""
    if not workflow_ref:
        return None
    path = workflow_ref.split("@", 1)[0]
    prefix = repository + "/"
    if path.lower().startswith(prefix.lower()):
        path = path[len(prefix) :]
    return path if path.startswith(".github/") else None
