"""What each command does: ``run``, ``list``, ``ops``, ``samples``, ``repro``, ``compare``, ``merge``,
``report``, ``config``, ``init`` (its work in init.py).

``cli.py`` parses, these act.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from . import __version__, allocator
from .console import (
    Console,
    counted,
    full_failure,
    print_summary,
    summary_line,
    workers_and_threads,
)
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TESTS_FAILED,
    OutputError,
    SelectionError,
    UsageError,
)
from .failure import headline
from .github.workflow_commands import escape_workflow_commands
from .options import CONFIG_FILES, SPEC_FILES, Resolved, Settings, changed_line, config_lines
from .results import Outcome, Results, TestResult, dumps, make_folder, write_output

if TYPE_CHECKING:
    from .catalog import OpEntry
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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def check_outputs(outputs: Mapping[str, Path | None]) -> None:
    """Before anything runs: two outputs at one path is a usage error (exit 2), a path that cannot
    be written (under a regular file, in a read-only directory) an output error (exit 6)."""
    seen: dict[str, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise UsageError(
                f"{seen[key]} and {flag} name the same file {path}", hint="give each its own path"
            )
        seen[key] = flag
    for flag, path in outputs.items():
        if path is None:
            continue
        try:
            if path.exists() and not path.is_file():
                if path.is_dir():
                    raise IsADirectoryError(21, "Is a directory")
                continue  # a special file (/dev/stdout, a pipe): written to as it is
            folder = Path(os.path.realpath(path)).parent
            make_folder(folder)
            probe, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
            os.close(probe)
            Path(name).unlink()
        except OSError as exc:
            raise OutputError(f"cannot write {flag} {path}: {_reason(exc)}") from None


Output = tuple[Path | None, Callable[[], str]]  # where, and what (rendered only when written)


def write_outputs(outputs: Sequence[Output]) -> tuple[list[str], list[str]]:
    """Write each output on its own: one failing (to render, or to write) never stops the others.

    Returns the paths written and the problems, one line each. A file an earlier run left where
    one could not be written is removed, so that nothing reads stale results as this run's.
    """
    written: list[str] = []
    problems: list[str] = []
    for path, render in outputs:
        if path is None:
            continue
        try:
            write_output(path, render())
        except Exception as exc:
            problem = f"cannot write {path}: {_reason(exc)}"
            if path.is_file():
                try:
                    path.unlink()
                    problem += " (the file an earlier run left there was removed)"
                except OSError:
                    problem += " (the file there is from an earlier run)"
            problems.append(problem)
        else:
            written.append(str(path))
    return written, problems


def result_outputs(results: Results, json_path: Path | None, junit_path: Path | None) -> list[Output]:
    from . import junit

    return [(json_path, lambda: dumps(results.to_json())), (junit_path, lambda: junit.to_xml(results))]


def run(resolved: Resolved, argv: Sequence[str]) -> int:
    from .session import Session

    settings = resolved.settings
    console = Console(settings.progress)
    check_outputs({"--json": settings.json, "--junit": settings.junit})
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
    if settings.upstream is None and settings.spec is None and not settings.op_modules:
        # nothing of the project's was found: say so, or a first run looks like it ignored the project
        console.info(
            f"no {SPEC_FILES[0]} (here or up to the repository root) or --op-modules: checking "
            f"PyTorch's own OpInfos ({counted(len(tests), 'test')})"
        )
    if not tests and session.failed is None:
        console.warning(_why_no_tests(settings))
    if session.failed is not None:
        console.info(session.failed.line(session.plan))
        if not session.failed.ids:
            return EXIT_OK  # nothing ran: the results that say so stay as they are
    changed = changed_line(resolved, "run")  # one line; every setting: gradci config
    if changed is not None:
        console.info(changed)
    with _sigterm_as_interrupt():
        # the heading first: a live bar started before it would be drawn over by it
        with console.group(f"gradci: running {counted(len(tests), 'test')}"):
            progress = console.progress(session.expected_durations())
            try:
                results, error = session.execute(progress.advance, progress.start, progress.tick)
            finally:
                progress.close()
        interrupted = results.run.interrupted
        if error is None and not interrupted:
            try:
                error = _rerun(session, results, console)
            except KeyboardInterrupt:
                interrupted = True  # every try that finished is kept
    written, problems = write_outputs(result_outputs(results, settings.json, settings.junit))
    print_summary(results, shown=console.shown)
    if written:
        console.info("results: " + ", ".join(written))
    _todos_left(settings, console)
    output_error = OutputError("; ".join(problems)) if problems else None
    if error is not None:
        if output_error is not None:
            console.error(str(output_error))
        raise error
    if output_error is not None:
        raise output_error
    if interrupted:
        return EXIT_INTERRUPTED
    return _verdict(session, results)


def _todos_left(settings: Settings, console: Console) -> None:
    """A spec from gradci init whose guesses are unchecked: a failure there may be the sample's."""
    from .init import TODO, todo_lines

    lines = todo_lines(settings.spec) if settings.spec is not None else []
    if lines:
        console.info(
            f"{settings.spec}: {counted(len(lines), 'line')} still marked '# {TODO.rstrip(':')}' "
            f"(line {', '.join(map(str, lines[:10]))}{', ...' if len(lines) > 10 else ''}): "
            "a failure of those ops may be the guessed sample's"
        )


