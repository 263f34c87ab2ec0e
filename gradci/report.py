"""The summary a person reads: one line of counts, then what changed, grouped by op, within a size budget.

``render`` writes Markdown (a PR comment, a check-run summary, the job summary) or plain text (a
log). Its first line is the counts with their change against base (``stats``: "5,418 tests ±0 ·
2 new failures · 1 fixed · 3 still failing on base"). It stays readable at thousands of tests and
hundreds of failures: rows are grouped by op, an op shows a few rows and a count of the rest, and
the whole report fits ``budget`` exactly. The budget is counted in UTF-8 bytes, which is never less
than characters or UTF-16 units, so it holds for GitHub's limits whichever way they count: a PR
comment 65,536, a check-run summary 65,535, the job summary 1 MiB. ``max_rows`` keeps a report
short whatever the budget (the PR comment: ``COMMENT_ROWS`` rows a table, one row an op, then a
link to where the rest is).

Sections are filled by priority: new failures (without a base: failures), flaky, fixed, still
failing, unexpected passes, new tests, removed tests, skip-status changes. Each first gets a few
rows, then the budget left goes to them in the same order. What does not fit is counted ("… and 37
more in 12 ops"); the results JSON and JUnit XML always hold everything.

A sample input is shown short in a table (``short_sample``: ``0: f64[3,4], dim=1``) and in full
below it, in a collapsed list, where the short form leaves something out. ``Links`` (from
``gradci publish``) turn commits and the check run into links on the server's web pages; ``Since``
adds the line "fixed since the previous push" to an edited PR comment.

Text from test results (messages, sample summaries, op names) is untrusted: every line break in it
(``\n``, ``\r``, ``\r\n``, Unicode's line and paragraph separators) becomes a space; in Markdown it
is escaped so that it cannot open HTML, close a ``<details>``, break a table or mention anyone; in
text it cannot issue a workflow command in a log.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from urllib.parse import quote

from .compare import Category, Comparison, compare
from .errors import ResultsFileError
from .github.workflow_commands import LINE_BREAK, escape_workflow_commands
from .results import Mismatch, Outcome, Results, TestResult

PR_COMMENT_LIMIT = 65_536
CHECK_RUN_SUMMARY_LIMIT = 65_535
JOB_SUMMARY_LIMIT = 1_048_576
FORMATS = ("markdown", "text")

# Rows a table of the PR comment shows at most (an op shows its first failure and a count of the
# rest); the check run's summary, the job summary and the annotations show more.
COMMENT_ROWS = 20

_MIN_ROWS = 10  # rows each section gets before any section gets more
_MAX_NOTE = 600
_MAX_MESSAGE = 160
_MAX_SAMPLE = 80  # a sample in the text report
_MAX_SHORT_SAMPLE = 48  # a sample in a table
_MAX_FULL_SAMPLE = 1_000  # a sample in full, below a table
_MAX_REPRO = 300
_MAX_SINCE = 10  # tests named in the "fixed since the previous push" line


def size(text: str) -> int:
    """What the budget counts: UTF-8 bytes (>= characters >= 1 per UTF-16 unit / 2)."""
    return len(text.encode("utf-8", "surrogatepass"))


# --- making untrusted text safe --------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Markup that works mid-line (text from results never starts a line here); $ opens GitHub math.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")
_MENTION = re.compile(r"([@#])(?=\w)")


def clean(text: str | None, limit: int | None = None) -> str:
    """One line of printable text: no terminal escapes, control characters or line breaks."""
    text = LINE_BREAK.sub(" ", _ANSI.sub("", text or "")).replace("\t", " ")
    text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def md_text(text: str | None, limit: int | None = None) -> str:
    """Untrusted text as literal Markdown text: no HTML, no markup, no table breaks, no mentions."""
    text = clean(text, limit)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    # A zero-width space keeps GitHub from turning @name into a mention or #12 into a reference.
    return _MENTION.sub("\\1\N{ZERO WIDTH SPACE}", text)


def md_code(text: str | None, limit: int | None = None, *, table: bool = True) -> str:
    """Untrusted text as an inline code span (literal; pipes escaped when inside a table)."""
    text = clean(text, limit)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    if table:
        text = text.replace("|", "\\|")
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# --- links ------------------------------------------------------------------------------------------

_SHA = re.compile(r"[0-9a-f]{40}")
# A URL as a Markdown link destination takes it literally: no spaces, brackets, quotes or backslashes.
_URL = re.compile(r"https?://[A-Za-z0-9\-._~%!$&'*+,;=:@/?#]{1,2000}")


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) URL that can stand in a Markdown link as it is, else None."""
    return url if url is not None and _URL.fullmatch(url) else None


