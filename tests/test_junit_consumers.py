"""gradci's JUnit XML as the report tools read it, from a real run of ops that fail, crash, are
flaky and print terminal colours (tests/fixtures/gradci_junitops.py), plus an op module in the
working directory.

What each reader takes from a ``<testcase>`` (from their sources):

* mikepenz/action-junit-report: ``message`` of ``<failure>``/``<error>`` as the annotation's
  message, its text as the raw details, ``file``/``line`` to place it, the number of
  ``<flakyFailure>`` as the test's retries;
* dorny/test-reporter: ``type + ": " + message`` where there is a ``type``, the text as details;
* EnricoMi/publish-unit-test-result-action (junitparser): the most severe of ``case.result``, its
  message and text, ``<system-out>``; Surefire's re-run elements are not results to it;
* Jenkins (junit plugin): ``message`` and text, ``<system-out>``, ``<flakyFailure>`` and
  ``<rerunFailure>`` with their ``<stackTrace>``; the xunit plugin validates with junit-10.xsd.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, gradci
from junitparser import Error, Failure
from junitparser import JUnitXml as PlainJUnitXml
from junitparser.xunit2 import JUnitXml, TestCase
from lxml import etree
from results_factory import result, results

from gradci import failure, junit
from gradci.github import check_run
from gradci.locate import Location
from gradci.results import Outcome

XSD = Path(os.environ.get("GRADCI_JUNIT_XSD", REPO.parent / "shared" / "junit" / "junit-10.xsd"))

LOCAL_OPS = """
import torch
from torch.testing import make_tensor
from torch.testing._internal.opinfo.core import OpInfo, SampleInput


class _Wrong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return 3 * grad


def _samples(op, device, dtype, requires_grad, **kwargs):
    yield SampleInput(make_tensor((3,), device=device, dtype=dtype, requires_grad=requires_grad))


op_db = [
    OpInfo(
        "local.wrong",
        op=_Wrong.apply,
        dtypes=(torch.float64,),
        sample_inputs_func=_samples,
        supports_out=False,
    )
]
"""


def tid(op: str) -> str:
    return f"test_fn_grad_{op}_cpu_float64"


class Run:
    def __init__(self, where: Path, stdout: str) -> None:
        self.where = where
        self.stdout = stdout
        self.xml_text = (where / "junit.xml").read_text(encoding="utf-8")
        self.tests: dict[str, Any] = {
            t["id"]: t for t in json.loads((where / "results.json").read_text())["tests"]
        }
        self.cases: dict[str, TestCase] = {
            case.name: case for suite in JUnitXml.fromfile(str(where / "junit.xml")) for case in suite
        }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    where = tmp_path_factory.mktemp("consumers")
    (where / "state").mkdir()
    (where / "localops.py").write_text(LOCAL_OPS)
    done = gradci(
        "run",
        "--op-modules",
        "gradci_junitops,localops",
        "--checks",
        "grad",
        "--reruns",
        "1",
        "--progress",
        "plain",
        "--json",
        "results.json",
        "--junit",
        "junit.xml",
        cwd=where,
        env={"GRADCI_JUNIT_STATE": str(where / "state")},
    )
    assert done.returncode == 1, done.stderr
    return Run(where, done.stdout)


def test_the_message_is_the_console_headline(run: Run) -> None:
    """What mikepenz annotates and dorny prints is the console's FAILED line, without a doubled type."""
    shown = dict(re.findall(r"^  (?:FAILED|ERROR|XPASS) (\S+) - (.*)$", run.stdout, re.MULTILINE))
    failing = {name: case for name, case in run.cases.items() if case.result}
    assert (
        set(failing)
        == set(shown)
        == {tid("junit_colored"), tid("junit_crash"), tid("junit_wrong"), tid("local_wrong")}
    )
    for name, case in failing.items():
        [final] = case.result
        assert final.message == shown[name]
        assert final.type is None  # as pytest 8 writes them: dorny shows no "X: X: ..."
    wrong = run.cases[tid("junit_wrong")].result[0]
    assert wrong.message == (
        "GradcheckError: Jacobian mismatch for output 0 with respect to input 0 "
        "(sample 0, x: numerical 2 vs analytical 3, max abs error 1)"  # wrong(x)
    )
    assert wrong.text.startswith("sample input 0: SampleInput(")
    assert "numerical 2, analytical 3" in wrong.text and "repro: gradci repro" in wrong.text
    assert "Traceback (most recent call last)" in wrong.text  # the body keeps the detail
    assert run.cases[tid("junit_crash")].result[0].message == "worker crashed with SIGSEGV"


