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
    COMMENT_ROWS,
    JOB_SUMMARY_LIMIT,
    PR_COMMENT_LIMIT,
    Links,
    Since,
    headline,
    md_code,
    md_text,
    render,
    short_sample,
    size,
    stats,
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


def _links(markdown: str) -> list[tuple[str, str]]:
    """(text, href) of every link a GFM renderer makes."""
    found = []
    for token in GFM.parse(markdown):
        href: str | None = None
        text = ""
        for child in token.children or []:
            if child.type == "link_open":
                href, text = str(child.attrs["href"]), ""
            elif child.type == "link_close" and href is not None:
                found.append((text, href))
                href = None
            elif href is not None:
                text += child.content
    return found


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


def test_stats_line() -> None:
    """The first line: tests with their change against base, then what changed, in one form."""
    base, head = _pair()
    comparison = compare(base, head)
    assert (
        stats(head, comparison)
        == "9 tests +1 · 2 new failures · 1 fixed · 3 still failing on base · 1 flaky · 1 unexpected pass"
    )
    assert stats(base, compare(head, base)).startswith("8 tests -1 · ")
    clean = results([result("a"), result("b", "skipped")])
    assert stats(clean, compare(clean, clean)) == "2 tests ±0 · no new failures"
    many = large(n_ops=600, failing=0)
    assert stats(many, compare(many, many)) == "6,000 tests ±0 · no new failures"
    # without base results: the counts, and that nothing was compared where a comparison was asked for
    assert stats(head, None) == "9 tests · 5 failing · 1 flaky · 1 unexpected pass"
    gone = compare(None, clean, baseline_problem="no base results: none found")
    assert stats(clean, gone) == "2 tests · no failures · not compared with base"
    assert stats(results([result("a")]), None) == "1 test · no failures"
    assert stats(results([]), None) == "no tests ran"
    stopped = results([result("a")], interrupted=True)
    assert stats(stopped, None) == "interrupted: 1 test · no failures"


def test_markdown_report_sections() -> None:
    base, head = _pair()
    markdown = render(head, compare(base, head))
    assert markdown.startswith(
        "## gradci: 9 tests +1 · 2 new failures · 1 fixed · 3 still failing on base · 1 flaky · 1 unexpected pass\n"
    )
    headings = re.findall(r"^### (.*)$|<summary>(.*)</summary>", markdown, re.M)
    assert [a or b for a, b in headings] == [
        "❌ New failures (2 in 2 ops)",
        "Sample inputs in full",
        "🔁 Flaky (1)",
        "✅ Fixed (1)",
        "❔ Unexpected passes (1)",
        "Still failing on base (3 in 3 ops)",
        "Sample inputs in full",
        "New tests (1)",
        "Totals",
    ]
    new = _tables(_section(markdown, "### ❌ New failures"))[0]
    assert new[0] == ["op", "check", "dtype", "sample", "max error / message", "repro"]
    assert new[1][:4] == ["`a`", "grad", "float64", "`1: f64[3]`"]  # short; in full below the table
    assert (
        f"- `{tid('a')}` sample 1: `SampleInput(input=Tensor[size=(3,), device='cpu', dtype=torch.float64])`\n"
        in markdown
    )
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
    assert markdown.count("<details>") == markdown.count("</details>") == 4


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
        "gradci: 9 tests +1 · 2 new failures · 1 fixed · 3 still failing on base · 1 flaky · 1 unexpected pass\n"
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
    if budget >= 120:  # the first line survives every budget it fits in
        assert stats(head, comparison) in report


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
    # every failure a row of its own (without a budget, an op shows a few and counts the rest)
    assert "… and" not in report and len(_tables(report)[0]) - 1 == comparison.count(Category.NEW_FAILURE)
    assert "… and" in render(head, comparison)


SHA = "0123456789abcdef0123456789abcdef01234567"
BASE_SHA = "fedcba9876543210fedcba9876543210fedcba98"
CHECK_RUN = "https://github.com/octo/repo/runs/77"


