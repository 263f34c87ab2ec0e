"""What a worker and the parent say to each other: one dataclass per message, dispatched by kind.

The channel is a socket the worker process inherits, and so do the ops it runs: an op may write
bytes to any descriptor it finds. So the parent trusts nothing it reads. A message is one line of
JSON naming its ``kind`` and carrying the worker's ``key`` (random, per worker), read without
blocking and at most ``MAX_MESSAGE`` bytes long; anything else (bytes that are not such a line, a
foreign key, an unknown kind, a field of the wrong type) is a ``ProtocolError``, which costs the
worker and the test it was running, never the parent.

parent -> worker: ``Run`` (a test id), ``Stop``.
worker -> parent: ``Ready`` (setup done), ``Finished`` (one test's outcome), ``Fatal`` (setup raised).
"""

from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

MAX_MESSAGE = 8 * 1024 * 1024  # bytes; a result carries no output (that is in the log file)
MAX_TRACEBACK = 256 * 1024  # characters of a traceback sent (a RecursionError's can be huge)


class ProtocolError(Exception):
    """The other side sent something that is not a message of this protocol."""


@dataclass(frozen=True)
class Message:
    kind: ClassVar[str]


@dataclass(frozen=True)
class Run(Message):
    kind: ClassVar[str] = "run"
    test_id: str


@dataclass(frozen=True)
class Stop(Message):
    kind: ClassVar[str] = "stop"


@dataclass(frozen=True)
class Ready(Message):
    kind: ClassVar[str] = "ready"
    pid: int


@dataclass(frozen=True)
class Fatal(Message):
    kind: ClassVar[str] = "fatal"
    message: str  # one line
    traceback: str


@dataclass(frozen=True)
class Finished(Message):
    """One test's outcome, as the worker saw it (``Session.make_result`` makes the result of it)."""

    kind: ClassVar[str] = "finished"
    test_id: str
    outcome: str
    duration: float
    message: str = ""
    sample_index: int | None = None
    sample: str | None = None
    mismatch: dict[str, Any] | None = None  # results.Mismatch's fields
    traceback: str | None = None
    poisoned: bool = False  # the process is unusable after it (a CUDA error): replace the worker
    max_rss_kib: int = 0  # the worker's peak resident set so far
    gradcheck: dict[str, Any] | None = None  # results.GradcheckRecord's fields


KINDS: dict[str, type[Message]] = {m.kind: m for m in (Run, Stop, Ready, Fatal, Finished)}

# What each field may hold: a Python type, or a tuple of them (None for optional fields).
_TYPES: dict[str, tuple[type, ...]] = {
    "test_id": (str,),
    "pid": (int,),
    "message": (str,),
    "traceback": (str, type(None)),
    "outcome": (str,),
    "duration": (int, float),
    "sample_index": (int, type(None)),
    "sample": (str, type(None)),
    "mismatch": (dict, type(None)),
    "poisoned": (bool,),
    "max_rss_kib": (int,),
    "gradcheck": (dict, type(None)),
}


def encode(message: Message, key: str) -> bytes:
    data = {"kind": message.kind, "key": key, **asdict(message)}
    # Non-finite floats (a NaN gradient's error) pass between two Pythons as JSON's NaN tokens.
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def decode(line: bytes, key: str) -> Message:
    """One line as a message of this protocol, or ``ProtocolError`` saying why not."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError(f"not a message: {_preview(line)}") from None
    if not isinstance(data, dict) or data.get("key") != key:
        raise ProtocolError(f"not a message from this worker: {_preview(line)}")
    kind = KINDS.get(data.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise ProtocolError(f"unknown message kind {str(data.get('kind'))[:40]!r}")
    values = {}
    for f in fields(kind):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ProtocolError(f"{kind.kind} message without {f.name}")
            continue
        value = data[f.name]
        allowed = _TYPES[f.name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ProtocolError(f"{kind.kind} message with a bad {f.name}: {_preview(repr(value))}")
        if isinstance(value, float) and f.name == "duration" and not math.isfinite(value):
            raise ProtocolError(f"{kind.kind} message with a bad duration: {value!r}")
        values[f.name] = value
    return kind(**values)


def _preview(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


class Channel:
    """Messages over one end of a socket pair, with the worker's key."""

    def __init__(self, fd: int, key: str) -> None:
        self.fd = fd
        self.key = key
        self._buffer = bytearray()

    # -- the parent's end: never blocks --

    def poll(self) -> list[Message]:
        """Messages that arrived (call when the descriptor is readable). ``EOFError`` when the
        other end is closed and nothing is left; ``ProtocolError`` for anything garbled."""
        closed = False
        while True:
            try:
                chunk = os.read(self.fd, 1024 * 1024)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.ECONNRESET, errno.EBADF):
                    closed = True
                    break
                raise
            if not chunk:
                closed = True
                break
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE and b"\n" not in self._buffer:
                raise ProtocolError(f"more than {MAX_MESSAGE:,} bytes without a message end")
        messages = []
        while b"\n" in self._buffer:
            line, _, rest = bytes(self._buffer).partition(b"\n")
            self._buffer = bytearray(rest)
            if len(line) > MAX_MESSAGE:
                raise ProtocolError(f"a message of more than {MAX_MESSAGE:,} bytes")
            messages.append(decode(line, self.key))
        if closed and not messages:
            if self._buffer.strip():
                raise ProtocolError(f"not a message: {_preview(bytes(self._buffer))}")
            raise EOFError
        return messages

    def send(self, message: Message) -> None:
        data = encode(message, self.key)
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    # -- the worker's end: blocks --

    def receive(self) -> Message:
        """The next message; ``EOFError`` when the parent is gone."""
        while b"\n" not in self._buffer:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return decode(line, self.key)
