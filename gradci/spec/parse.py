"""Reading and validating gradci-ops.yml, without importing torch or anything of the project: every
error names the file, the line, the key and what was expected, and an unknown key suggests the
closest valid one."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gradci.checks import CHECK_NAMES, DTYPE_NAMES
from gradci.errors import SpecError
from gradci.options import PARSERS, key_of

from .model import (
    DOMAINS,
    GRAD_DTYPES,
    TENSOR_DTYPES,
    Expectation,
    OpSpec,
    SampleSpec,
    Spec,
    TensorSpec,
    Value,
    any_grad,
    any_random,
)

SPEC_VERSION = 1
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_VARIANT = re.compile(r"^[A-Za-z0-9_]+$")

_TOP_KEYS = ("version", "import", "defaults", "ops")
_EXTENSION = "x-"  # top-level keys left to the user (a place for YAML anchors), as in Compose files
_OP_KEYS = (
    "name",
    "variant",
    "op",
    "inplace",
    "dtypes",
    "samples",
    "supports_gradgrad",
    "gradgrad_error",
    "supports_inplace_autograd",
    "supports_forward_ad",
    "supports_fwgrad_bwgrad",
    "gradcheck",
    "skip",
    "xfail",
)
_OWN_KEYS = ("name", "variant", "op", "inplace", "samples")  # what no op inherits from defaults
_GRADCHECK_KEYS = (
    "atol",
    "rtol",
    "nondet_tol",
    "fast_mode",
    "check_batched_grad",
    "check_batched_gradgrad",
    "check_batched_forward_grad",
)
_SAMPLE_KEYS = ("input", "args", "kwargs", "broadcasts_input", "repeat")
MAX_REPEAT = 100  # each repeat is a gradcheck more in every test of the op
_TENSOR_KEYS = (
    "shape",
    "values",
    "requires_grad",
    "distribution",
    "domain",
    "range",
    "dtype",
    "noncontiguous",
    "permute",
)
_DISTRIBUTIONS = ("uniform", "normal")
_EXPECTATION_KEYS = ("reason", "dtypes")


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

    def mapping(
        self, node: Any, key: str, allowed: Sequence[str], what: str, *, ignored_prefix: str | None = None
    ) -> dict[str, tuple[Any, Any]]:
        """``{key: (key node, value node)}``; unknown and duplicate keys are errors, keys starting
        with ``ignored_prefix`` are left out."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, f"expected {what}, got {self.kind(node)}")
        items: dict[str, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(name, str):
                raise self.error(key_node, key, "keys must be plain words")
            where = f"{key}.{name}" if key else name
            if ignored_prefix is not None and name.startswith(ignored_prefix) and name != ignored_prefix:
                continue
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(allowed)}"
                if ignored_prefix is not None and not close:
                    hint += f"; {ignored_prefix}NAME keys are ignored (a place for YAML anchors)"
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
    from gradci.safeyaml import compose

    root = compose(Path(path), SpecError, "spec file")
    reader = _Reader(Path(path))
    if root is None:
        raise SpecError(f"{path}: the spec is empty", hint="list operators under 'ops:'")
    try:
        top = reader.mapping(
            root, "", _TOP_KEYS, "a mapping with 'ops' (and optionally 'import')", ignored_prefix=_EXTENSION
        )
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
    defaults = _defaults(reader, top["defaults"][1]) if "defaults" in top else {}
    if "ops" not in top:
        raise reader.error(root, "ops", "missing: the list of operators to check")
    op_nodes = reader.sequence(top["ops"][1], "ops", "a list of operators")
    if not op_nodes:
        raise reader.error(top["ops"][1], "ops", "expected at least one operator")
    ops: list[OpSpec] = []
    seen: dict[tuple[str, str], int] = {}
    for index, node in enumerate(op_nodes):
        op = _op(reader, node, index, defaults)
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


