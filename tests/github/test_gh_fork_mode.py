"""Fork mode end to end: ``gradci run`` on a PyTorch checkout's op with a broken backward formula
(tests/fixtures/torchfork, laid out like PyTorch's) -> results -> ``gradci publish`` against the local
GitHub -> the check run's annotations on the OpInfo entry and on the op's entry of
tools/autograd/derivatives.yaml. Then the rules of those annotations, one by one."""

from __future__ import annotations

import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import FIXTURES, gradci
from ghfake import payload
from ghfixtures import (  # noqa: F401 - fixtures
    Scenario,
    actions_env,
    fast_client_fixture,
    github_fixture,
    ops_results,
    publish,
    result,
    scenario_fixture,
)

from gradci.compare import compare
from gradci.github import check_run
from gradci.locate import Derivative, Location
from gradci.results import Outcome, load

CHECKOUT = FIXTURES / "torchfork"
FORKOPS = "torch/testing/_internal/opinfo/definitions/forkops.py"
DERIVATIVES = "tools/autograd/derivatives.yaml"


def mark(path: Path, name: str) -> int:
    [line] = [n for n, text in enumerate(path.read_text().splitlines(), 1) if f"# at: {name}" in text]
    return line


def entry(name: str) -> int:
    [line] = [
        n
        for n, text in enumerate((CHECKOUT / DERIVATIVES).read_text().splitlines(), 1)
        if text.startswith(f"- name: {name}(")
    ]
    return line


def test_a_broken_backward_formula_is_annotated_on_its_derivatives_yaml_entry(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    shutil.copytree(CHECKOUT, sc.workspace, dirs_exist_ok=True)  # the repository is the fork
    definitions = sc.workspace / FORKOPS
    done = gradci(
        "run",
        "--op-modules",
        "forkops",
        "--torch-source",
        ".",
        "--progress",
        "plain",
        cwd=sc.workspace,
        env={"GITHUB_WORKSPACE": str(sc.workspace), "PYTHONPATH": str(definitions.parent)},
    )
    assert done.returncode == 1, done.stderr
    tests = {t.id: t for t in load(sc.workspace / "gradci-results.json").tests}
    failed = tests["test_fn_grad_abs_cpu_float64"]
    assert failed.outcome is Outcome.FAILED  # the lost sign, found by a real gradcheck
    assert [t.id for t in tests.values() if t.outcome.failing] == [failed.id]
    abs_at, div_at = Location(FORKOPS, mark(definitions, "abs")), Location(FORKOPS, mark(definitions, "div"))
    assert failed.location == abs_at
    assert failed.derivative == Derivative(DERIVATIVES, entry("abs"), "abs")
    # an OpOverload's own overload; no formula for the check that only expects an error
    div = tests["test_fn_grad_div_no_rounding_mode_cpu_float64"]
    assert div.location == div_at and div.derivative == Derivative(
        DERIVATIVES, entry("div.Tensor_mode"), "div.Tensor_mode"
    )
    assert tests["test_fn_fail_gradgrad_abs_cpu_float64"].derivative is None
    raw = json.loads((sc.workspace / "gradci-results.json").read_text())
    [as_written] = [t for t in raw["tests"] if t["id"] == failed.id]
    assert as_written["location"] == {"file": FORKOPS, "line": abs_at.line}
    assert as_written["derivative"] == {"file": DERIVATIVES, "line": entry("abs"), "name": "abs"}
    cases = {c.get("name"): c for c in ET.parse(sc.workspace / "gradci-junit.xml").getroot().iter("testcase")}
    assert (cases[failed.id].get("file"), cases[failed.id].get("line")) == (FORKOPS, str(abs_at.line))

    # The fork's base branch passed: the failure is new. gradci publish annotates both places.
    base = load(sc.workspace / "gradci-results.json")
    for test in base.tests:
        if test.outcome.failing:
            test.outcome, test.mismatch, test.message = Outcome.PASSED, None, ""
    sc.artifact_at(sc.merge_base, base)
    env = actions_env(sc, "pull_request", payload("pull_request.opened.json"))
    published = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)
    assert published.code == 1, published.stderr
    [run] = sc.repo.check_runs.values()
    assert [(a["path"], a["start_line"], a["annotation_level"]) for a in run.annotations] == [
        (FORKOPS, abs_at.line, "failure"),
        (DERIVATIVES, entry("abs"), "failure"),
    ]
    opinfo, formula = run.annotations
    assert opinfo["title"] == "New failure: test_fn_grad_abs_cpu_float64"
    assert f"backward formula: {DERIVATIVES}:{entry('abs')} (abs)" in opinfo["message"]
    assert formula["title"] == "New failure in the derivative of abs: test_fn_grad_abs_cpu_float64"
    assert formula["message"].startswith(
        "1 failing test checks this backward formula:\n- test_fn_grad_abs_cpu_float64\n"
    )
    assert "max abs error" in formula["message"] and "GradcheckError" in formula["raw_details"]
    assert "check run 'gradci' (2 annotations)" in published.stderr


