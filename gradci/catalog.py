"""Which operators gradci knows: PyTorch's OpInfo databases and a project's own ops.

An ``OpEntry`` is one OpInfo plus where it came from: the upstream database it belongs to (which
decides the checks it runs through, as in the reference suite) or ``user`` for a project's op, and,
when known, the file and line that construct it (so a pull request can be annotated there) and, in a
PyTorch fork, its backward formula's entry of ``tools/autograd/derivatives.yaml`` (``locate.py``).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import USER_DB
from .errors import SelectionError
from .locate import Derivative, Location, derivatives_for, locate_opinfos, record_constructions


@dataclass(frozen=True)
class OpEntry:
    op: Any  # an OpInfo
    db: str  # one of UPSTREAM_DBS, or USER_DB
    origin: str | None = None  # for user ops: the module or spec file they were loaded from
    location: Location | None = None
    derivative: Derivative | None = None  # fork mode: the op's entry of derivatives.yaml

    @property
    def name(self) -> str:
        return str(self.op.name)

    @property
    def full_name(self) -> str:
        """``name`` or ``name.variant``: what --ops patterns and reports use."""
        variant = self.op.variant_test_name
        return f"{self.op.name}.{variant}" if variant else str(self.op.name)

    @property
    def formatted_name(self) -> str:
        """The op part of a test id, as upstream spells it (``div_trunc_rounding``)."""
        return str(self.op.formatted_name)

    def matches(self, pattern: str) -> bool:
        return any(
            fnmatch.fnmatchcase(candidate, pattern)
            for candidate in (self.name, self.full_name, self.formatted_name)
        )


# Set on the OpInfo of a project's op: gradci's suite applies its toleranceOverride DecorateInfos to
# gradcheck (upstream's TestGradients passes no tolerances, so upstream ops never get this).
USER_OP_MARK = "_gradci_user_op"
# Set on the OpInfo of a spec op with ``gradgrad_error``: the regex its double backward's error must
# match in fail-gradgrad (its own words, not aten's "derivative for ... is not implemented").
GRADGRAD_ERROR = "_gradci_gradgrad_error"


def mark_user_op(op: Any) -> Any:
    setattr(op, USER_OP_MARK, True)
    return op


def custom_op_overload(op: Any) -> Any:
    """The ``torch.library`` custom op an OpInfo's function is, as an ``OpOverload``, or None.

    What ``torch.library.opcheck`` takes: an overload (or a packet with one overload, or a
    ``custom_op``) of a namespace other than ``aten``. aten's own ops are not custom ops: their
    registrations are PyTorch's, tested upstream. A Python function that calls a custom op is not
    one either (opcheck needs the op itself).
    """
    import torch

    fn: Any = getattr(op, "op", None)
    if hasattr(fn, "_opoverload") and hasattr(fn, "register_autograd"):
        fn = fn._opoverload  # a torch.library.custom_op given in an OpInfo module
    if isinstance(fn, torch._ops.OpOverloadPacket):
        overloads: list[str] = fn.overloads()  # type: ignore[no-untyped-call]
        if len(overloads) != 1:
            return None  # which one opcheck should test is not ours to guess
        fn = getattr(fn, overloads[0])
    if isinstance(fn, torch._ops.OpOverload) and fn.namespace != "aten":
        return fn
    return None


# Before anything imports torch's OpInfo modules, which build their OpInfos at import.
record_constructions()


def _entries(
    ops: list[Any],
    db: str,
    locations: list[Location | None],
    checkout: Path | None,
    root: Path | None,
    **kw: Any,
) -> list[OpEntry]:
    derivatives = derivatives_for(ops, checkout, root=root)
    return [
        OpEntry(op, db, location=loc, derivative=d, **kw)
        for op, loc, d in zip(ops, locations, derivatives, strict=True)
    ]


def load_upstream(*, root: Path | None = None, checkout: Path | None = None) -> list[OpEntry]:
    """op_db, hop_db and custom_op_db, in the reference suite's order (importing them takes seconds).

    ``checkout``: the PyTorch checkout of fork mode (``locate.torch_checkout``).
    """
    record_constructions()
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.custom_op_db import custom_op_db
    from torch.testing._internal.hop_db import hop_db

    entries: list[OpEntry] = []
    for db, ops in (("op_db", list(op_db)), ("hop_db", list(hop_db)), ("custom_op_db", list(custom_op_db))):
        entries += _entries(ops, db, locate_opinfos(ops, root=root, checkout=checkout), checkout, root)
    return entries


def load_op_module(
    reference: str,
    *,
    root: Path | None = None,
    checkout: Path | None = None,
    project: Path | None = None,
) -> list[OpEntry]:
    """The OpInfo list a module exposes: ``pkg.mod`` (attribute ``op_db``) or ``pkg.mod:ATTR``.

    ``project``: the repository's root, where a module named in its config file is found when
    gradci runs in a subfolder."""
    record_constructions()
    from torch.testing._internal.opinfo.core import OpInfo

    module_name, _, attribute = reference.partition(":")
    attribute = attribute or "op_db"
    if not module_name:
        raise SelectionError(
            f"op module {reference!r}: expected 'package.module' or 'package.module:ATTRIBUTE'"
        )
    # Like pytest's rootdir: the project's own modules import without being installed, from here
    # first, then from the repository's root.
    for folder in (project, Path.cwd()):
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SelectionError(f"op module {reference!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise SelectionError(
            f"op module {reference!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    try:
        ops = getattr(module, attribute)
    except AttributeError:
        raise SelectionError(
            f"op module {reference!r}: module {module_name!r} has no attribute {attribute!r}",
            hint="name the list after a colon: package.module:MY_OPS",
        ) from None
    if isinstance(ops, OpInfo) or not isinstance(ops, Iterable):
        raise SelectionError(f"op module {reference!r}: {attribute!r} must be a list of OpInfo objects")
    ops = list(ops)
    for index, op in enumerate(ops):
        if not isinstance(op, OpInfo):
            raise SelectionError(
                f"op module {reference!r}: {attribute}[{index}] is a {type(op).__name__}, not an OpInfo"
            )
    locations = locate_opinfos(ops, module=module, root=root, checkout=checkout)
    return _entries([mark_user_op(op) for op in ops], USER_DB, locations, checkout, root, origin=reference)


def suggest(word: str, entries: Sequence[OpEntry]) -> list[str]:
    """Close op names, also by their last part: 'lienar' -> nn.functional.linear."""
    keys: dict[str, str] = {}
    for entry in entries:
        for key in (entry.full_name, entry.name, entry.name.rsplit(".", 1)[-1]):
            keys.setdefault(key, entry.name)
    close = difflib.get_close_matches(word, list(keys), n=3, cutoff=0.6)
    return list(dict.fromkeys(keys[k] for k in close))


def select(entries: Sequence[OpEntry], include: Sequence[str], exclude: Sequence[str]) -> list[OpEntry]:
    """Entries matching any include pattern (all when none) and no exclude pattern.

    A pattern that selects nothing is an error: a typo must not silently test nothing.
    """
    for pattern in (*include, *exclude):
        if not any(entry.matches(pattern) for entry in entries):
            close = suggest(pattern, entries)
            hint = f"did you mean {', '.join(close)}?" if close else "'gradci ops' lists the known operators"
            raise SelectionError(f"op pattern {pattern!r} matches no operator", hint=hint)
    chosen = [e for e in entries if not include or any(e.matches(p) for p in include)]
    return [e for e in chosen if not any(e.matches(p) for p in exclude)]
