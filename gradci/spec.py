"""A project's operators declared in YAML (``gradci-ops.yml``), turned into real OpInfo objects.

Two steps. ``parse_spec`` reads and validates the file without importing torch; every error names
the file, the line, the key and what was expected, and an unknown key suggests the closest valid one.
``load_spec`` imports what the spec names, builds one ``OpInfo`` per entry (so planning, DecorateInfo
skips and xfails, results and reports are the same as for upstream ops) and, in a forked child so
that a crashing kernel cannot take gradci down, builds the samples and runs each op forward once, to
reject a dtype the op cannot take and a sample without a tensor that requires grad before any test
runs.

The file format is documented in docs/own-operators.md#the-spec.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import importlib
import json
import math
import os
import re
import select
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import CHECK_NAMES, DTYPE_NAMES, USER_DB
from .errors import SpecError

SPEC_FILES = ("gradci-ops.yml", "gradci-ops.yaml")
SPEC_VERSION = 1

# Value domains of generated tensors, as (low, high, random sign). The margin around 0 keeps
# finite differences (gradcheck's eps is 1e-6) away from singularities and kinks there.
DOMAINS: Mapping[str, tuple[float | None, float | None, bool]] = {
    "any": (None, None, False),  # make_tensor's default: [-9, 9] for floating point
    "positive": (0.1, 9.0, False),
    "negative": (-9.0, -0.1, False),
    "nonzero": (0.1, 9.0, True),  # |x| in [0.1, 9], either sign
}
# Tensor dtypes a sample may give explicitly (an index tensor, say); checks run in DTYPE_NAMES.
TENSOR_DTYPES = (
    "float64",
    "complex128",
    "float32",
    "complex64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
_GRAD_DTYPES = frozenset({"float64", "complex128", "float32", "complex64", "float16", "bfloat16"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_VARIANT = re.compile(r"^[A-Za-z0-9_]+$")
_PROBE_TIMEOUT = 60.0

_TOP_KEYS = ("version", "import", "ops")
_OP_KEYS = (
    "name",
    "variant",
    "op",
    "inplace",
    "dtypes",
    "samples",
    "supports_gradgrad",
    "supports_inplace_autograd",
    "gradcheck",
    "skip",
    "xfail",
)
_GRADCHECK_KEYS = ("atol", "rtol", "nondet_tol", "fast_mode", "check_batched_grad", "check_batched_gradgrad")
_SAMPLE_KEYS = ("input", "args", "kwargs", "broadcasts_input")
_TENSOR_KEYS = ("shape", "values", "requires_grad", "domain", "range", "dtype", "noncontiguous")
_EXPECTATION_KEYS = ("reason", "dtypes")


def find_spec(directory: Path) -> Path | None:
    """The spec in a project directory, if there is one (``--spec`` names another)."""
    found = [name for name in SPEC_FILES if (directory / name).is_file()]
    if len(found) > 1:
        raise SpecError(f"both {found[0]} and {found[1]} are here", hint="keep one of them")
    if not found:
        return None
    return Path(found[0]) if directory.resolve() == Path.cwd().resolve() else directory / found[0]


# --- the parsed spec (no torch) ------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """A tensor a sample creates afresh each time: random by ``shape``, or literal ``values``."""

    shape: tuple[int, ...] | None = None
    values: Any = None  # nested lists of numbers
    requires_grad: bool | None = None  # None: True where the dtype can require grad
    low: float | None = None
    high: float | None = None
    random_sign: bool = False
    dtype: str | None = None  # None: the dtype under test
    noncontiguous: bool = False

    def wants_grad(self, dtype: str) -> bool:
        own = self.dtype or dtype
        return own in _GRAD_DTYPES and self.requires_grad is not False

    def make(self, device: Any, dtype: Any, requires_grad: bool) -> Any:
        import torch
        from torch.testing import make_tensor
        from torch.testing._internal.common_utils import noncontiguous_like

        own = getattr(torch, self.dtype) if self.dtype else dtype
        if self.values is not None:
            tensor = torch.tensor(self.values, dtype=own, device=device)
        else:
            assert self.shape is not None
            tensor = make_tensor(self.shape, device=device, dtype=own, low=self.low, high=self.high)
            if self.random_sign:
                positive = make_tensor(self.shape, device=device, dtype=torch.bool)
                tensor = torch.where(positive, tensor, -tensor)
        if self.noncontiguous and tensor.numel() > 0:
            tensor = noncontiguous_like(tensor)
        grad = requires_grad and self.wants_grad(str(own).removeprefix("torch."))
        return tensor.detach().requires_grad_(grad)


Value = Any  # a TensorSpec, a scalar (bool, int, float, str, None), or a tuple of values (a list)


def _make_value(value: Value, device: Any, dtype: Any, requires_grad: bool) -> Any:
    if isinstance(value, TensorSpec):
        return value.make(device, dtype, requires_grad)
    if isinstance(value, tuple):
        return [_make_value(v, device, dtype, requires_grad) for v in value]
    return value


def _any_grad(value: Value, dtype: str) -> bool:
    if isinstance(value, TensorSpec):
        return value.wants_grad(dtype)
    if isinstance(value, tuple):
        return any(_any_grad(v, dtype) for v in value)
    return False


@dataclass(frozen=True)
class SampleSpec:
    input: Value
    args: tuple[Value, ...] = ()
    kwargs: tuple[tuple[str, Value], ...] = ()
    broadcasts_input: bool = False
    line: int = 0

    def values(self) -> Iterator[Value]:
        yield self.input
        yield from self.args
        yield from (v for _, v in self.kwargs)


@dataclass(frozen=True)
class SpecSamples:
    """An OpInfo ``sample_inputs_func`` over the samples written in the spec (fresh tensors per call)."""

    samples: tuple[SampleSpec, ...]

    def __call__(self, op: Any, device: Any, dtype: Any, requires_grad: bool, **kwargs: Any) -> Iterator[Any]:
        from torch.testing._internal.opinfo.core import SampleInput

        for sample in self.samples:

            def make(value: Value) -> Any:
                return _make_value(value, device, dtype, requires_grad)

            yield SampleInput(
                make(sample.input),
                args=tuple(make(a) for a in sample.args),
                kwargs={k: make(v) for k, v in sample.kwargs},
                broadcasts_input=sample.broadcasts_input,
            )


@dataclass(frozen=True)
class Expectation:
    """A ``skip`` or ``xfail`` of one check, with its reason, for some or all dtypes."""

    check: str
    reason: str
    dtypes: tuple[str, ...] | None
    line: int


@dataclass(frozen=True)
class OpSpec:
    index: int
    line: int
    name: str
    op: str  # import path
    variant: str = ""
    inplace: str | None = None
    dtypes: tuple[str, ...] = ("float64",)
    samples: tuple[SampleSpec, ...] | str = ()  # or the import path of a sample function
    supports_gradgrad: bool = True
    supports_inplace_autograd: bool = True
    atol: float | None = None
    rtol: float | None = None
    nondet_tol: float = 0.0
    fast_mode: bool | None = None  # None: gradcheck's default (fast, unless the slow-gradcheck env)
    check_batched_grad: bool | None = None
    check_batched_gradgrad: bool | None = None
    skips: tuple[Expectation, ...] = ()
    xfails: tuple[Expectation, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)  # key -> line, for errors found later

    @property
    def key(self) -> str:
        return f"ops[{self.index}]"

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)

    @property
    def full_name(self) -> str:
        return f"{self.name}.{self.variant}" if self.variant else self.name


@dataclass(frozen=True)
class Spec:
    path: Path
    imports: tuple[tuple[str, int], ...]
    ops: tuple[OpSpec, ...]


# --- reading YAML nodes with their lines ---------------------------------------------------------


class _Reader:
    def __init__(self, path: Path) -> None:
        import yaml

        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: Any, key: str, message: str, hint: str | None = None) -> SpecError:
        line = node.start_mark.line + 1 if node is not None else 1
        return SpecError(f"{self.path}:{line}: {key}: {message}", hint=hint)

    @staticmethod
    def line(node: Any) -> int:
        return int(node.start_mark.line) + 1

    def scalar(self, node: Any) -> Any:
        return self._constructor.construct_object(node, deep=True)

    @staticmethod
    def kind(node: Any) -> str:
        import yaml

        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        return repr(node.value)

    def mapping(self, node: Any, key: str, allowed: Sequence[str], what: str) -> dict[str, tuple[Any, Any]]:
        """``{key: (key node, value node)}``; unknown and duplicate keys are errors."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, f"expected {what}, got {self.kind(node)}")
        items: dict[str, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(name, str):
                raise self.error(key_node, key, "keys must be plain words")
            where = f"{key}.{name}" if key else name
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(allowed)}"
                raise self.error(key_node, where, "unknown key", hint=hint)
            if name in items:
                raise self.error(key_node, where, "given twice")
            items[name] = (key_node, value_node)
        return items

    def sequence(self, node: Any, key: str, what: str) -> list[Any]:
        import yaml

        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, key, f"expected {what}, got {self.kind(node)}")
        return list(node.value)

    def boolean(self, node: Any, key: str) -> bool:
        value = self._plain(node, key, "true or false")
        if not isinstance(value, bool):
            raise self.error(node, key, f"expected true or false, got {node.value!r}")
        return value

    def number(self, node: Any, key: str, *, minimum: float | None = 0.0) -> float:
        value = self._plain(node, key, "a number")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(node, key, f"expected a number, got {node.value!r}")
        if minimum is not None and value < minimum:
            raise self.error(node, key, f"expected a number >= {minimum:g}, got {node.value!r}")
        return float(value)

    def string(self, node: Any, key: str, what: str = "a string") -> str:
        value = self._plain(node, key, what)
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, key, f"expected {what}, got {node.value!r}")
        return value.strip()

    def _plain(self, node: Any, key: str, what: str) -> Any:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, key, f"expected {what}, got {self.kind(node)}")
        return self.scalar(node)

    def words(self, node: Any, key: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
        """A list of names out of ``allowed`` (a single name is accepted too)."""
        import yaml

        nodes = [node] if isinstance(node, yaml.ScalarNode) else self.sequence(node, key, f"a list of {what}")
        if not nodes:
            raise self.error(node, key, f"expected at least one {what}")
        names: list[str] = []
        for i, item in enumerate(nodes):
            where = f"{key}[{i}]" if isinstance(node, yaml.SequenceNode) else key
            name = self.string(item, where, what)
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(allowed)}"
                raise self.error(item, where, f"unknown {what} {name!r}", hint=hint)
            names.append(name)
        return tuple(dict.fromkeys(names))


