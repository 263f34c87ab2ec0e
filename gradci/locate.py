"""Where an op is defined, as ``file:line``, and in a PyTorch fork where its backward formula is.

An OpInfo is located where it is constructed, whichever module's list holds it: while gradci
imports op modules, ``OpInfo.__post_init__`` records its caller's frames in that file
(``record_constructions``). Of those lines, the one fewest OpInfos share is the op's: the call
``make_op("a")`` rather than the helper's body, the loop rather than a helper it calls. An OpInfo
built before recording began is found by its literal name in its module's source instead.

A file of the repository is relative to its root (``$GITHUB_WORKSPACE``, else the git top level,
else the working directory); a file of the installed torch (an upstream op) is relative to the
directory holding the torch package (``torch/testing/_internal/...``, ``relative_to="torch"``);
anything else keeps its absolute path, and the publisher falls back to another place.

Fork mode: when the torch under test is a PyTorch checkout (``--torch-source``, or detected: torch
imported from inside the repository, not from a site-packages), upstream ops are located in the
checkout, and ``find_derivative`` finds the op's entry of ``tools/autograd/derivatives.yaml``.
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import functools
import importlib.abc
import importlib.machinery
import inspect
import os
import re
import subprocess
import sys
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import Any

from .errors import ConfigError

TORCH = "torch"  # Location.relative_to: the directory holding the torch package
DERIVATIVES = "tools/autograd/derivatives.yaml"
# The checks whose failure is a wrong backward formula (fail-gradgrad checks an error is raised).
FORMULA_CHECKS = ("grad", "inplace-grad", "gradgrad", "inplace-gradgrad")


@dataclass(frozen=True)
class Location:
    file: str  # relative to the repository root when inside it (else see relative_to), or absolute
    line: int
    relative_to: str | None = None  # None: the repository; "torch": the directory holding torch

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.file, "line": self.line}
        if self.relative_to is not None:
            data["relative_to"] = self.relative_to
        return data


@dataclass(frozen=True)
class Derivative:
    """An entry of a PyTorch checkout's ``tools/autograd/derivatives.yaml``."""

    file: str  # relative to the repository root when inside it, else absolute
    line: int  # of its ``- name:`` line
    name: str  # the aten op and overload: abs, div.Tensor

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@lru_cache(maxsize=1)
def repo_root() -> Path:
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace:
        return Path(workspace).resolve()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True, timeout=10
        )
        return Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.SubprocessError):
        return Path.cwd().resolve()


def relative_location(file: str | os.PathLike[str], line: int, *, root: Path | None = None) -> Location:
    path = Path(file).resolve()
    base = (root or repo_root()).resolve()
    try:
        shown = path.relative_to(base).as_posix()
    except ValueError:
        shown = str(path)
    return Location(shown, line)


# --- where each OpInfo is constructed ------------------------------------------------------------

_CORE = "torch.testing._internal.opinfo.core"
# On each OpInfo: (file, lines of its same-file frames, innermost first, then the first frame in
# each of its callers' files: a helper outside the repository is located at the repository's call).
_RECORD = "_gradci_constructed"
_CONSTRUCTORS = ("__init__", "__post_init__")
_MAX_FRAMES = 8
_MAX_CALLERS = 4
_OWN = str(Path(__file__).parent)  # gradci's own frames (the catalog importing a module) never locate an op
# How many OpInfos have each (file, line) among their frames: a line only one has is that op's.
_frame_uses: Counter[tuple[str, int]] = Counter()


# A frame's f_lineno scans its code's line table from the start: over a 20,000-line module, once per
# OpInfo, that is most of a second. The table is read once per code object instead (weakly held).
_line_tables: dict[int, tuple[weakref.ref[CodeType], list[int], list[tuple[int, int | None]]]] = {}


def _line_of(frame: FrameType) -> int | None:
    code = frame.f_code
    known = _line_tables.get(id(code))
    if known is None or known[0]() is not code:
        starts: list[int] = []
        spans: list[tuple[int, int | None]] = []
        for start, end, line in code.co_lines():  # in the order of the bytecode
            starts.append(start)
            spans.append((end, line))
        key = id(code)
        known = (weakref.ref(code, lambda _: _line_tables.pop(key, None)), starts, spans)
        _line_tables[key] = known
    _, starts, spans = known
    index = bisect.bisect_right(starts, frame.f_lasti) - 1
    if index < 0 or frame.f_lasti >= spans[index][0]:
        return frame.f_lineno  # not in the table (never seen): ask the frame
    return spans[index][1]