def _links_for(**changes: object) -> Links:
    fields: dict[str, object] = {
        "server": "https://github.com",
        "repository": "octo/repo",
        "head_sha": SHA,
        "base_sha": BASE_SHA,
        "check_run": CHECK_RUN,
        "rest": ("the check run", CHECK_RUN),
    }
    fields.update(changes)
    return Links(**fields)


def test_links_to_the_commits_and_the_check_run() -> None:
    base, head = _pair()
    markdown = render(head, compare(base, head), links=_links_for())
    context = markdown.split("\n")[2]
    assert context == (
        f"torch 2.13.0+cpu · cpu · head [0123456789](https://github.com/octo/repo/commit/{SHA}) · "
        f"base [fedcba9876](https://github.com/octo/repo/commit/{BASE_SHA}) · [check run]({CHECK_RUN})"
    )
    assert _links(markdown) == [
        ("0123456789", f"https://github.com/octo/repo/commit/{SHA}"),
        ("fedcba9876", f"https://github.com/octo/repo/commit/{BASE_SHA}"),
        ("check run", CHECK_RUN),
    ]
    # a GitHub Enterprise server, and no check run (not created): the commits still link
    ghes = render(
        head, compare(base, head), links=_links_for(server="https://ghe.example.com/", check_run=None)
    )
    assert [href for _, href in _links(ghes)] == [
        f"https://ghe.example.com/octo/repo/commit/{SHA}",
        f"https://ghe.example.com/octo/repo/commit/{BASE_SHA}",
    ]
    # without links (a results file alone): the results' own commits, as text
    assert "head aaaaaaaaaa · base aaaaaaaaaa\n" in render(head, compare(base, head))
    # in text (a log), the commits without their links
    text = render(head, compare(base, head), fmt="text", links=_links_for())
    assert "\ntorch 2.13.0+cpu · cpu · head 0123456789 · base fedcba9876\n" in text


@pytest.mark.parametrize(
    "changes",
    [
        {"server": "javascript:alert(1)//"},
        {"server": "https://github.com/x) [y](https://evil.example"},
        {"head_sha": "0123456789) [evil](https://evil.example", "base_sha": "not a sha <b>"},
        {"check_run": 'https://github.com/o/r/runs/1 "title"'},
        {"check_run": "https://evil.example/)<img src=x>", "rest": ("x](https://evil.example) [", "ftp://x")},
    ],
)
def test_links_that_are_not_safe_are_text(changes: dict[str, object]) -> None:
    base, head = _pair()
    markdown = render(head, compare(base, head), links=_links_for(**changes), max_rows=1)
    assert _html_tags(markdown) == [
        t for t in _html_tags(markdown) if t.startswith(("<details>", "</details>"))
    ]
    for text, href in _links(markdown):
        assert href.startswith("https://github.com/octo/repo/") or href == CHECK_RUN, (text, href)
        assert "evil" not in href and " " not in href
    assert "<img" not in GFM.render(markdown)


