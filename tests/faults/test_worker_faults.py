"""Faults inside the tests: ops that crash, exit, hang, spin, leave threads, flood their output,
break gradci's channel or report NaN gradients. Each costs only its own test, reported as
documented (docs/reliability.md#when-things-go-wrong); every other test's result is intact.

One run over ``gradci_faultops`` covers most faults; the ones that end a run (workers that die
before they are ready) or need a limit get their own.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, Completed, gradci

from gradci.errors import WorkerStartError
from gradci.results import load

TIMEOUT = 4  # seconds per test in the fault run: the busy loop's budget


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Completed, dict[str, dict[str, Any]], Path]:
    where = tmp_path_factory.mktemp("faults")
    away = tmp_path_factory.mktemp("elsewhere")
    done = gradci(
        "run",
        "--op-modules",
        "gradci_faultops",
        "--checks",
        "grad",
        "--timeout",
        str(TIMEOUT),
        "--workers",
        "2",
        "--progress",
        "plain",
        cwd=where,
        env={"GRADCI_FAULT_DIR": str(away)},
    )
    data = json.loads((where / "gradci-results.json").read_text())
    return done, {t["op"].removeprefix("faults."): t for t in data["tests"]}, where


def test_the_run_ends_with_every_result(fault_run) -> None:
    done, tests, where = fault_run
    assert done.returncode == 1, done.stderr  # tests failed: nothing worse
    assert len(tests) == 22  # 16 faults and 6 correct ops: nothing lost
    assert all(tests[f"good{i}"]["outcome"] == "passed" for i in range(6))
    assert (where / "gradci-junit.xml").is_file()
    assert load(where / "gradci-results.json").run.interrupted is False


@pytest.mark.parametrize(
    ("op", "outcome", "message"),
    [
        ("segfault", "error", "worker crashed with SIGSEGV"),
        ("abort", "error", "worker crashed with SIGABRT"),
        ("exit_zero", "error", "worker exited with code 0"),
        ("system_exit", "failed", "SystemExit: 4"),
        ("keyboard_interrupt", "failed", "KeyboardInterrupt"),
        ("sigint_self", "passed", ""),  # workers ignore SIGINT: only the parent handles Ctrl-C
        ("busy_loop", "error", f"timed out after {TIMEOUT} s"),
        ("close_fds", "error", "worker exited with code 1"),
        ("chdir_away", "passed", ""),
        ("leave_thread", "passed", ""),
        ("flood_output", "failed", "RuntimeError: flooded"),
    ],
)
def test_each_fault_costs_only_its_test(fault_run, op: str, outcome: str, message: str) -> None:
    _, tests, _ = fault_run
    assert (tests[op]["outcome"], tests[op].get("message", "")) == (outcome, message)


def test_a_crash_keeps_its_last_words(fault_run) -> None:
    _, tests, _ = fault_run
    assert "Fatal Python error: Segmentation fault" in tests["segfault"]["output"]


def test_a_test_that_breaks_the_channel_says_so(fault_run) -> None:
    _, tests, _ = fault_run
    assert "the channel to gradci is broken" in tests["close_fds"]["output"]


@pytest.mark.parametrize("op", ["write_garbage", "write_forgery"])
def test_bytes_written_into_the_channel_are_that_tests_error(fault_run, op: str) -> None:
    """An op writing into gradci's socket (garbage, or a line that looks like a message without the
    worker's key) is that test's error; the parent reads nothing it did not check."""
    _, tests, _ = fault_run
    test = tests[op]
    assert test["outcome"] == "error"
    assert test["message"].startswith("worker sent something gradci cannot read (")
    assert "did the test write to a descriptor it does not own?" in test["message"]


def test_a_left_thread_delays_nothing(fault_run) -> None:
    """A non-daemon thread left running does not keep its worker alive (or the parent waiting on
    it): no other test timed out, and the run is not held up at its end."""
    _, tests, _ = fault_run
    timed_out = [op for op, t in tests.items() if "timed out" in t.get("message", "")]
    assert timed_out == ["busy_loop"]


@pytest.mark.parametrize(("op", "analytical"), [("nan_backward", "nan"), ("inf_backward", "nan")])
def test_non_finite_gradients_are_reported(fault_run, op: str, analytical: str) -> None:
    _, tests, where = fault_run
    test = tests[op]
    assert test["outcome"] == "failed" and test["mismatch"]["analytical"] == analytical
    assert test["mismatch"]["max_abs_error"] == "NaN"  # strict JSON: the documented string
    text = (where / "gradci-results.json").read_text()
    assert "NaN," not in text and ": NaN" not in text and "Infinity," not in text


def test_a_flood_of_output_keeps_its_end(fault_run) -> None:
    _, tests, where = fault_run
    output = tests["flood_output"]["output"]
    assert len(output) < 40_000 and output.rstrip().endswith("the last line of the flood")
    assert output.startswith("[... ") and "earlier bytes cut]" in output.splitlines()[0]
    assert (where / "gradci-results.json").stat().st_size < 2_000_000


def test_a_test_that_changes_directory_moves_no_output(fault_run) -> None:
    _, _, where = fault_run
    assert sorted(p.name for p in where.iterdir()) == ["gradci-junit.xml", "gradci-results.json"]


def _run_limited(args: list[str], cwd: Path, limit_gib: int) -> Completed:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_gib << 30, limit_gib << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "gradci", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(FIXTURES)},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def test_a_memory_bomb_under_a_limit_is_its_tests_failure(tmp_path: Path) -> None:
    done = _run_limited(
        ["run", "--op-modules", "gradci_faultops:bomb_db", "--checks", "grad", "--reruns", "0"], tmp_path, 4
    )
    assert done.returncode == 1, done.stderr
    tests = {t.op: t for t in load(tmp_path / "gradci-results.json").tests}
    assert tests["faults.memory_bomb"].outcome.value == "failed"
    assert tests["faults.memory_bomb"].message == "MemoryError"
    assert tests["faults.good"].outcome.value == "passed"


def test_workers_dying_before_ready_end_the_run_with_exit_7(run_gradci, tmp_path: Path) -> None:
    """A module whose fork hook kills every child after the first: the first worker runs two tests
    (the second crashes it), its replacements die before they are ready. gradci gives up after
    --max-worker-restart replacements (default 4 per worker), says why with the worker's last
    words, and writes the results of the tests that finished."""
    done = run_gradci(
        "run",
        "--op-modules",
        "gradci_forkkill",
        "--checks",
        "grad",
        "--workers",
        "1",
        env={"GRADCI_FORKKILL_AFTER": "1"},
    )
    assert done.returncode == WorkerStartError.exit_code == 7, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("gradci: error:")]
    assert len(error) == 1
    assert "workers keep dying without running a test: 5 of them" in error[0]
    assert "gave up after 4 replacements (--max-worker-restart" in error[0]
    assert "Traceback" not in done.stderr
    results = load(tmp_path / "gradci-results.json")
    assert results.run.interrupted
    assert {t.op: t.outcome.value for t in results.tests} == {
        "forkkill.a_good": "passed",
        "forkkill.b_segfault": "error",
    }
    assert (tmp_path / "gradci-junit.xml").is_file()


def test_spawned_workers_that_abort_show_their_last_output(run_gradci, tmp_path: Path) -> None:
    """The spawn path (CUDA's) with a module that aborts in children: --max-worker-restart 1."""
    done = run_gradci(
        "run",
        "--op-modules",
        "gradci_spawnabort",
        "--checks",
        "grad",
        "--workers",
        "1",
        "--max-worker-restart",
        "1",
        env={"GRADCI_START_METHOD": "spawn"},
    )
    assert done.returncode == 7, done.stderr
    assert "2 of them, the last before it was ready (worker crashed with SIGABRT)" in done.stderr
    assert "gave up after 1 replacement (" in done.stderr
    assert "Fatal Python error: Aborted" in done.stderr  # the worker's last words
    assert "gradci_spawnabort.py" in done.stderr
    assert load(tmp_path / "gradci-results.json").tests == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_keeps_what_finished(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C or a cancelled CI job: exit 130 and the finished tests' results, both files."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gradci", "run", "--op-modules", "gradci_faultops", "--checks", "grad"),
            *("--ops", "faults.busy_loop,faults.good0,faults.nan_backward", "--workers", "2"),
            *("--progress", "plain"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(FIXTURES)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as a terminal would: a shell's background job (`.ci/run &`) inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("FAILED test_fn_grad_faults_nan_backward"):
            break
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=180)  # seconds when idle; generous for a loaded CI machine
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"gradci did not stop within 180 s of {sig.name}:\n{err}")
    assert proc.returncode == 130, err
    results = load(tmp_path / "gradci-results.json")
    assert results.run.interrupted
    outcomes = {t.op: t.outcome.value for t in results.tests}
    assert outcomes["faults.nan_backward"] == "failed" and "faults.busy_loop" not in outcomes
    assert (tmp_path / "gradci-junit.xml").is_file()
