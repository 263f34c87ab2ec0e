"""The text of a failure, the same wherever it is shown: the console's ``FAILED`` line, the JUnit XML
(``message`` and body), the check run's annotations.

* ``headline(test)``: one line, why it failed: the error, then sample, argument, numerical vs
  analytical value, max abs error, "fast mode only" and, where gradcheck's batched (vmap) part
  failed, the flag that turns it off, where they are known.
* ``details(test)``: the lines to act on: the sample input, the mismatch in full, for a crash the
  fatal error, the stack of the op (not of gradci's driver) and what it printed last; the repro
  command. The Python traceback is not part of it: each consumer puts it where it belongs.

A crash's output is kept without Python's "Extension modules: ..." list (``drop_module_list``,
applied where the runner reads a worker's log), and what is shown to people carries no terminal
escapes (``strip_escapes``).
"""

from __future__ import annotations

import re
from dataclasses import replace

from .checks import USER_DB
from .results import Mismatch, Outcome, TestResult

# CSI (colours, cursor moves), OSC (titles, hyperlinks; ended by BEL or ST) and two-character escapes.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]"
)
# faulthandler's list of the C extension modules a crashed process had loaded: over a hundred
# names with torch, none of them about the crash.
_MODULE_LIST = re.compile(r"^Extension modules: .*(?:\n|$)", re.MULTILINE)
_FATAL = "Fatal Python error:"
_THREAD = re.compile(
    r"^(?:Current thread|Thread) 0x[0-9a-fA-F]+.*\(most recent call first\):$|^Stack \(most recent call first\):$"
)
_FRAME = re.compile(r'^\s+File "(?P<file>.*)", line (?P<line>\d+) in (?P<func>.*)$')
# Frames of gradci's test driver: where the test body starts (and, above it, the worker and the
# parent's stack a forked worker inherits). By name, not by gradci's own path: the XML may be
# written elsewhere (``gradci merge``) than where the test ran, and a spec's op is called through
# gradci/spec/build.py, which is the op's frame, not the driver's.
_DRIVER = re.compile(r"(?:^|/)gradci/(?:suite|worker|runner|session|commands|cli|catalog|__main__)\.py$")
# Harness frames between the op and the driver, left out where they come between: torch's test
# wrappers, unittest, multiprocessing, runpy and the import machinery.
_HARNESS = re.compile(
    r"(?:^|/)torch/testing/_internal/(?:common_utils|common_device_type)\.py$"
    r"|(?:^|/)(?:unittest|multiprocessing)/[^/]+\.py$"
    r"|(?:^|/)(?:runpy|importlib/__init__)\.py$|^<frozen (?:runpy|importlib\._bootstrap(?:_external)?)>$"
)
_LAST_LINES = 20  # of the output before a crash, or at the end of a test that was lost
_HINT = "[... "  # the runner's mark where it cut the start of an output


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (colours, titles, cursor moves)."""
    return _ESCAPES.sub("", text)


def drop_module_list(output: str) -> str:
    """A crash's output without faulthandler's "Extension modules: ..." line."""
    return _MODULE_LIST.sub("", output)


# gradcheck's words where its batched (vmap) part fails: vmap raised, or its result differs from
# the unbatched gradients (that message's first line says only "For output 0 and input 0:").
_BATCHED = re.compile(
    r"While computing batched gradients|Batching rule not implemented"
    r"|failed while testing batched gradient computation"
)
# The OpInfo flag (and spec key) of each check's batched part; fwgrad-bwgrad runs none.
_BATCHED_FLAG = {
    "grad": "check_batched_grad",
    "inplace-grad": "check_batched_grad",
    "gradgrad": "check_batched_gradgrad",
    "inplace-gradgrad": "check_batched_gradgrad",
    "forward-ad": "check_batched_forward_grad",
    "inplace-forward-ad": "check_batched_forward_grad",
}


def batched_hint(test: TestResult) -> str | None:
    """For a failure in gradcheck's batched (vmap) part: which check it is, and how to turn it off."""
    flag = _BATCHED_FLAG.get(test.check)
    if flag is None or test.outcome is not Outcome.FAILED:
        return None
    if not _BATCHED.search(test.message) and not _BATCHED.search(test.traceback or ""):
        return None
    if test.db == USER_DB and (test.origin or "").endswith((".yml", ".yaml")):
        off = f"gradcheck: {{{flag}: false}}"
    elif test.check == "inplace-forward-ad":
        off = "OpInfo(check_inplace_batched_forward_grad=False)"
    else:
        off = f"OpInfo({flag}=False)"
    return f"in the batched gradient check, under vmap: turn it off for this op with {off}"


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def headline(test: TestResult) -> str:
    """One line: the error, then (sample N, argument: numerical X vs analytical Y, max abs error Z,
    fast mode only, the batched check and how to turn it off) where known. What the console prints
    after ``FAILED <id> - ``."""
    # torch's first line of a Jacobian mismatch ends in a comma: its numbers follow on other lines
    message = strip_escapes(test.message).strip().rstrip(",").rstrip() or test.outcome.value
    extra = []
    if test.sample_index is not None and test.outcome is not Outcome.XPASSED:
        extra.append(f"sample {test.sample_index}")
    if test.mismatch is not None:
        m = test.mismatch
        extra.append(
            f"{m.input_label or f'input {m.input}'}: numerical {m.numerical} vs analytical {m.analytical}, "
            f"max abs error {m.max_abs_error:.3g}"
        )
        if m.fast_mode_only:
            extra.append("fast mode only")
    if (batched := batched_hint(test)) is not None:
        extra.append(batched)
    return message + (f" ({', '.join(extra)})" if extra else "")


