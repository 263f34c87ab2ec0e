"""Unusable artifacts in ``gradci publish``: a base artifact is a zip from another run, and in the
fork flow the head artifact comes from the fork itself. A base that cannot be used is reported and
the head results are still published (exit code as ``--fail-on`` says); an unusable head artifact
is exit 3. A zip bomb is refused from the zip's directory, before anything is unpacked, under a
memory limit that unpacking would break."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "github"))

from ghfake import FakeGitHub, Pull, fake_sha, make_zip, payload
from ghfixtures import (  # noqa: F401 - fixtures
    TOKEN,
    Scenario,
    actions_env,
    fast_client_fixture,
    github_fixture,
    ops_results,
    publish,
    read_outputs,
    results_zip_files,
    scenario_fixture,
    write_results,
)

from gradci.github import artifacts

OPS = ["alpha", "beta", "gamma", "delta"]
NAME = "gradci-results-cpu"
GIB = 1024**3
MEMORY_LIMIT = GIB  # address space for the publishing process: one bomb member would not fit


def _results_json(**changes: object) -> str:
    data = ops_results(set(), OPS).to_json()
    data.update(changes)
    return json.dumps(data)


UNUSABLE = {
    "not a zip": (b"<html>502 Bad Gateway</html>", "is not a zip archive"),
    "no results": (make_zip({"notes.txt": "hi", "coverage.json": "{}"}), "holds no gradci results"),
    "truncated JSON": (
        make_zip({"gradci-results.json": _results_json()[:-40]}),
        "gradci-results.json: truncated",
    ),
    "deep nesting": (
        make_zip({"gradci-results.json": "[" * 100_000 + "]" * 100_000}),
        "gradci-results.json: not a gradci results file (nested too deeply)",
    ),
    "wrong schema": (
        make_zip({"gradci-results.json": json.dumps({"schema": "junit", "version": 1})}),
        "not a gradci results file",
    ),
    "many files": (make_zip({f"f{i}.txt": "" for i in range(10_001)}), "holds more than 10,000 files"),
    "damaged member": (None, "cannot unpack gradci-results.json ("),
}


def _damaged() -> bytes:
    data = bytearray(make_zip({"gradci-results.json": _results_json()}))
    data[60:70] = b"\xff" * 10  # inside the compressed data: a bad CRC or a broken stream
    return bytes(data)


@pytest.mark.parametrize("kind", UNUSABLE)
def test_an_unusable_base_artifact_still_publishes_the_head_results(
    kind: str, scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    archive, reason = UNUSABLE[kind]
    sc.server.add_artifact(sc.repo, NAME, sc.merge_base, archive if archive is not None else _damaged())
    env = actions_env(sc, "pull_request", payload("pull_request.opened.json"))
    for failing, code in (({"beta"}, 1), (set(), 0)):  # --fail-on new without a base: any failure
        write_results(sc, ops_results(failing, OPS))
        done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)

        assert done.code == code, done.stderr
        [warning] = [line for line in done.stdout.splitlines() if line.startswith("::warning ")]
        assert "base results unusable: artifact gradci-results-cpu of" in warning and reason in warning
        assert "base results unusable" in done.summary and reason in done.summary
        assert done.outputs["compared"] == "false" and done.outputs["base-sha"] == ""
        assert "Traceback" not in done.stdout + done.stderr
    assert [run.conclusion for run in sc.repo.check_runs.values()] == ["failure", "success"]


def test_a_larger_total_than_the_cap_is_refused_before_unpacking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "MAX_UNPACKED", 1000)
    two = make_zip({"a.json": " " * 600, "b.json": " " * 600, "big.txt": " " * 5000})
    with pytest.raises(
        ValueError, match=r"^x: its 2 JSON files would unpack to 1,200 bytes, more than the 1,000"
    ):
        artifacts.read_archive(two, "x")
    named = make_zip({"out/gradci-results.json": " " * 1001, "other.json": "{}"})
    with pytest.raises(ValueError, match=r"^x: out/gradci-results.json would unpack to 1,001 bytes"):
        artifacts.read_archive(named, "x")
    # the cap counts what is read: an archive whose other files are large is fine
    monkeypatch.setattr(artifacts, "MAX_UNPACKED", 10_000)
    ok = make_zip({"gradci-results.json": _results_json(), "big.json": " " * 20_000, "x.txt": " " * 20_000})
    assert artifacts.read_archive(ok, "x")[0]["schema"] == "gradci.results"


# --- the zip bomb, for real ------------------------------------------------------------------------


@pytest.fixture(name="bomb", scope="module")
def bomb_fixture() -> bytes:
    """4 JSON files of 1 GiB each (spaces) in an 18 MB zip, made without holding either in memory."""
    buffer = io.BytesIO()
    chunk = b" " * (1024 * 1024)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for i in range(4):
            with archive.open(f"results/shard-{i}.json", "w", force_zip64=True) as member:
                for _ in range(GIB // len(chunk)):
                    member.write(chunk)
    data = buffer.getvalue()
    assert len(data) < 32 * 1024 * 1024
    assert sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist()) == 4 * GIB
    return data


def _limited_publish(env: dict[str, str], cwd: Path, tmp: Path) -> tuple[int, str, str, int, float]:
    """``gradci publish`` in a process limited to ``MEMORY_LIMIT`` of address space: code, stdout,
    stderr, peak resident memory (bytes) and seconds."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GRADCI_", "RUNNER_"))}
    clean.pop("GH_TOKEN", None)
    peak_file = tmp / "publish.peak"
    # The process's own high-water mark (VmHWM), which ru_maxrss is not: that also counts the
    # parent's pages the child shared between fork and exec.
    code = (
        "import pathlib, resource, runpy, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
        "sys.argv = ['gradci', 'publish']\n"
        "try:\n"
        "    runpy.run_module('gradci', run_name='__main__')\n"
        "finally:\n"
        "    status = pathlib.Path('/proc/self/status').read_text()\n"
        "    peak = next(line.split()[1] for line in status.splitlines() if line.startswith('VmHWM'))\n"
        f"    pathlib.Path({str(peak_file)!r}).write_text(peak)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    return done.returncode, done.stdout, done.stderr, int(peak_file.read_text()) * 1024, elapsed


def test_a_zip_bomb_as_base_artifact_is_refused_within_bounded_memory(
    bomb: bytes, scenario: Scenario
) -> None:
    sc = scenario
    sc.server.add_artifact(sc.repo, NAME, sc.merge_base, bomb)
    write_results(sc, ops_results({"beta"}, OPS))
    env = actions_env(sc, "pull_request", payload("pull_request.opened.json"))
    code, stdout, stderr, peak, seconds = _limited_publish(env, sc.workspace, sc.tmp)

    assert code == 1, stderr  # published, without a base: --fail-on new counts beta
    reason = (
        f"its 4 JSON files would unpack to 4,294,967,296 bytes, more than the "
        f"{artifacts.MAX_UNPACKED:,} gradci reads from an artifact"
    )
    assert reason in stdout  # the warning
    summary = (sc.tmp / "step-summary.md").read_text()
    assert "base results unusable" in summary and "4,294,967,296 bytes" in summary
    assert len(sc.repo.check_runs) == 1 and sc.server.blob_requests  # downloaded, then refused
    assert read_outputs(sc.tmp / "github-output")["compared"] == "false"
    assert "Traceback" not in stdout + stderr and "MemoryError" not in stdout + stderr
    assert peak < 200 * 1024 * 1024, f"peak resident memory {peak:,} bytes"
    assert seconds < 60


def test_a_zip_bomb_as_head_artifact_of_a_workflow_run_is_exit_3(
    bomb: bytes, github: FakeGitHub, tmp_path: Path
) -> None:
    """The fork flow: the head artifact comes from the fork's run."""
    event = payload("workflow_run.pull_request.fork.json")
    run = event["workflow_run"]
    repo = github.add_repo("octo-org/octo-repo", id=event["repository"]["id"], default_branch="master")
    master = repo.chain("master", 3)
    head = repo.add_commit(run["head_sha"], [repo.add_commit(fake_sha("fork-1"), [master[1]])])
    repo.pulls[2] = Pull(2, head, "changes", "forker/octo-repo", "master")
    github.add_token(TOKEN)
    github.add_artifact(repo, NAME, master[1], results_zip_files(ops_results(set(), OPS)))
    github.add_artifact(
        repo,
        NAME,
        head,
        bomb,
        head_branch="changes",
        head_repository_id=event["repository"]["id"] + 1000,
        run_id=run["id"],
    )
    sc = Scenario(github, repo, master, head, master[1], tmp_path / "ws", tmp_path)
    sc.workspace.mkdir()
    code, _, stderr, peak, seconds = _limited_publish(
        actions_env(sc, "workflow_run", event), sc.workspace, tmp_path
    )

    assert code == 3, stderr
    [error] = [line for line in stderr.splitlines() if "error" in line]
    assert error == (
        f"gradci: error: artifact {NAME} of run {run['id']}: its 4 JSON files would unpack to "
        f"4,294,967,296 bytes, more than the {artifacts.MAX_UNPACKED:,} gradci reads from an artifact"
    )
    assert repo.check_runs == {} and repo.comments == {}  # nothing published from unusable results
    assert peak < 200 * 1024 * 1024 and seconds < 60


@pytest.mark.parametrize("kind", ["not a zip", "deep nesting", "wrong schema"])
def test_an_unusable_head_artifact_of_a_workflow_run_is_exit_3(
    kind: str,
    github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = payload("workflow_run.pull_request.fork.json")
    run = event["workflow_run"]
    repo = github.add_repo("octo-org/octo-repo", id=event["repository"]["id"], default_branch="master")
    master = repo.chain("master", 2)
    head = repo.add_commit(run["head_sha"], [master[1]])
    github.add_token(TOKEN)
    archive, reason = UNUSABLE[kind]
    github.add_artifact(
        repo,
        NAME,
        head,
        archive or b"",
        head_branch="changes",
        head_repository_id=event["repository"]["id"] + 1000,
        run_id=run["id"],
    )
    sc = Scenario(github, repo, master, head, master[1], tmp_path / "ws", tmp_path)
    sc.workspace.mkdir()
    done = publish(sc, actions_env(sc, "workflow_run", event), monkeypatch=monkeypatch, capsys=capsys)

    assert done.code == 3
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("gradci: error: ") and reason in line
    assert "Traceback" not in done.stdout + done.stderr
    assert repo.check_runs == {}
