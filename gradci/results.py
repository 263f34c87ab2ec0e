"""The results model and its JSON form (schema ``gradci.results``, version 2; version 1 is read too).

The JSON Schema ships as ``gradci/schemas/results-v2.schema.json``. The file is strict JSON: a
non-finite number (a NaN gradient's error) is written as the string ``"NaN"``, ``"Infinity"`` or
``"-Infinity"`` (version 2; version 1 had no way to). ``load`` checks every field a reader relies on
and says precisely what is wrong with a file that does not fit: missing, truncated, foreign,
hostile (bare ``NaN`` tokens, nesting deeper than any results file, a field of the wrong type).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .checks import suite_of
from .errors import ResultsFileError
from .locate import Derivative, Location

SCHEMA_NAME = "gradci.results"
SCHEMA_VERSION = 2  # 2: non-finite numbers as "NaN", "Infinity", "-Infinity"
READABLE_VERSIONS = (1, 2)


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
class GradcheckSet:
    """One distinct set of settings a test passed to gradcheck or gradgradcheck."""

    function: str  # "gradcheck" or "gradgradcheck"
    calls: int  # how many calls received exactly these settings
    first_sample: int | None  # the sample input of the first such call
    settings: dict[str, bool | int | float | str | None]  # each keyword, gradcheck's defaults filled in


@dataclass
class GradcheckRecord:
    """What a test passed to gradcheck/gradgradcheck, observed in the worker (samples.py)."""

    calls: int
    sets: list[GradcheckSet]  # distinct settings, in the order first seen
    sets_left_out: int = 0  # calls whose settings were past the MAX_SETS distinct sets kept


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
    location: Location | None = None  # where the OpInfo is constructed (or the spec entry)
    derivative: Derivative | None = None  # fork mode: the op's entry of tools/autograd/derivatives.yaml
    origin: str | None = None  # op module or spec a project's op came from
    attempts: list[dict[str, Any]] = field(default_factory=list)  # earlier tries of a re-run test
    gradcheck: GradcheckRecord | None = None  # the settings gradcheck ran with (absent: it never ran)

    @property
    def classname(self) -> str:
        return suite_of(self.check).class_name(self.device)

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
        data["location"] = self.location.to_json() if self.location else None
        if self.gradcheck is not None and not self.gradcheck.sets_left_out:
            del data["gradcheck"]["sets_left_out"]  # written only where some were left out
        if self.flaky:
            data["flaky"] = True  # derived from attempts; written for readers of the file
        return {k: v for k, v in data.items() if v is not None and v != []}

    @classmethod
    def from_json(cls, data: Any, *, where: str = "test") -> TestResult:
        """A result from its JSON form, every field checked (``ResultsFileError`` names the first bad one)."""
        return _read_test(data, where)


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
        """Results from parsed JSON, every field checked: ``ResultsFileError`` (exit 3) names the first
        bad one. Reads schema versions 1 and 2."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
            raise ResultsFileError(f"{source}: not a gradci results file")
        version = data.get("version")
        if type(version) is not int or version not in READABLE_VERSIONS:
            raise ResultsFileError(
                f"{source}: results schema version {_shown(version)}, this gradci reads versions "
                + ", ".join(map(str, READABLE_VERSIONS)),
                hint="produce both results with the same gradci release",
            )
        try:
            run = _read_run(_required(data, "run", "results"))
            tests = _required(data, "tests", "results")
            if not isinstance(tests, list):
                raise _Bad("tests", "a list", tests)
            return cls(run, [_read_test(t, f"tests[{i}]") for i, t in enumerate(tests)])
        except _Bad as bad:
            raise ResultsFileError(f"{source}: malformed results: {bad}") from None

    def save(self, path: Path) -> None:
        write_output(path, dumps(self.to_json()))


# --- the JSON text ---------------------------------------------------------------------------------

NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
MAX_FILE_BYTES = 512 * 1024 * 1024  # a full suite with every test failing is ~100 MB