def _mismatch_lines(m: Mismatch) -> list[str]:
    label = f" ({m.input_label})" if m.input_label else ""
    at = f" at Jacobian element {tuple(m.at)}" if m.at else ""
    lines = [
        f"{m.mode} mode: output {m.output} w.r.t. input {m.input}{label}: max abs error "
        f"{m.max_abs_error:.6g}, max rel error {_g(m.max_rel_error)}{at}; numerical {m.numerical}, "
        f"analytical {m.analytical}"
    ]
    if m.slow_mode_max_diff is not None:
        lines.append(f"slow mode max difference: {m.slow_mode_max_diff:.6g}")
    if m.fast_mode_only:
        lines.append("fast mode only: slow-mode gradcheck passes")
    return lines


def details(test: TestResult) -> str:
    """The lines a person acts on (no Python traceback), escapes stripped."""
    parts: list[str] = []
    # an unexpected success passed on every sample: the last one it ran says nothing
    if (test.sample_index is not None or test.sample) and test.outcome is not Outcome.XPASSED:
        index = "?" if test.sample_index is None else test.sample_index
        parts.append(f"sample input {index}: {test.sample or ''}".rstrip())
    if test.mismatch is not None:
        parts.extend(_mismatch_lines(test.mismatch))
    if test.outcome is Outcome.ERROR and test.output:
        parts.append(last_words(test.output))
    if test.repro:
        parts.append(f"repro: {test.repro}")
    return strip_escapes("\n".join(parts))


def body(test: TestResult) -> str:
    """``details`` and the Python traceback: a JUnit failure's text."""
    text = details(test)
    if test.traceback:
        text = (
            f"{text}\n\n{strip_escapes(test.traceback.rstrip())}" if text else strip_escapes(test.traceback)
        )
    return text


# --- crashes ---------------------------------------------------------------------------------------


def _stack(lines: list[str]) -> tuple[list[str], int]:
    """The frames of one thread's stack (most recent first) that belong to the op: up to gradci's
    driver, without torch's test wrappers; and how many were left out."""
    frames = [(line.strip(), m["file"].replace("\\", "/")) for line in lines if (m := _FRAME.match(line))]
    kept: list[str] = []
    for line, file in frames:
        if _DRIVER.search(file):
            break
        if not _HARNESS.search(file):
            kept.append(line)
    return kept, len(frames) - len(kept)


def last_words(output: str) -> str:
    """What to show of a lost worker's output: for a crash, the fatal error, the crashing thread's
    stack as far as it is the op's, and the output just before; otherwise the output's last lines."""
    lines = [line.rstrip() for line in drop_module_list(output).splitlines()]
    fatal = [i for i, line in enumerate(lines) if line.startswith(_FATAL)]
    if not fatal:
        tail = [line for line in lines if line.strip() and not line.startswith(_HINT)][-_LAST_LINES:]
        return "last output:\n" + "\n".join("  " + line for line in tail) if tail else ""
    start = fatal[-1]
    before = [line for line in lines[:start] if line.strip() and not line.startswith(_HINT)][-_LAST_LINES:]
    parts = [lines[start]]
    threads = [i for i in range(start + 1, len(lines)) if _THREAD.match(lines[i])]
    if threads:
        # all threads are dumped, in no set order: the crashing one is "Current thread"
        current = next((n for n, i in enumerate(threads) if lines[i].startswith("Current")), 0)
        begin = threads[current]
        end = threads[current + 1] if current + 1 < len(threads) else len(lines)
        kept, left_out = _stack(lines[begin + 1 : end])
        others = len(threads) - 1
        notes = []
        if left_out:
            notes.append(f"{left_out} frames of gradci's and torch's test drivers left out")
        if others:
            notes.append(f"{others} other thread{'s' if others > 1 else ''} in the output")
        note = f"; {'; '.join(notes)}" if notes else ""
        parts.append(f"stack of the crashing thread (most recent call first{note}):")
        parts.extend("  " + frame for frame in kept or ["(no frames of the op)"])
    if before:
        parts.append("last output before the crash:")
        parts.extend("  " + line for line in before)
    return "\n".join(parts)


# --- re-runs ---------------------------------------------------------------------------------------


def earlier_tries(test: TestResult) -> list[TestResult]:
    """The earlier tries of a re-run test as results of their own (same test; their outcome,
    message, sample and mismatch; traceback and output where the results kept them)."""
    tries = []
    for attempt in test.attempts:
        if not isinstance(attempt, dict):
            continue
        try:
            outcome = Outcome(attempt.get("outcome"))
        except ValueError:
            continue
        mismatch = attempt.get("mismatch")
        try:
            shown_mismatch = Mismatch(**mismatch) if isinstance(mismatch, dict) else None
        except TypeError:
            shown_mismatch = None
        tries.append(
            replace(
                test,
                outcome=outcome,
                duration=float(attempt.get("duration") or 0.0),
                message=str(attempt.get("message") or ""),
                sample_index=attempt.get("sample_index"),
                sample=attempt.get("sample"),
                mismatch=shown_mismatch,
                traceback=attempt.get("traceback"),
                output=attempt.get("output"),
                repro=None,  # the final result's repro names its own sample
                attempts=[],
            )
        )
    return tries


def failure_type(test: TestResult) -> str:
    """A try's kind, for JUnit's ``type``: the exception's class, or gradci's word for a lost test."""
    if test.outcome is Outcome.ERROR:
        if test.message.startswith("timed out"):
            return "gradci.timeout"
        if test.message.startswith("worker crashed"):
            return "gradci.crash"
        return "gradci.error"
    if test.outcome is Outcome.XPASSED:
        return "gradci.unexpected_success"
    match = re.match(r"([A-Za-z_][\w.]*)(?::|$)", test.message.strip())
    return match.group(1) if match else "gradci.failure"