def init(packages: Sequence[str], *, output: Path, force: bool, workflow: bool) -> int:
    """``gradci init``: a starting spec (and workflow) for the project's operators."""
    from .init import init as write_init

    return write_init(packages, output, force=force, workflow=workflow)


def _why_no_tests(settings: Settings) -> str:
    """One line on why a selection planned nothing (a run that checks nothing must not look green)."""
    from .checks import BY_NAME

    if all(BY_NAME[check].custom_ops_only for check in settings.checks):
        return (
            "no tests: opcheck runs only on torch.library custom ops (an operator outside aten, "
            "torch.ops.mylib.op), and none of the selected ops is one"
        )
    return "no tests: no selected op supports the selected checks and dtypes"


def show_config(resolved: Resolved) -> int:
    """``gradci config``: every setting as a line of .gradci.yml, with where its value comes from."""
    config = resolved.config
    lines = [
        f"# gradci {__version__} settings; later sources win: default < config file < GRADCI_* < flag",
        f"# config file: {config}"
        if config is not None
        else f"# config file: none ({' or '.join(CONFIG_FILES)}, or [tool.gradci] in pyproject.toml)",
        *config_lines(resolved),
    ]
    # values may come from a pull request's files: they start no workflow command in a log
    print("\n".join(escape_workflow_commands(line) for line in lines), flush=True)
    return EXIT_OK