# --- parsing -------------------------------------------------------------------------------------


def parse_spec(path: Path) -> Spec:
    """Read and validate a spec file; no torch import, nothing of the project imported."""
    from .safeyaml import compose

    root = compose(Path(path), SpecError, "spec file")
    reader = _Reader(Path(path))
    if root is None:
        raise SpecError(f"{path}: the spec is empty", hint="list operators under 'ops:'")
    try:
        top = reader.mapping(root, "", _TOP_KEYS, "a mapping with 'ops' (and optionally 'import')")
    except SpecError as exc:
        if "unknown key" in exc.message and _is_run_option(exc.message):
            raise SpecError(
                exc.message,
                hint="run options belong in .gradci.yml or [tool.gradci] of pyproject.toml; "
                "this file lists operators",
            ) from None
        raise
    if "version" in top:
        node = top["version"][1]
        if reader.scalar(node) != SPEC_VERSION:
            raise reader.error(node, "version", f"this gradci reads spec version {SPEC_VERSION}")
    imports = _imports(reader, top["import"][1]) if "import" in top else ()
    if "ops" not in top:
        raise reader.error(root, "ops", "missing: the list of operators to check")
    op_nodes = reader.sequence(top["ops"][1], "ops", "a list of operators")
    if not op_nodes:
        raise reader.error(top["ops"][1], "ops", "expected at least one operator")
    ops: list[OpSpec] = []
    seen: dict[tuple[str, str], int] = {}
    for index, node in enumerate(op_nodes):
        op = _op(reader, node, index)
        ident = (op.name, op.variant)
        if ident in seen:
            raise reader.error(
                node,
                op.key,
                f"a second operator named {op.full_name!r}; the first is at line {seen[ident]}",
                hint="give one a distinct name or variant",
            )
        seen[ident] = op.line
        ops.append(op)
    return Spec(Path(path), imports, tuple(ops))


