"""The summary: headline, sections, grouping by op, the size budget at scale, escaping, the command.

Markdown is checked by parsing it with a CommonMark parser with GitHub's table extension
(markdown-it-py), so "renders as intended" is tested, not guessed from substrings.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import gradci
from markdown_it import MarkdownIt
from results_factory import large, result, results, save, tid

from gradci.compare import Category, compare
from gradci.report import (
    CHECK_RUN_SUMMARY_LIMIT,
    JOB_SUMMARY_LIMIT,
    PR_COMMENT_LIMIT,
    headline,
    md_code,
    md_text,
    render,
    size,
)

GFM = MarkdownIt("commonmark").enable("table")
MORE = re.compile(r"(?:… and|not shown here:) ([\d,]+)")


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every table as rows of cell texts (header row first), as a GFM renderer sees it."""
    tokens = GFM.parse(markdown)
    tables: list[list[list[str]]] = []
    row: list[str] | None = None
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            inline = tokens[i + 1]
            assert row is not None
            row.append(inline.content if inline.type == "inline" else "")
        elif token.type == "tr_close":
            assert row is not None
            tables[-1].append(row)
    return tables


def _html_tags(markdown: str) -> list[str]:
    """Raw HTML the renderer would pass through (GitHub sanitises, but we should emit none of it)."""
    found = []
    for token in GFM.parse(markdown):
        if token.type == "html_block":
            found.append(token.content.strip())
        for child in token.children or []:
            if child.type == "html_inline":
                found.append(child.content)
    return found


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    end = min(
        (i for i in (markdown.find("\n### ", start + 1), markdown.find("\n<details>", start + 1)) if i > 0),
        default=len(markdown),
    )
    return markdown[start:end]


def _accounted(section: str) -> int:
    """Tests a section accounts for: its table rows plus every '… and N more' count."""
    tables = _tables(section)
    rows = sum(len(t) - 1 for t in tables)
    more_rows = sum(1 for t in tables for r in t[1:] if MORE.search(" ".join(r)))
    counted = sum(int(n.replace(",", "")) for n in MORE.findall(section))
    return rows - more_rows + counted


# --- the headline and the sections ---------------------------------------------------------------------


def _pair():
    base = results(
        [
            *(result(op) for op in "abg"),
            *(result(op, "failed") for op in "cdef"),
            result("h", "xfailed"),
        ]
    )
    head = results(
        [
            result("a", "failed"),
            result("b", "error", message="worker crashed with SIGSEGV"),
            *(result(op, "failed") for op in "cde"),
            result("f"),
            result("g", "passed", flaky=True),
            result("h", "xpassed"),
            result("i", "skipped", message="Skipped!"),
        ]
    )
    return base, head


def test_headline() -> None:
    base, head = _pair()
    comparison = compare(base, head)
    assert (
        headline(head, comparison)
        == "2 new failures, 1 fixed, 3 still failing on base, 1 flaky, 1 unexpected pass"
    )
    assert headline(head, None) == "5 failing, 1 flaky, 1 unexpected pass (9 tests)"
    clean = results([result("a"), result("b", "skipped")])
    assert headline(clean, compare(clean, clean)) == "no new failures"
    assert headline(clean, None) == "no failures (2 tests)"
    assert headline(results([]), None) == "no tests ran"
    gone = compare(None, clean, baseline_problem="base results unusable: x")
    assert headline(clean, gone) == "no failures (2 tests; not compared with base)"
    stopped = results([result("a")], interrupted=True)
    assert headline(stopped, None).startswith("interrupted: ")


