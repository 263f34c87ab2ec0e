"""The token inside the action (issue 11, section 4): it is in the environment of the publish step
only, never in an ancestor of the ``setup`` command, the ops under test or ``baseline-setup``.

action.yml's steps run as the runner runs them (``tests/action_runner.py``) against the local
GitHub (``tests/github/ghfake.py``). A probe (``leakprobe``) searches its own environment, every
ancestor's ``/proc/PID/environ`` and ``cmdline`` (``PPid`` up to pid 1) and every other one the user
can read, for the token. It runs in the op module, in the ``setup`` and ``baseline-setup`` commands,
and, as a ``.pth`` file in the job's site-packages (where an editable install's finder lives), in
every Python process that processes the job's packages. It must find nothing, and never run in
the publish step, which still authenticates to GitHub with the token.

The token is random per test, so that no other process on the machine holds it by chance.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from action_runner import ActionRun
from conftest import FIXTURES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "github"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ghfake import FakeGitHub, Pull, payload
from ghfixtures import Scenario, actions_env, github_fixture, result, results  # noqa: F401 - fixtures
from test_action import _run, _venv, copy_action

from gradci.results import Outcome

pytestmark = pytest.mark.slow

PROBE = '''\
"""Looks for the secret in LEAK_PROBE_DIR/secret wherever this process could read it."""
import json
import os
import re
import time


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _parent(pid):
    status = _read(f"/proc/{pid}/status") or b""
    for line in status.decode(errors="replace").splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _step(pid):
    """The action step (its script, runner-temp/step-N.sh) a process belongs to, if any."""
    match = re.search(rb"/step-(\\d+)\\.sh\\b", _read(f"/proc/{pid}/cmdline") or b"")
    return int(match.group(1)) if match else None


def search(label):
    folder = os.environ.get("LEAK_PROBE_DIR")
    if not folder:
        return
    with open(os.path.join(folder, "secret"), "rb") as handle:
        secret = handle.read().strip()
    found = [f"os.environ[{k!r}]" for k, v in os.environ.items() if secret in v.encode()]
    chain, pid = [], os.getpid()
    while pid > 1 and len(chain) < 100:
        chain.append(pid)
        pid = _parent(pid)
    ancestors_read = 0
    for pid in chain:
        environ = _read(f"/proc/{pid}/environ")
        ancestors_read += environ is not None
        for part, data in (("environ", environ), ("cmdline", _read(f"/proc/{pid}/cmdline"))):
            if data and secret in data:
                found.append(f"ancestor /proc/{pid}/{part}")
    readable = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for part in ("environ", "cmdline"):
                data = _read(f"/proc/{entry}/{part}")
                readable += part == "environ" and data is not None
                if data and secret in data:
                    found.append(f"/proc/{entry}/{part}")
    report = {
        "label": label,
        "pid": os.getpid(),
        "steps": [step for step in map(_step, chain) if step is not None],
        "ancestors_read": ancestors_read,
        "readable": readable,
        "found": found,
    }
    name = f"{label}-{os.getpid()}-{time.monotonic_ns()}.json"
    with open(os.path.join(folder, name), "w") as handle:
        json.dump(report, handle)
'''

# The project's ops: at import (in gradci run's process and in its workers) they search too.
OPS_MODULE = """\
import leakprobe
from gradci_testops import _op, good_scale, wrong_scale

leakprobe.search("op-module")


def scale(x, w=None):
    return {fn}(x, w)


op_db = [_op("mylib.scale", scale), _op("mylib.kept", good_scale)]
"""


@pytest.fixture(scope="module")
def action_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_action(tmp_path_factory.mktemp("action") / "gradci")


@pytest.fixture(scope="module")
def job_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The job's virtualenv (torch, the test-op helpers) with the probe in its site-packages."""
    python = _venv(tmp_path_factory.mktemp("job") / "venv", sysconfig.get_paths()["purelib"], str(FIXTURES))
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "leakprobe.py").write_text(PROBE)
    # as an editable install's finder: code that runs in every process that processes this folder
    (purelib / "zz_leakprobe.pth").write_text('import leakprobe; leakprobe.search("pth")\n')
    return python


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


