"""``gradci publish`` as a workflow step runs it: a separate process, GitHub's variables, the real
defaults (one second between writes), and ``baseline-mode rerun`` on a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES
from ghfake import FakeGitHub, Pull, payload
from ghfixtures import (  # noqa: F401 - fixtures
    TOKEN,
    Scenario,
    actions_env,
    fast_client_fixture,
    github_fixture,
    ops_results,
    read_outputs,
    scenario_fixture,
    write_results,
)

from gradci.github.comment import marker


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GRADCI_", "RUNNER_"))}
    clean.pop("GH_TOKEN", None)
    clean["PYTHONPATH"] = os.pathsep.join([str(FIXTURES), clean.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "gradci", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_publish_as_a_workflow_step(scenario: Scenario) -> None:
    sc = scenario
    ops = [f"op{i:02d}" for i in range(60)]
    sc.artifact_at(sc.merge_base, ops_results(set(), ops))
    write_results(sc, ops_results(set(ops[:55]), ops))
    env = actions_env(sc, "pull_request", payload("pull_request.opened.json"))
    done = run_cli("publish", "--check-name", "gradci (cpu)", env=env, cwd=sc.workspace)

    assert done.returncode == 1, done.stderr
    [run] = sc.repo.check_runs.values()
    assert run.name == "gradci (cpu)" and len(run.annotations) == 55 and run.requests == 2
    [comment] = sc.repo.comments.values()
    assert comment.body.startswith(marker("gradci (cpu)"))
    outputs = read_outputs(Path(env["GITHUB_OUTPUT"]))
    assert outputs["new-failures"] == "55" and outputs["conclusion"] == "failure"
    assert "published: check run 'gradci (cpu)' (55 annotations)" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert "::warning" not in done.stdout and "Traceback" not in done.stderr


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


OPS_MODULE = """\
from gradci_testops import _op, good_scale, wrong_scale


def scale(x, w=None):
    return {fn}(x, w)


op_db = [_op("rerun.scale", scale), _op("rerun.kept", good_scale)]
"""


@pytest.mark.slow
def test_baseline_mode_rerun_runs_the_merge_base_in_a_worktree(github: FakeGitHub, tmp_path: Path) -> None:
    """The base is the pull request's merge base, checked out in a git worktree, set up by the
    user's command and run with the selection the head results record."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git("init", "-q", "-b", "master", cwd=checkout)
    (checkout / "rerun_ops.py").write_text(OPS_MODULE.format(fn="good_scale"))
    git("add", ".", cwd=checkout)
    git("commit", "-q", "-m", "base", cwd=checkout)
    base_sha = git("rev-parse", "HEAD", cwd=checkout)
    git("checkout", "-q", "-b", "changes", cwd=checkout)
    (checkout / "rerun_ops.py").write_text(OPS_MODULE.format(fn="wrong_scale"))
    git("commit", "-q", "-am", "break the backward", cwd=checkout)
    head_sha = git("rev-parse", "HEAD", cwd=checkout)

    repo = github.add_repo("Codertocat/Hello-World", id=186853002, default_branch="master")
    repo.add_commit(base_sha)
    repo.add_commit(head_sha, [base_sha])
    repo.branches.update(master=base_sha, changes=head_sha)
    repo.pulls[2] = Pull(2, head_sha, "changes", "Codertocat/Hello-World", "master")
    github.add_token(TOKEN)
    event = payload("pull_request.opened.json")
    event["pull_request"]["head"]["sha"] = head_sha
    event["pull_request"]["base"]["sha"] = base_sha
    sc = Scenario(github, repo, [base_sha], head_sha, base_sha, checkout, tmp_path)

    ran = run_cli(
        "run", "--op-modules", "rerun_ops", "--checks", "grad", "--workers", "1", env={}, cwd=checkout
    )
    assert ran.returncode == 1, ran.stderr  # the broken op fails on head
    env = actions_env(sc, "pull_request", event)
    marker_file = tmp_path / "setup-ran"
    setup = f"{sys.executable} -c \"import os; open(r'{marker_file}', 'w').write(os.getcwd())\""
    # the base runs without the token; publishing compares with what it left
    no_token = {k: v for k, v in env.items() if k != "GITHUB_TOKEN"}
    based = run_cli(
        "baseline", "--baseline-mode", "rerun", "--baseline-setup", setup, env=no_token, cwd=checkout
    )
    assert based.returncode == 0, based.stderr
    assert f"base {base_sha[:10]}: run --device cpu" in based.stderr
    done = run_cli("publish", "--baseline-mode", "rerun", env=env, cwd=checkout)

    assert done.returncode == 1, done.stderr
    outputs = read_outputs(Path(env["GITHUB_OUTPUT"]))
    assert outputs["base-sha"] == base_sha and outputs["compared"] == "true"
    assert outputs["new-failures"] == "1" and outputs["total"] == "2"
    [run] = repo.check_runs.values()
    assert run.output["title"] == "1 new failure"
    assert run.annotations[0]["title"] == "New failure: test_fn_grad_rerun_scale_cpu_float64 (op rerun.scale)"
    # the OpInfo is built by a helper outside the repository: annotated at the repository's call
    assert (run.annotations[0]["path"], run.annotations[0]["start_line"]) == ("rerun_ops.py", 8)
    assert f"base results: gradci run on {base_sha[:10]} (baseline-mode rerun)" in done.stderr
    assert f"gradci run on {base_sha[:10]} (baseline-mode rerun)" in run.output["summary"]
    # the worktree is gone, the checkout untouched (still the head, no setup leftovers)
    assert git("worktree", "list", cwd=checkout).count("\n") == 0
    assert "gradci-base-" in marker_file.read_text()  # the setup command ran in the worktree
    assert json.loads((checkout / "gradci-results.json").read_text())["summary"]["failed"] == 1