@dataclass(frozen=True)
class Links:
    """Where a report can point on the server's web pages (``gradci publish`` knows; a file does not).

    Every URL is checked with ``safe_url`` where it is used; a commit is linked only when it is a
    full hexadecimal SHA.
    """

    server: str  # GITHUB_SERVER_URL: https://github.com
    repository: str  # owner/name
    head_sha: str | None = None  # the commit tested: a pull request's head, not its merge commit
    base_sha: str | None = None  # the commit whose results were compared with
    check_run: str | None = None  # the check run's page, once created
    rest: tuple[str, str] | None = None  # (name, URL) of where what this report leaves out is shown

    def commit(self, sha: str | None) -> str | None:
        if sha is None or not _SHA.fullmatch(sha):
            return None
        return safe_url(f"{self.server.rstrip('/')}/{quote(self.repository, safe='/')}/commit/{sha}")


@dataclass(frozen=True)
class Since:
    """What the previous version of a PR comment showed failing that passes now."""

    fixed: Sequence[TestResult]
    sha: str | None  # the commit that version was about
    same_commit: bool = False  # a re-run of that commit, not a new push


# --- sample inputs, short ----------------------------------------------------------------------------

_DTYPE_SHORT = {
    "float64": "f64",
    "double": "f64",
    "float32": "f32",
    "float": "f32",
    "float16": "f16",
    "half": "f16",
    "bfloat16": "bf16",
    "complex128": "c128",
    "cdouble": "c128",
    "complex64": "c64",
    "cfloat": "c64",
    "complex32": "c32",
    "chalf": "c32",
    "int64": "i64",
    "long": "i64",
    "int32": "i32",
    "int": "i32",
    "int16": "i16",
    "short": "i16",
    "int8": "i8",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "bool": "bool",
}
# torch's SampleInput.summary(): Tensor[size=(3, 4), device="cpu", dtype=torch.float64, ...]
_TENSOR = re.compile(r"Tensor\[([^\[\]]{0,400})\]")
_SIZE = re.compile(r"\bsize=\(([0-9, ]{0,200})\)")
_DTYPE = re.compile(r"\bdtype=(?:torch\.)?([A-Za-z0-9_]{1,40})")
_SAMPLE = re.compile(r"SampleInput\((.*)\)")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_MAX_SAMPLE_WORK = 4_000  # characters of a summary looked at: the file is untrusted, the work bounded


def _short_tensor(match: re.Match[str]) -> str:
    size_match, dtype_match = _SIZE.search(match[1]), _DTYPE.search(match[1])
    if size_match is None or dtype_match is None:
        return match[0]
    dims = ",".join(d.strip() for d in size_match[1].split(",") if d.strip())
    return f"{_DTYPE_SHORT.get(dtype_match[1], dtype_match[1])}[{dims}]"


def _split(text: str) -> list[str] | None:
    """``text`` split at its top-level commas; None when its brackets or quotes do not pair up."""
    parts: list[str] = []
    expected: list[str] = []
    quote_char: str | None = None
    start = 0
    for i, char in enumerate(text):
        if quote_char is not None:
            quote_char = None if char == quote_char else quote_char
        elif char in "'\"":
            quote_char = char
        elif char in _CLOSERS:
            expected.append(_CLOSERS[char])
        elif char in ")]}":
            if not expected or expected.pop() != char:
                return None
        elif char == "," and not expected:
            parts.append(text[start:i].strip())
            start = i + 1
    if expected or quote_char is not None:
        return None
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _unwrap(text: str) -> list[str]:
    """The items of a printed tuple or list (``(a, b)``, ``[a, b]``), else the text itself."""
    if len(text) >= 2 and text[0] in "([" and text[-1] == _CLOSERS[text[0]]:
        items = _split(text[1:-1])
        if items is not None:
            return items
    return [text] if text else []


def _sample_fields(fields: list[str]) -> list[str]:
    shown: list[str] = []
    for item in fields:
        name, equals, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not equals:
            shown.append(item)
        elif name == "input":
            shown.append(value)
        elif name == "args":
            shown.extend(_unwrap(value))
        elif name == "kwargs":
            pairs = _split(value[1:-1]) if value.startswith("{") and value.endswith("}") else [value]
            for pair in pairs if pairs is not None else [value]:
                key, colon, arg = pair.partition(":")
                shown.append(f"{_unquote(key.strip())}={_unquote(arg.strip())}" if colon else pair)
        elif name not in ("broadcasts_input", "name"):  # in the full form
            shown.append(item)
    return shown


def short_sample(summary: str | None, limit: int = _MAX_SHORT_SAMPLE) -> str:
    """A sample input's summary in a few characters, for a table cell: torch's ``SampleInput(input=
    Tensor[size=(3, 4), device="cpu", dtype=torch.float64], args=(), kwargs={'dim': '1'}, ...)``
    becomes ``f64[3,4], dim=1``; a scalar tensor ``f64[]``, a tensor list ``[f64[2], f64[2]]``.
    Whatever else the summary holds is kept, one line, cut at ``limit`` characters. Plain text:
    escape it for where it goes."""
    text = clean((summary or "")[:_MAX_SAMPLE_WORK])
    short = _TENSOR.sub(_short_tensor, text).replace("TensorList[", "[")
    match = _SAMPLE.fullmatch(short)
    fields = _split(match[1]) if match else None
    if fields is not None:
        short = ", ".join(_sample_fields(fields))
    return clean(short, limit)