def portable(value: Any) -> Any:
    """``value`` with every non-finite float as the string JSON readers agree on (as protobuf's JSON
    mapping does: "NaN", "Infinity", "-Infinity"); strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    return value


def dumps(data: Any) -> str:
    """Strict JSON (no bare NaN or Infinity tokens), one result per line or so, newline at the end."""
    return json.dumps(portable(data), indent=1, allow_nan=False) + "\n"


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value")


def parse(text: str | bytes, source: str) -> Any:
    """Strict JSON: ``ResultsFileError`` for anything else, including what Python's json would let
    through (``NaN``, ``Infinity``) or cannot handle (nesting deeper than its recursion limit)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsFileError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        # A file cut inside a string ends in "Unterminated string": the end is missing too.
        cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        what = "truncated" if cut else "not valid JSON"
        raise ResultsFileError(f"{source}: {what} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise ResultsFileError(f"{source}: not strict JSON: {exc}") from None
    except RecursionError:
        raise ResultsFileError(f"{source}: not a gradci results file (nested too deeply)") from None


def load(path: Path) -> Results:
    """Read a results file, with one clear error for a missing, truncated, foreign or hostile file."""
    try:
        with Path(path).open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:  # say so before reading it
                raise ResultsFileError(f"{path}: larger than gradci reads ({MAX_FILE_BYTES // 2**20} MiB)")
            data = handle.read(MAX_FILE_BYTES + 1)  # a pipe has no size to ask
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such results file") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot read results: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ResultsFileError(f"{path}: larger than gradci reads ({MAX_FILE_BYTES // 2**20} MiB)")
    return Results.from_json(parse(data, str(path)), source=str(path))


# --- reading, field by field -----------------------------------------------------------------------
# Hand-written rather than jsonschema: the same checks in ~1/40 of the time (a full suite's results
# validate in 20 ms, not 0.8 s), and messages that name the field. The JSON Schema documents the
# format and the tests hold the files gradci writes to it.


class _Bad(Exception):
    """A field that does not fit: ``where`` (``tests[12].duration``), and what was expected."""

    def __init__(self, where: str, expected: str | None = None, got: Any = None) -> None:
        super().__init__(
            f"{where}: missing" if expected is None else f"{where}: expected {expected}, got {_shown(got)}"
        )


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _required(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise _Bad(key if where == "results" else f"{where}.{key}")
    return data[key]


def _string(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Bad(where, "a string", value)
    return value


def _integer(value: Any, where: str, *, minimum: int = 0, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if type(value) is not int or value < minimum:
        raise _Bad(where, f"an integer >= {minimum}", value)
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(where, "true or false", value)
    return value


def _seconds(value: Any, where: str, *, optional: bool = False) -> float | None:
    """A finite number of seconds, 0 or more."""
    if value is None and optional:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise _Bad(where, "a finite number of seconds >= 0", value)
    return float(value)


def _measure(value: Any, where: str, *, optional: bool = False) -> float | None:
    """A number that may be non-finite (a mismatch's error): NaN and infinities as strings."""
    if value is None and optional:
        return None
    if isinstance(value, str) and value in NONFINITE:
        return NONFINITE[value]
    if type(value) not in (int, float):
        raise _Bad(where, 'a number, "NaN", "Infinity" or "-Infinity"', value)
    return float(value)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise _Bad(where, "a list of strings", value)
    return [str(_string(v, f"{where}[{i}]")) for i, v in enumerate(value)]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(where, "an object", value)
    return value


def _outcome(value: Any, where: str) -> Outcome:
    if not isinstance(value, str) or value not in _OUTCOME_VALUES:
        raise _Bad(where, "one of " + ", ".join(sorted(_OUTCOME_VALUES)), value)
    return Outcome(value)


_OUTCOME_VALUES = frozenset(o.value for o in Outcome)


def _read_mismatch(data: Any, where: str) -> Mismatch:
    d = _object(data, where)
    mode = _string(_required(d, "mode", where), f"{where}.mode")
    if mode not in ("slow", "fast"):
        raise _Bad(f"{where}.mode", "slow or fast", mode)
    at = d.get("at", [])
    if not isinstance(at, list):
        raise _Bad(f"{where}.at", "a list of integers", at)
    return Mismatch(
        output=int(_integer(_required(d, "output", where), f"{where}.output") or 0),
        input=int(_integer(_required(d, "input", where), f"{where}.input") or 0),
        input_label=_string(d.get("input_label"), f"{where}.input_label", optional=True),
        max_abs_error=float(_measure(_required(d, "max_abs_error", where), f"{where}.max_abs_error") or 0.0),
        max_rel_error=_measure(d.get("max_rel_error"), f"{where}.max_rel_error", optional=True),
        at=[int(_integer(v, f"{where}.at[{i}]") or 0) for i, v in enumerate(at)],
        numerical=str(_string(d.get("numerical", ""), f"{where}.numerical")),
        analytical=str(_string(d.get("analytical", ""), f"{where}.analytical")),
        mode=mode,
        slow_mode_max_diff=_measure(
            d.get("slow_mode_max_diff"), f"{where}.slow_mode_max_diff", optional=True
        ),
        fast_mode_only=_boolean(d.get("fast_mode_only", False), f"{where}.fast_mode_only"),
        imaginary_part=_boolean(d.get("imaginary_part", False), f"{where}.imaginary_part"),
    )


_SETTING_TYPES = (bool, int, float, str, type(None))
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SETS = 16  # distinct settings kept per test; torch's helpers use one or two


def _read_gradcheck(data: Any, where: str) -> GradcheckRecord:
    d = _object(data, where)
    sets_data = _required(d, "sets", where)
    if not isinstance(sets_data, list):
        raise _Bad(f"{where}.sets", "a list", sets_data)
    sets = []
    for i, item in enumerate(sets_data):
        at = f"{where}.sets[{i}]"
        s = _object(item, at)
        function = _string(_required(s, "function", at), f"{at}.function")
        if function not in ("gradcheck", "gradgradcheck"):
            raise _Bad(f"{at}.function", "gradcheck or gradgradcheck", function)
        settings = _object(_required(s, "settings", at), f"{at}.settings")
        for key, value in settings.items():
            # a number may be non-finite (written as a string): accepted as text
            if not _SETTING_NAME.fullmatch(key) or not isinstance(value, _SETTING_TYPES):
                raise _Bad(f"{at}.settings.{key}", "a true/false, number, string or null", value)
        sets.append(
            GradcheckSet(
                function=function,
                calls=int(_integer(_required(s, "calls", at), f"{at}.calls", minimum=1) or 1),
                first_sample=_integer(s.get("first_sample"), f"{at}.first_sample", optional=True),
                settings=dict(settings),
            )
        )
    return GradcheckRecord(
        calls=int(_integer(_required(d, "calls", where), f"{where}.calls") or 0),
        sets=sets,
        sets_left_out=int(_integer(d.get("sets_left_out", 0), f"{where}.sets_left_out") or 0),
    )


def _read_attempt(data: Any, where: str) -> dict[str, Any]:
    """An earlier try: kept as a dict (the fields of a result that say why it failed), checked."""
    d = _object(data, where)
    attempt: dict[str, Any] = {
        "outcome": _outcome(_required(d, "outcome", where), f"{where}.outcome").value,
        "duration": _seconds(_required(d, "duration", where), f"{where}.duration"),
    }
    for key in ("message", "sample", "traceback", "output"):
        if d.get(key) is not None:
            attempt[key] = _string(d[key], f"{where}.{key}")
    if d.get("sample_index") is not None:
        attempt["sample_index"] = _integer(d["sample_index"], f"{where}.sample_index")
    if d.get("mismatch") is not None:
        attempt["mismatch"] = asdict(_read_mismatch(d["mismatch"], f"{where}.mismatch"))
    return attempt


def _read_test(data: Any, where: str) -> TestResult:
    d = _object(data, where)
    mismatch = d.get("mismatch")
    location = d.get("location")
    if location is not None:
        loc = _object(location, f"{where}.location")
        location = Location(
            str(_string(_required(loc, "file", f"{where}.location"), f"{where}.location.file")),
            int(_integer(_required(loc, "line", f"{where}.location"), f"{where}.location.line") or 0),
            _string(loc.get("relative_to"), f"{where}.location.relative_to", optional=True),
        )
    derivative = d.get("derivative")
    if derivative is not None:
        at = f"{where}.derivative"
        der = _object(derivative, at)
        derivative = Derivative(
            str(_string(_required(der, "file", at), f"{at}.file")),
            int(_integer(_required(der, "line", at), f"{at}.line") or 0),
            str(_string(_required(der, "name", at), f"{at}.name")),
        )
    attempts = d.get("attempts", [])
    if not isinstance(attempts, list):
        raise _Bad(f"{where}.attempts", "a list", attempts)

    def text(key: str, *, required: bool = False) -> Any:
        value = _required(d, key, where) if required else d.get(key)
        return _string(value, f"{where}.{key}", optional=not required)

    return TestResult(
        id=text("id", required=True),
        op=text("op", required=True),
        check=text("check", required=True),
        device=text("device", required=True),
        dtype=text("dtype", required=True),
        outcome=_outcome(_required(d, "outcome", where), f"{where}.outcome"),
        duration=float(_seconds(_required(d, "duration", where), f"{where}.duration") or 0.0),
        db=text("db") or "op_db",
        message=text("message") or "",
        sample_index=_integer(d.get("sample_index"), f"{where}.sample_index", optional=True),
        sample=text("sample"),
        mismatch=None if mismatch is None else _read_mismatch(mismatch, f"{where}.mismatch"),
        traceback=text("traceback"),
        output=text("output"),
        repro=text("repro"),
        location=location,
        derivative=derivative,
        origin=text("origin"),
        attempts=[_read_attempt(a, f"{where}.attempts[{i}]") for i, a in enumerate(attempts)],
        gradcheck=None
        if d.get("gradcheck") is None
        else _read_gradcheck(d["gradcheck"], f"{where}.gradcheck"),
    )


_SELECTION_LISTS = ("ops", "exclude", "checks", "dtypes", "op_modules")


def _read_run(data: Any) -> RunInfo:
    d = _object(data, "run")
    where = "run"

    def text(key: str, *, required: bool = False) -> Any:
        value = _required(d, key, where) if required else d.get(key)
        return _string(value, f"{where}.{key}", optional=not required)

    selection = dict(_object(d.get("selection", {}), "run.selection"))
    for key in _SELECTION_LISTS:
        if key in selection:
            selection[key] = _strings(selection[key], f"run.selection.{key}")
    for key in ("spec", "shard"):
        _string(selection.get(key), f"run.selection.{key}", optional=True)
    if selection.get("upstream") is not None:
        _boolean(selection["upstream"], "run.selection.upstream")
    merged = d.get("merged_from", [])
    if not isinstance(merged, list):
        raise _Bad("run.merged_from", "a list", merged)
    for i, part in enumerate(merged):
        _object(part, f"run.merged_from[{i}]")
    device = text("device", required=True)
    return RunInfo(
        gradci_version=text("gradci_version", required=True),
        torch_version=text("torch_version", required=True),
        torch_git_version=text("torch_git_version"),
        python=text("python") or "",
        platform=text("platform") or "",
        device=device,
        device_name=text("device_name"),
        cuda_version=text("cuda_version"),
        started_at=text("started_at", required=True),
        finished_at=text("finished_at"),
        duration=_seconds(d.get("duration"), "run.duration", optional=True),
        workers=_integer(d.get("workers"), "run.workers", minimum=1, optional=True),
        threads_per_worker=_integer(
            d.get("threads_per_worker"), "run.threads_per_worker", minimum=1, optional=True
        ),
        selection=selection,
        command=_strings(d.get("command", []), "run.command"),
        git_sha=text("git_sha"),
        interrupted=_boolean(d.get("interrupted", False), "run.interrupted"),
        merged_from=list(merged),
        first_result_after=_seconds(d.get("first_result_after"), "run.first_result_after", optional=True),
        worker_peak_rss_mib=_seconds(d.get("worker_peak_rss_mib"), "run.worker_peak_rss_mib", optional=True),
        allocator=text("allocator"),
    )


# --- writing ---------------------------------------------------------------------------------------


def write_output(path: Path, text: str) -> None:
    """Write an output file: a regular file is replaced in one step, so a reader never sees half a
    file; an existing special file (``/dev/stdout``, a pipe from ``>(...)``) is written to, not
    replaced. A symbolic link is followed, as ``open`` would."""
    path = Path(path)
    if path.exists() and not path.is_file():  # follows /dev/stdout to a terminal, pipe or file
        with path.open("w", encoding="utf-8") as handle:
            handle.write(text)
        return
    write_atomic(Path(os.path.realpath(path)), text)


def make_folder(folder: Path) -> None:
    """``mkdir -p``, with the error a person expects when a part of the path is a file."""
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(part))
            break
    folder.mkdir(parents=True, exist_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so a reader never sees half a file."""
    path = Path(path)
    if path.parent != Path():
        make_folder(path.parent)
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
