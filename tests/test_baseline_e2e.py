"""End to end against a base, with real gradchecks: a broken backward found as exactly one new
failure, flaky tests re-run in a fresh worker, fast-mode-only failures labelled, a bad baseline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jsonschema
from conftest import FIXTURES, REPO, gradci
from junitparser.xunit2 import JUnitXml
from results_factory import result, save

from gradci.options import resolve
from gradci.results import load
from gradci.session import load_durations

SCHEMA = json.loads((REPO / "gradci/schemas/results-v2.schema.json").read_text())
EXTENSION = REPO / "examples" / "extension"


def _tests(path: Path) -> dict[str, dict]:
    data = json.loads(path.read_text())
    jsonschema.validate(data, SCHEMA)
    return {t["id"]: t for t in data["tests"]}


def test_broken_backward_is_exactly_one_new_failure(tmp_path: Path) -> None:
    """The example extension twice: base with scaled_mul's correct backward, head with it broken."""
    project = tmp_path / "extension"
    shutil.copytree(EXTENSION, project, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {"PYTHONPATH": os.pathsep.join([str(project), str(FIXTURES)])}
    selection = ["--ops", "extops.scaled_mul*", "--checks", "grad", "--dtypes", "float64", "--junit", ""]

    base = gradci("run", *selection, "--json", "base.json", cwd=project, env=env)
    assert base.returncode == 1, base.stderr  # the broken twin fails on base already
    head = gradci(
        "run", *selection, "--json", "head.json", "--baseline", "base.json",
        cwd=project, env={**env, "EXTOPS_BREAK": "scaled_mul"},
    )  # fmt: skip
    assert head.returncode == 1, head.stderr
    assert "\ngradci: 2 tests ±0 · 1 new failure · 1 still failing on base\n" in head.stdout
    assert "NEW FAILURES (1)\n  extops.scaled_mul\n    grad  float64  " in head.stdout

    new_failure = "test_fn_grad_extops_scaled_mul_cpu_float64"
    tests = _tests(project / "head.json")
    assert tests[new_failure]["outcome"] == "failed"
    assert tests[new_failure]["mismatch"]["input_label"] == "y"  # whose gradient misses alpha
    assert [a["outcome"] for a in tests[new_failure]["attempts"]] == ["failed"]  # re-run, failed again

    done = gradci("compare", "base.json", "head.json", "--json", "cmp.json", cwd=project)
    assert done.returncode == 1
    found = {k: v for k, v in json.loads((project / "cmp.json").read_text())["tests"].items() if v}
    assert found == {
        "new_failure": [new_failure],
        "still_failing": ["test_fn_grad_extops_scaled_mul_broken_cpu_float64"],
    }
    assert gradci("compare", "base.json", "head.json", "--fail-on", "none", cwd=project).returncode == 0
    assert gradci("compare", "base.json", "base.json", cwd=project).returncode == 0


def test_reruns_find_flaky_tests_and_label_fast_mode_only(run_gradci, tmp_path: Path) -> None:
    flaky, fast = "test_fn_grad_flakyops_flaky_cpu_float64", "test_fn_grad_flakyops_fast_only_cpu_float64"
    args = ["run", "--op-modules", "gradci_flakyops", "--checks", "grad", "--progress", "plain"]

    done = run_gradci(*args, "--json", "first.json", env={"GRADCI_FLAKY_STATE": str(tmp_path / "state1")})
    assert done.returncode == 1, done.stderr  # fast_only fails for good; flaky passes on its re-run
    assert f"FLAKY {flaky} - failed at first" in done.stderr
    assert "== 1 failed, 1 passed, 1 flaky in" in done.stdout
    tests = _tests(tmp_path / "first.json")
    assert tests[flaky]["outcome"] == "passed" and tests[flaky]["flaky"] is True
    [attempt] = tests[flaky]["attempts"]
    assert attempt["outcome"] == "failed" and attempt["message"].startswith(
        "GradcheckError: Jacobian mismatch"
    )
    assert (attempt["mismatch"]["numerical"], attempt["mismatch"]["analytical"]) == ("2", "3")
    assert tests[fast]["outcome"] == "failed" and tests[fast]["mismatch"]["fast_mode_only"] is True
    assert [a["outcome"] for a in tests[fast]["attempts"]] == ["failed"]
    assert json.loads((tmp_path / "first.json").read_text())["summary"]["flaky"] == 1
    [case] = [
        c for suite in JUnitXml.fromfile(str(tmp_path / "gradci-junit.xml")) for c in suite if c.name == flaky
    ]
    [first_try] = case.flaky_failures()  # Maven Surefire's element, as report tools read it
    assert case.is_passed and first_try.type == "GradcheckError"
    assert first_try.message.startswith(
        "GradcheckError: Jacobian mismatch for output 0 with respect to input 0 ("
    )

    report = run_gradci("report", "first.json")
    assert report.returncode == 0
    assert "### 🔁 Flaky (1)" in report.stdout and "(passed on try 2)" in report.stdout
    assert "**fast mode only** (slow mode passes)" in report.stdout

    # Without re-runs the flaky test is a plain failure; against the first run, a new one.
    done = run_gradci(
        *args, "--reruns", "0", "--json", "second.json", "--ops", "flakyops.flaky",
        "--baseline", "first.json", env={"GRADCI_FLAKY_STATE": str(tmp_path / "state2")},
    )  # fmt: skip
    assert done.returncode == 1
    assert _tests(tmp_path / "second.json")[flaky]["outcome"] == "failed"
    assert "attempts" not in _tests(tmp_path / "second.json")[flaky]
    assert " · 1 new failure\n" in done.stdout  # fast_only is not in this selection: removed


def test_run_with_unusable_baseline_writes_results_then_exits_3(run_gradci, tmp_path: Path) -> None:
    done = run_gradci(
        "run", "--op-modules", "gradci_testops", "--ops", "testops.good_scale", "--checks", "grad",
        "--baseline", "missing.json", "--progress", "plain",
    )  # fmt: skip
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "gradci: warning: base results unusable: missing.json: no such results file; "
        "the tests run anyway, then gradci exits with code 3"
    )
    assert lines[-1] == "gradci: error: base results unusable: missing.json: no such results file"
    assert (tmp_path / "gradci-results.json").is_file() and (tmp_path / "gradci-junit.xml").is_file()
    assert "gradci: 1 test · no failures · not compared with base\n" in done.stdout


def test_baseline_durations_order_the_run_but_not_the_shards(tmp_path: Path) -> None:
    base = save(tmp_path / "base.json", [result("add", duration=42.0), result("mul", duration=7.0)])
    explicit = save(tmp_path / "durations.json", [result("mul", duration=3.0)])
    settings = resolve({"baseline": str(base)}, environ={}, directory=tmp_path)
    shipped = load_durations(settings, "cpu")  # what shards are balanced by: no baseline in it
    assert shipped.get("test_fn_grad_add_cpu_float64") != 42.0
    ordered = load_durations(settings, "cpu", load(base))
    assert ordered["test_fn_grad_add_cpu_float64"] == 42.0 and ordered["test_fn_grad_mul_cpu_float64"] == 7.0
    settings = resolve({"baseline": str(base), "durations": str(explicit)}, environ={}, directory=tmp_path)
    assert (
        load_durations(settings, "cpu", load(base))["test_fn_grad_mul_cpu_float64"] == 3.0
    )  # --durations wins
    assert load_durations(settings, "cuda", load(base)).get("test_fn_grad_add_cpu_float64") is None
