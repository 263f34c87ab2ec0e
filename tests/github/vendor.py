"""Reproduce the vendored GitHub material under tests/github/ from the npm packages it comes from.

    python tests/github/vendor.py            # npm pack both packages into a temporary folder
    python tests/github/vendor.py --from DIR # or use already unpacked packages: DIR/openapi, DIR/webhooks

Writes

* ``openapi-subset.json``: GitHub's official REST description (``@octokit/openapi``,
  ``generated/api.github.com.json``) trimmed to the operations gradci calls (``OPERATIONS``) and
  every component they reference, transitively. Nothing inside what is kept is changed.
* ``payloads/*.json``: webhook payloads from ``@octokit/webhooks-examples`` (``api.github.com``).
  The package has no pull request from a fork and no ``workflow_run`` of a pull-request run, so
  three payloads are derived from real ones by changing the fields that differ (``DERIVED`` says
  which); ``payloads/PROVENANCE.md`` lists where each file comes from.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OPENAPI_PACKAGE = "@octokit/openapi@23.0.2"
WEBHOOKS_PACKAGE = "@octokit/webhooks-examples@7.6.1"

# (method, path) of every REST operation gradci sends.
OPERATIONS = [
    ("get", "/repos/{owner}/{repo}/compare/{basehead}"),
    ("get", "/repos/{owner}/{repo}/commits"),
    ("get", "/repos/{owner}/{repo}/actions/artifacts"),
    ("get", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"),
    ("get", "/repos/{owner}/{repo}/actions/runs"),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"),
    ("post", "/repos/{owner}/{repo}/check-runs"),
    ("patch", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("get", "/repos/{owner}/{repo}/pulls"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
]
# Errors GitHub sends on any operation although the description lists them on few.
EXTRA_SCHEMAS = ["basic-error", "validation-error"]


def npm_pack(package: str, into: Path) -> Path:
    done = subprocess.run(
        ["npm", "pack", "--silent", package], cwd=into, capture_output=True, text=True, check=True
    )
    tarball = into / done.stdout.strip().splitlines()[-1]
    target = into / tarball.name.removesuffix(".tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")
    return target / "package"


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path in OPERATIONS:
        item = spec["paths"][path]
        kept = paths.setdefault(path, {k: v for k, v in item.items() if k in ("parameters", "summary")})
        kept[method] = item[method]
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths) | {f"#/components/schemas/{name}" for name in EXTRA_SCHEMAS}
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, section, kind, name = ref.split("/", 3)
        assert section == "components", ref
        value = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = value
        pending |= _refs(value) - seen
    return {
        "openapi": spec["openapi"],
        "info": {
            **spec["info"],
            "x-gradci-subset": f"{OPENAPI_PACKAGE} generated/api.github.com.json, trimmed by "
            "tests/github/vendor.py to the operations gradci sends",
        },
        "servers": spec["servers"],
        "paths": paths,
        "components": {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())},
    }


# --- payloads -----------------------------------------------------------------------------------


def _example(index: list[dict[str, Any]], event: str, match: Callable[[dict[str, Any]], bool]) -> Any:
    for entry in index:
        if entry["name"] == event:
            for example in entry["examples"]:
                if match(example):
                    return copy.deepcopy(example)
    raise LookupError(f"no {event} example matches")


FORK_OWNER = {
    "login": "forker",
    "id": 7654321,
    "node_id": "MDQ6VXNlcjc2NTQzMjE=",
    "type": "User",
    "site_admin": False,
}


def _forked(repo: dict[str, Any]) -> dict[str, Any]:
    """The same repository as a user's fork of it."""
    fork = copy.deepcopy(repo)
    base_owner = repo["owner"]["login"]
    fork["id"] = repo["id"] + 1000
    fork["fork"] = True
    fork["full_name"] = f"{FORK_OWNER['login']}/{repo['name']}"
    fork["owner"] = {**repo["owner"], **FORK_OWNER}
    for key, value in list(fork.items()):
        if isinstance(value, str) and f"/{base_owner}/" in value:
            fork[key] = value.replace(f"/{base_owner}/", f"/{FORK_OWNER['login']}/")
    return fork


