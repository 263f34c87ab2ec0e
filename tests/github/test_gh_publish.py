"""``gradci publish`` end to end: PyGithub over HTTP to a local GitHub whose every request and
response is checked against GitHub's OpenAPI description, driven by real webhook payloads."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from ghfake import FakeGitHub, Fault, Pull, fake_sha, payload, secondary_rate_limit
from ghfixtures import (  # noqa: F401 - fixtures
    READ_ONLY_TOKEN,
    TOKEN,
    Scenario,
    actions_env,
    fast_client_fixture,
    github_fixture,
    ops_results,
    publish,
    result,
    results,
    results_zip_files,
    scenario_fixture,
    write_results,
)

from gradci import docs
from gradci.github import comment
from gradci.github.comment import marker
from gradci.locate import Location
from gradci.report import COMMENT_ROWS
from gradci.results import Outcome

OPS = ["alpha", "beta", "gamma", "delta"]


def pr_env(sc: Scenario, name: str = "pull_request.opened.json", **kwargs: object) -> dict[str, str]:
    return actions_env(sc, "pull_request", payload(name), **kwargs)  # type: ignore[arg-type]


def pushed_again(sc: Scenario, name: str) -> dict[str, object]:
    """A synchronize event for a new head commit on the pull request's branch."""
    event = payload("pull_request.synchronize.json")
    before = sc.repo.pulls[2].head_sha
    after = sc.repo.add_commit(fake_sha(name), [before])
    sc.repo.branches["changes"] = after
    sc.repo.pulls[2] = Pull(2, after, "changes", "Codertocat/Hello-World", "master")
    event["pull_request"]["head"]["sha"] = after
    event["before"], event["after"] = before, after
    return event


def commit_url(sha: str) -> str:
    return f"https://github.com/Codertocat/Hello-World/commit/{sha}"


def the_check_run(sc: Scenario) -> object:
    runs = list(sc.repo.check_runs.values())
    assert len(runs) == 1, runs
    return runs[0]


def gradci_comments(sc: Scenario) -> list[object]:
    return [c for c in sc.repo.comments.values() if marker("gradci") in c.body]


def test_pull_request_first_run_creates_the_comment_second_run_edits_it(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    sc.artifact_at(sc.merge_base, ops_results(set(), OPS, sha=sc.merge_base))
    (sc.workspace / "mylib").mkdir()
    (sc.workspace / "mylib" / "ops.py").write_text("# ops\n" * 40)
    broken = results(
        [
            result("alpha", Outcome.PASSED),
            result("beta", Outcome.FAILED, location=Location("mylib/ops.py", 12)),
            result("gamma", Outcome.PASSED),
            result("delta", Outcome.PASSED),
        ]
    )
    write_results(sc, broken)
    first = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert first.code == 1, first.stderr  # --fail-on new, one new failure
    run = the_check_run(sc)
    assert run.head_sha == sc.pr_head  # the PR's head, not the merge commit GITHUB_SHA names
    assert (run.name, run.status, run.conclusion) == ("gradci", "completed", "failure")
    assert run.output["title"] == "1 new failure"
    assert "test\\_fn\\_grad\\_beta" in run.output["summary"] or "beta" in run.output["summary"]
    assert [(a["path"], a["start_line"], a["annotation_level"]) for a in run.annotations] == [
        ("mylib/ops.py", 12, "failure")
    ]
    assert run.annotations[0]["title"] == "New failure: test_fn_grad_beta_cpu_float64"
    assert "repro: gradci repro test_fn_grad_beta_cpu_float64 --sample 0" in run.annotations[0]["message"]
    [comment] = gradci_comments(sc)
    assert comment.body.startswith(marker("gradci") + "\n## gradci: 4 tests ±0 · 1 new failure\n")
    assert comment.issue == 2 and comment.edits == 0
    # links: the pull request's head (not the merge commit the run checked out), the base compared
    # with, and the check run, as GitHub gave its page
    check_url = f"https://github.com/Codertocat/Hello-World/runs/{run.id}"
    assert (
        f"head [{sc.pr_head[:10]}]({commit_url(sc.pr_head)}) · "
        f"base [{sc.merge_base[:10]}]({commit_url(sc.merge_base)}) · [check run]({check_url})\n"
    ) in comment.body
    assert fake_sha("merge-commit") not in comment.body
    assert f"[check run]({check_url})" in first.summary  # the job summary, written after it
    assert f"head [{sc.pr_head[:10]}]({commit_url(sc.pr_head)}) · base " in run.output["summary"]
    assert "[check run]" not in run.output["summary"]  # not itself
    assert (
        f"<sub>base results: artifact gradci-results-cpu of the merge base {sc.merge_base[:10]}"
        in comment.body
    )
    assert "[workflow run](https://github.com/Codertocat/Hello-World/actions/runs/4242)</sub>" in comment.body
    assert first.outputs["new-failures"] == "1" and first.outputs["conclusion"] == "failure"
    assert first.outputs["base-sha"] == sc.merge_base and first.outputs["compared"] == "true"
    assert first.outputs["total"] == "4" and first.outputs["results-json"] == "gradci-results.json"
    assert "## gradci: 4 tests ±0 · 1 new failure\n" in first.summary
    assert "merge base" in first.stderr

    # The author pushes a fix: synchronize. The same comment is edited; no second one appears.
    write_results(sc, ops_results(set(), OPS))
    env = actions_env(sc, "pull_request", pushed_again(sc, "fix"))
    second = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)
    assert second.code == 0, second.stderr
    [comment] = gradci_comments(sc)
    assert comment.edits == 1
    assert comment.body.startswith(marker("gradci") + "\n## gradci: 4 tests ±0 · no new failures\n")
    # what the first version showed failing and passes now, from the hidden line it ended in
    assert (
        f"\n✅ **Fixed since the previous push** ([{sc.pr_head[:10]}]({commit_url(sc.pr_head)})): 1 · "
        "`test_fn_grad_beta_cpu_float64`\n"
    ) in comment.body
    assert "fixed since the previous push: 1" in second.stderr
    assert "Fixed since" not in second.summary  # a line of the comment only
    assert len(sc.repo.comments) == 1
    assert [r.conclusion for r in sc.repo.check_runs.values()] == ["failure", "success"]
    assert second.outputs["conclusion"] == "success" and second.outputs["new-failures"] == "0"
    # The comment was found by listing, then edited with PATCH: one POST in all.
    assert len(sc.server.calls_to("POST", r".*/issues/2/comments")) == 1
    assert len(sc.server.calls_to("PATCH", r".*/issues/comments/\d+")) == 1


