"""Text from tests (op names, messages, samples, repro commands, skip reasons) that tries to issue
GitHub Actions workflow commands in a log, or to break the Markdown of the PR comment and summaries.

Each line break (the runner's \\n, \\r, \\r\\n; Unicode's others) x each injection (v2 commands, also with
a weightless character between the colons, and v1 ``##[`` anywhere in a line) x each output path:
``gradci run``'s console (a real run of ops named so and failing so), ``report --format text``,
``compare``, ``publish``'s log lines and annotations, and the Markdown report as a CommonMark/GFM
renderer parses it. Whether a line is a command is decided by tests/runner_model.py: ICU's
collation, as the runner uses it, where ICU is installed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, gradci
from markdown_it import MarkdownIt
from results_factory import result, results
from runner_model import ICU, commands

from gradci.github import workflow_commands
from gradci.github.workflow_commands import escape_workflow_commands, log_line
from gradci.report import clean, md_code, md_text, render
from gradci.results import Outcome, Results

sys.path.insert(0, str(FIXTURES))
from gradci_hostileops import HOSTILE_NAME, INJECTIONS, LINE_BREAKS, payload

GFM = MarkdownIt("commonmark").enable("table")
# What gradci itself writes as workflow commands, in these runs.
OWN_COMMAND = re.compile(r"::(group::gradci: [^:]+|endgroup::)")


def test_the_runner_model_sees_the_injections() -> None:
    """The oracle finds what the escape must defuse: otherwise the tests below would prove nothing."""
    for key, line_break in LINE_BREAKS.items():
        found = commands("text" + payload(line_break))
        runner_breaks = ("lf", "cr", "crlf")  # the runner splits lines there only
        assert len(found) == (len(INJECTIONS) if key in runner_breaks else 1), (key, found)
    assert commands(":\u200b:error::x") == [":\u200b:error::x"]
    assert commands("a #\u00ad#[error]x")
    if ICU is not None:  # ICU weighs a combining mark: no command; the strict model errs on the safe side
        assert commands(":\u0301:error::x") == []


# --- the escape itself -------------------------------------------------------------------------------


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("line_break", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
def test_escape_defuses_every_injection_after_every_line_break(line_break: str, injection: str) -> None:
    for text in (f"msg{line_break}{injection}", f"{injection}", f"  {line_break} {injection}{line_break}"):
        escaped = escape_workflow_commands(text)
        assert commands(escaped) == [], repr(escaped)
        assert escape_workflow_commands(escaped) == escaped  # idempotent: escaping twice changes nothing
        assert "\r" not in escaped and "\u2028" not in escaped  # every break is a plain \n
        one = log_line(text)
        assert "\n" not in one and commands(one) == []
    assert "INJECTED" in escape_workflow_commands("x\r::error::INJECTED")  # defused, not dropped


@pytest.mark.parametrize(
    "text",
    [
        "plain text",
        "a::b",
        "std::vector<int>",
        "C# [1]",
        "#[derive]",
        "x: y: z",
        "## heading",
        "x ::y",
        "é: x",
    ],
)
def test_escape_leaves_ordinary_text_alone(text: str) -> None:
    assert escape_workflow_commands(text) == text


def test_lone_surrogates_do_not_break_printing() -> None:
    escaped = escape_workflow_commands("bad \udcff byte")
    assert escaped == "bad \N{REPLACEMENT CHARACTER} byte"
    escaped.encode("utf-8")


def test_gradci_own_commands_escape_their_data() -> None:
    line = workflow_commands.command("error", "x\r::add-mask::y\n##[error]z", {"title": "t\r::e::"})
    assert "\r" not in line and "\n" not in line
    assert commands(line) == [line]  # one command, gradci's own, with the text inside its data


# --- gradci run: the console, on a real run ----------------------------------------------------------


@pytest.mark.parametrize("actions", [True, False], ids=["in-actions", "no-GITHUB_ACTIONS"])
def test_run_console_issues_only_gradci_commands(tmp_path: Path, actions: bool) -> None:
    """Ops named and failing with the injections: the FAILED and FLAKY lines, the re-run lines and the
    final summary print them, escaped, in or out of Actions (a container in a job has no
    GITHUB_ACTIONS); the results keep the names as they are."""
    env = {"GRADCI_FLAKY_STATE": str(tmp_path / "flaky-state")}
    if actions:
        env["GITHUB_ACTIONS"] = "true"
    done = gradci(
        "run",
        "--op-modules",
        "gradci_hostileops",
        "--no-upstream",
        "--checks",
        "grad",
        "--workers",
        "2",
        "--progress",
        "plain",
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert commands(done.stdout) == [], done.stdout
    own = commands(done.stderr)
    assert all(OWN_COMMAND.fullmatch(line) for line in own), own
    assert len(own) == (4 if actions else 0)  # two groups: the run, the re-runs
    # the hostile name is shown (defused): in full as it fails, and in the summary's line for it
    assert "add-mask::gradci" in done.stdout and "FLAKY" in done.stdout
    assert "re-run" in done.stderr and done.stderr.count("add-mask::gradci") >= 2
    tests = {t["id"]: t for t in json.loads((tmp_path / "gradci-results.json").read_text())["tests"]}
    hostile_id = "test_fn_grad_" + HOSTILE_NAME.replace(".", "_") + "_cpu_float64"
    assert tests[hostile_id]["outcome"] == "failed"  # the results JSON keeps the name, unescaped
    assert tests["test_fn_grad_hostile_flaky_cpu_float64"]["flaky"] is True


# --- report, compare, publish: on results files a fork could have written ------------------------------


def _hostile_pair() -> tuple[Results, Results]:
    """Base and head results whose every text field carries every injection after every line break."""
    head, base = [], []
    for key, brk in LINE_BREAKS.items():
        evil = payload(brk) + f"{brk}# INJECTED heading{brk}| a | b |{brk}<details>"
        failing = result(f"evil.{key}{evil}", Outcome.FAILED, message=f"GradcheckError: bad{evil}")
        failing.sample = f"Tensor[3]{evil}"
        failing.repro = f"gradci repro x{evil}"
        erroring = result(f"err.{key}", Outcome.ERROR, message=f"RuntimeError: boom ##[error]x{evil}")
        skipped = result(f"skip.{key}", Outcome.SKIPPED, message=f"Skipped!{evil}")
        flaky = result(f"flaky.{key}", flaky=True)
        flaky.attempts[0]["message"] = f"first{evil}"
        still = result(f"still.{key}{evil}", Outcome.FAILED, message=f"still{evil}")
        head += [failing, erroring, skipped, flaky, still, result(f"new.{key}{evil}", message=f"new{evil}")]
        base += [
            result(failing.op),
            result(erroring.op),
            result(skipped.op),
            result(flaky.op),
            result(still.op, Outcome.FAILED, message=f"base{evil}"),
            result(f"gone.{key}{evil}"),
        ]
    return results(base), results(head)


@pytest.fixture
def hostile_files(tmp_path: Path) -> tuple[Path, Path]:
    base, head = _hostile_pair()
    base.save(tmp_path / "base.json")
    head.save(tmp_path / "head.json")
    return tmp_path / "base.json", tmp_path / "head.json"


def test_report_text_and_compare_issue_no_command(hostile_files: tuple[Path, Path], tmp_path: Path) -> None:
    runs = [
        ("report", "head.json", "--format", "text"),
        ("report", "head.json", "--baseline", "base.json", "--format", "text"),
        ("report", "head.json", "--baseline", "base.json", "--format", "text", "--max-chars", "2000"),
        ("compare", "base.json", "head.json", "--markdown", "compare.md"),
    ]
    for args in runs:
        done = gradci(*args, cwd=tmp_path)
        assert done.returncode in (0, 1), done.stderr
        assert "INJECTED" in done.stdout, args  # shown, defused
        assert commands(done.stdout) == [] and commands(done.stderr) == [], args
    _assert_markdown_intact((tmp_path / "compare.md").read_text(encoding="utf-8"))


HEADINGS = re.compile(
    r"gradci: [^#|<>]*|(❌ New failures|❌ Failures|🔁 Flaky|✅ Fixed|❔ Unexpected passes)"
    r" \([\d,]+( in [\d,]+ ops)?\)|Totals"
)
# gradci's own HTML: collapsed sections, publish's footer, the comment's marker
OWN_HTML = re.compile(
    r"\s*(<details><summary>[^<]*</summary>|</details>|</?sub>|<!-- gradci-comment: [^>]* -->)\s*"
)


def _assert_markdown_intact(markdown: str) -> None:
    """As a GFM renderer sees it: no heading but gradci's, no HTML but its own, and every table row
    exactly as wide as its header."""
    tokens = GFM.parse(markdown)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings and all(HEADINGS.fullmatch(h) for h in headings), headings
    html = [t.content for t in tokens if t.type == "html_block"]
    html += [c.content for t in tokens for c in t.children or [] if c.type == "html_inline"]
    assert all(OWN_HTML.fullmatch(h) for h in html), html
    tables = 0
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            tables += 1
            end = next(j for j in range(i, len(tokens)) if tokens[j].type == "table_close")
            widths: list[int] = []
            for j in range(i, end):
                if tokens[j].type == "tr_open":
                    widths.append(0)
                elif tokens[j].type in ("th_open", "td_open"):
                    widths[-1] += 1
            assert len(set(widths)) == 1, widths
    assert tables >= 2


@pytest.mark.parametrize("baseline", [False, True])
def test_markdown_report_keeps_structure(
    hostile_files: tuple[Path, Path], tmp_path: Path, baseline: bool
) -> None:
    args = ["report", "head.json", "-o", "report.md"] + (["--baseline", "base.json"] if baseline else [])
    done = gradci(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "INJECTED" in markdown
    _assert_markdown_intact(markdown)


@pytest.mark.parametrize("line_break", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
def test_one_line_cells_for_every_line_break(line_break: str) -> None:
    text = f"a{line_break}# heading{line_break}| x | y |{line_break}b"
    assert "\n" not in clean(text) and "\r" not in clean(text)
    assert clean(text) == "a # heading | x | y | b"
    for cell in (md_text(text), md_code(text)):
        tokens = GFM.parse(f"| h |\n|---|\n| {cell} |\n")
        assert [t.type for t in tokens if t.type == "heading_open"] == []
        assert sum(t.type == "td_open" for t in tokens) == 1
    text_report = render(results([result(f"op{line_break}::error::x", Outcome.FAILED)]), None, fmt="text")
    assert commands(text_report) == []


# --- publish: the log lines, the annotations and the job summary --------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "github"))
from ghfake import Pull  # noqa: E402
from ghfake import payload as event_payload  # noqa: E402
from ghfixtures import (  # noqa: E402, F401 - fixtures
    READ_ONLY_TOKEN,
    Scenario,
    actions_env,
    fast_client_fixture,
    github_fixture,
    publish,
    scenario_fixture,
)


def test_publish_log_and_summary(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fork's pull request with a read-only token: annotations and warnings go to the log, the report
    to the job summary. The only commands are gradci's ::error and ::warning, the text in their data."""
    sc = scenario
    sc.repo.pulls[2] = Pull(2, sc.pr_head, "changes", "forker/Hello-World", "master")
    base, head = _hostile_pair()
    sc.artifact_at(sc.merge_base, base)
    head.save(sc.workspace / "gradci-results.json")
    env = actions_env(
        sc, "pull_request", event_payload("pull_request.opened.fork.json"), token=READ_ONLY_TOKEN
    )
    done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 1
    found = commands(done.stdout) + commands(done.stderr)
    assert found and all(re.match(r"::(error|warning) [a-z]+=[^:]*::", line) for line in found), found
    assert any("INJECTED" in line for line in found)  # inside an annotation's data
    assert "\r" not in done.stdout + done.stderr
    _assert_markdown_intact(done.summary)
