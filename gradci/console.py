"""How gradci talks to people while it runs: a live progress bar on a terminal, plain periodic lines
in a log, and GitHub Actions log groups when ``GITHUB_ACTIONS=true``. All of it goes to stderr;
stdout carries only what commands print as their output (ids, the final summary, reports).

Text from tests (op names, messages, repro commands) passes ``escape_workflow_commands`` always,
so that it cannot issue workflow commands in a log (github/workflow_commands.py). A reader that goes
away (``gradci run | head``) silences that stream; the run goes on and writes its results.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Protocol

from .failure import earlier_tries, headline
from .github.workflow_commands import end_group, escape_workflow_commands, start_group
from .results import OUTCOME_ORDER, Outcome, Results, TestResult

_PLAIN_INTERVAL = 15.0  # seconds between progress lines in a log


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def silence(stream: IO[str]) -> None:
    """Send what is still written to ``stream`` to /dev/null: its reader has gone."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def emit(text: str, stream: IO[str]) -> None:
    """One line to ``stream``, flushed; nothing, once the reader of a pipe has gone."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        silence(stream)


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def describe_failure(test: TestResult) -> str:
    """One line: the test and why it failed (``failure.headline``, as the JUnit message says it)."""
    label = "XPASS" if test.outcome is Outcome.XPASSED else test.outcome.value.upper()
    return escape_workflow_commands(f"{label} {test.id} - {headline(test)}")


class Progress(Protocol):
    def advance(self, result: TestResult) -> None: ...

    def close(self) -> None: ...


class _Counts:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.failing = 0
        self.started = time.monotonic()

    def add(self, result: TestResult) -> None:
        self.done += 1
        self.failing += result.outcome.failing

    def eta(self) -> float | None:
        elapsed = time.monotonic() - self.started
        if not self.done or self.done >= self.total:
            return None
        return elapsed / self.done * (self.total - self.done)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        percent = 100 * self.done // max(self.total, 1)
        eta = self.eta()
        return (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {percent:3d}% | {self.failing} failing | "
            f"{_clock(elapsed)} elapsed" + (f" | ETA {_clock(eta)}" if eta is not None else "")
        )


class PlainProgress:
    """A line every few seconds, and one per failure as it happens."""

    def __init__(self, total: int, stream: IO[str], interval: float = _PLAIN_INTERVAL) -> None:
        self.counts = _Counts(total)
        self.stream = stream
        self.interval = interval
        self.last = time.monotonic()

    def advance(self, result: TestResult) -> None:
        self.counts.add(result)
        if result.outcome.failing:
            emit(describe_failure(result), self.stream)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            emit(self.counts.line(), self.stream)

    def close(self) -> None:
        emit(self.counts.line(), self.stream)


class RichProgress:
    """A live bar: done/total, failures so far, elapsed, ETA; failures scroll above it."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.counts = _Counts(total)
        self.progress = Progress(
            TextColumn("[bold]gradci"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failing]} failing"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self.task = self.progress.add_task("tests", total=total, failing=0)
        self.progress.start()

    def advance(self, result: TestResult) -> None:
        self.counts.add(result)
        if result.outcome.failing:
            self.progress.console.print(describe_failure(result), markup=False, highlight=False)
        self.progress.update(self.task, advance=1, failing=self.counts.failing)

    def close(self) -> None:
        self.progress.stop()


class NoProgress:
    def advance(self, result: TestResult) -> None:
        pass

    def close(self) -> None:
        pass


class Console:
    def __init__(self, mode: str = "auto", stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.github = in_github_actions()
        if mode == "auto":
            mode = "rich" if self.stream.isatty() and not self.github else "plain"
        self.mode = mode

    def info(self, message: str) -> None:
        if self.mode != "none":
            emit(escape_workflow_commands(message), self.stream)

    def warning(self, message: str) -> None:
        emit(escape_workflow_commands(f"gradci: warning: {message}"), self.stream)

    def error(self, message: str) -> None:
        """An error besides the one the command ends with (which ``cli.main`` prints)."""
        print(escape_workflow_commands(f"gradci: error: {message}"), file=self.stream, flush=True)

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        """A foldable section in a GitHub Actions log; a heading elsewhere."""
        if self.github:
            with contextlib.suppress(BrokenPipeError):
                start_group(title, self.stream)
        elif self.mode != "none":
            emit(escape_workflow_commands(title), self.stream)
        try:
            yield
        finally:
            if self.github:
                with contextlib.suppress(BrokenPipeError):
                    end_group(self.stream)

    def progress(self, total: int) -> Progress:
        if self.mode == "rich":
            return RichProgress(total, self.stream)
        if self.mode == "plain":
            return PlainProgress(total, self.stream)
        return NoProgress()


def counted(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def workers_and_threads(workers: int, threads: int) -> str:
    return f"{counted(workers, 'worker')} x {counted(threads, 'thread')}"


def summary_line(results: Results) -> str:
    counts = results.counts()
    words = [f"{counts[o]} {o.value}" for o in OUTCOME_ORDER if counts.get(o)]
    flaky = sum(t.flaky for t in results.tests)
    if flaky:
        words.append(f"{flaky} flaky")
    text = ", ".join(words) or "no tests ran"
    duration = results.run.duration or 0.0
    how = ""
    if results.run.workers:
        how = f" ({workers_and_threads(results.run.workers, results.run.threads_per_worker or 1)})"
    interrupted = " (interrupted)" if results.run.interrupted else ""
    return f"{text} in {duration:.1f}s{how}{interrupted}"


def print_summary(results: Results, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    lines = []
    failing = sorted(results.failing, key=lambda t: t.id)
    if failing:
        lines.append("failures:")
        for test in failing:
            lines.append("  " + describe_failure(test))
            if test.repro:
                lines.append(escape_workflow_commands(f"      repro: {test.repro}"))
    flaky = sorted((t for t in results.tests if t.flaky), key=lambda t: t.id)
    if flaky:
        lines.append("flaky (failed, then passed when re-run):")
        for test in flaky:
            first = next(t for t in earlier_tries(test) if t.outcome.failing)
            lines.append(
                escape_workflow_commands(
                    f"  FLAKY {test.id} - first try {first.outcome.value}: {headline(first)}"
                )
            )
    lines.append(escape_workflow_commands(f"== {summary_line(results)} =="))
    emit("\n".join(lines), stream)