def test_markdown_report_sections() -> None:
    base, head = _pair()
    markdown = render(head, compare(base, head))
    assert markdown.startswith("## gradci: 2 new failures, 1 fixed, 3 still failing on base, 1 flaky")
    headings = re.findall(r"^### (.*)$|<summary>(.*)</summary>", markdown, re.M)
    assert [a or b for a, b in headings] == [
        "❌ New failures (2 in 2 ops)",
        "🔁 Flaky (1)",
        "✅ Fixed (1)",
        "❔ Unexpected passes (1)",
        "Still failing on base (3 in 3 ops)",
        "New tests (1)",
        "Totals",
    ]
    new = _tables(_section(markdown, "### ❌ New failures"))[0]
    assert new[0] == ["op", "check", "dtype", "sample", "max error / message", "repro"]
    assert new[1][:3] == ["`a`", "grad", "float64"]
    assert new[1][4] == "1.5 abs, 0.5 rel; output 0 w.r.t. input"
    assert new[1][5] == f"`gradci repro {tid('a')} --sample 1 --op-modules mylib.ops`"
    assert new[2][4] == "error: worker crashed with SIGSEGV"
    flaky = _tables(_section(markdown, "### 🔁 Flaky"))[0]
    assert flaky[1][3] == "failed: GradcheckError: Jacobian mismatch (first try) (passed on try 2)"
    fixed = _tables(_section(markdown, "### ✅ Fixed"))[0]
    assert fixed[1][:3] == ["`f`", "grad", "float64"] and fixed[1][3].startswith("was failed: 1.5 abs")
    totals = _tables(markdown[markdown.index("### Totals") :])[0]
    assert totals[0][:3] == ["", "tests", "passed"]
    assert totals[1][:4] == ["head", "9", "2", "4"] and totals[2][:4] == ["base", "8", "3", "4"]
    assert totals[1][-2:] == ["6m 12s", "4.5s"]  # wall time and summed test time
    assert markdown.count("<details>") == markdown.count("</details>") == 2


def test_report_without_base_lists_failures() -> None:
    _, head = _pair()
    markdown = render(head, None)
    assert "### ❌ Failures (5 in 5 ops)" in markdown and "Still failing" not in markdown
    assert "not compared" not in markdown
    problem = compare(None, head, baseline_problem="base results unusable: base.json: truncated")
    markdown = render(head, problem)
    assert "> ⚠️ not compared: base results unusable: base.json: truncated" in markdown
    assert "### ❌ Failures (5 in 5 ops)" in markdown


def test_fast_mode_only_is_labelled() -> None:
    head = results([result("a", "failed", fast_mode_only=True), result("b", "failed")])
    markdown = render(head, None)
    rows = _tables(markdown)[0]
    assert rows[1][4] == "1.5 abs, 0.5 rel; output 0 w.r.t. input **fast mode only** (slow mode passes)"
    assert "fast mode only" not in rows[2][4]
    text = render(head, None, fmt="text")
    assert "w.r.t. input [fast mode only: slow mode passes]" in text


def test_text_report() -> None:
    base, head = _pair()
    text = render(head, compare(base, head), fmt="text")
    assert text.startswith(
        "gradci: 2 new failures, 1 fixed, 3 still failing on base, 1 flaky, 1 unexpected pass\n"
    )
    assert (
        "\nNEW FAILURES (2 in 2 ops)\n  a\n    grad  float64  1.5 abs, 0.5 rel; output 0 w.r.t. input" in text
    )
    assert f"      repro: gradci repro {tid('a')} --sample 1 --op-modules mylib.ops\n" in text
    assert "\nTOTALS\n  head: 9 tests: 2 passed, 4 failed, 1 error, 1 skipped, 1 xpassed (1 flaky)" in text
    assert "|" not in text and "`" not in text and "<" not in text


# --- at scale, within budgets --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big():
    head = large(seed=1)  # 500 failures over 60 ops
    base = large(failing=150, failing_ops=100, seed=2)  # partly the same
    return head, compare(base, head)


def test_large_comparison_shape(big) -> None:
    head, comparison = big
    assert len(head.tests) == 5_000 and len(head.failing) == 500
    assert comparison.count(Category.NEW_FAILURE) > 350
    assert comparison.count(Category.STILL_FAILING) > 20 and comparison.count(Category.FIXED) > 20


@pytest.mark.parametrize("fmt", ["markdown", "text"])
@pytest.mark.parametrize(
    "budget",
    [PR_COMMENT_LIMIT, CHECK_RUN_SUMMARY_LIMIT, JOB_SUMMARY_LIMIT, 20_000, 5_000, 1_200, 400, 120, 10, 0],
)
def test_budget_holds_at_scale(big, fmt: str, budget: int) -> None:
    head, comparison = big
    started = time.monotonic()
    report = render(head, comparison, fmt=fmt, budget=budget)
    assert time.monotonic() - started < 2.0
    assert size(report) <= budget
    if budget >= 120:  # the headline survives every budget it fits in
        assert headline(head, comparison) in report


