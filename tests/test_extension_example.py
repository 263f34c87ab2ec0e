"""The example extension (examples/extension) checked as its author would: ``gradci run`` in the project,
which picks up its gradci-ops.yml. The correct ops pass, the broken twin fails with a message that
names the input and shows the numerical and analytical values; with ``--checks +opcheck`` the custom
ops go through torch.library.opcheck too, and the twin with a wrong fake kernel fails there.

Each test copies the example to a temporary directory and runs there: gradci puts the working
directory on ``sys.path`` (as pytest does its rootdir), so ``extops`` imports without being installed;
``test_installed_package`` installs it for real instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import REPO, Completed, gradci
from junitparser import Failure, JUnitXml

EXAMPLE = REPO / "examples" / "extension"
BROKEN = {
    "test_fn_grad_extops_scaled_mul_broken_cpu_float64",
    "test_fn_grad_extops_scaled_mul_broken_cpu_complex128",
}
ENTRY_LINES = {  # the line of each op's entry in examples/extension/gradci-ops.yml
    "extops.fused_gelu": 9,
    "extops.softsign": 21,
    "extops.scale_shift": 30,
    "extops.scaled_mul": 43,
    "extops.scaled_mul_broken": 49,
    "extops.cube": 56,
    "extops.cube_broken_jvp": 65,
    "extops.fused_gelu_broken_fake": 75,
}
# What opcheck finds: the wrong fake kernel (test_aot_dispatch_dynamic, which traces with it too, is
# the spec's xfail for the twin).
BROKEN_FAKE = "test_opcheck_faketensor_extops_fused_gelu_broken_fake_cpu_float64"
OPCHECK_METHODS = (
    "test_opcheck_schema",
    "test_opcheck_autograd_registration",
    "test_opcheck_faketensor",
    "test_opcheck_aot_dispatch_dynamic",
)


def root(project: Path) -> dict[str, str]:
    """Make ``project`` the repository root that locations are relative to (also under Actions)."""
    return {"GITHUB_WORKSPACE": str(project)}


def copy_example(target: Path) -> Path:
    shutil.copytree(
        EXAMPLE,
        target,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "gradci-results.json", "*.xml"),
    )
    return target


def results_of(path: Path) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in json.loads(path.read_text())["tests"]}


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Completed, Path]:
    project = copy_example(tmp_path_factory.mktemp("example") / "extension")
    return gradci("run", "--progress", "plain", cwd=project, env=root(project)), project


def test_the_entry_lines_are_right() -> None:
    lines = EXAMPLE.joinpath("gradci-ops.yml").read_text().splitlines()
    for name, line in ENTRY_LINES.items():
        assert lines[line - 1].strip() == f"- name: {name}"


def test_correct_ops_pass_and_the_broken_twin_fails(example_run: tuple[Completed, Path]) -> None:
    done, project = example_run
    assert done.returncode == 1, done.stderr
    tests = results_of(project / "gradci-results.json")
    assert {i for i, t in tests.items() if t["outcome"] in ("failed", "error", "xpassed")} == BROKEN
    outcomes = {i: t["outcome"] for i, t in tests.items()}
    expected = {
        # custom_op + register_autograd: first and second order
        "test_fn_grad_extops_fused_gelu_cpu_float64": "passed",
        "test_fn_gradgrad_extops_fused_gelu_cpu_float64": "passed",
        "test_inplace_grad_extops_fused_gelu_cpu_float64": "skipped",
        # no double backward: fail-gradgrad verifies the error, gradgrad is skipped
        "test_fn_grad_extops_softsign_cpu_float64": "passed",
        "test_fn_fail_gradgrad_extops_softsign_cpu_float64": "passed",
        "test_fn_gradgrad_extops_softsign_cpu_float64": "skipped",
        # the broken twin's backward is consistent with itself: only first order fails
        "test_fn_gradgrad_extops_scaled_mul_broken_cpu_float64": "passed",
        # a wrong fake kernel is invisible to gradients
        "test_fn_grad_extops_fused_gelu_broken_fake_cpu_float64": "passed",
        "test_fn_gradgrad_extops_fused_gelu_broken_fake_cpu_float64": "passed",
    }
    for dtype in ("float64", "complex128"):
        for check in ("fn_grad", "inplace_grad", "fn_gradgrad", "inplace_gradgrad"):
            expected[f"test_{check}_extops_scale_shift_cpu_{dtype}"] = "passed"
        for check in ("fn_grad", "fn_gradgrad"):
            expected[f"test_{check}_extops_scaled_mul_cpu_{dtype}"] = "passed"
            # the jvp twin's backward is right: the backward suite passes it
            expected[f"test_{check}_extops_cube_broken_jvp_cpu_{dtype}"] = "passed"
    assert {i: outcomes[i] for i in expected} == expected
    # by default: neither the forward suite nor opcheck
    assert {t["check"] for t in tests.values()} == {
        "grad",
        "inplace-grad",
        "gradgrad",
        "fail-gradgrad",
        "inplace-gradgrad",
    }
    # complex128 is not in fused_gelu's dtypes: no test planned
    assert "test_fn_grad_extops_fused_gelu_cpu_complex128" not in tests
    assert len(tests) == 65
    assert (
        tests["test_fn_gradgrad_extops_softsign_cpu_float64"]["message"]
        == "Op claims it doesn't support gradgrad. This is not verified."
    )
    for test in tests.values():  # every result points at its spec entry
        assert test["location"] == {"file": "gradci-ops.yml", "line": ENTRY_LINES[test["op"]]}
        assert test["origin"] == "gradci-ops.yml" and test["db"] == "user"


def test_the_failure_names_the_input_and_shows_the_mismatch(example_run: tuple[Completed, Path]) -> None:
    done, project = example_run
    failed = results_of(project / "gradci-results.json")["test_fn_grad_extops_scaled_mul_broken_cpu_float64"]
    mismatch = failed["mismatch"]
    assert failed["message"].startswith(
        "GradcheckError: Jacobian mismatch for output 0 with respect to input 1"
    )
    assert mismatch["input"] == 1 and mismatch["input_label"] == "y"  # args[0], named by the signature
    numerical, analytical = float(mismatch["numerical"]), float(mismatch["analytical"])
    assert numerical == pytest.approx(2.5 * analytical, rel=1e-4)  # the backward forgot alpha = 2.5
    assert mismatch["max_abs_error"] == pytest.approx(abs(numerical - analytical), rel=1e-4)
    assert failed["sample_index"] == 0
    assert failed["repro"] == (
        "gradci repro test_fn_grad_extops_scaled_mul_broken_cpu_float64 --sample 0 --spec gradci-ops.yml"
    )
    line = next(
        x for x in done.stdout.splitlines() if "FAILED test_fn_grad_extops_scaled_mul_broken_cpu_float64" in x
    )
    assert line.strip() == (
        "FAILED test_fn_grad_extops_scaled_mul_broken_cpu_float64 - GradcheckError: Jacobian mismatch for "
        f"output 0 with respect to input 1 (sample 0, y: numerical {mismatch['numerical']} vs "
        f"analytical {mismatch['analytical']}, max abs error {mismatch['max_abs_error']:.3g})"
    )
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(project / "gradci-junit.xml"))}
    case = next(c for c in suites["extops.scaled_mul_broken"] if c.name == failed["id"])
    failure = next(r for r in case.result if isinstance(r, Failure))
    assert re.search(
        r"fast mode: output 0 w\.r\.t\. input 1 \(y\): max abs error [\d.]+, max rel error [\d.]+ "
        r"at Jacobian element \(\d+, \d+\); "
        + re.escape(f"numerical {mismatch['numerical']}, analytical {mismatch['analytical']}"),
        failure.text,
    ), failure.text
    assert case._elem.get("file") == "gradci-ops.yml" and case._elem.get("line") == str(
        ENTRY_LINES["extops.scaled_mul_broken"]
    )


def test_breaking_an_op_through_the_environment(tmp_path: Path) -> None:
    """What a change that breaks scaled_mul looks like (a base-vs-head pair for the PR report)."""
    project = copy_example(tmp_path / "extension")
    args = ("run", "--exclude", "*broken", "--checks", "grad", "--progress", "none", "--json", "r.json")
    base = gradci(*args, cwd=project)
    assert base.returncode == 0, base.stdout + base.stderr
    head = gradci(*args, cwd=project, env={"EXTOPS_BREAK": "scaled_mul"})
    assert head.returncode == 1
    failing = {i for i, t in results_of(project / "r.json").items() if t["outcome"] == "failed"}
    assert failing == {
        "test_fn_grad_extops_scaled_mul_cpu_float64",
        "test_fn_grad_extops_scaled_mul_cpu_complex128",
    }


def test_installed_package(tmp_path: Path) -> None:
    """pip-install the example (a wheel, into a target directory) and check it from a directory that
    holds only its spec."""
    pytest.importorskip("setuptools", minversion="70.1", reason="pip install -e '.[dev]' brings it")
    source = copy_example(tmp_path / "source")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("gradci_example_extops-0.1.0-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
        check=True,
        capture_output=True,
    )
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(source / "gradci-ops.yml", project)
    done = gradci(
        "run",
        "--ops",
        "extops.fused_gelu",
        "--progress",
        "none",
        cwd=project,
        env={"PYTHONPATH": str(tmp_path / "site")},
    )
    assert done.returncode == 0, done.stderr
    outcomes = {i: t["outcome"] for i, t in results_of(project / "gradci-results.json").items()}
    assert outcomes["test_fn_grad_extops_fused_gelu_cpu_float64"] == "passed"
    assert outcomes["test_fn_gradgrad_extops_fused_gelu_cpu_float64"] == "passed"


def test_the_forward_suite_fails_only_the_wrong_jvp(tmp_path: Path) -> None:
    """``--checks all`` adds forward-mode AD (and opcheck): cube's jvp passes, its twin's (a factor 3
    forgotten) fails naming the input; ops without forward AD pass the "must raise" checks (an
    autograd.Function says so in its own words); custom ops' silently zero tangents are xfails."""
    project = copy_example(tmp_path / "extension")
    done = gradci(
        "run", "--checks", "all", "--progress", "none", "--reruns", "0", cwd=project, env=root(project)
    )
    assert done.returncode == 1, done.stderr
    tests = results_of(project / "gradci-results.json")
    failing = {i for i, t in tests.items() if t["outcome"] in ("failed", "error", "xpassed")}
    assert failing == BROKEN | {
        "test_forward_mode_AD_extops_cube_broken_jvp_cpu_float64",
        "test_forward_mode_AD_extops_cube_broken_jvp_cpu_complex128",
        BROKEN_FAKE,  # all is every check: opcheck's too
    }
    wrong = tests["test_forward_mode_AD_extops_cube_broken_jvp_cpu_float64"]
    assert wrong["classname"] == "TestFwdGradientsCPU"
    assert wrong["message"].startswith("GradcheckError: Jacobian computed with forward mode mismatch")
    mismatch = wrong["mismatch"]
    assert mismatch["input_label"] == "x"
    numerical, analytical = float(mismatch["numerical"]), float(mismatch["analytical"])
    assert numerical == pytest.approx(3 * analytical, rel=1e-4)  # the jvp forgot the factor 3
    for check in ("forward_mode_AD", "fn_fwgrad_bwgrad"):
        assert tests[f"test_{check}_extops_cube_cpu_complex128"]["outcome"] == "passed"
        assert tests[f"test_{check}_extops_scaled_mul_cpu_float64"]["outcome"] == "passed"  # must raise
    zero_tangents = tests["test_forward_mode_AD_extops_fused_gelu_cpu_float64"]
    assert zero_tangents["outcome"] == "xfailed"  # and the error it expects says why
    assert (
        "(AssertionError: forward AD ran though the op declares supports_forward_ad: false"
        in (zero_tangents["message"])
    )
    assert "FAILED test_forward_mode_AD_extops_cube_broken_jvp_cpu_float64" in done.stdout