# --- formatting values -----------------------------------------------------------------------------


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def error_summary(test: TestResult) -> str:
    """The mismatch gradcheck found, or the message: what went wrong, in one line of plain text."""
    m: Mismatch | None = test.mismatch
    if m is None:
        return clean(test.message, _MAX_MESSAGE) or test.outcome.value
    where = m.input_label or f"input {m.input}"
    return f"{_g(m.max_abs_error)} abs, {_g(m.max_rel_error)} rel; output {m.output} w.r.t. {where}"


FAST_MODE_ONLY = "fast mode only"  # the label of a failure that slow-mode gradcheck does not confirm


def fast_mode_only(test: TestResult) -> bool:
    return test.mismatch is not None and test.mismatch.fast_mode_only


def _sample(test: TestResult, *, short: bool = False) -> str:
    if test.sample_index is None:
        return ""
    if not test.sample:
        return str(test.sample_index)
    text = short_sample(test.sample) if short else clean(test.sample, _MAX_SAMPLE)
    return f"{test.sample_index}: {text}"


def _full_sample(test: TestResult) -> str | None:
    """The sample in full, where the short form in the table leaves something out."""
    if test.sample_index is None or not test.sample:
        return None
    full = clean(test.sample[:_MAX_SAMPLE_WORK], _MAX_FULL_SAMPLE)
    return None if short_sample(test.sample) == full else full


def _repro(test: TestResult) -> str:
    return test.repro or test.id


def _first_failure(test: TestResult) -> TestResult:
    """The first failing try of a flaky test, as a result (for its message and mismatch)."""
    for attempt in test.attempts:
        if attempt.get("outcome") in ("failed", "error"):
            try:
                return TestResult.from_json(
                    {
                        **attempt,
                        "id": test.id,
                        "op": test.op,
                        "check": test.check,
                        "device": test.device,
                        "dtype": test.dtype,
                    }
                )
            except ResultsFileError:  # an earlier try we cannot read: show the last one
                break
    return test


# --- the two styles --------------------------------------------------------------------------------


class Style:
    markdown = False

    def title(self, text: str) -> str:
        raise NotImplementedError

    def note(self, text: str) -> str:
        raise NotImplementedError

    def line(self, text: str) -> str:
        raise NotImplementedError

    def text(self, value: str | None, limit: int | None = None) -> str:
        raise NotImplementedError

    def code(self, value: str | None, limit: int | None = None) -> str:
        """Literal text in a line outside a table."""
        raise NotImplementedError

    def link(self, text: str, url: str | None) -> str:
        """``text`` (already escaped) as a link to ``url`` where it is safe to link to."""
        raise NotImplementedError

    def strong(self, text: str) -> str:
        raise NotImplementedError

    def section_open(self, heading: str, collapsed: bool) -> str:
        raise NotImplementedError

    def section_close(self, collapsed: bool) -> str:
        raise NotImplementedError

    def details_open(self) -> str:
        """Before the lines below a table (samples in full), after its rows."""
        raise NotImplementedError

    def details_close(self) -> str:
        raise NotImplementedError

    def table_head(self, columns: Sequence[str]) -> str:
        raise NotImplementedError

    def more(self, text: str) -> str:
        raise NotImplementedError

    def rows(
        self, op: str, cells: Sequence[Sequence[str]], extra: Sequence[str | None]
    ) -> list[tuple[str, str]]:
        """(row, line below the table) per test of an op group; the op is named on the first."""
        raise NotImplementedError

    def more_of_op(self, hidden: str, width: int) -> str:
        raise NotImplementedError


class Markdown(Style):
    markdown = True

    def title(self, text: str) -> str:
        return f"## {text}\n"

    def note(self, text: str) -> str:
        return f"\n> ⚠️ {text}\n"

    def line(self, text: str) -> str:
        return f"\n{text}\n"

    def text(self, value: str | None, limit: int | None = None) -> str:
        return md_text(value, limit)

    def code(self, value: str | None, limit: int | None = None) -> str:
        return md_code(value, limit, table=False)  # in a line of its own; table cells use md_code

    def link(self, text: str, url: str | None) -> str:
        url = safe_url(url)
        return f"[{text}]({url})" if url else text

    def strong(self, text: str) -> str:
        return f"**{text}**"

    def section_open(self, heading: str, collapsed: bool) -> str:
        if collapsed:
            return f"\n<details><summary>{heading}</summary>\n\n"
        return f"\n### {heading}\n\n"

    def section_close(self, collapsed: bool) -> str:
        return "\n</details>\n" if collapsed else ""

    def details_open(self) -> str:
        return f"\n<details><summary>{FULL_SAMPLES}</summary>\n\n"

    def details_close(self) -> str:
        return "\n</details>\n"

    def table_head(self, columns: Sequence[str]) -> str:
        return "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"

    def more(self, text: str) -> str:
        return f"\n_{text}_\n"

    def rows(
        self, op: str, cells: Sequence[Sequence[str]], extra: Sequence[str | None]
    ) -> list[tuple[str, str]]:
        return [
            ("| " + " | ".join([md_code(op) if i == 0 else "", *row]) + " |\n", below or "")
            for i, (row, below) in enumerate(zip(cells, extra, strict=True))
        ]

    def more_of_op(self, hidden: str, width: int) -> str:
        return "| | " + " | ".join([f"_{md_text(hidden)}_"] + [""] * (width - 2)) + " |\n"


