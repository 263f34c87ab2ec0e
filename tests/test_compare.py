"""Head against base: every classification, odd inputs, --fail-on, and ``gradci compare`` itself."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO, gradci
from results_factory import result, results, save, tid

from gradci.compare import Category, Comparison, classify, compare, load_baseline
from gradci.errors import ConfigError
from gradci.options import resolve
from gradci.results import Outcome

P, F, E, S, X, XP = "passed", "failed", "error", "skipped", "xfailed", "xpassed"
FLAKY = "flaky"  # passed after a failed first try
COMPARISON_SCHEMA = json.loads((REPO / "gradci/schemas/comparison-v1.schema.json").read_text())

# (base, head, category): None for "absent" and for "unchanged".
CASES = [
    (P, F, Category.NEW_FAILURE),
    (P, E, Category.NEW_FAILURE),
    (S, F, Category.NEW_FAILURE),
    (X, F, Category.NEW_FAILURE),
    (XP, F, Category.NEW_FAILURE),
    (FLAKY, F, Category.NEW_FAILURE),
    (None, F, Category.NEW_FAILURE),  # a new test that fails is a new failure
    (None, E, Category.NEW_FAILURE),
    (F, F, Category.STILL_FAILING),
    (E, F, Category.STILL_FAILING),
    (F, E, Category.STILL_FAILING),
    (F, P, Category.FIXED),
    (E, P, Category.FIXED),
    (XP, P, Category.FIXED),  # a stale expected-failure marker removed
    (P, FLAKY, Category.FLAKY),
    (F, FLAKY, Category.FLAKY),
    (None, FLAKY, Category.FLAKY),
    (None, P, Category.NEW_TEST),
    (None, S, Category.NEW_TEST),
    (None, X, Category.NEW_TEST),
    (P, None, Category.REMOVED_TEST),
    (F, None, Category.REMOVED_TEST),
    (S, None, Category.REMOVED_TEST),
    (X, XP, Category.UNEXPECTED_PASS),
    (XP, XP, Category.UNEXPECTED_PASS),
    (P, XP, Category.UNEXPECTED_PASS),
    (None, XP, Category.UNEXPECTED_PASS),
    (P, S, Category.SKIP_CHANGED),
    (S, P, Category.SKIP_CHANGED),
    (F, S, Category.SKIP_CHANGED),
    (P, X, Category.SKIP_CHANGED),
    (X, P, Category.SKIP_CHANGED),
    (XP, X, Category.SKIP_CHANGED),
    (S, X, Category.SKIP_CHANGED),
    (E, X, Category.SKIP_CHANGED),
    (P, P, None),
    (S, S, None),
    (X, X, None),
    (FLAKY, P, None),  # flaky on base, passed on head: nothing changed
]


def _make(outcome: str | None, op: str):
    if outcome is None:
        return None
    if outcome == FLAKY:
        return result(op, P, flaky=True)
    return result(op, outcome)


@pytest.mark.parametrize(("base", "head", "expected"), CASES, ids=[f"{b}->{h}" for b, h, _ in CASES])
def test_classification(base: str | None, head: str | None, expected: Category | None) -> None:
    b, h = _make(base, "mylib.op"), _make(head, "mylib.op")
    assert classify(b, h) is expected
    comparison = compare(
        results([b] if b else []) if b else results([result("other.op")]), results([h] if h else [])
    )
    found = [
        c for c, changes in comparison.changes.items() for change in changes if change.id == tid("mylib.op")
    ]
    assert found == ([] if expected is None else [expected])


def test_all_cases_in_one_comparison() -> None:
    base, head = [], []
    for i, (b, h, _) in enumerate(CASES):
        op = f"op{i}"
        if (made := _make(b, op)) is not None:
            base.append(made)
        if (made := _make(h, op)) is not None:
            head.append(made)
    comparison = compare(results(base), results(head))
    assert comparison.base is not None and comparison.baseline_problem is None and not comparison.warnings
    for i, (_, _, expected) in enumerate(CASES):
        categories = [
            c for c, changes in comparison.changes.items() if any(x.op == f"op{i}" for x in changes)
        ]
        assert categories == ([] if expected is None else [expected]), CASES[i]
    assert set(comparison.changes) == set(Category)
    for category in Category:
        assert comparison.count(category) == sum(expected is category for _, _, expected in CASES)
        changes = comparison.changes[category]
        assert list(changes) == sorted(changes, key=lambda c: (c.op, c.id))


# --- --fail-on ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "head", "new", "any_", "none"),
    [
        ([P, P], [F, P], True, True, False),  # a new failure
        ([F, P], [F, P], False, True, False),  # only still failing
        ([X, P], [XP, P], False, True, False),  # an unexpected pass fails only --fail-on any
        ([P, P], [FLAKY, P], False, False, False),  # flaky: passed in the end
        ([P, P], [S, X], False, False, False),  # skip-status changes
        (None, [F, P], True, True, False),  # no base: any failure may be new
        (None, [XP, P], True, True, False),
        (None, [P, S], False, False, False),
    ],
)
def test_fail_on(base: list[str] | None, head: list[str], new: bool, any_: bool, none: bool) -> None:
    def build(outcomes: list[str]):
        return results([_make(o, f"op{i}") for i, o in enumerate(outcomes)])

    comparison = compare(None if base is None else build(base), build(head))
    assert (comparison.should_fail("new"), comparison.should_fail("any"), comparison.should_fail("none")) == (
        new,
        any_,
        none,
    )
    with pytest.raises(ValueError):
        comparison.should_fail("sometimes")


# --- odd inputs ----------------------------------------------------------------------------------------


def test_duplicate_ids_count_once_the_worse_result() -> None:
    head = results([result("a", P), result("a", F), result("b", P), result("b", S)])
    base = results([result("a", P), result("b", P), result("b", P)])
    comparison = compare(base, head)
    assert [c.id for c in comparison.changes[Category.NEW_FAILURE]] == [tid("a")]
    assert comparison.changes[Category.NEW_FAILURE][0].head.outcome is Outcome.FAILED  # type: ignore[union-attr]
    assert comparison.count(Category.SKIP_CHANGED) == 0  # b: passed is worse than skipped, and unchanged
    assert any("head results hold 2 test id(s) more than once" in w for w in comparison.warnings)
    assert any("base results hold 1 test id(s) more than once" in w for w in comparison.warnings)


def test_empty_base_is_unusable_and_head_is_still_reported() -> None:
    comparison = compare(results([]), results([result("a", F), result("b", XP)]))
    assert comparison.base is None
    assert comparison.baseline_problem == "base results hold no tests"
    assert comparison.count(Category.NEW_FAILURE) == 0  # without a base, nothing is "new"
    assert comparison.count(Category.UNEXPECTED_PASS) == 1  # what head says by itself
    assert comparison.should_fail("new")


def test_base_from_another_device_is_unusable() -> None:
    base = results([result("a", P, device="cuda")], device="cuda", device_name="NVIDIA H100")
    comparison = compare(base, results([result("a", F)]))
    assert comparison.base is None
    assert "device cuda, head from cpu" in (comparison.baseline_problem or "")


def test_base_from_another_torch_is_compared_with_a_warning() -> None:
    base = results(
        [result("a", P), result("b", F)], torch_version="2.12.1+cpu", torch_git_version="fedcba9876"
    )
    comparison = compare(base, results([result("a", F), result("b", P)]))
    assert comparison.base is not None and comparison.baseline_problem is None
    assert comparison.count(Category.NEW_FAILURE) == 1 and comparison.count(Category.FIXED) == 1
    assert comparison.warnings[0].startswith("base ran torch 2.12.1+cpu (fedcba9876), head torch 2.13.0+cpu")


def test_interrupted_runs_and_other_shards_are_caveats() -> None:
    base = results([result("a")], interrupted=True, selection={"shard": "1/2"})
    comparison = compare(base, results([result("a")]))
    assert comparison.base is not None
    text = " | ".join(comparison.warnings)
    assert "base run was interrupted" in text and "shard 1/2" in text


def test_given_problem_drops_the_base() -> None:
    comparison = compare(results([result("a")]), results([result("a", F)]), baseline_problem="stale")
    assert comparison.base is None and comparison.baseline_problem == "stale"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d / "missing.json", "no such results file"),
        (lambda d: d, "cannot read results"),  # a directory
        (lambda d: _write(d / "t.json", '{"schema": "gradci.results", "version": 1, "run": {'), "truncated"),
        (lambda d: _write(d / "x.json", "<html>"), "not valid JSON"),
        (lambda d: _write(d / "o.json", '{"tests": []}'), "not a gradci results file"),
        (
            lambda d: _write(d / "v.json", '{"schema": "gradci.results", "version": 3}'),
            "results schema version 3, this gradci reads versions 1, 2",
        ),
        (
            lambda d: _write(
                d / "m.json",
                '{"schema": "gradci.results", "version": 1, "run": {}, "summary": {}, "tests": []}',
            ),
            "malformed results",
        ),
    ],
    ids=["missing", "directory", "truncated", "not-json", "foreign", "schema-v3", "malformed"],
)
def test_load_baseline_never_raises(tmp_path: Path, make, problem: str) -> None:
    base, message = load_baseline(make(tmp_path))
    assert base is None
    assert message is not None and message.startswith("base results unusable: ") and problem in message


def test_load_baseline_reads_good_results(tmp_path: Path) -> None:
    path = save(tmp_path / "base.json", [result("a"), result("b", F)])
    base, problem = load_baseline(path)
    assert problem is None and base is not None and len(base.tests) == 2
    assert load_baseline(None) == (None, "no base results were given")


def test_comparison_json_follows_its_schema() -> None:
    comparison = compare(results([result("a"), result("b", F)]), results([result("a", F), result("c")]))
    data = comparison.to_json("any")
    jsonschema.validate(data, COMPARISON_SCHEMA)
    assert data["tests"]["new_failure"] == [tid("a")]
    assert data["tests"]["removed_test"] == [tid("b")]
    assert data["tests"]["new_test"] == [tid("c")]
    assert data["failed"] is True and data["compared"] is True
    unusable = Comparison(results([]), None, "gone", {c: () for c in Category})
    jsonschema.validate(unusable.to_json(), COMPARISON_SCHEMA)


# --- options ------------------------------------------------------------------------------------------


def test_options(tmp_path: Path) -> None:
    settings = resolve(
        {"reruns": "3", "fail_on": "ANY", "baseline": "base.json"}, environ={}, directory=tmp_path
    )
    assert (settings.reruns, settings.fail_on, settings.baseline) == (3, "any", Path("base.json"))
    defaults = resolve({}, environ={}, directory=tmp_path)
    assert (defaults.reruns, defaults.fail_on, defaults.baseline) == (1, "new", None)
    assert resolve({}, environ={"GRADCI_RERUNS": "0"}, directory=tmp_path).reruns == 0
    for flags in ({"reruns": "-1"}, {"reruns": "two"}, {"fail_on": "sometimes"}):
        with pytest.raises(ConfigError, match=r"--reruns|--fail-on"):
            resolve(flags, environ={}, directory=tmp_path)


# --- the command ---------------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    base = save(
        tmp_path / "base.json", [result("a"), result("b"), result("c", F), result("d", X), result("e", F)]
    )
    head = save(
        tmp_path / "head.json",
        [
            result("a", F),
            result("b", P, flaky=True),
            result("c", F),
            result("d", XP),
            result("e"),
            result("f"),
        ],
    )
    return base, head


def test_compare_command(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, head = pair
    done = gradci("compare", str(base), str(head), "--markdown", "cmp.md", "--json", "cmp.json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith(
        "gradci: 6 tests +1 · 1 new failure · 1 fixed · 1 still failing on base · 1 flaky · 1 unexpected pass\n"
    )
    data = json.loads((tmp_path / "cmp.json").read_text())
    jsonschema.validate(data, COMPARISON_SCHEMA)
    assert {k: v for k, v in data["tests"].items() if v} == {
        "new_failure": [tid("a")],
        "still_failing": [tid("c")],
        "fixed": [tid("e")],
        "flaky": [tid("b")],
        "new_test": [tid("f")],
        "unexpected_pass": [tid("d")],
    }
    markdown = (tmp_path / "cmp.md").read_text()
    assert markdown.startswith("## gradci: 6 tests +1 · 1 new failure · 1 fixed · 1 still failing on base")
    assert "### ❌ New failures (1)" in markdown and "<details><summary>Still failing on base (1)" in markdown


@pytest.mark.parametrize(("fail_on", "code"), [("new", 1), ("any", 1), ("none", 0)])
def test_compare_fail_on(pair: tuple[Path, Path], tmp_path: Path, fail_on: str, code: int) -> None:
    base, head = pair
    assert gradci("compare", str(base), str(head), "--fail-on", fail_on, cwd=tmp_path).returncode == code


def test_compare_only_still_failing_passes_by_default(tmp_path: Path) -> None:
    base = save(tmp_path / "base.json", [result("a", F), result("b")])
    head = save(tmp_path / "head.json", [result("a", F), result("b")])
    assert gradci("compare", str(base), str(head), cwd=tmp_path).returncode == 0
    assert gradci("compare", str(base), str(head), "--fail-on", "any", cwd=tmp_path).returncode == 1
    env = {"GRADCI_FAIL_ON": "any"}  # options come from the environment too
    assert gradci("compare", str(base), str(head), cwd=tmp_path, env=env).returncode == 1


def test_compare_with_unusable_base_reports_head_and_exits_3(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, head = pair
    (tmp_path / "base.json").write_text('{"schema": "gradci.results", "version": 1, "run": {"gradci_ver')
    done = gradci(
        "compare", "base.json", str(head), "--markdown", "cmp.md", "--json", "cmp.json", cwd=tmp_path
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "gradci: error: base results unusable: base.json: truncated (line 1, column 52)"
    ]
    assert (
        "FAILURES (2 in 2 ops)" in done.stdout and " · not compared with base\n" in done.stdout
    )  # head still reported
    data = json.loads((tmp_path / "cmp.json").read_text())
    jsonschema.validate(data, COMPARISON_SCHEMA)
    assert data["compared"] is False and data["base"] is None and "truncated" in data["baseline_problem"]
    assert "not compared: base results unusable" in (tmp_path / "cmp.md").read_text()


def test_compare_base_from_other_device_exits_3(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, head = pair
    save(tmp_path / "cuda.json", [result("a", device="cuda")], device="cuda")
    done = gradci("compare", "cuda.json", str(head), cwd=tmp_path)
    assert done.returncode == 3 and "device cuda, head from cpu" in done.stderr


def test_compare_base_from_other_torch_warns_in_the_report(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, head = pair
    save(tmp_path / "old.json", [result("a"), result("b")], torch_version="2.12.0+cpu")
    done = gradci("compare", "old.json", str(head), cwd=tmp_path)
    assert done.returncode == 1
    assert "warning: base ran torch 2.12.0+cpu" in done.stdout


def test_compare_without_head_is_an_error(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = pair
    done = gradci("compare", str(base), "nothing.json", cwd=tmp_path)
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr == "gradci: error: nothing.json: no such results file\n"


def test_a_suite_the_base_did_not_run_makes_new_tests_not_new_failures() -> None:
    """Base results of the backward suite, head results with the forward suite added: its failures
    are new tests (nothing to compare them with), so --fail-on new does not fail on them; a
    backward failure is still a new failure."""
    base = results([result("alpha"), result("beta")])  # selection: the five backward checks
    head = results(
        [
            result("alpha"),
            result("beta", "failed"),
            result("alpha", "failed", check="forward-ad"),
            result("beta", check="fwgrad-bwgrad"),
        ],
        selection={"checks": ["grad", "forward-ad", "fwgrad-bwgrad"]},
    )
    comparison = compare(base, head)
    assert [c.id for c in comparison.changes[Category.NEW_TEST]] == [  # by op, then id
        "test_forward_mode_AD_alpha_cpu_float64",
        "test_fn_fwgrad_bwgrad_beta_cpu_float64",
    ]
    assert [c.id for c in comparison.changes[Category.NEW_FAILURE]] == ["test_fn_grad_beta_cpu_float64"]
    # once the base runs the forward suite too, a forward failure is new as any other
    base_with_forward = results([result("alpha"), result("alpha", check="forward-ad")])
    again = compare(base_with_forward, head)
    assert "test_forward_mode_AD_alpha_cpu_float64" in [c.id for c in again.changes[Category.NEW_FAILURE]]
    assert result("alpha", check="forward-ad").classname == "TestFwdGradientsCPU"
