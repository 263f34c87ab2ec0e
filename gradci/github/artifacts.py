"""Base results without re-running the base: workflow-run artifacts of the base branch.

The convention (docs/publishing.md#base-results):

* A run on the default branch (``push``, or ``workflow_dispatch``/``schedule`` there) uploads its
  results JSON with ``actions/upload-artifact`` as an artifact named ``gradci-results-<device>``
  (``artifact-name``, ``{device}`` replaced by ``cpu`` or ``cuda``), holding ``gradci-results.json``.
* A pull-request run looks for the artifact of the merge base of its head and the base branch;
  when that commit has none (its run failed, was skipped, or its artifact expired), for the newest
  older commit of the base branch that has one, looking at most ``baseline-commits`` commits back.
  Only artifacts of runs on the base branch of this repository count: a pull request's run (which
  may come from a fork and run changed workflow code) can never provide base results.

The search goes by commit, not by artifact name: every pull-request run uploads the same name, so
in a busy repository the repository's artifact list (newest first, of which GitHub serves 1,000)
holds only pull requests' artifacts. For each commit, newest first: the base branch's workflow
runs for that commit (one request), then the artifacts of that name of each run that qualifies
(``BASE_EVENTS``, the base branch, this repository), newest run first; the first unexpired one
wins. One request first asks whether the repository has an artifact of that name at all.

The archive is a zip: ``download-artifact`` redirects to storage, which gets no GitHub token, and
the results are read from the zip in memory (no path from the archive is ever written to disk),
within ``MAX_UNPACKED`` bytes in all, checked against the zip's directory before anything is
unpacked: an artifact may come from a fork, and a few megabytes of zip can unpack to gigabytes.
"""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from gradci import docs
from gradci.errors import GitHubError, ResultsFileError
from gradci.results import parse

from .client import TIMEOUT, Api

RESULTS_FILE = "gradci-results.json"
PR_FILE = "gradci-pr.json"  # written by a pull-request run for a later workflow_run to publish
# Runs that can provide base results: what runs the base branch's own code on its own commits.
# Pull-request events (pull_request_target too: it may check out a pull request), issue comments
# and workflow_run (which may re-upload a pull request's results) never qualify.
BASE_EVENTS = ("push", "schedule", "workflow_dispatch")
_NEVER_RAN = ("skipped", "action_required", "startup_failure")  # such runs uploaded nothing
MAX_RUN_LOOKUPS = 50  # runs whose artifacts are listed, in one search (the rate limit is shared)
MAX_RUN_ARTIFACTS = 1000  # artifacts of one run looked at (head results)
MAX_ARCHIVE = 256 * 1024 * 1024  # bytes of zip downloaded
# Bytes unpacked from one archive, in all. A full-suite results file is about 1.5 MB (15 MB if
# every test fails with a traceback); parsing JSON can take 25 times its size in memory.
MAX_UNPACKED = 64 * 1024 * 1024
MAX_PR_FILE = 64 * 1024  # a larger gradci-pr.json is ignored: it is only a hint
MAX_MEMBERS = 10_000  # files in an archive: zipfile keeps an object per file


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