def _defaults(reader: _Reader, node: Any) -> dict[str, Any]:
    """``defaults:``: the settings every op inherits (not what names an op or its samples)."""
    items = reader.mapping(node, "defaults", _OP_KEYS, "a mapping of op settings every op inherits")
    for name in _OWN_KEYS:
        if name in items:
            raise reader.error(
                items[name][0],
                f"defaults.{name}",
                "not a default: each op gives its own",
                hint=f"defaults take {', '.join(k for k in _OP_KEYS if k not in _OWN_KEYS)}; "
                "share samples with a YAML anchor under an x- key",
            )
    return _settings(reader, items, "defaults", DTYPE_NAMES)


def _settings(
    reader: _Reader, items: dict[str, tuple[Any, Any]], key: str, inherited_dtypes: tuple[str, ...]
) -> dict[str, Any]:
    """The OpSpec fields of the keys an op may inherit from ``defaults`` (gradcheck's flattened)."""
    values: dict[str, Any] = {}
    if "dtypes" in items:
        values["dtypes"] = _dtypes(reader, items["dtypes"][1], f"{key}.dtypes")
    for flag in (
        "supports_gradgrad",
        "supports_inplace_autograd",
        "supports_forward_ad",
        "supports_fwgrad_bwgrad",
    ):
        if flag in items:
            values[flag] = reader.boolean(items[flag][1], f"{key}.{flag}")
    if "gradgrad_error" in items:
        values.update(_gradgrad_error(reader, items, key))
    if "gradcheck" in items:
        values.update(_gradcheck(reader, items["gradcheck"][1], f"{key}.gradcheck"))
    dtypes: tuple[str, ...] = values.get("dtypes", inherited_dtypes)
    for word, field_name in (("skip", "skips"), ("xfail", "xfails")):
        if word in items:
            values[field_name] = _expectations(reader, items[word][1], f"{key}.{word}", word, dtypes)
    return values