# --- the rules ----------------------------------------------------------------------------------


def fork_root(tmp_path: Path) -> Path:
    shutil.copytree(CHECKOUT, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_one_formula_annotation_per_entry_listing_its_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fork_root(tmp_path)
    abs_d = Derivative(DERIVATIVES, entry("abs"), "abs")
    div_d = Derivative(DERIVATIVES, entry("div.Tensor_mode"), "div.Tensor_mode")
    here = Location(FORKOPS, 46)
    grad = result("abs", Outcome.FAILED, location=here)
    head = ops_results(set(), [])
    head.tests = [
        dataclasses.replace(grad, derivative=abs_d),
        dataclasses.replace(result("abs", Outcome.FAILED, check="gradgrad", location=here), derivative=abs_d),
        dataclasses.replace(result("div", Outcome.FAILED, location=here), derivative=div_d),
        # a check that expects an error: its formula is not what to fix
        dataclasses.replace(
            grad, id="test_fn_fail_gradgrad_abs_cpu_float64", check="fail-gradgrad", derivative=abs_d
        ),
        # an entry that is not in the repository's files
        dataclasses.replace(
            result("gone", Outcome.FAILED, location=here), derivative=Derivative("tools/x.yaml", 3, "x")
        ),
    ]
    made, total = check_run.annotations_for(compare(None, head), root=root, workflow_path=".github/x.yml")
    assert [(a.path, a.line, a.title) for a in made] == [
        (FORKOPS, 46, "Failure: test_fn_fail_gradgrad_abs_cpu_float64"),
        (FORKOPS, 46, "Failure: test_fn_grad_abs_cpu_float64"),
        (DERIVATIVES, abs_d.line, "Failure in the derivative of abs: test_fn_grad_abs_cpu_float64 (+1 more)"),
        (FORKOPS, 46, "Failure: test_fn_gradgrad_abs_cpu_float64"),
        (FORKOPS, 46, "Failure: test_fn_grad_div_cpu_float64"),
        (
            DERIVATIVES,
            div_d.line,
            "Failure in the derivative of div.Tensor_mode: test_fn_grad_div_cpu_float64",
        ),
        (FORKOPS, 46, "Failure: test_fn_grad_gone_cpu_float64"),
    ]
    assert total == 7  # 5 failures, 2 formulas
    assert made[2].message.startswith(
        "2 failing tests check this backward formula:\n- test_fn_grad_abs_cpu_float64\n"
        "- test_fn_gradgrad_abs_cpu_float64\n\n"
    )
    assert "backward formula" not in made[0].message  # fail-gradgrad

    # GitHub's budget counts both kinds: the cap cuts the list, the total stays
    monkeypatch.setattr(check_run, "MAX_ANNOTATIONS", 3)
    capped, total = check_run.annotations_for(compare(None, head), root=root, workflow_path=None)
    assert [a.title for a in capped] == [a.title for a in made[:3]] and total == 7


def test_an_upstream_op_of_an_installed_torch_is_named_where_the_annotation_falls_back(
    tmp_path: Path,
) -> None:
    """Relative to torch's directory: not a file of the repository, even where the repository has
    one at that path (a fork testing an installed torch)."""
    root = fork_root(tmp_path)
    (root / ".gradci.yml").write_text("ops: [abs]\n")
    at = Location(FORKOPS, 46, relative_to="torch")
    head = ops_results(set(), [])
    head.tests = [result("abs", Outcome.FAILED, location=at)]
    [made], total = check_run.annotations_for(compare(None, head), root=root, workflow_path=".github/x.yml")
    assert (made.path, made.line, total) == (".gradci.yml", 1, 1)
    assert made.message.endswith(f"\nOpInfo: {FORKOPS}:46 (in the installed torch package)")
    # a workflow_run, which cannot look at the files, does not place it either
    [made], _ = check_run.annotations_for(
        compare(None, head), root=root, workflow_path=None, check_disk=False
    )
    assert made.path == ".gradci.yml"
