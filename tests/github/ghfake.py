"""A local stand-in for the GitHub REST API, strict about the contract.

``FakeGitHub`` serves the operations gradci sends, over real HTTP from a thread, with state a test
sets up and inspects: repositories with commit graphs and branches, pull requests, workflow runs
(of the base branch, of pull requests, of forks) and their artifacts (real zip archives, downloaded
through a 302 to a separate "storage" host, as GitHub does), check runs with their annotations,
and issue comments.

Every request it receives and every response it sends is validated against GitHub's official
OpenAPI description (``openapi-subset.json``, see ``vendor.py``): documented statuses against their
schemas, error statuses the description does not list against ``basic-error`` or
``validation-error``. A request outside the vendored operations, or anything that does not
validate, is recorded in ``problems`` (the test fixture fails the test on any) and answered with a
400, so a client cannot mistake it for success.

Behaviour copied from GitHub: token auth (401 ``Bad credentials``), per-token permissions (403
``Resource not accessible by integration``), pagination with ``Link`` headers, newest-first artifact
and run lists, ``name`` filters, the run list's filters (``head_sha``, ``branch``, ``event``,
``status``; at most 1,000 runs for a filtered list, as GitHub documents; a filter it does not model
is a problem), the 50-annotations-per-request and comment-length limits (422), expired artifacts
(410), and injected faults (secondary rate limits with ``Retry-After``, 5xx).
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import re
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_schema_validator import OAS30Validator
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE / "openapi-subset.json"
PAYLOADS = HERE / "payloads"
DOCS = "https://docs.github.com/rest"
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc)

_spec_cache: dict[str, Any] = {}


def spec() -> dict[str, Any]:
    if "spec" not in _spec_cache:
        data = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
        data["servers"] = [{"url": "/"}]  # match any host and port: the server picks a free port
        _spec_cache["spec"] = data
        _spec_cache["openapi"] = OpenAPI.from_dict(data)
    return _spec_cache["spec"]


def openapi() -> OpenAPI:
    spec()
    return _spec_cache["openapi"]


def example(name: str) -> Any:
    return copy.deepcopy(spec()["components"]["examples"][name]["value"])


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fake_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# --- state ---------------------------------------------------------------------------------------


@dataclass
class Commit:
    sha: str
    parents: list[str]
    message: str
    date: datetime


@dataclass
class Pull:
    number: int
    head_sha: str
    head_ref: str
    head_repo: str  # full name; differs from the base repository for a fork
    base_ref: str
    state: str = "open"


@dataclass
class WorkflowRun:
    id: int
    head_sha: str
    head_branch: str
    head_repo: str  # full name; differs from the repository for a fork's pull-request run
    head_repository_id: int
    event: str  # push, pull_request, schedule, ...
    created_at: datetime
    status: str = "completed"
    conclusion: str | None = "success"
    path: str = ".github/workflows/gradci.yml"


@dataclass
class Artifact:
    id: int
    name: str
    run_id: int  # every artifact belongs to a run of its repository (Repo.runs)
    created_at: datetime
    archive: bytes
    expired: bool = False
    downloads: int = 0


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    output: dict[str, Any]
    annotations: list[dict[str, Any]] = field(default_factory=list)
    details_url: str | None = None
    external_id: str | None = None
    requests: int = 1  # create plus updates


@dataclass
class Comment:
    id: int
    issue: int
    body: str
    login: str
    user_type: str
    created_at: datetime
    updated_at: datetime
    edits: int = 0


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    default_branch: str = "main"
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, Pull] = field(default_factory=dict)
    runs: dict[int, WorkflowRun] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def add_commit(
        self, sha: str, parents: Iterable[str] = (), *, message: str = "", when: datetime | None = None
    ) -> str:
        parents = list(parents)
        if when is None:
            latest = max((self.commits[p].date for p in parents), default=T0)
            when = latest + timedelta(minutes=10)
        self.commits[sha] = Commit(sha, parents, message or f"commit {sha[:7]}", when)
        return sha

    def chain(self, branch: str, count: int, *, start: str | None = None, prefix: str = "") -> list[str]:
        """``count`` commits on ``branch`` (after ``start``), oldest first; moves the branch."""
        shas = []
        parent = start or self.branches.get(branch)
        for i in range(count):
            sha = fake_sha(f"{self.full_name}:{branch}:{prefix}{i}:{parent}")
            self.add_commit(sha, [parent] if parent else [])
            shas.append(sha)
            parent = sha
        if shas:
            self.branches[branch] = shas[-1]
        return shas

    def ancestors(self, sha: str) -> list[str]:
        """``sha`` and everything it descends from, newest first (what ``git log`` lists)."""
        seen: dict[str, Commit] = {}
        stack = [sha]
        while stack:
            current = stack.pop()
            if current in seen or current not in self.commits:
                continue
            seen[current] = self.commits[current]
            stack.extend(self.commits[current].parents)
        return [c.sha for c in sorted(seen.values(), key=lambda c: c.date, reverse=True)]

    def resolve(self, ref: str) -> str | None:
        ref = ref.split(":", 1)[-1]  # owner:branch
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.commits:
            return ref
        matches = [sha for sha in self.commits if len(ref) >= 7 and sha.startswith(ref)]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Token:
    value: str
    login: str = "github-actions[bot]"
    user_type: str = "Bot"
    # GitHub's permission names; a token without an entry has no access to that area
    permissions: dict[str, str] = field(
        default_factory=lambda: {
            "contents": "read",
            "actions": "read",
            "checks": "write",
            "pull_requests": "write",
            "issues": "write",
        }
    )


READ_ONLY = {
    "contents": "read",
    "actions": "read",
    "checks": "read",
    "pull_requests": "read",
    "issues": "read",
}


@dataclass
class Fault:
    """Answer matching requests with ``status`` (``times`` times, then behave normally)."""

    method: str
    path: str  # regular expression over the request path
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any
    authorization: str | None

    @property
    def operation(self) -> str:
        return f"{self.method} {self.path}"


def secondary_rate_limit(
    method: str, path: str, *, retry_after: int = 1, times: int = 1, status: int = 403
) -> Fault:
    return Fault(
        method,
        path,
        status,
        {
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        },
        {"Retry-After": str(retry_after)},
        times,
    )


def make_zip(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # the test output stays readable
        pass


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": DOCS}
        if errors is not None:
            self.body["errors"] = errors
        if status in (401, 403, 404):
            self.body["status"] = str(status)
        self.headers = headers or {}


# --- the server ----------------------------------------------------------------------------------


class FakeGitHub:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self.blob_requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1001)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.storage_url = ""
        self._map = Map(
            [
                Rule("/repos/<owner>/<repo>/compare/<path:basehead>", endpoint="compare", methods=["GET"]),
                Rule("/repos/<owner>/<repo>/commits", endpoint="list_commits", methods=["GET"]),
                Rule("/repos/<owner>/<repo>/actions/artifacts", endpoint="list_artifacts", methods=["GET"]),
                Rule(
                    "/repos/<owner>/<repo>/actions/artifacts/<int:artifact_id>/<archive_format>",
                    endpoint="download_artifact",
                    methods=["GET"],
                ),
                Rule("/repos/<owner>/<repo>/actions/runs", endpoint="list_runs", methods=["GET"]),
                Rule(
                    "/repos/<owner>/<repo>/actions/runs/<int:run_id>/artifacts",
                    endpoint="run_artifacts",
                    methods=["GET"],
                ),
                Rule("/repos/<owner>/<repo>/check-runs", endpoint="create_check_run", methods=["POST"]),
                Rule(
                    "/repos/<owner>/<repo>/check-runs/<int:check_run_id>",
                    endpoint="update_check_run",
                    methods=["PATCH"],
                ),
                Rule(
                    "/repos/<owner>/<repo>/issues/<int:number>/comments",
                    endpoint="list_comments",
                    methods=["GET"],
                ),
                Rule(
                    "/repos/<owner>/<repo>/issues/<int:number>/comments",
                    endpoint="create_comment",
                    methods=["POST"],
                ),
                Rule(
                    "/repos/<owner>/<repo>/issues/comments/<int:comment_id>",
                    endpoint="update_comment",
                    methods=["PATCH"],
                ),
                Rule("/repos/<owner>/<repo>/pulls", endpoint="list_pulls", methods=["GET"]),
                Rule("/repos/<owner>/<repo>/pulls/<int:number>", endpoint="get_pull", methods=["GET"]),
                Rule("/_storage/<int:artifact_id>", endpoint="storage", methods=["GET"]),
            ]
        )

    # -- lifecycle --

    def start(self) -> FakeGitHub:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        port = self._server.server_port
        self.url = f"http://127.0.0.1:{port}"
        # Another host name for the same socket: artifact archives come from "storage", and a client
        # must not send its GitHub token there (PyGithub drops it when the host changes).
        self.storage_url = f"http://localhost:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test-facing helpers --

    def add_repo(self, full_name: str, *, id: int, default_branch: str = "main") -> Repo:
        owner, name = full_name.split("/")
        repo = Repo(owner, name, id, default_branch)
        self.repos[full_name.lower()] = repo
        return repo

    def add_token(self, value: str, **kwargs: Any) -> Token:
        token = Token(value, **kwargs)
        self.tokens[value] = token
        return token

    def add_run(
        self,
        repo: Repo,
        head_sha: str,
        *,
        head_branch: str | None = None,
        head_repository_id: int | None = None,
        head_repo: str | None = None,
        event: str | None = None,
        created_at: datetime | None = None,
        conclusion: str | None = "success",
        path: str = ".github/workflows/gradci.yml",
        run_id: int | None = None,
    ) -> WorkflowRun:
        """A workflow run. By default a push to the default branch; a run on another branch or of
        another repository (``head_repository_id``) is a pull request's (``event``)."""
        commit = repo.commits.get(head_sha)
        branch = head_branch or repo.default_branch
        head_id = head_repository_id or repo.id
        if head_repo is None:
            head_repo = repo.full_name if head_id == repo.id else f"fork{head_id}/{repo.name}"
        if event is None:
            event = "push" if branch == repo.default_branch and head_id == repo.id else "pull_request"
        run = WorkflowRun(
            id=run_id or next(self._ids),
            head_sha=head_sha,
            head_branch=branch,
            head_repo=head_repo,
            head_repository_id=head_id,
            event=event,
            created_at=created_at or ((commit.date if commit else T0) + timedelta(minutes=1)),
            conclusion=conclusion,
            status="completed" if conclusion else "in_progress",
            path=path,
        )
        repo.runs[run.id] = run
        return run

    def add_artifact(
        self,
        repo: Repo,
        name: str,
        head_sha: str,
        files: dict[str, bytes | str] | bytes,
        *,
        run: WorkflowRun | None = None,
        expired: bool = False,
        created_at: datetime | None = None,
        **run_fields: Any,
    ) -> Artifact:
        """An artifact of ``run``, or of a new run (``add_run``'s keywords) for ``head_sha``.
        ``files`` is what the zip holds, or the archive itself."""
        if run is None:
            existing = repo.runs.get(run_fields.get("run_id") or -1)
            run = existing or self.add_run(repo, head_sha, **run_fields)
        assert run.head_sha == head_sha, "an artifact's commit is its run's"
        artifact = Artifact(
            id=next(self._ids),
            name=name,
            run_id=run.id,
            created_at=created_at or (run.created_at + timedelta(minutes=4)),
            archive=files if isinstance(files, bytes) else make_zip(files),
            expired=expired,
        )
        repo.artifacts.append(artifact)
        return artifact

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    # -- WSGI --

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        with self.lock:
            response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = self._map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except Exception:
            endpoint, args = None, {}
        if endpoint == "storage":
            return self._storage(request, args["artifact_id"])
        body = self._request_body(request)
        try:
            openapi().validate_request(WerkzeugOpenAPIRequest(request))
        except Exception as exc:
            self._problem(f"request {request.method} {request.full_path}: {_explain(exc)}")
            response = _json(400, {"message": f"gradci test server: invalid request: {_explain(exc)[:500]}"})
            self._record(request, response, body)
            return response
        try:
            token = self._authenticate(request)
            self._inject_fault(request)
            if endpoint is None:
                raise ApiError(404, "Not Found")
            response = getattr(self, "_" + endpoint)(request, token, **args)
        except ApiError as err:
            response = _json(err.status, err.body, err.headers)
        response.headers.setdefault("X-GitHub-Api-Version-Selected", "2022-11-28")
        response.headers.setdefault("X-RateLimit-Limit", "5000")
        response.headers.setdefault("X-RateLimit-Remaining", "4999")
        response.headers.setdefault("X-RateLimit-Reset", str(int(T0.timestamp()) + 3600))
        self._validate_response(request, response)
        self._record(request, response, body)
        return response

    def _request_body(self, request: Request) -> Any:
        data = request.get_data(cache=True)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data

    def _record(self, request: Request, response: Response, body: Any) -> None:
        self.calls.append(
            Call(
                request.method,
                request.path,
                dict(request.args),
                response.status_code,
                body,
                request.headers.get("Authorization"),
            )
        )

    def _problem(self, text: str) -> None:
        self.problems.append(text)

    def _validate_response(self, request: Request, response: Response) -> None:
        documented = self._documented_statuses(request)
        if documented is not None and str(response.status_code) not in documented:
            # GitHub's description lists few of the errors every operation can answer with; what
            # GitHub sends then is a basic error (or a validation error, for 422).
            if response.status_code < 400:
                self._problem(
                    f"response {request.method} {request.path}: status {response.status_code} is not documented"
                )
                return
            name = "validation-error" if response.status_code == 422 else "basic-error"
            schema = {**spec()["components"]["schemas"][name], "components": spec()["components"]}
            errors = list(OAS30Validator(schema).iter_errors(json.loads(response.get_data())))
            if errors:
                self._problem(
                    f"response {request.method} {request.path} {response.status_code}: {errors[0].message}"
                )
            return
        try:
            openapi().validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
        except Exception as exc:
            self._problem(f"response {request.method} {request.path} {response.status_code}: {_explain(exc)}")

    def _documented_statuses(self, request: Request) -> set[str] | None:
        for template, item in spec()["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            operation = item.get(request.method.lower())
            if operation is not None and re.match(pattern, request.path):
                return set(operation["responses"])
        return None

    def _authenticate(self, request: Request) -> Token:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or value not in self.tokens:
            raise ApiError(401, "Bad credentials")
        return self.tokens[value]

    def _inject_fault(self, request: Request) -> None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == request.method and re.fullmatch(fault.path, request.path):
                fault.times -= 1
                error = ApiError(fault.status, fault.body.get("message", "fault"), headers=fault.headers)
                error.body = dict(fault.body)
                raise error

    # -- helpers for handlers --

    def _repo(self, owner: str, repo: str) -> Repo:
        found = self.repos.get(f"{owner}/{repo}".lower())
        if found is None:
            raise ApiError(404, "Not Found")
        return found

    @staticmethod
    def _need(token: Token, area: str, level: str) -> None:
        have = token.permissions.get(area)
        if have is None or (level == "write" and have != "write"):
            raise ApiError(403, "Resource not accessible by integration")

    def _api(self, path: str) -> str:
        return self.url + path

    def _localize(self, data: Any) -> Any:
        text = json.dumps(data).replace("https://api.github.com", self.url)
        return json.loads(text)

    def _page(self, request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = min(int(request.args.get("per_page", 30)), 100)
        page = max(int(request.args.get("page", 1)), 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        links = []
        args = dict(request.args)

        def link(number: int, rel: str) -> str:
            return f'<{self.url}{request.path}?{urlencode({**args, "per_page": per_page, "page": number})}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def _commit_json(self, repo: Repo, sha: str) -> dict[str, Any]:
        commit = repo.commits[sha]
        data = self._localize(example("commit-items")[0])
        base = f"{self.url}/repos/{repo.full_name}"
        data.update(
            url=f"{base}/commits/{sha}",
            sha=sha,
            html_url=f"https://github.com/{repo.full_name}/commit/{sha}",
            comments_url=f"{base}/commits/{sha}/comments",
            parents=[
                {
                    "url": f"{base}/commits/{p}",
                    "sha": p,
                    "html_url": f"https://github.com/{repo.full_name}/commit/{p}",
                }
                for p in commit.parents
            ],
        )
        data["commit"].update(message=commit.message, url=f"{base}/git/commits/{sha}")
        data["commit"]["tree"] = {"url": f"{base}/git/trees/{sha}", "sha": fake_sha("tree" + sha)}
        for who in ("author", "committer"):
            data["commit"][who]["date"] = iso(commit.date)
        return data

    def _minimal_repo(self, template: dict[str, Any], full_name: str, repo_id: int) -> dict[str, Any]:
        owner, name = full_name.split("/")
        data = copy.deepcopy(template)
        data.update(
            id=repo_id,
            name=name,
            full_name=full_name,
            url=f"{self.url}/repos/{full_name}",
            html_url=f"https://github.com/{full_name}",
            fork=False,
        )
        data["owner"]["login"] = owner
        return data

    def _run_json(self, repo: Repo, run: WorkflowRun) -> dict[str, Any]:
        data = self._localize(example("workflow-run-paginated")["workflow_runs"][0])
        url = f"{self.url}/repos/{repo.full_name}/actions/runs/{run.id}"
        data.update(
            id=run.id,
            node_id=f"WFR_{run.id}",
            head_branch=run.head_branch,
            head_sha=run.head_sha,
            path=run.path,
            event=run.event,
            status=run.status,
            conclusion=run.conclusion,
            url=url,
            html_url=f"https://github.com/{repo.full_name}/actions/runs/{run.id}",
            pull_requests=[],
            created_at=iso(run.created_at),
            updated_at=iso(run.created_at),
            run_started_at=iso(run.created_at),
            jobs_url=url + "/jobs",
            logs_url=url + "/logs",
            artifacts_url=url + "/artifacts",
            cancel_url=url + "/cancel",
            rerun_url=url + "/rerun",
        )
        data["head_commit"]["id"] = run.head_sha
        data["repository"] = self._minimal_repo(data["repository"], repo.full_name, repo.id)
        head = self._minimal_repo(data["head_repository"], run.head_repo, run.head_repository_id)
        head["fork"] = run.head_repository_id != repo.id
        data["head_repository"] = head
        data["head_repository_id"] = run.head_repository_id
        return data

    def _artifact_json(self, repo: Repo, artifact: Artifact) -> dict[str, Any]:
        run = repo.runs[artifact.run_id]
        url = f"{self.url}/repos/{repo.full_name}/actions/artifacts/{artifact.id}"
        return {
            "id": artifact.id,
            "node_id": f"MDg6QXJ0aWZhY3Q{artifact.id}",
            "name": artifact.name,
            "size_in_bytes": len(artifact.archive),
            "url": url,
            "archive_download_url": url + "/zip",
            "expired": artifact.expired,
            "created_at": iso(artifact.created_at),
            "expires_at": iso(artifact.created_at + timedelta(days=90)),
            "updated_at": iso(artifact.created_at),
            "digest": "sha256:" + hashlib.sha256(artifact.archive).hexdigest(),
            "workflow_run": {
                "id": run.id,
                "repository_id": repo.id,
                "head_repository_id": run.head_repository_id,
                "head_branch": run.head_branch,
                "head_sha": run.head_sha,
            },
        }

    def _user(self, login: str, user_type: str) -> dict[str, Any]:
        user = self._localize(example("issue-comment")["user"])
        user.update(login=login, type=user_type, id=abs(hash(login)) % 10**8)
        return user

    # -- operations --

    def _compare(self, request: Request, token: Token, owner: str, repo: str, basehead: str) -> Response:
        self._need(token, "contents", "read")
        r = self._repo(owner, repo)
        if "..." not in basehead:
            raise ApiError(404, "Not Found")
        base_ref, head_ref = basehead.split("...", 1)
        base, head = r.resolve(base_ref), r.resolve(head_ref)
        if base is None or head is None:
            raise ApiError(404, "Not Found")
        base_line = r.ancestors(base)
        head_line = r.ancestors(head)
        in_base = set(base_line)
        merge_base = next((sha for sha in head_line if sha in in_base), None)
        if merge_base is None:
            raise ApiError(404, f"No common ancestor between {base_ref} and {head_ref}.")
        ahead = [sha for sha in head_line if sha not in in_base]
        behind = [sha for sha in base_line if sha not in set(head_line)]
        status = (
            "identical"
            if not ahead and not behind
            else "ahead"
            if not behind
            else "behind"
            if not ahead
            else "diverged"
        )
        data = self._localize(example("commit-comparison"))
        base_url = f"https://github.com/{r.full_name}/compare/{basehead}"
        data.update(
            url=f"{self.url}/repos/{r.full_name}/compare/{basehead}",
            html_url=base_url,
            permalink_url=base_url,
            diff_url=base_url + ".diff",
            patch_url=base_url + ".patch",
            base_commit=self._commit_json(r, base),
            merge_base_commit=self._commit_json(r, merge_base),
            status=status,
            ahead_by=len(ahead),
            behind_by=len(behind),
            total_commits=len(ahead),
            commits=[self._commit_json(r, sha) for sha in reversed(ahead)],
            files=[],
        )
        return _json(200, data)

    def _list_commits(self, request: Request, token: Token, owner: str, repo: str) -> Response:
        self._need(token, "contents", "read")
        r = self._repo(owner, repo)
        start = r.resolve(request.args.get("sha", r.default_branch))
        if start is None:
            raise ApiError(404, "Not Found")
        items, headers = self._page(request, r.ancestors(start))
        return _json(200, [self._commit_json(r, sha) for sha in items], headers)

    def _listed_artifacts(self, request: Request, artifacts: list[Artifact], r: Repo) -> Response:
        name = request.args.get("name")
        chosen = [a for a in artifacts if name is None or a.name == name]
        chosen.sort(key=lambda a: (a.created_at, a.id), reverse=True)  # newest first, as GitHub lists them
        items, headers = self._page(request, chosen)
        return _json(
            200,
            {"total_count": len(chosen), "artifacts": [self._artifact_json(r, a) for a in items]},
            headers,
        )

    def _list_artifacts(self, request: Request, token: Token, owner: str, repo: str) -> Response:
        self._need(token, "actions", "read")
        r = self._repo(owner, repo)
        return self._listed_artifacts(request, r.artifacts, r)

    def _run_artifacts(self, request: Request, token: Token, owner: str, repo: str, run_id: int) -> Response:
        self._need(token, "actions", "read")
        r = self._repo(owner, repo)
        if run_id not in r.runs:
            raise ApiError(404, "Not Found")
        return self._listed_artifacts(request, [a for a in r.artifacts if a.run_id == run_id], r)

    _RUN_FILTERS = ("head_sha", "branch", "event", "status")

    def _list_runs(self, request: Request, token: Token, owner: str, repo: str) -> Response:
        self._need(token, "actions", "read")
        r = self._repo(owner, repo)
        unmodelled = set(request.args) - {*self._RUN_FILTERS, "exclude_pull_requests", "per_page", "page"}
        if unmodelled:
            self._problem(f"ghfake does not model the workflow-run filters {sorted(unmodelled)}")
            raise ApiError(422, "gradci test server: filter not modelled")
        args = request.args
        chosen = [
            run
            for run in r.runs.values()
            if args.get("head_sha") in (None, run.head_sha)
            and args.get("branch") in (None, run.head_branch)
            and args.get("event") in (None, run.event)
            and args.get("status") in (None, run.status, run.conclusion)
        ]
        chosen.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        if any(name in args for name in self._RUN_FILTERS):
            chosen = chosen[:1000]  # "up to 1,000 results for each search" with these filters
        items, headers = self._page(request, chosen)
        return _json(
            200,
            {"total_count": len(chosen), "workflow_runs": [self._run_json(r, run) for run in items]},
            headers,
        )

    def _download_artifact(
        self, request: Request, token: Token, owner: str, repo: str, artifact_id: int, archive_format: str
    ) -> Response:
        self._need(token, "actions", "read")
        r = self._repo(owner, repo)
        artifact = next((a for a in r.artifacts if a.id == artifact_id), None)
        if artifact is None or archive_format != "zip":
            raise ApiError(404, "Not Found")
        if artifact.expired:
            raise ApiError(410, "Artifact has expired")
        signature = hashlib.sha256(f"{artifact.id}:{token.value}".encode()).hexdigest()[:16]
        response = Response(status=302)
        response.headers["Location"] = f"{self.storage_url}/_storage/{artifact.id}?sig={signature}"
        return response

    def _storage(self, request: Request, artifact_id: int) -> Response:
        """Blob storage, not the GitHub API: it must never see the GitHub token."""
        self.blob_requests.append(
            {"artifact": artifact_id, "authorization": request.headers.get("Authorization")}
        )
        if request.headers.get("Authorization"):
            self._problem(f"the GitHub token was sent to artifact storage ({request.host})")
            return Response("AuthenticationFailed", status=403)
        for r in self.repos.values():
            for artifact in r.artifacts:
                if artifact.id == artifact_id and request.args.get("sig"):
                    artifact.downloads += 1
                    return Response(artifact.archive, status=200, content_type="application/zip")
        return Response("BlobNotFound", status=404)

    def _create_check_run(self, request: Request, token: Token, owner: str, repo: str) -> Response:
        self._need(token, "checks", "write")
        r = self._repo(owner, repo)
        data = request.get_json()
        if data["head_sha"] not in r.commits:
            raise ApiError(
                422,
                "Validation Failed",
                errors=[{"resource": "CheckRun", "field": "head_sha", "code": "invalid"}],
            )
        self._check_annotations(data)
        output = data.get("output") or {}
        run = CheckRun(
            id=next(self._ids),
            name=data["name"],
            head_sha=data["head_sha"],
            status="completed" if data.get("conclusion") else data.get("status", "queued"),
            conclusion=data.get("conclusion"),
            output={k: v for k, v in output.items() if k != "annotations"},
            annotations=list(output.get("annotations", [])),
            details_url=data.get("details_url"),
            external_id=data.get("external_id"),
        )
        r.check_runs[run.id] = run
        return _json(201, self._check_run_json(r, run))

    def _update_check_run(
        self, request: Request, token: Token, owner: str, repo: str, check_run_id: int
    ) -> Response:
        self._need(token, "checks", "write")
        r = self._repo(owner, repo)
        run = r.check_runs.get(check_run_id)
        if run is None:
            raise ApiError(404, "Not Found")
        data = request.get_json()
        self._check_annotations(data)
        output = data.get("output")
        if output is not None:
            run.output.update({k: v for k, v in output.items() if k != "annotations"})
            run.annotations.extend(output.get("annotations", []))
        if data.get("conclusion"):
            run.conclusion, run.status = data["conclusion"], "completed"
        elif data.get("status"):
            run.status = data["status"]
        run.requests += 1
        return _json(200, self._check_run_json(r, run))

    @staticmethod
    def _check_annotations(data: dict[str, Any]) -> None:
        annotations = (data.get("output") or {}).get("annotations") or []
        if len(annotations) > 50:
            raise ApiError(
                422,
                f"Invalid request.\n\nNo more than 50 items are allowed; {len(annotations)} were supplied.",
            )
        for a in annotations:
            if (
                len(a.get("title", "")) > 255
                or len(a["message"].encode()) > 65536
                or len(a.get("raw_details", "").encode()) > 65536
            ):
                raise ApiError(422, "Invalid request.\n\nAnnotation is too long.")

    def _check_run_json(self, r: Repo, run: CheckRun) -> dict[str, Any]:
        data = self._localize(example("check-run"))
        url = f"{self.url}/repos/{r.full_name}/check-runs/{run.id}"
        data.update(
            id=run.id,
            node_id=f"CR_{run.id}",
            head_sha=run.head_sha,
            name=run.name,
            status=run.status,
            conclusion=run.conclusion,
            url=url,
            html_url=f"https://github.com/{r.full_name}/runs/{run.id}",
            details_url=run.details_url,
            external_id=run.external_id,
            pull_requests=[],
            started_at=iso(T0),
            completed_at=iso(T0) if run.status == "completed" else None,
        )
        data["output"] = {
            "title": run.output.get("title"),
            "summary": run.output.get("summary"),
            "text": run.output.get("text"),
            "annotations_count": len(run.annotations),
            "annotations_url": url + "/annotations",
        }
        return data

    def _list_comments(self, request: Request, token: Token, owner: str, repo: str, number: int) -> Response:
        self._need(token, "issues", "read")
        r = self._repo(owner, repo)
        if number not in r.pulls:
            raise ApiError(404, "Not Found")
        comments = sorted((c for c in r.comments.values() if c.issue == number), key=lambda c: c.id)
        items, headers = self._page(request, comments)
        return _json(200, [self._comment_json(r, c) for c in items], headers)

    def _create_comment(self, request: Request, token: Token, owner: str, repo: str, number: int) -> Response:
        if token.permissions.get("pull_requests") != "write" and token.permissions.get("issues") != "write":
            raise ApiError(403, "Resource not accessible by integration")
        r = self._repo(owner, repo)
        if number not in r.pulls:
            raise ApiError(404, "Not Found")
        body = request.get_json()["body"]
        self._check_body(body)
        now = T0 + timedelta(seconds=len(self.calls))
        comment = Comment(next(self._ids), number, body, token.login, token.user_type, now, now)
        r.comments[comment.id] = comment
        return _json(201, self._comment_json(r, comment))

    def _update_comment(
        self, request: Request, token: Token, owner: str, repo: str, comment_id: int
    ) -> Response:
        if token.permissions.get("pull_requests") != "write" and token.permissions.get("issues") != "write":
            raise ApiError(403, "Resource not accessible by integration")
        r = self._repo(owner, repo)
        comment = r.comments.get(comment_id)
        if comment is None:
            raise ApiError(404, "Not Found")
        if comment.login != token.login:
            raise ApiError(403, "Resource not accessible by integration")
        body = request.get_json()["body"]
        self._check_body(body)
        comment.body = body
        comment.edits += 1
        comment.updated_at = T0 + timedelta(seconds=len(self.calls))
        return _json(200, self._comment_json(r, comment))

    @staticmethod
    def _check_body(body: str) -> None:
        if len(body) > 65536:
            raise ApiError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "IssueComment",
                        "code": "custom",
                        "field": "body",
                        "message": "Body is too long (maximum is 65536 characters)",
                    }
                ],
            )

    def _comment_json(self, r: Repo, c: Comment) -> dict[str, Any]:
        data = self._localize(example("issue-comment"))
        data.update(
            id=c.id,
            node_id=f"IC_{c.id}",
            url=f"{self.url}/repos/{r.full_name}/issues/comments/{c.id}",
            html_url=f"https://github.com/{r.full_name}/pull/{c.issue}#issuecomment-{c.id}",
            issue_url=f"{self.url}/repos/{r.full_name}/issues/{c.issue}",
            body=c.body,
            user=self._user(c.login, c.user_type),
            created_at=iso(c.created_at),
            updated_at=iso(c.updated_at),
            author_association="NONE",
        )
        return data

    def _pull_json(self, r: Repo, p: Pull, template: dict[str, Any]) -> dict[str, Any]:
        data = self._localize(template)
        data["requested_teams"] = []
        data.update(
            number=p.number,
            id=p.number + 10**6,
            state=p.state,
            url=f"{self.url}/repos/{r.full_name}/pulls/{p.number}",
            html_url=f"https://github.com/{r.full_name}/pull/{p.number}",
        )
        head_repo = self.repos.get(p.head_repo.lower())
        head_owner, head_name = p.head_repo.split("/")
        data["head"].update(ref=p.head_ref, sha=p.head_sha, label=f"{head_owner}:{p.head_ref}")
        data["head"]["repo"].update(
            id=head_repo.id if head_repo else r.id + 1000,
            name=head_name,
            full_name=p.head_repo,
            fork=p.head_repo.lower() != r.full_name.lower(),
            url=f"{self.url}/repos/{p.head_repo}",
        )
        data["head"]["repo"]["owner"]["login"] = head_owner
        data["base"].update(
            ref=p.base_ref, sha=r.branches.get(p.base_ref, ""), label=f"{r.owner}:{p.base_ref}"
        )
        data["base"]["repo"].update(
            id=r.id, name=r.name, full_name=r.full_name, fork=False, url=f"{self.url}/repos/{r.full_name}"
        )
        data["base"]["repo"]["owner"]["login"] = r.owner
        return data

    def _get_pull(self, request: Request, token: Token, owner: str, repo: str, number: int) -> Response:
        self._need(token, "pull_requests", "read")
        r = self._repo(owner, repo)
        pull = r.pulls.get(number)
        if pull is None:
            raise ApiError(404, "Not Found")
        return _json(200, self._pull_json(r, pull, example("pull-request")))

    def _list_pulls(self, request: Request, token: Token, owner: str, repo: str) -> Response:
        self._need(token, "pull_requests", "read")
        r = self._repo(owner, repo)
        state = request.args.get("state", "open")
        head = request.args.get("head")
        chosen = []
        for p in sorted(r.pulls.values(), key=lambda p: p.number, reverse=True):
            if state != "all" and p.state != state:
                continue
            if head is not None and head.lower() != f"{p.head_repo.split('/')[0]}:{p.head_ref}".lower():
                continue
            chosen.append(p)
        items, headers = self._page(request, chosen)
        return _json(
            200, [self._pull_json(r, p, example("pull-request-simple-items")[0]) for p in items], headers
        )


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(data), status=status, content_type="application/json; charset=utf-8")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _short(text: str, limit: int = 300) -> str:
    """Both ends of a long message: a schema error names the rule at the end ("... is too long")."""
    return text if len(text) <= limit else f"{text[: limit // 2]} … {text[-limit // 2 :]}"


def _explain(exc: BaseException) -> str:
    """The schema errors behind an openapi-core exception, briefly."""
    parts = [f"{type(exc).__name__}: {_short(str(exc))}"]
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        for error in getattr(cause, "schema_errors", ()) or ():
            where = "/".join(str(p) for p in error.absolute_path)
            parts.append(f"{where or '<root>'}: {_short(str(error.message))}")
        cause = cause.__cause__
    return "; ".join(parts)


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def iter_annotations(server: FakeGitHub) -> Iterator[dict[str, Any]]:
    for r in server.repos.values():
        for run in r.check_runs.values():
            yield from run.annotations