def _is_run_option(message: str) -> bool:
    from .options import PARSERS, key_of

    match = re.search(r": ([\w-]+): unknown key", message)
    return match is not None and match[1].replace("_", "-") in {key_of(n) for n in PARSERS}


def _imports(reader: _Reader, node: Any) -> tuple[tuple[str, int], ...]:
    import yaml

    nodes = [node] if isinstance(node, yaml.ScalarNode) else reader.sequence(node, "import", "module names")
    found = []
    for i, item in enumerate(nodes):
        where = f"import[{i}]" if isinstance(node, yaml.SequenceNode) else "import"
        name = reader.string(item, where, "a module name")
        if not _NAME.match(name):
            raise reader.error(item, where, f"expected a module name such as 'mypkg.ops', got {name!r}")
        found.append((name, reader.line(item)))
    return tuple(found)


def _import_path(reader: _Reader, node: Any, key: str, what: str) -> str:
    text = reader.string(node, key, what)
    module, colon, attribute = text.partition(":")
    if not _NAME.match(module) or (colon and not _NAME.match(attribute)):
        raise reader.error(
            node, key, f"expected {what} such as 'mypkg.ops:fused_gelu' or 'torch.ops.mylib.op', got {text!r}"
        )
    return text


def _default_name(path: str) -> str:
    """``torch.ops.mylib.fused_gelu.default`` -> ``mylib.fused_gelu``; ``mypkg.ops:fused_gelu`` -> ``fused_gelu``."""
    if path.startswith("torch.ops."):
        parts = path.split(".")[2:]
        if len(parts) == 3 and parts[2] == "default":
            parts = parts[:2]
        return ".".join(parts)
    return re.split(r"[.:]", path)[-1]