def test_flaky_tests_and_reruns_are_surefire_elements(run: Run) -> None:
    flaky = run.cases[tid("junit_flaky")]
    assert flaky.is_passed and not flaky.result
    [first] = flaky.flaky_failures()
    assert first.type == "GradcheckError"
    assert first.message.startswith(
        "GradcheckError: Jacobian mismatch for output 0 with respect to input 0 (sample 0"
    )
    assert "numerical 2, analytical 3" in first.stack_trace and "Traceback" in first.stack_trace

    crashed_once = run.cases[tid("junit_flaky_crash")]
    assert crashed_once.is_passed and not crashed_once.flaky_failures()
    [first] = crashed_once.flaky_errors()
    assert (first.type, first.message) == ("gradci.crash", "worker crashed with SIGSEGV")
    assert "Fatal Python error: Segmentation fault" in first.stack_trace
    assert "in flaky_crash" in first.stack_trace and "Fatal Python error" in first.system_out

    wrong = run.cases[tid("junit_wrong")]
    assert [type(r) for r in wrong.result] == [Failure]
    [earlier] = wrong.rerun_failures()
    assert earlier.type == "GradcheckError" and earlier.message == wrong.result[0].message
    assert "traceback: the same as the final try's" in earlier.stack_trace

    crash = run.cases[tid("junit_crash")]
    assert [type(r) for r in crash.result] == [Error]
    [earlier] = crash.rerun_errors()
    assert earlier.type == "gradci.crash" and "in _segfault_deep" in earlier.stack_trace

    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(run.where / "junit.xml"))}
    assert (suites["junit.flaky"].failures, suites["junit.flaky"].errors) == (0, 0)
    assert (suites["junit.crash"].failures, suites["junit.crash"].errors) == (0, 1)


def test_a_crash_shows_its_signal_stack_and_last_output(run: Run) -> None:
    crash = run.cases[tid("junit_crash")]
    [error] = crash.result
    text = error.text
    assert text.startswith("Fatal Python error: Segmentation fault\nstack of the crashing thread")
    frames = [line.strip() for line in text.splitlines() if line.strip().startswith("File ")]
    assert frames[0].endswith("in string_at")
    assert [f.rsplit(" in ", 1)[1] for f in frames[1:3]] == ["_segfault_deep", "crash"]
    assert "gradci_junitops.py" in frames[1]
    for driver in (
        "gradci/worker.py",
        "gradci/runner.py",
        "gradci/suite.py",
        "unittest/",
        "multiprocessing/",
    ):
        assert driver not in text, driver
    assert "common_device_type.py" not in text and "common_utils.py" not in text
    assert "last output before the crash:\n  about to crash, red\n  the op's last words" in text
    assert "repro: gradci repro " + tid("junit_crash") in text
    assert "Extension modules" not in run.xml_text
    # the results JSON keeps the whole output, but not the list of loaded modules either
    output = run.tests[tid("junit_crash")]["output"]
    assert "Fatal Python error: Segmentation fault" in output and "Extension modules" not in output
    assert "gradci/worker.py" in output  # the full stack stays there


def test_no_terminal_escapes_in_the_xml(run: Run) -> None:
    assert "\x1b" not in run.xml_text and "\N{REPLACEMENT CHARACTER}" not in run.xml_text
    colored = run.cases[tid("junit_colored")]
    assert colored.result[0].message == "RuntimeError: colored failure of the op (sample 0)"
    assert colored.system_out == "warning: computing in colour\n"
    assert "about to crash, red" in run.cases[tid("junit_crash")].system_out
    # the results JSON keeps the text as it was
    assert "\x1b[33mwarning:" in run.tests[tid("junit_colored")]["output"]


