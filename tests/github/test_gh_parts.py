"""The parts of ``gradci publish`` one at a time: event context, workflow commands and files,
error messages, artifact archives, annotations."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest
from ghfake import make_zip, payload
from ghfixtures import ops_results, read_outputs, result, results

from gradci.compare import compare
from gradci.errors import UsageError
from gradci.github import artifacts, check_run, client, comment, context, workflow_commands
from gradci.locate import Location
from gradci.report import Since
from gradci.results import Outcome

# --- context -------------------------------------------------------------------------------------


def env_for(tmp_path: Path, event_name: str, event: dict[str, object], **extra: str) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return {
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REPOSITORY": "ignored/when-the-event-names-it",
        "GITHUB_SHA": "f" * 40,
        "GITHUB_RUN_ID": "77",
        "GITHUB_WORKFLOW_REF": "Codertocat/Hello-World/.github/workflows/ci.yml@refs/heads/master",
        **extra,
    }


@pytest.mark.parametrize("name", ["pull_request.opened.json", "pull_request.synchronize.json"])
def test_context_of_a_pull_request_from_the_same_repository(name: str, tmp_path: Path) -> None:
    event = payload(name)
    ctx = context.from_environment(env_for(tmp_path, "pull_request", event))
    pr = event["pull_request"]
    assert ctx.repository == "Codertocat/Hello-World"
    assert ctx.head_sha == pr["head"]["sha"] != "f" * 40  # the head, not the merge commit
    assert (ctx.pr_number, ctx.base_ref, ctx.base_sha) == (2, "master", pr["base"]["sha"])
    assert ctx.fork is False
    assert ctx.workflow_path == ".github/workflows/ci.yml"
    assert ctx.run_url == "https://github.com/Codertocat/Hello-World/actions/runs/77"
    assert ctx.api_url == "https://api.github.com"


def test_context_of_a_pull_request_from_a_fork(tmp_path: Path) -> None:
    ctx = context.from_environment(
        env_for(tmp_path, "pull_request", payload("pull_request.opened.fork.json"))
    )
    assert ctx.fork is True
    assert ctx.head_repository == "forker/Hello-World"
    assert ctx.pr_number == 2


def test_context_of_pull_request_target_is_read_like_pull_request(tmp_path: Path) -> None:
    ctx = context.from_environment(
        env_for(tmp_path, "pull_request_target", payload("pull_request.opened.json"))
    )
    assert (
        ctx.pr_number == 2
        and ctx.head_sha == payload("pull_request.opened.json")["pull_request"]["head"]["sha"]
    )


def test_context_of_a_push(tmp_path: Path) -> None:
    event = payload("push.json")
    ctx = context.from_environment(
        env_for(tmp_path, "push", event, GITHUB_API_URL="https://ghe.example/api/v3/")
    )
    assert ctx.head_sha == event["after"]
    assert ctx.base_ref == "master" and ctx.head_ref == "master"
    assert ctx.base_sha is None  # "before" is all zeros: the branch was created
    assert ctx.pr_number is None and ctx.fork is False
    assert ctx.api_url == "https://ghe.example/api/v3"


def test_context_of_workflow_dispatch(tmp_path: Path) -> None:
    ctx = context.from_environment(env_for(tmp_path, "workflow_dispatch", payload("workflow_dispatch.json")))
    assert ctx.repository == "octo-org/octo-repo"
    assert ctx.head_sha == "f" * 40 and ctx.head_ref == "main"
    assert ctx.base_ref == "main" and ctx.pr_number is None


def test_context_of_workflow_run(tmp_path: Path) -> None:
    same = context.from_environment(
        env_for(tmp_path, "workflow_run", payload("workflow_run.pull_request.json"))
    )
    assert (same.pr_number, same.base_ref, same.fork) == (2, "master", False)
    assert same.triggering_run_id == 289782451 and same.triggering_event == "pull_request"
    assert same.workflow_path == ".github/workflows/test.yml"  # the triggering workflow's file
    fork = context.from_environment(
        env_for(tmp_path, "workflow_run", payload("workflow_run.pull_request.fork.json"))
    )
    assert (fork.pr_number, fork.base_ref, fork.fork) == (None, None, True)
    assert fork.head_repository == "forker/octo-repo" and fork.head_ref == "changes"
    other = context.from_environment(
        env_for(tmp_path, "workflow_run", payload("workflow_run.completed.json"))
    )
    assert other.triggering_event == "repository_dispatch"


def test_context_needs_github_actions(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="GITHUB_REPOSITORY is not set"):
        context.from_environment({})
    event = payload("pull_request.opened.json")
    event["pull_request"]["head"]["sha"] = "not-a-sha; rm -rf /"
    with pytest.raises(UsageError, match="no commit"):
        context.from_environment(env_for(tmp_path, "pull_request", event, GITHUB_SHA=""))


# --- workflow commands, outputs, job summary -----------------------------------------------------


def test_workflow_command_escaping() -> None:
    line = workflow_commands.command(
        "error",
        "50% off\r\nnext line ::warning::x",
        {"file": "dir,with:colons.py", "line": 3, "title": "a, b: c%"},
    )
    assert line == (
        "::error file=dir%2Cwith%3Acolons.py,line=3,title=a%2C b%3A c%25::50%25 off%0D%0Anext line ::warning::x"
    )
    assert "\n" not in line


def test_error_annotations_respect_githubs_ten_per_step() -> None:
    out = io.StringIO()
    shown = [workflow_commands.LogAnnotation(f"m{i}", f"t{i}", "f.py", i + 1) for i in range(10)]
    assert workflow_commands.error_annotations(shown, out=out) == 10
    assert "more" not in out.getvalue()
    out = io.StringIO()
    assert workflow_commands.error_annotations(shown + shown[:2], more=5, out=out) == 10
    lines = out.getvalue().splitlines()
    assert lines[8].startswith("::error file=f.py,line=9,title=t8::m8")
    assert lines[9].startswith("::error title=gradci%3A 8 more::8 more not shown here")


def test_outputs_use_delimiters_safe_for_any_value(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.write_text("earlier=1\n")
    value = "two\nlines\nghadelimiter_x\nEOF"
    assert workflow_commands.set_outputs({"a": value, "b": ""}, environ={"GITHUB_OUTPUT": str(output)})
    assert read_outputs(output) == {"earlier": "1", "a": value, "b": ""}
    assert workflow_commands.set_outputs({"a": "1"}, environ={}) is False


def test_summary_room_counts_what_the_step_already_wrote(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    assert workflow_commands.summary_room(environ=env) == 1024 * 1024
    workflow_commands.append_summary("é" * 10, environ=env)
    assert workflow_commands.summary_room(environ=env) == 1024 * 1024 - 21
    assert workflow_commands.summary_room(environ={}) is None


# --- errors --------------------------------------------------------------------------------------


def test_api_errors_name_the_action_the_status_and_the_fix() -> None:
    import requests
    from github import BadCredentialsException, GithubException, UnknownObjectException

    token = "ghs_secret123"

    def said(exc: BaseException, permission: str | None = None) -> str:
        error = client.describe(
            "create the check run", exc, token=token, api_url="https://x", permission=permission
        )
        return str(error)

    assert said(BadCredentialsException(401, {"message": "Bad credentials"}, {})).startswith(
        "cannot create the check run: GitHub rejected the token (401 Bad credentials)"
    )
    forbidden = said(
        GithubException(403, {"message": "Resource not accessible by integration"}, {}), "checks: write"
    )
    assert "(403 Resource not accessible by integration)" in forbidden
    assert "grant the job 'permissions: checks: write'" in forbidden
    assert "not found (404 Not Found)" in said(UnknownObjectException(404, {"message": "Not Found"}, {}))
    invalid = {"message": "Validation Failed", "errors": [{"code": "custom", "message": "Body is too long"}]}
    assert "(422 Validation Failed: Body is too long)" in said(GithubException(422, invalid, {}))
    limited = said(GithubException(403, {"message": "You have exceeded a secondary rate limit"}, {}))
    assert "rate limit held after retries" in limited
    assert "unreachable (ConnectionError: connection failed)" in said(
        requests.ConnectionError("Max retries exceeded (Connection refused)")
    )
    leaky = said(GithubException(500, {"message": f"token {token} rejected"}, {}))
    assert token not in leaky and "token *** rejected" in leaky


# --- artifacts -----------------------------------------------------------------------------------


def test_results_are_read_from_the_zip_wherever_they_are() -> None:
    res = ops_results({"b"}, ["a", "b"]).to_json()
    archive = make_zip({"out/gradci-results.json": json.dumps(res), "gradci-pr.json": '{"number": 5}'})
    data, pr = artifacts.read_archive(archive, "a", pr_file=True)
    assert data["summary"]["failed"] == 1 and pr == {"number": 5}
    assert artifacts.read_archive(archive, "a")[1] is None  # base results: the hint is not even read
    # another name, but the only gradci results file: taken
    data, pr = artifacts.read_archive(make_zip({"merged.json": json.dumps(res), "x.json": "[1]"}), "a")
    assert data["schema"] == "gradci.results" and pr is None


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"notes.txt": "hi", "other.json": "{}"}, "holds no gradci results"),
        ({"a/gradci-results.json": "{}", "b/gradci-results.json": "{}"}, "several results files"),
        ({"gradci-results.json": "{truncated"}, "gradci-results.json: not valid JSON"),
        ({"gradci-results.json": "[" * 100_000 + "]" * 100_000}, "gradci-results.json: .*nested too deeply"),
        ({"gradci-results.json": b"\xff\xfe{"}, "gradci-results.json: not UTF-8 text"),
        ({"gradci-results.json": '{"schema": NaN}'}, "gradci-results.json: not strict JSON: NaN"),
        ({"gradci-results.json": "[1]"}, "gradci-results.json is not a gradci results file"),
    ],
)
def test_archives_without_one_usable_results_file_are_refused(files: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        artifacts.read_archive(make_zip(files), "artifact x")
    with pytest.raises(ValueError, match="not a zip archive"):
        artifacts.read_archive(b"PK\x03\x04 broken", "artifact x")


def test_zip_paths_are_never_written_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escape/gradci-results.json", json.dumps(ops_results(set(), ["a"]).to_json()))
    monkeypatch.chdir(tmp_path)
    data, _ = artifacts.read_archive(buffer.getvalue(), "evil")
    assert data["schema"] == "gradci.results"
    assert list(tmp_path.parent.rglob("escape")) == []


def test_artifact_name_template() -> None:
    assert artifacts.artifact_name("gradci-results-{device}", "cuda") == "gradci-results-cuda"
    assert artifacts.artifact_name("results", "cpu") == "results"


# --- annotations ---------------------------------------------------------------------------------


def test_cut_keeps_limits_in_characters_and_bytes() -> None:
    assert check_run.cut("short", 10) == "short"
    assert check_run.cut("x" * 300, 255) == "x" * 254 + "…"
    cut = check_run.cut("ü" * 40_000, 65_535, unit="bytes")
    assert len(cut.encode()) <= 65_535 and cut.endswith("…") and len(cut) > 30_000


def test_annotation_locations(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "ops.py").write_text("x\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.gradci]\nops = ["a*"]\n')
    head = ops_results(set(), [])
    head.tests = [
        result("in_repo", Outcome.FAILED, location=Location("pkg/ops.py", 7)),
        result("upstream", Outcome.FAILED),
        result("absolute", Outcome.ERROR, location=Location("/usr/lib/python3/torch/ops.py", 3)),
        result("escapes", Outcome.FAILED, location=Location("../outside.py", 3)),
        result("deleted", Outcome.FAILED, location=Location("pkg/gone.py", 3)),
        result("passing", Outcome.PASSED, location=Location("pkg/ops.py", 9)),
    ]
    made, total = check_run.annotations_for(compare(None, head), root=tmp_path, workflow_path=".github/x.yml")
    assert total == 5
    assert {a.title.split(": ")[1].split("_cpu")[0]: (a.path, a.line) for a in made} == {
        "test_fn_grad_absolute": ("pyproject.toml", 4),
        "test_fn_grad_deleted": ("pyproject.toml", 4),
        "test_fn_grad_escapes": ("pyproject.toml", 4),
        "test_fn_grad_in_repo": ("pkg/ops.py", 7),
        "test_fn_grad_upstream": ("pyproject.toml", 4),
    }
    assert all(a.title.startswith("Failure: ") for a in made)  # no base: not called "new"
    # without a config file: the workflow file
    (tmp_path / "pyproject.toml").unlink()
    made, _ = check_run.annotations_for(compare(None, head), root=tmp_path, workflow_path=".github/x.yml")
    assert made[1].path == ".github/x.yml"


# --- the comment's hidden state ------------------------------------------------------------------

SHA = "ab" * 20


def _digests(*ids: str) -> str:
    """The ids= field as gradci writes it."""
    line = comment.state(SHA, ids)
    return line.split(" ids=", 1)[1].removesuffix(" -->")


def test_comment_state_round_trip() -> None:
    head = ops_results({"beta", "gamma"}, ["alpha", "beta", "gamma", "delta"])
    failing = comment.failing_ids(head)
    line = comment.state(SHA, failing)
    assert re.fullmatch(r"<!-- gradci-state: v1 sha=(ab){20} failing=2 ids=[A-Za-z0-9_-]{11} -->", line)
    body = f"{comment.marker('gradci')}\n## gradci: report\n\n<sub>footer</sub>\n\n{line}\n"
    state = comment.read_state(body)
    assert state is not None and state.sha == SHA and state.failing is not None
    assert len(state.failing) == 2
    # beta is fixed now; gamma still fails; alpha passed before too; delta passes only on a re-run
    now = ops_results({"gamma"}, ["alpha", "beta", "gamma", "delta"])
    now.tests[3].attempts = [{"outcome": "failed", "duration": 0.1, "message": "x"}]
    since = comment.fixed_since(state, now, "cd" * 20)
    assert since is not None and [t.op for t in since.fixed] == ["beta"]
    assert since.sha == SHA and since.same_commit is False
    again = comment.fixed_since(state, now, SHA)
    assert again is not None and again.same_commit is True
    # a test that now xfails, is skipped or errors is not fixed
    other = results([result("beta", Outcome.SKIPPED), result("gamma", Outcome.XFAILED)])
    assert comment.fixed_since(state, other, SHA) == Since([], SHA, same_commit=True)
    assert comment.fixed_since(None, now, SHA) is None


def test_comment_state_remembers_at_most_max_tracked() -> None:
    ids = [f"test_fn_grad_op{i}_cpu_float64" for i in range(comment.MAX_TRACKED + 1)]
    line = comment.state(SHA, ids)
    assert line == f"<!-- gradci-state: v1 sha={SHA} failing={comment.MAX_TRACKED + 1} ids= -->"
    state = comment.read_state(line)
    assert state == comment.State(SHA, None)
    assert comment.fixed_since(state, ops_results(set(), ["a"]), SHA) is None  # nothing to say
    full = comment.state(SHA, ids[:-1])
    assert len(full) < 5_500 and comment.read_state(full) is not None  # the most it writes, read back


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (None, "no comment"),
        ("", "empty"),
        ("## gradci: report without a state (an older gradci)", "none"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=1 ids=AAAAAA -->\n" * 2, "two: an edit added one"),
        (f"<!-- gradci-state: v1 sha={SHA.upper()} failing=1 ids=AAAAAA -->", "not a SHA as written"),
        (f"<!-- gradci-state: v1 sha={SHA[:39]} failing=1 ids=AAAAAA -->", "short SHA"),
        (f"<!-- gradci-state: v2 sha={SHA} failing=1 ids=AAAAAA -->", "another version"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=2 ids=AAAAAA -->", "count and hashes disagree"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=1 ids=AAAAAAA -->", "not whole hashes"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=1 ids=AAAA+A== -->", "not base64url"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=1 ids=A -->", "not base64"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=99999999 ids= -->", "count too long"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=1001 ids=AAAAAA -->", "too many, yet hashes"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=2 ids=AAAAAAAAAAA -->", "a hash twice"),
        ("<!-- gradci-state: v1 sha=" + SHA + " failing=1 ids=" + "A" * 6000 + " -->", "over the bound"),
        ("x" * 140_000 + f"<!-- gradci-state: v1 sha={SHA} failing=1 ids=AAAAAA -->", "beyond what is read"),
        (f"<!-- gradci-state: v1 sha={SHA} failing=1 ids=AAAAAA\n-->", "a line break inside"),
        (f"<!--  gradci-state: v1 sha={SHA} failing=1 ids=AAAAAA -->", "spacing"),
    ],
)
def test_comment_state_that_is_not_exactly_as_written_is_ignored(body: str | None, why: str) -> None:
    assert comment.read_state(body) is None, why


def test_comment_state_in_order_and_out_of_order() -> None:
    two = _digests("test_a", "test_b")
    assert comment.read_state(f"<!-- gradci-state: v1 sha={SHA} failing=2 ids={two} -->") is not None
    raw = base64.urlsafe_b64decode(two + "=" * (-len(two) % 4))
    swapped = base64.urlsafe_b64encode(raw[4:] + raw[:4]).decode().rstrip("=")
    assert comment.read_state(f"<!-- gradci-state: v1 sha={SHA} failing=2 ids={swapped} -->") is None


def test_comment_state_reading_is_bounded() -> None:
    """A comment body of hostile text cannot make the reading slow."""
    started = time.monotonic()
    for body in (
        "<!-- gradci-state: v1 sha=" * 10_000,
        ("<!-- gradci-state: v1 sha=" + SHA + " failing=1 ids=" + "A" * 5_000) * 30,
        "ids=" + "A" * 1_000_000,
    ):
        assert comment.read_state(body) is None
    assert time.monotonic() - started < 1.0