class Text(Style):
    """Plain text for a log: each line escaped as it is made, so the budget counts what is printed."""

    def title(self, text: str) -> str:
        return escape_workflow_commands(f"{text}\n")

    def note(self, text: str) -> str:
        return escape_workflow_commands(f"\nwarning: {text}\n")

    def line(self, text: str) -> str:
        return escape_workflow_commands(f"\n{text}\n")

    def text(self, value: str | None, limit: int | None = None) -> str:
        return clean(value, limit)

    def code(self, value: str | None, limit: int | None = None) -> str:
        return clean(value, limit)

    def link(self, text: str, url: str | None) -> str:
        return text

    def strong(self, text: str) -> str:
        return text

    def section_open(self, heading: str, collapsed: bool) -> str:
        return escape_workflow_commands(f"\n{heading}\n")

    def section_close(self, collapsed: bool) -> str:
        return ""

    def details_open(self) -> str:
        return ""

    def details_close(self) -> str:
        return ""

    def table_head(self, columns: Sequence[str]) -> str:
        return ""

    def more(self, text: str) -> str:
        return escape_workflow_commands(f"  {text}\n")

    def rows(
        self, op: str, cells: Sequence[Sequence[str]], extra: Sequence[str | None]
    ) -> list[tuple[str, str]]:
        units = []
        for i, (row, below) in enumerate(zip(cells, extra, strict=True)):
            head = f"  {clean(op)}\n" if i == 0 else ""
            body = "    " + "  ".join(c for c in row if c) + "\n"
            units.append((escape_workflow_commands(head + body + (f"      {below}\n" if below else "")), ""))
        return units

    def more_of_op(self, hidden: str, width: int) -> str:
        return escape_workflow_commands(f"    {clean(hidden)}\n")


# --- sections ---------------------------------------------------------------------------------------


FULL_SAMPLES = "Sample inputs in full"
_RESULTS_FILES = "the results files hold them all"


@dataclass
class Unit:
    text: str
    covers: int  # tests it accounts for (a "… and 12 more" row covers 12)
    op: str
    below: str = ""  # its line below the table (the sample in full), if any


@dataclass
class Section:
    heading: str
    columns: Sequence[str]
    units: list[Unit]
    total: int  # tests in the section
    collapsed: bool = False
    rest: str = _RESULTS_FILES  # where what is not shown is
    shown: int = 0  # units that fit the budget
    _bytes: list[int] = field(default_factory=list, repr=False)  # prefix sums over units (and lines below)
    _below: list[int] = field(default_factory=list, repr=False)  # units with a line below, among units[:k]
    _covered: list[int] = field(default_factory=list, repr=False)
    _ops_after: list[int] = field(default_factory=list, repr=False)  # distinct ops among units[k:]

    def __post_init__(self) -> None:
        self._bytes, self._below, self._covered = [0], [0], [0]
        for unit in self.units:
            self._bytes.append(self._bytes[-1] + size(unit.text) + size(unit.below))
            self._below.append(self._below[-1] + bool(unit.below))
            self._covered.append(self._covered[-1] + unit.covers)
        self._ops_after = [0] * (len(self.units) + 1)
        for k in range(len(self.units) - 1, -1, -1):
            last_of_op = k + 1 == len(self.units) or self.units[k + 1].op != self.units[k].op
            self._ops_after[k] = self._ops_after[k + 1] + last_of_op

    def more_text(self, k: int) -> str | None:
        hidden = self.total - self._covered[k]
        if hidden <= 0:
            return None
        ops = self._ops_after[k]
        where = f" in {ops:,} ops" if ops > 1 else ""
        if k == 0:
            return f"not shown here: {hidden:,} test{'s' if hidden > 1 else ''}{where} ({self.rest})"
        return f"… and {hidden:,} more{where} not shown ({self.rest})"

    def render(self, style: Style, k: int) -> str:
        parts = [style.section_open(self.heading, self.collapsed)]
        if k:
            parts.append(style.table_head(self.columns))
            parts.extend(u.text for u in self.units[:k])
        more = self.more_text(k)
        if more is not None:
            parts.append(style.more(more))
        if self._below[k]:
            parts.append(style.details_open())
            parts.extend(u.below for u in self.units[:k] if u.below)
            parts.append(style.details_close())
        parts.append(style.section_close(self.collapsed))
        return "".join(parts)

    def cost(self, style: Style, k: int) -> int:
        """``size(self.render(style, k))``, in constant time."""
        more = self.more_text(k)
        return (
            size(style.section_open(self.heading, self.collapsed))
            + size(style.section_close(self.collapsed))
            + (size(style.table_head(self.columns)) if k else 0)
            + self._bytes[k]
            + (size(style.details_open()) + size(style.details_close()) if self._below[k] else 0)
            + (size(style.more(more)) if more is not None else 0)
        )