def test_pr_comment_form_stays_short_with_hundreds_of_failures() -> None:
    """603 new failures over 70 ops: at most COMMENT_ROWS rows, one an op, the rest counted and linked."""
    base = large(failing=0)
    head = large(failing=603, failing_ops=70, seed=3)
    comparison = compare(base, head)
    assert comparison.count(Category.NEW_FAILURE) == 603
    links = _links_for()
    comment = render(head, comparison, budget=PR_COMMENT_LIMIT, links=links, max_rows=COMMENT_ROWS)
    assert comment.startswith("## gradci: 5,000 tests ±0 · 603 new failures\n")
    assert size(comment) < 12_000  # short whatever the budget
    section = _section(comment, "### ❌ New failures")
    assert section.startswith("### ❌ New failures (603 in 70 ops)")
    rows = _tables(section)[0][1:]
    assert len(rows) == COMMENT_ROWS
    # one failure an op, then the op's count: ten ops to see, not three
    named = [r[0] for r in rows if r[0]]
    assert len(named) == COMMENT_ROWS // 2 and named == sorted(set(named))
    assert all(MORE.search(" ".join(r)) for r in rows[1::2])
    assert _accounted(section) == 603  # every failure shown or counted
    more = section.strip().splitlines()[-1]
    assert re.fullmatch(r"_… and [\d,]+ more in 60 ops not shown \(see \[the check run\]\(\S+\); .*\)_", more)
    assert ("the check run", CHECK_RUN) in _links(section)
    # the full samples below the table belong to the rows shown
    full = comment[comment.index("<summary>Sample inputs in full") :]
    assert full.count("\n- `test_") == COMMENT_ROWS // 2
    # the check run's summary: as many rows as fit its 65,535 bytes
    summary = render(head, comparison, budget=CHECK_RUN_SUMMARY_LIMIT, links=_links_for(check_run=None))
    assert len(_tables(_section(summary, "### ❌ New failures"))[0]) > 100
    assert CHECK_RUN_SUMMARY_LIMIT - 3_000 < size(summary) <= CHECK_RUN_SUMMARY_LIMIT
    # the job summary: everything
    everything = render(head, comparison, budget=JOB_SUMMARY_LIMIT)
    assert "not shown" not in everything
    assert _accounted(_section(everything, "### ❌ New failures")) == 603


@pytest.mark.parametrize("budget", [PR_COMMENT_LIMIT, 8_000, 2_000, 700, 300, 0])
def test_pr_comment_form_keeps_the_budget(big, budget: int) -> None:
    head, comparison = big
    since = Since([c.test for c in comparison.changes[Category.FIXED]], SHA)
    comment = render(head, comparison, budget=budget, links=_links_for(), max_rows=COMMENT_ROWS, since=since)
    assert size(comment) <= budget
    if budget >= 2_000:
        assert comment.startswith("## gradci: 5,000 tests ±0 · 422 new failures")
        assert "Fixed since the previous push" in comment
    for table in _tables(comment):
        assert len(table) - 1 <= max(COMMENT_ROWS, 3)  # the totals have 3 rows


def test_every_budget_is_kept_exactly_with_links_samples_and_since() -> None:
    """Byte by byte where it matters: each budget from nothing to the whole report."""
    base, head = _pair()
    for test in head.tests:
        if test.sample:
            test.sample = test.sample.replace("(3,)", "(3, 4)") + " ошибка 💥 `x` | <b>"
    comparison = compare(base, head)
    since = Since([result("op💥")], SHA)
    whole = render(head, comparison, links=_links_for(), since=since)
    for max_rows in (None, 1, COMMENT_ROWS):
        for budget in range(0, size(whole) + 20, 11):
            report = render(
                head, comparison, budget=budget, links=_links_for(), max_rows=max_rows, since=since
            )
            assert size(report) <= budget, (max_rows, budget)
            report.encode("utf-8")  # never a split character
    assert render(head, comparison, budget=size(whole), links=_links_for(), since=since) == whole


def test_fixed_since_the_previous_push() -> None:
    base, head = _pair()
    fixed = [result(f"op{i:02d}") for i in range(12)]
    since = Since(fixed, BASE_SHA)
    markdown = render(head, compare(base, head), links=_links_for(), since=since)
    line = markdown.split("\n")[4]
    assert line.startswith(
        f"✅ **Fixed since the previous push** ([fedcba9876](https://github.com/octo/repo/commit/{BASE_SHA})): 12 · "
        f"`{tid('op00')}`, `{tid('op01')}`"
    )
    assert line.endswith(f"`{tid('op09')}`, … and 2 more")
    again = render(head, compare(base, head), since=Since(fixed[:1], SHA, same_commit=True))
    assert f"\n✅ **Fixed since the previous run** (0123456789): 1 · `{tid('op00')}`\n" in again
    text = render(head, compare(base, head), fmt="text", since=Since(fixed[:1], None))
    assert f"\nFixed since the previous push: 1 · {tid('op00')}\n" in text
    assert render(head, compare(base, head), since=Since([], SHA)) == render(head, compare(base, head))
    # a hostile name: literal, in a line of its own
    evil = render(head, compare(base, head), since=Since([result("x|`y`</details>\n| - |@z")], SHA))
    line = next(t for t in GFM.parse(evil) if t.type == "inline" and "Fixed since" in t.content)
    assert line.content.endswith("· ``test_fn_grad_x|`y`</details> | - |@z_cpu_float64``")
    assert len(_tables(evil)) == len(_tables(render(head, compare(base, head))))
    assert "</details>" not in GFM.render(evil).split("<h3>")[0]


