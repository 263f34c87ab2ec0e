"""Results JSON and JUnit XML: valid against their schemas, readable by report tools, complete."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO, gradci
from junitparser import JUnitXml
from lxml import etree

from gradci import results as results_model
from gradci.errors import ResultsFileError

SCHEMA = REPO / "gradci" / "schemas" / "results-v2.schema.json"
XSD = Path(
    __import__("os").environ.get("GRADCI_JUNIT_XSD", REPO.parent / "shared" / "junit" / "junit-10.xsd")
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run with every outcome: passed, failed, error, skipped, xfailed, xpassed."""
    path = tmp_path_factory.mktemp("outputs")
    done = gradci(
        "run",
        "--op-modules",
        "gradci_testops",
        "--upstream",
        "--checks",
        "grad,fail-gradgrad",
        "--ops",
        "testops.good_scale,testops.wrong_scale,testops.crash,testops.known_bad,testops.fixed,cov",
        "--json",
        "out/results.json",
        "--junit",
        "out/junit.xml",
        cwd=path,
    )
    assert done.returncode == 1, done.stderr
    return path / "out"


def test_results_json_follows_its_schema(run_dir: Path) -> None:
    data = json.loads((run_dir / "results.json").read_text())
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    outcomes = {t["outcome"] for t in data["tests"]}
    assert outcomes == {"passed", "failed", "error", "skipped", "xfailed", "xpassed"}
    assert data["summary"]["total"] == len(data["tests"])
    run = data["run"]
    assert run["torch_version"].startswith("2.") and run["device"] == "cpu"
    assert run["selection"]["op_modules"] == ["gradci_testops"] and run["selection"]["upstream"] is True


def test_results_round_trip(run_dir: Path) -> None:
    loaded = results_model.load(run_dir / "results.json")
    again = json.loads(json.dumps(loaded.to_json()))
    assert again == json.loads((run_dir / "results.json").read_text())


def test_junit_validates_against_xsd(run_dir: Path) -> None:
    if not XSD.is_file():
        pytest.skip(f"junit-10.xsd not found at {XSD}")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    document = etree.parse(str(run_dir / "junit.xml"))
    assert schema.validate(document), schema.error_log


def test_junit_parses_in_junitparser(run_dir: Path) -> None:
    xml = JUnitXml.fromfile(str(run_dir / "junit.xml"))
    cases = {case.name: (suite, case) for suite in xml for case in suite}
    data = {t["id"]: t for t in json.loads((run_dir / "results.json").read_text())["tests"]}
    assert set(cases) == set(data)

    suite, case = cases["test_fn_grad_testops_wrong_scale_cpu_float64"]
    assert suite.name == "testops.wrong_scale"  # the op
    assert {p.name: p.value for p in suite.properties()}["db"] == "user"
    assert case.classname == "TestBwdGradientsCPU"
    [failure] = case.result
    assert failure.message.startswith("GradcheckError: Jacobian mismatch")
    assert failure.type is None  # as pytest writes it: the message names the exception already
    assert "sample input 0" in failure.text and "repro: gradci repro" in failure.text

    _, crashed = cases["test_fn_grad_testops_crash_cpu_float64"]
    assert crashed.result[0]._tag == "error" and crashed.result[0].message == "worker crashed with SIGSEGV"
    _, xfailed = cases["test_fn_grad_cov_cpu_float64"]
    assert xfailed.result[0]._tag == "skipped" and xfailed.result[0].type == "pytest.xfail"
    _, skipped = cases["test_fn_fail_gradgrad_cov_cpu_float64"]
    assert skipped.result[0].type == "pytest.skip"
    assert skipped.result[0].message == "Skipped! Operation does support gradgrad"
    _, xpassed = cases["test_fn_grad_testops_fixed_cpu_float64"]
    assert xpassed.result[0]._tag == "failure"
    assert xpassed.result[0].message == "Unexpected success: the test is marked as an expected failure"
    _, passed = cases["test_fn_grad_testops_good_scale_cpu_float64"]
    assert not passed.result and float(passed.time) > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such results file"),
        ('{"schema": "gradci.results", "version": 1, "run": {', "truncated"),
        ("[1, 2]", "not a gradci results file"),
        ('{"schema": "gradci.results", "version": 99}', "schema version 99"),
        ('{"schema": "gradci.results", "version": 1, "run": {}, "tests": []}', "malformed"),
    ],
)
def test_bad_results_files_give_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "base.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultsFileError, match=message):
        results_model.load(path)