def _merge(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """An op's settings over the defaults: a key the op gives replaces the default, except that
    ``gradcheck`` merges setting by setting (its fields are flat here: atol and rtol, given together,
    replace both) and ``skip``/``xfail`` check by check (the op's skip or xfail of a check replaces
    the defaults' skip or xfail of that check)."""
    merged = {**defaults, **own}
    own_checks = {e.check for e in (*own.get("skips", ()), *own.get("xfails", ()))}
    for field_name in ("skips", "xfails"):
        inherited = tuple(e for e in defaults.get(field_name, ()) if e.check not in own_checks)
        merged[field_name] = inherited + own.get(field_name, ())
    if own.get("supports_gradgrad") is True:
        merged.pop("gradgrad_error", None)  # the op does support it: an inherited error is not its own
    return merged


def _op(reader: _Reader, node: Any, index: int, defaults: dict[str, Any]) -> OpSpec:
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
    values.update(_merge(defaults, _settings(reader, items, key, defaults.get("dtypes", OpSpec.dtypes))))
    dtypes: tuple[str, ...] = values.get("dtypes", OpSpec.dtypes)
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


def _gradgrad_error(reader: _Reader, items: dict[str, tuple[Any, Any]], key: str) -> dict[str, Any]:
    """``gradgrad_error: REGEX``: double backward raises its own words; the op has no gradgrad."""
    node = items["gradgrad_error"][1]
    pattern = reader.string(node, f"{key}.gradgrad_error", "a regular expression")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise reader.error(
            node, f"{key}.gradgrad_error", f"not a valid regular expression: {exc}", hint="Python's re syntax"
        ) from None
    if "supports_gradgrad" in items and reader.scalar(items["supports_gradgrad"][1]) is True:
        raise reader.error(
            items["supports_gradgrad"][0],
            f"{key}.supports_gradgrad",
            "true, but gradgrad_error says double backward raises",
            hint="leave supports_gradgrad out: gradgrad_error implies false",
        )
    return {"gradgrad_error": pattern, "supports_gradgrad": False}


def _gradcheck(reader: _Reader, node: Any, key: str) -> dict[str, Any]:
    items = reader.mapping(node, key, _GRADCHECK_KEYS, "a mapping of gradcheck settings")
    values: dict[str, Any] = {}
    for name in ("atol", "rtol", "nondet_tol"):
        if name in items:
            values[name] = reader.number(items[name][1], f"{key}.{name}")
    for name in ("fast_mode", "check_batched_grad", "check_batched_gradgrad", "check_batched_forward_grad"):
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
            if not any(any_grad(v, dtype) for v in sample.values()):
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
    sample = SampleSpec(value, args, kwargs, broadcasts, reader.line(node))
    if "repeat" in items:
        sample = replace(sample, repeat=_repeat(reader, items["repeat"][1], f"{key}.repeat", sample))
    return sample


def _repeat(reader: _Reader, node: Any, key: str, sample: SampleSpec) -> int:
    count = reader._plain(node, key, f"a whole number from 1 to {MAX_REPEAT}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPEAT:
        raise reader.error(
            node,
            key,
            f"expected a whole number from 1 to {MAX_REPEAT}, got {node.value!r}",
            hint="each repeat is one more gradcheck in every test of the op",
        )
    if count > 1 and not any(any_random(v) for v in sample.values()):
        raise reader.error(
            node,
            key,
            f"{count} identical samples: none of its tensors is random",
            hint="repeat draws random tensors ('shape') anew with another seed; literal 'values' stay the same",
        )
    return int(count)


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
        if values["requires_grad"] and values.get("dtype", "float64") not in GRAD_DTYPES:
            raise reader.error(
                items["requires_grad"][1],
                f"{key}.requires_grad",
                f"{values['dtype']} tensors cannot require grad",
                hint="only floating-point and complex tensors can",
            )
    if "noncontiguous" in items:
        values["noncontiguous"] = reader.boolean(items["noncontiguous"][1], f"{key}.noncontiguous")
    if "distribution" in items:
        values["distribution"] = _distribution(reader, items, key, values.get("dtype"))
    if "permute" in items:
        values["permute"] = _permutation(reader, items, key, values)
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


def _distribution(reader: _Reader, items: dict[str, tuple[Any, Any]], key: str, dtype: str | None) -> str:
    where = f"{key}.distribution"
    name = reader.words(items["distribution"][1], where, _DISTRIBUTIONS, "distribution")[0]
    if name == "uniform":
        return name
    if "values" in items:
        raise reader.error(items["distribution"][0], where, "literal 'values' take no distribution")
    if "domain" in items:
        raise reader.error(
            items["domain"][0],
            f"{key}.domain",
            "a normal tensor takes no domain",
            hint="give 'range' to clamp its values to [low, high]",
        )
    if dtype is not None and dtype not in GRAD_DTYPES:
        raise reader.error(
            items["distribution"][1],
            where,
            f"normal values need a floating-point or complex dtype, not {dtype}",
        )
    return name


def _permutation(
    reader: _Reader, items: dict[str, tuple[Any, Any]], key: str, values: dict[str, Any]
) -> tuple[int, ...]:
    """``permute: [1, 0]``: a permutation of the tensor's dims, other than the identity."""
    where, node = f"{key}.permute", items["permute"][1]
    if "noncontiguous" in items:
        raise reader.error(items["permute"][0], where, "give 'noncontiguous' or 'permute', not both")
    dims = len(values["shape"]) if "shape" in values else _depth(values.get("values"))
    order = reader.scalar(node)
    if (
        not isinstance(order, list)
        or sorted(order) != list(range(dims))
        or any(isinstance(d, bool) for d in order)
    ):
        raise reader.error(
            node,
            where,
            f"expected a permutation of the tensor's {dims} dims (0 to {dims - 1}), got {order!r}"
            if dims
            else f"a 0-d tensor has no dims to permute, got {order!r}",
        )
    if order == list(range(dims)):
        raise reader.error(
            node,
            where,
            f"{order} keeps the order: the tensor would be contiguous",
            hint="e.g. [1, 0] for a transposed matrix; 'noncontiguous: true' for a 1-d tensor",
        )
    return tuple(order)


def _depth(data: Any) -> int:
    depth = 0
    while isinstance(data, list) and data:
        depth, data = depth + 1, data[0]
    return depth


def _numeric(data: Any) -> bool:
    if isinstance(data, list):
        return bool(data) and all(_numeric(d) for d in data)
    return isinstance(data, int | float) and not isinstance(data, str)