def payloads(index: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    files: dict[str, Any] = {}
    notes: dict[str, str] = {}

    def take(name: str, event: str, note: str, match: Callable[[dict[str, Any]], bool]) -> Any:
        files[name] = _example(index, event, match)
        notes[name] = f"`{event}` example: {note}, unchanged"
        return files[name]

    opened = take(
        "pull_request.opened.json",
        "pull_request",
        "first with action `opened`",
        lambda e: e.get("action") == "opened",
    )
    take(
        "pull_request.synchronize.json",
        "pull_request",
        "first with action `synchronize`",
        lambda e: e.get("action") == "synchronize",
    )
    take(
        "push.json",
        "push",
        "first push to a branch (`refs/heads/...`)",
        lambda e: e["ref"].startswith("refs/heads/"),
    )
    take("workflow_dispatch.json", "workflow_dispatch", "first example", lambda e: True)
    completed = take(
        "workflow_run.completed.json",
        "workflow_run",
        "first with action `completed` that lists a pull request",
        lambda e: e.get("action") == "completed" and e["workflow_run"]["pull_requests"],
    )

    fork = copy.deepcopy(opened)
    fork["pull_request"]["head"]["repo"] = _forked(opened["pull_request"]["head"]["repo"])
    fork["pull_request"]["head"]["user"] = {**opened["pull_request"]["head"]["user"], **FORK_OWNER}
    fork["pull_request"]["head"]["label"] = f"{FORK_OWNER['login']}:{opened['pull_request']['head']['ref']}"
    files["pull_request.opened.fork.json"] = fork
    notes["pull_request.opened.fork.json"] = (
        "derived from `pull_request.opened.json`: `pull_request.head.repo` made a fork "
        f"(`{FORK_OWNER['login']}/...`, `fork: true`, another id), head `user` and `label` to match"
    )

    # A workflow_run of a pull_request run from the same repository, and from a fork: GitHub leaves
    # pull_requests empty for a fork's run, and head_repository is the fork.
    same = copy.deepcopy(completed)
    run = same["workflow_run"]
    run["event"] = "pull_request"
    pr = run["pull_requests"][0]
    run["head_sha"] = pr["head"]["sha"]
    run["head_branch"] = pr["head"]["ref"]
    run["head_commit"]["id"] = pr["head"]["sha"]
    files["workflow_run.pull_request.json"] = same
    notes["workflow_run.pull_request.json"] = (
        "derived from `workflow_run.completed.json`: `event` set to `pull_request`, `head_sha`, "
        "`head_branch` and `head_commit.id` set to the listed pull request's head"
    )
    forked = copy.deepcopy(same)
    forked["workflow_run"]["pull_requests"] = []
    forked["workflow_run"]["head_repository"] = _forked(completed["workflow_run"]["head_repository"])
    files["workflow_run.pull_request.fork.json"] = forked
    notes["workflow_run.pull_request.fork.json"] = (
        "derived from `workflow_run.pull_request.json`: `pull_requests` emptied and `head_repository` "
        "made a fork, as GitHub sends them for a fork's pull-request run"
    )
    return files, notes


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--from", dest="source", type=Path, help="folder with openapi/ and webhooks/ unpacked"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.source:
            openapi, webhooks = args.source / "openapi", args.source / "webhooks"
        else:
            openapi, webhooks = npm_pack(OPENAPI_PACKAGE, Path(tmp)), npm_pack(WEBHOOKS_PACKAGE, Path(tmp))
        spec = json.loads((openapi / "generated" / "api.github.com.json").read_text(encoding="utf-8"))
        write_json(HERE / "openapi-subset.json", trim(spec))
        index = json.loads((webhooks / "api.github.com" / "index.json").read_text(encoding="utf-8"))
    files, notes = payloads(index)
    out = HERE / "payloads"
    out.mkdir(exist_ok=True)
    for name, data in files.items():
        write_json(out / name, data)
    lines = [
        "# Webhook payloads",
        "",
        f"From npm `{WEBHOOKS_PACKAGE}`, file `api.github.com/index.json` (MIT licence), written by",
        "`tests/github/vendor.py`; regenerate with `python tests/github/vendor.py`.",
        "",
        *(f"* `{name}`: {note}" for name, note in notes.items()),
        "",
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