@pytest.fixture(scope="module")
def opcheck_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Completed, Path]:
    project = copy_example(tmp_path_factory.mktemp("opcheck") / "extension")
    args = ("run", "--checks", "opcheck", "--progress", "plain", "--reruns", "0")
    return gradci(*args, cwd=project, env=root(project)), project


def test_opcheck_passes_the_custom_ops_and_fails_the_wrong_fake_kernel(
    opcheck_run: tuple[Completed, Path],
) -> None:
    """Real torch.library ops through real opcheck utilities, one test per utility and sample set."""
    done, project = opcheck_run
    assert done.returncode == 1, done.stderr
    results = json.loads((project / "gradci-results.json").read_text())
    jsonschema.validate(results, json.loads((REPO / "gradci/schemas/results-v2.schema.json").read_text()))
    tests = {t["id"]: t for t in results["tests"]}
    # Only the torch.library custom ops: the autograd.Functions have no registrations to check.
    custom = ("fused_gelu", "softsign", "fused_gelu_broken_fake")
    assert set(tests) == {f"{m}_extops_{op}_cpu_float64" for m in OPCHECK_METHODS for op in custom}
    assert {t["classname"] for t in tests.values()} == {"TestOpCheckCPU"}
    outcomes = {i: t["outcome"] for i, t in tests.items()}
    for method in OPCHECK_METHODS:
        assert outcomes[f"{method}_extops_fused_gelu_cpu_float64"] == "passed"
        assert outcomes[f"{method}_extops_softsign_cpu_float64"] == "passed"
    twin = {m: outcomes[f"{m}_extops_fused_gelu_broken_fake_cpu_float64"] for m in OPCHECK_METHODS}
    assert twin == {
        "test_opcheck_schema": "passed",
        "test_opcheck_autograd_registration": "passed",
        "test_opcheck_faketensor": "failed",
        "test_opcheck_aot_dispatch_dynamic": "xfailed",  # the spec's xfail: the same wrong fake kernel
    }
    assert tests["test_opcheck_aot_dispatch_dynamic_extops_fused_gelu_broken_fake_cpu_float64"][
        "message"
    ].startswith("expected failure: the wrong fake kernel that opcheck-faketensor reports (")

    failed = tests[BROKEN_FAKE]
    assert failed["check"] == "opcheck-faketensor"
    # the utility's own error is the headline: what is wrong, in the real and the fake output
    problem = (
        r"MetadataMismatchError: When comparing the output of extops\.fused_gelu_broken_fake\.default on "
        r"FakeTensor and concrete Tensors, found mismatched tensor metadata: "
        r"Shapes torch\.Size\(\[3, 4\]\) and torch\.Size\(\[12\]\) are not equal!"
    )
    assert re.fullmatch(problem, failed["message"]), failed["message"]
    assert failed["sample_index"] == 0 and failed.get("mismatch") is None  # gradcheck's only
    assert failed["repro"] == f"gradci repro {BROKEN_FAKE} --sample 0 --spec gradci-ops.yml"
    line = next(x for x in done.stdout.splitlines() if f"FAILED {BROKEN_FAKE}" in x)
    assert line.strip() == f"FAILED {BROKEN_FAKE} - {failed['message']} (sample 0)"
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(project / "gradci-junit.xml"))}
    case = next(c for c in suites["extops.fused_gelu_broken_fake"] if c.name == BROKEN_FAKE)
    assert case.classname == "TestOpCheckCPU"
    failure = next(r for r in case.result if isinstance(r, Failure))
    assert failure.message == f"{failed['message']} (sample 0)"
    assert "sample input 0: " in failure.text
    assert case._elem.get("file") == "gradci-ops.yml" and case._elem.get("line") == str(
        ENTRY_LINES["extops.fused_gelu_broken_fake"]
    )