def _op(reader: _Reader, node: Any, index: int) -> OpSpec:
    key = f"ops[{index}]"
    items = reader.mapping(node, key, _OP_KEYS, "a mapping with at least 'op' and 'samples'")
    lines = {name: reader.line(value) for name, (_, value) in items.items()}
    for required in ("op", "samples"):
        if required not in items:
            raise reader.error(node, key, f"missing {required!r}", hint=_REQUIRED_HINTS[required])
    op_path = _import_path(reader, items["op"][1], f"{key}.op", "an import path")
    values: dict[str, Any] = {"op": op_path}
    if "name" in items:
        name = reader.string(items["name"][1], f"{key}.name", "an operator name")
    else:
        name = _default_name(op_path)
    if not _NAME.match(name):
        raise reader.error(
            items.get("name", items["op"])[1],
            f"{key}.name",
            f"expected a dotted name of letters, digits and underscores, got {name!r}",
        )
    values["name"] = name
    if "variant" in items:
        variant = reader.string(items["variant"][1], f"{key}.variant", "a variant name")
        if not _VARIANT.match(variant):
            raise reader.error(
                items["variant"][1],
                f"{key}.variant",
                f"expected letters, digits and underscores, got {variant!r}",
            )
        values["variant"] = variant
    if "inplace" in items:
        values["inplace"] = _import_path(reader, items["inplace"][1], f"{key}.inplace", "an import path")
    if "dtypes" in items:
        values["dtypes"] = _dtypes(reader, items["dtypes"][1], f"{key}.dtypes")
    for flag in ("supports_gradgrad", "supports_inplace_autograd"):
        if flag in items:
            values[flag] = reader.boolean(items[flag][1], f"{key}.{flag}")
    if "gradcheck" in items:
        values.update(_gradcheck(reader, items["gradcheck"][1], f"{key}.gradcheck"))
    dtypes: tuple[str, ...] = values.get("dtypes", OpSpec.dtypes)
    for word, field_name in (("skip", "skips"), ("xfail", "xfails")):
        if word in items:
            values[field_name] = _expectations(reader, items[word][1], f"{key}.{word}", word, dtypes)
    values["samples"] = _samples(reader, items["samples"][1], f"{key}.samples", dtypes)
    return OpSpec(index=index, line=reader.line(node), lines=lines, **values)


_REQUIRED_HINTS = {
    "op": "the callable to check, e.g. op: mypkg.ops:fused_gelu or op: torch.ops.mylib.fused_gelu.default",
    "samples": "a list of sample inputs, e.g. samples: [{input: {shape: [3, 4]}}], "
    "or a function: samples: mypkg.testing:fused_gelu_samples",
}


def _dtypes(reader: _Reader, node: Any, key: str) -> tuple[str, ...]:
    names = reader.words(node, key, (*DTYPE_NAMES, *TENSOR_DTYPES), "dtype")
    for i, name in enumerate(names):
        if name not in DTYPE_NAMES:
            item = node.value[i] if hasattr(node, "value") and isinstance(node.value, list) else node
            raise reader.error(
                item,
                key,
                f"gradient checks run in {' and '.join(DTYPE_NAMES)} only, not {name}",
                hint="gradcheck needs double precision, as upstream's TestBwdGradients",
            )
    return tuple(n for n in DTYPE_NAMES if n in names)


def _gradcheck(reader: _Reader, node: Any, key: str) -> dict[str, Any]:
    items = reader.mapping(node, key, _GRADCHECK_KEYS, "a mapping of gradcheck settings")
    values: dict[str, Any] = {}
    for name in ("atol", "rtol", "nondet_tol"):
        if name in items:
            values[name] = reader.number(items[name][1], f"{key}.{name}")
    for name in ("fast_mode", "check_batched_grad", "check_batched_gradgrad"):
        if name in items:
            values[name] = reader.boolean(items[name][1], f"{key}.{name}")
    if ("atol" in values) != ("rtol" in values):
        given = "atol" if "atol" in values else "rtol"
        raise reader.error(
            items[given][0],
            f"{key}.{given}",
            "give atol and rtol together",
            hint="gradcheck's defaults are atol 1e-05, rtol 0.001",
        )
    return values