class Repository:
    """A project on GitHub and its pull request #2, which breaks mylib.scale's backward; the
    workspace is what actions/checkout makes of a pull_request event: the merge commit, depth 1."""

    def __init__(self, github: FakeGitHub, tmp: Path) -> None:
        source = tmp / "source"
        source.mkdir()
        git("init", "-q", "-b", "master", cwd=source)
        (source / "mylib_ops.py").write_text(OPS_MODULE.format(fn="good_scale"))
        git("add", ".", cwd=source)
        git("commit", "-q", "-m", "ops", cwd=source)
        self.merge_base = git("rev-parse", "HEAD", cwd=source)
        git("checkout", "-q", "-b", "changes", cwd=source)
        (source / "mylib_ops.py").write_text(OPS_MODULE.format(fn="wrong_scale"))
        git("commit", "-q", "-am", "break the backward", cwd=source)
        self.head = git("rev-parse", "HEAD", cwd=source)
        git("checkout", "-q", "master", cwd=source)
        (source / "README").write_text("later on master\n")
        git("add", ".", cwd=source)
        git("commit", "-q", "-m", "readme", cwd=source)
        self.base_tip = git("rev-parse", "HEAD", cwd=source)
        git("checkout", "-q", "--detach", self.head, cwd=source)
        git("merge", "-q", "--no-edit", "master", cwd=source)
        self.merge_commit = git("rev-parse", "HEAD", cwd=source)
        git("update-ref", "refs/pull/2/merge", self.merge_commit, cwd=source)
        origin = tmp / "origin.git"
        git("clone", "-q", "--mirror", str(source), str(origin), cwd=tmp)

        self.workspace = tmp / "workspace"
        self.workspace.mkdir()
        git("init", "-q", cwd=self.workspace)
        git("remote", "add", "origin", origin.as_uri(), cwd=self.workspace)
        git("fetch", "-q", "--no-tags", "--depth=1", "origin", "+refs/pull/2/merge", cwd=self.workspace)
        git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=self.workspace)

        self.repo = github.add_repo("Codertocat/Hello-World", id=186853002, default_branch="master")
        self.repo.add_commit(self.merge_base)
        self.repo.add_commit(self.head, [self.merge_base])
        self.repo.add_commit(self.base_tip, [self.merge_base])
        self.repo.branches.update(master=self.base_tip, changes=self.head)
        self.repo.pulls[2] = Pull(2, self.head, "changes", "Codertocat/Hello-World", "master")


def _pull_request_env(github: FakeGitHub, project: Repository, tmp: Path) -> dict[str, str]:
    event = payload("pull_request.opened.json")
    event["pull_request"]["head"]["sha"] = project.head
    event["pull_request"]["base"]["sha"] = project.base_tip
    scenario = Scenario(
        github, project.repo, [project.merge_base, project.base_tip], project.head, project.merge_base,
        project.workspace, tmp,
    )  # fmt: skip
    env = actions_env(scenario, "pull_request", event, sha=project.merge_commit)
    return {k: v for k, v in env.items() if k != "GITHUB_TOKEN"}


def _probe_command(python: Path, label: str) -> str:
    return f"{python} -c 'import leakprobe; leakprobe.search(\"{label}\")'"


def _run_checked(
    action_dir: Path, inputs: dict[str, str], env: dict[str, str], workspace: Path, tmp: Path, token: str
) -> tuple[ActionRun, list[dict[str, Any]]]:
    probes = tmp / "probes"
    probes.mkdir()
    (probes / "secret").write_text(token)
    # the job's PYTHONPATH holds code too: a sitecustomize that every Python started with it runs
    job_path = tmp / "job-pythonpath"
    job_path.mkdir()
    (job_path / "sitecustomize.py").write_text(PROBE + '\nsearch("sitecustomize")\n')
    env = {**env, "LEAK_PROBE_DIR": str(probes), "PYTHONPATH": str(job_path)}
    run = _run(action_dir, {**inputs, "token": token}, env, workspace, tmp)
    reports = [json.loads(p.read_text()) for p in sorted(probes.glob("*.json"))]

    assert token not in run.log
    # the token is in one step's environment: the publish step's
    assert [s.name for s in run.steps if any(token in v for v in s.env.values())] == ["Publish"], run.log
    assert all(r["found"] == [] for r in reports), [r for r in reports if r["found"]]
    # the probes could read what they searched: their own ancestors (this process included)
    assert all(r["ancestors_read"] >= 3 and r["readable"] >= r["ancestors_read"] for r in reports)
    # every probe ran in a step, and none in the publish step: no code of the job's packages ran there
    assert all(len(r["steps"]) == 1 for r in reports)
    publish_step = [s.name for s in run.steps].index("Publish")
    assert not [r for r in reports if r["steps"] == [publish_step]]
    return run, reports