def test_file_only_where_github_can_place_it(run: Run) -> None:
    """An op module outside the working directory has an absolute path: no ``file`` at all."""
    outside = run.cases[tid("junit_wrong")]
    assert run.tests[tid("junit_wrong")]["location"]["file"].startswith("/")
    assert outside._elem.get("file") is None and outside._elem.get("line") is None
    local = run.cases[tid("local_wrong")]
    location = run.tests[tid("local_wrong")]["location"]
    assert local._elem.get("file") == location["file"] == "localops.py"
    assert local._elem.get("line") == str(location["line"])
    files = {
        s.get("name"): s.get("file") for s in etree.parse(str(run.where / "junit.xml")).iter("testsuite")
    }
    assert files["local.wrong"] == "localops.py" and files["junit.wrong"] is None


def test_valid_against_junit_10_xsd(run: Run) -> None:
    if not XSD.is_file():
        pytest.skip(f"junit-10.xsd not found at {XSD}")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.parse(str(run.where / "junit.xml"))), schema.error_log
    # the schema does check Surefire's elements: one without its required type fails
    document = etree.parse(str(run.where / "junit.xml"))
    next(document.iter("flakyFailure")).attrib.pop("type")
    assert not schema.validate(document)


def test_as_enricomi_reads_it(run: Run) -> None:
    """publish-unit-test-result-action's junit.py: plain junitparser, the most severe result of each
    case, its message and text, the case's system-out; line 0 where there is none."""
    severity = ["error", "failure", "success", "skipped"]
    seen = {}
    for suite in PlainJUnitXml.fromfile(str(run.where / "junit.xml")):
        for case in suite:
            states = [r._tag for r in case.result] or ["success"]
            worst = min(states, key=severity.index)
            picked = [r for r in case.result if r._tag == worst]
            seen[case.name] = (worst, picked[0].message if picked else None, case.system_out)
    assert seen[tid("junit_flaky")] == ("success", None, None)
    assert seen[tid("junit_flaky_crash")][0] == "success"
    assert seen[tid("junit_wrong")][0] == "failure" and seen[tid("junit_wrong")][1].endswith(
        "max abs error 1)"
    )
    assert seen[tid("junit_crash")][:2] == ("error", "worker crashed with SIGSEGV")
    assert "Fatal Python error" in seen[tid("junit_crash")][2]


# --- the shared text, on results built in memory -------------------------------------------------


FAULTHANDLER = """\
[... 1,234 earlier bytes cut]
terminate called after throwing an instance of 'c10::Error'
  what():  \x1b[31mboom\x1b[0m
Fatal Python error: Aborted

Thread 0x00007f0000000001 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 324 in wait
  File "/usr/lib/python3.11/threading.py", line 1002 in _bootstrap

Current thread 0x00007f0000000002 (most recent call first):
  File "/site/torch/autograd/graph.py", line 825 in _engine_run_backward
  File "/home/me/proj/myops.py", line 12 in backward
  File "/site/torch/testing/_internal/common_utils.py", line 5956 in fn
  File "/site/torch/autograd/gradcheck.py", line 2126 in _gradcheck_helper
  File "/elsewhere/gradci/suite.py", line 79 in _test_fn_grad
  File "/site/torch/testing/_internal/common_device_type.py", line 1364 in test_wrapper
  File "/usr/lib/python3.11/unittest/case.py", line 623 in run
  File "/elsewhere/gradci/worker.py", line 301 in run_one

Extension modules: numpy._core._multiarray_umath, torch._C, torch._C._fft (total: 3)
"""