def _rerun(session: Session, results: Results, console: Console) -> Exception | None:
    """--reruns: each failed or errored test again, in a fresh worker."""
    failing = sum(t.outcome in (Outcome.FAILED, Outcome.ERROR) for t in results.tests)
    if not failing or session.settings.reruns < 1:
        return None

    same = 0  # failed again as at first: printed in full already

    def report(previous: TestResult, latest: TestResult) -> None:
        nonlocal same
        if latest.outcome.failing:
            if latest.outcome is previous.outcome and headline(latest) == headline(previous):
                same += 1
            else:  # another failure than the first: new to the reader
                console.info(full_failure(latest) + "\n    (when re-run)")
                if console.mode != "none" and not console.github:
                    console.shown.add(latest.id)
        else:
            console.info(
                escape_workflow_commands(
                    f"FLAKY {latest.id} - {previous.outcome.value} at first ({headline(previous)}), "
                    f"{latest.outcome.value} when re-run"
                )
            )

    with console.group(f"gradci: re-running {failing} failing test(s), each in a fresh worker"):
        try:
            session.rerun_failures(results, report)
        except Exception as exc:  # every try that finished is kept; the error ends the run after
            return exc
        finally:
            if same:
                console.info(f"{counted(same, 'test')} failed again as at first (deterministic)")
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

    check_outputs({"--markdown": markdown, "--json": json_path})
    head = load(head_path)  # without head results there is nothing to report: exit 3 now
    base, problem = load_baseline(base_path)
    comparison = compare(base, head, baseline_problem=problem)
    _, problems = write_outputs(
        [
            (markdown, lambda: render(head, comparison, fmt="markdown", budget=max_chars)),
            (json_path, lambda: json.dumps(comparison.to_json(fail_on), indent=1) + "\n"),
        ]
    )
    print(escape_workflow_commands(render(head, comparison, fmt="text")), end="", flush=True)
    error = problem_error(comparison)
    if problems:
        output_error = OutputError("; ".join(problems))
        if error is None:
            raise output_error
        Console("plain").error(str(output_error))
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

    check_outputs({"--output": output})
    head = load(results_path)
    comparison: Comparison | None = None
    if baseline is not None:
        base, problem = load_baseline(baseline)
        comparison = compare(base, head, baseline_problem=problem)
    text = render(head, comparison, fmt=fmt, budget=max_chars, title=title)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        _, problems = write_outputs([(output, lambda: text)])
        if problems:
            raise OutputError(problems[0])
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
    from .merge import merge_files

    console = Console("plain")
    check_outputs({"--output": output, "--junit": junit_path})
    merged, warnings = merge_files(
        paths, allow_overlap=allow_overlap, allow_mixed=allow_mixed, command=list(argv)
    )
    for warning in warnings:
        console.warning(warning)
    written, problems = write_outputs(result_outputs(merged, output, junit_path))
    if written:
        print(f"merged {len(paths)} results files: {summary_line(merged)} -> {', '.join(written)}")
    if problems:
        raise OutputError("; ".join(problems))
    return EXIT_OK


def list_tests(settings: Settings) -> int:
    from .session import FailedSelection, make_plan, resolve_device

    device = settings.device if settings.device != "auto" else resolve_device("auto")
    for test_id in make_plan(settings, device, failed=FailedSelection.of(settings)).ids:
        print(test_id)
    return EXIT_OK


def list_ops(settings: Settings, *, verbose: bool = False) -> int:
    from .catalog import select
    from .session import load_entries

    entries = select(load_entries(settings), settings.ops, settings.exclude)
    if verbose:
        return _show_samples(settings, entries)
    for entry in entries:
        where = f"  {entry.location}" if entry.location else ""
        print(f"{entry.full_name}\t{entry.db}{where}")
    return EXIT_OK


def show_samples(settings: Settings, names: Sequence[str]) -> int:
    """``gradci samples OP...``: each op's sample inputs and the gradcheck settings of its tests.

    An OP is a name or a glob as ``--ops`` takes it; one that matches nothing is a SelectionError
    (exit 2) with the closest names."""
    from .catalog import select
    from .session import load_entries

    return _show_samples(settings, select(load_entries(settings), names, ()))


def _show_samples(settings: Settings, entries: Sequence[OpEntry]) -> int:
    from .samples import inspect_tests, render
    from .session import resolve_device

    device = resolve_device(settings.device)
    found = inspect_tests(entries, device=device, checks=settings.checks, dtypes=settings.dtypes)
    sys.stdout.write(render(entries, found, device))
    sys.stdout.flush()
    return EXIT_OK


class _SampleCount:
    """The samples a test's iterators hold (torch's iterator skips all but ``--sample``'s, silently)."""

    def __init__(self, wanted: int | None) -> None:
        self.wanted = wanted
        self.iterators = 0
        self.most = 0  # samples in the longest iterator
        self.found = False  # the wanted sample was among them

    def __call__(self, samples: object) -> None:
        self.iterators += 1
        pairs = getattr(samples, "child_iter", None)  # TrackedInputIter's enumerate of the samples
        if pairs is not None:
            samples.child_iter = self._count(pairs)  # type: ignore[attr-defined]

    def _count(self, pairs: Iterator[tuple[int, object]]) -> Iterator[tuple[int, object]]:
        for n, (index, value) in enumerate(pairs, 1):
            self.most = max(self.most, n)
            self.found = self.found or index == self.wanted
            yield index, value


