"""The summary a person reads: a headline, then what changed, grouped by op, within a size budget.

``render`` writes Markdown (a PR comment, a check-run summary, the job summary) or plain text (a
log). It stays readable at thousands of tests and hundreds of failures: rows are grouped by op, an
op shows a few rows and a count of the rest, and the whole report fits ``budget`` exactly. The
budget is counted in UTF-8 bytes, which is never less than characters or UTF-16 units, so it holds
for GitHub's limits whichever way they count: a PR comment 65,536, a check-run summary 65,535, the
job summary 1 MiB.

Sections are filled by priority: new failures (without a base: failures), flaky, fixed, still
failing, unexpected passes, new tests, removed tests, skip-status changes. Each first gets a few
rows, then the budget left goes to them in the same order. What does not fit is counted ("… and 37
more in 12 ops"); the results JSON and JUnit XML always hold everything.

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

from .compare import Category, Comparison, compare
from .errors import ResultsFileError
from .github.workflow_commands import LINE_BREAK, escape_workflow_commands
from .results import Mismatch, Outcome, Results, TestResult

PR_COMMENT_LIMIT = 65_536
CHECK_RUN_SUMMARY_LIMIT = 65_535
JOB_SUMMARY_LIMIT = 1_048_576
FORMATS = ("markdown", "text")

_MIN_ROWS = 10  # rows each section gets before any section gets more
_MAX_NOTE = 600
_MAX_MESSAGE = 160
_MAX_SAMPLE = 80
_MAX_REPRO = 300


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


def _sample(test: TestResult) -> str:
    if test.sample_index is None:
        return ""
    return (
        f"{test.sample_index}: {clean(test.sample, _MAX_SAMPLE)}" if test.sample else str(test.sample_index)
    )


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
        raise NotImplementedError

    def section_open(self, heading: str, collapsed: bool) -> str:
        raise NotImplementedError

    def section_close(self, collapsed: bool) -> str:
        raise NotImplementedError

    def table_head(self, columns: Sequence[str]) -> str:
        raise NotImplementedError

    def more(self, text: str) -> str:
        raise NotImplementedError

    def rows(self, op: str, cells: Sequence[Sequence[str]], detail: Sequence[str | None]) -> list[str]:
        """One unit per test of an op group; the op is named on the first."""
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
        return md_code(value, limit)

    def section_open(self, heading: str, collapsed: bool) -> str:
        if collapsed:
            return f"\n<details><summary>{heading}</summary>\n\n"
        return f"\n### {heading}\n\n"

    def section_close(self, collapsed: bool) -> str:
        return "\n</details>\n" if collapsed else ""

    def table_head(self, columns: Sequence[str]) -> str:
        return "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"

    def more(self, text: str) -> str:
        return f"\n_{text}_\n"

    def rows(self, op: str, cells: Sequence[Sequence[str]], detail: Sequence[str | None]) -> list[str]:
        return [
            "| " + " | ".join([md_code(op) if i == 0 else "", *row]) + " |\n" for i, row in enumerate(cells)
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

    def section_open(self, heading: str, collapsed: bool) -> str:
        return escape_workflow_commands(f"\n{heading}\n")

    def section_close(self, collapsed: bool) -> str:
        return ""

    def table_head(self, columns: Sequence[str]) -> str:
        return ""

    def more(self, text: str) -> str:
        return escape_workflow_commands(f"  {text}\n")

    def rows(self, op: str, cells: Sequence[Sequence[str]], detail: Sequence[str | None]) -> list[str]:
        units = []
        for i, (row, extra) in enumerate(zip(cells, detail, strict=True)):
            head = f"  {clean(op)}\n" if i == 0 else ""
            body = "    " + "  ".join(c for c in row if c) + "\n"
            units.append(escape_workflow_commands(head + body + (f"      {extra}\n" if extra else "")))
        return units

    def more_of_op(self, hidden: str, width: int) -> str:
        return escape_workflow_commands(f"    {clean(hidden)}\n")


# --- sections ---------------------------------------------------------------------------------------


@dataclass
class Unit:
    text: str
    covers: int  # tests it accounts for (a "… and 12 more" row covers 12)
    op: str


@dataclass
class Section:
    heading: str
    columns: Sequence[str]
    units: list[Unit]
    total: int  # tests in the section
    collapsed: bool = False
    shown: int = 0  # units that fit the budget
    _bytes: list[int] = field(default_factory=list, repr=False)  # prefix sums over units
    _covered: list[int] = field(default_factory=list, repr=False)
    _ops_after: list[int] = field(default_factory=list, repr=False)  # distinct ops among units[k:]

    def __post_init__(self) -> None:
        self._bytes, self._covered = [0], [0]
        for unit in self.units:
            self._bytes.append(self._bytes[-1] + size(unit.text))
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
            return f"not shown here: {hidden:,} test{'s' if hidden > 1 else ''}{where} (the results files hold them all)"
        return f"… and {hidden:,} more{where} not shown (the results files hold them all)"

    def render(self, style: Style, k: int) -> str:
        parts = [style.section_open(self.heading, self.collapsed)]
        if k:
            parts.append(style.table_head(self.columns))
            parts.extend(u.text for u in self.units[:k])
        more = self.more_text(k)
        if more is not None:
            parts.append(style.more(more))
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
            + (size(style.more(more)) if more is not None else 0)
        )


Row = Callable[[TestResult], tuple[list[str], str | None]]


def _per_op_cap(total: int) -> int | None:
    """Rows one op may show before the rest of it is counted: many ops stay visible."""
    if total <= 25:
        return None
    return 5 if total <= 200 else 3


def _section(
    style: Style,
    heading: str,
    columns: Sequence[str],
    tests: Sequence[TestResult],
    row: Row,
    *,
    collapsed: bool = False,
) -> Section:
    cap = _per_op_cap(len(tests))
    units: list[Unit] = []
    for op, group in groupby(sorted(tests, key=lambda t: (t.op, t.id)), key=lambda t: t.op):
        members = list(group)
        shown = members if cap is None or len(members) <= cap + 1 else members[:cap]
        made = [row(t) for t in shown]
        texts = style.rows(op, [cells for cells, _ in made], [extra for _, extra in made])
        units.extend(Unit(text, 1, op) for text in texts)
        if len(shown) < len(members):
            hidden = members[len(shown) :]
            checks = Counter(t.check for t in hidden).most_common()
            what = ", ".join(check + (f" x{n}" if n > 1 else "") for check, n in checks)
            text = style.more_of_op(f"… and {len(hidden):,} more: {what}", len(columns))
            units.append(Unit(text, len(hidden), op))
    ops = len({t.op for t in tests})
    return Section(_heading(style, heading, len(tests), ops), columns, units, len(tests), collapsed)


def _heading(style: Style, name: str, n: int, ops: int) -> str:
    where = f" in {ops:,} ops" if ops > 1 else ""
    return f"{name} ({n:,}{where})" if style.markdown else f"{name.upper()} ({n:,}{where})"


def _failure_row(style: Style) -> Row:
    def row(t: TestResult) -> tuple[list[str], str | None]:
        label = "" if t.outcome is Outcome.FAILED else f"{t.outcome.value}: "
        error = label + error_summary(t)
        if style.markdown:
            sample = _sample(t)
            text = md_text(error) + (f" **{FAST_MODE_ONLY}** (slow mode passes)" if fast_mode_only(t) else "")
            cells = [md_text(t.check), md_text(t.dtype), md_code(sample) if sample else "", text]
            return [*cells, md_code(_repro(t), _MAX_REPRO)], None
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


def _sections(style: Style, comparison: Comparison) -> list[tuple[int, Section]]:
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
            row = _failure_row(style)
        else:
            columns = ("op", "check", "dtype", kind.column)
            row = _described_row(style, describers[category])
        out.append((kind.priority, _section(style, title, columns, members, row, collapsed=kind.collapsed)))
    return out


# --- headline, context, totals ---------------------------------------------------------------------


def headline(head: Results, comparison: Comparison | None) -> str:
    """One line: '2 new failures, 1 fixed, 3 still failing on base'."""
    prefix = "interrupted: " if head.run.interrupted else ""
    if not head.tests:
        return prefix + "no tests ran"
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
        return prefix + ", ".join(parts)
    counts = head.counts()
    failing = counts[Outcome.FAILED] + counts[Outcome.ERROR]
    parts = [f"{failing:,} failing" if failing else "no failures"]
    flaky = sum(t.flaky for t in head.tests)
    if flaky:
        parts.append(Category.FLAKY.counted(flaky))
    if counts[Outcome.XPASSED]:
        parts.append(Category.UNEXPECTED_PASS.counted(counts[Outcome.XPASSED]))
    n = len(head.tests)
    note = "; not compared with base" if comparison is not None and comparison.baseline_problem else ""
    return prefix + ", ".join(parts) + f" ({n:,} test{'s' if n != 1 else ''}{note})"


def _short_sha(sha: str | None) -> str | None:
    return sha[:10] if sha else None


def _context(style: Style, head: Results, base: Results | None) -> str:
    run = head.run
    device = run.device + (f" ({run.device_name})" if run.device_name and run.device == "cuda" else "")
    words = [f"torch {run.torch_version}", device]
    if run.selection.get("shard"):
        words.append(f"shard {run.selection['shard']}")
    if run.git_sha:
        words.append(f"head {_short_sha(run.git_sha)}")
    if base is not None:
        words.append(f"base {_short_sha(base.run.git_sha) or base.run.started_at}")
    return style.line(" · ".join(style.text(w) for w in words))


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
) -> str:
    """The report, at most ``budget`` UTF-8 bytes (None: no limit)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    if budget is not None and budget < 0:
        raise ValueError("budget must not be negative")
    style: Style = Markdown() if fmt == "markdown" else Text()
    effective = comparison if comparison is not None else compare(None, head)
    top = style.title(f"{style.text(title)}: {style.text(headline(head, comparison))}")
    notes = _notes(style, comparison)
    context = _context(style, head, effective.base)
    sections = _sections(style, effective)
    bottom = _totals(style, head, effective.base)

    def assemble() -> str:
        body = "".join(section.render(style, section.shown) for _, section in sections)
        return top + "".join(notes) + context + body + bottom

    if budget is None:
        for _, section in sections:
            section.shown = len(section.units)
        return assemble()

    fixed = sum(size(part) for part in (top, *notes, context, bottom))
    remaining = budget - fixed - sum(section.cost(style, 0) for _, section in sections)
    if remaining >= 0:
        by_priority = [section for _, section in sorted(sections, key=lambda item: item[0])]
        for round_rows in (_MIN_ROWS, None):  # a few rows everywhere first, then the rest by priority
            for section in by_priority:
                current = section.cost(style, section.shown)
                last = len(section.units) if round_rows is None else min(len(section.units), round_rows)
                best = section.shown
                for k in range(section.shown + 1, last + 1):
                    if section.cost(style, k) - current <= remaining:
                        best = k
                remaining -= section.cost(style, best) - current
                section.shown = best
        text = assemble()
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
