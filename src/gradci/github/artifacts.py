"""Base results without re-running the base: workflow-run artifacts of the base branch.

The convention (README, "Base results"):

* A run on the default branch (``push``, or ``workflow_dispatch``/``schedule`` there) uploads its
  results JSON with ``actions/upload-artifact`` as an artifact named ``gradci-results-<device>``
  (``artifact-name``, ``{device}`` replaced by ``cpu`` or ``cuda``), holding ``gradci-results.json``.
* A pull-request run looks for the artifact of the merge base of its head and the base branch;
  when that commit has none (its run failed, was skipped, or its artifact expired), for the newest
  older commit of the base branch that has one, looking at most ``baseline-commits`` commits back.
  Only artifacts of runs on the base branch of this repository count: a pull request's run (which
  may come from a fork and run changed workflow code) can never provide base results.

Artifacts are listed newest first; the search stops at the first artifact older than the oldest
commit it looks for. The archive is a zip: ``download-artifact`` redirects to storage, which gets
no GitHub token, and the results are read from the zip in memory (no path from the archive is
ever written to disk).
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from gradci.errors import GitHubError

from .client import TIMEOUT, Api

ARTIFACT_NAME = "gradci-results-{device}"
RESULTS_FILE = "gradci-results.json"
PR_FILE = "gradci-pr.json"  # written by a pull-request run for a later workflow_run to publish
MAX_ARTIFACTS = 1000  # artifacts of that name looked at, newest first
MAX_ARCHIVE = 256 * 1024 * 1024  # bytes of zip downloaded
MAX_MEMBER = 1024 * 1024 * 1024  # bytes of one unpacked file
_CLOCK_SLACK = timedelta(days=1)  # committer clocks are not GitHub's


def artifact_name(template: str, device: str) -> str:
    return template.replace("{device}", device)


@dataclass(frozen=True)
class Artifact:
    id: int
    name: str
    head_sha: str
    head_branch: str | None
    run_id: int | None
    created_at: datetime | None
    download_url: str
    size: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        run = data.get("workflow_run") or {}
        created = data.get("created_at")
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            head_sha=str(run.get("head_sha") or ""),
            head_branch=run.get("head_branch"),
            run_id=run.get("id"),
            created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
            download_url=str(data["archive_download_url"]),
            size=int(data.get("size_in_bytes") or 0),
        )


@dataclass(frozen=True)
class Search:
    """Where base results were looked for and what was found."""

    artifact: Artifact | None
    merge_base: str | None
    commits_back: int | None  # 0: at the merge base
    searched: int  # commits looked at
    note: str  # one sentence for the report and the log


def list_artifacts(api: Api, path: str, name: str, *, limit: int = MAX_ARTIFACTS) -> Any:
    """Artifacts named ``name`` under ``path`` (repository or run), newest first, as JSON."""
    page = 1
    seen = 0
    while seen < limit:
        query = urlencode({**({"name": name} if name else {}), "per_page": 100, "page": page})
        url = f"{api.repo.url}{path}?{query}"
        _, data = api.call(
            f"list the artifacts named {name}" if name else f"list the artifacts of {path}",
            functools.partial(api.requester.requestJsonAndCheck, "GET", url),
            permission="actions: read",
        )
        items = (data.get("artifacts") or []) if isinstance(data, dict) else []
        for item in items:
            seen += 1
            yield item
        if len(items) < 100:
            return
        page += 1


def merge_base(api: Api, base_ref: str, head_sha: str) -> str:
    def compare() -> str:
        return str(api.repo.compare(base_ref, head_sha).merge_base_commit.sha)

    return api.call(f"compare {base_ref} with {head_sha[:10]}", compare, permission="contents: read")


def find_base_artifact(
    api: Api,
    name: str,
    *,
    branch: str,
    start: str,
    depth: int,
    skip: str | None = None,
    merge_base_sha: str | None = None,
) -> Search:
    """The newest artifact ``name`` of a run on ``branch`` for ``start`` or the commits before it."""
    commits: list[tuple[str, datetime | None]] = []
    for commit in api.iterate(
        f"list the commits of {branch} from {start[:10]}",
        api.repo.get_commits(sha=start),
        limit=depth + (1 if skip else 0),
    ):
        if commit.sha != skip:
            commits.append((commit.sha, commit.commit.committer.date if commit.commit.committer else None))
    commits = commits[:depth]
    wanted = {sha for sha, _ in commits}
    dates = [d for _, d in commits if d is not None]
    oldest = min(dates) - _CLOCK_SLACK if dates else None
    by_sha: dict[str, Artifact] = {}
    for data in list_artifacts(api, "/actions/artifacts", name):
        artifact = Artifact.from_json(data)
        if oldest is not None and artifact.created_at is not None and artifact.created_at < oldest:
            break
        run = data.get("workflow_run") or {}
        same_repo = run.get("head_repository_id") in (None, run.get("repository_id"))
        on_branch = run.get("head_branch") in (None, branch)
        if data.get("expired") or not same_repo or not on_branch or artifact.head_sha not in wanted:
            continue
        by_sha.setdefault(artifact.head_sha, artifact)  # newest first: keep the latest run's
    for index, (sha, _) in enumerate(commits):
        if sha in by_sha:
            if merge_base_sha is None:
                where = f"{sha[:10]} on {branch}" + (f", {index} commits back" if index else "")
            elif index == 0:
                where = f"the merge base {sha[:10]} with {branch}"
            else:
                where = (
                    f"{sha[:10]} on {branch}, {index} commit{'s' if index > 1 else ''} before the merge "
                    f"base {merge_base_sha[:10]}, which has none"
                )
            return Search(
                by_sha[sha], merge_base_sha, index, len(commits), f"base results: artifact {name} of {where}"
            )
    if not commits:
        note = f"no base results: {branch} has no commits before {start[:10]}"
    else:
        whence = f"the merge base {merge_base_sha[:10]}" if merge_base_sha else commits[0][0][:10]
        more = f" or the {len(commits) - 1} commits before it" if len(commits) > 1 else ""
        note = (
            f"no base results: no unexpired artifact {name} from a run on {branch} for {whence}{more}; "
            f"a run on {branch} uploads it (README: 'Base results')"
        )
    return Search(None, merge_base_sha, None, len(commits), note)


def download(api: Api, artifact: Artifact, *, limit: int = MAX_ARCHIVE) -> bytes:
    """The artifact's zip. GitHub answers with a redirect to storage, which must not get the token."""
    import requests

    what = f"download artifact {artifact.name} ({artifact.id})"
    if artifact.size > limit:
        raise GitHubError(f"cannot {what}: {artifact.size:,} bytes, more than gradci reads ({limit:,})")
    headers, _ = api.call(
        what,
        lambda: api.requester.requestJsonAndCheck("GET", artifact.download_url),
        permission="actions: read",
    )
    location = headers.get("location")
    if not location:
        raise GitHubError(f"cannot {what}: GitHub did not redirect to the archive")
    try:
        # A plain session: no GitHub credentials for storage. The signed URL itself is a secret
        # for a minute, so it is never shown either.
        with requests.get(location, stream=True, timeout=TIMEOUT) as response:
            if response.status_code != 200:
                raise GitHubError(f"cannot {what}: artifact storage answered {response.status_code}")
            chunks, total = [], 0
            for chunk in response.iter_content(1024 * 1024):
                total += len(chunk)
                if total > limit:
                    raise GitHubError(f"cannot {what}: larger than gradci reads ({limit:,} bytes)")
                chunks.append(chunk)
    except requests.RequestException as exc:
        raise GitHubError(f"cannot {what}: artifact storage unreachable ({type(exc).__name__})") from None
    return b"".join(chunks)