def _expectations(
    reader: _Reader, node: Any, key: str, word: str, op_dtypes: tuple[str, ...]
) -> tuple[Expectation, ...]:
    items = reader.mapping(node, key, CHECK_NAMES, "a mapping of check: reason")
    found = []
    for check, (_, value) in items.items():
        where = f"{key}.{check}"
        dtypes: tuple[str, ...] | None = None
        import yaml

        if isinstance(value, yaml.MappingNode):
            detail = reader.mapping(
                value, where, _EXPECTATION_KEYS, "a reason, or {reason: ..., dtypes: [...]}"
            )
            if "reason" not in detail:
                raise reader.error(value, where, "missing 'reason'", hint=f"say why the {word} is there")
            reason = reader.string(detail["reason"][1], f"{where}.reason", "a reason")
            if "dtypes" in detail:
                dtypes = _dtypes(reader, detail["dtypes"][1], f"{where}.dtypes")
                unused = [d for d in dtypes if d not in op_dtypes]
                if unused:
                    raise reader.error(
                        detail["dtypes"][1],
                        f"{where}.dtypes",
                        f"the op is not checked in {', '.join(unused)}",
                    )
        else:
            reason = reader.string(value, where, "a reason (why the check is " + word + "ped)")
        found.append(Expectation(check, reason, dtypes, reader.line(value)))
    return tuple(found)


def _samples(reader: _Reader, node: Any, key: str, dtypes: tuple[str, ...]) -> tuple[SampleSpec, ...] | str:
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return _import_path(reader, node, key, "a list of samples, or the import path of a sample function")
    nodes = reader.sequence(node, key, "a list of samples, or the import path of a sample function")
    if not nodes:
        raise reader.error(node, key, "expected at least one sample")
    samples = []
    for i, item in enumerate(nodes):
        where = f"{key}[{i}]"
        sample = _sample(reader, item, where)
        for dtype in dtypes:
            if not any(_any_grad(v, dtype) for v in sample.values()):
                raise reader.error(
                    item,
                    where,
                    f"creates no tensor that requires grad in {dtype}",
                    hint="gradcheck needs at least one floating-point or complex tensor with requires_grad",
                )
        samples.append(sample)
    return tuple(samples)


def _sample(reader: _Reader, node: Any, key: str) -> SampleSpec:
    items = reader.mapping(node, key, _SAMPLE_KEYS, "a sample: a mapping with 'input' (and 'args', 'kwargs')")
    if "input" not in items:
        raise reader.error(
            node, key, "missing 'input'", hint="the first argument, e.g. input: {shape: [3, 4]}"
        )
    value = _value(reader, items["input"][1], f"{key}.input")
    args: tuple[Value, ...] = ()
    if "args" in items:
        arg_nodes = reader.sequence(items["args"][1], f"{key}.args", "a list of further positional arguments")
        args = tuple(_value(reader, a, f"{key}.args[{i}]") for i, a in enumerate(arg_nodes))
    kwargs: tuple[tuple[str, Value], ...] = ()
    if "kwargs" in items:
        kw_node = items["kwargs"][1]
        import yaml

        if not isinstance(kw_node, yaml.MappingNode):
            raise reader.error(
                kw_node,
                f"{key}.kwargs",
                f"expected a mapping of keyword arguments, got {reader.kind(kw_node)}",
            )
        pairs = []
        for k_node, v_node in kw_node.value:
            name = reader.string(k_node, f"{key}.kwargs", "an argument name")
            if not name.isidentifier():
                raise reader.error(k_node, f"{key}.kwargs", f"{name!r} is not an argument name")
            pairs.append((name, _value(reader, v_node, f"{key}.kwargs.{name}")))
        kwargs = tuple(pairs)
    broadcasts = False
    if "broadcasts_input" in items:
        broadcasts = reader.boolean(items["broadcasts_input"][1], f"{key}.broadcasts_input")
    return SampleSpec(value, args, kwargs, broadcasts, reader.line(node))