@functools.cache
def _constructor_codes(cls: type) -> frozenset[int]:
    """The code objects (by id: hashing a module's code is slow) of ``cls``'s constructors:
    OpInfo's, a subclass's, the generated dataclass ``__init__``, gradci's wrapper."""
    codes: set[int] = set()
    for klass in cls.__mro__:
        for name in _CONSTRUCTORS:
            fn = klass.__dict__.get(name)
            while fn is not None:
                code = getattr(fn, "__code__", None)
                if code is not None:
                    codes.add(id(code))
                fn = getattr(fn, "__wrapped__", None)
    return frozenset(codes)


def _record(op: Any, frame: FrameType | None) -> None:
    constructors = _constructor_codes(type(op))  # type: ignore[arg-type]
    while frame is not None and id(frame.f_code) in constructors:
        frame = frame.f_back
    if frame is None:
        return
    file = frame.f_code.co_filename
    lines: list[int] = []
    while frame is not None and frame.f_code.co_filename == file and len(lines) < _MAX_FRAMES:
        line = _line_of(frame)
        if line:
            lines.append(line)
        frame = frame.f_back
    if not lines:
        return
    callers: list[tuple[str, int]] = []
    while frame is not None and len(callers) < _MAX_CALLERS:
        caller = frame.f_code.co_filename
        line = _line_of(frame)
        # "<frozen importlib._bootstrap>", "<string>": no file to show
        if (
            line
            and caller != file
            and not caller.startswith(("<", _OWN))
            and all(c != caller for c, _ in callers)
        ):
            callers.append((caller, line))
        frame = frame.f_back
    object.__setattr__(op, _RECORD, (file, tuple(lines), tuple(callers)))
    for line in set(lines):
        _frame_uses[(file, line)] += 1