def _get(api: Api, what: str, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
    url = f"{api.repo.url}{path}?{urlencode(params)}"
    _, data = api.call(
        what,
        functools.partial(api.requester.requestJsonAndCheck, "GET", url),
        permission="actions: read",
    )
    return data if isinstance(data, dict) else {}


def run_artifacts(
    api: Api, run_id: int, name: str = "", *, limit: int = MAX_RUN_ARTIFACTS
) -> Iterator[dict[str, Any]]:
    """The artifacts of workflow run ``run_id`` (named ``name``, if given), as JSON."""
    seen = 0
    for page in range(1, limit // 100 + 2):
        data = _get(
            api,
            f"list the artifacts of run {run_id}" + (f" named {name}" if name else ""),
            f"/actions/runs/{run_id}/artifacts",
            {**({"name": name} if name else {}), "per_page": 100, "page": page},
        )
        items = [a for a in data.get("artifacts") or [] if isinstance(a, dict)]
        for item in items:
            seen += 1
            if seen > limit:
                return
            yield item
        if len(items) < 100:
            return


def _repository_id(data: Any) -> int | None:
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_base_run(run: Mapping[str, Any], sha: str, branch: str) -> bool:
    """A run of this repository's base branch on its own commit ``sha``: never a pull request's."""
    repository = _repository_id(run.get("repository"))
    return (
        run.get("event") in BASE_EVENTS
        and run.get("head_branch") == branch
        and run.get("head_sha") == sha
        and repository is not None
        and _repository_id(run.get("head_repository")) == repository  # a fork's run: another one
        and run.get("conclusion") not in _NEVER_RAN
        and isinstance(run.get("id"), int)
    )


def base_runs(api: Api, sha: str, branch: str) -> list[dict[str, Any]]:
    """The base branch's workflow runs for commit ``sha``, newest first."""
    data = _get(
        api,
        f"list the workflow runs of {sha[:10]} on {branch}",
        "/actions/runs",
        {"head_sha": sha, "branch": branch, "exclude_pull_requests": "true", "per_page": 100},
    )
    runs = [r for r in data.get("workflow_runs") or [] if isinstance(r, dict) and is_base_run(r, sha, branch)]
    runs.sort(key=lambda r: (str(r.get("created_at") or ""), r["id"]), reverse=True)
    return runs


def has_artifacts_named(api: Api, name: str) -> bool:
    """Whether the repository has any artifact ``name`` (expired or not, of any run): one request."""
    data = _get(api, f"look for artifacts named {name}", "/actions/artifacts", {"name": name, "per_page": 1})
    count = data.get("total_count")
    return bool(data.get("artifacts")) or (isinstance(count, int) and count > 0)


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
    if not has_artifacts_named(api, name):
        note = (
            f"no base results: {api.context.repository} has no artifact {name} at all; "
            f"a run on {branch} uploads it ({docs.url('publishing.md', 'base-results')})"
        )
        return Search(None, merge_base_sha, None, 0, note)
    commits = [
        commit.sha
        for commit in api.iterate(
            f"list the commits of {branch} from {start[:10]}",
            api.repo.get_commits(sha=start),
            limit=depth + (1 if skip else 0),
        )
        if commit.sha != skip
    ][:depth]
    lookups = 0
    searched = 0
    for index, sha in enumerate(commits):
        found = None
        for run in base_runs(api, sha, branch):
            if lookups >= MAX_RUN_LOOKUPS:
                break
            lookups += 1
            found = next(
                (
                    Artifact.from_json(a)
                    for a in run_artifacts(api, run["id"], name, limit=100)
                    if a.get("name") == name
                    and not a.get("expired")
                    and (a.get("workflow_run") or {}).get("head_sha") in (None, sha)
                ),
                None,
            )
            if found is not None:
                break
        else:
            searched += 1
        if found is not None:
            found = replace(found, head_sha=sha)
            if merge_base_sha is None:
                back = f", {index} commit{'s' if index > 1 else ''} back" if index else ""
                where = f"{sha[:10]} on {branch}{back}"
            elif index == 0:
                where = f"the merge base {sha[:10]} with {branch}"
            else:
                where = (
                    f"{sha[:10]} on {branch}, {index} commit{'s' if index > 1 else ''} before the merge "
                    f"base {merge_base_sha[:10]}, which has none"
                )
            return Search(
                found, merge_base_sha, index, index + 1, f"base results: artifact {name} of {where}"
            )
        if lookups >= MAX_RUN_LOOKUPS:
            break
    if not commits:
        note = f"no base results: {branch} has no commits before {start[:10]}"
    else:
        whence = f"the merge base {merge_base_sha[:10]}" if merge_base_sha else commits[0][:10]
        more = f" or the {searched - 1} commits before it" if searched > 1 else ""
        stopped = (
            f" (gradci looks into at most {MAX_RUN_LOOKUPS} workflow runs)" if searched < len(commits) else ""
        )
        note = (
            f"no base results: no unexpired artifact {name} from a run on {branch} for {whence}{more}"
            f"{stopped}; a run on {branch} uploads it ({docs.url('publishing.md', 'base-results')})"
        )
    return Search(None, merge_base_sha, None, searched, note)


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


def _basename(info: zipfile.ZipInfo) -> str:
    return info.filename.rsplit("/", 1)[-1]


def _parse(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> Any:
    """One member, unpacked (at most its directory's ``file_size``: zipfile stops there) and parsed."""
    try:
        raw = archive.read(info)
    except Exception as exc:  # a hostile archive: damaged, encrypted, an unknown method, a bad CRC
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise ValueError(f"{source}: cannot unpack {info.filename} ({reason})") from None
    try:
        return parse(raw, f"{source}: {info.filename}")  # strict, as a results file is read
    except ResultsFileError as exc:
        raise ValueError(exc.message) from None


def read_archive(
    data: bytes, source: str, *, pr_file: bool = False
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The results JSON (parsed) and, if asked for and present, the pull-request file of an artifact.

    The results are ``gradci-results.json`` at any depth, or else the one JSON file of schema
    ``gradci.results``; nothing else is unpacked. What would be unpacked must fit in
    ``MAX_UNPACKED`` bytes, which the zip's directory says before anything is unpacked. Raises
    ``ValueError`` with a reason for anything else.
    """
    # Each file has a record in the zip's directory, which zipfile reads whole into objects.
    if data.count(b"PK\x01\x02") > MAX_MEMBERS:
        raise ValueError(f"{source} holds more than {MAX_MEMBERS:,} files; a results artifact holds a few")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception:  # BadZipFile, and what a crafted directory makes zipfile raise
        raise ValueError(f"{source} is not a zip archive") from None
    with archive:
        files = [i for i in archive.infolist() if not i.is_dir()]
        named = [i for i in files if _basename(i) == RESULTS_FILE]
        if len(named) > 1:
            names = ", ".join(sorted(i.filename for i in named))
            raise ValueError(f"{source} holds several results files ({names}); merge them first")
        wanted = named or sorted(
            (i for i in files if i.filename.endswith(".json") and _basename(i) != PR_FILE),
            key=lambda i: i.filename,
        )
        total = sum(i.file_size for i in wanted)
        if total > MAX_UNPACKED:
            what = wanted[0].filename if len(wanted) == 1 else f"its {len(wanted):,} JSON files"
            raise ValueError(
                f"{source}: {what} would unpack to {total:,} bytes, more than the {MAX_UNPACKED:,} "
                "gradci reads from an artifact"
            )
        if named:
            results = _parse(archive, named[0], source)
            if not isinstance(results, dict):
                raise ValueError(f"{source}: {named[0].filename} is not a gradci results file")
        else:
            found = []
            for info in wanted:
                try:
                    parsed = _parse(archive, info, source)
                except ValueError:
                    continue  # not JSON, or damaged: not the results
                if isinstance(parsed, dict) and parsed.get("schema") == "gradci.results":
                    found.append((info.filename, parsed))
            if not found:
                raise ValueError(f"{source} holds no gradci results ({RESULTS_FILE})")
            if len(found) > 1:
                names = ", ".join(name for name, _ in found)
                raise ValueError(f"{source} holds several results files ({names}); merge them first")
            results = found[0][1]
        pr: dict[str, Any] | None = None
        if pr_file:
            hints = sorted(
                (i for i in files if _basename(i) == PR_FILE and i.file_size <= MAX_PR_FILE),
                key=lambda i: (i.filename.count("/"), i.filename),
            )
            try:
                parsed = _parse(archive, hints[0], source) if hints else None
            except ValueError:
                parsed = None  # a hint only: the pull request is found without it
            pr = parsed if isinstance(parsed, dict) else None
    return results, pr
