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
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import IO, Protocol

from .failure import details, earlier_tries, headline
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


def full_failure(test: TestResult) -> str:
    """The failure as printed once, when it happens: its line, then the lines to act on (sample,
    mismatch, a crash's last words, the repro command), indented."""
    more = details(test)
    lines = [describe_failure(test)] + ["    " + line for line in more.splitlines() if line.strip()]
    return escape_workflow_commands("\n".join(lines))


UNKNOWN_UPSTREAM = 0.01  # s: an upstream test with no recorded duration was skipped when recorded
UNKNOWN_OWN = 0.25  # s: a project's test never recorded: a small gradcheck


def expected_durations(tests: Iterable[tuple[str, bool]], recorded: Mapping[str, float]) -> dict[str, float]:
    """Each test's expected seconds, by id: recorded (shipped, --baseline, --durations), else a
    default; ``tests`` are (id, upstream) pairs. The progress and its ETA are weighted by them."""
    return {
        test_id: max(recorded.get(test_id, UNKNOWN_UPSTREAM if upstream else UNKNOWN_OWN), 0.001)
        for test_id, upstream in tests
    }


class Progress(Protocol):
    def start(self, test_id: str) -> None: ...

    def advance(self, result: TestResult) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...


def _running_text(running: Mapping[str, float], now: float, width: int = 60) -> str:
    """The tests running now, longest-running first: 'test_x (12s), +2 more'."""
    if not running:
        return ""
    order = sorted(running, key=lambda test_id: running[test_id])
    first = escape_workflow_commands(order[0]).replace("\n", " ")
    if len(first) > width:
        first = first[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"
    text = f"{first} ({_clock(now - running[order[0]])})"
    return text + (f", +{len(order) - 1} more" if len(order) > 1 else "")


class _Counts:
    """Done and expected work: tests, and seconds of expected duration (what % and ETA count)."""

    def __init__(self, expected: Mapping[str, float]) -> None:
        self.expected = dict(expected)
        self.total = len(self.expected)
        self.total_weight = sum(self.expected.values()) or 1.0
        self.done = 0
        self.done_weight = 0.0
        self.failing = 0
        self.running: dict[str, float] = {}  # test id -> when it started
        self.started = time.monotonic()

    def start(self, test_id: str) -> None:
        self.running[test_id] = time.monotonic()

    def add(self, result: TestResult) -> None:
        self.running.pop(result.id, None)
        self.done += 1
        self.done_weight += self.expected.get(result.id, UNKNOWN_OWN)
        self.failing += result.outcome.failing

    def fraction(self, now: float) -> float:
        """Of the expected time, how much is done: finished tests, and the running ones so far
        (at most nine tenths of what each is expected to take)."""
        running = sum(
            min(now - since, 0.9 * self.expected.get(test_id, UNKNOWN_OWN))
            for test_id, since in self.running.items()
        )
        return min(1.0, (self.done_weight + running) / self.total_weight)

    def eta(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        fraction = self.fraction(now)
        if self.done >= self.total or fraction <= 0 or elapsed < 1.0:
            return None
        return elapsed * (1 - fraction) / fraction

    def line(self) -> str:
        now = time.monotonic()
        percent = int(100 * self.fraction(now)) if self.done < self.total else 100
        eta = self.eta(now)
        running = _running_text(self.running, now)
        return (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {percent:3d}% | {self.failing} failing | "
            f"{_clock(now - self.started)} elapsed"
            + (f" | ETA {_clock(eta)}" if eta is not None else "")
            + (f" | running {running}" if running else "")
        )


class PlainProgress:
    """A line every few seconds (also while a long test runs), and each failure in full as it
    happens. For logs: nothing is redrawn."""

    def __init__(
        self,
        expected: Mapping[str, float],
        stream: IO[str],
        interval: float = _PLAIN_INTERVAL,
        shown: set[str] | None = None,
    ) -> None:
        self.counts = _Counts(expected)
        self.stream = stream
        self.interval = interval
        self.last = time.monotonic()
        self.shown = shown if shown is not None else set()

    def start(self, test_id: str) -> None:
        self.counts.start(test_id)

    def advance(self, result: TestResult) -> None:
        self.counts.add(result)
        if result.outcome.failing:
            emit(full_failure(result), self.stream)
            self.shown.add(result.id)
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            emit(self.counts.line(), self.stream)

    def close(self) -> None:
        emit(self.counts.line(), self.stream)


class RichProgress:
    """A live bar: tests done/total, % and ETA of the expected time, failures so far, elapsed, the
    test(s) running; failures scroll above it, in full."""

    def __init__(self, expected: Mapping[str, float], stream: IO[str], shown: set[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.counts = _Counts(expected)
        self.shown = shown if shown is not None else set()
        self.progress = Progress(
            TextColumn("[bold]gradci"),
            BarColumn(bar_width=20),  # room for the running test on 80 columns
            TextColumn("{task.fields[tests]}"),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("[red]{task.fields[failing]} failing"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[running]}", markup=False),
            console=Console(file=stream),
            transient=True,
        )
        # the bar counts expected seconds (in thousandths): its % is that of the expected time
        self.task = self.progress.add_task(
            "tests",
            total=round(self.counts.total_weight * 1000),
            tests=self._tests(),
            failing=0,
            eta="-:--:--",
            running="",
        )
        self.progress.start()

    def _tests(self) -> str:
        return f"{self.counts.done}/{self.counts.total}"

    def start(self, test_id: str) -> None:
        self.counts.start(test_id)
        self.tick()

    def advance(self, result: TestResult) -> None:
        self.counts.add(result)
        if result.outcome.failing:
            self.progress.console.print(full_failure(result), markup=False, highlight=False)
            self.shown.add(result.id)
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        eta = self.counts.eta(now)
        self.progress.update(
            self.task,
            completed=round(self.counts.fraction(now) * self.counts.total_weight * 1000),
            tests=self._tests(),
            failing=self.counts.failing,
            eta=_clock(eta) if eta is not None else "-:--:--",
            running=_running_text(self.counts.running, now, width=32),
        )

    def close(self) -> None:
        self.progress.stop()


class NoProgress:
    def start(self, test_id: str) -> None:
        pass

    def advance(self, result: TestResult) -> None:
        pass

    def tick(self) -> None:
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
        self.shown: set[str] = set()  # test ids whose failure was printed in full, in view

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

    def progress(self, expected: Mapping[str, float]) -> Progress:
        """The display of a run of these tests (id -> expected seconds). The failures it prints in
        full outside a folded log group go into ``shown``: the summary then names them in a line."""
        shown = set() if self.github else self.shown
        if self.mode == "rich":
            return RichProgress(expected, self.stream, shown)
        if self.mode == "plain":
            return PlainProgress(expected, self.stream, shown=shown)
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


_SKIP_REASONS = 3  # the most common reasons named; the rest counted together
_REASON_CHARS = 100


def skip_line(results: Results) -> str | None:
    """The skipped tests by reason, most common first: "3,338 skipped: 2,901 'Skipped! Dtype is
    not in supported backward dtypes!', ..."."""
    reasons = Counter(
        (t.message.strip().splitlines() or [""])[0] for t in results.tests if t.outcome is Outcome.SKIPPED
    )
    if not reasons:
        return None
    top = reasons.most_common(_SKIP_REASONS)
    # repr: one line, quoted, whatever the op's message holds
    words = [
        f"{n:,} {reason[:_REASON_CHARS]!r}" if reason else f"{n:,} without a reason" for reason, n in top
    ]
    rest = sum(reasons.values()) - sum(n for _, n in top)
    if rest:
        words.append(f"{rest:,} for {counted(len(reasons) - len(top), 'other reason')}")
    return f"{sum(reasons.values()):,} skipped: " + ", ".join(words)


def print_summary(
    results: Results, stream: IO[str] | None = None, shown: Collection[str] = frozenset()
) -> None:
    """The end of a run: each failure in a line (with its repro command unless its full text is
    ``shown`` above), flaky tests, the skip reasons, the counts."""
    stream = stream or sys.stdout
    lines = []
    failing = sorted(results.failing, key=lambda t: t.id)
    if failing:
        lines.append("failures:" if not any(t.id in shown for t in failing) else "failures (in full above):")
        for test in failing:
            lines.append("  " + describe_failure(test))
            if test.repro and test.id not in shown:
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
    skipped = skip_line(results)
    if skipped is not None:
        lines.append(escape_workflow_commands(skipped))
    lines.append(escape_workflow_commands(f"== {summary_line(results)} =="))
    emit("\n".join(lines), stream)