def test_last_words_of_a_crash() -> None:
    words = failure.last_words(FAULTHANDLER)
    assert words.splitlines() == [
        "Fatal Python error: Aborted",
        "stack of the crashing thread (most recent call first; "
        "5 frames of gradci's and torch's test drivers left out; 1 other thread in the output):",
        '  File "/site/torch/autograd/graph.py", line 825 in _engine_run_backward',
        '  File "/home/me/proj/myops.py", line 12 in backward',
        '  File "/site/torch/autograd/gradcheck.py", line 2126 in _gradcheck_helper',
        "last output before the crash:",
        "  terminate called after throwing an instance of 'c10::Error'",
        "    what():  \x1b[31mboom\x1b[0m",
    ]
    assert "Extension modules" not in failure.drop_module_list(FAULTHANDLER)
    assert failure.last_words("a\n\nb\n") == "last output:\n  a\n  b"


def test_the_xml_of_a_crash_built_in_memory() -> None:
    test = result("myops.boom", Outcome.ERROR, message="worker crashed with SIGABRT")
    test.sample_index, test.sample, test.output = None, None, FAULTHANDLER
    test.location = Location("src/myops.py", 12)
    xml = junit.to_xml(results([test]))
    case = next(etree.fromstring(xml.encode()).iter("testcase"))
    assert (case.get("file"), case.get("line")) == ("src/myops.py", "12")
    error = case.find("error")
    assert error is not None and error.get("type") is None
    assert error.get("message") == "worker crashed with SIGABRT"
    assert "    what():  boom" in (error.text or "") and "\x1b" not in xml
    annotation = check_run.describe(test)
    assert annotation.startswith("worker crashed with SIGABRT\nFatal Python error: Aborted\n")
    assert 'myops.py", line 12 in backward' in annotation


@pytest.mark.parametrize(
    ("file", "kept"),
    [
        ("src/ops.py", True),
        ("torch/testing/_internal/opinfo/definitions/linalg.py", True),
        ("/abs/path/myops.py", False),
        ("../sibling/ops.py", False),
        ("C:\\work\\ops.py", False),
    ],
)
def test_file_attribute_only_for_relative_paths(file: str, kept: bool) -> None:
    test = result("myops.x", Outcome.FAILED)
    test.location = Location(file, 3)
    case = next(etree.fromstring(junit.to_xml(results([test])).encode()).iter("testcase"))
    assert (case.get("file") == file) is kept and (case.get("line") == "3") is kept


def test_headline_and_annotation_share_the_text() -> None:
    test = result("myops.x", Outcome.FAILED, fast_mode_only=True)
    line = failure.headline(test)
    assert line == (
        "GradcheckError: Jacobian mismatch for output 0 with respect to input 0 "
        "(sample 1, input: numerical 2 vs analytical 3.5, max abs error 1.5, fast mode only)"
    )
    annotation = check_run.describe(test)
    assert annotation.splitlines()[0] == line
    assert "fast mode only: slow-mode gradcheck passes" in annotation and "repro: gradci repro" in annotation
    assert failure.details(test) in junit.to_xml(results([test])).replace("&amp;", "&")


def test_escapes_are_stripped() -> None:
    text = "\x1b[1;31mred\x1b[0m \x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\ \x1b]0;title\x07done\x1bM"
    assert failure.strip_escapes(text) == "red link done"


def test_a_spec_ops_wrapper_is_the_ops_frame_not_the_drivers() -> None:
    """A gradci-ops.yml op is called through gradci/spec/build.py: the stack goes on past it."""
    dump = (
        "Fatal Python error: Segmentation fault\n\n"
        "Current thread 0x00007f0000000002 (most recent call first):\n"
        '  File "/site/gradci/spec/build.py", line 101 in __call__\n'
        '  File "/site/torch/autograd/gradcheck.py", line 2126 in _gradcheck_helper\n'
        '  File "C:\\site\\gradci\\suite.py", line 79 in _test_fn_grad\n'
        '  File "/site/gradci/worker.py", line 301 in run_one\n'
    )
    frames = [line.strip() for line in failure.last_words(dump).splitlines() if line.startswith("  File")]
    assert frames == [
        'File "/site/gradci/spec/build.py", line 101 in __call__',
        'File "/site/torch/autograd/gradcheck.py", line 2126 in _gradcheck_helper',
    ]