Row = Callable[[TestResult], tuple[list[str], str | None]]


# Rows an op may show, tried in turn where a budget is given: the first with which every section
# fits whole is used (a check run's or job summary's full list), else the usual cap, filled.
_WHOLE_CAPS: tuple[int | None, ...] = (None, 10, 5)
_USUAL = 0  # the usual cap


def _per_op_cap(total: int, max_rows: int | None, whole: int | None = _USUAL) -> int | None:
    """Rows one op may show before the rest of it is counted: many ops stay visible.
    ``whole``: a cap from ``_WHOLE_CAPS`` to try instead, never tighter than the usual one."""
    if max_rows is not None and total > max_rows:
        return 1
    usual = None if total <= 25 else 5 if total <= 200 else 3
    if whole == _USUAL or usual is None:
        return usual
    return None if whole is None else max(whole, usual)


def _section(
    style: Style,
    heading: str,
    columns: Sequence[str],
    tests: Sequence[TestResult],
    row: Row,
    *,
    collapsed: bool = False,
    max_rows: int | None = None,
    rest: str = _RESULTS_FILES,
    whole: int | None = _USUAL,
) -> Section:
    cap = _per_op_cap(len(tests), max_rows, whole)
    units: list[Unit] = []
    for op, group in groupby(sorted(tests, key=lambda t: (t.op, t.id)), key=lambda t: t.op):
        members = list(group)
        shown = members if cap is None or len(members) <= cap + 1 else members[:cap]
        made = [row(t) for t in shown]
        rows = style.rows(op, [cells for cells, _ in made], [extra for _, extra in made])
        units.extend(Unit(text, 1, op, below) for text, below in rows)
        if len(shown) < len(members):
            hidden = members[len(shown) :]
            checks = Counter(t.check for t in hidden).most_common()
            what = ", ".join(check + (f" x{n}" if n > 1 else "") for check, n in checks)
            text = style.more_of_op(f"… and {len(hidden):,} more: {what}", len(columns))
            units.append(Unit(text, len(hidden), op))
    ops = len({t.op for t in tests})
    heading = _heading(style, heading, len(tests), ops)
    return Section(heading, columns, units, len(tests), collapsed, rest)


def _heading(style: Style, name: str, n: int, ops: int) -> str:
    where = f" in {ops:,} ops" if ops > 1 else ""
    return f"{name} ({n:,}{where})" if style.markdown else f"{name.upper()} ({n:,}{where})"


def _failure_row(style: Style, full_samples: bool) -> Row:
    def row(t: TestResult) -> tuple[list[str], str | None]:
        label = "" if t.outcome is Outcome.FAILED else f"{t.outcome.value}: "
        error = label + error_summary(t)
        if style.markdown:
            sample = _sample(t, short=True)
            text = md_text(error) + (f" **{FAST_MODE_ONLY}** (slow mode passes)" if fast_mode_only(t) else "")
            cells = [md_text(t.check), md_text(t.dtype), md_code(sample) if sample else "", text]
            full = _full_sample(t) if full_samples else None
            below = None
            if full is not None:  # a list item; no table around it, so pipes stay as they are
                below = f"- {md_code(t.id)} sample {t.sample_index}: {md_code(full, table=False)}\n"
            return [*cells, md_code(_repro(t), _MAX_REPRO)], below
        error += f" [{FAST_MODE_ONLY}: slow mode passes]" if fast_mode_only(t) else ""
        where = f"(sample {_sample(t)})" if t.sample_index is not None else ""
        return [t.check, t.dtype, clean(error), where], f"repro: {clean(_repro(t), _MAX_REPRO)}"

    return row


def _described_row(style: Style, describe: Callable[[TestResult], str]) -> Row:
    def row(t: TestResult) -> tuple[list[str], str | None]:
        return [style.text(t.check), style.text(t.dtype), style.text(describe(t), _MAX_MESSAGE)], None

    return row


@dataclass(frozen=True)
class SectionKind:
    """How one comparison category shows in the report. Its title is the category's label."""

    emoji: str  # before the title, in Markdown
    priority: int  # 1 gets the size budget first
    column: str | None  # the last column of its table; None: the failure table (sample, error, repro)
    collapsed: bool = False  # in a <details> block


