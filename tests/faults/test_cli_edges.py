"""Edges of the command line that users hit: a reader that closes the pipe early (``gradci list |
head``), ``gradci container`` without the docker SDK, and an internal error inside GitHub Actions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, gradci
from results_factory import result, save
from runner_model import commands

from gradci.results import Outcome


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    env["PYTHONPATH"] = str(FIXTURES)
    env.update(extra)
    return env


def _closed_early(args: list[str], cwd: Path, read_lines: int) -> tuple[int, str]:
    """``gradci ARGS`` whose stdout reader reads ``read_lines`` lines, then closes the pipe, as
    ``head`` does. With 0 the pipe is closed before gradci writes at all: then every write fails,
    which makes the outcome deterministic."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradci", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(read_lines):
        assert proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    return proc.wait(timeout=300), stderr


@pytest.mark.parametrize(
    ("args", "read_lines"),
    [
        (["list", "--ops", "add,mul,sub,div*"], 0),
        (["list", "--ops", "add,mul,sub,div*"], 0),
        (["list"], 1),  # thousands of ids: far more than a pipe buffers
        (["ops", "--no-upstream", "--op-modules", "gradci_testops"], 0),
        (["config"], 0),
    ],
)
def test_a_closed_pipe_ends_a_listing_quietly_with_0(
    tmp_path: Path, args: list[str], read_lines: int
) -> None:
    code, stderr = _closed_early(args, tmp_path, read_lines)
    assert (code, stderr) == (0, "")


def test_gradci_list_into_head_under_pipefail(tmp_path: Path) -> None:
    """The user's line, in the shell GitHub Actions runs steps with (bash -eo pipefail)."""
    for _ in range(3):
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", f"{sys.executable} -m gradci list | head -n 2"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert len(done.stdout.splitlines()) == 2


def test_a_closed_pipe_cuts_a_report_with_141(tmp_path: Path) -> None:
    """A report's reader that goes away loses part of it: 141 (128 + SIGPIPE), so a pipeline under
    pipefail fails, as it would for a writer killed by SIGPIPE; quietly all the same."""
    save(tmp_path / "head.json", [result(f"op{i}", Outcome.FAILED) for i in range(2000)])
    for _ in range(2):
        code, stderr = _closed_early(["report", "head.json", "--format", "text"], tmp_path, 0)
        assert (code, stderr) == (141, "")


def test_a_run_whose_log_reader_goes_away_still_writes_its_results(tmp_path: Path) -> None:
    """Both streams closed before the run starts: progress, failures and summary go nowhere; the run
    goes on, writes its results and ends with its own verdict (1: a wrong backward)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradci", "run", "--op-modules", "gradci_testops", "--ops", "testops.*scale"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 1
    outcomes = {
        t["id"]: t["outcome"] for t in json.loads((tmp_path / "gradci-results.json").read_text())["tests"]
    }
    assert outcomes["test_fn_grad_testops_wrong_scale_cpu_float64"] == "failed"
    assert (tmp_path / "gradci-junit.xml").is_file()


NO_DOCKER = """\
import importlib.abc
import sys


class NoDocker(importlib.abc.MetaPathFinder):
    '''As if gradci were installed without the 'container' extra.'''

    def find_spec(self, name, path=None, target=None):
        if name == "docker" or name.startswith("docker."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoDocker())
"""


def test_container_without_the_docker_sdk_says_how_to_install_it(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_DOCKER)
    check = subprocess.run(
        [sys.executable, "-c", "import docker"], env=_env(PYTHONPATH=str(shim)), capture_output=True
    )
    assert check.returncode == 1 and b"No module named 'docker'" in check.stderr  # the shim works
    done = gradci("container", "--", "run", "--ops", "add", cwd=tmp_path, env={"PYTHONPATH": str(shim)})
    assert (done.returncode, done.stdout) == (5, "")
    assert done.stderr == (
        "gradci: error: the docker SDK for Python is not installed (pip install 'gradci[container]')\n"
    )


BROKEN_GROUPBY = """\
import itertools