def _value(reader: _Reader, node: Any, key: str) -> Value:
    """A tensor (a mapping), a list of values, or a plain scalar."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return _tensor(reader, node, key)
    if isinstance(node, yaml.SequenceNode):
        return tuple(_value(reader, item, f"{key}[{i}]") for i, item in enumerate(node.value))
    value = reader.scalar(node)
    if value is not None and not isinstance(value, bool | int | float | str):
        raise reader.error(
            node,
            key,
            f"expected a number, a string, true/false, null, a tensor or a list, got {node.value!r}",
        )
    return value


def _tensor(reader: _Reader, node: Any, key: str) -> TensorSpec:
    items = reader.mapping(node, key, _TENSOR_KEYS, "a tensor: {shape: [...]} or {values: [...]}")
    if ("shape" in items) == ("values" in items):
        raise reader.error(
            node,
            key,
            "a tensor needs 'shape' (random values) or 'values' (literal), and only one of them",
            hint="e.g. {shape: [3, 4]} or {values: [[1, 2], [3, 4]]}",
        )
    values: dict[str, Any] = {}
    if "shape" in items:
        shape_node = items["shape"][1]
        shape = reader.scalar(shape_node)
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = [shape]
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise reader.error(
                shape_node,
                f"{key}.shape",
                "expected a list of sizes (whole numbers >= 0), e.g. [3, 4]; [] is a 0-d tensor",
            )
        values["shape"] = tuple(shape)
    if "values" in items:
        data = reader.scalar(items["values"][1])
        if not _numeric(data):
            raise reader.error(
                items["values"][1], f"{key}.values", "expected a number or nested lists of numbers"
            )
        values["values"] = data
    if "dtype" in items:
        values["dtype"] = reader.words(items["dtype"][1], f"{key}.dtype", TENSOR_DTYPES, "dtype")[0]
    if "requires_grad" in items:
        values["requires_grad"] = reader.boolean(items["requires_grad"][1], f"{key}.requires_grad")
        if values["requires_grad"] and values.get("dtype", "float64") not in _GRAD_DTYPES:
            raise reader.error(
                items["requires_grad"][1],
                f"{key}.requires_grad",
                f"{values['dtype']} tensors cannot require grad",
                hint="only floating-point and complex tensors can",
            )
    if "noncontiguous" in items:
        values["noncontiguous"] = reader.boolean(items["noncontiguous"][1], f"{key}.noncontiguous")
    if "domain" in items and "range" in items:
        raise reader.error(items["range"][0], f"{key}.range", "give 'domain' or 'range', not both")
    if ("domain" in items or "range" in items) and "values" in items:
        given = "domain" if "domain" in items else "range"
        raise reader.error(items[given][0], f"{key}.{given}", "literal 'values' take no value domain")
    if values.get("dtype") == "bool" and ("domain" in items or "range" in items):
        raise reader.error(node, key, "a bool tensor takes no value domain")
    if "domain" in items:
        domain = reader.words(items["domain"][1], f"{key}.domain", tuple(DOMAINS), "domain")[0]
        values["low"], values["high"], values["random_sign"] = DOMAINS[domain]
    if "range" in items:
        range_node = items["range"][1]
        bounds = reader.sequence(range_node, f"{key}.range", "[low, high]")
        if len(bounds) != 2:
            raise reader.error(range_node, f"{key}.range", f"expected [low, high], got {len(bounds)} values")
        low = reader.number(bounds[0], f"{key}.range[0]", minimum=None)
        high = reader.number(bounds[1], f"{key}.range[1]", minimum=None)
        if not low < high:
            raise reader.error(range_node, f"{key}.range", f"expected low < high, got [{low:g}, {high:g}]")
        values["low"], values["high"] = low, high
    return TensorSpec(**values)


def _numeric(data: Any) -> bool:
    if isinstance(data, list):
        return bool(data) and all(_numeric(d) for d in data)
    return isinstance(data, int | float) and not isinstance(data, str)


# --- loading: import, build OpInfos, probe -------------------------------------------------------


class _Unresolved(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def resolve_object(path: str) -> Any:
    """The object an import path names: ``pkg.mod:attr.attr`` or a dotted path ``pkg.mod.func``."""
    if ":" in path:
        module_name, _, attributes = path.partition(":")
        obj = _import(module_name)
        parts = attributes.split(".")
        walked = module_name
    else:
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            candidate = ".".join(parts[:cut])
            try:
                obj = _import(candidate, missing_ok=True)
            except _Missing:
                continue
            parts, walked = parts[cut:], candidate
            break
        else:
            raise _Unresolved(
                f"no module {parts[0]!r}", hint="is the package installed, or listed under 'import:'?"
            )
    for part in parts:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _Unresolved(
                f"{walked!r} has no attribute {part!r}", hint=_attribute_hint(obj, part)
            ) from None
        except Exception as exc:  # a lazy attribute that raised (torch.ops looks ops up on access)
            raise _Unresolved(
                f"looking up {part!r} in {walked!r} raised {type(exc).__name__}: {exc}"
            ) from None
        walked = f"{walked}.{part}"
    return obj


class _Missing(Exception):
    pass


def _import(name: str, *, missing_ok: bool = False) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if missing_ok and exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise _Missing from None
        raise _Unresolved(f"cannot import {name!r}: {exc}") from None
    except Exception as exc:  # the project's module raised while importing
        raise _Unresolved(f"importing {name!r} raised {type(exc).__name__}: {exc}") from None


def _attribute_hint(obj: Any, name: str) -> str | None:
    candidates = [n for n in dir(obj) if not n.startswith("_") or name.startswith("_")]
    namespace = getattr(obj, "name", None)
    if type(obj).__name__ == "_OpNamespace" and isinstance(namespace, str):
        import torch

        prefix = f"{namespace}::"
        candidates = [n[len(prefix) :] for n in torch._C._dispatch_get_all_op_names() if n.startswith(prefix)]
        if not candidates:
            return f"no operator is registered in torch.ops.{namespace}: is the library imported ('import:')?"
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"did you mean {', '.join(repr(c) for c in close)}?" if close else None


class _Shared:
    """A callable that OpInfo's deep copy of its arguments must not copy (it cannot)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self

    def __repr__(self) -> str:
        return repr(self.fn)