_EN_DASH = "\u2013"


def _sample_range(count: int) -> str:
    if count == 0:
        return "no samples"
    indices = "0" if count == 1 else f"0{_EN_DASH}{count - 1}"
    return f"{counted(count, 'sample')} ({indices})"


def _close_ids(test_id: str, known: Sequence[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(test_id, known, n=3, cutoff=0.6)
    return "did you mean " + " or ".join(repr(c) for c in close) + "?" if close else None


def repro(settings: Settings, test_id: str, sample: int | None) -> int:
    """Re-run one test (optionally one sample) in this process, showing everything."""
    from .catalog import select
    from .checks import CHECK_NAMES
    from .plan import TestId, build_plan
    from .session import load_entries, resolve_device
    from .suite import build_test_classes, class_for
    from .worker import instrument, run_one

    if sample is not None and sample < 0:
        raise UsageError(f"--sample {sample}: expected a sample index, 0 or more")
    entries = load_entries(settings)
    try:
        parsed = TestId.parse(test_id)
    except SelectionError as exc:
        device = settings.device if settings.device != "auto" else "cpu"
        close = _close_ids(test_id, build_plan(entries, device=device, checks=CHECK_NAMES).ids)
        raise SelectionError(exc.message, hint=close or exc.hint) from None
    resolve_device(parsed.device)
    matching = [e for e in entries if e.formatted_name == parsed.op]
    plan = build_plan(
        select(matching, (), ()), device=parsed.device, checks=(parsed.check,), dtypes=(parsed.dtype,)
    )
    if parsed.name not in plan.ids:
        close = _close_ids(parsed.name, build_plan(entries, device=parsed.device, checks=CHECK_NAMES).ids)
        raise SelectionError(
            f"no test {parsed.name!r} among the configured ops",
            hint=close or "'gradci list' prints the known test ids",
        )
    planned = plan.tests[plan.ids.index(parsed.name)]
    cls = class_for(build_test_classes(parsed.device, plan.ops_by_method), parsed.name)
    assert cls is not None  # the plan has the test, so its class exists
    samples = _SampleCount(sample)
    instrument(samples)
    if sample is not None:
        # torch reads PYTORCH_OPINFO_SAMPLE_INPUT_INDEX once, at import, for every op (a spec's probe
        # of another op included): set only for this test, where its sample iterators read it.
        from torch.testing._internal.opinfo import core

        core.OPINFO_SAMPLE_INPUT_INDEX = sample
    print(
        f"gradci repro: {cls.__name__}.{parsed.name}"
        + (f", sample {sample} only" if sample is not None else ""),
        flush=True,
    )
    result = run_one(cls, parsed.name)
    if sample is not None and samples.iterators and not samples.found:
        raise SelectionError(
            f"--sample {sample}: {planned.op} has {_sample_range(samples.most)} in {parsed.name}",
            hint="without --sample every sample runs",
        )
    outcome = result["outcome"]
    print(f"outcome: {outcome.value}" + (f" - {result['message']}" if result["message"] else ""))
    if result.get("sample_index") is not None:
        print(f"sample input {result['sample_index']}: {result.get('sample')}")
    mismatch = result.get("mismatch")
    if mismatch is not None:
        print(f"mismatch: {mismatch}")
    if result.get("gradcheck") is not None:
        from .samples import settings_lines

        print(
            "\n".join(["gradcheck settings:", *(f"  {line}" for line in settings_lines(result["gradcheck"]))])
        )
    if result.get("traceback"):
        print(result["traceback"], file=sys.stderr)
    return EXIT_TESTS_FAILED if outcome.failing else EXIT_OK
