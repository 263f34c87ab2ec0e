"""``baseline-mode: rerun``: base results made by running the suite on the merge base.

For projects that publish no results artifact from their base branch: the merge base is checked
out next to the repository in a ``git worktree`` (fetched first when a shallow clone lacks it),
the user's ``baseline-setup`` command prepares it (typically ``pip install -e .``, which installs
the base version of the project's ops into the same environment), and ``gradci run`` runs there
with the selection the head results record. It costs a second run of the suite.

Only in the run that tested the pull request (never in a ``workflow_run`` publisher, which has a
write token and must not execute repository code).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradci.errors import GitHubError, ResultsFileError
from gradci.results import Results, load

if TYPE_CHECKING:
    from gradci.github.publish import Publisher


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def selection_flags(head: Results) -> list[str]:
    """``gradci run`` flags that select what the head run selected."""
    selection: dict[str, Any] = head.run.selection or {}
    flags = ["--device", head.run.device]
    for key, flag in (
        ("ops", "--ops"),
        ("exclude", "--exclude"),
        ("checks", "--checks"),
        ("dtypes", "--dtypes"),
        ("op_modules", "--op-modules"),
    ):
        values = selection.get(key) or []
        if values:
            flags += [flag, ",".join(str(v) for v in values)]
    if selection.get("spec"):
        flags += ["--spec", str(selection["spec"])]
    if selection.get("shard"):
        flags += ["--shard", str(selection["shard"])]
    if selection.get("upstream") is not None:
        flags.append("--upstream" if selection["upstream"] else "--no-upstream")
    return flags


def _base_sha(publisher: Publisher) -> str:
    ctx = publisher.context
    if publisher.api is not None:
        branch, start, merge_base = publisher.base_commit()
        if start is None:
            raise GitHubError("this event names no base branch")
        if merge_base is not None or start != ctx.head_sha:
            return merge_base or start
        return ctx.head_sha + "^"  # on the base branch itself: the commit before
    branch = ctx.base_ref or ctx.default_branch
    done = _git("merge-base", "HEAD", f"origin/{branch}", cwd=ctx.workspace)
    if done.returncode != 0:
        raise GitHubError(f"no token to ask GitHub, and git finds no merge base with origin/{branch}")
    return done.stdout.strip()


def rerun_base(publisher: Publisher, head: Results) -> tuple[Results | None, str | None]:
    ctx = publisher.context
    if ctx.event_name == "workflow_run":
        return None, "baseline-mode rerun does not run in a workflow_run publisher; use artifact"
    try:
        sha = _base_sha(publisher)
    except GitHubError as exc:
        return None, f"no base results: {exc.message}"
    root_done = _git("rev-parse", "--show-toplevel", cwd=ctx.workspace)
    if root_done.returncode != 0:
        return None, f"no base results: {ctx.workspace} is not a git checkout"
    root = Path(root_done.stdout.strip())
    if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=root).returncode != 0:
        fetched = _git("fetch", "--no-tags", "--depth=1", "origin", sha, cwd=root)
        if fetched.returncode != 0:
            return (
                None,
                f"no base results: cannot fetch the base commit {sha[:10]} ({fetched.stderr.strip()[:200]})",
            )
    with tempfile.TemporaryDirectory(prefix="gradci-base-") as tmp:
        worktree = Path(tmp) / "base"
        added = _git("worktree", "add", "--detach", str(worktree), sha, cwd=root)
        if added.returncode != 0:
            return None, f"no base results: git worktree add failed ({added.stderr.strip()[:200]})"
        try:
            return _run_in(publisher, head, worktree, Path(tmp) / "base-results.json", sha)
        finally:
            _git("worktree", "remove", "--force", str(worktree), cwd=root)


def _run_in(
    publisher: Publisher, head: Results, worktree: Path, output: Path, sha: str
) -> tuple[Results | None, str | None]:
    setup = publisher.settings.baseline_setup
    env = {k: v for k, v in os.environ.items() if k not in ("GRADCI_JSON", "GRADCI_JUNIT", "GRADCI_BASELINE")}
    if setup:
        publisher.info(f"base {sha[:10]}: {setup}")
        done = subprocess.run(setup, shell=True, cwd=worktree, env=env)
        if done.returncode != 0:
            return None, f"no base results: the baseline-setup command failed (exit {done.returncode})"
    command = [
        sys.executable,
        "-m",
        "gradci",
        "run",
        *selection_flags(head),
        "--json",
        str(output),
        "--junit",
        "",
        "--baseline",
        "",
        "--progress",
        "plain",
    ]
    publisher.info(f"base {sha[:10]}: {shlex.join(command[3:])}")
    done = subprocess.run(command, cwd=worktree, env=env)
    if done.returncode not in (0, 1):
        return (
            None,
            f"no base results: gradci run on the base {sha[:10]} ended with exit code {done.returncode}",
        )
    try:
        base = load(output)
    except ResultsFileError as exc:
        return None, f"no base results: {exc}"
    if base.run.git_sha is None:
        base.run.git_sha = sha
    publisher.report.base_sha = sha
    publisher.report.base_note = f"base results: gradci run on {sha[:10]} (baseline-mode rerun)"
    return base, None