@pytest.mark.parametrize(
    ("summary", "short"),
    [
        # the forms torch's SampleInput.summary() takes (gradci joins its lines)
        (
            'SampleInput(input=Tensor[size=(3, 4), device="cpu", dtype=torch.float64], args=(), kwargs={}, '
            "broadcasts_input=False, name='')",
            "f64[3,4]",
        ),
        ("Tensor[size=(3, 4), dtype=torch.float64, requires_grad=True]", "f64[3,4]"),
        (
            'SampleInput(input=Tensor[size=(), device="cpu", dtype=torch.complex128], args=TensorList['
            "Tensor[size=(), device=\"cpu\", dtype=torch.complex128]], kwargs={}, broadcasts_input=False, name='')",
            "c128[], c128[]",
        ),
        (
            'SampleInput(input=TensorList[Tensor[size=(5, 5), device="cpu", dtype=torch.float32], Tensor[size=(5, 5), '
            "device=\"cpu\", dtype=torch.float32]], args=(), kwargs={'dim': '-1'}, broadcasts_input=False, name='')",
            "[f32[5,5], f32[5,5]], dim=-1",
        ),
        (
            'SampleInput(input=Tensor[size=(5,), device="cpu", dtype=torch.float64], args=(None), '
            "kwargs={'keepdim': 'False'}, broadcasts_input=False, name='')",
            "f64[5], None, keepdim=False",
        ),
        (
            'SampleInput(input=Tensor[size=(2,), device="cuda:0", dtype=torch.bfloat16], args=(2.5,-1), kwargs={}, '
            "broadcasts_input=True, name='x')",
            "bf16[2], 2.5, -1",
        ),
        # what a project's own ops or other tools may write, kept (one line, cut)
        ("Tensor[3] float64", "Tensor[3] float64"),
        (
            "SampleInput(input=Tensor[size=(3,), dtype=torch.float64",
            "SampleInput(input=Tensor[size=(3,), dtype=torch…",
        ),
        ("SampleInput(input=(, kwargs={'a': ']'})", "SampleInput(input=(, kwargs={'a': ']'})"),
        ("Tensor[size=(9999999999999, 2), dtype=torch.weird_t]", "weird_t[9999999999999,2]"),
        ("a\nb\r\nc\x1b[31m", "a b c"),
        ("", ""),
        (None, ""),
        ("x" * 10_000, "x" * 47 + "…"),
        ("Tensor[" * 5_000, ("Tensor[" * 7)[:47] + "…"),
    ],
)
def test_short_sample(summary: str | None, short: str) -> None:
    assert short_sample(summary) == short