def test_opcheck_added_to_a_base_without_it_makes_new_tests(tmp_path: Path) -> None:
    """The pull request that turns opcheck on: its tests, the failing one too, are new tests, not new
    failures, since the base run did not select those checks; ``gradci compare`` passes."""
    project = copy_example(tmp_path / "extension")
    ops = ("--ops", "extops.fused_gelu*", "--progress", "none", "--reruns", "0")
    base = gradci("run", *ops, "--json", "base.json", cwd=project)
    assert base.returncode == 0, base.stdout + base.stderr
    head = gradci("run", *ops, "--checks", "+opcheck", "--json", "head.json", cwd=project)
    assert head.returncode == 1, head.stdout + head.stderr
    head_tests = results_of(project / "head.json")
    assert set(results_of(project / "base.json")) < set(head_tests)  # +opcheck: the backward suite too
    assert {t["check"] for t in head_tests.values()} >= {"grad", "opcheck-faketensor"}

    done = gradci(
        "compare", "base.json", "head.json", "--json", "cmp.json", "--markdown", "cmp.md", cwd=project
    )
    assert done.returncode == 0, done.stdout + done.stderr
    categories = json.loads((project / "cmp.json").read_text())["tests"]
    assert categories["new_failure"] == []
    new = set(categories["new_test"])
    assert new == {
        f"{m}_extops_{op}_cpu_float64"
        for m in OPCHECK_METHODS
        for op in ("fused_gelu", "fused_gelu_broken_fake")
    }
    assert BROKEN_FAKE in new
    # the report lists them by op and check, the failing one with its headline
    report = (project / "cmp.md").read_text()
    assert "<summary>New tests (8 in 2 ops)</summary>" in report
    assert "|  | opcheck-faketensor | float64 | failed: MetadataMismatchError: When comparing" in report
