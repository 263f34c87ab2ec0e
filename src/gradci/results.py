"""The results model and its JSON form (schema ``gradci.results``, version 1).

The JSON Schema ships as ``gradci/schemas/results-v1.schema.json``; ``load`` checks the parts a
reader relies on and says precisely what is wrong with a file that does not fit.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .catalog import Location
from .errors import ResultsFileError

SCHEMA_NAME = "gradci.results"
SCHEMA_VERSION = 1


class Outcome(str, Enum):
    PASSED = "passed"
    FAILED = "failed"  # the check raised or asserted (pytest: failed)
    ERROR = "error"  # the worker crashed or timed out: gradci could not finish the test
    SKIPPED = "skipped"
    XFAILED = "xfailed"  # expected failure that failed (pytest: xfailed)
    XPASSED = "xpassed"  # expected failure that passed; unittest's "unexpected success" (pytest: failed)

    def __str__(self) -> str:
        return self.value

    @property
    def failing(self) -> bool:
        return self in FAILING


FAILING = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.XPASSED})
_FAILING_VALUES = frozenset(o.value for o in FAILING)
OUTCOME_ORDER = (
    Outcome.FAILED,
    Outcome.ERROR,
    Outcome.XPASSED,
    Outcome.PASSED,
    Outcome.SKIPPED,
    Outcome.XFAILED,
)


@dataclass
class Mismatch:
    """The numerical-vs-analytical disagreement gradcheck reported."""

    output: int  # index of the function output
    input: int  # index among the gradcheck inputs (tensors that require grad)
    input_label: str | None  # where that input sits in the sample: "input", "args[0]", "kwargs['alpha']"
    max_abs_error: float
    max_rel_error: float | None  # None where the numerical value is 0
    at: list[int]  # (input element, output element) of the Jacobian; fast mode: []
    numerical: str  # the values at that element
    analytical: str
    mode: str  # "slow" or "fast"
    slow_mode_max_diff: float | None = None  # fast mode recomputes the Jacobians in slow mode
    fast_mode_only: bool = False  # fast mode failed but slow mode passes
    imaginary_part: bool = False


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class
    id: str  # test_fn_grad_add_cpu_float64
    op: str  # add, div.trunc_rounding
    check: str  # grad, inplace-grad, gradgrad, fail-gradgrad, inplace-gradgrad
    device: str
    dtype: str
    outcome: Outcome
    duration: float
    db: str = "op_db"
    message: str = ""  # one line: the skip reason, the error
    sample_index: int | None = None
    sample: str | None = None  # summary of the sample input's tensors
    mismatch: Mismatch | None = None
    traceback: str | None = None
    output: str | None = None  # what the test printed (stdout and stderr)
    repro: str | None = None
    location: Location | None = None
    origin: str | None = None  # op module or spec a project's op came from
    attempts: list[dict[str, Any]] = field(default_factory=list)  # earlier tries of a re-run test

    @property
    def classname(self) -> str:
        return f"TestBwdGradients{self.device.upper()}"

    @property
    def flaky(self) -> bool:
        """Failed at first, then passed when re-run in a fresh worker (``--reruns``)."""
        return not self.outcome.failing and any(
            a.get("outcome") in _FAILING_VALUES for a in self.attempts if isinstance(a, dict)
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["classname"] = self.classname
        if self.flaky:
            data["flaky"] = True  # derived from attempts; written for readers of the file
        return {k: v for k, v in data.items() if v is not None and v != []}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TestResult:
        known = {k: v for k, v in data.items() if k in _TEST_FIELDS}
        known["outcome"] = Outcome(data["outcome"])
        if data.get("mismatch") is not None:
            known["mismatch"] = Mismatch(**data["mismatch"])
        if data.get("location") is not None:
            known["location"] = Location(**data["location"])
        return cls(**known)


_TEST_FIELDS = {f for f in TestResult.__dataclass_fields__}


@dataclass
class RunInfo:
    gradci_version: str
    torch_version: str
    torch_git_version: str | None
    python: str
    platform: str
    device: str  # cpu or cuda
    device_name: str | None
    cuda_version: str | None
    started_at: str  # ISO 8601, UTC
    finished_at: str | None = None
    duration: float | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    git_sha: str | None = None
    interrupted: bool = False
    merged_from: list[dict[str, Any]] = field(default_factory=list)  # the parts of ``gradci merge``
    first_result_after: float | None = None  # seconds from process start to the first test result
    worker_peak_rss_mib: float | None = None  # the largest resident set of any worker
    allocator: str | None = None  # malloc of the test processes: "system" or the preloaded library


@dataclass
class Results:
    run: RunInfo
    tests: list[TestResult]

    def counts(self) -> Counter[Outcome]:
        return Counter(t.outcome for t in self.tests)

    @property
    def failing(self) -> list[TestResult]:
        return [t for t in self.tests if t.outcome.failing]

    def summary(self) -> dict[str, int]:
        counts = self.counts()
        return {
            "total": len(self.tests),
            **{o.value: counts.get(o, 0) for o in Outcome},
            "flaky": sum(t.flaky for t in self.tests),
        }

    def to_json(self) -> dict[str, Any]:
        run = asdict(self.run)
        if not run["merged_from"]:
            del run["merged_from"]
        return {
            "schema": SCHEMA_NAME,
            "version": SCHEMA_VERSION,
            "run": run,
            "summary": self.summary(),
            "tests": [t.to_json() for t in sorted(self.tests, key=lambda t: t.id)],
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = "results") -> Results:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
            raise ResultsFileError(f"{source}: not a gradci results file")
        if data.get("version") != SCHEMA_VERSION:
            raise ResultsFileError(
                f"{source}: results schema version {data.get('version')!r}, this gradci reads version {SCHEMA_VERSION}",
                hint="produce both results with the same gradci release",
            )
        try:
            run_fields = {k: v for k, v in data["run"].items() if k in RunInfo.__dataclass_fields__}
            run = RunInfo(**run_fields)
            tests = [TestResult.from_json(t) for t in data["tests"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsFileError(f"{source}: malformed results ({type(exc).__name__}: {exc})") from None
        return cls(run, tests)

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n")


def load(path: Path) -> Results:
    """Read a results file, with one clear error for a missing, truncated or foreign file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot read results: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # A file cut inside a string ends in "Unterminated string": the end is missing too.
        cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        what = "truncated" if cut else "not valid JSON"
        raise ResultsFileError(f"{path}: {what} (line {exc.lineno}, column {exc.colno})") from None
    return Results.from_json(data, source=str(path))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so a reader never sees half a file."""
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).chmod(0o666 & ~_umask())  # mkstemp makes 0600; a results file is for everyone
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def durations_from(results: Iterable[TestResult]) -> dict[str, float]:
    return {t.id: t.duration for t in results if t.outcome is not Outcome.ERROR}