def test_more_than_50_annotations_go_in_batches_of_50(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    ops = [f"op{i:03d}" for i in range(120)]
    sc.artifact_at(sc.merge_base, ops_results(set(), ops))
    (sc.workspace / ".gradci.yml").write_text("ops: ['op*']\n")
    write_results(sc, ops_results(set(ops), ops))
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert done.code == 1
    run = the_check_run(sc)
    assert len(run.annotations) == 120
    assert run.requests == 3  # created with 50, updated with 50 and 20
    posts = sc.server.calls_to("POST", r".*/check-runs")
    patches = sc.server.calls_to("PATCH", r".*/check-runs/\d+")
    assert [len(c.body["output"]["annotations"]) for c in posts + patches] == [50, 50, 20]
    # every request repeats title and summary, as GitHub requires of an output
    assert all(c.body["output"]["summary"] == run.output["summary"] for c in posts + patches)
    # the ops are not defined in the repository: annotations go to gradci's config file
    assert {(a["path"], a["start_line"]) for a in run.annotations} == {(".gradci.yml", 1)}
    assert len({a["title"] for a in run.annotations}) == 120
    assert "120 annotations" in done.stderr


def test_fork_pull_request_skips_the_refused_writes_and_falls_back_to_log_annotations(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    sc.repo.pulls[2] = Pull(2, sc.pr_head, "changes", "forker/Hello-World", "master")
    sc.artifact_at(sc.merge_base, ops_results(set(), OPS))
    ops = OPS + [f"extra{i}" for i in range(12)]
    results_file = write_results(sc, ops_results({"beta", *ops[4:]}, ops))
    before = results_file.read_bytes()
    env = actions_env(sc, "pull_request", payload("pull_request.opened.fork.json"), token=READ_ONLY_TOKEN)
    done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)

    # A fork's pull_request run has a read-only token: the two writes are not even tried...
    assert sc.server.calls_to("POST", r".*/check-runs") == []
    assert sc.server.calls_to("POST", r".*/issues/2/comments") == []
    assert sc.server.calls_to("GET", r".*/issues/2/comments") == []
    assert sc.repo.check_runs == {} and sc.repo.comments == {}
    # ...said once, as information, not as a warning per write
    assert "::warning" not in done.stdout and "warning" not in done.stderr
    [said] = [line for line in done.stderr.splitlines() if "read-only token" in line]
    assert "no check run or comment" in said and "two-workflow pattern" in said
    # ...and the comparison (reading is allowed) went to the log and the job summary
    assert done.code == 1  # one new failure (beta); extra ops are new tests that fail: new failures too
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 10  # GitHub shows 10 error annotations per step
    assert errors[0].startswith("::error file=.github/workflows/gradci.yml,line=1,title=New failure%3A ")
    assert errors[-1].startswith("::error title=gradci%3A 4 more::4 more not shown here")
    assert "## gradci: 16 tests +12 · 13 new failures\n" in done.summary
    assert done.outputs["new-failures"] == "13" and done.outputs["conclusion"] == "failure"
    assert done.outputs["compared"] == "true"
    assert "published: 10 annotations in the log, job summary" in done.stderr
    assert results_file.read_bytes() == before  # the results file is never touched
    # the fork's run leaves the pull request's number for a workflow_run publisher
    assert json.loads((sc.workspace / "gradci-pr.json").read_text())["number"] == 2
    assert TOKEN not in done.stdout + done.stderr and READ_ONLY_TOKEN not in done.stdout + done.stderr

    # Nothing failing and no job summary: nothing to publish at all is exit 4, saying why.
    write_results(sc, ops_results(set(), ops))
    del env["GITHUB_STEP_SUMMARY"]
    done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 4
    assert "gradci: error: nothing could be published: a pull_request run from a fork" in done.stderr


def test_a_refused_write_on_a_same_repository_pull_request_is_one_warning_each(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dependabot's pull_request runs get a read-only token too, which gradci cannot tell: GitHub
    refuses both writes, each a warning that names the way out; the fallbacks still publish."""
    sc = scenario
    sc.artifact_at(sc.merge_base, ops_results(set(), OPS))
    write_results(sc, ops_results({"beta"}, OPS))
    done = publish(sc, pr_env(sc, token=READ_ONLY_TOKEN), monkeypatch=monkeypatch, capsys=capsys)

    assert [c.status for c in sc.server.calls_to("POST", r".*/check-runs")] == [403]
    assert [c.status for c in sc.server.calls_to("POST", r".*/issues/2/comments")] == [403]
    check, comment = [line for line in done.stdout.splitlines() if line.startswith("::warning ")]
    assert "cannot create the check run 'gradci': the token is not allowed to (403" in check
    assert "; a check run on a pull request whose run has a read-only token (Dependabot's" in check
    assert "; a comment on a pull request whose run has a read-only token (Dependabot's" in comment
    forks = docs.url("publishing.md", "pull-requests-from-forks")
    assert all(f"two-workflow pattern ({forks})" in w for w in (check, comment))
    assert any(line.startswith("::error ") for line in done.stdout.splitlines())
    assert "## gradci: 4 tests ±0 · 1 new failure\n" in done.summary
    assert done.code == 1


@pytest.mark.parametrize("where", ["merge-base", "older", "none", "only-unusable"])
def test_base_results_at_the_merge_base_at_an_older_commit_or_none(
    where: str, scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    base = ops_results({"gamma"}, OPS)
    # Never used: results of master commits after the merge base, of the PR branch itself, of a
    # fork's run that claims a master commit, an expired one, another device.
    sc.artifact_at(sc.master[4], ops_results(set(), OPS))
    sc.artifact_at(sc.pr_head, ops_results(set(), OPS), head_branch="changes")
    sc.artifact_at(sc.merge_base, ops_results(set(), OPS), head_repository_id=999, head_branch="master")
    sc.artifact_at(sc.master[1], ops_results(set(), OPS), expired=True)
    sc.server.add_artifact(sc.repo, "gradci-results-cuda", sc.merge_base, results_zip_files(base))
    if where == "merge-base":
        sc.artifact_at(sc.merge_base, base)
        sc.artifact_at(sc.master[0], ops_results({"alpha"}, OPS))
    elif where == "older":
        sc.artifact_at(sc.master[0], base)
    write_results(sc, ops_results({"beta", "gamma"}, OPS))
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    run = the_check_run(sc)
    if where in ("merge-base", "older"):
        expected = sc.merge_base if where == "merge-base" else sc.master[0]
        assert done.outputs["base-sha"] == expected
        assert done.outputs["compared"] == "true"
        assert (done.outputs["new-failures"], done.outputs["still-failing"]) == ("1", "1")
        assert run.output["title"] == "1 new failure, 1 still failing on base"
        if where == "older":
            assert f"{sc.master[0][:10]} on master, 2 commits before the merge base" in done.stderr
        else:
            assert f"the merge base {sc.merge_base[:10]}" in done.stderr
        assert len([b for b in sc.server.blob_requests]) == 1  # only the chosen artifact is downloaded
    else:
        assert done.outputs["compared"] == "false" and done.outputs["base-sha"] == ""
        assert done.outputs["new-failures"] == "2"  # without a base, every failure may be new
        assert "no base results: no unexpired artifact gradci-results-cpu" in done.summary
        assert f"the merge base {sc.merge_base[:10]} or the 2 commits before it" in done.summary
        assert "not compared with base" in run.output["title"]
        assert sc.server.blob_requests == []
    # the storage host never saw the token
    assert all(b["authorization"] is None for b in sc.server.blob_requests)


def test_a_report_over_the_size_limits_is_cut_to_fit_each_place(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    ops = [f"linalg.op_{i:04d}_" + "x" * 300 for i in range(1500)]  # long names: big tables, long titles
    sc.artifact_at(sc.merge_base, ops_results(set(), ops))
    head = ops_results(set(ops), ops)
    for i, test in enumerate(head.tests):
        test.message = "GradcheckError: " + "Jacobian mismatch ü " * 50
        if i < 3:  # beyond an annotation's 64 KB of details
            test.traceback = "Traceback:\n" + "  frame ü\n" * 10_000
    write_results(sc, head)
    (sc.tmp / "step-summary.md").write_text("earlier step output\n" * 1000)  # the step's summary has content
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert done.code == 1
    run = the_check_run(sc)
    assert len(run.output["summary"]) <= 65_535
    assert len(run.annotations) == 500  # MAX_ANNOTATIONS, in 10 requests
    assert run.requests == 10
    assert "Annotations: the first 500 of 1,500" in run.output["summary"]
    assert all(len(a["title"]) <= 255 and a["title"].endswith("…") for a in run.annotations)
    assert all(len(a["raw_details"].encode()) <= 65_535 for a in run.annotations)
    assert run.annotations[0]["raw_details"].endswith("…")  # a 100 KB traceback, cut
    [comment] = gradci_comments(sc)
    assert len(comment.body) <= 65_536
    assert len((sc.tmp / "step-summary.md").read_bytes()) <= 1024 * 1024
    assert done.summary.startswith("earlier step output\n")
    assert "## gradci: 1,500 tests ±0 · 1,500 new failures\n" in done.summary


SAMPLE = (
    'SampleInput(input=Tensor[size=(3, 4), device="cpu", dtype=torch.float64], args=(TensorList[Tensor['
    'size=(3,), device="cpu", dtype=torch.int64]],Tensor[size=(3, 4), device="cpu", dtype=torch.float64]), '
    "kwargs={'accumulate': 'False'}, broadcasts_input=False, name='')"
)


def test_hundreds_of_new_failures_keep_the_comment_short_and_the_check_run_long(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """603 new failures over 70 ops: the comment shows COMMENT_ROWS rows and links the check run,
    whose summary shows hundreds of rows, the job summary all of them."""
    sc = scenario
    ops = [f"linalg.op{i:02d}" for i in range(70)]
    dtypes = ("float64", "complex128", "float32", "bfloat16", "float16")
    variants = [(check, dtype) for check in ("grad", "gradgrad") for dtype in dtypes]
    base = results([result(op, Outcome.PASSED, check=c, dtype=d) for op in ops for c, d in variants])
    sc.artifact_at(sc.merge_base, base)
    tests = [result(op, Outcome.PASSED, check=c, dtype=d) for op in ops for c, d in variants]
    broken = [op * 10 + k for op in range(70) for k in range(9 if op < 43 else 8)]
    assert len(broken) == 603 and len({tests[i].op for i in broken}) == 70
    for i in broken:
        tests[i] = result(tests[i].op, Outcome.FAILED, check=tests[i].check, dtype=tests[i].dtype)
        tests[i].sample = SAMPLE
    write_results(sc, results(tests))
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 1

    run = the_check_run(sc)
    check_url = f"https://github.com/Codertocat/Hello-World/runs/{run.id}"
    [comment] = gradci_comments(sc)
    body = comment.body
    assert body.startswith(marker("gradci") + "\n## gradci: 700 tests ±0 · 603 new failures\n")
    assert len(body.encode()) < 12_000  # 603 failures, a short comment
    table = [line for line in body.splitlines() if line.startswith("| `linalg.op") or line.startswith("| | ")]
    assert len(table) == COMMENT_ROWS
    assert [line.split(" | ")[0] for line in table[::2]] == [f"| `linalg.op{i:02d}`" for i in range(10)]
    assert all("… and " in line for line in table[1::2])  # each op: one failure, then its count
    assert f"not shown (see [the check run]({check_url}); the results files hold them all)_" in body
    # the sample: short in the table, in full below it
    assert "| `0: f64[3,4], [i64[3]], f64[3,4], accumulate=False` |" in table[0]
    assert f"\n- `test_fn_grad_linalg_op00_cpu_bfloat16` sample 0: `{SAMPLE}`\n" in body
    # the check run: its summary within 65,535, hundreds of rows, and 500 annotations
    summary = run.output["summary"]
    assert 30_000 < len(summary) <= 65_535
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "linalg" in line]
    assert len(rows) == 70 * 3 and sum(line.startswith("| `linalg.op") for line in rows) == 70
    assert "not shown" not in summary  # each op: 3 failures and the count of the rest
    assert len(run.annotations) == 500 and "Annotations: the first 500 of 603" in summary
    # the job summary: every one
    assert "not shown" not in done.summary
    assert done.summary.count("| `0: f64[3,4], [i64[3]], f64[3,4], accumulate=False` |") == 603
    assert "… and" not in done.summary and done.summary.count("\n- `test_fn_") == 603


def test_secondary_rate_limit_is_retried_after_retry_after(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    write_results(sc, ops_results({"beta"}, OPS))
    sc.server.faults.append(secondary_rate_limit("POST", r".*/check-runs", retry_after=1))
    sc.server.faults.append(secondary_rate_limit("GET", r".*/issues/2/comments", retry_after=1, status=429))
    started = time.monotonic()
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)
    elapsed = time.monotonic() - started

    assert done.code == 1
    assert [c.status for c in sc.server.calls_to("POST", r".*/check-runs")] == [403, 201]
    assert [c.status for c in sc.server.calls_to("GET", r".*/issues/2/comments")] == [429, 200]
    assert len(sc.repo.check_runs) == 1 and len(gradci_comments(sc)) == 1
    assert elapsed >= 2.0  # waited Retry-After (1 s) twice
    assert "warning" not in done.stdout + done.stderr


def test_rate_limit_that_does_not_lift_ends_in_a_clear_warning_and_the_fallback(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    write_results(sc, ops_results({"beta"}, OPS))
    sc.server.faults.append(secondary_rate_limit("POST", r".*/check-runs", retry_after=0, times=10))
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert len(sc.server.calls_to("POST", r".*/check-runs")) == 4  # first try and 3 retries
    assert sc.repo.check_runs == {}
    [warning] = [line for line in done.stdout.splitlines() if line.startswith("::warning ")]
    assert "cannot create the check run 'gradci': GitHub's rate limit held after retries" in warning
    assert any(line.startswith("::error ") for line in done.stdout.splitlines())  # the fallback
    assert len(gradci_comments(sc)) == 1  # the comment still went out
    assert done.code == 1


@pytest.mark.parametrize("status", [401, 404, 422, 502])
def test_api_errors_are_one_clear_warning_and_other_parts_still_publish(
    status: int, scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    write_results(sc, ops_results({"beta"}, OPS))
    body = {
        "message": {401: "Bad credentials", 404: "Not Found", 422: "Validation Failed", 502: "Server Error"}[
            status
        ]
    }
    body["documentation_url"] = "https://docs.github.com/rest"
    sc.server.faults.append(Fault("POST", r".*/check-runs", status, body, times=10))
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    [warning] = [line for line in done.stdout.splitlines() if line.startswith("::warning ")]
    assert "cannot create the check run 'gradci'" in warning and str(status) in warning
    assert "Traceback" not in done.stdout + done.stderr
    assert len(gradci_comments(sc)) == 1
    assert "## gradci" in done.summary
    assert done.code == 1


def test_network_failure_keeps_results_and_publishes_what_needs_no_network(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    results_file = write_results(sc, ops_results({"beta"}, OPS))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = pr_env(sc)
    env["GITHUB_API_URL"] = f"http://127.0.0.1:{port}"
    done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)

    assert done.code == 1  # failing tests and no base results to say they are old
    warnings = [line for line in done.stdout.splitlines() if line.startswith("::warning ")]
    assert any("is unreachable" in w for w in warnings)
    assert "not compared with base" in done.summary.splitlines()[0]
    assert len(warnings) == 1  # GitHub unreachable: said once, not tried again for each part
    assert done.outputs["conclusion"] == "failure"
    assert results_file.exists()
    assert "Traceback" not in done.stdout + done.stderr


def test_nothing_published_at_all_is_exit_code_4(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    write_results(sc, ops_results(set(), OPS))
    env = pr_env(sc, token="ghs_not_a_valid_token_at_all")
    for name in ("GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS"):  # not in Actions: no summary, no log commands
        env.pop(name)
    done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)

    assert done.code == 4
    assert "gradci: error: nothing could be published" in done.stderr
    assert "GitHub rejected the token (401 Bad credentials)" in done.stderr
    assert "ghs_not_a_valid_token_at_all" not in done.stderr + done.stdout


def test_the_token_never_appears_in_any_output(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    write_results(sc, ops_results({"beta"}, OPS))
    # A server error that echoes the credentials back, as a misbehaving proxy might.
    echo = {"message": f"upstream rejected Authorization: token {TOKEN}", "documentation_url": "x"}
    sc.server.faults.append(Fault("POST", r".*/check-runs", 400, echo, times=10))
    sc.server.faults.append(
        Fault("GET", r".*/issues/2/comments", 403, {"message": f"no ({TOKEN})"}, times=10)
    )
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    everything = done.stdout + done.stderr + done.summary + json.dumps(done.outputs)
    everything += "".join(p.read_text(errors="replace") for p in sc.tmp.rglob("*") if p.is_file())
    assert "upstream rejected Authorization: token ***" in done.stdout
    assert TOKEN not in everything


def test_push_to_the_default_branch_compares_with_the_previous_commit(
    github: FakeGitHub,
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sc = scenario
    event = payload("push.json")  # a push that created master: "before" is all zeros
    after = event["after"]
    sc.repo.add_commit(after, [sc.master[-1]])
    sc.repo.branches["master"] = after
    sc.artifact_at(sc.master[-2], ops_results(set(), OPS))  # the newest earlier commit with results
    write_results(sc, ops_results({"delta"}, OPS))
    done = publish(sc, actions_env(sc, "push", event, sha=after), monkeypatch=monkeypatch, capsys=capsys)

    run = the_check_run(sc)
    assert run.head_sha == after and run.conclusion == "failure"
    assert done.outputs["base-sha"] == sc.master[-2]
    assert f"{sc.master[-2][:10]} on master, 1 commit back" in done.stderr
    assert sc.repo.comments == {}  # no pull request, no comment
    assert not (sc.workspace / "gradci-pr.json").exists()
    assert done.code == 1


def test_workflow_run_publishes_a_fork_pull_request_from_its_artifact(
    github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two-workflow pattern: the fork's pull_request run uploaded its results; this run, with a
    write token, downloads them, learns (and checks) the pull request, and publishes."""
    event = payload("workflow_run.pull_request.fork.json")
    run = event["workflow_run"]
    repo = github.add_repo("octo-org/octo-repo", id=event["repository"]["id"], default_branch="master")
    master = repo.chain("master", 5)
    head = repo.add_commit(run["head_sha"], [repo.add_commit(fake_sha("fork-1"), [master[1]])])
    repo.pulls[2] = Pull(2, head, "changes", "forker/octo-repo", "master")
    repo.pulls[1] = Pull(1, fake_sha("other"), "other", "forker/octo-repo", "master")
    github.add_token(TOKEN)
    github.add_artifact(repo, "gradci-results-cpu", master[1], results_zip_files(ops_results(set(), OPS)))
    # The fork's run: its results, and a forged pull-request number next to the real one.
    pr_results = ops_results({"beta"}, OPS)
    github.add_artifact(
        repo,
        "gradci-results-cpu",
        head,
        results_zip_files(pr_results, **{"gradci-pr.json": {"number": 1}}),
        head_branch="changes",
        head_repository_id=event["repository"]["id"] + 1000,
        run_id=run["id"],
    )
    sc = Scenario(github, repo, master, head, master[1], tmp_path / "ws", tmp_path)
    sc.workspace.mkdir()
    done = publish(sc, actions_env(sc, "workflow_run", event), monkeypatch=monkeypatch, capsys=capsys)

    # PR #1 named in the artifact has another head: not believed; #2 is found by its head branch
    assert (
        f"pull request #1 has head {fake_sha('other')[:10]}, not {head[:10]}: not this run's" in done.stderr
    )
    check = the_check_run(sc)
    assert check.head_sha == head and check.conclusion == "failure"
    assert check.annotations[0]["path"] == ".github/workflows/test.yml"  # the PR's workflow file
    [comment] = gradci_comments(sc)
    assert comment.issue == 2
    assert done.outputs["base-sha"] == master[1]
    assert json.loads((sc.workspace / "gradci-results.json").read_text())["summary"]["failed"] == 1
    assert done.code == 1


def test_outside_github_actions_is_a_usage_error(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_results(scenario, ops_results(set(), OPS))
    done = publish(scenario, {}, monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 2
    assert "gradci: error: gradci publish needs a GitHub Actions run" in done.stderr


def test_missing_results_file_is_exit_code_3(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = publish(scenario, pr_env(scenario), "missing.json", monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 3
    assert "gradci: error: missing.json: no such results file" in done.stderr
    assert scenario.server.calls == []


@pytest.mark.parametrize(
    ("mode", "failing", "existing", "expected"),
    [
        ("always", set(), False, "created"),
        ("changes", set(), False, None),
        ("changes", {"beta"}, False, "created"),
        ("failures", set(), False, None),
        ("failures", set(), True, "updated"),  # an existing comment never goes stale
        ("failures", {"beta"}, False, "created"),
        ("off", {"beta"}, True, "left"),
    ],
)
def test_comment_modes(
    mode: str,
    failing: set[str],
    existing: bool,
    expected: str | None,
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sc = scenario
    sc.artifact_at(sc.merge_base, ops_results(set(), OPS))
    if existing:
        write_results(sc, ops_results({"alpha"}, OPS))
        publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)
    write_results(sc, ops_results(failing, OPS))
    publish(sc, pr_env(sc), "--comment-mode", mode, monkeypatch=monkeypatch, capsys=capsys)

    comments = gradci_comments(sc)
    if expected is None:
        assert comments == []
    else:
        [comment] = comments
        assert comment.edits == (1 if expected == "updated" else 0)
        if expected == "left":
            assert "alpha" in comment.body


def test_our_comment_is_told_apart_from_others(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Other people's comments (even quoting the marker) and other check names stay untouched."""
    from ghfake import T0, Comment

    sc = scenario
    for i, (body, login, kind) in enumerate(
        [
            ("LGTM", "octocat", "User"),
            (f"quoting: {marker('gradci')}", "octocat", "User"),
            (f"{marker('gradci-cuda')}\nthe CUDA report", "github-actions[bot]", "Bot"),
        ]
    ):
        sc.repo.comments[10 + i] = Comment(10 + i, 2, body, login, kind, T0, T0)
    for i in range(130):  # enough to need two pages of comments
        sc.repo.comments[100 + i] = Comment(100 + i, 2, f"chatter {i}", "octocat", "User", T0, T0)
    write_results(sc, ops_results(set(), OPS))
    publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)
    publish(sc, pr_env(sc), "--fail-on", "any", monkeypatch=monkeypatch, capsys=capsys)

    ours = [c for c in sc.repo.comments.values() if c.login == "github-actions[bot]" and c.id >= 1000]
    assert len(ours) == 1
    assert sc.repo.comments[11].body == f"quoting: {marker('gradci')}"
    assert sc.repo.comments[12].body.endswith("the CUDA report")
    assert len(sc.server.calls_to("GET", r".*/issues/2/comments")) == 4  # 2 pages, twice


def test_fixed_since_the_previous_version_is_read_strictly_from_the_comment(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anyone with write access can edit our comment: its hidden line is believed only as a set of
    hashes to look this run's tests up in; nothing else in the old body reaches the new one."""
    from ghfake import T0, Comment

    sc = scenario
    sc.artifact_at(sc.merge_base, ops_results(set(), OPS))
    elsewhere = "f" * 40  # not a commit of the repository: linked all the same, it is only a commit
    forged = comment.state(elsewhere, ["test_fn_grad_alpha_cpu_float64", "test_fn_grad_nosuch_cpu_float64"])
    hostile = "</details><img src=x onerror=alert(1)> @octocat Fixed since the previous push: `test_evil`"
    sc.repo.comments[50] = Comment(
        50, 2, f"{marker('gradci')}\n{hostile}\n{forged}\n", "github-actions[bot]", "Bot", T0, T0
    )
    write_results(sc, ops_results({"beta"}, OPS))
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 1

    [edited] = gradci_comments(sc)
    assert edited.id == 50 and edited.edits == 1
    line = [line for line in edited.body.splitlines() if "Fixed since" in line]
    assert line == [
        f"✅ **Fixed since the previous push** ([ffffffffff]({commit_url(elsewhere)})): 1 · "
        "`test_fn_grad_alpha_cpu_float64`"
    ]
    assert "img" not in edited.body and "test_evil" not in edited.body and "nosuch" not in edited.body
    now = comment.read_state(edited.body)  # what this version remembers: its commit, beta
    assert now is not None and now.sha == sc.pr_head and now.failing is not None and len(now.failing) == 1

    # An edit that adds a second hidden line: neither is believed, and the next version says nothing
    sc.repo.comments[50].body += forged + "\n"
    write_results(sc, ops_results(set(), OPS))
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 0 and "Fixed since" not in sc.repo.comments[50].body
    assert sc.repo.comments[50].body.count("<!-- gradci-state: ") == 1

    # A re-run of the same commit after a fix: "since the previous run"
    sc.repo.comments[50].body = sc.repo.comments[50].body.replace(
        sc.repo.comments[50].body.rsplit("\n", 2)[-2],
        comment.state(sc.pr_head, ["test_fn_grad_gamma_cpu_float64"]),
    )
    publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)
    assert (
        f"✅ **Fixed since the previous run** ([{sc.pr_head[:10]}]({commit_url(sc.pr_head)})): 1 · "
        "`test_fn_grad_gamma_cpu_float64`\n"
    ) in sc.repo.comments[50].body


def test_a_named_base_file_is_compared_and_an_unusable_one_is_exit_code_3(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    write_results(sc, ops_results({"beta"}, OPS))
    write_results(sc, ops_results({"beta"}, OPS), "base.json")
    done = publish(sc, pr_env(sc), "--baseline", "base.json", monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 0  # beta already failed on base: still failing, not new
    assert done.outputs["still-failing"] == "1" and done.outputs["compared"] == "true"
    assert sc.server.calls_to("GET", r".*/actions/artifacts") == []  # no search

    (sc.workspace / "base.json").write_text('{"schema": "gradci.results", "vers')
    done = publish(sc, pr_env(sc), "--baseline", "base.json", monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 3
    assert "gradci: error: base results unusable: base.json: truncated" in done.stderr
    assert "base results unusable" in done.summary  # published first, with the reason
    assert len(sc.repo.check_runs) == 2


def test_baseline_mode_none_compares_nothing(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    sc.artifact_at(sc.merge_base, ops_results(set(), OPS))
    write_results(sc, ops_results(set(), OPS))
    env = pr_env(sc)
    env["GRADCI_BASELINE_MODE"] = "none"
    done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 0 and done.outputs["compared"] == "false"
    assert sc.server.calls_to("GET", r".*/compare/.*") == []
    assert "no comparison asked for" in done.summary


def test_workflow_dispatch_on_the_default_branch_compares_with_the_commits_before(
    github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event = payload("workflow_dispatch.json")  # octo-org/octo-repo, ref refs/heads/main
    repo = github.add_repo("octo-org/octo-repo", id=event["repository"]["id"], default_branch="main")
    main = repo.chain("main", 4)
    github.add_token(TOKEN)
    github.add_artifact(repo, "gradci-results-cpu", main[1], results_zip_files(ops_results(set(), OPS)))
    sc = Scenario(github, repo, main, main[-1], main[-1], tmp_path / "ws", tmp_path)
    sc.workspace.mkdir()
    write_results(sc, ops_results({"alpha"}, OPS))
    env = actions_env(sc, "workflow_dispatch", event, sha=main[-1])
    done = publish(sc, env, monkeypatch=monkeypatch, capsys=capsys)

    assert done.outputs["base-sha"] == main[1]  # main[2] has no results; main[3] is this commit
    assert the_check_run(sc).head_sha == main[-1]
    assert repo.comments == {} and done.code == 1
