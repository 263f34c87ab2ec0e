"""Worker processes: one test at a time each, longest first, crash- and timeout-isolated.

A worker that segfaults, aborts, exits, hangs past the timeout or garbles its channel costs only
the test it was running: that test is reported as ``error`` (with the signal, "timed out after
N s", or what was wrong with the channel, and the worker's last output), the worker is replaced and
the run goes on. Workers that die before running a test (a crash in their setup) are replaced at
most ``max_restarts`` times in all (pytest-xdist's ``--max-worker-restart``); then the run ends
with ``WorkerStartError`` (exit 7), keeping every result that finished.

The loop never waits on one worker: messages are read without blocking (``protocol.Channel``), and
a worker told to stop is reaped when it exits, or killed after ``STOP_GRACE`` seconds, while the
others go on.

On CPU, workers are forked from the parent after it imported torch and the op databases, so a
worker starts in milliseconds. CUDA does not survive a fork, so on CUDA workers are spawned and
build their test class themselves.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from .console import counted
from .errors import WorkerStartError
from .failure import drop_module_list, last_words
from .plan import PlannedTest
from .protocol import Channel, Fatal, Finished, Message, ProtocolError, Ready, Run, Stop
from .results import Outcome, TestResult
from .worker import WorkerConfig, worker_main

_SETUP_TIMEOUT = 600.0  # a spawned worker imports torch and the op databases first
MAX_OUTPUT = 32_000  # characters of a test's output kept (the end: where a crash speaks)
_LOG_RESET = 16 * 1024 * 1024  # a worker's log is emptied between tests once it is this large
STOP_GRACE = 5.0  # seconds a stopped worker has to exit before it is killed
RESTARTS_PER_WORKER = 4  # pytest-xdist's default for --max-worker-restart
TICK = 1.0  # seconds: how often the progress hears from the loop while a long test runs


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_max_restarts(workers: int) -> int:
    return RESTARTS_PER_WORKER * max(1, workers)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection  # owns the descriptor the channel reads
    channel: Channel
    log_path: Path
    ready: bool = False
    current: PlannedTest | None = None
    started: float = 0.0
    log_offset: int = 0
    spawned_at: float = field(default_factory=time.monotonic)
    done: int = 0  # tests finished
    stop_deadline: float | None = None  # told to stop: killed if still alive then
    poisoned: bool = False  # its last test left the process unusable (CUDA): it exits by itself


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker crashed with {_signal_name(code)}"
    return f"worker exited with code {code}"


class Runner:
    def __init__(
        self,
        *,
        build: Callable[[], Any],
        workers: int,
        threads: int,
        timeout: float,
        start_method: str = "fork",
        on_result: Callable[[TestResult], None] = lambda result: None,
        on_start: Callable[[str], None] = lambda test_id: None,
        on_tick: Callable[[], None] | None = None,
        make_result: Callable[[PlannedTest, Finished, str | None], TestResult],
        tests_per_worker: int | None = None,
        max_restarts: int | None = None,
    ) -> None:
        self.build = build
        self.workers = max(1, workers)
        self.threads = threads
        self.timeout = timeout
        self.context: Any = multiprocessing.get_context(start_method)
        self.on_result = on_result
        self.on_start = on_start  # a test was handed to a worker (the progress shows it running)
        self.on_tick = on_tick  # called at least every TICK seconds while tests run
        self.make_result = make_result
        self.tests_per_worker = tests_per_worker  # 1: every test in a fresh worker (re-runs)
        self.max_restarts = default_max_restarts(self.workers) if max_restarts is None else max_restarts
        self._tmp = Path(tempfile.mkdtemp(prefix="gradci-workers-"))
        self._serial = 0
        self._failed_starts = 0  # workers that died without finishing or losing a test
        self._retiring: list[_Worker] = []
        self._pool: list[_Worker] = []  # the workers serving tests
        self.peak_rss_kib = 0  # the largest resident set any worker reported

    # -- workers --------------------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        self._serial += 1
        log_path = self._tmp / f"worker-{self._serial}.log"
        log_path.touch()
        key = secrets.token_hex(16)
        parent_conn, child_conn = self.context.Pipe()
        inherited = tuple(w.conn.fileno() for w in [*self._pool, *self._retiring] if not w.conn.closed)
        config = WorkerConfig(
            threads=self.threads,
            log_path=log_path,
            build=self.build,
            key=key,
            inherited=(*inherited, parent_conn.fileno()) if self.context.get_start_method() == "fork" else (),
        )
        process = self.context.Process(
            target=worker_main, args=(child_conn, config), daemon=True, name=f"gradci-worker-{self._serial}"
        )
        process.start()
        child_conn.close()
        os.set_blocking(parent_conn.fileno(), False)
        return _Worker(process, parent_conn, Channel(parent_conn.fileno(), key), log_path)

    def _retire(self, worker: _Worker) -> None:
        """Ask a worker to stop, without waiting for it: the loop reaps it (or kills it later)."""
        try:
            worker.channel.send(Stop())
        except OSError:
            worker.process.kill()
        worker.stop_deadline = time.monotonic() + STOP_GRACE
        self._retiring.append(worker)

    def _reap(self, *, final: bool = False) -> None:
        """Close the retired workers that exited; kill those past their grace (all, if final)."""
        now = time.monotonic()
        for worker in list(self._retiring):
            deadline = worker.stop_deadline or now
            if worker.process.is_alive() and (final or now >= deadline):
                worker.process.kill()
            if not worker.process.is_alive():
                worker.process.join(timeout=1)
                worker.conn.close()
                self._retiring.remove(worker)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)  # SIGKILL: prompt, unless the kernel holds the process
        worker.conn.close()

    def _read_output(self, worker: _Worker) -> str | None:
        """What the worker printed since its test started: the last ``MAX_OUTPUT`` characters."""
        try:
            with worker.log_path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                start = max(worker.log_offset, size - 4 * MAX_OUTPUT)  # at most 4 bytes a character
                handle.seek(start)
                data = handle.read()
        except OSError:
            return None
        if not data.strip():
            return None
        # a crash's list of loaded modules says nothing about it, and would crowd out what does
        text = drop_module_list(data.decode("utf-8", errors="replace"))
        cut = (start - worker.log_offset) + max(0, len(text) - MAX_OUTPUT)
        if len(text) > MAX_OUTPUT:
            text = text[-MAX_OUTPUT:]
        if cut > 0:
            text = f"[... {cut:,} earlier bytes cut]\n" + text
        return text

    def _dispatch(self, worker: _Worker, test: PlannedTest) -> bool:
        worker.current = test
        worker.started = time.monotonic()
        try:
            size = worker.log_path.stat().st_size
            if size > _LOG_RESET:  # the worker is idle: nothing writes to it but a stray thread
                os.truncate(worker.log_path, 0)
                size = 0
            worker.log_offset = size
            worker.channel.send(Run(test.id))
        except OSError:
            return False
        self.on_start(test.id)
        return True

    def _finish(self, worker: _Worker, finished: Finished, results: list[TestResult]) -> None:
        assert worker.current is not None
        test = worker.current
        worker.current = None
        worker.done += 1
        worker.poisoned = finished.poisoned
        failing = finished.outcome in (Outcome.FAILED, Outcome.XPASSED, Outcome.ERROR)
        output = self._read_output(worker) if failing else None
        self.peak_rss_kib = max(self.peak_rss_kib, finished.max_rss_kib)
        result = self.make_result(test, finished, output)
        results.append(result)
        self.on_result(result)

    def _lost(self, worker: _Worker, reason: str, results: list[TestResult]) -> None:
        """The worker died, hung or garbled its channel while running its test: an error."""
        assert worker.current is not None
        duration = time.monotonic() - worker.started
        lost = Finished(worker.current.id, Outcome.ERROR.value, duration, reason)
        self._finish(worker, lost, results)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, tests: Sequence[PlannedTest]) -> list[TestResult]:
        """Run ``tests`` in this order across the workers; return results as they finished."""
        pending = deque(tests)
        results: list[TestResult] = []
        pool = self._pool
        for _ in range(min(self.workers, len(pending))):
            pool.append(self._start_worker())
        try:
            while pool:
                waitables: list[Any] = [w.conn for w in pool] + [w.process.sentinel for w in pool]
                waitables += [w.process.sentinel for w in self._retiring]
                timeout = self._until_next_deadline(pool)
                if self.on_tick is not None:
                    timeout = TICK if timeout is None else min(timeout, TICK)
                ready = set(wait(waitables, timeout=timeout))
                if self.on_tick is not None:
                    self.on_tick()
                self._reap()
                for worker in list(pool):
                    if not self._service(worker, ready, results):
                        pool.remove(worker)
                        if pending:
                            pool.append(self._start_worker())
                        continue
                    if not worker.ready or worker.current is not None:
                        continue
                    used_up = self.tests_per_worker is not None and worker.done >= self.tests_per_worker
                    if used_up or worker.poisoned:
                        pool.remove(worker)
                        self._retire(worker)
                        if pending:
                            pool.append(self._start_worker())
                    elif pending:
                        test = pending.popleft()
                        if not self._dispatch(worker, test):
                            self._lost(worker, "worker stopped reading its channel", results)
                            pool.remove(worker)
                            self._kill(worker)
                            if pending:
                                pool.append(self._start_worker())
                    else:
                        pool.remove(worker)
                        self._retire(worker)
        finally:
            for worker in pool:
                self._kill(worker)
            self._reap(final=True)
        return results

    def _until_next_deadline(self, pool: list[_Worker]) -> float | None:
        deadlines = [w.started + self.timeout for w in pool if w.current is not None]
        deadlines += [w.spawned_at + _SETUP_TIMEOUT for w in pool if not w.ready]
        deadlines += [w.stop_deadline for w in self._retiring if w.stop_deadline is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _receive(self, worker: _Worker, results: list[TestResult]) -> str | None:
        """Handle what the worker said; the reason it must go (closed, garbled), or None."""
        try:
            messages: list[Message] = worker.channel.poll()
        except EOFError:
            return "closed"
        except ProtocolError as exc:
            return f"worker sent something gradci cannot read ({exc}): did the test write to a descriptor it does not own?"
        for message in messages:
            if isinstance(message, Ready) and not worker.ready:
                worker.ready = True
            elif (
                isinstance(message, Finished)
                and worker.current is not None
                and message.test_id == worker.current.id
            ):
                self._finish(worker, message, results)
            elif isinstance(message, Fatal) and not worker.ready:
                self._kill(worker)
                raise WorkerStartError(f"a worker could not start: {message.message}")
            else:
                return f"worker sent an unexpected {message.kind} message"
        return None

    def _service(self, worker: _Worker, ready: set[Any], results: list[TestResult]) -> bool:
        """Handle what the worker said or did; False when it is gone (its test accounted for)."""
        exited = worker.process.sentinel in ready
        # An exiting worker's last message may still be in the channel: read it first.
        problem = self._receive(worker, results) if exited or worker.conn in ready else None
        if exited or problem is not None:
            if problem is None or problem == "closed":
                worker.process.join(timeout=1)  # the channel closes as the process exits
                alive = worker.process.is_alive()
                reason = "worker closed its channel" if alive else _exit_reason(worker.process.exitcode)
            else:
                reason = problem
            self._kill(worker)
            if worker.current is not None:
                self._lost(worker, reason, results)
            elif not worker.poisoned:  # a poisoned worker exits after its test, as it should
                self._failed_start(worker, reason)
            return False
        if worker.current is not None and time.monotonic() - worker.started > self.timeout:
            self._kill(worker)
            self._lost(worker, f"timed out after {self.timeout:g} s", results)
            return False
        if not worker.ready and time.monotonic() - worker.spawned_at > _SETUP_TIMEOUT:
            self._kill(worker)
            raise WorkerStartError(
                f"a worker did not start within {_SETUP_TIMEOUT:g} s", details=self._last_words(worker)
            )
        return True

    def _failed_start(self, worker: _Worker, reason: str) -> None:
        """A worker gone without a test to show for it: replaced, up to ``max_restarts`` times."""
        self._failed_starts += 1
        if self._failed_starts > self.max_restarts:
            when = "before it was ready" if not worker.ready else "between tests"
            raise WorkerStartError(
                f"workers keep dying without running a test: {self._failed_starts} of them, the last "
                f"{when} ({reason}); gave up after {counted(self.max_restarts, 'replacement')} "
                "(--max-worker-restart; a module the tests import may crash or exit in child "
                "processes)",
                details=self._last_words(worker),
            )

    def _last_words(self, worker: _Worker) -> str:
        worker.log_offset = 0
        output = self._read_output(worker)
        if not output:
            return "nothing in its log (what a fork hook prints goes to gradci's own output)"
        # a crash: the fatal error, the frames of what crashed (not gradci's), what it printed before
        return last_words(output) or "nothing in its log but blank lines"

    def close(self) -> None:
        for path in self._tmp.glob("*"):
            path.unlink(missing_ok=True)
        self._tmp.rmdir()