# Every section, in display order. Without base results, the first shows every failing test.
SECTIONS: Mapping[Category, SectionKind] = {
    Category.NEW_FAILURE: SectionKind("❌", 1, None),
    Category.FLAKY: SectionKind("🔁", 2, "first try"),
    Category.FIXED: SectionKind("✅", 3, "on base"),
    Category.UNEXPECTED_PASS: SectionKind("❔", 5, "note"),
    Category.STILL_FAILING: SectionKind("", 4, None, collapsed=True),
    Category.NEW_TEST: SectionKind("", 6, "outcome", collapsed=True),
    Category.REMOVED_TEST: SectionKind("", 7, "on base", collapsed=True),
    Category.SKIP_CHANGED: SectionKind("", 8, "base → head", collapsed=True),
}
_FAILURE_COLUMNS = ("op", "check", "dtype", "sample", "max error / message", "repro")


def _describers(comparison: Comparison) -> dict[Category, Callable[[TestResult], str]]:
    """The last cell of a described row, per category."""
    bases = {c.id: c.base for changes in comparison.changes.values() for c in changes}

    def flaky(t: TestResult) -> str:
        first = _first_failure(t)
        label = f" [{FAST_MODE_ONLY}]" if fast_mode_only(first) else ""
        return f"{first.outcome.value}: {error_summary(first)}{label} (passed on try {len(t.attempts) + 1})"

    def fixed(t: TestResult) -> str:
        base = bases.get(t.id)
        return "" if base is None else f"was {base.outcome.value}: {error_summary(base)}"

    def unexpected(t: TestResult) -> str:
        base = bases.get(t.id)
        if comparison.base is None:
            return "expected to fail, passed"
        if base is None:
            return "expected to fail, passed (new test)"
        also = "; also on base" if base.outcome is Outcome.XPASSED else f"; base: {base.outcome.value}"
        return "expected to fail, passed" + also

    def new_test(t: TestResult) -> str:
        return t.outcome.value + (f": {t.message}" if t.message else "")

    def removed(t: TestResult) -> str:
        return f"was {t.outcome.value}"

    def skip_changed(t: TestResult) -> str:
        base = bases.get(t.id)
        reason = f": {t.message}" if t.message and t.outcome is Outcome.SKIPPED else ""
        return f"{base.outcome.value if base else '?'} → {t.outcome.value}{reason}"

    return {
        Category.FLAKY: flaky,
        Category.FIXED: fixed,
        Category.UNEXPECTED_PASS: unexpected,
        Category.NEW_TEST: new_test,
        Category.REMOVED_TEST: removed,
        Category.SKIP_CHANGED: skip_changed,
    }


def _sections(
    style: Style,
    comparison: Comparison,
    *,
    max_rows: int | None = None,
    rest: str = _RESULTS_FILES,
    full_samples: bool = True,
    whole: int | None = _USUAL,
) -> list[tuple[int, Section]]:
    """(fill priority, section), in display order."""
    describers = _describers(comparison)
    out: list[tuple[int, Section]] = []
    for category, kind in SECTIONS.items():
        members = [c.test for c in comparison.changes.get(category, ())]
        label = category.label
        if category is Category.NEW_FAILURE and comparison.base is None:
            members = [t for t in comparison.head.tests if t.outcome in (Outcome.FAILED, Outcome.ERROR)]
            label = "failures"
        if not members:
            continue
        title = label[:1].upper() + label[1:]
        if style.markdown and kind.emoji:
            title = f"{kind.emoji} {title}"
        if kind.column is None:
            columns: Sequence[str] = _FAILURE_COLUMNS
            row = _failure_row(style, full_samples)
        else:
            columns = ("op", "check", "dtype", kind.column)
            row = _described_row(style, describers[category])
        section = _section(
            style,
            title,
            columns,
            members,
            row,
            collapsed=kind.collapsed,
            max_rows=max_rows,
            rest=rest,
            whole=whole,
        )
        out.append((kind.priority, section))
    return out


# --- headline, context, totals ---------------------------------------------------------------------


def _changes(head: Results, comparison: Comparison | None) -> list[str]:
    """What changed, most important first: ['2 new failures', '1 fixed', '3 still failing on base']."""
    if comparison is not None and comparison.base is not None:
        new = comparison.count(Category.NEW_FAILURE)
        parts = [Category.NEW_FAILURE.counted(new) if new else "no new failures"]
        for category in (
            Category.FIXED,
            Category.STILL_FAILING,
            Category.FLAKY,
            Category.UNEXPECTED_PASS,
        ):
            if comparison.count(category):
                parts.append(category.counted(comparison.count(category)))
        return parts
    counts = head.counts()
    failing = counts[Outcome.FAILED] + counts[Outcome.ERROR]
    parts = [f"{failing:,} failing" if failing else "no failures"]
    flaky = sum(t.flaky for t in head.tests)
    if flaky:
        parts.append(Category.FLAKY.counted(flaky))
    if counts[Outcome.XPASSED]:
        parts.append(Category.UNEXPECTED_PASS.counted(counts[Outcome.XPASSED]))
    return parts


def _tests(n: int) -> str:
    return f"{n:,} test{'s' if n != 1 else ''}"