def _authenticated(github: FakeGitHub, token: str) -> list[str]:
    return [c.operation for c in github.calls if c.authorization == f"token {token}" and c.status < 300]


def _labels(reports: list[dict[str, Any]]) -> set[str]:
    return {r["label"] for r in reports}


@pytest.mark.parametrize("mode", ["artifact", "rerun"])
def test_command_run_keeps_the_token_from_setup_ops_and_base(
    github: FakeGitHub, action_dir: Path, job_python: Path, tmp_path: Path, mode: str
) -> None:
    token = "ghs_" + secrets.token_hex(18)
    github.add_token(token)
    project = Repository(github, tmp_path)
    if mode == "artifact":
        base = results(
            [result("mylib.scale", Outcome.PASSED), result("mylib.kept", Outcome.PASSED)],
            sha=project.merge_base,
        )
        github.add_artifact(project.repo, "gradci-results-cpu", project.merge_base, {
            "gradci-results.json": json.dumps(base.to_json())
        })  # fmt: skip
    inputs = {
        "op-modules": "mylib_ops",
        "checks": "grad",
        "dtypes": "float64",
        "workers": "1",
        "python": str(job_python),
        "setup": _probe_command(job_python, "setup"),
        "baseline-mode": mode,
        "baseline-setup": _probe_command(job_python, "baseline-setup"),
    }
    env = _pull_request_env(github, project, tmp_path)

    run, reports = _run_checked(action_dir, inputs, env, project.workspace, tmp_path, token)

    assert run.step("Run gradci").returncode == 0, run.log
    assert run.step("Publish").returncode == 1, run.log  # the new failure
    assert (run.outputs["new-failures"], run.outputs["compared"]) == ("1", "true"), run.log
    assert run.outputs["base-sha"] == project.merge_base
    labels = _labels(reports)
    assert {"setup", "op-module", "pth", "sitecustomize"} <= labels
    assert ("baseline-setup" in labels) == (mode == "rerun")
    # the publish step authenticated with the token: it wrote the check run
    assert "POST /repos/Codertocat/Hello-World/check-runs" in _authenticated(github, token)
    [check] = project.repo.check_runs.values()
    assert check.head_sha == project.head
    if mode == "rerun":
        # the base ran in the run step: the merge base, fetched into the depth-1 checkout
        assert f"gradci run on {project.merge_base[:10]} (baseline-mode rerun)" in check.output["summary"]
        assert "gradci baseline: base commit " + project.merge_base in run.step("Run gradci").stderr
        assert "actions/artifacts" not in " ".join(_authenticated(github, token))
        record = json.loads((project.workspace / "gradci-baseline.json").read_text())
        assert (record["head_sha"], record["base_sha"], record["problem"]) == (
            project.head,
            project.merge_base,
            None,
        )


def test_command_merge_keeps_the_token_in_the_publish_step(
    github: FakeGitHub, action_dir: Path, job_python: Path, tmp_path: Path
) -> None:
    token = "ghs_" + secrets.token_hex(18)
    github.add_token(token)
    project = Repository(github, tmp_path)
    shards = project.workspace / "shards"
    for k, (op, outcome) in enumerate([("mylib.scale", Outcome.FAILED), ("mylib.kept", Outcome.PASSED)], 1):
        target = shards / f"gradci-results-cpu-shard-{k}-of-2"
        target.mkdir(parents=True)
        results([result(op, outcome)], sha=project.head).save(target / "gradci-results.json")
    inputs = {
        "command": "merge",
        "merge-files": "shards/**/gradci-results.json",
        "python": str(job_python),
        "baseline-mode": "none",
    }

    run, reports = _run_checked(
        action_dir, inputs, _pull_request_env(github, project, tmp_path), project.workspace, tmp_path, token
    )

    assert run.step("Run gradci").returncode == 0, run.log
    assert run.step("Publish").returncode == 1, run.log
    assert (run.outputs["total"], run.outputs["new-failures"]) == ("2", "1")
    assert "POST /repos/Codertocat/Hello-World/check-runs" in _authenticated(github, token)
    # merging ran in gradci's own virtualenv: no job package was imported after the install step;
    # the job's PYTHONPATH reached gradci merge, and it searched there too
    names = [s.name for s in run.steps]
    assert {tuple(r["steps"]) for r in reports if r["label"] == "pth"} == {(names.index("Install gradci"),)}
    assert [names.index("Run gradci")] in [r["steps"] for r in reports if r["label"] == "sitecustomize"]
