"""What each command does: ``run``, ``list``, ``ops``, ``repro``, ``compare``, ``merge``, ``report``.

``cli.py`` parses, these act.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from . import __version__, allocator
from .console import (
    Console,
    counted,
    describe_failure,
    escape_workflow_commands,
    print_summary,
    summary_line,
    workers_and_threads,
)
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TESTS_FAILED, GradciError, SelectionError
from .options import Settings
from .results import Outcome, Results, TestResult, write_atomic

if TYPE_CHECKING:
    from .session import Session


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A cancelled CI job sends SIGTERM: end like Ctrl-C, writing what finished."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_outputs(results: Results, settings: Settings, console: Console) -> list[str]:
    """The results JSON and JUnit XML; each is written even if the other cannot be."""
    from . import junit

    written: list[str] = []
    for path, write in ((settings.json, results.save), (settings.junit, lambda p: junit.write(results, p))):
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            console.warning(f"cannot write {path}: {exc}")
        else:
            written.append(str(path))
    return written


def run(settings: Settings, argv: Sequence[str]) -> int:
    from .session import Session

    console = Console(settings.progress)
    session = Session.prepare(settings, argv)
    if session.baseline_problem is not None:
        console.warning(f"{session.baseline_problem}; the tests run anyway, then gradci exits with code 3")
    tests = session.plan.tests
    workers, threads = session.workers_and_threads()
    ops = len({t.op for t in tests})
    console.info(
        f"gradci {__version__}: {counted(len(tests), 'test')} over {counted(ops, 'op')} on {session.device}, "
        + workers_and_threads(workers, threads)
        + (f", shard {settings.shard}" if settings.shard else "")
        + (f", malloc from {allocator.active()}" if allocator.active() != "system" else "")
    )
    with _sigterm_as_interrupt():
        progress = console.progress(len(tests))
        try:
            with console.group(f"gradci: running {len(tests)} tests"):
                results, error = session.execute(progress.advance)
        finally:
            progress.close()
        interrupted = results.run.interrupted
        if error is None and not interrupted:
            try:
                error = _rerun(session, results, console)
            except KeyboardInterrupt:
                interrupted = True  # every try that finished is kept
    written = write_outputs(results, settings, console)
    print_summary(results)
    if written:
        console.info("results: " + ", ".join(written))
    if error is not None:
        raise error
    if interrupted:
        return EXIT_INTERRUPTED
    return _verdict(session, results)


def _rerun(session: Session, results: Results, console: Console) -> GradciError | None:
    """--reruns: each failed or errored test again, in a fresh worker."""
    failing = sum(t.outcome in (Outcome.FAILED, Outcome.ERROR) for t in results.tests)
    if not failing or session.settings.reruns < 1:
        return None

    def report(previous: TestResult, latest: TestResult) -> None:
        if latest.outcome.failing:
            console.info(describe_failure(latest) + " (again, when re-run)")
        else:
            console.info(
                escape_workflow_commands(
                    f"FLAKY {latest.id} - {previous.outcome.value} at first ({previous.message}), "
                    f"{latest.outcome.value} when re-run"
                )
            )

    with console.group(f"gradci: re-running {failing} failing test(s), each in a fresh worker"):
        try:
            session.rerun_failures(results, report)
        except GradciError as exc:
            return exc
    return None


def _verdict(session: Session, results: Results) -> int:
    """The exit code of a finished run: --fail-on, against --baseline when one is given."""
    from .compare import compare, problem_error
    from .report import render

    settings = session.settings
    if settings.baseline is None:
        comparison = compare(None, results)
    else:
        comparison = compare(session.baseline, results, baseline_problem=session.baseline_problem)
        print()
        print(escape_workflow_commands(render(results, comparison, fmt="text")), end="", flush=True)
        problem = problem_error(comparison)
        if problem is not None:
            raise problem
    return EXIT_TESTS_FAILED if comparison.should_fail(settings.fail_on) else EXIT_OK


def _write(path: Path, text: str, console: Console) -> bool:
    try:
        write_atomic(path, text)
    except OSError as exc:
        console.warning(f"cannot write {path}: {exc}")
        return False
    return True


def compare_files(
    base_path: Path,
    head_path: Path,
    *,
    fail_on: str,
    markdown: Path | None = None,
    json_path: Path | None = None,
    max_chars: int | None = None,
) -> int:
    """``gradci compare``: the text report on stdout; Markdown and JSON files on request."""
    from .compare import compare, load_baseline, problem_error
    from .report import render
    from .results import load

    console = Console("plain")
    head = load(head_path)  # without head results there is nothing to report: exit 3 now
    base, problem = load_baseline(base_path)
    comparison = compare(base, head, baseline_problem=problem)
    if markdown is not None:
        _write(markdown, render(head, comparison, fmt="markdown", budget=max_chars), console)
    if json_path is not None:
        _write(json_path, json.dumps(comparison.to_json(fail_on), indent=1) + "\n", console)
    print(escape_workflow_commands(render(head, comparison, fmt="text")), end="", flush=True)
    error = problem_error(comparison)
    if error is not None:
        raise error
    return EXIT_TESTS_FAILED if comparison.should_fail(fail_on) else EXIT_OK


def report_file(
    results_path: Path,
    *,
    baseline: Path | None = None,
    fmt: str = "markdown",
    max_chars: int | None = None,
    output: Path | None = None,
    title: str = "gradci",
) -> int:
    """``gradci report``: the summary of a results file, against base results when given."""
    from .compare import Comparison, compare, load_baseline, problem_error
    from .report import render
    from .results import load

    head = load(results_path)
    comparison: Comparison | None = None
    if baseline is not None:
        base, problem = load_baseline(baseline)
        comparison = compare(base, head, baseline_problem=problem)
    text = render(head, comparison, fmt=fmt, budget=max_chars, title=title)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    elif not _write(output, text, Console("plain")):
        raise GradciError(f"cannot write the report to {output}")
    error = None if comparison is None else problem_error(comparison)
    if error is not None:
        raise error
    return EXIT_OK


def merge_results(
    paths: Sequence[Path],
    *,
    output: Path,
    junit_path: Path | None = None,
    allow_overlap: bool = False,
    allow_mixed: bool = False,
    argv: Sequence[str] = (),
) -> int:
    """``gradci merge``: one results file (and JUnit XML) from shards."""
    from . import junit
    from .merge import merge_files

    console = Console("plain")
    merged, warnings = merge_files(
        paths, allow_overlap=allow_overlap, allow_mixed=allow_mixed, command=list(argv)
    )
    for warning in warnings:
        console.warning(warning)
    written = []
    for path, write in ((output, merged.save), (junit_path, lambda p: junit.write(merged, p))):
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            raise GradciError(f"cannot write {path}: {exc}") from None
        written.append(str(path))
    print(f"merged {len(paths)} results files: {summary_line(merged)} -> {', '.join(written)}")
    return EXIT_OK


def list_tests(settings: Settings) -> int:
    from .session import make_plan, resolve_device

    device = settings.device if settings.device != "auto" else resolve_device("auto")
    for test_id in make_plan(settings, device).ids:
        print(test_id)
    return EXIT_OK


def list_ops(settings: Settings) -> int:
    from .catalog import select
    from .session import load_entries

    for entry in select(load_entries(settings), settings.ops, settings.exclude):
        where = f"  {entry.location}" if entry.location else ""
        print(f"{entry.full_name}\t{entry.db}{where}")
    return EXIT_OK


def repro(settings: Settings, test_id: str, sample: int | None) -> int:
    """Re-run one test (optionally one sample) in this process, showing everything."""
    from .plan import TestId

    parsed = TestId.parse(test_id)
    if sample is not None:
        # Read by torch's testing internals at import: set it before they are imported.
        os.environ["PYTORCH_OPINFO_SAMPLE_INPUT_INDEX"] = str(sample)
    from .catalog import select
    from .plan import build_plan
    from .session import load_entries, resolve_device
    from .suite import build_test_class
    from .worker import instrument, run_one

    resolve_device(parsed.device)
    entries = [e for e in load_entries(settings) if e.formatted_name == parsed.op]
    plan = build_plan(
        select(entries, (), ()), device=parsed.device, checks=(parsed.check,), dtypes=(parsed.dtype,)
    )
    if parsed.name not in plan.ids:
        raise SelectionError(
            f"no test {parsed.name} among the configured ops", hint="'gradci list' prints the known test ids"
        )
    cls = build_test_class(parsed.device, plan.ops_by_method)
    instrument()
    print(
        f"gradci repro: {cls.__name__}.{parsed.name}"
        + (f", sample {sample} only" if sample is not None else ""),
        flush=True,
    )
    result = run_one(cls, parsed.name)
    outcome = result["outcome"]
    print(f"outcome: {outcome.value}" + (f" - {result['message']}" if result["message"] else ""))
    if result.get("sample_index") is not None:
        print(f"sample input {result['sample_index']}: {result.get('sample')}")
    mismatch = result.get("mismatch")
    if mismatch is not None:
        print(f"mismatch: {mismatch}")
    if result.get("traceback"):
        print(result["traceback"], file=sys.stderr)
    return EXIT_TESTS_FAILED if outcome.failing else EXIT_OK
