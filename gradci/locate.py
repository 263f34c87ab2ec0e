"""Where a project's op is defined, as ``file:line`` relative to the repository root.

A pull-request annotation can only point at a file of the repository, so paths are made relative
to the root (``$GITHUB_WORKSPACE``, else the git top level, else the working directory); a file
outside it keeps its absolute path and the publisher falls back to another place.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Location:
    file: str  # relative to the repository root when the file is inside it, else absolute
    line: int

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


def _opinfo_calls(source: str) -> dict[tuple[str, str], int]:
    """``(name, variant) -> line`` for every ``...Info(...)`` call with a literal name."""
    found: dict[tuple[str, str], int] = {}
    for node in ast.walk(ast.parse(source)):
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


def locate_opinfos(
    module: ModuleType, ops: Sequence[Any], *, root: Path | None = None
) -> list[Location | None]:
    """The line of each OpInfo's constructor call in ``module``'s source, when it can be found.

    Falls back to the op's own Python function (for an OpInfo built in a loop or a helper).
    """
    try:
        file = inspect.getsourcefile(module)
        source = Path(file).read_text(encoding="utf-8") if file else None
    except (OSError, TypeError):
        file, source = None, None
    calls = _opinfo_calls(source) if source else {}
    locations: list[Location | None] = []
    for op in ops:
        line = calls.get((op.name, op.variant_test_name or ""))
        if file is not None and line is not None:
            locations.append(relative_location(file, line, root=root))
        else:
            locations.append(locate_callable(op.op, root=root))
    return locations


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
