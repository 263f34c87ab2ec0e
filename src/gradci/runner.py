"""Worker processes: one test at a time each, longest first, crash- and timeout-isolated.

A worker that segfaults, aborts, exits or hangs past the timeout costs only the test it was running:
that test is reported as ``error`` (with the signal, or "timed out after N s", and the worker's
last output), the worker is replaced and the run goes on.

On CPU, workers are forked from the parent after it imported torch and the op databases, so a
worker starts in milliseconds. CUDA does not survive a fork, so on CUDA workers are spawned and
build their test class themselves.
"""

from __future__ import annotations

import multiprocessing
import os
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

from .errors import GradciError
from .plan import PlannedTest
from .results import Outcome, TestResult
from .worker import WorkerConfig, worker_main

_SETUP_TIMEOUT = 600.0  # a spawned worker imports torch and the op databases first
_MAX_OUTPUT = 32_000


class WorkerSetupError(GradciError):
    """A worker could not even build the test class (bad op module in a spawned worker, say)."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    log_path: Path
    ready: bool = False
    current: PlannedTest | None = None
    started: float = 0.0
    log_offset: int = 0
    spawned_at: float = field(default_factory=time.monotonic)
    done: int = 0  # tests finished


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


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
        make_result: Callable[[PlannedTest, dict[str, Any]], TestResult],
        tests_per_worker: int | None = None,
    ) -> None:
        self.build = build
        self.workers = max(1, workers)
        self.threads = threads
        self.timeout = timeout
        self.context: Any = multiprocessing.get_context(start_method)
        self.on_result = on_result
        self.make_result = make_result
        self.tests_per_worker = tests_per_worker  # 1: every test in a fresh worker (re-runs)
        self._tmp = Path(tempfile.mkdtemp(prefix="gradci-workers-"))
        self._serial = 0
        self.peak_rss_kib = 0  # the largest resident set any worker reported

    # -- workers --------------------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        self._serial += 1
        log_path = self._tmp / f"worker-{self._serial}.log"
        log_path.touch()
        parent_conn, child_conn = self.context.Pipe()
        config = WorkerConfig(threads=self.threads, log_path=log_path, build=self.build)
        process = self.context.Process(
            target=worker_main, args=(child_conn, config), daemon=True, name=f"gradci-worker-{self._serial}"
        )
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn, log_path)

    @staticmethod
    def _stop(worker: _Worker, *, kill: bool = False) -> None:
        if worker.process.is_alive():
            if kill:
                worker.process.kill()
            else:
                try:
                    worker.conn.send(("stop",))
                except (BrokenPipeError, OSError):
                    worker.process.kill()
        worker.process.join(timeout=10)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()

    def _read_output(self, worker: _Worker) -> str | None:
        try:
            with worker.log_path.open("rb") as handle:
                handle.seek(worker.log_offset)
                data = handle.read()
        except OSError:
            return None
        if not data.strip():
            return None
        text = data.decode("utf-8", errors="replace")
        if len(text) > _MAX_OUTPUT:  # keep the end: that is where a crash speaks
            text = f"[... {len(text) - _MAX_OUTPUT} characters cut]\n" + text[-_MAX_OUTPUT:]
        return text

    def _dispatch(self, worker: _Worker, test: PlannedTest) -> None:
        worker.current = test
        worker.started = time.monotonic()
        worker.log_offset = worker.log_path.stat().st_size
        worker.conn.send(("run", test.id))

    def _finish(self, worker: _Worker, payload: dict[str, Any], results: list[TestResult]) -> None:
        assert worker.current is not None
        test = worker.current
        worker.current = None
        worker.done += 1
        if payload["outcome"] in (Outcome.FAILED, Outcome.XPASSED, Outcome.ERROR):
            payload.setdefault("output", self._read_output(worker))
        payload.pop("poisoned", None)
        self.peak_rss_kib = max(self.peak_rss_kib, payload.pop("max_rss_kib", 0))
        result = self.make_result(test, payload)
        results.append(result)
        self.on_result(result)

    def _lost(self, worker: _Worker, reason: str, results: list[TestResult]) -> None:
        """The worker died or was killed while running its test: that test is an error."""
        duration = time.monotonic() - worker.started
        self._finish(worker, {"outcome": Outcome.ERROR, "duration": duration, "message": reason}, results)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, tests: Sequence[PlannedTest]) -> list[TestResult]:
        """Run ``tests`` in this order across the workers; return results as they finished."""
        pending = deque(tests)
        results: list[TestResult] = []
        pool = [self._start_worker() for _ in range(min(self.workers, len(pending)))]
        try:
            while pool:
                waitables: list[Any] = [w.conn for w in pool] + [w.process.sentinel for w in pool]
                ready = set(wait(waitables, timeout=self._until_next_deadline(pool)))
                for worker in list(pool):
                    if not self._service(worker, ready, results):
                        pool.remove(worker)
                        if pending:
                            pool.append(self._start_worker())
                    elif worker.ready and worker.current is None:
                        if self.tests_per_worker is not None and worker.done >= self.tests_per_worker:
                            pool.remove(worker)
                            self._stop(worker)
                            if pending:
                                pool.append(self._start_worker())
                        elif pending:
                            self._dispatch(worker, pending.popleft())
                        else:
                            pool.remove(worker)
                            self._stop(worker)
        finally:
            for worker in pool:
                self._stop(worker, kill=True)
        return results

    def _until_next_deadline(self, pool: list[_Worker]) -> float | None:
        deadlines = [w.started + self.timeout for w in pool if w.current is not None]
        deadlines += [w.spawned_at + _SETUP_TIMEOUT for w in pool if not w.ready]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _service(self, worker: _Worker, ready: set[Any], results: list[TestResult]) -> bool:
        """Handle what the worker said or did; False when it is gone (its test accounted for)."""
        dead = False
        if worker.conn in ready:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                dead = True
            else:
                if message[0] == "ready":
                    worker.ready = True
                elif message[0] == "result":
                    self._finish(worker, message[2], results)
                elif message[0] == "fatal":
                    self._stop(worker, kill=True)
                    raise WorkerSetupError(f"a worker could not start: {message[1]}")
        if dead or (worker.process.sentinel in ready and not worker.process.is_alive()):
            worker.process.join(timeout=5)
            if worker.current is not None:
                code = worker.process.exitcode
                reason = (
                    f"worker crashed with {_signal_name(code)}"
                    if code is not None and code < 0
                    else f"worker exited with code {code}"
                )
                self._lost(worker, reason, results)
            self._stop(worker, kill=True)
            return False
        if worker.current is not None and time.monotonic() - worker.started > self.timeout:
            self._stop(worker, kill=True)
            self._lost(worker, f"timed out after {self.timeout:g} s", results)
            return False
        if not worker.ready and time.monotonic() - worker.spawned_at > _SETUP_TIMEOUT:
            raise WorkerSetupError(f"a worker did not start within {_SETUP_TIMEOUT:g} s")
        return True

    def close(self) -> None:
        for path in self._tmp.glob("*"):
            path.unlink(missing_ok=True)
        self._tmp.rmdir()