def headline(head: Results, comparison: Comparison | None) -> str:
    """The verdict, short (a check run's title, a log line): '2 new failures, 1 fixed, 3 still
    failing on base'; without base results '5 failing (9 tests)'."""
    prefix = "interrupted: " if head.run.interrupted else ""
    if not head.tests:
        return prefix + "no tests ran"
    parts = _changes(head, comparison)
    if comparison is not None and comparison.base is not None:
        return prefix + ", ".join(parts)
    note = "; not compared with base" if comparison is not None and comparison.baseline_problem else ""
    return prefix + ", ".join(parts) + f" ({_tests(len(head.tests))}{note})"


def _delta(change: int) -> str:
    return "±0" if change == 0 else f"{change:+,}"


def stats(head: Results, comparison: Comparison | None) -> str:
    """A report's first line: the tests and their change against base, then what changed, as
    EnricoMi's one-line stats: '5,418 tests ±0 · 2 new failures · 1 fixed · 3 still failing on
    base'. Without base results to compare with: '5,418 tests · 5 failing · not compared with
    base' (a report of one file, not asked to compare, says only the counts)."""
    prefix = "interrupted: " if head.run.interrupted else ""
    if not head.tests:
        return prefix + "no tests ran"
    tests = _tests(len(head.tests))
    compared = comparison is not None and comparison.base is not None
    if comparison is not None and comparison.base is not None:
        tests += " " + _delta(len(head.tests) - len(comparison.base.tests))
    parts = [tests, *_changes(head, comparison)]
    if comparison is not None and not compared:
        parts.append("not compared with base")
    return prefix + " · ".join(parts)


def _short_sha(sha: str | None) -> str | None:
    return sha[:10] if sha else None


def _commit(style: Style, sha: str, links: Links | None) -> str:
    return style.link(style.text(_short_sha(sha)), links.commit(sha) if links is not None else None)


def _context(style: Style, head: Results, base: Results | None, links: Links | None) -> str:
    run = head.run
    device = run.device + (f" ({run.device_name})" if run.device_name and run.device == "cuda" else "")
    words = [style.text(f"torch {run.torch_version}"), style.text(device)]
    if run.selection.get("shard"):
        words.append(style.text(f"shard {run.selection['shard']}"))
    # publish knows the commit tested (a pull request's head); the results know the one checked out
    head_sha = links.head_sha if links is not None and links.head_sha else run.git_sha
    if head_sha:
        words.append("head " + _commit(style, head_sha, links))
    if base is not None:
        base_sha = links.base_sha if links is not None and links.base_sha else base.run.git_sha
        words.append(
            "base " + (_commit(style, base_sha, links) if base_sha else style.text(base.run.started_at))
        )
    if links is not None and safe_url(links.check_run) and style.markdown:  # a word without its link: none
        words.append(style.link("check run", links.check_run))
    return style.line(" · ".join(words))


def _since(style: Style, since: Since | None, links: Links | None) -> str:
    """'Fixed since the previous push (abc1234567): 2 · test_a, test_b' (an edited PR comment)."""
    if since is None or not since.fixed:
        return ""
    label = style.strong(f"Fixed since the previous {'run' if since.same_commit else 'push'}")
    if since.sha:
        label += f" ({_commit(style, since.sha, links)})"
    names = ", ".join(style.code(t.id) for t in since.fixed[:_MAX_SINCE])
    if len(since.fixed) > _MAX_SINCE:
        names += f", … and {len(since.fixed) - _MAX_SINCE:,} more"
    mark = "✅ " if style.markdown else ""
    return style.line(f"{mark}{label}: {len(since.fixed):,} · {names}")


_TOTAL_OUTCOMES = (
    Outcome.PASSED,
    Outcome.FAILED,
    Outcome.ERROR,
    Outcome.SKIPPED,
    Outcome.XFAILED,
    Outcome.XPASSED,
)


def _totals(style: Style, head: Results, base: Results | None) -> str:
    sides = [("head", head)] + ([("base", base)] if base is not None else [])
    if style.markdown:
        columns = ["", "tests", *(o.value for o in _TOTAL_OUTCOMES), "flaky", "wall time", "test time"]
        lines = ["\n### Totals\n\n", "| " + " | ".join(columns) + " |\n", "|" + "---|" * len(columns) + "\n"]
        for name, results in sides:
            counts = results.counts()
            cells = [
                name if len(sides) > 1 else "this run",
                f"{len(results.tests):,}",
                *(f"{counts[o]:,}" for o in _TOTAL_OUTCOMES),
                f"{sum(t.flaky for t in results.tests):,}",
                clock(results.run.duration),
                clock(sum(t.duration for t in results.tests)),
            ]
            lines.append("| " + " | ".join(cells) + " |\n")
        return "".join(lines)
    lines = ["\nTOTALS\n"]
    for name, results in sides:
        counts = results.counts()
        outcomes = ", ".join(f"{counts[o]:,} {o.value}" for o in _TOTAL_OUTCOMES if counts[o])
        flaky = sum(t.flaky for t in results.tests)
        n = len(results.tests)
        lines.append(
            f"  {name if len(sides) > 1 else 'this run'}: {n:,} test{'s' if n != 1 else ''}: {outcomes or 'none'}"
            + (f" ({flaky:,} flaky)" if flaky else "")
            + f" in {clock(results.run.duration)} (test time {clock(sum(t.duration for t in results.tests))})\n"
        )
    return "".join(lines)