def test_pr_comment_at_scale_stays_meaningful(big) -> None:
    head, comparison = big
    report = render(head, comparison, budget=PR_COMMENT_LIMIT)
    assert PR_COMMENT_LIMIT - 3_000 < size(report) <= PR_COMMENT_LIMIT  # uses the room it has
    new = comparison.count(Category.NEW_FAILURE)
    ops = len({c.op for c in comparison.changes[Category.NEW_FAILURE]})
    section = _section(report, "### ❌ New failures")
    assert section.startswith(f"### ❌ New failures ({new} in {ops} ops)")
    rows = _tables(section)[0][1:]
    assert len(rows) > 100  # plenty shown
    assert _accounted(section) == new  # and every test either shown or counted
    # Grouped by op: each op named once, on its first row, in order; at most 3 rows of one op.
    named = [r[0] for r in rows if r[0]]
    assert named == sorted(set(named)) and len(named) > 30
    per_op = [sum(1 for _ in group) for group in _groups(rows)]
    assert max(per_op) <= 4  # 3 rows and an "… and N more" row
    # The other sections still got their share, and the totals are there.
    assert "### ✅ Fixed" in report and len(_tables(_section(report, "### ✅ Fixed"))[0]) > 10
    assert "<summary>Still failing on base" in report and "### Totals" in report
    assert report.count("<details>") == report.count("</details>")


def _groups(rows: list[list[str]]):
    group: list[list[str]] = []
    for row in rows:
        if row[0] and group:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def test_job_summary_at_scale_shows_everything(big) -> None:
    head, comparison = big
    report = render(head, comparison, budget=JOB_SUMMARY_LIMIT)
    assert size(report) < JOB_SUMMARY_LIMIT and "not shown" not in report  # it all fits in 1 MiB
    for heading, category in (
        ("### ❌ New failures", Category.NEW_FAILURE),
        ("### ✅ Fixed", Category.FIXED),
    ):
        assert _accounted(_section(report, heading)) == comparison.count(category)
    assert report == render(head, comparison)  # no budget: the same


def test_small_budgets_keep_headline_and_counts(big) -> None:
    head, comparison = big
    report = render(head, comparison, budget=1_200)
    assert report.startswith("## gradci: ") and size(report) <= 1_200
    assert "### ❌ New failures" in report and "### Totals" in report
    assert _accounted(_section(report, "### ❌ New failures")) == comparison.count(Category.NEW_FAILURE)
    tiny = render(head, comparison, budget=400)
    assert tiny.startswith("## gradci: ") and "new failures" in tiny


def test_more_budget_shows_more(big) -> None:
    head, comparison = big
    shown = [len(_tables(render(head, comparison, budget=b))) for b in (3_000, 10_000)]
    rows = [
        sum(len(t) for t in _tables(render(head, comparison, budget=b)))
        for b in (3_000, 10_000, 40_000, 65_536)
    ]
    assert shown[0] <= shown[1] and rows == sorted(rows) and rows[0] < rows[-1]


def test_multibyte_text_is_counted_in_bytes() -> None:
    head = results([result(f"op{i}", "failed", message="ошибка 💥 " * 20) for i in range(300)])
    for i, test in enumerate(head.tests):
        test.mismatch = None
        test.message = f"RuntimeError {i}: " + "ошибка 💥 " * 20
    report = render(head, None, budget=10_000)
    assert size(report) <= 10_000 and len(report) < 10_000
    report.encode("utf-8")  # no split characters


# --- untrusted text ------------------------------------------------------------------------------------

EVIL = (
    "RuntimeError: </details><img src=x onerror=alert(1)> | `tick` <!-- @octocat #123 $x^2$ "
    "**bold** [link](http://e.x) \x1b[31mred\x1b[0m\nsecond line\r\n| --- |"
)


