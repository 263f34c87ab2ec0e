"""Every YAML file gradci reads (gradci-ops.yml, .gradci.yml) goes through here, within limits.

PyYAML's safe loader builds no objects from tags, but an alias shares the node it names: a file of
500 bytes whose aliases nest nine deep ("billion laughs") is a document of 10^9 nodes to any walk
over it, and gradci walks its spec to validate it. So reading is bounded, and a file past a limit is
a one-line error naming the file and the line, never a hang:

* ``MAX_BYTES``: the size of the file.
* ``MAX_NODES``: nodes of the document with every alias expanded. Counted while composing, an alias
  adding the size of the node it names (known once that node is complete), so counting costs time
  linear in the text; the count is refused at the alias that passes the limit.
* ``MAX_DEPTH``: nesting. PyYAML composes recursively: deeper input would end in a RecursionError.
* A recursive alias (``&a [*a]``): an alias naming a node it is inside of. No gradci file needs one.

Anchors and aliases within these limits stay allowed; specs use them to share samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import GradciError

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 100


class _Refused(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """The safe loader, counting expanded nodes and nesting as it composes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.expanded = 0  # nodes so far, aliases expanded
        self.depth = 0  # of the node being composed
        self.peak = 0  # deepest level reached inside it, aliases expanded
        self.shape: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (nodes, levels), once complete

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)  # an undefined alias raises here
            shape = self.shape.get(id(node))
            if shape is None:  # its node is still being composed: the alias is inside it
                raise _Refused(event.start_mark, f"alias *{event.anchor} is inside the node it names")
            nodes, levels = shape
            self._count(nodes, event.start_mark, f"alias *{event.anchor} expands")
            self._nest(self.depth + levels, event.start_mark, f"alias *{event.anchor} nests")
            return node
        self._count(1, event.start_mark, "the document grows")
        self._nest(self.depth + 1, event.start_mark, "the document nests")
        self.depth += 1
        outer_peak, self.peak = self.peak, self.depth
        before = self.expanded
        node = super().compose_node(parent, index)
        if getattr(event, "anchor", None) is not None:
            self.shape[id(node)] = (self.expanded - before + 1, self.peak - self.depth + 1)
        self.depth -= 1
        self.peak = max(outer_peak, self.peak)
        return node

    def _count(self, nodes: int, mark: Any, what: str) -> None:
        self.expanded += nodes
        if self.expanded > MAX_NODES:
            raise _Refused(mark, f"{what} past {MAX_NODES:,} YAML nodes (aliases counted expanded)")

    def _nest(self, level: int, mark: Any, what: str) -> None:
        self.peak = max(self.peak, level)
        if level > MAX_DEPTH:
            raise _Refused(mark, f"{what} deeper than {MAX_DEPTH} levels")


def _read(path: Path, error: type[GradciError], what: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise error(f"{path}: larger than {MAX_BYTES // 1024:,} KiB, the most gradci reads of a YAML file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {exc.start + 1})") from None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _loaded(path: Path, error: type[GradciError], what: str, construct: bool) -> Any:
    text = _read(path, error, what)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if not construct or node is None:
            return node
        return loader.construct_document(node)
    except _Refused as exc:
        raise error(f"{path}:{exc.mark.line + 1}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or exc
        raise error(f"{where}: not valid YAML: {_one_line(problem)}") from None
    finally:
        loader.dispose()


def compose(path: Path, error: type[GradciError], what: str) -> Any:
    """The document's root node (None for an empty file), lines kept for error messages."""
    return _loaded(path, error, what, construct=False)


def load(path: Path, error: type[GradciError], what: str) -> Any:
    """The document as plain data (``yaml.safe_load``), within the same limits."""
    return _loaded(path, error, what, construct=True)