def _notes(style: Style, comparison: Comparison | None) -> list[str]:
    if comparison is None:
        return []
    notes = []
    if comparison.baseline_problem is not None:
        notes.append(style.note(f"not compared: {style.text(comparison.baseline_problem, _MAX_NOTE)}"))
    notes.extend(style.note(style.text(w, _MAX_NOTE)) for w in comparison.warnings)
    return notes


# --- the whole report ------------------------------------------------------------------------------


def _cut(text: str, budget: int) -> str:
    """The longest prefix of ``text`` within ``budget`` bytes, marked as cut."""
    if size(text) <= budget:
        return text
    mark = "\n… (cut)\n"
    room = max(0, budget - size(mark))
    head = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return head + mark if size(head + mark) <= budget else head


def render(
    head: Results,
    comparison: Comparison | None,
    *,
    fmt: str = "markdown",
    budget: int | None = None,
    title: str = "gradci",
    links: Links | None = None,
    max_rows: int | None = None,
    since: Since | None = None,
    full_samples: bool = True,
) -> str:
    """The report, at most ``budget`` UTF-8 bytes (None: no limit) and ``max_rows`` rows a table
    (None: as many as fit; ``COMMENT_ROWS`` for a PR comment, where an op then shows one row).
    ``full_samples``: each failure's sample in full below its table, where the short form in the
    table leaves something out (a check run's summary leaves them to its annotations)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    if budget is not None and budget < 0:
        raise ValueError("budget must not be negative")
    if max_rows is not None and max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    style: Style = Markdown() if fmt == "markdown" else Text()
    effective = comparison if comparison is not None else compare(None, head)
    top = style.title(f"{style.text(title)}: {style.text(stats(head, comparison))}")
    notes = _notes(style, comparison)
    context = _context(style, head, effective.base, links) + _since(style, since, links)
    rest = _RESULTS_FILES
    if links is not None and links.rest is not None and safe_url(links.rest[1]) and style.markdown:
        rest = f"see {style.link(style.text(links.rest[0]), links.rest[1])}; {_RESULTS_FILES}"
    bottom = _totals(style, head, effective.base)

    def build(whole: int | None = _USUAL) -> list[tuple[int, Section]]:
        return _sections(
            style, effective, max_rows=max_rows, rest=rest, full_samples=full_samples, whole=whole
        )

    def assemble(sections: list[tuple[int, Section]]) -> str:
        body = "".join(section.render(style, section.shown) for _, section in sections)
        return top + "".join(notes) + context + body + bottom

    def most(section: Section) -> int:
        return len(section.units) if max_rows is None else min(len(section.units), max_rows)

    if budget is None:
        sections = build()
        for _, section in sections:
            section.shown = most(section)
        return assemble(sections)

    fixed = sum(size(part) for part in (top, *notes, context, bottom))
    if max_rows is None:  # room for every test (or a few more an op)? then all of them
        for whole in _WHOLE_CAPS:
            sections = build(whole)
            if fixed + sum(section.cost(style, len(section.units)) for _, section in sections) <= budget:
                for _, section in sections:
                    section.shown = len(section.units)
                return assemble(sections)
            if all(len(s.units) == s.total for _, s in sections):
                break  # no op is capped: tighter caps change nothing
    sections = build()
    remaining = budget - fixed - sum(section.cost(style, 0) for _, section in sections)
    if remaining >= 0:
        by_priority = [section for _, section in sorted(sections, key=lambda item: item[0])]
        for round_rows in (_MIN_ROWS, None):  # a few rows everywhere first, then the rest by priority
            for section in by_priority:
                current = section.cost(style, section.shown)
                last = most(section) if round_rows is None else min(most(section), round_rows)
                best = section.shown
                for k in range(section.shown + 1, last + 1):
                    if section.cost(style, k) - current <= remaining:
                        best = k
                remaining -= section.cost(style, best) - current
                section.shown = best
        text = assemble(sections)
        if size(text) <= budget:
            return text
    return _cut(_compact(style, top, effective, head), budget)


def _compact(style: Style, top: str, comparison: Comparison, head: Results) -> str:
    """When even the outline does not fit: the headline and the counts."""
    counts = ", ".join(
        category.counted(comparison.count(category)) for category in Category if comparison.count(category)
    )
    problem = comparison.baseline_problem
    lines = [top]
    if problem is not None:
        lines.append(style.note(f"not compared: {style.text(problem, 200)}"))
    if counts:
        lines.append(style.line(counts))
    summary = head.summary()
    lines.append(style.line(", ".join(f"{v:,} {k}" for k, v in summary.items() if v)))
    return "".join(lines)
