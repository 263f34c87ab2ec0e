"""Which lines of a step's output the GitHub Actions runner would take as workflow commands.

actions/runner (src/Runner.Worker/Handlers/OutputManager.cs, ActionCommandManager.cs,
src/Runner.Common/ActionCommand.cs) reads output with .NET's StreamReader.ReadLine (a line ends at
\\n, \\r or \\r\\n) and, per line, tries ``TryParseV2`` (``TrimStart()``, then ``StartsWith("::")``)
and ``TryParse`` (v1: ``IndexOf("##[")`` anywhere). Both comparisons are culture-sensitive: .NET
does them with ICU's collation, which skips characters without weight (zero-width spaces, soft
hyphens, most control and format characters, many combining marks).

Where ICU is installed (libicui18n, as on the runners), ``commands`` asks it, through ctypes, the way
.NET does (ICU's root collator; ``StartsWith`` as .NET's SimpleAffix: collation elements compared
in order, completely ignorable ones skipped). Elsewhere it falls back to a stricter model that takes
every character outside printable ASCII as weightless, so it finds at least what ICU would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from collections.abc import Callable
from pathlib import Path

READLINE = re.compile(r"\r\n|\r|\n")
# .NET Char.IsWhiteSpace: what TrimStart() removes.
DOTNET_WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _strict_weight(text: str) -> str:
    return "".join(c for c in text if " " <= c <= "~" or c in DOTNET_WHITESPACE)


def _strict_starts_with(text: str, prefix: str) -> bool:
    return _strict_weight(text).startswith(prefix)


def _strict_contains(text: str, part: str) -> bool:
    return part in _strict_weight(text)


class _Icu:
    """ICU's root collation through ctypes; None where there is no libicui18n."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        suffix = next(
            (s for s in ("", *(f"_{v}" for v in range(90, 49, -1))) if hasattr(lib, "ucol_open" + s)), None
        )
        if suffix is None:
            raise OSError("no ucol_open in " + path)

        def fn(name: str, restype: object, *argtypes: object) -> Callable[..., int]:
            f = getattr(lib, name + suffix)
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        vp, i32 = ctypes.c_void_p, ctypes.c_int32
        err = ctypes.POINTER(ctypes.c_int)
        self.open = fn("ucol_open", vp, ctypes.c_char_p, err)
        self.elements = fn("ucol_openElements", vp, vp, vp, i32, err)
        self.next = fn("ucol_next", i32, vp, err)
        self.close_elements = fn("ucol_closeElements", None, vp)
        self.search = fn("usearch_openFromCollator", vp, vp, i32, vp, i32, vp, vp, err)
        self.first = fn("usearch_first", i32, vp, err)
        self.close_search = fn("usearch_close", None, vp)
        code = ctypes.c_int(0)
        self.collator = self.open(b"", ctypes.byref(code))
        if code.value > 0:
            raise OSError(f"ucol_open: {code.value}")

    @staticmethod
    def _utf16(text: str) -> tuple[ctypes.Array[ctypes.c_char], int]:
        data = text.encode("utf-16-le", "surrogatepass")
        return ctypes.create_string_buffer(data, len(data) + 2), len(data) // 2

    def _elements(self, text: str) -> list[int]:
        buf, n = self._utf16(text)
        code = ctypes.c_int(0)
        it = self.elements(self.collator, buf, n, ctypes.byref(code))
        found = []
        try:
            while (ce := self.next(it, ctypes.byref(code))) != -1:  # UCOL_NULLORDER
                if ce != 0:  # completely ignorable
                    found.append(ce)
        finally:
            self.close_elements(it)
        return found

    def starts_with(self, text: str, prefix: str) -> bool:
        pattern = self._elements(prefix)
        return self._elements(text)[: len(pattern)] == pattern

    def contains(self, text: str, part: str) -> bool:
        if not text:
            return False
        hay, hn = self._utf16(text)
        pat, pn = self._utf16(part)
        code = ctypes.c_int(0)
        search = self.search(pat, pn, hay, hn, self.collator, None, ctypes.byref(code))
        try:
            return bool(self.first(search, ctypes.byref(code)) >= 0)
        finally:
            self.close_search(search)


def _load_icu() -> _Icu | None:
    candidates = [ctypes.util.find_library("icui18n") or ""]
    candidates += sorted(str(p) for p in Path("/usr/lib").glob("**/libicui18n.so*"))
    for path in filter(None, candidates):
        try:
            return _Icu(path)
        except (OSError, AttributeError):
            continue
    return None


ICU = _load_icu()


def commands(output: str) -> list[str]:
    """The lines of ``output`` the runner would try as workflow commands (v2 or v1)."""
    starts_with = ICU.starts_with if ICU else _strict_starts_with
    contains = ICU.contains if ICU else _strict_contains
    found = []
    for line in READLINE.split(output):
        if starts_with(line.lstrip(DOTNET_WHITESPACE), "::") or contains(line, "##["):
            found.append(line)
    return found
