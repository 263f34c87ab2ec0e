"""``baseline-mode rerun`` when things go wrong, and the base commit found without a token: from git
and the event alone, in the shallow clones actions/checkout makes (real git, real processes).

``gradci baseline`` never stops the publishing that follows: whatever fails, it exits 0 with a
warning and a record of why, which ``gradci publish --baseline-mode rerun`` reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES
from results_factory import result, save

from gradci.github import rerun
from gradci.github.context import Context

SHA_A = "a" * 40


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / f"{name.split()[0]}.txt").write_text(name + "\n")  # one file per branch: merges cleanly
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", name, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GRADCI_", "RUNNER_"))}
    clean.pop("GH_TOKEN", None)
    clean["PYTHONPATH"] = str(FIXTURES)
    return subprocess.run(
        [sys.executable, "-m", "gradci", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def actions(tmp: Path, event_name: str, event: dict[str, object], sha: str) -> dict[str, str]:
    path = tmp / "event.json"
    path.write_text(json.dumps({"repository": {"full_name": "o/r", "default_branch": "main"}, **event}))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_SHA": sha,
        "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
        "GITHUB_OUTPUT": str(tmp / "output"),
    }


class Origin:
    """``main`` with ``fork`` commits, then ``changes`` off it with ``ahead`` commits and ``main``
    with ``behind`` more; ``refs/pull/1/merge`` merges them, as GitHub makes it."""

    def __init__(self, tmp: Path, *, fork: int = 3, ahead: int = 2, behind: int = 2) -> None:
        source = tmp / "source"
        source.mkdir()
        git("init", "-q", "-b", "main", cwd=source)
        self.main = [commit(source, f"main {i}") for i in range(fork)]
        self.merge_base = self.main[-1]
        git("checkout", "-q", "-b", "changes", cwd=source)
        self.head = [commit(source, f"change {i}") for i in range(ahead)][-1]
        git("checkout", "-q", "main", cwd=source)
        self.main += [commit(source, f"main later {i}") for i in range(behind)]
        git("checkout", "-q", "--detach", self.head, cwd=source)
        git("merge", "-q", "--no-edit", "main", cwd=source)
        self.merge = git("rev-parse", "HEAD", cwd=source)
        git("update-ref", "refs/pull/1/merge", self.merge, cwd=source)
        self.url = (tmp / "origin.git").as_uri()
        git("clone", "-q", "--mirror", str(source), str(tmp / "origin.git"), cwd=tmp)

    def checkout(self, target: Path, ref: str) -> Path:
        """What actions/checkout does by default: one commit, no history."""
        target.mkdir()
        git("init", "-q", cwd=target)
        git("remote", "add", "origin", self.url, cwd=target)
        git("fetch", "-q", "--no-tags", "--depth=1", "origin", ref, cwd=target)
        git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=target)
        return target


def pr_context(origin: Origin, root: Path) -> Context:
    return Context(
        repository="o/r",
        event_name="pull_request",
        head_sha=origin.head,
        base_ref="main",
        base_sha=origin.main[-1],
        default_branch="main",
        workspace=root,
    )


@pytest.mark.parametrize("ahead", [2, 100])
def test_merge_base_of_a_pull_request_in_a_depth_one_checkout(tmp_path: Path, ahead: int) -> None:
    """100 commits ahead: beyond the first deepening (64), so the clone is deepened twice."""
    origin = Origin(tmp_path, ahead=ahead)
    root = origin.checkout(tmp_path / "ws", "+refs/pull/1/merge")
    said: list[str] = []
    found = rerun.base_commit(pr_context(origin, root), rerun.Git(root, said.append))
    assert found == origin.merge_base
    assert said[0] == f"git fetch --depth=1 origin {origin.main[-1]} {origin.head}"
    assert len(said) == (2 if ahead < 64 else 3), said  # fetched, deepened by 64 (, by 512)


def test_push_compares_with_before_and_a_new_branch_with_the_commit_before(tmp_path: Path) -> None:
    origin = Origin(tmp_path)
    root = origin.checkout(tmp_path / "ws", origin.main[-1])
    push = Context(repository="o/r", event_name="push", head_sha=origin.main[-1], base_sha=origin.main[0])
    assert rerun.base_commit(push, rerun.Git(root, print)) == origin.main[0]
    new_branch = Context(repository="o/r", event_name="push", head_sha=origin.main[-1])
    assert rerun.base_commit(new_branch, rerun.Git(root, print)) == origin.main[-2]


def test_a_schedule_on_another_branch_compares_with_its_merge_base_with_the_default_branch(
    tmp_path: Path,
) -> None:
    origin = Origin(tmp_path)
    root = origin.checkout(tmp_path / "ws", origin.head)
    ctx = Context(
        repository="o/r",
        event_name="schedule",
        head_sha=origin.head,
        head_ref="changes",
        default_branch="main",
    )
    assert rerun.base_commit(ctx, rerun.Git(root, print)) == origin.merge_base
    on_main = Context(
        repository="o/r",
        event_name="schedule",
        head_sha=origin.main[-1],
        head_ref="main",
        default_branch="main",
    )
    assert rerun.base_commit(on_main, rerun.Git(root, print)) == origin.main[-2]


def test_an_unreachable_origin_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    """A private repository checked out without credentials fails the same way: fetch refused."""
    origin = Origin(tmp_path)
    root = origin.checkout(tmp_path / "ws", "+refs/pull/1/merge")
    git("remote", "set-url", "origin", (tmp_path / "gone.git").as_uri(), cwd=root)
    with pytest.raises(rerun.NoBase, match=r"^git fetch --depth=1 origin [0-9a-f]{40} [0-9a-f]{40} failed: "):
        rerun.base_commit(pr_context(origin, root), rerun.Git(root, print))


def test_baseline_with_another_mode_has_nothing_to_do(tmp_path: Path) -> None:
    done = cli("baseline", cwd=tmp_path, env={})
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == (
        "gradci baseline: baseline-mode artifact: nothing to run (only rerun makes base results here)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_baseline_outside_github_actions_is_a_usage_error(tmp_path: Path) -> None:
    save(tmp_path / "gradci-results.json", [result("add")])
    done = cli("baseline", "--baseline-mode", "rerun", cwd=tmp_path, env={})
    assert done.returncode == 2
    assert done.stderr == (
        "gradci: error: gradci baseline needs a GitHub Actions run, whose event names the base "
        "commit: GITHUB_REPOSITORY is not set\n"
    )


def test_baseline_without_head_results_exits_3(tmp_path: Path) -> None:
    done = cli("baseline", "--baseline-mode", "rerun", cwd=tmp_path, env={})
    assert done.returncode == 3
    assert done.stderr == "gradci: error: gradci-results.json: no such results file\n"


def test_a_failing_baseline_setup_is_reported_and_publishing_goes_on(tmp_path: Path) -> None:
    """A push in a depth-1 clone: the commit before the push is fetched, checked out, and its
    setup fails; the record says so, with no base results, and publish reports it."""
    origin = Origin(tmp_path)
    root = origin.checkout(tmp_path / "ws", origin.main[-1])
    env = actions(tmp_path, "push", {"after": origin.main[-1], "before": origin.main[-2]}, origin.main[-1])
    save(root / "gradci-results.json", [result("add"), result("mul", outcome="failed")])
    (root / "gradci-base-results.json").write_text("stale, from an earlier run")
    token = {"GITHUB_TOKEN": "ghs_" + "x" * 36}

    done = cli(
        "baseline", "--baseline-mode", "rerun", "--baseline-setup", "exit 3", cwd=root, env={**env, **token}
    )

    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("::warning")]
    assert warnings == [
        "::warning title=gradci baseline::a token is in this process's environment, where the base's code "
        "can read it: run gradci baseline without it (only gradci publish needs it)",
        "::warning title=gradci baseline::no base results: the baseline-setup command failed (exit 3); "
        "gradci publish reports the head results alone",
    ]
    assert f"gradci baseline: base commit {origin.main[-2]} (push)" in done.stderr
    assert not (root / "gradci-base-results.json").exists()  # the stale one is gone too
    record = json.loads((root / "gradci-baseline.json").read_text())
    assert record == {
        "format": "gradci-baseline",
        "version": 1,
        "head_sha": origin.main[-1],
        "base_sha": origin.main[-2],
        "problem": "no base results: the baseline-setup command failed (exit 3)",
    }
    assert git("worktree", "list", "--porcelain", cwd=root).count("worktree ") == 1  # removed again

    published = cli("publish", "--baseline-mode", "rerun", cwd=root, env=env)
    assert published.returncode == 1, published.stderr  # not compared: every failure counts
    summary = (tmp_path / "summary.md").read_text()
    assert "no base results: the baseline-setup command failed (exit 3)" in summary


def test_publish_without_a_record_or_with_another_heads_says_why(tmp_path: Path) -> None:
    env = actions(tmp_path, "push", {"after": SHA_A, "before": "b" * 40}, SHA_A)
    save(tmp_path / "gradci-results.json", [result("add")])

    done = cli("publish", "--baseline-mode", "rerun", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (
        "no base results: no gradci-baseline.json (run gradci baseline before gradci publish)"
        in (tmp_path / "summary.md").read_text()
    )

    record = {
        "format": "gradci-baseline",
        "version": 1,
        "head_sha": "c" * 40,
        "base_sha": "b" * 40,
        "problem": None,
    }
    (tmp_path / "gradci-baseline.json").write_text(json.dumps(record))
    save(tmp_path / "gradci-base-results.json", [result("add", outcome="failed")])
    (tmp_path / "summary.md").unlink()
    done = cli("publish", "--baseline-mode", "rerun", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (
        f"gradci-baseline.json was made for cccccccccc, not {SHA_A[:10]}"
        in (tmp_path / "summary.md").read_text()
    )
