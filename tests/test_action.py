"""action.yml end to end: its steps run as GitHub's runner runs a composite action
(``action_runner``), gradci installed into its own virtualenv on top of a job's Python, checking
the job's project, publishing to a local GitHub whose every request and response is validated
against GitHub's OpenAPI description (``tests/github/ghfake.py``).

The job's Python is a virtualenv (as after ``python -m venv`` and ``pip install``), which
``--system-site-packages`` alone would not reach; its torch comes from the development
environment through a .pth file, as an installed torch would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from action_runner import ActionRun, os_environ_without_github, run_action
from conftest import FIXTURES, REPO

sys.path.insert(0, str(Path(__file__).resolve().parent / "github"))
from ghfake import FakeGitHub, Pull, payload
from ghfixtures import (  # noqa: F401 - fixtures
    TOKEN,
    Scenario,
    actions_env,
    github_fixture,
    ops_results,
    result,
    results,
    results_zip_files,
    scenario_fixture,
)

from gradci.results import Outcome

pytestmark = pytest.mark.slow

OPS_MODULE = """\
import os
from pathlib import Path

from gradci_testops import _op, good_scale, wrong_scale

# What the project's code can see of the job's secrets while gradci checks it.
Path(os.environ["TOKEN_PROBE"]).write_text(
    " ".join(k for k in ("GITHUB_TOKEN", "GH_TOKEN", "IN_TOKEN") if k in os.environ) or "none"
)

op_db = [_op("mylib.scale", wrong_scale), _op("mylib.kept", good_scale)]
"""


def copy_action(target: Path) -> Path:
    """The action as `uses: org/gradci@v1` checks it out: the repository's files."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    target.mkdir()
    for name in ("action.yml", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    for name in ("action", "gradci"):
        shutil.copytree(REPO / name, target / name, ignore=ignore)
    return target


@pytest.fixture(scope="module")
def action_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_action(tmp_path_factory.mktemp("action") / "gradci")


def _venv(path: Path, *site_dirs: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})\n" for d in site_dirs]
    (Path(purelib) / "job_installed.pth").write_text("".join(lines))
    return python


@pytest.fixture(scope="module")
def job_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job's virtualenv with torch (and the test-op helpers) installed."""
    return _venv(tmp_path_factory.mktemp("job") / "venv", sysconfig.get_paths()["purelib"], str(FIXTURES))


def _run(
    action_dir: Path, inputs: dict[str, str], env: dict[str, str], workspace: Path, tmp: Path
) -> ActionRun:
    runner_temp = tmp / "runner-temp"
    runner_temp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in env.items() if k != "GITHUB_TOKEN"}  # the runner sets none itself
    return run_action(
        action_dir,
        inputs,
        workspace=workspace,
        env={**os_environ_without_github(), **env},
        runner_temp=runner_temp,
    )


