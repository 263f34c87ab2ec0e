"""``gradci run`` end to end on small selections: outcomes, failure details, crash and timeout isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES


def _tests(path: Path) -> dict[str, dict]:
    return {t["id"]: t for t in json.loads(path.read_text())["tests"]}


def test_upstream_run_writes_results(run_gradci, tmp_path: Path) -> None:
    done = run_gradci("run", "--ops", "add,cov", "--workers", "2")
    assert done.returncode == 0, done.stderr
    tests = _tests(tmp_path / "gradci-results.json")
    assert (tmp_path / "gradci-junit.xml").is_file()
    assert tests["test_fn_grad_add_cpu_float64"]["outcome"] == "passed"
    assert tests["test_fn_grad_cov_cpu_float64"]["outcome"] == "xfailed"
    assert (
        tests["test_fn_fail_gradgrad_add_cpu_float64"]["message"]
        == "Skipped! Operation does support gradgrad"
    )
    assert "passed" in done.stdout and "xfailed" in done.stdout


def test_wrong_backward_is_reported_with_sample_and_mismatch(run_gradci, tmp_path: Path) -> None:
    done = run_gradci("run", "--op-modules", "gradci_testops", "--ops", "testops.*scale")
    assert done.returncode == 1
    tests = _tests(tmp_path / "gradci-results.json")
    assert tests["test_fn_grad_testops_good_scale_cpu_float64"]["outcome"] == "passed"
    failed = tests["test_fn_grad_testops_wrong_scale_cpu_float64"]
    assert failed["outcome"] == "failed"
    assert failed["message"].startswith(
        "GradcheckError: Jacobian mismatch for output 0 with respect to input 0"
    )
    assert failed["sample_index"] == 0
    assert "size=(3,)" in failed["sample"]
    mismatch = failed["mismatch"]
    assert mismatch["input_label"] == "x"  # wrong_scale(x, w=None)
    # d(2x)/dx is 2; the broken backward says 3.
    assert (mismatch["numerical"], mismatch["analytical"]) == ("2", "3")
    assert abs(mismatch["max_abs_error"] - 1.0) < 1e-6
    assert abs(mismatch["max_rel_error"] - 0.5) < 1e-6
    assert len(mismatch["at"]) == 2
    assert failed["repro"] == (
        "gradci repro test_fn_grad_testops_wrong_scale_cpu_float64 --sample 0 --op-modules gradci_testops"
    )
    assert "FAILED test_fn_grad_testops_wrong_scale_cpu_float64" in done.stdout


def test_crashes_and_hangs_cost_only_their_test(run_gradci, tmp_path: Path) -> None:
    done = run_gradci(
        "run", "--op-modules", "gradci_testops", "--checks", "grad", "--timeout", "3", "--workers", "2"
    )
    assert done.returncode == 1
    tests = _tests(tmp_path / "gradci-results.json")
    assert len(tests) == 8  # nothing lost
    by_op = {t["op"]: t for t in tests.values()}
    assert by_op["testops.good_scale"]["outcome"] == "passed"
    assert by_op["testops.wrong_scale"]["outcome"] == "failed"
    assert by_op["testops.crash"]["outcome"] == "error"
    assert by_op["testops.crash"]["message"] == "worker crashed with SIGSEGV"
    assert (
        "Fatal Python error: Segmentation fault" in by_op["testops.crash"]["output"]
    )  # the crash's last words
    assert by_op["testops.abort"]["message"] == "worker crashed with SIGABRT"
    assert by_op["testops.exit"]["message"] == "worker exited with code 3"
    assert by_op["testops.hang"]["message"] == "timed out after 3 s"


def test_spawned_workers_build_their_own_class(run_gradci, tmp_path: Path) -> None:
    """The start method CUDA uses, exercised on CPU."""
    done = run_gradci(
        "run",
        "--op-modules",
        "gradci_testops",
        "--ops",
        "testops.*scale,testops.crash",
        "--checks",
        "grad",
        env={"GRADCI_START_METHOD": "spawn"},
    )
    assert done.returncode == 1, done.stderr
    outcomes = {t["op"]: t["outcome"] for t in _tests(tmp_path / "gradci-results.json").values()}
    assert outcomes == {
        "testops.good_scale": "passed",
        "testops.wrong_scale": "failed",
        "testops.crash": "error",
    }


def test_interrupted_run_keeps_what_finished(tmp_path: Path) -> None:
    """SIGTERM (a cancelled CI job) mid-run: exit 130, and the finished test is in the results."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gradci",
            "run",
            "--op-modules",
            "gradci_testops",
            "--checks",
            "grad",
            "--ops",
            "testops.hang,testops.wrong_scale",
            "--workers",
            "2",
            "--progress",
            "plain",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(FIXTURES)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # failures are reported as they happen
        if line.startswith("FAILED test_fn_grad_testops_wrong_scale"):
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    data = json.loads((tmp_path / "gradci-results.json").read_text())
    assert data["run"]["interrupted"] is True
    assert [t["op"] for t in data["tests"]] == ["testops.wrong_scale"]
    assert (tmp_path / "gradci-junit.xml").is_file()


def test_shards_split_a_run(run_gradci, tmp_path: Path) -> None:
    ids = []
    for k in (1, 2, 3):
        done = run_gradci("list", "--ops", "add,mul,sub,div", "--shard", f"{k}/3")
        assert done.returncode == 0
        ids.append(done.stdout.split())
    everything = run_gradci("list", "--ops", "add,mul,sub,div").stdout.split()
    assert sorted(i for shard in ids for i in shard) == sorted(everything)
    assert all(ids)
