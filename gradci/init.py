"""``gradci init``: a starting ``gradci-ops.yml`` for a project's operators, and optionally the workflow.

Imports the project's package and finds its operators: the ``torch.library`` ops it registers (the
dispatcher's op names before and after the import: C++ ``TORCH_LIBRARY`` and Python ``custom_op``
alike) and the ``torch.autograd.Function`` subclasses defined in its modules (through the functions
that call their ``apply``, where there are such). Each op gets one sample built from its signature;
each op is then tried once in a forked child (forward, backward, double backward; float64 and
complex128), which settles its dtypes and ``supports_gradgrad`` and turns what failed into a
``# TODO(gradci init)`` comment rather than a failing test. The YAML is written as text (PyYAML
drops comments): every string quoted as JSON, every comment one printable line. The file is loaded
back with gradci's own spec loader before it replaces anything.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import __version__, docs
from .console import counted
from .errors import EXIT_OK, SpecError, UsageError

TODO = "TODO(gradci init):"  # gradci run counts the lines that still hold it
WORKFLOW_PATH = Path(".github") / "workflows" / "gradci.yml"
SHAPE = (3, 3)  # square: elementwise, broadcasting and matrix products all take it
_PROBE_TIMEOUT = 60.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")  # as the spec parser's
# Argument names that rarely take a random float tensor: the sample is a guess, and says so.
_INDEX_NAMES = re.compile(r"(^|_)(indices|index|idx|ids?|labels?|targets?)($|_)", re.I)
_GEOMETRY_NAMES = re.compile(r"(^|_)(boxes|box|rois?|offsets?|mask|grid|lengths?|sizes?|shape)($|_)", re.I)
_NOT_PACKAGES = {
    "tests",
    "test",
    "docs",
    "doc",
    "examples",
    "benchmarks",
    "scripts",
    "build",
    "dist",
    "tools",
}


# --- what was found ------------------------------------------------------------------------------


@dataclass
class Param:
    name: str
    kind: str  # the schema's spelling: Tensor, Optional[Tensor], int, float, List[int], ...
    has_default: bool = False
    kwarg_only: bool = False
    length: int | None = None  # int[2]
    default: Any = None  # where has_default


@dataclass
class Found:
    name: str  # the spec's name
    op: str  # the spec's import path
    origin: str  # one line for the comment above the entry
    params: list[Param] | None  # None: nothing known of the signature
    inplace: str | None = None
    notes: list[str] = field(default_factory=list)  # comments above the entry
    todos: list[str] = field(default_factory=list)
    dtypes: tuple[str, ...] = ("float64",)
    supports_gradgrad: bool = True
    disabled: str | None = None  # written commented out, with this reason
    sample: Any = None  # (input, args, kwargs) of SampleValue


@dataclass
class Value:
    """A sample argument: its YAML text and, for the probe, what it is."""

    yaml: str
    tensor: dict[str, Any] | None = None  # TensorSpec's fields; None: a plain value
    plain: Any = None
    items: list[Value] | None = None  # a tensor list
    todo: str | None = None
    note: str | None = None  # a comment that is no TODO
    guessed_type: bool = False  # its TODO goes when the op runs on it


# --- which package -------------------------------------------------------------------------------


def guess_packages(directory: Path) -> tuple[list[str], str]:
    """The project's top-level packages, and how they were found."""
    import tomllib

    candidates: list[tuple[str, Path]] = []
    for base in (directory, directory / "src"):
        if base.is_dir():
            for child in sorted(base.iterdir()):
                name = child.name
                wanted = name.isidentifier() and name not in _NOT_PACKAGES and not name.startswith("_")
                if wanted and (child / "__init__.py").is_file():
                    candidates.append((name, child))
    project = ""
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        with contextlib.suppress(tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            project = str(data.get("project", {}).get("name", ""))
            listed = data.get("tool", {}).get("setuptools", {}).get("packages")
            if isinstance(listed, list):
                tops = [p.split(".")[0] for p in listed if isinstance(p, str) and "." not in p]
                if tops:
                    return list(dict.fromkeys(tops)), "pyproject.toml's [tool.setuptools] packages"
    normalized = re.sub(r"[-.]+", "_", project).lower()
    names = [name for name, _ in candidates]
    if normalized and normalized in names:
        return [normalized], f"pyproject.toml's project name {project!r}"
    if len(names) == 1:
        return names, f"the package directory {candidates[0][1].relative_to(directory)}/"
    if normalized and importlib.util.find_spec(normalized) is not None:
        return [normalized], f"pyproject.toml's project name {project!r} (installed)"
    found = ", ".join(names) if names else "none"
    raise UsageError(
        f"cannot tell which package to import (top-level packages here: {found})",
        hint="name it: gradci init PACKAGE",
    )


def _import_all(packages: Sequence[str]) -> tuple[list[Any], list[str]]:
    """The packages' modules, imported (the package first); and the submodules that failed."""
    modules: list[Any] = []
    failed: list[str] = []
    for name in packages:
        try:
            package = importlib.import_module(name)
        except Exception as exc:
            raise UsageError(f"importing {name!r} raised {type(exc).__name__}: {_one_line(exc)}") from None
        modules.append(package)
        for info in pkgutil.walk_packages(
            getattr(package, "__path__", []), prefix=name + ".", onerror=failed.append
        ):
            try:
                modules.append(importlib.import_module(info.name))
            except Exception as exc:  # a submodule for another platform, an optional dependency
                failed.append(f"{info.name} ({type(exc).__name__}: {_one_line(exc)[:80]})")
    return modules, failed


# --- discovery -----------------------------------------------------------------------------------


# Where a torch.library op's gradient can come from: an autograd kernel, or a decomposition into
# differentiable ops.
_AUTOGRAD_KEYS = ("Autograd", "AutogradCPU", "AutogradCUDA", "CompositeImplicitAutograd")


def _library_ops(before: set[str], after: set[str]) -> list[Found]:
    """The ops of the namespaces that appeared with the import (one entry per overload)."""
    import torch

    old_namespaces = {n.split("::")[0] for n in before}
    found = []
    for full in sorted(after - before):
        namespace, _, rest = full.partition("::")
        if namespace in old_namespaces:
            continue  # torch's own (an op registered lazily), not the project's
        op_name, _, overload = rest.partition(".")
        try:
            packet = getattr(getattr(torch.ops, namespace), op_name)
            overload_op = getattr(packet, overload or "default")
            schema = overload_op._schema
        except Exception as exc:
            found.append(
                Found(
                    _spec_name(f"{namespace}.{op_name}"),
                    "",
                    f"torch.library op {full}",
                    None,
                    disabled=f"cannot look it up in torch.ops: {_one_line(exc)}",
                )
            )
            continue
        path = f"torch.ops.{namespace}.{op_name}.{overload or 'default'}"
        name = f"{namespace}.{op_name}" + (f".{overload}" if overload else "")
        params = [
            Param(
                a.name,
                str(a.type),
                a.has_default_value(),
                a.kwarg_only,
                getattr(a, "N", None),
                a.default_value if a.has_default_value() else None,
            )
            for a in schema.arguments
        ]
        entry = Found(_spec_name(name), path, f"torch.library op {schema}", params)
        if not any(torch._C._dispatch_has_kernel_for_dispatch_key(full, key) for key in _AUTOGRAD_KEYS):
            # a kernel for backends only (CPU, CompositeExplicitAutograd): torch has no gradient for it
            entry.disabled = (
                "no autograd kernel is registered for it (torch.library.register_autograd, or an "
                "Autograd or CompositeImplicitAutograd kernel): it has no gradient to check"
            )
        if schema.is_mutable:
            entry.disabled = "it mutates an argument: declare it as 'inplace:' of its functional op"
        if not (_NAME.match(namespace) and _NAME.match(op_name) and (not overload or _NAME.match(overload))):
            entry.disabled = "its name cannot be written as an import path"
        found.append(entry)
    return found


def _functions(modules: Sequence[Any]) -> list[Found]:
    """autograd.Function subclasses defined in ``modules``: through the functions that call their
    ``apply`` where the package has such (the signature users call), else the class itself."""
    import torch

    classes: dict[type, str] = {}  # class -> module:attribute
    functions: dict[Callable[..., Any], str] = {}
    exposed: dict[int, str] = {}  # id(object) -> the shortest module:attribute that names it
    for module in sorted(modules, key=lambda m: (m.__name__.count("."), m.__name__)):
        for attribute, obj in list(vars(module).items()):
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            exposed.setdefault(id(obj), f"{module.__name__}:{attribute}")
            if getattr(obj, "__module__", None) != module.__name__ or attribute != obj.__name__:
                continue  # imported from elsewhere, or an alias
            if (
                inspect.isclass(obj)
                and issubclass(obj, torch.autograd.Function)
                and obj is not torch.autograd.Function
            ):
                classes[obj] = f"{module.__name__}:{attribute}"
            elif inspect.isfunction(obj) and not attribute.startswith("_"):
                functions[obj] = f"{module.__name__}:{attribute}"
    found: list[Found] = []
    wrapped: set[type] = set()
    for function, where in functions.items():
        names = set(function.__code__.co_names)
        calls = [
            c
            for c in classes
            if c.__name__ in names
            and "apply" in names
            and classes[c].partition(":")[0] == where.partition(":")[0]
        ]
        if not calls:
            continue
        wrapped.update(calls)
        path = exposed.get(id(function), where)
        entry = Found(
            "",
            path,
            f"function {where} (calls {', '.join(c.__name__ + '.apply' for c in calls)})",
            _python_params(function, skip=0),
        )
        entry.name = function.__name__
        found.append(entry)
    for cls, where in classes.items():
        if cls in wrapped:
            continue
        forward = cls.__dict__.get("forward")
        has_setup = "setup_context" in cls.__dict__  # then forward takes no ctx
        params = _python_params(forward, skip=0 if has_setup else 1) if forward is not None else None
        entry = Found("", exposed.get(id(cls), where), f"autograd.Function {where}", params)
        entry.name = cls.__name__
        found.append(entry)
    # an in-place variant beside its function (scale_shift_ beside scale_shift) is its 'inplace:'
    by_name = {f.name: f for f in found}
    for entry in list(found):
        twin = by_name.get(entry.name[:-1]) if entry.name.endswith("_") else None
        if twin is not None and twin.inplace is None:
            twin.inplace = entry.op
            found.remove(entry)
    return found


def _python_params(function: Any, *, skip: int) -> list[Param] | None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    params = []
    for parameter in list(signature.parameters.values())[skip:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            return None  # *args: nothing known of what it takes
        params.append(
            Param(
                parameter.name,
                _annotation_kind(parameter.annotation, parameter.default),
                parameter.default is not parameter.empty,
                parameter.kind == parameter.KEYWORD_ONLY,
                default=None if parameter.default is parameter.empty else parameter.default,
            )
        )
    return params


def _annotation_kind(annotation: Any, default: Any) -> str:
    """A Python annotation (or, without one, the default's type) in the schema's words."""
    if annotation is inspect.Parameter.empty:
        if isinstance(default, bool):
            return "bool"
        if isinstance(default, int | float):
            return type(default).__name__
        return "unknown" if default is inspect.Parameter.empty or default is not None else "Optional[unknown]"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    if not isinstance(annotation, str) and getattr(annotation, "__args__", None):
        text = repr(annotation)
    text = re.sub(r"\b(torch|typing|collections\.abc)\.", "", str(text)).replace(" ", "")
    optional = re.fullmatch(r"Optional\[(.+)\]|(.+)\|None|None\|(.+)", text)
    if optional:
        inner = next(g for g in optional.groups() if g)
        return f"Optional[{_annotation_kind(inner, inspect.Parameter.empty)}]"
    listed = re.fullmatch(r"(?:[Ll]ist|Sequence|[Tt]uple)\[(\w+)(?:,\.\.\.)?\]", text)
    if listed:
        return f"List[{_annotation_kind(listed[1], inspect.Parameter.empty)}]"
    return text if text in ("Tensor", "float", "int", "bool", "str") else "unknown"


def _spec_name(text: str) -> str:
    parts = [re.sub(r"\W", "_", p, flags=re.A) or "_" for p in text.split(".")]
    return ".".join(f"_{p}" if p[0].isdigit() else p for p in parts)


# --- samples from signatures ---------------------------------------------------------------------


def _tensor(shape: Sequence[int] = SHAPE, **extra: Any) -> Value:
    fields = {"shape": list(shape), **extra}
    text = ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items())
    spec = {"shape": tuple(shape), **{k: v for k, v in extra.items() if k != "values"}}
    return Value("{" + text + "}", tensor=spec)


def _index_tensor() -> Value:
    return Value('{values: [0, 1, 2], dtype: "int64"}', tensor={"values": [0, 1, 2], "dtype": "int64"})


def _value_for(param: Param) -> Value | None:
    """A plain sample value for ``param``; None: leave it out (its default)."""
    kind = param.kind
    if param.has_default:
        default = param.default
        if kind == "float" and isinstance(default, int | float) and not isinstance(default, bool):
            # a factor left at its default of 1 (alpha, scale) hides a backward that forgets it
            other = 0.5 if default != 0.5 else 2.5
            return Value(repr(other), plain=other, note=f"not its default {default!r}: checks the factor")
        return None
    if kind == "Tensor" or kind == "unknown":
        if _INDEX_NAMES.search(param.name):
            value = _index_tensor()
            value.todo = f"{param.name!r} looks like indices: give valid ones (int64 values, in range)"
            return value
        value = _tensor()
        if _GEOMETRY_NAMES.search(param.name):
            value.todo = f"{param.name!r} looks like it needs particular values or a particular shape"
        elif kind == "unknown":
            value.todo = f"{param.name!r}: its type is unknown; a tensor is a guess"
            value.guessed_type = True
        return value
    if kind.startswith("Optional["):
        return Value("null", plain=None)
    if kind in ("float", "number", "Scalar"):
        return Value("0.5", plain=0.5)
    if kind in ("int", "SymInt"):
        if _INDEX_NAMES.search(param.name):
            return Value("0", plain=0, todo=f"{param.name!r} looks like an index: check 0 is valid")
        return Value("1", plain=1)
    if kind == "bool":
        return Value("false", plain=False)
    if kind in ("List[int]", "List[SymInt]"):
        count = param.length or 2
        dims = "dim" in param.name.lower()
        numbers = [0] if dims and param.length is None else [1] * count
        return Value(json.dumps(numbers), plain=numbers)
    if kind == "List[float]":
        return Value(json.dumps([0.5] * (param.length or 2)), plain=[0.5] * (param.length or 2))
    if kind in ("List[Tensor]", "List[Optional[Tensor]]"):
        tensors = [_tensor(), _tensor()]
        return Value("[" + ", ".join(t.yaml for t in tensors) + "]", items=tensors)
    placeholder = Value("null", plain=None)
    placeholder.todo = f"{param.name!r}: no sample for its type {kind}; null is a placeholder"
    return placeholder


def build_sample(entry: Found) -> None:
    """``entry.sample``: (input, args, kwargs) from its parameters, or why there is none."""
    if entry.params is None:
        value = _tensor()
        value.todo = "nothing is known of its signature: one tensor is a guess"
        entry.sample = (value, [], [])
        return
    positional: list[tuple[Param, Value]] = []
    keywords: list[tuple[Param, Value]] = []
    defaulted = False  # a positional left to its default: those after it go by name
    for param in entry.params:
        given = _value_for(param)
        if given is None:
            defaulted = defaulted or not param.kwarg_only
        elif param.kwarg_only or defaulted or param.has_default:
            keywords.append((param, given))
        else:
            positional.append((param, given))
    if not positional:
        entry.disabled = "it takes no positional tensor argument, and a sample's 'input' is the first one"
        return
    (_, first), *rest = positional
    entry.sample = (first, [v for _, v in rest], [(p.name, v) for p, v in keywords])
    if not any(_differentiable(v) for v in _values(entry.sample)):
        entry.disabled = "no argument is a floating-point tensor: nothing to differentiate"


def _values(sample: Any) -> Iterator[Value]:
    first, args, kwargs = sample
    yield first
    yield from args
    yield from (v for _, v in kwargs)


def _differentiable(value: Value) -> bool:
    if value.items is not None:
        return any(_differentiable(v) for v in value.items)
    return value.tensor is not None and value.tensor.get("dtype") is None


# --- trying each op once -------------------------------------------------------------------------


def _make(value: Value, dtype: Any) -> Any:
    from .spec.model import TensorSpec

    if value.items is not None:
        return [_make(v, dtype) for v in value.items]
    if value.tensor is not None:
        spec = dict(value.tensor)
        if "shape" in spec:
            spec["shape"] = tuple(spec["shape"])
        return TensorSpec(**spec).make("cpu", dtype, True)
    return value.plain


def _try(entry: Found) -> dict[str, str]:
    """What failed, by stage (forward, backward, gradgrad, complex128); runs the project's code."""
    import torch

    from .spec.build import as_op, resolve_object

    problems: dict[str, str] = {}
    try:
        op = as_op(resolve_object(entry.op))
    except Exception as exc:
        return {"forward": f"cannot resolve {entry.op}: {_one_line(exc)}"}
    for dtype in (torch.float64, torch.complex128):
        stage = "forward"
        try:
            first, args, kwargs = entry.sample
            inputs = [_make(first, dtype), *(_make(a, dtype) for a in args)]
            named = {k: _make(v, dtype) for k, v in kwargs}
            out = op(*inputs, **named)
            leaves = [t for t in _tensors([inputs, named]) if t.requires_grad]
            outputs = [t for t in _tensors(out) if t.requires_grad]
            stage = "backward"
            if not outputs:
                raise RuntimeError("no output requires grad (is an autograd formula registered?)")
            # as gradgradcheck: the output gradients require grad too (a linear op's gradient
            # depends on them only)
            seeds = [torch.ones_like(o).requires_grad_() for o in outputs]
            grads = torch.autograd.grad(outputs, leaves, seeds, create_graph=True, allow_unused=True)
            if dtype == torch.float64:
                stage = "gradgrad"
                again = [g for g in grads if g is not None and g.requires_grad]
                if again:
                    total = torch.stack([g.sum() for g in again]).sum()
                    torch.autograd.grad(total, [*leaves, *seeds], allow_unused=True)
        except Exception as exc:
            key = stage if dtype == torch.float64 else "complex128"
            problems[key] = f"{type(exc).__name__}: {_one_line(exc)}"
            if dtype == torch.float64 and stage != "gradgrad":
                break
    return problems


def _tensors(value: Any) -> Iterator[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _probe_all(entries: Sequence[Found]) -> list[dict[str, str] | None]:
    """``_try`` for each entry in one forked child: a crashing kernel costs gradci nothing.
    None for an entry the child did not get to (it crashed or hung there)."""
    if not hasattr(os, "fork"):
        return [_try(e) for e in entries]
    from .spec.probe import in_child

    def report(out: IO[str]) -> None:
        for entry in entries:  # a line each, flushed: what the child finished survives its crash
            out.write(json.dumps(_try(entry)) + "\n")
            out.flush()

    results: list[dict[str, str] | None] = []
    for line in in_child(report, _PROBE_TIMEOUT).decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            results.append(json.loads(line))
    return results + [None] * (len(entries) - len(results))


def _apply_probe(entry: Found, problems: dict[str, str] | None) -> None:
    if problems is None:
        entry.todos.append("trying it once crashed or hung gradci's probe: check its sample")
        return
    if not problems.keys() & {"forward", "backward"}:  # a tensor was the right guess
        for value in _values(entry.sample):
            if value.guessed_type:
                value.todo = None
    if "forward" in problems:
        entry.todos.append(f"running it on this sample raised {problems['forward']}: fix the sample")
        return
    if "backward" in problems:
        entry.disabled = f"its backward raised {problems['backward']}"
        return
    if "gradgrad" in problems:
        entry.supports_gradgrad = False
        if not re.search(r"derivative for .* is not implemented", problems["gradgrad"]):
            entry.todos.append(
                f"double backward raised {problems['gradgrad']}; fail-gradgrad expects torch's "
                "'derivative for ... is not implemented': "
                + docs.url("own-operators.md", "without-double-backward")
            )
    # complex128 only where the user says so: a forward that runs says nothing of its complex
    # gradient (softsign's |x| is not holomorphic)
    if "complex128" not in problems:
        entry.notes.append("complex128 runs too: add it to dtypes if the op is meant for complex inputs")
    else:
        entry.notes.append(f"not complex128: it raised {problems['complex128']}")


# --- writing -------------------------------------------------------------------------------------


def _comment(text: str, limit: int = 200) -> str:
    """One printable line (YAML breaks lines at NEL, LS and PS too; isprintable() drops them)."""
    flat = "".join(c if c.isprintable() else " " for c in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return _comment(lines[0] if lines else type(exc).__name__)


def render_spec(packages: Sequence[str], entries: Sequence[Found]) -> str:
    lines = [
        f"# gradci-ops.yml: the operators gradci checks, written by gradci init ({__version__}) from "
        + _comment(", ".join(packages)),
        "# One sample each, built from the op's signature and tried once. Check the lines marked",
        "# TODO(gradci init) (gradci run counts those left); add samples: edge cases, other shapes.",
        "# The spec: " + docs.url("own-operators.md", "the-spec"),
        "",
        "import: [" + ", ".join(json.dumps(p) for p in packages) + "]",
        "",
        "ops:",
    ]
    active = [e for e in entries if e.disabled is None]
    for entry in entries:
        body = _entry_lines(entry)
        lines.append(f"  # {_comment(entry.origin)}")
        lines.extend(f"  # {_comment(note)}" for note in entry.notes)
        if entry.disabled is not None and active:
            lines.append(f"  # {TODO} left out: {_comment(entry.disabled)}")
            lines.extend("  # " + line[2:] for line in body)
        else:
            lines.extend(body)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _entry_lines(entry: Found) -> list[str]:
    out = [f"  - name: {json.dumps(entry.name)}", f"    op: {json.dumps(entry.op)}"]
    if entry.inplace:
        out.append(f"    inplace: {json.dumps(entry.inplace)}")
    out.append("    dtypes: [" + ", ".join(entry.dtypes) + "]")
    if not entry.supports_gradgrad:
        out.append("    supports_gradgrad: false  # double backward raises (gradci checks that it does)")
    out.extend(f"    # {TODO} {_comment(t)}" for t in entry.todos)
    if entry.sample is None:  # only a left-out entry has none
        return out
    first, args, kwargs = entry.sample
    out += ["    samples:", f"      - input: {first.yaml}" + _todo(first)]
    if args:
        out.append("        args:")
        out.extend(f"          - {a.yaml}" + _todo(a) for a in args)
    if kwargs:
        out.append("        kwargs:")
        out.extend(f"          {_key(k)}: {v.yaml}" + _todo(v) for k, v in kwargs)
    return out


def _key(name: str) -> str:
    """A mapping key, plain where YAML reads it back as that string (not ``on``, ``null``, ``1``)."""
    import yaml

    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and yaml.safe_load(f"{name}: 0") == {name: 0}
    return name if plain else json.dumps(name)


def _todo(value: Value) -> str:
    if value.todo:
        return f"  # {TODO} {_comment(value.todo)}"
    return f"  # {_comment(value.note)}" if value.note else ""


def todo_lines(path: Path) -> list[int]:
    """The lines of a spec that still hold a TODO of gradci init."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [i for i, line in enumerate(text.splitlines(), 1) if TODO in line]


# --- the workflow --------------------------------------------------------------------------------

# The pins of examples/workflows/pr-check.yml (tests/test_init.py keeps them in step).
WORKFLOW = """\
# gradci: the pull-request check, and on pushes to {branch} the base results that pull requests
# compare with (the artifact gradci-results-cpu). Written by gradci init; the workflows to copy:
# {workflows}
name: gradci

on:
  pull_request:
  push:
    branches: [{branch_yaml}]

permissions:
  contents: read
  checks: write         # the check run and its annotations
  pull-requests: write  # the comment
  actions: read         # the base branch's results artifact

jobs:
  gradients:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065 # v5.6.0
        with:
          python-version: "3.11"
      # gradci checks the torch and the project installed in the job's Python.
      - name: Install torch and the project
        run: |
          python -m pip install torch --index-url https://download.pytorch.org/whl/cpu
          python -m pip install -e .
      # On {branch} it uploads gradci-results-cpu (upload-artifact: true, the default).
      - uses: gradci/gradci@v1
        with:
          fail-on: new  # fail only on what this change broke
"""


def default_branch(directory: Path) -> str:
    """The remote's default branch where git knows it, else main."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        )
        branch = done.stdout.strip().removeprefix("origin/")
        if done.returncode == 0 and re.fullmatch(r"[\w./-]{1,100}", branch):
            return branch
    return "main"


def render_workflow(branch: str) -> str:
    return WORKFLOW.format(
        branch=_comment(branch),
        branch_yaml=json.dumps(branch),
        workflows=docs.url("action.md", "workflows-to-copy"),
    )


# --- the command ---------------------------------------------------------------------------------


def init(packages: Sequence[str], output: Path, *, force: bool, workflow: bool) -> int:
    directory = Path.cwd()
    targets = [output] + ([WORKFLOW_PATH] if workflow else [])
    for target in targets:
        if target.exists() and not force:
            raise UsageError(
                f"{target} exists; gradci init writes no file over another", hint="--force to replace it"
            )
    how = "named on the command line"
    if not packages:
        packages, how = guess_packages(directory)
    for name in packages:
        if not _NAME.match(name):
            raise UsageError(f"{name!r} is not a module name")
    cwd = str(directory)
    if cwd not in sys.path:  # as gradci run: the project's modules import without being installed
        sys.path.insert(0, cwd)
    import torch

    # torch's lazily registered ops are registered now, not counted as the project's
    import torch.testing._internal.opinfo.core

    before = set(torch._C._dispatch_get_all_op_names())
    modules, failed = _import_all(packages)
    after = set(torch._C._dispatch_get_all_op_names())
    print(
        f"gradci init: imported {', '.join(packages)} ({how}) and {len(modules) - len(packages)} submodules"
    )
    for problem in failed:
        print(f"gradci init: skipped {_comment(problem)}")
    library = _library_ops(before, after)
    functions = _functions(modules)
    entries = library + functions
    if not entries:
        raise UsageError(
            f"found no operators in {', '.join(packages)}: no torch.library op and no autograd.Function",
            hint="name the package that registers them: gradci init PACKAGE",
        )
    _unique_names(entries, packages)
    for entry in entries:
        if entry.disabled is None:
            build_sample(entry)
    live = [e for e in entries if e.disabled is None]
    for entry, problems in zip(live, _probe_all(live), strict=True):
        _apply_probe(entry, problems)
    namespaces = sorted({e.name.split(".")[0] for e in library})
    print(
        f"gradci init: found {len(library)} torch.library ops"
        + (f" (namespace {', '.join(namespaces)})" if namespaces else "")
        + f" and {len(functions)} autograd.Functions or functions that apply them"
    )
    text = render_spec(packages, entries)
    _write_checked(output, text)
    todos = todo_lines(output)
    written = sum(1 for e in entries if e.disabled is None or not any(x.disabled is None for x in entries))
    print(
        f"wrote {output}: {written} ops"
        + (f", {len(entries) - written} left out (commented)" if written < len(entries) else "")
        + (f", {counted(len(todos), 'TODO')} (line {', '.join(map(str, todos))})" if todos else ", no TODOs")
        + "; loaded back with gradci's spec loader: valid"
    )
    if workflow:
        branch = default_branch(directory)
        WORKFLOW_PATH.parent.mkdir(parents=True, exist_ok=True)
        WORKFLOW_PATH.write_text(render_workflow(branch), encoding="utf-8")
        print(f"wrote {WORKFLOW_PATH}: the pull-request check, and the base results on pushes to {branch}")
    print("next:")
    if todos:
        print(f"  check the TODO lines of {output}")
    found_here = output.parent == Path() and output.name in ("gradci-ops.yml", "gradci-ops.yaml")
    spec_flag = "" if found_here else f" --spec {output}"
    print(f"  gradci run{spec_flag}            # the checks, here")
    if workflow:
        print(f"  git add {output} {WORKFLOW_PATH} && git commit  # then push: pull requests get the check")
    return EXIT_OK


def _unique_names(entries: Sequence[Found], packages: Sequence[str]) -> None:
    """Python ops are named ``package.function``; a second of one name gets its module's too."""
    seen: set[str] = {e.name for e in entries if e.op.startswith("torch.ops.")}
    for entry in entries:
        if entry.op.startswith("torch.ops."):
            continue
        module = entry.op.partition(":")[0]
        candidates = [f"{module.split('.')[0]}.{entry.name}", f"{module}.{entry.name}"]
        name = next((c for c in map(_spec_name, candidates) if c not in seen), None)
        counter = 2
        while name is None or name in seen:
            name = _spec_name(f"{candidates[-1]}_{counter}")
            counter += 1
        entry.name = name
        seen.add(name)
        if not all(_NAME.match(part) for part in re.split(r"[:]", entry.op)):
            entry.disabled = "its import path cannot be written in the spec"


def _write_checked(output: Path, text: str) -> None:
    """Write beside ``output``, load it with gradci's spec loader, then put it in place."""
    from .spec.build import load_spec

    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = output.with_name(f".{output.name}.gradci-init")
    scratch.write_text(text, encoding="utf-8")
    try:
        load_spec(scratch)
    except SpecError as exc:  # gradci wrote a spec it cannot read: a bug in gradci, not the user's
        scratch.unlink()
        raise RuntimeError(f"gradci init wrote a spec that does not load: {exc}") from None
    except BaseException:
        scratch.unlink()
        raise
    scratch.replace(output)
