"""JUnit XML, as the common test-report tools read it (Jenkins xunit ``junit-10.xsd``, junitparser).

One ``<testsuite>`` per operator (its name is the op, e.g. ``div.trunc_rounding``, with the op, its
database and the device as properties), one ``<testcase>`` per test: ``name`` is the upstream test
id, ``classname`` the upstream class (``TestBwdGradientsCPU``). Check and dtype are the prefix and
suffix of the test id. Like pytest, a skip is ``<skipped type="pytest.skip">`` and an expected
failure ``<skipped type="pytest.xfail">``; an unexpected success is a failure. A flaky test (failed,
then passed when re-run) passes, with its earlier tries in ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import groupby
from pathlib import Path

from junit_xml import TestCase, TestSuite

from .results import Outcome, Results, TestResult, write_output

# Characters XML 1.0 cannot carry (test output may hold terminal escapes and such).
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SKIP_TYPES = {Outcome.SKIPPED: "pytest.skip", Outcome.XFAILED: "pytest.xfail"}
_MAX_TEXT = 64_000  # per element: keeps a 500-failure report loadable by report tools


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = _ILLEGAL_XML.sub("\N{REPLACEMENT CHARACTER}", text)
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + f"\n... [{len(text) - _MAX_TEXT} more characters cut]"
    return text


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def failure_text(test: TestResult) -> str:
    """Everything a person needs to act on a failure, as plain text."""
    parts: list[str] = []
    if test.sample_index is not None or test.sample:
        index = "?" if test.sample_index is None else test.sample_index
        parts.append(f"sample input {index}: {test.sample or ''}".rstrip())
    if test.mismatch is not None:
        m = test.mismatch
        label = f" ({m.input_label})" if m.input_label else ""
        at = f" at Jacobian element {tuple(m.at)}" if m.at else ""
        parts.append(
            f"{m.mode} mode: output {m.output} w.r.t. input {m.input}{label}: max abs error "
            f"{m.max_abs_error:.6g}, max rel error {_g(m.max_rel_error)}{at}; numerical {m.numerical}, "
            f"analytical {m.analytical}"
        )
        if m.slow_mode_max_diff is not None:
            parts.append(f"slow mode max difference: {m.slow_mode_max_diff:.6g}")
        if m.fast_mode_only:
            parts.append("fast mode only: slow-mode gradcheck passes")
    if test.repro:
        parts.append(f"repro: {test.repro}")
    if test.traceback:
        parts.append("")
        parts.append(test.traceback.rstrip())
    return "\n".join(parts)


def _case(test: TestResult) -> TestCase:
    case = TestCase(
        test.id,
        classname=test.classname,
        elapsed_sec=test.duration,
        file=test.location.file if test.location else None,
        line=str(test.location.line) if test.location else None,
    )
    if test.outcome in (Outcome.SKIPPED, Outcome.XFAILED):
        case.add_skipped_info(message=_clean(test.message) or test.outcome.value)
    elif test.outcome is Outcome.FAILED:
        kind = test.message.split(":", 1)[0] if ":" in test.message else "AssertionError"
        case.add_failure_info(
            message=_clean(test.message), output=_clean(failure_text(test)), failure_type=kind
        )
    elif test.outcome is Outcome.XPASSED:
        case.add_failure_info(
            message="Unexpected success", output=_clean(failure_text(test)), failure_type="UnexpectedSuccess"
        )
    elif test.outcome is Outcome.ERROR:
        case.add_error_info(
            message=_clean(test.message), output=_clean(failure_text(test)), error_type="gradci.error"
        )
    if test.outcome.failing and test.output:
        case.stdout = _clean(test.output)
    elif test.flaky:
        # junit-10.xsd has no flaky element (Surefire's <flakyFailure> does not validate there).
        case.stdout = _clean(flaky_text(test))
    return case


def flaky_text(test: TestResult) -> str:
    lines = [f"flaky: passed on try {len(test.attempts) + 1} after failing"]
    for number, attempt in enumerate(test.attempts, start=1):
        lines.append(f"try {number}: {attempt.get('outcome')}: {attempt.get('message', '')}".rstrip())
    return "\n".join(lines)


def _suite_element(op: str, tests: list[TestResult]) -> ET.Element:
    first = tests[0]
    properties = {"op": op, "db": first.db, "device": first.device}
    if first.origin:
        properties["origin"] = first.origin
    suite = TestSuite(
        op,
        [_case(t) for t in tests],
        properties=properties,
        file=first.location.file if first.location else None,
    )
    element: ET.Element = suite.build_xml_doc()
    # junit-xml writes attributes junit-10.xsd does not allow, and times it may not match.
    element.attrib.pop("disabled", None)
    element.set("time", f"{sum(t.duration for t in tests):.3f}")
    for case_element, test in zip(element.iter("testcase"), tests, strict=True):
        case_element.set("time", f"{test.duration:.3f}")
        skipped = case_element.find("skipped")
        if skipped is not None:
            skipped.set("type", _SKIP_TYPES[test.outcome])
    return element


def to_xml(results: Results) -> str:
    tests = sorted(results.tests, key=lambda t: (t.op, t.id))
    root = ET.Element("testsuites", {"name": "gradci"})
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for op, group in groupby(tests, key=lambda t: t.op):
        element = _suite_element(op, list(group))
        for key in totals:
            totals[key] += int(element.get(key, "0"))
        root.append(element)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{sum(t.duration for t in tests):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write(results: Results, path: Path) -> None:
    write_output(path, to_xml(results))