def test_pull_request_run_checks_the_job_project_publishes_and_uploads(
    scenario: Scenario, action_dir: Path, job_python: Path, tmp_path: Path
) -> None:
    sc = scenario
    (sc.workspace / "mylib_ops.py").write_text(OPS_MODULE)
    base = results(
        [result("mylib.scale", Outcome.PASSED), result("mylib.kept", Outcome.PASSED)], sha=sc.merge_base
    )
    sc.artifact_at(sc.merge_base, base)
    probe = tmp_path / "token-probe"
    env = {**actions_env(sc, "pull_request", payload("pull_request.opened.json")), "TOKEN_PROBE": str(probe)}

    run = _run(
        action_dir,
        {
            "op-modules": "mylib_ops",
            "checks": "grad",
            "dtypes": "float64",
            "workers": "1",
            "python": str(job_python),
            "token": TOKEN,
            "check-name": "gradci (cpu)",
        },
        env,
        sc.workspace,
        tmp_path,
    )

    assert run.step("Install gradci").returncode == 0, run.log
    # a failing test is a result: the run step goes on to publish, which gives the verdict
    assert run.step("Run gradci").returncode == 0, run.log
    assert run.step("Publish").returncode == 1, run.log  # a new failure fails it (fail-on: new)
    assert run.status == "failure"
    outputs = run.outputs
    assert (outputs["new-failures"], outputs["total"], outputs["conclusion"]) == ("1", "2", "failure")
    assert (outputs["compared"], outputs["base-sha"], outputs["exit-code"]) == ("true", sc.merge_base, "1")
    assert outputs["results-json"] == "gradci-results.json"
    assert outputs["artifact-name"] == "gradci-results-cpu"

    # published: a check run with the one annotation, and the comment
    [check] = sc.repo.check_runs.values()
    assert (check.name, check.conclusion, len(check.annotations)) == ("gradci (cpu)", "failure", 1)
    assert check.head_sha == sc.pr_head
    assert len(sc.repo.comments) == 1

    # uploaded (it ran although the step before failed): results, JUnit XML, the PR file
    upload = run.step("Upload the results artifact")
    assert upload.ran and upload.uses is not None and upload.uses.startswith("actions/upload-artifact@")
    assert upload.with_["name"] == "gradci-results-cpu"
    paths = [Path(p) for p in upload.with_["path"].splitlines()]
    assert sorted(p.name for p in paths) == ["gradci-junit.xml", "gradci-pr.json", "gradci-results.json"]
    assert all(p.is_absolute() and p.is_file() for p in paths)
    results_file = next(p for p in paths if p.name == "gradci-results.json")
    outcomes = {t["id"]: t["outcome"] for t in json.loads(results_file.read_text())["tests"]}
    assert outcomes == {
        "test_fn_grad_mylib_scale_cpu_float64": "failed",
        "test_fn_grad_mylib_kept_cpu_float64": "passed",
    }

    # the project's code never saw the token, only the publish step had it, the log never shows it
    assert probe.read_text() == "none"
    assert [s.name for s in run.steps if TOKEN in s.env.values()] == ["Publish"]
    assert TOKEN not in run.log

    # gradci ran from the action's own virtualenv, not from the job's environment
    venv_python = tmp_path / "runner-temp" / "gradci-venv" / "bin" / "python"
    where = subprocess.run(
        [str(venv_python), "-c", "import gradci, torch; print(gradci.__file__); print(torch.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # not the repository root, whose gradci/ would shadow the installed one
    ).stdout.split()
    assert where[0].startswith(str(tmp_path / "runner-temp" / "gradci-venv"))
    assert where[1] == str(Path(sysconfig.get_paths()["purelib"]) / "torch" / "__init__.py")


def test_workflow_run_publishes_a_forks_results_without_torch(
    github: FakeGitHub, action_dir: Path, tmp_path: Path
) -> None:
    """The second workflow of the fork-safe pattern: no checkout, no torch, a write token."""
    event = payload("workflow_run.pull_request.fork.json")
    run_event = event["workflow_run"]
    repo = github.add_repo("octo-org/octo-repo", id=event["repository"]["id"], default_branch="master")
    master = repo.chain("master", 3)
    head = repo.add_commit(run_event["head_sha"], [master[1]])
    repo.pulls[2] = Pull(2, head, "changes", "forker/octo-repo", "master")
    github.add_token(TOKEN)
    ops = ["alpha", "beta", "gamma"]
    github.add_artifact(repo, "gradci-results-cpu", master[1], results_zip_files(ops_results(set(), ops)))
    github.add_artifact(
        repo,
        "gradci-results-cpu",
        head,
        results_zip_files(ops_results({"beta"}, ops), **{"gradci-pr.json": {"number": 2}}),
        head_branch="changes",
        head_repository_id=event["repository"]["id"] + 1000,
        run_id=run_event["id"],
    )
    sc = Scenario(github, repo, master, head, master[1], tmp_path / "ws", tmp_path)
    sc.workspace.mkdir()
    bare = _venv(tmp_path / "bare-python")  # a job that installed nothing

    run = _run(
        action_dir,
        {"command": "publish", "python": str(bare), "token": TOKEN},
        actions_env(sc, "workflow_run", event),
        sc.workspace,
        tmp_path,
    )

    assert run.step("Run gradci").returncode == 0, run.log  # nothing to run
    assert run.step("Publish").returncode == 1, run.log
    assert (run.outputs["new-failures"], run.outputs["conclusion"]) == ("1", "failure")
    assert run.outputs["exit-code"] == "1"
    assert run.outputs["base-sha"] == master[1]
    [check] = repo.check_runs.values()
    assert (check.head_sha, check.conclusion) == (head, "failure")
    assert [c.issue for c in repo.comments.values()] == [2]
    assert not run.step("Upload the results artifact").ran  # nothing new to upload
    assert (sc.workspace / "gradci-results.json").is_file()
    assert not (tmp_path / "runner-temp" / "gradci-venv").exists()  # only the publishing one
    site = tmp_path / "runner-temp" / "gradci-publish-venv" / "lib"
    assert not list(site.glob("python*/site-packages/torch")), "publishing installed torch"
    assert TOKEN not in run.log


def test_bad_input_is_one_clear_error(
    scenario: Scenario, action_dir: Path, job_python: Path, tmp_path: Path
) -> None:
    env = actions_env(scenario, "pull_request", payload("pull_request.opened.json"))
    run = _run(
        action_dir,
        {"ops": "add", "device": "tpu", "python": str(job_python), "token": TOKEN},
        env,
        scenario.workspace,
        tmp_path,
    )
    step = run.step("Run gradci")
    assert step.returncode == 2
    assert "gradci: error: GRADCI_DEVICE: expected one of cpu, cuda, auto, got 'tpu'" in step.stderr
    assert run.outputs["exit-code"] == "2"
    assert not run.step("Publish").ran  # exit code 2 stops the action
    assert not run.step("Upload the results artifact").ran
    assert scenario.repo.check_runs == {}  # nothing ran, nothing published


def test_shards_then_merge_and_publish_on_push(
    scenario: Scenario, action_dir: Path, job_python: Path, tmp_path: Path
) -> None:
    """examples/workflows/sharded.yml on a push to the default branch: two shards upload their
    results, the merge job joins them, publishes, and uploads the base results artifact."""
    sc = scenario
    (sc.workspace / "mylib_ops.py").write_text(OPS_MODULE)
    event = payload("push.json")  # a push to master
    sc.repo.add_commit(event["after"], [sc.master[-1]])
    sc.repo.branches["master"] = event["after"]
    env = {
        **actions_env(sc, "push", event, sha=event["after"]),
        "TOKEN_PROBE": str(tmp_path / "probe"),
    }
    shards = sc.workspace / "shards"
    for k in (1, 2):
        run = _run(
            action_dir,
            {
                "op-modules": "mylib_ops",
                "checks": "grad",
                "dtypes": "float64",
                "shard": f"{k}/2",
                "publish": "false",
                "fail-on": "none",
                "python": str(job_python),
            },
            env,
            sc.workspace,
            tmp_path / f"shard{k}",
        )
        # a failing test, but the verdict is the merge job's
        assert run.status == "success", run.log
        assert not run.step("Publish").ran
        assert run.outputs["exit-code"] == "0"  # fail-on: none
        assert run.outputs["artifact-name"] == f"gradci-results-cpu-shard-{k}-of-2"
        upload = run.step("Upload the results artifact").with_
        # what actions/download-artifact puts in shards/<artifact name>/
        target = shards / upload["name"]
        target.mkdir(parents=True)
        for path in upload["path"].splitlines():
            shutil.copy2(path, target)
        (sc.workspace / "gradci-results.json").unlink()

    merged = _run(
        action_dir,
        {"command": "merge", "merge-files": "shards/**/gradci-results.json", "token": TOKEN},
        env,
        sc.workspace,
        tmp_path / "merge",
    )
    assert merged.step("Run gradci").returncode == 0, merged.log
    assert merged.step("Publish").returncode == 1, merged.log
    assert (merged.outputs["total"], merged.outputs["new-failures"]) == ("2", "1")
    assert merged.outputs["artifact-name"] == "gradci-results-cpu"  # the base results of later PRs
    [check] = sc.repo.check_runs.values()
    assert (check.head_sha, check.conclusion) == (event["after"], "failure")
    data = json.loads((sc.workspace / "gradci-results.json").read_text())
    assert sorted(t["id"] for t in data["tests"]) == [
        "test_fn_grad_mylib_kept_cpu_float64",
        "test_fn_grad_mylib_scale_cpu_float64",
    ]