def test_short_sample_of_real_samples() -> None:
    """torch's own summaries of OpInfo sample inputs, as gradci's worker records them."""
    import torch
    from torch.testing._internal.opinfo.core import SampleInput

    from gradci.worker import sample_summary

    def t(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.ones(shape, dtype=dtype, requires_grad=dtype.is_floating_point)

    samples = {
        "f64[3,4]": SampleInput(t(3, 4)),
        "c128[], c128[]": SampleInput(t(dtype=torch.complex128), args=(t(dtype=torch.complex128),)),
        "[f32[5,5], f32[5,5]], dim=-1": SampleInput([t(5, 5, dtype=torch.float32)] * 2, kwargs={"dim": -1}),
        "f64[5,5], [i64[1]], f64[1,5], accumulate=False": SampleInput(
            t(5, 5), args=([t(1, dtype=torch.int64)], t(1, 5)), kwargs={"accumulate": False}
        ),
        "f64[2,3], 2.5, None, weight=f32[3], dims=(0,1)": SampleInput(
            t(2, 3), args=(2.5, None), kwargs={"weight": t(3, dtype=torch.float32), "dims": (0, 1)}
        ),
        "f64[1,3,4,4], f64[3,3,3,3], f64[3], stride=(2,2…": SampleInput(
            t(1, 3, 4, 4), args=(t(3, 3, 3, 3), t(3)), kwargs={"stride": (2, 2), "padding": 2}
        ),
    }
    summaries = {short: sample_summary(sample) for short, sample in samples.items()}
    assert {short: short_sample(s) for short, s in summaries.items()} == {short: short for short in samples}
    assert all(len(s or "") > 80 for s in list(summaries.values())[1:])  # what the table used to show


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
    evil.sample = (
        "SampleInput(input=Tensor[size=(3,), dtype=torch.float64], "
        "kwargs={'x': '</details><b>x</b> | `y` @octocat\n| --- |'})"
    )
    evil.repro = "gradci repro x | `y`"
    head = results([evil, result("b", "failed")])
    markdown = render(head, None)
    # no raw HTML at all but ours: the samples in full, below the table
    assert _html_tags(markdown) == ["<details><summary>Sample inputs in full</summary>", "</details>"]
    rows = _tables(markdown)[0]
    assert len(rows) == 3 and all(len(r) == 6 for r in rows)  # the table held together
    op, _, _, sample, message, _ = rows[2]  # sorted by op: b first
    assert op == "`mylib.evil</summary>`"  # literal, in a code span
    assert sample == "``1: f64[3], x=</details><b>x</b> | `y` @octocat | -…``"  # short, literal
    # in full, as a list item (a line of its own: no table to break, no HTML, no mention)
    items = [t.content for t in GFM.parse(markdown) if t.type == "inline" and t.content.startswith("`test")]
    assert items[1].endswith(
        "sample 1: ``SampleInput(input=Tensor[size=(3,), dtype=torch.float64], "
        "kwargs={'x': '</details><b>x</b> | `y` @octocat | --- |'})``"
    )
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
        "<details><summary>Sample inputs in full</summary>",
        "</details>",
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
    assert headings == ["gradci: 1 test · 1 failing", "❌ Failures (1)", "Totals"]
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
    assert done.stdout.startswith(
        "## gradci: 9 tests +1 · 2 new failures · 1 fixed · 3 still failing on base"
    )
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
    assert done.returncode == 0 and size(done.stdout) <= 300 and done.stdout.startswith("gradci: 9 tests +1")
    done = gradci("report", "head.json", "-o", "out/summary.md", "--title", "gradci (CPU)", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == ""
    assert (
        (tmp_path / "out/summary.md").read_text().startswith("## gradci (CPU): 9 tests · 5 failing · 1 flaky")
    )


def test_report_command_errors(tmp_path: Path) -> None:
    save(tmp_path / "head.json", [result("a", "failed")])
    done = gradci("report", "head.json", "--baseline", "missing.json", cwd=tmp_path)
    assert done.returncode == 3 and done.stdout.startswith(
        "## gradci: 1 test · 1 failing · not compared with base\n"
    )
    assert done.stderr == "gradci: error: base results unusable: missing.json: no such results file\n"
    done = gradci("report", "nothing.json", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (3, "")
    for bad in (["--format", "html"], ["--max-chars", "0"], ["--max-chars", "lots"]):
        done = gradci("report", "head.json", *bad, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