def read_archive(data: bytes, source: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The results JSON (parsed) and, if present, the pull-request file from an artifact's zip.

    The results are ``gradci-results.json`` at any depth, or else the one JSON file of schema
    ``gradci.results``. Raises ``ValueError`` with a reason for anything else.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError(f"{source} is not a zip archive") from None
    with archive:
        members = [i for i in archive.infolist() if not i.is_dir() and i.filename.endswith(".json")]
        parsed: dict[str, Any] = {}
        for info in members:
            if info.file_size > MAX_MEMBER:
                raise ValueError(f"{source}: {info.filename} is too large ({info.file_size:,} bytes)")
            try:
                parsed[info.filename] = json.loads(archive.read(info).decode("utf-8"))
            except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError):
                continue  # not JSON, or damaged: not the results
    named = [n for n in parsed if n.rsplit("/", 1)[-1] == RESULTS_FILE]
    results = [
        n for n in parsed if isinstance(parsed[n], dict) and parsed[n].get("schema") == "gradci.results"
    ]
    chosen = named or results
    if not chosen:
        raise ValueError(f"{source} holds no gradci results ({RESULTS_FILE})")
    if len(chosen) > 1:
        raise ValueError(
            f"{source} holds several results files ({', '.join(sorted(chosen))}); merge them first"
        )
    pr_files = [n for n in parsed if n.rsplit("/", 1)[-1] == PR_FILE and isinstance(parsed[n], dict)]
    return parsed[chosen[0]], (parsed[pr_files[0]] if pr_files else None)