def as_op(obj: Any) -> Any:
    """What a spec's ``op`` path names, as a callable OpInfo can hold; None when it is no op."""
    import torch

    if isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
        return obj.apply  # the class itself is not called; its apply is
    if hasattr(obj, "_opoverload") and hasattr(obj, "register_autograd"):
        return obj._opoverload  # a torch.library.custom_op: checked through its torch.ops overload
    if isinstance(obj, type) or not callable(obj):
        return None
    try:
        copy.deepcopy(obj)
    except Exception:
        return _Shared(obj)
    return obj


def _what(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _resolve(spec: Spec, op: OpSpec, key: str, path: str, what: str) -> Any:
    try:
        obj = resolve_object(path)
    except _Unresolved as exc:
        raise SpecError(
            f"{spec.path}:{op.line_of(key)}: {op.key}.{key}: {what} {path!r}: {exc.message}", hint=exc.hint
        ) from None
    return obj


def build_opinfo(spec: Spec, op: OpSpec) -> Any:
    """One OpInfo for one spec entry, with the spec's skips, xfails and tolerances as DecorateInfos."""
    import unittest

    import torch
    from torch.testing._internal.common_device_type import tol, toleranceOverride
    from torch.testing._internal.opinfo.core import DecorateInfo, OpInfo

    from .checks import BY_NAME
    from .suite import GENERIC_CLASS, expected_failure

    fn = as_op(raw := _resolve(spec, op, "op", op.op, "op"))
    if fn is None:
        raise SpecError(
            f"{spec.path}:{op.line_of('op')}: {op.key}.op: {op.op!r} is {_what(raw)}, not an op",
            hint="name a function, a torch.library custom op, a torch.ops overload or an autograd.Function",
        )
    inplace = None
    if op.inplace is not None:
        inplace = as_op(raw := _resolve(spec, op, "inplace", op.inplace, "in-place variant"))
        if inplace is None:
            raise SpecError(
                f"{spec.path}:{op.line_of('inplace')}: {op.key}.inplace: {op.inplace!r} is {_what(raw)}, not an op"
            )
    samples = _sample_function(spec, op) if isinstance(op.samples, str) else SpecSamples(op.samples)
    dtypes = tuple(getattr(torch, d) for d in op.dtypes)
    decorators = []
    for expectation, decorator in (
        *((e, unittest.skip(e.reason)) for e in op.skips),
        *((e, expected_failure(e.reason)) for e in op.xfails),
    ):
        decorators.append(
            DecorateInfo(
                decorator,
                GENERIC_CLASS,
                BY_NAME[expectation.check].method,
                dtypes=tuple(getattr(torch, d) for d in expectation.dtypes) if expectation.dtypes else None,
            )
        )
    if op.atol is not None and op.rtol is not None:
        # Upstream's TestGradients passes no atol/rtol to gradcheck; gradci's suite applies this
        # toleranceOverride to gradcheck and gradgradcheck of a project's ops (see suite.py).
        override = toleranceOverride({d: tol(atol=op.atol, rtol=op.rtol) for d in dtypes})
        decorators.append(DecorateInfo(override, GENERIC_CLASS))
    return OpInfo(
        op.name,
        variant_test_name=op.variant,
        op=fn,
        inplace_variant=inplace,
        method_variant=None,
        operator_variant=None,
        inplace_operator_variant=None,
        dtypes=dtypes,
        sample_inputs_func=samples,
        supports_out=False,
        supports_autograd=True,
        supports_gradgrad=op.supports_gradgrad,
        supports_inplace_autograd=op.supports_inplace_autograd,
        gradcheck_nondet_tol=op.nondet_tol,
        gradcheck_fast_mode=op.fast_mode,
        check_batched_grad=op.check_batched_grad,
        check_batched_gradgrad=op.check_batched_gradgrad,
        decorators=tuple(decorators),
    )


def _sample_function(spec: Spec, op: OpSpec) -> Any:
    assert isinstance(op.samples, str)
    func = _resolve(spec, op, "samples", op.samples, "sample function")
    if not callable(func):
        raise SpecError(
            f"{spec.path}:{op.line_of('samples')}: {op.key}.samples: {op.samples!r} is {_what(func)}, "
            "not a function",
            hint="a sample function takes (op, device, dtype, requires_grad, **kwargs) and yields SampleInputs",
        )
    return as_op(func) or func


def load_spec(path: Path, *, root: Path | None = None, probe: bool = True) -> list[Any]:
    """The ``OpEntry`` s of a spec file: parsed, imported, built, and (``probe``) tried once."""
    from .catalog import Location, OpEntry, mark_user_op
    from .locate import relative_location

    spec = parse_spec(path)
    # Like pytest's rootdir: the project's own modules import without being installed.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module, line in spec.imports:
        try:
            _import(module)
        except _Unresolved as exc:
            raise SpecError(f"{spec.path}:{line}: import: {exc.message}", hint=exc.hint) from None
    built = [(op, build_opinfo(spec, op)) for op in spec.ops]
    if probe:
        problem = probe_ops(spec, built)
        if problem is not None:
            raise problem
    entries = []
    for op, info in built:
        location: Location = relative_location(spec.path, op.line, root=root)
        entries.append(OpEntry(mark_user_op(info), USER_DB, origin=str(path), location=location))
    return entries


# --- the probe: samples built, each op run forward once, in a forked child -----------------------


def probe_ops(spec: Spec, built: Sequence[tuple[OpSpec, Any]]) -> SpecError | None:
    """Run ``_probe`` in a child process: a kernel that crashes or hangs there costs nothing.

    A child that dies or times out is not an error here: the checks will meet the same op and
    report it as those tests' failure, with the crash isolation of the runner.
    """
    if not hasattr(os, "fork"):
        found = _probe(spec, built)
        return SpecError(found[0], hint=found[1]) if found else None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        code = 0
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            found = _probe(spec, built)
            with os.fdopen(write_end, "w") as out:
                json.dump(found, out)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + _PROBE_TIMEOUT
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([pipe], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        found = json.loads(b"".join(chunks) or b"null")
    except ValueError:
        return None
    return SpecError(found[0], hint=found[1]) if found else None


def _probe(spec: Spec, built: Sequence[tuple[OpSpec, Any]]) -> tuple[str, str | None] | None:
    """The first problem: (message, hint), or None. Runs the project's code: call it in a child."""
    import torch

    for op, info in built:
        samples: dict[str, Any] = {}
        for dtype_name in DTYPE_NAMES:
            dtype = getattr(torch, dtype_name)
            try:
                samples[dtype_name] = list(info.sample_inputs("cpu", dtype, requires_grad=True))
            except Exception as exc:
                if dtype_name not in op.dtypes:
                    continue  # only a reference for the dtypes it is checked in
                return (
                    f"{spec.path}:{op.line_of('samples')}: {op.key}.samples: {op.samples!r} raised "
                    f"{type(exc).__name__} in {dtype_name}: {_first_line(exc)}",
                    None,
                )
            if dtype_name not in op.dtypes:
                continue
            if not samples[dtype_name]:
                return (
                    f"{spec.path}:{op.line_of('samples')}: {op.key}.samples: {op.samples!r} yields no sample",
                    None,
                )
            for i, sample in enumerate(samples[dtype_name]):
                if not _grad_tensors(sample):
                    return (
                        f"{spec.path}:{op.line_of('samples')}: {op.key}.samples: sample {i} of "
                        f"{op.samples!r} creates no tensor that requires grad in {dtype_name}",
                        "gradcheck needs at least one floating-point or complex tensor with requires_grad",
                    )
        # A dtype the op cannot take: the forward raises in it but runs in the other one.
        errors: dict[str, BaseException | None] = {}
        for dtype_name, found in samples.items():
            if found:
                errors[dtype_name] = _forward_error(info, found[0])
        runs = [d for d, e in errors.items() if e is None]
        for dtype_name in op.dtypes:
            error = errors.get(dtype_name)
            if error is not None and runs:
                return (
                    f"{spec.path}:{op.line_of('dtypes')}: {op.key}.dtypes: {op.full_name} cannot take "
                    f"{dtype_name}: {type(error).__name__}: {_first_line(error)}",
                    f"it runs in {', '.join(runs)}; leave {dtype_name} out of its dtypes",
                )
    return None


def _forward_error(info: Any, sample: Any) -> BaseException | None:
    import torch

    try:
        with torch.no_grad():
            info.op(sample.input, *sample.args, **sample.kwargs)
    except Exception as exc:
        return exc
    return None


def _grad_tensors(sample: Any) -> bool:
    import torch

    def visit(value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            return bool(value.requires_grad)
        if isinstance(value, list | tuple):
            return any(visit(v) for v in value)
        return False

    return (
        visit(sample.input)
        or any(visit(a) for a in sample.args)
        or any(visit(v) for v in sample.kwargs.values())
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
