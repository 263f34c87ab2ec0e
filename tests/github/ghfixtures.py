"""Fixtures for the GitHub tests: a local GitHub (``ghfake``), a repository shaped like the
webhook payloads' one, results files, and ``gradci publish`` run as a user's workflow would."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ghfake import FakeGitHub, Pull, Repo, fake_sha, payload

from gradci import cli
from gradci.github import client
from gradci.locate import Location
from gradci.results import Mismatch, Outcome, Results, RunInfo, TestResult

TOKEN = "ghs_" + "Zq3" * 12  # shaped like an installation token, so a leak would look like one
READ_ONLY_TOKEN = "ghs_" + "r0X" * 12


@pytest.fixture(name="github")
def github_fixture() -> Iterator[FakeGitHub]:
    server = FakeGitHub().start()
    try:
        yield server
    finally:
        server.stop()
    # every request and response was checked against GitHub's OpenAPI description
    assert server.problems == [], "\n".join(server.problems)


@pytest.fixture(name="fast_client", autouse=True)
def fast_client_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs skip the pause between writes and the retry backoff; Retry-After is kept."""
    monkeypatch.setattr(client, "WRITE_INTERVAL", 0.0)
    monkeypatch.setattr(client, "BACKOFF", 0.0)


# --- results -------------------------------------------------------------------------------------


def result(
    op: str,
    outcome: Outcome,
    *,
    check: str = "grad",
    dtype: str = "float64",
    location: Location | None = None,
    message: str | None = None,
) -> TestResult:
    prefix = {"grad": "test_fn_grad", "gradgrad": "test_fn_gradgrad"}[check]
    failing = outcome.failing
    return TestResult(
        id=f"{prefix}_{op.replace('.', '_')}_cpu_{dtype}",
        op=op,
        check=check,
        device="cpu",
        dtype=dtype,
        outcome=outcome,
        duration=0.25,
        db="user",
        message=message
        if message is not None
        else ("GradcheckError: Jacobian mismatch for output 0" if failing else ""),
        sample_index=0 if failing else None,
        sample="Tensor[3] float64" if failing else None,
        mismatch=Mismatch(0, 0, "input", 1.0, 0.5, [0, 0], "2.0", "3.0", "slow") if failing else None,
        traceback="Traceback (most recent call last):\n  ...\nGradcheckError: Jacobian mismatch"
        if failing
        else None,
        repro=f"gradci repro {prefix}_{op.replace('.', '_')}_cpu_{dtype} --sample 0" if failing else None,
        location=location,
    )


def results(tests: list[TestResult], *, sha: str | None = None, device: str = "cpu") -> Results:
    run = RunInfo(
        gradci_version="0.1.0",
        torch_version="2.13.0",
        torch_git_version=None,
        python="3.11",
        platform="linux",
        device=device,
        device_name=None,
        cuda_version=None,
        started_at="2025-01-06T09:00:00+00:00",
        finished_at="2025-01-06T09:01:00+00:00",
        duration=60.0,
        git_sha=sha,
    )
    return Results(run, tests)


def ops_results(failing: set[str], ops: list[str], **kwargs: Any) -> Results:
    return results([result(op, Outcome.FAILED if op in failing else Outcome.PASSED) for op in ops], **kwargs)


def results_zip_files(res: Results, **extra: Any) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {"gradci-results.json": json.dumps(res.to_json())}
    files.update({k: json.dumps(v) for k, v in extra.items()})
    return files


# --- the repository of the webhook payloads ------------------------------------------------------


@dataclass
class Scenario:
    """``Codertocat/Hello-World``: master with 6 commits; the PR branch ``changes`` forks off at
    ``merge_base`` (master[2]) and ends at the payload's head commit."""

    server: FakeGitHub
    repo: Repo
    master: list[str]
    pr_head: str
    merge_base: str
    workspace: Path
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)

    def artifact_at(self, sha: str, res: Results, **kwargs: Any) -> Any:
        return self.server.add_artifact(
            self.repo, "gradci-results-cpu", sha, results_zip_files(res), **kwargs
        )


PR = payload("pull_request.opened.json")["pull_request"]


def build_repo(
    server: FakeGitHub, full_name: str, repo_id: int, default_branch: str
) -> tuple[Repo, list[str]]:
    repo = server.add_repo(full_name, id=repo_id, default_branch=default_branch)
    master = repo.chain(default_branch, 6)
    return repo, master


@pytest.fixture(name="scenario")
def scenario_fixture(github: FakeGitHub, tmp_path: Path) -> Scenario:
    repo, master = build_repo(github, "Codertocat/Hello-World", 186853002, "master")
    merge_base = master[2]
    side = repo.add_commit(fake_sha("side"), [merge_base])
    head = repo.add_commit(PR["head"]["sha"], [side])
    repo.branches["changes"] = head
    repo.pulls[2] = Pull(2, head, "changes", "Codertocat/Hello-World", "master")
    github.add_token(TOKEN)
    github.add_token(
        READ_ONLY_TOKEN,
        permissions={
            "contents": "read",
            "actions": "read",
            "checks": "read",
            "pull_requests": "read",
            "issues": "read",
        },
    )
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    return Scenario(github, repo, master, head, merge_base, workspace, tmp_path)


def actions_env(
    sc: Scenario, event_name: str, event: dict[str, Any], *, token: str | None = TOKEN, sha: str | None = None
) -> dict[str, str]:
    event_path = sc.tmp / f"event-{event_name}.json"
    event_path.write_text(json.dumps(event), encoding="utf-8")
    repository = event.get("repository", {}).get("full_name", "Codertocat/Hello-World")
    env = {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_REPOSITORY": repository,
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_API_URL": sc.server.url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_SHA": sha or fake_sha("merge-commit"),
        "GITHUB_REF": "refs/pull/2/merge" if event_name == "pull_request" else "refs/heads/master",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_WORKFLOW_REF": f"{repository}/.github/workflows/gradci.yml@refs/heads/master",
        "GITHUB_WORKSPACE": str(sc.workspace),
        "GITHUB_STEP_SUMMARY": str(sc.tmp / "step-summary.md"),
        "GITHUB_OUTPUT": str(sc.tmp / "github-output"),
    }
    if token is not None:
        env["GITHUB_TOKEN"] = token
    return env


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


def read_outputs(path: Path) -> dict[str, str]:
    """Parse ``$GITHUB_OUTPUT`` as the runner does (``name<<DELIM`` blocks and ``name=value``)."""
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").split("\n")
    values: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
        else:
            i += 1
    return values


def publish(
    sc: Scenario,
    env: dict[str, str],
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Done:
    """``gradci publish ARGS`` in-process, in the workspace, with exactly ``env`` as GitHub sets it."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "GRADCI_", "RUNNER_")) or name in ("GH_TOKEN", "CI"):
            monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(sc.workspace)
    capsys.readouterr()
    code = cli.main(["publish", *args])
    out, err = capsys.readouterr()
    summary_path = Path(env.get("GITHUB_STEP_SUMMARY", "/nonexistent"))
    return Done(
        code,
        out,
        err,
        read_outputs(Path(env.get("GITHUB_OUTPUT", "/nonexistent"))),
        summary_path.read_text(encoding="utf-8") if summary_path.exists() else "",
    )


def write_results(sc: Scenario, res: Results, name: str = "gradci-results.json") -> Path:
    path = sc.workspace / name
    res.save(path)
    return path


def python() -> str:
    return sys.executable
