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
import unittest
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .catalog import OpEntry, load_op_module, load_upstream, select
from .errors import DeviceError, GradciError, SelectionError
from .options import Settings
from .plan import Plan, PlannedTest, apply_shard, build_plan, schedule
from .results import Results, RunInfo, TestResult, durations_from, load
from .runner import Runner, available_cores


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


def load_entries(settings: Settings) -> list[OpEntry]:
    """Every op the settings make available, before --ops/--exclude."""
    entries: list[OpEntry] = []
    for reference in settings.op_modules:
        entries.extend(load_op_module(reference))
    if settings.use_upstream:
        entries.extend(load_upstream())
    if not entries:
        raise SelectionError("no operators to check: upstream ops are off and no op module or spec is given")
    return entries


def make_plan(settings: Settings, device: str, durations: dict[str, float] | None = None) -> Plan:
    entries = select(load_entries(settings), settings.ops, settings.exclude)
    plan = build_plan(entries, device=device, checks=settings.checks, dtypes=settings.dtypes)
    return apply_shard(
        plan, settings.shard, durations if durations is not None else load_durations(settings, device)
    )


def load_durations(settings: Settings, device: str) -> dict[str, float]:
    """Recorded test durations, for longest-first order and balanced shards."""
    from .durations import shipped_durations

    durations = shipped_durations(device)
    if settings.durations is not None:
        durations.update(durations_from(load(settings.durations).tests))
    return durations


@dataclass(frozen=True)
class ClassRecipe:
    """Builds the device test class in a spawned worker (CUDA), from picklable settings."""

    settings: Settings
    device: str
    cwd: str

    def __call__(self) -> type[unittest.TestCase]:
        from .suite import build_test_class

        os.chdir(self.cwd)
        plan = make_plan(self.settings, self.device)
        return build_test_class(self.device, plan.ops_by_method)


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

    @classmethod
    def prepare(cls, settings: Settings, argv: Sequence[str]) -> Session:
        device = resolve_device(settings.device)
        durations = load_durations(settings, device)
        plan = make_plan(settings, device, durations)
        return cls(settings, device, plan, durations, argv)

    def workers_and_threads(self) -> tuple[int, int]:
        cores = available_cores()
        workers = self.settings.workers or cores
        workers = max(1, min(workers, len(self.plan.tests) or 1))
        threads = self.settings.threads or max(1, cores // workers)
        return workers, threads

    def start_method(self) -> str:
        # CUDA cannot be used in a forked child; on CPU, forking skips re-importing torch.
        return os.environ.get("GRADCI_START_METHOD") or ("spawn" if self.device == "cuda" else "fork")

    def make_result(self, test: PlannedTest, payload: dict[str, Any]) -> TestResult:
        result = TestResult(
            id=test.id,
            op=test.op,
            check=test.check,
            device=test.device,
            dtype=test.dtype,
            outcome=payload["outcome"],
            duration=round(float(payload["duration"]), 6),
            db=test.db,
            message=payload.get("message", ""),
            sample_index=payload.get("sample_index"),
            sample=payload.get("sample"),
            mismatch=payload.get("mismatch"),
            traceback=payload.get("traceback"),
            output=payload.get("output"),
            location=test.location,
            origin=test.origin,
        )
        if result.outcome.failing:
            result.repro = repro_command(test, self.settings, result.sample_index)
        return result

    def execute(
        self, on_result: Callable[[TestResult], None] = lambda r: None
    ) -> tuple[Results, GradciError | None]:
        """Run the plan. Interrupted or aborted, it still returns what finished, and the error."""
        from .suite import build_test_class

        info = run_info(self.settings, self.device, self.argv)
        workers, threads = self.workers_and_threads()
        info.workers, info.threads_per_worker = workers, threads
        method = self.start_method()
        if method == "fork":
            built = build_test_class(self.device, self.plan.ops_by_method)
            build: Callable[[], Any] = lambda: built  # noqa: E731 - inherited by the forked worker
        else:
            build = ClassRecipe(self.settings, self.device, str(Path.cwd()))
        results: list[TestResult] = []

        def collect(result: TestResult) -> None:
            results.append(result)  # kept here too, so an interrupted run keeps what finished
            on_result(result)

        runner = Runner(
            build=build,
            workers=workers,
            threads=threads,
            timeout=self.settings.timeout,
            start_method=method,
            on_result=collect,
            make_result=self.make_result,
        )
        started = time.monotonic()
        error: GradciError | None = None
        try:
            runner.run(schedule(self.plan.tests, self.durations))
        except KeyboardInterrupt:
            info.interrupted = True
        except GradciError as exc:
            info.interrupted, error = True, exc
        finally:
            runner.close()
            info.finished_at = _now()
            info.duration = round(time.monotonic() - started, 3)
        return Results(info, results), error
