"""JUnit XML, as the common test-report tools read it (Jenkins xunit ``junit-10.xsd``, junitparser,
EnricoMi/publish-unit-test-result-action, mikepenz/action-junit-report, dorny/test-reporter).

One ``<testsuite>`` per operator (its name is the op, e.g. ``div.trunc_rounding``, with the op, its
database and the device as properties), one ``<testcase>`` per test: ``name`` is the upstream test
id, ``classname`` the upstream class (``TestBwdGradientsCPU``). Check and dtype are the prefix and
suffix of the test id.

As pytest writes them: a failure is ``<failure message=...>`` and a crash or timeout ``<error
message=...>``, without a ``type`` (the message starts with the exception's class already; readers
that print ``type: message`` would say it twice); a skip is ``<skipped type="pytest.skip">`` and an
expected failure ``<skipped type="pytest.xfail">``; an unexpected success is a failure. The message
is gradci's headline (``failure.headline``), the text its details and the traceback; what the test
printed is ``<system-out>``.

Re-runs as Maven Surefire writes them: a flaky test (failed, then passed when re-run) passes with
its earlier tries as ``<flakyFailure>`` (``<flakyError>`` for a crash), a test that failed every
try carries its earlier tries as ``<rerunFailure>`` (``<rerunError>``) beside its failure; each
with ``message``, ``type``, ``<stackTrace>`` and ``<system-out>``.

Text passes ``_clean``: no terminal escapes, no character XML 1.0 cannot carry, at most
``_MAX_TEXT`` characters. ``file`` is written only where GitHub can place it: a relative path.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import groupby
from pathlib import Path, PurePosixPath

from . import failure
from .results import Outcome, Results, TestResult, write_output

# Characters XML 1.0 cannot carry (escape sequences are stripped before: see failure.strip_escapes).
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SKIP_TYPES = {Outcome.SKIPPED: "pytest.skip", Outcome.XFAILED: "pytest.xfail"}
_MAX_TEXT = 64_000  # per element: keeps a 500-failure report loadable by report tools
_MAX_MESSAGE = 2_000  # per message attribute: a headline, shown on one line
_FINAL = {Outcome.FAILED: "failure", Outcome.XPASSED: "failure", Outcome.ERROR: "error"}
_EARLIER = {  # (final outcome failing?, earlier try's outcome) -> Surefire's element
    (False, Outcome.FAILED): "flakyFailure",
    (False, Outcome.ERROR): "flakyError",
    (True, Outcome.FAILED): "rerunFailure",
    (True, Outcome.ERROR): "rerunError",
}


def _clean(text: str, limit: int = _MAX_TEXT) -> str:
    text = _ILLEGAL_XML.sub("\N{REPLACEMENT CHARACTER}", failure.strip_escapes(text))
    if len(text) > limit:
        text = text[:limit] + f"\n... [{len(text) - limit} more characters cut]"
    return text


def _placeable(file: str) -> bool:
    """A path GitHub can place in the repository: relative, inside it (not an absolute path of the
    machine that ran the tests, which no reader can map)."""
    path = PurePosixPath(file.replace("\\", "/"))
    return (
        bool(path.parts)
        and not path.is_absolute()
        and ".." not in path.parts
        and not re.match(r"^[A-Za-z]:", file)
    )


def _text_element(parent: ET.Element, tag: str, text: str | None) -> None:
    if text:
        ET.SubElement(parent, tag).text = _clean(text)


def _earlier_try(case: ET.Element, test: TestResult, attempt: TestResult) -> None:
    tag = _EARLIER.get((test.outcome.failing, attempt.outcome))
    if tag is None:
        return
    element = ET.SubElement(
        case,
        tag,
        {"message": _clean(failure.headline(attempt), _MAX_MESSAGE), "type": failure.failure_type(attempt)},
    )
    trace = failure.body(attempt)
    # the results keep a traceback or output once where it was the same on the final try
    same = [
        name
        for name, mine, final in (
            ("traceback", attempt.traceback, test.traceback),
            ("output", attempt.output, test.output),
        )
        if mine is None and final and test.outcome.failing
    ]
    if same:
        trace += f"\n{' and '.join(same)}: the same as the final try's"
    _text_element(element, "stackTrace", trace)
    _text_element(element, "system-out", attempt.output)  # kept where it differs from the final try's


def _case(test: TestResult) -> ET.Element:
    case = ET.Element(
        "testcase", {"name": _clean(test.id), "classname": test.classname, "time": f"{test.duration:.3f}"}
    )
    if test.location is not None and _placeable(test.location.file):
        case.set("file", test.location.file)
        case.set("line", str(test.location.line))
    if test.outcome in _SKIP_TYPES:
        ET.SubElement(
            case,
            "skipped",
            {
                "type": _SKIP_TYPES[test.outcome],
                "message": _clean(test.message or test.outcome.value, _MAX_MESSAGE),
            },
        )
    elif test.outcome in _FINAL:
        element = ET.SubElement(
            case, _FINAL[test.outcome], {"message": _clean(failure.headline(test), _MAX_MESSAGE)}
        )
        element.text = _clean(failure.body(test)) or None
    for attempt in failure.earlier_tries(test):
        _earlier_try(case, test, attempt)
    if test.outcome.failing:
        _text_element(case, "system-out", test.output)
    return case


def _suite(op: str, tests: list[TestResult]) -> ET.Element:
    first = tests[0]
    count = {outcome: sum(t.outcome is outcome for t in tests) for outcome in Outcome}
    suite = ET.Element(
        "testsuite",
        {
            "name": _clean(op),
            "tests": str(len(tests)),
            "failures": str(count[Outcome.FAILED] + count[Outcome.XPASSED]),
            "errors": str(count[Outcome.ERROR]),
            "skipped": str(count[Outcome.SKIPPED] + count[Outcome.XFAILED]),
            "time": f"{sum(t.duration for t in tests):.3f}",
        },
    )
    if first.location is not None and _placeable(first.location.file):
        suite.set("file", first.location.file)
    properties = ET.SubElement(suite, "properties")
    values = {"op": op, "db": first.db, "device": first.device}
    if first.origin:
        values["origin"] = first.origin
    for name, value in values.items():
        ET.SubElement(properties, "property", {"name": name, "value": _clean(value, _MAX_MESSAGE)})
    suite.extend(_case(t) for t in tests)
    return suite


def to_xml(results: Results) -> str:
    tests = sorted(results.tests, key=lambda t: (t.op, t.id))
    root = ET.Element("testsuites", {"name": "gradci"})
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for op, group in groupby(tests, key=lambda t: t.op):
        element = _suite(op, list(group))
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
