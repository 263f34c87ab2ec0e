"""One gradci run from settings to results: catalog -> plan -> runner -> results.

Kept apart from ``cli.py`` (which only parses and dispatches) and from the output writers.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, allocator
from .catalog import OpEntry, load_op_module, load_upstream, select
from .console import counted, expected_durations
from .errors import ConfigError, DeviceError, ResultsFileError, SelectionError
from .options import Settings, project_root
from .plan import Plan, PlannedTest, apply_shard, build_plan, schedule
from .protocol import Finished
from .results import GradcheckRecord, Mismatch, Outcome, Results, RunInfo, TestResult, durations_from, load
from .runner import Runner, available_cores

if TYPE_CHECKING:
    from .suite import TestClasses


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cpu":
        return "cpu"
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise DeviceError(
            "--device cuda: torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})"
        )
    return "cuda" if has_cuda else "cpu"


def load_entries(settings: Settings, *, probe: bool = True) -> list[OpEntry]:
    """Every op the settings make available, before --ops/--exclude.

    ``probe`` runs each spec op once at load to reject bad dtypes and samples; a spawned worker
    rebuilding the plan skips it (the parent has already probed).
    """
    from .locate import torch_checkout

    checkout = torch_checkout(settings.torch_source)  # fork mode: the PyTorch checkout under test
    entries: list[OpEntry] = []
    project = project_root(Path.cwd()) if settings.op_modules else None
    for reference in settings.op_modules:
        entries.extend(load_op_module(reference, checkout=checkout, project=project))
    if settings.spec is not None:
        from .spec import load_spec

        entries.extend(load_spec(settings.spec, probe=probe))
    if settings.use_upstream:
        entries.extend(load_upstream(checkout=checkout))
    if not entries:
        raise SelectionError("no operators to check: upstream ops are off and no op module or spec is given")
    return entries


@dataclass(frozen=True)
class FailedSelection:
    """--failed-from / --last-failed: the tests that failed in earlier results."""

    path: Path
    flag: str
    ids: frozenset[str]  # failed, errored or passed unexpectedly: what the summary lists as failures

    @classmethod
    def of(cls, settings: Settings) -> FailedSelection | None:
        if settings.last_failed and settings.failed_from is not None:
            raise ConfigError("--failed-from and --last-failed both name results to rerun", hint="give one")
        if settings.last_failed:
            if settings.json is None:
                raise ConfigError("--last-failed reads the results --json names, and --json is off ('')")
            path, flag = settings.json, "--last-failed"
        elif settings.failed_from is not None:
            path, flag = settings.failed_from, "--failed-from"
        else:
            return None
        try:
            results = load(path)
        except ResultsFileError as exc:  # exit 3, as for every unusable results file
            raise ResultsFileError(f"{flag}: {exc.message}", hint=exc.hint) from None
        return cls(path, flag, frozenset(t.id for t in results.tests if t.outcome.failing))

    def apply(self, plan: Plan) -> Plan:
        chosen = plan.only(self.ids)
        if self.ids and not chosen.tests:
            raise SelectionError(
                f"{self.flag}: none of the {len(self.ids):,} failing tests in {self.path} is among the "
                "selected tests",
                hint="were they run with other --ops, --checks, --device or op modules?",
            )
        return chosen

    def line(self, plan: Plan) -> str:
        """What it selected, in one line."""
        if not self.ids:
            return f"{self.flag}: no test failed in {self.path}: nothing to run"
        left_out = len(self.ids) - len(plan.tests)
        return f"{self.flag}: running the {counted(len(plan.tests), 'test')} that failed in {self.path}" + (
            f" ({left_out:,} others that failed there are not selected now)" if left_out > 0 else ""
        )


def make_plan(
    settings: Settings,
    device: str,
    durations: dict[str, float] | None = None,
    *,
    probe: bool = True,
    failed: FailedSelection | None = None,
) -> Plan:
    entries = select(load_entries(settings, probe=probe), settings.ops, settings.exclude)
    plan = build_plan(entries, device=device, checks=settings.checks, dtypes=settings.dtypes)
    if failed is not None:  # before the shard: N jobs split what failed, as they split the suite
        plan = failed.apply(plan)
    return apply_shard(
        plan, settings.shard, durations if durations is not None else load_durations(settings, device)
    )


def load_durations(settings: Settings, device: str, baseline: Results | None = None) -> dict[str, float]:
    """Recorded test durations, for longest-first order and balanced shards.

    Shipped < ``baseline`` (base results, given only for the run order: every shard job must
    compute the same partition, with or without a base) < ``--durations``.
    """
    from .durations import shipped_durations

    durations = shipped_durations(device)
    if baseline is not None and baseline.run.device == device:
        durations.update(durations_from(baseline.tests))
    if settings.durations is not None:
        durations.update(durations_from(load(settings.durations).tests))
    return durations


@dataclass(frozen=True)
class ClassRecipe:
    """Builds the device test classes in a spawned worker (CUDA), from picklable settings."""

    settings: Settings
    device: str
    cwd: str

    def __call__(self) -> TestClasses:
        from .suite import build_test_classes

        os.chdir(self.cwd)
        plan = make_plan(self.settings, self.device, probe=False)
        return build_test_classes(self.device, plan.ops_by_method)


def repro_command(test: PlannedTest, settings: Settings, sample_index: int | None) -> str:
    words = ["gradci", "repro", test.id]
    if sample_index is not None:
        words += ["--sample", str(sample_index)]
    if test.origin is not None:
        if settings.spec is not None and test.origin == str(settings.spec):
            words += ["--spec", str(settings.spec)]
        else:
            words += ["--op-modules", test.origin]
    return shlex.join(words)


def _device_name(device: str) -> str | None:
    if device == "cuda":
        import torch

        return str(torch.cuda.get_device_name(0))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_sha() -> str | None:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up included), where /proc tells."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_info(settings: Settings, device: str, argv: Sequence[str]) -> RunInfo:
    import torch

    return RunInfo(
        gradci_version=__version__,
        torch_version=str(torch.__version__),
        torch_git_version=getattr(torch.version, "git_version", None),
        python=platform.python_version(),
        platform=platform.platform(),
        device=device,
        device_name=_device_name(device),
        cuda_version=torch.version.cuda if device == "cuda" else None,
        started_at=_now(),
        selection=selection_record(settings),
        command=list(argv),
        git_sha=_git_sha(),
        allocator=allocator.active(),
    )


def selection_record(settings: Settings) -> dict[str, Any]:
    return {
        "ops": list(settings.ops),
        "exclude": list(settings.exclude),
        "checks": list(settings.checks),
        "dtypes": list(settings.dtypes),
        "upstream": settings.use_upstream,
        "op_modules": list(settings.op_modules),
        "spec": str(settings.spec) if settings.spec else None,
        "shard": str(settings.shard) if settings.shard else None,
    }


@dataclass
class Session:
    """A planned run: what to execute and how; ``execute`` runs it."""

    settings: Settings
    device: str
    plan: Plan
    durations: dict[str, float]
    argv: Sequence[str]
    baseline: Results | None = None  # --baseline, when it could be read
    baseline_problem: str | None = None  # why --baseline cannot be used
    failed: FailedSelection | None = None  # --failed-from, --last-failed
    _builder: Callable[[], Any] | None = field(default=None, init=False, repr=False)

    @classmethod
    def prepare(cls, settings: Settings, argv: Sequence[str]) -> Session:
        from .compare import load_baseline

        device = resolve_device(settings.device)
        failed = FailedSelection.of(settings)
        plan = make_plan(settings, device, load_durations(settings, device), failed=failed)
        baseline, problem = (None, None) if settings.baseline is None else load_baseline(settings.baseline)
        durations = load_durations(settings, device, baseline)
        return cls(settings, device, plan, durations, argv, baseline, problem, failed)

    def expected_durations(self) -> dict[str, float]:
        """Each planned test's expected seconds: what the progress and its ETA weigh."""
        from .checks import UPSTREAM_DBS

        return expected_durations(((t.id, t.db in UPSTREAM_DBS) for t in self.plan.tests), self.durations)

    def workers_and_threads(self) -> tuple[int, int]:
        cores = available_cores()
        workers = self.settings.workers or cores
        workers = max(1, min(workers, len(self.plan.tests) or 1))
        threads = self.settings.threads or max(1, cores // workers)
        return workers, threads

    def start_method(self) -> str:
        # CUDA cannot be used in a forked child; on CPU, forking skips re-importing torch.
        return os.environ.get("GRADCI_START_METHOD") or ("spawn" if self.device == "cuda" else "fork")

    def make_result(self, test: PlannedTest, finished: Finished, output: str | None) -> TestResult:
        result = TestResult(
            id=test.id,
            op=test.op,
            check=test.check,
            device=test.device,
            dtype=test.dtype,
            outcome=Outcome(finished.outcome),
            duration=round(float(finished.duration), 6),
            db=test.db,
            message=finished.message,
            sample_index=finished.sample_index,
            sample=finished.sample,
            mismatch=_mismatch(finished.mismatch),
            traceback=finished.traceback,
            gradcheck=_gradcheck(finished.gradcheck),
            output=output,
            location=test.location,
            derivative=test.derivative,
            origin=test.origin,
        )
        if result.outcome.failing:
            result.repro = repro_command(test, self.settings, result.sample_index)
        return result

    def execute(
        self,
        on_result: Callable[[TestResult], None] = lambda r: None,
        on_start: Callable[[str], None] = lambda test_id: None,
        on_tick: Callable[[], None] | None = None,
    ) -> tuple[Results, Exception | None]:
        """Run the plan. Interrupted or aborted, it still returns what finished, and the error: a
        ``GradciError``, or any other exception (a bug), for the caller to raise once the results
        are written."""
        info = run_info(self.settings, self.device, self.argv)
        workers, threads = self.workers_and_threads()
        info.workers, info.threads_per_worker = workers, threads
        results: list[TestResult] = []

        def collect(result: TestResult) -> None:
            if not results:
                info.first_result_after = process_age()
            results.append(result)  # kept here too, so an interrupted run keeps what finished
            on_result(result)

        runner = self._runner(collect, workers, on_start=on_start, on_tick=on_tick)
        started = time.monotonic()
        error: Exception | None = None
        try:
            runner.run(schedule(self.plan.tests, self.durations))
        except KeyboardInterrupt:
            info.interrupted = True
        except Exception as exc:  # a GradciError, or a bug: what finished is kept either way
            info.interrupted, error = True, exc
        finally:
            runner.close()
            info.finished_at = _now()
            info.duration = round(time.monotonic() - started, 3)
            info.worker_peak_rss_mib = round(runner.peak_rss_kib / 1024, 1) or None
        return Results(info, results), error

    def builder(self) -> Callable[[], Any]:
        """What a worker calls for its test classes: built here once for forked workers."""
        if self._builder is None:
            if self.start_method() == "fork":
                from .suite import build_test_classes

                built = build_test_classes(self.device, self.plan.ops_by_method)
                self._builder = lambda: built  # inherited by the forked workers
            else:
                self._builder = ClassRecipe(self.settings, self.device, str(Path.cwd()))
        return self._builder

    def _runner(
        self,
        on_result: Callable[[TestResult], None],
        workers: int,
        tests_per_worker: int | None = None,
        *,
        on_start: Callable[[str], None] = lambda test_id: None,
        on_tick: Callable[[], None] | None = None,
    ) -> Runner:
        return Runner(
            on_start=on_start,
            on_tick=on_tick,
            build=self.builder(),
            workers=workers,
            threads=self.workers_and_threads()[1],
            timeout=self.settings.timeout,
            start_method=self.start_method(),
            on_result=on_result,
            make_result=self.make_result,
            tests_per_worker=tests_per_worker,
            max_restarts=self.settings.max_worker_restart,
        )

    def rerun_failures(
        self, results: Results, on_result: Callable[[TestResult, TestResult], None] = lambda old, new: None
    ) -> list[PlannedTest]:
        """Re-run each failed or errored test, each in a fresh worker, up to ``--reruns`` times.

        A test that passes on a re-run replaces its failure and is flaky; every earlier try stays in
        its ``attempts``. ``on_result(previous, latest)`` sees each re-run as it finishes.
        Ctrl-C propagates; the results keep every try that finished. Returns the tests re-run.
        """
        planned = {t.id: t for t in self.plan.tests}
        rerun: list[PlannedTest] = []
        index = {r.id: i for i, r in enumerate(results.tests)}  # a re-run replaces its test in place

        def merge(latest: TestResult) -> None:
            previous = results.tests[index[latest.id]]
            latest.attempts = [*previous.attempts, attempt_record(previous, latest)]
            results.tests[index[latest.id]] = latest
            on_result(previous, latest)

        started = time.monotonic()
        try:
            for _ in range(self.settings.reruns):
                failing = [r.id for r in results.tests if r.outcome in _RERUN and r.id in planned]
                if not failing:
                    break
                tests = [planned[i] for i in failing]
                rerun.extend(t for t in tests if t not in rerun)
                runner = self._runner(merge, min(self.workers_and_threads()[0], len(tests)), 1)
                try:
                    runner.run(schedule(tests, self.durations))
                finally:
                    runner.close()
        finally:
            results.run.finished_at = _now()
            results.run.duration = round((results.run.duration or 0.0) + time.monotonic() - started, 3)
        return rerun


def _mismatch(data: dict[str, Any] | None) -> Mismatch | None:
    """A worker's mismatch, checked like one read from a file; unreadable ones are dropped (the
    failure's message and traceback still say what gradcheck found)."""
    if data is None:
        return None
    try:
        return TestResult.from_json(
            {
                "id": "",
                "op": "",
                "check": "",
                "device": "",
                "dtype": "",
                "outcome": "failed",
                "duration": 0,
                "mismatch": data,
            }
        ).mismatch
    except ResultsFileError:
        return None


def _gradcheck(data: dict[str, Any] | None) -> GradcheckRecord | None:
    """A worker's gradcheck settings, checked like those read from a file; unreadable ones dropped."""
    if data is None:
        return None
    base = {"id": "", "op": "", "check": "", "device": "", "dtype": "", "outcome": "passed", "duration": 0}
    try:
        return TestResult.from_json({**base, "gradcheck": data}).gradcheck
    except ResultsFileError:
        return None


_RERUN = frozenset({Outcome.FAILED, Outcome.ERROR})  # xpassed is a stale marker, not bad luck
# What an earlier try keeps: enough to see why it failed, without repeating what the last try says.
_ATTEMPT_KEYS = ("outcome", "duration", "message", "sample_index", "sample", "mismatch")


def attempt_record(previous: TestResult, latest: TestResult) -> dict[str, Any]:
    data = previous.to_json()
    record = {k: data[k] for k in _ATTEMPT_KEYS if k in data}
    for key in ("traceback", "output"):
        value = getattr(previous, key)
        if value and value != getattr(latest, key):
            record[key] = value
    return record