def groupby(*args, **kwargs):
    raise ValueError("broken groupby\\r::error::INJECTED ##[error]v1")

itertools.groupby = groupby
"""


@pytest.fixture
def broken(tmp_path: Path) -> dict[str, str]:
    """A real internal error: gradci's own code, a library it calls failing in a way it does not expect
    (here itertools.groupby, which the report uses, broken by a sitecustomize; gradci's source
    untouched)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BROKEN_GROUPBY)
    save(tmp_path / "base.json", [result("a")])
    save(tmp_path / "head.json", [result("a", Outcome.FAILED)])
    return {"PYTHONPATH": str(shim)}


def test_internal_error_in_actions_logs_the_traceback_in_a_group(
    tmp_path: Path, broken: dict[str, str]
) -> None:
    done = gradci(
        "compare",
        "base.json",
        "head.json",
        "--json",
        "c.json",
        cwd=tmp_path,
        env={**broken, "GITHUB_ACTIONS": "true"},
    )
    assert done.returncode == 70
    lines = done.stderr.splitlines()
    assert lines[0] == "::group::gradci: internal error traceback"
    assert lines[1] == "Traceback (most recent call last):"
    assert any("gradci/report.py" in line for line in lines)  # where it happened, in gradci
    assert lines[-2] == "::endgroup::"
    assert lines[-1] == (
        "gradci: internal error: ValueError: broken groupby ::error::INJECTED ## [error]v1 "
        "(a bug in gradci; the traceback is in the log group above)"
    )
    # the exception's text is escaped in the traceback too: only the group's own commands remain
    assert commands(done.stderr) == ["::group::gradci: internal error traceback", "::endgroup::"]
    assert json.loads((tmp_path / "c.json").read_text())["counts"]["new_failure"] == 1  # written first


def test_internal_error_outside_actions_is_one_line(tmp_path: Path, broken: dict[str, str]) -> None:
    done = gradci("compare", "base.json", "head.json", "--json", "c.json", cwd=tmp_path, env=broken)
    assert done.returncode == 70
    assert done.stderr == (
        "gradci: internal error: ValueError: broken groupby ::error::INJECTED ## [error]v1 "
        "(set GRADCI_DEBUG=1 for the traceback)\n"
    )
    debug = gradci(
        "compare",
        "base.json",
        "head.json",
        "--json",
        "c.json",
        cwd=tmp_path,
        env={**broken, "GRADCI_DEBUG": "1"},
    )
    assert debug.returncode == 1 and "Traceback (most recent call last):" in debug.stderr


def test_error_messages_are_one_escaped_line(run_gradci, tmp_path: Path) -> None:
    """A user error whose text carries line breaks and commands (here a spec path) stays one line."""
    done = run_gradci("list", "--spec", "ops\r::error::INJECTED.yml")
    assert done.returncode == 2
    assert done.stderr == "gradci: error: spec file ops ::error::INJECTED.yml does not exist\n"


def test_the_fast_exit_after_torch_keeps_every_line_and_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After importing torch, ``gradci`` leaves with ``os._exit`` (skipping a second of teardown):
    what it buffered for a pipe still arrives, as the same command prints it in-process."""
    from gradci.cli import main

    args = ["list", "--ops", "linalg.*,nn.functional.*"]  # over 1,000 lines: many buffers' worth
    env = {k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"}  # buffered, as in most shells
    done = subprocess.run(
        [sys.executable, "-m", "gradci", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert main(args) == 0
    expected = capsys.readouterr().out
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == expected and expected.count("\n") > 1000
    failed = gradci("list", "--ops", "no_such_op_*", cwd=tmp_path)  # an exit code that is not 0 survives
    assert failed.returncode == 2 and failed.stderr.startswith("gradci: error:")
