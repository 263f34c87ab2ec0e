"""From a parsed spec to OpInfo objects: what its import paths name is imported and checked, and each
entry becomes an ``OpInfo`` (so planning, DecorateInfo skips and xfails, results and reports are the
same as for upstream ops)."""

from __future__ import annotations

import copy
import difflib
import importlib
import sys
from pathlib import Path
from typing import Any

from gradci.checks import USER_DB
from gradci.errors import SpecError

from .model import OpSpec, Spec, SpecSamples
from .parse import parse_spec
from .probe import probe_ops


class _Unresolved(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def resolve_object(path: str) -> Any:
    """The object an import path names: ``pkg.mod:attr.attr`` or a dotted path ``pkg.mod.func``."""
    if ":" in path:
        module_name, _, attributes = path.partition(":")
        obj = import_module(module_name)
        parts = attributes.split(".")
        walked = module_name
    else:
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            candidate = ".".join(parts[:cut])
            try:
                obj = import_module(candidate, missing_ok=True)
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


def import_module(name: str, *, missing_ok: bool = False) -> Any:
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

    from gradci.catalog import GRADGRAD_ERROR
    from gradci.checks import BY_NAME, SUITES
    from gradci.suite import expected_failure

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
                BY_NAME[expectation.check].suite.generic_class,
                BY_NAME[expectation.check].method,
                dtypes=tuple(getattr(torch, d) for d in expectation.dtypes) if expectation.dtypes else None,
            )
        )
    if op.atol is not None and op.rtol is not None:
        # Upstream's TestGradients passes no atol/rtol to gradcheck; gradci's suite applies this
        # toleranceOverride to gradcheck and gradgradcheck of a project's ops (see suite.py).
        override = toleranceOverride({d: tol(atol=op.atol, rtol=op.rtol) for d in dtypes})
        decorators.extend(DecorateInfo(override, suite.generic_class) for suite in SUITES)
    info = OpInfo(
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
        supports_forward_ad=op.supports_forward_ad,
        supports_fwgrad_bwgrad=op.supports_fwgrad_bwgrad,
        gradcheck_nondet_tol=op.nondet_tol,
        gradcheck_fast_mode=op.fast_mode,
        check_batched_grad=op.check_batched_grad,
        check_batched_gradgrad=op.check_batched_gradgrad,
        check_batched_forward_grad=op.check_batched_forward_grad,
        decorators=tuple(decorators),
    )
    if op.gradgrad_error is not None:
        setattr(info, GRADGRAD_ERROR, op.gradgrad_error)  # read by suite.py's fail-gradgrad
    _check_opcheck_expectations(spec, op, info)
    return info


def _check_opcheck_expectations(spec: Spec, op: OpSpec, info: Any) -> None:
    """A skip or xfail of an opcheck check on an op opcheck never runs on would silently do nothing."""
    from gradci.catalog import custom_op_overload
    from gradci.checks import BY_NAME

    if custom_op_overload(info) is not None:
        return
    for word, expectations in (("skip", op.skips), ("xfail", op.xfails)):
        for expectation in expectations:
            if BY_NAME[expectation.check].custom_ops_only:
                raise SpecError(
                    f"{spec.path}:{expectation.line}: {op.key}.{word}.{expectation.check}: {op.op!r} is "
                    "not a torch.library custom op, so opcheck does not run on it",
                    hint="opcheck runs on an OpOverload outside aten: torch.ops.mylib.op.default or a "
                    "torch.library.custom_op",
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
    from gradci.catalog import OpEntry, mark_user_op
    from gradci.locate import Location, relative_location

    spec = parse_spec(path)
    # Like pytest's rootdir: the project's own modules import without being installed, also when
    # gradci runs in a subfolder and found the spec above it.
    for folder in (str(Path(path).resolve().parent), str(Path.cwd())):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    for module, line in spec.imports:
        try:
            import_module(module)
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