def _patch(core: ModuleType) -> None:
    cls = core.OpInfo
    original = cls.__post_init__
    if getattr(original, "_gradci_records", False):
        return

    @functools.wraps(original)
    def __post_init__(self: Any, *args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(Exception):  # a location never breaks an op module's import
            _record(self, sys._getframe(1))
        return original(self, *args, **kwargs)

    __post_init__._gradci_records = True  # type: ignore[attr-defined]
    cls.__post_init__ = __post_init__


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader of torch's opinfo.core, then patches OpInfo before anything uses it."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _patch(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename...: the real loader's
        return getattr(self.inner, name)


class _CoreFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _CORE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


_finder = _CoreFinder()


def record_constructions() -> None:
    """From now on, record where each OpInfo is constructed (cheap; idempotent; imports no torch).

    Must run before torch's opinfo package is imported: its ``definitions`` build OpInfos at import.
    """
    core = sys.modules.get(_CORE)
    if core is not None:
        _patch(core)
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def constructed_at(op: Any) -> tuple[str, int] | None:
    """The file and line of the call that made ``op``, when it was recorded."""
    recorded = getattr(op, _RECORD, None)
    if recorded is None:
        return None
    file, lines = recorded[:2]
    # The line fewest OpInfos share (a helper's call site rather than its body; in a loop, the
    # loop's line), the innermost of equals.
    line = min(lines, key=lambda n: _frame_uses[(file, n)])
    return file, line


def called_from(op: Any) -> tuple[tuple[str, int], ...]:
    """The calls, in the files further out, that led to ``op``'s construction (innermost first)."""
    recorded = getattr(op, _RECORD, None)
    return tuple(recorded[2]) if recorded is not None and len(recorded) > 2 else ()


# --- the fallback: a constructor call with the op's literal name --------------------------------


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _string_kw(node: ast.Call, key: str) -> str | None:
    for kw in node.keywords:
        if kw.arg == key and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    return None


@lru_cache(maxsize=32)
def _opinfo_calls(file: str) -> dict[tuple[str, str], int]:
    """``(name, variant) -> line`` for every ``...Info(...)`` call with a literal name in ``file``."""
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    found: dict[tuple[str, str], int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not _call_name(node).endswith("Info"):
            continue
        name = _string_kw(node, "name")
        if name is None and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value
        if name is not None:
            found.setdefault((name, _string_kw(node, "variant_test_name") or ""), node.lineno)
    return found


def _source_file(obj: Any) -> str | None:
    obj = getattr(obj, "func", obj)  # a functools.partial's function
    try:
        # OpInfo wraps its sample function (torch.no_grad's wrapper, in torch/utils)
        return inspect.getsourcefile(inspect.unwrap(obj) if callable(obj) else obj)
    except (OSError, TypeError):
        return None


def _found_by_name(op: Any, module: ModuleType | None) -> tuple[str, int] | None:
    """The OpInfo's constructor call by its literal name: in the module holding the list, or where
    its sample function is defined (usually next to it)."""
    candidates = [_source_file(module) if module is not None else None, _source_file(op.sample_inputs_func)]
    key = (str(op.name), str(op.variant_test_name or ""))
    for file in dict.fromkeys(c for c in candidates if c):
        line = _opinfo_calls(file).get(key)
        if line is not None:
            return file, line
    return None


# --- from a file to a Location -------------------------------------------------------------------


def torch_parent() -> Path | None:
    """The directory holding the torch under test (site-packages, or a checkout's root)."""
    file = getattr(sys.modules.get("torch"), "__file__", None)
    return _parent_of(file) if file else None


@lru_cache(maxsize=4)
def _parent_of(file: str) -> Path:
    return Path(file).resolve().parent.parent


def torch_checkout(setting: Path | None, *, root: Path | None = None) -> Path | None:
    """The PyTorch checkout whose torch is under test: ``setting`` (checked), else detected."""
    if setting is not None:
        path = setting.expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"torch-source {str(setting)!r}: not a directory")
        if not (path / "torch").is_dir() and not (path / DERIVATIVES).is_file():
            raise ConfigError(
                f"torch-source {str(setting)!r}: not a PyTorch checkout (no torch/ and no {DERIVATIVES})",
                hint="name the checkout's root, the directory holding torch/ and tools/",
            )
        return path
    import torch  # the torch under test, whose place decides

    return detect_checkout(torch.__file__, root or repo_root())


def detect_checkout(torch_file: str | None, root: Path) -> Path | None:
    """The checkout holding ``torch_file`` (torch's ``__init__.py``) when it is inside ``root``:
    a development install (``pip install -e .``, ``setup.py develop``) of the repository's torch."""
    if not torch_file:
        return None
    parent = _parent_of(torch_file)
    if {"site-packages", "dist-packages"} & set(parent.parts):
        return None  # an installed torch, even in a virtualenv inside the repository
    base = root.resolve()
    return parent if parent == base or base in parent.parents else None


@lru_cache(maxsize=256)
def _place(
    file: str, root: Path | None, parent: Path | None, checkout: Path | None
) -> tuple[str, str | None]:
    path = Path(file).resolve()
    if parent is not None and (parent / "torch") in path.parents:
        inside = path.relative_to(parent)
        if checkout is not None and (checkout / inside).is_file():
            path = checkout / inside  # the same file in the checkout (itself, when torch is imported from it)
        else:
            return inside.as_posix(), TORCH
    try:
        return path.relative_to((root or repo_root()).resolve()).as_posix(), None
    except ValueError:
        return str(path), None


def place(file: str, line: int, *, root: Path | None = None, checkout: Path | None = None) -> Location:
    """The Location of ``file:line``: in the repository, in the torch package, or absolute."""
    shown, relative_to = _place(file, root, torch_parent(), checkout)
    return Location(shown, max(1, line), relative_to)


def locate_opinfos(
    ops: Sequence[Any],
    *,
    module: ModuleType | None = None,
    root: Path | None = None,
    checkout: Path | None = None,
) -> list[Location | None]:
    """Where each OpInfo is constructed (by a helper outside the repository and torch: where the
    repository calls it); else (built before recording began) its literal name's constructor call;
    else its Python function (``module``: the one whose list holds them)."""
    locations: list[Location | None] = []
    for op in ops:
        where = constructed_at(op)
        if where is not None:
            sites = [place(*site, root=root, checkout=checkout) for site in (where, *called_from(op))]
            locations.append(next((site for site in sites if not _is_outside(site)), sites[0]))
            continue
        by_name = _found_by_name(op, module)
        if by_name is not None:
            locations.append(place(*by_name, root=root, checkout=checkout))
        else:
            locations.append(locate_callable(op.op, root=root))
    return locations


def _is_outside(location: Location) -> bool:
    return location.relative_to is None and Path(location.file).is_absolute()


def locate_callable(fn: Any, *, root: Path | None = None) -> Location | None:
    """Where a Python function (or a torch.library custom op's Python body) is defined."""
    target = inspect.unwrap(fn) if callable(fn) else fn
    # A torch.library custom op carries its Python implementation as ``_init_fn``.
    target = getattr(target, "_init_fn", target)
    try:
        file = inspect.getsourcefile(target)
        _, line = inspect.getsourcelines(target)
    except (OSError, TypeError):
        return None
    if file is None:
        return None
    return relative_location(file, max(line, 1), root=root)


# --- derivatives.yaml ----------------------------------------------------------------------------

# "- name: div.Tensor_mode(Tensor self, ...) -> Tensor": the op, its overload, the line
_ENTRY = re.compile(r"-\s+name:\s*([A-Za-z_]\w*)(?:\.(\w+))?\s*\(")


@lru_cache(maxsize=4)
def derivative_entries(path: Path) -> dict[str, list[tuple[str, int]]]:
    """``op -> [(overload, line), ...]`` of a derivatives.yaml, in file order ({} if unreadable).

    A line scan, not a YAML parse: only the ``- name:`` lines matter, and it takes milliseconds.
    """
    entries: dict[str, list[tuple[str, int]]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return entries
    for number, line in enumerate(text.splitlines(), 1):
        match = _ENTRY.match(line)
        if match:
            entries.setdefault(match[1], []).append((match[2] or "", number))
    return entries


_NAMESPACES = ("nn.functional.", "torch.ops.aten.", "ops.aten.", "aten.")


def aten_candidates(op: Any) -> list[tuple[str, str | None]]:
    """The aten ops (and overload, when known) an OpInfo stands for, most precise first."""
    found: list[tuple[str, str | None]] = []
    schema = getattr(op.op, "_schema", None)  # an OpOverload: torch.ops.aten.abs.default
    if schema is not None and str(getattr(schema, "name", "")).startswith("aten::"):
        found.append((str(schema.name)[len("aten::") :], str(getattr(schema, "overload_name", "")) or None))
    name = str(op.aten_name or op.name)
    found.append((name, None))
    found.append((name.replace(".", "_"), None))  # linalg.det -> linalg_det
    for prefix in _NAMESPACES:
        if name.startswith(prefix):
            found.append((name[len(prefix) :].split(".")[0], None))  # nn.functional.elu -> elu
    return list(dict.fromkeys(found))


def find_derivative(op: Any, checkout: Path, *, root: Path | None = None) -> Derivative | None:
    """The entry of ``checkout``'s derivatives.yaml with the OpInfo's backward formula.

    Matched by the aten name: its overload when the op is an OpOverload, else the one without an
    overload name, else ``.Tensor``, else the first. An op with only an in-place entry
    (``conj_physical_``) gets that, and a composite op whose formula is its implementation's
    (``linalg_det`` -> ``_linalg_det``, ``softmax`` -> ``_softmax``) that one.
    """
    path = checkout / DERIVATIVES
    entries = derivative_entries(path)
    if not entries:
        return None
    candidates = aten_candidates(op)
    inplace = [(f"{n}_", o) for n, o in candidates]
    implementation = [(f"_{n}", o) for n, o in candidates if not n.startswith("_")]
    for name, overload in [*candidates, *inplace, *implementation]:
        overloads = entries.get(name)
        if not overloads:
            continue
        by_overload = dict(overloads)
        for wanted in (overload, "", "Tensor"):
            if wanted is not None and wanted in by_overload:
                return _derivative(path, by_overload[wanted], name, wanted, root)
        first, line = overloads[0]
        return _derivative(path, line, name, first, root)
    return None


def _derivative(path: Path, line: int, name: str, overload: str, root: Path | None) -> Derivative:
    location = relative_location(path, line, root=root)
    return Derivative(location.file, line, f"{name}.{overload}" if overload else name)


def derivatives_for(
    ops: Iterable[Any], checkout: Path | None, *, root: Path | None = None
) -> list[Derivative | None]:
    return [None if checkout is None else find_derivative(op, checkout, root=root) for op in ops]
