"""``baseline-mode rerun``: base results made by running the suite on the merge base.

For projects that publish no results artifact from their base branch. Two halves, in two
processes, because the base's code is repository code and the publisher holds the token:

* ``gradci baseline`` (``prepare``; in the action, the run step, which has no token): finds the
  base commit from git and the event payload alone, fetching what a shallow clone lacks, checks
  it out in a ``git worktree``, runs ``--baseline-setup`` there (typically ``pip install -e .``)
  and ``gradci run`` with the selection the head results record. Beside the head results it
  writes ``gradci-base-results.json`` and the record ``gradci-baseline.json``: for which head
  commit, which base commit, or why there are no base results.
* ``gradci publish --baseline-mode rerun`` (``read``) compares with what the record names. It
  runs no code of the repository.

Never in a ``workflow_run`` publisher, which has a write token and must not run repository code.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradci.errors import EXIT_OK, ResultsFileError, UsageError
from gradci.options import Settings
from gradci.results import Results, load, write_atomic

from . import workflow_commands
from .client import TOKEN_VARIABLES
from .context import PULL_REQUEST_EVENTS, Context, from_environment

BASE_RESULTS = "gradci-base-results.json"
RECORD = "gradci-baseline.json"
RECORD_FORMAT = "gradci-baseline"
RECORD_LIMIT = 64 * 1024  # bytes; a record is a few hundred
# Deepening a shallow clone towards the merge base: these many more commits each time, then all.
DEEPEN = (64, 512)


class NoBase(Exception):
    """Why there are no base results; said in the report, never fatal."""

    sha: str | None = None  # the base commit, when it was found


def paths(head_results: Path) -> tuple[Path, Path]:
    """(base results, record) beside the head results."""
    folder = head_results.parent
    return folder / BASE_RESULTS, folder / RECORD


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


# --- git, without a token ------------------------------------------------------------------------


class Git:
    def __init__(self, root: Path, log: Any) -> None:
        self.root = root
        self.log = log

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # no credential prompt: a private repository's fetch fails at once (docs/publishing.md#checkout-depth)
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        return subprocess.run(
            ["git", *args], cwd=self.root, env=env, capture_output=True, text=True, timeout=600
        )

    def ok(self, *args: str) -> str | None:
        done = self.run(*args)
        return done.stdout.strip() if done.returncode == 0 else None

    def has(self, rev: str) -> bool:
        return self.run("cat-file", "-e", f"{rev}^{{commit}}").returncode == 0

    def shallow(self) -> bool:
        return self.ok("rev-parse", "--is-shallow-repository") == "true"

    def fetch(self, *args: str) -> None:
        self.log(f"git fetch {' '.join(args)}")
        done = self.run("fetch", "--no-tags", "--quiet", *args)
        if done.returncode != 0:
            raise NoBase(f"git fetch {' '.join(args)} failed: {_first_line(done.stderr)}")

    def ensure(self, *shas: str) -> None:
        missing = [s for s in shas if not self.has(s)]
        if missing:
            self.fetch("--depth=1", "origin", *missing)

    def merge_base(self, a: str, b: str) -> str:
        self.ensure(a, b)
        for deepen in (*DEEPEN, None):
            found = self.ok("merge-base", a, b)
            if found:
                return found
            if not self.shallow():
                raise NoBase(f"{a[:10]} and {b[:10]} have no common history")
            if deepen is None:
                self.fetch("--unshallow", "origin", a, b)
            else:
                self.fetch(f"--deepen={deepen}", "origin", a, b)
        found = self.ok("merge-base", a, b)
        if not found:
            raise NoBase(f"{a[:10]} and {b[:10]} have no common history")
        return found

    def parent(self, sha: str) -> str:
        if not self.has(f"{sha}^"):
            self.fetch("--depth=2", "origin", sha)
        found = self.ok("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}^")
        if not found:
            raise NoBase(f"{sha[:10]} has no parent commit")
        return found

    def branch_tip(self, branch: str) -> str:
        self.fetch("--depth=1", "origin", f"refs/heads/{branch}")
        found = self.ok("rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}")
        if not found:
            raise NoBase(f"cannot fetch the branch {branch}")
        return found


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no message")[:200]


def base_commit(ctx: Context, git: Git) -> str:
    """The commit to compare with, as ``gradci publish`` picks it (docs/publishing.md#events)."""
    head = ctx.head_sha
    if ctx.event_name in PULL_REQUEST_EVENTS:
        base = ctx.base_sha
        if base is None:
            if ctx.base_ref is None:
                raise NoBase("the event names no base branch")
            base = git.branch_tip(ctx.base_ref)
        return git.merge_base(base, head)
    if ctx.event_name == "push":
        if ctx.base_sha is not None:  # the branch before the push
            git.ensure(ctx.base_sha)
            return ctx.base_sha
        return git.parent(head)  # a new branch: the commit before
    branch = ctx.default_branch
    if branch is not None and branch != ctx.head_ref:
        found = git.merge_base(git.branch_tip(branch), head)
        if found != head:
            return found
    return git.parent(head)  # on the default branch: the commit before


# --- gradci baseline -----------------------------------------------------------------------------


def _say(text: str, *, warning: bool = False, environ: Mapping[str, str]) -> None:
    text = " ".join(text.splitlines())
    if warning and environ.get("GITHUB_ACTIONS") == "true":
        print(workflow_commands.command("warning", text, {"title": "gradci baseline"}), flush=True)
    else:
        print(f"gradci baseline: {'warning: ' if warning else ''}{text}", file=sys.stderr, flush=True)


def prepare(settings: Settings, results: Path | None, *, environ: Mapping[str, str] | None = None) -> int:
    """``gradci baseline``: base results for ``--baseline-mode rerun``, or nothing to do."""
    env = os.environ if environ is None else environ

    def say(text: str, *, warning: bool = False) -> None:
        _say(text, warning=warning, environ=env)

    if settings.baseline is not None:
        say(f"--baseline {settings.baseline}: gradci publish compares with that file; nothing to run")
        return EXIT_OK
    if settings.baseline_mode != "rerun":
        say(f"baseline-mode {settings.baseline_mode}: nothing to run (only rerun makes base results here)")
        return EXIT_OK
    if any(env.get(name) for name in TOKEN_VARIABLES):
        say(
            "a token is in this process's environment, where the base's code can read it: "
            "run gradci baseline without it (only gradci publish needs it)",
            warning=True,
        )
    head_path = results or settings.json or Path("gradci-results.json")
    head = load(head_path)
    base_path, record_path = paths(head_path)
    for stale in (base_path, record_path):
        stale.unlink(missing_ok=True)
    try:
        ctx = from_environment(env)
    except UsageError as exc:
        raise UsageError(
            "gradci baseline needs a GitHub Actions run, whose event names the base commit: "
            + exc.message.split(": ", 1)[-1]
        ) from None
    sha: str | None = None
    problem: str | None = None
    try:
        sha = _rerun(settings, head, ctx, base_path, env, say)
    except NoBase as exc:
        sha, problem = exc.sha, f"no base results: {exc}"
    record = {
        "format": RECORD_FORMAT,
        "version": 1,
        "head_sha": ctx.head_sha,
        "base_sha": sha,
        "problem": problem,
    }
    write_atomic(record_path, json.dumps(record, indent=1) + "\n")
    if problem is None:
        say(f"base results of {sha}: {base_path}")
    else:
        say(f"{problem}; gradci publish reports the head results alone", warning=True)
    return EXIT_OK


def _rerun(
    settings: Settings, head: Results, ctx: Context, output: Path, env: Mapping[str, str], say: Any
) -> str:
    if ctx.event_name == "workflow_run":
        raise NoBase("baseline-mode rerun does not run in a workflow_run publisher; use artifact")
    cwd = Path.cwd()
    probe = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        raise NoBase(f"{cwd} is not a git checkout")
    root = Path(probe.stdout.strip())
    git = Git(root, say)
    sha = base_commit(ctx, git)
    say(f"base commit {sha} ({ctx.event_name})")
    where = cwd.resolve().relative_to(root.resolve())  # the project's folder inside the checkout
    try:
        with tempfile.TemporaryDirectory(prefix="gradci-base-") as tmp:
            worktree = Path(tmp) / "base"
            added = git.run("worktree", "add", "--detach", str(worktree), sha)
            if added.returncode != 0:
                raise NoBase(f"git worktree add failed: {_first_line(added.stderr)}")
            try:
                _run_in(settings, head, worktree / where, Path(tmp) / BASE_RESULTS, sha, env, say)
            finally:
                git.run("worktree", "remove", "--force", str(worktree))
            write_atomic(output, (Path(tmp) / BASE_RESULTS).read_text(encoding="utf-8"))
    except NoBase as exc:
        exc.sha = sha
        raise
    return sha


def _run_in(
    settings: Settings,
    head: Results,
    folder: Path,
    output: Path,
    sha: str,
    environ: Mapping[str, str],
    say: Any,
) -> None:
    if not folder.is_dir():
        raise NoBase(f"the base commit {sha[:10]} has no folder {folder.name}")
    # The base run records the base commit, and writes only where it is told.
    drop = ("GRADCI_JSON", "GRADCI_JUNIT", "GRADCI_BASELINE", *TOKEN_VARIABLES)
    env = {k: v for k, v in environ.items() if k not in drop}
    env["GITHUB_SHA"] = sha
    setup = settings.baseline_setup
    if setup:
        say(f"base {sha[:10]}: {setup}")
        done = subprocess.run(setup, shell=True, cwd=folder, env=env)
        if done.returncode != 0:
            raise NoBase(f"the baseline-setup command failed (exit {done.returncode})")
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
    say(f"base {sha[:10]}: {shlex.join(command[3:])}")
    done = subprocess.run(command, cwd=folder, env=env)
    if done.returncode not in (0, 1):
        raise NoBase(f"gradci run on the base {sha[:10]} ended with exit code {done.returncode}")
    try:
        load(output)
    except ResultsFileError as exc:
        raise NoBase(str(exc)) from None


# --- gradci publish --baseline-mode rerun ---------------------------------------------------------


def read(head_results: Path | None, ctx: Context) -> tuple[Results | None, str | None, str | None]:
    """(base results, problem, base commit) from what ``gradci baseline`` left beside the head
    results. Runs nothing."""
    if ctx.event_name == "workflow_run":
        return None, "baseline-mode rerun does not run in a workflow_run publisher; use artifact", None
    base_path, record_path = paths(head_results or Path("gradci-results.json"))
    try:
        with record_path.open("rb") as handle:
            text = handle.read(RECORD_LIMIT + 1)
        if len(text) > RECORD_LIMIT:
            raise ValueError("too large")
        data = json.loads(text)
    except FileNotFoundError:
        return None, f"no base results: no {RECORD} (run gradci baseline before gradci publish)", None
    except (OSError, ValueError) as exc:
        return None, f"no base results: {record_path}: unreadable ({type(exc).__name__})", None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or data.get("version") != 1:
        return None, f"no base results: {record_path} is not a gradci baseline record", None
    if data.get("head_sha") != ctx.head_sha:
        made_for = str(data.get("head_sha"))[:10]
        return None, f"no base results: {RECORD} was made for {made_for}, not {ctx.head_sha[:10]}", None
    problem = data.get("problem")
    if problem is not None:
        return None, str(problem)[:1000], None
    sha = data.get("base_sha")
    if not isinstance(sha, str):
        return None, f"no base results: {record_path} names no base commit", None
    try:
        return load(base_path), None, sha
    except ResultsFileError as exc:
        return None, f"base results unusable: {exc}", None