def test_untrusted_text_cannot_break_out() -> None:
    evil = result("mylib.evil</summary>", "error", message=EVIL)
    evil.sample = "Tensor`` | <b>x</b>"
    evil.repro = "gradci repro x | `y`"
    head = results([evil, result("b", "failed")])
    markdown = render(head, None)
    assert _html_tags(markdown) == []  # no raw HTML at all, ours excepted (none here)
    rows = _tables(markdown)[0]
    assert len(rows) == 3 and all(len(r) == 6 for r in rows)  # the table held together
    op, _, _, _, message, _ = rows[2]  # sorted by op: b first
    assert op == "`mylib.evil</summary>`"  # literal, in a code span
    html = GFM.render(markdown)
    assert "<img" not in html and "<b>" not in html and "<strong>" not in html and "<a " not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "@\u200bocto" in markdown and "#\u200b123" in markdown  # no mention, no issue link
    assert "\\$x^2\\$" in markdown  # no math
    assert "\x1b" not in markdown and "second line" in message and "\n" not in message
    assert "<code>gradci repro x | `y`</code>" in html.replace("&quot;", '"').replace("&amp;", "&")
    text = render(head, None, fmt="text")
    assert "\x1b" not in text and "\r" not in text
    assert all(not line.lstrip().startswith("::") for line in text.splitlines())


def test_details_stay_balanced_with_hostile_ops() -> None:
    base = results([result("x</details>", "failed"), result("y")])
    head = results([result("x</details>", "failed"), result("y", "skipped")])
    markdown = render(head, compare(base, head))
    assert [t for t in _html_tags(markdown)] == [
        "<details><summary>Still failing on base (1)</summary>",
        "</details>",
        "<details><summary>Skip-status changes (1)</summary>",
        "</details>",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a|b", "a\\|b"),
        ("<b>&", "&lt;b&gt;&amp;"),
        ("*_`[]~$\\", "\\*\\_\\`\\[\\]\\~\\$\\\\"),
        ("@user #12", "@\u200buser #\u200b12"),
        ("x\ny\tz", "x y z"),
        ("x\ry\r\nz\u2028w\u2029v\x85u\x0bt", "x y z w v u t"),  # every line break is a space
        ("a\x9bb\x00c", "a\ufffdb\ufffdc"),  # C0 and C1 control characters are shown as such
    ],
)
def test_md_text(text: str, expected: str) -> None:
    assert md_text(text) == expected


def test_a_carriage_return_cannot_start_a_heading() -> None:
    """CommonMark ends a line at \r too: before, '\r# x' in a message opened a heading."""
    evil = result("a", "error", message="oops\r# Approved by the maintainers\r| x | y |")
    markdown = render(results([evil]), None)
    tokens = GFM.parse(markdown)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["gradci: 1 failing (1 test)", "❌ Failures (1)", "Totals"]
    rows = _tables(markdown)[0]
    assert len(rows) == 2 and all(len(r) == 6 for r in rows)
    assert "# Approved by the maintainers" in rows[1][4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a`b", "``a`b``"), ("`a", "`` `a ``"), ("a|b", "`a\\|b`"), ("", "")],
)
def test_md_code(text: str, expected: str) -> None:
    assert md_code(text) == expected


def test_bad_arguments() -> None:
    head = results([result("a")])
    with pytest.raises(ValueError):
        render(head, None, fmt="html")
    with pytest.raises(ValueError):
        render(head, None, budget=-1)


# --- the command ---------------------------------------------------------------------------------------


def test_report_command(tmp_path: Path) -> None:
    base, head = _pair()
    base.save(tmp_path / "base.json")
    head.save(tmp_path / "head.json")
    done = gradci("report", "head.json", "--baseline", "base.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("## gradci: 2 new failures, 1 fixed, 3 still failing on base")
    done = gradci(
        "report",
        "head.json",
        "--baseline",
        "base.json",
        "--format",
        "text",
        "--max-chars",
        "300",
        cwd=tmp_path,
    )
    assert done.returncode == 0 and size(done.stdout) <= 300 and done.stdout.startswith("gradci: 2 new")
    done = gradci("report", "head.json", "-o", "out/summary.md", "--title", "gradci (CPU)", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == ""
    assert (tmp_path / "out/summary.md").read_text().startswith("## gradci (CPU): 5 failing, 1 flaky")


def test_report_command_errors(tmp_path: Path) -> None:
    save(tmp_path / "head.json", [result("a", "failed")])
    done = gradci("report", "head.json", "--baseline", "missing.json", cwd=tmp_path)
    assert done.returncode == 3 and done.stdout.startswith(
        "## gradci: 1 failing (1 test; not compared with base)"
    )
    assert done.stderr == "gradci: error: base results unusable: missing.json: no such results file\n"
    done = gradci("report", "nothing.json", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (3, "")
    for bad in (["--format", "html"], ["--max-chars", "0"], ["--max-chars", "lots"]):
        done = gradci("report", "head.json", *bad, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
