"""What a test checks: its sample inputs and the settings it passes to gradcheck.

One mechanism serves both ``gradci samples`` (and ``gradci ops -v``) and the results: a recorder
wrapped around ``torch.autograd.gradcheck`` and ``gradgradcheck``, which torch's
``TestGradients._check_helper`` calls (through ``common_utils.gradcheck``, which fills in its own
defaults). gradci decides no setting itself: the OpInfo's fields, torch's helpers, gradci's suite
(``suite.py``: the forward checks' batched flag, a project's toleranceOverride) decide, and the
recorder sees the outcome of all of them, as gradcheck receives it.

* In a worker the recorder passes each call on and the settings go into the test's result
  (``Recorder.to_json``: each distinct set with its count and first sample).
* ``gradci samples`` runs the very same test methods in this process with the calls *not* passed
  on (a dry run: the op is not differentiated), so what it shows is what a run would use, with the
  samples the tests draw (they are seeded per test, as upstream seeds them).

Importing this module imports no torch; the functions that need it import it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import unittest
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .checks import BY_NAME, CHECK_NAMES, DTYPE_NAMES
from .github.workflow_commands import escape_workflow_commands
from .results import MAX_SETS

if TYPE_CHECKING:
    from .catalog import OpEntry

FUNCTIONS = ("gradcheck", "gradgradcheck")
Setting = bool | int | float | str | None


# --- the recorder ----------------------------------------------------------------------------------


def _scalar(value: Any) -> Setting:
    """A setting as JSON can hold it; anything else (never seen from torch's helpers) as its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return printable(repr(value))[:100]


class Recorder:
    """The settings of each gradcheck/gradgradcheck call of one test, per distinct set."""

    def __init__(self, sample_index: Callable[[], int | None]) -> None:
        self._sample_index = sample_index  # the sample the test is on (the sample observer knows)
        self.calls = 0
        self.sets: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.left_out = 0

    def reset(self) -> None:
        self.calls, self.left_out = 0, 0
        self.sets = {}

    def record(self, function: str, settings: Mapping[str, Any]) -> None:
        self.calls += 1
        try:  # the common case, cheaply: torch passes hashable scalars, and a set seen before
            key: tuple[Any, ...] = (function, *settings.items())
            found = self.sets.get(key)
        except TypeError:  # an unhashable value: keyed by its text
            key = (function, *((name, _scalar(value)) for name, value in settings.items()))
            found = self.sets.get(key)
        if found is not None:
            found["calls"] += 1
        elif len(self.sets) < MAX_SETS:
            self.sets[key] = {
                "function": function,
                "calls": 1,
                "first_sample": self._sample_index(),
                "settings": {name: _scalar(value) for name, value in settings.items()},
            }
        else:
            self.left_out += 1

    def to_json(self) -> dict[str, Any] | None:
        """The results' ``gradcheck`` object (results.GradcheckRecord); None when nothing was called."""
        if not self.calls:
            return None
        data: dict[str, Any] = {"calls": self.calls, "sets": [dict(s) for s in self.sets.values()]}
        if self.left_out:
            data["sets_left_out"] = self.left_out
        return data


_recorder: Recorder | None = None  # the recorder of the test running now, if any
_dry_run = False  # True in gradci samples: record, do not compute


def _defaults(function: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only parameters of gradcheck/gradgradcheck and their defaults (every setting)."""
    return {
        p.name: p.default
        for p in inspect.signature(function).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    }


def install_recorder() -> None:
    """Wrap ``torch.autograd.gradcheck`` and ``gradgradcheck`` (once per process).

    torch's ``common_utils.gradcheck`` looks ``torch.autograd.gradcheck`` up at each call, so the
    wrapper sees every call the suites make; gradgradcheck's own inner gradcheck call goes to the
    module's function and is not counted twice. Cost per call: a dict merge and a lookup.
    """
    import torch.autograd

    for name in FUNCTIONS:
        original = getattr(torch.autograd, name)
        if getattr(original, "_gradci", False):
            continue
        torch.autograd.__dict__[name] = _wrap(name, original)


def _wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    defaults = _defaults(original)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        recorder = _recorder
        if recorder is not None:
            with contextlib.suppress(Exception):  # never let the record change a test's outcome
                recorder.record(name, {**defaults, **kwargs})
            if _dry_run:
                return True
        return original(*args, **kwargs)

    wrapper._gradci = True  # type: ignore[attr-defined]
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__name__ = name
    wrapper.__doc__ = original.__doc__
    return wrapper


def set_recorder(recorder: Recorder | None) -> None:
    global _recorder
    _recorder = recorder


@contextlib.contextmanager
def dry_run(recorder: Recorder) -> Iterator[None]:
    """gradcheck and gradgradcheck record their settings and return True without computing."""
    global _dry_run
    install_recorder()
    set_recorder(recorder)
    _dry_run = True
    try:
        yield
    finally:
        _dry_run = False
        set_recorder(None)


# --- text ------------------------------------------------------------------------------------------


def printable(text: str) -> str:
    """``text`` on one line with every control, format or separator character (newline, \\r, ESC,
    a bidi override) as its Python escape, so that names and reprs cannot forge output lines."""
    return "".join(
        c if c == " " or c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def parameter_names(op: Any) -> list[str] | None:
    """The positional parameter names of the function an OpInfo checks, where known: a torch.ops
    overload's schema, a Python function's signature (an autograd.Function's forward), or the aten
    schemas of an upstream op when all its Tensor overloads agree."""
    import torch

    fn = getattr(op, "op", None)
    fn = getattr(fn, "__wrapped__", fn)  # gradci's spec wraps some callables
    schema = getattr(fn, "_schema", None)
    if schema is not None:
        return [a.name for a in schema.arguments if not a.kwarg_only]
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        names = _signature_names(owner.forward)
        base = torch.autograd.function._SingleLevelFunction.setup_context
        # forward(ctx, ...) unless the Function has a separate setup_context
        takes_ctx = getattr(owner.setup_context, "__func__", owner.setup_context) is getattr(
            base, "__func__", base
        )
        return names[1:] if names and takes_ctx else names
    names = _signature_names(fn)
    if names:
        return names
    return _aten_names(str(getattr(op, "aten_name", None) or getattr(op, "name", "")))


def _signature_names(fn: Any) -> list[str] | None:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in parameters if p.kind in kinds]
    return names or None


def _aten_names(name: str) -> list[str] | None:
    import torch

    try:
        schemas = torch._C._jit_get_schemas_for_operator(f"aten::{name}")
    except Exception:
        return None
    lists = [
        [a.name for a in s.arguments if not a.kwarg_only]
        for s in schemas
        if s.arguments
        and str(s.arguments[0].type).startswith("Tensor")
        and not s.overload_name.endswith("out")
    ]
    if not lists:
        return None
    names = []
    for position in range(max(len(n) for n in lists)):
        here = {n[position] for n in lists if position < len(n)}
        names.append(here.pop() if len(here) == 1 else "")  # ambiguous across overloads: unnamed
    return names


def describe_tensor(t: Any) -> str:
    import torch

    parts = [f"tensor {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"]
    if t.device.type != "cpu":
        parts.append(str(t.device))
    if t.requires_grad:
        parts.append("requires_grad")
    if t.layout is not torch.strided:
        parts.append(str(t.layout).removeprefix("torch."))
    elif not t.is_contiguous():
        parts.append(f"non-contiguous, strides {tuple(t.stride())}")
    if t.is_conj():
        parts.append("conj")
    if t.numel() == 0:
        parts.append("empty")
    elif t.layout is torch.strided:
        with torch.no_grad():
            values = t.detach().resolve_conj()
            if values.is_complex():
                re, im = values.real, values.imag
                parts.append(
                    f"real {_number(float(re.min()))}..{_number(float(re.max()))}, "
                    f"imag {_number(float(im.min()))}..{_number(float(im.max()))}"
                )
            elif values.dtype is torch.bool:
                parts.append(f"{int(values.sum())} of {values.numel()} true")
            else:
                parts.append(f"range {_number(float(values.min()))}..{_number(float(values.max()))}")
    return ", ".join(parts)


def describe_value(value: Any) -> list[str]:
    """A sample's value as lines: a tensor, each tensor of a list, or a repr."""
    import torch

    if isinstance(value, torch.Tensor):
        return [describe_tensor(value)]
    if isinstance(value, list | tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
        return [f"{type(value).__name__} of {len(value)} tensors"] + [
            f"  [{i}] {describe_tensor(v)}" for i, v in enumerate(value)
        ]
    text = repr(value)
    if len(text) > 200:
        text = text[:200] + " ..."
    return [f"{printable(text)} ({type(value).__name__})"]


def describe_sample(sample: Any, names: Sequence[str] | None) -> list[tuple[str, list[str]]]:
    """(label, lines) per argument: labels as failures name them (``input``, ``args[0]``,
    ``kwargs['alpha']``), with the parameter name where known."""
    names = list(names or ())

    def named(label: str, position: int) -> str:
        name = names[position] if position < len(names) else ""
        return f"{label} ({name})" if name else label

    rows = [(named("input", 0), describe_value(sample.input))]
    rows += [(named(f"args[{i}]", i + 1), describe_value(a)) for i, a in enumerate(sample.args)]
    rows += [(f"kwargs[{k!r}]", describe_value(v)) for k, v in sample.kwargs.items()]
    return [(printable(label), lines) for label, lines in rows]


def _structure(rows: list[tuple[str, list[str]]]) -> tuple[Any, ...]:
    """A sample's description without its values: what differs only by the seed is the same."""
    return tuple(
        (label, tuple(line.split(", range")[0].split(", real")[0] for line in lines)) for label, lines in rows
    )


# --- gradci samples --------------------------------------------------------------------------------


@dataclass
class Inspected:
    """One test run dry: its samples, the settings it passed, or why it passed none."""

    check: str
    test_id: str
    samples: list[list[tuple[str, list[str]]]] = field(default_factory=list)
    record: dict[str, Any] | None = None
    note: str | None = None  # skipped, expected to fail, expects an error, could not be inspected


def _note(result: unittest.TestResult, test: unittest.TestCase, check: str) -> str | None:
    """Why a test run dry has no settings to show, or what they are for (unittest's own record)."""
    if result.skipped:
        return f"skipped: {result.skipped[0][1]}"
    if result.unexpectedSuccesses or result.expectedFailures:
        method = getattr(test, test._testMethodName, None)
        reason = getattr(method, "gradci_xfail_reason", None)
        return "marked expected failure" + (f": {reason}" if reason else " (an xfail of the OpInfo)")
    problems = result.failures + result.errors
    if problems:
        lines = problems[0][1].strip().splitlines()
        last = lines[-1] if lines else ""
        if "not raised" in last:  # the dry run raised nothing where the check wants an error
            return f"expects the call to raise: {BY_NAME[check].description}"
        return f"could not be inspected: {last}"
    return None


def inspect_tests(
    entries: Sequence[OpEntry], *, device: str, checks: Sequence[str], dtypes: Sequence[str]
) -> dict[str, dict[str, list[Inspected]]]:
    """Per op (full name) and dtype, each planned test run dry, in check order."""
    from . import suite
    from .plan import build_plan
    from .suite import build_test_classes, class_for

    plan = build_plan(entries, device=device, checks=checks, dtypes=dtypes)
    found: dict[str, dict[str, list[Inspected]]] = {e.full_name: {} for e in entries}
    if not plan.tests:
        return found
    classes = build_test_classes(device, plan.ops_by_method)
    for generic in dict.fromkeys(classes.values()):
        generic.setUpClass()
    order = {name: i for i, name in enumerate((*DTYPE_NAMES, *CHECK_NAMES))}
    for test in sorted(plan.tests, key=lambda t: (order[t.dtype], order[t.check])):
        inspected = Inspected(test.check, test.id)
        drawn: list[Any] = []
        recorder = Recorder(lambda: len(drawn) - 1 if drawn else None)  # noqa: B023 - used in this turn
        suite.set_sample_observer(functools.partial(_collect, drawn))
        cls = class_for(classes, test.id)
        assert cls is not None  # the plan made the class
        case = cls(test.id)
        collector = unittest.TestResult()
        try:
            with dry_run(recorder):
                case.run(collector)
        finally:
            suite.set_sample_observer(None)
        entry = next(e for e in entries if e.full_name == test.op)
        names = parameter_names(entry.op)
        inspected.samples = [describe_sample(s, names) for s in drawn]
        inspected.record = recorder.to_json()
        inspected.note = _note(collector, case, test.check)
        if inspected.note is None and inspected.record is None:
            inspected.note = "no gradcheck call"
        found[test.op].setdefault(test.dtype, []).append(inspected)
        del drawn[:]  # the sample tensors are described: let them go
    return found


def _collect(drawn: list[Any], op: Any, samples: Iterator[Any]) -> Iterator[Any]:
    for sample in samples:
        drawn.append(sample)
        yield sample


def settings_lines(record: Mapping[str, Any]) -> list[str]:
    """Per function: the settings, one value or the values seen (``False|True``), and the calls."""
    lines = []
    for function in FUNCTIONS:
        sets = [s for s in record["sets"] if s["function"] == function]
        if not sets:
            continue
        calls = sum(s["calls"] for s in sets)
        keys = list(dict.fromkeys(k for s in sets for k in s["settings"]))
        shown = []
        for key in _ordered(keys):
            values = list(dict.fromkeys(s["settings"].get(key) for s in sets))
            shown.append(f"{key}={'|'.join(printable(str(v)) for v in values)}")
        lines.append(f"{function} x{calls}: " + " ".join(shown))
    if record.get("sets_left_out"):
        lines.append(f"({record['sets_left_out']} calls with yet other settings not shown)")
    return lines


# The settings people ask about first; the rest follow in gradcheck's order.
_FIRST = (
    "fast_mode",
    "atol",
    "rtol",
    "eps",
    "nondet_tol",
    "check_batched_grad",
    "check_batched_forward_grad",
)


def _ordered(keys: Sequence[str]) -> list[str]:
    return [k for k in _FIRST if k in keys] + [k for k in keys if k not in _FIRST]


def _sample_lines(samples: list[list[tuple[str, list[str]]]], indent: str) -> list[str]:
    lines = []
    for index, rows in enumerate(samples):
        lines.append(f"{indent}sample {index}:" + ("" if rows else " (no arguments)"))
        width = max((len(label) for label, _ in rows), default=0)
        for label, described in rows:
            lines.append(f"{indent}  {label:<{width}}  {described[0]}")
            lines.extend(f"{indent}  {'':<{width}}  {more}" for more in described[1:])
    return lines


def _extras(entry: OpEntry, device: str, dtype: str, check: str) -> list[str]:
    """What the settings do not show: a gradcheck_wrapper, a toleranceOverride upstream ignores."""
    import torch

    from .suite import gradcheck_tolerance, tolerance_override

    lines = []
    wrapper = getattr(entry.op, "gradcheck_wrapper", None)
    name = getattr(wrapper, "__qualname__", "")
    if wrapper is not None and name != "OpInfo.<lambda>":
        lines.append(f"the op runs through gradcheck_wrapper {printable(name)}")
    method = BY_NAME[check].method
    override = tolerance_override(entry.op, device, getattr(torch, dtype), method)
    if override is not None and gradcheck_tolerance(entry.op, device, getattr(torch, dtype), method) is None:
        lines.append(
            f"toleranceOverride atol={override[0]:g} rtol={override[1]:g} is not passed to gradcheck "
            "(upstream's TestGradients gives it none)"
        )
    return lines


def render(
    entries: Sequence[OpEntry], inspected: Mapping[str, Mapping[str, list[Inspected]]], device: str
) -> str:
    """One block per op: per dtype, the samples, then each check's gradcheck settings."""
    blocks = []
    for entry in entries:
        where = f"; {entry.location}" if entry.location else ""
        lines = [f"{printable(entry.full_name)} ({entry.db}{printable(where)})"]
        names = parameter_names(entry.op)
        if names:
            lines.append(f"  parameters: {printable(', '.join(n or '?' for n in names))}")
        by_dtype = inspected.get(entry.full_name, {})
        if not by_dtype:
            lines.append("  no test for the selected checks and dtypes")
        for dtype, tests in by_dtype.items():
            shown = next((t for t in tests if t.samples), None)
            if shown is None:
                lines.append(f"  {dtype}: no sample drawn")
            else:
                lines.append(
                    f"  {dtype}: {len(shown.samples)} sample(s), as {shown.test_id} draws them "
                    "(each check seeds its own draw: values differ, shapes do not)"
                )
                lines += _sample_lines(shown.samples, "    ")
            lines.append(f"  gradcheck settings, {dtype}:")
            for test in tests:
                lines.append(f"    {test.check}: {test.test_id}")
                if test.note:
                    lines.append(f"      {printable(test.note)}")
                if test.record is not None:
                    lines += [f"      {line}" for line in settings_lines(test.record)]
                lines += [f"      {line}" for line in _extras(entry, device, dtype, test.check)]
                if shown is not None and test.samples and _structure_of(test) != _structure_of(shown):
                    lines.append(f"      its samples ({len(test.samples)}) differ from those above:")
                    lines += _sample_lines(test.samples, "        ")
        # every line from an op's names and reprs: one line each, no workflow command
        blocks.append("\n".join(escape_workflow_commands(printable(line)) for line in lines))
    return "\n\n".join(blocks) + "\n"


def _structure_of(test: Inspected) -> tuple[Any, ...]:
    return tuple(_structure(rows) for rows in test.samples)
