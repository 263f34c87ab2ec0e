"""Finding base results by commit: the base branch's workflow runs for the merge base (then older
commits), those runs' artifacts; never a pull request's or a fork's run, however busy the
repository."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from ghfake import Fault, make_zip, payload
from ghfixtures import (  # noqa: F401 - fixtures
    TOKEN,
    Scenario,
    actions_env,
    fast_client_fixture,
    github_fixture,
    ops_results,
    publish,
    results_zip_files,
    scenario_fixture,
    write_results,
)

from gradci.github import artifacts

OPS = ["alpha", "beta", "gamma", "delta"]
NAME = "gradci-results-cpu"
# Base results with gamma failing, so a comparison tells them apart from any other: with them,
# a head failing beta and gamma has 1 new failure and 1 still failing; with anything else, 2 new.
BASE = ops_results({"gamma"}, OPS)
HEAD = ops_results({"beta", "gamma"}, OPS)
DECOY = make_zip(results_zip_files(ops_results(set(), OPS)))


def pr_env(sc: Scenario) -> dict[str, str]:
    return actions_env(sc, "pull_request", payload("pull_request.opened.json"))


def compared_with_base(done: object) -> bool:
    outputs = done.outputs  # type: ignore[attr-defined]
    return (outputs["compared"], outputs["new-failures"], outputs["still-failing"]) == ("true", "1", "1")


def test_a_busy_repository_still_finds_the_merge_base_artifact(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,100 newer pull-request artifacts of the same name (40 branches, weeks of pushes) and newer
    base-branch ones: the merge base's artifact is past the 1,000 that GitHub lists by name, and
    found by its commit in a few requests."""
    sc = scenario
    wanted = sc.artifact_at(sc.merge_base, BASE)
    for sha in sc.master[3:]:  # the base branch moved on, each push uploading its results
        sc.server.add_artifact(sc.repo, NAME, sha, DECOY)
    later = sc.repo.commits[sc.master[-1]].date
    for i in range(1100):
        sha = sc.repo.add_commit(f"{i:040x}", [sc.merge_base], when=later + timedelta(minutes=30 * i))
        sc.server.add_artifact(sc.repo, NAME, sha, DECOY, head_branch=f"feature-{i % 40}")
    # The repository's artifacts of that name, newest first, as far as GitHub lists them:
    # the merge base's is not among them.
    listed = []
    for page in range(1, 11):
        response = requests.get(
            f"{sc.server.url}/repos/{sc.repo.full_name}/actions/artifacts",
            params={"name": NAME, "per_page": 100, "page": page},
            headers={"Authorization": f"token {TOKEN}"},
            timeout=30,
        )
        listed += [a["id"] for a in response.json()["artifacts"]]
    assert len(listed) == 1000 and wanted.id not in listed
    sc.server.calls.clear()

    write_results(sc, HEAD)
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert compared_with_base(done) and done.outputs["base-sha"] == sc.merge_base
    assert f"base results: artifact {NAME} of the merge base {sc.merge_base[:10]} with master" in done.stderr
    assert done.code == 1
    # cheap: whether the name exists at all, the merge base's runs, one run's artifacts, one download
    [exists] = sc.server.calls_to("GET", r".*/actions/artifacts")
    assert exists.query == {"name": NAME, "per_page": "1"}
    [runs] = sc.server.calls_to("GET", r".*/actions/runs")
    assert (runs.query["head_sha"], runs.query["branch"]) == (sc.merge_base, "master")
    [listing] = sc.server.calls_to("GET", r".*/actions/runs/\d+/artifacts")
    assert listing.path.endswith(f"/runs/{wanted.run_id}/artifacts") and listing.query["name"] == NAME
    assert [b["artifact"] for b in sc.server.blob_requests] == [wanted.id]


def test_older_commits_are_searched_and_no_pull_request_or_fork_run_counts(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    mb = sc.merge_base
    add = sc.server.add_artifact
    # Runs for the merge base whose artifacts must never count, each listed for branch=master:
    add(sc.repo, NAME, mb, DECOY, head_branch="master", head_repository_id=999)  # a fork's PR from its master
    add(sc.repo, NAME, mb, DECOY, event="pull_request_target")  # base context, may run the PR's code
    add(sc.repo, NAME, mb, DECOY, event="workflow_run")  # may re-upload a pull request's results
    add(sc.repo, NAME, mb, DECOY, event="issue_comment")
    add(sc.repo, NAME, mb, DECOY, event="push", head_repository_id=999)  # another head repository
    sc.server.add_run(sc.repo, mb, conclusion="failure")  # the merge base's own run: no upload
    sc.artifact_at(sc.master[1], BASE, expired=True)  # the commit before: expired
    used = sc.artifact_at(sc.master[0], BASE)
    write_results(sc, HEAD)
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert compared_with_base(done) and done.outputs["base-sha"] == sc.master[0]
    assert (
        f"base results: artifact {NAME} of {sc.master[0][:10]} on master, 2 commits before the merge "
        f"base {mb[:10]}, which has none"
    ) in done.stderr
    assert [c.query["head_sha"] for c in sc.server.calls_to("GET", r".*/actions/runs")] == [
        mb,
        sc.master[1],
        sc.master[0],
    ]
    # only the base branch's own runs were looked into: the merge base's, the expired one's, the used one's
    looked = [c.path.split("/")[-2] for c in sc.server.calls_to("GET", r".*/actions/runs/\d+/artifacts")]
    assert len(looked) == 3 and looked[-1] == str(used.run_id)
    assert [b["artifact"] for b in sc.server.blob_requests] == [used.id]


def test_the_newest_unexpired_artifact_of_the_commit_wins(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    mb = sc.merge_base
    when = sc.repo.commits[mb].date
    older = sc.server.add_run(sc.repo, mb, created_at=when + timedelta(minutes=1))
    newer = sc.server.add_run(sc.repo, mb, event="workflow_dispatch", created_at=when + timedelta(hours=2))
    skipped = sc.server.add_run(sc.repo, mb, event="schedule", created_at=when + timedelta(hours=3))
    skipped.conclusion = "skipped"
    used = sc.server.add_artifact(sc.repo, NAME, mb, results_zip_files(BASE), run=older)
    sc.server.add_artifact(sc.repo, NAME, mb, DECOY, run=newer, expired=True)
    sc.server.add_artifact(sc.repo, "gradci-results-cuda", mb, DECOY, run=newer)  # another device
    write_results(sc, HEAD)
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert compared_with_base(done) and done.outputs["base-sha"] == mb
    looked = [c.path.split("/")[-2] for c in sc.server.calls_to("GET", r".*/actions/runs/\d+/artifacts")]
    assert looked == [str(newer.id), str(older.id)]  # newest first; the skipped run uploaded nothing
    assert [b["artifact"] for b in sc.server.blob_requests] == [used.id]


def test_a_repository_without_such_artifacts_costs_one_request(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    sc.server.add_artifact(sc.repo, "gradci-results-cuda", sc.merge_base, results_zip_files(BASE))
    write_results(sc, HEAD)
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    note = (
        f"no base results: Codertocat/Hello-World has no artifact {NAME} at all; a run on master uploads it"
    )
    assert note in done.summary and done.outputs["compared"] == "false"
    assert sc.server.calls_to("GET", r".*/actions/runs.*") == []
    assert done.code == 1  # without a base, every failure may be new


def test_the_search_looks_into_a_bounded_number_of_runs(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Many workflows on every push, none uploading the results: the search stops and says so."""
    sc = scenario
    monkeypatch.setattr(artifacts, "MAX_RUN_LOOKUPS", 4)
    for sha in sc.master[:3]:
        for workflow in ("lint", "docs", "build"):
            sc.server.add_run(sc.repo, sha, path=f".github/workflows/{workflow}.yml")
    sc.artifact_at(sc.pr_head, BASE, head_branch="changes")  # the name exists, from a pull request
    write_results(sc, HEAD)
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    assert len(sc.server.calls_to("GET", r".*/actions/runs/\d+/artifacts")) == 4
    assert len(sc.server.calls_to("GET", r".*/actions/runs")) == 2  # the second commit ran it out
    assert (
        f"no base results: no unexpired artifact {NAME} from a run on master for the merge base "
        f"{sc.merge_base[:10]} (gradci looks into at most 4 workflow runs)"
    ) in done.summary
    assert done.outputs["compared"] == "false"


def test_a_refused_run_listing_is_a_warning_and_the_rest_publishes(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario
    sc.artifact_at(sc.merge_base, BASE)
    body = {"message": "Resource not accessible by integration", "documentation_url": "x"}
    sc.server.faults.append(Fault("GET", r".*/actions/runs", 403, body, times=10))
    write_results(sc, HEAD)
    done = publish(sc, pr_env(sc), monkeypatch=monkeypatch, capsys=capsys)

    [warning] = [line for line in done.stdout.splitlines() if line.startswith("::warning ")]
    assert f"no base results: cannot list the workflow runs of {sc.merge_base[:10]} on master" in warning
    assert "permissions: actions: read" in warning
    assert len(sc.repo.check_runs) == 1 and done.outputs["compared"] == "false"
    assert done.code == 1


def test_the_fake_lists_runs_as_github_does(scenario: Scenario) -> None:
    """Filters, newest first, and the 1,000 runs GitHub returns for a filtered list."""
    sc = scenario
    for i in range(1005):
        sc.server.add_run(sc.repo, sc.master[0], created_at=sc.repo.commits[sc.master[0]].date + timedelta(i))
    fork = sc.server.add_run(sc.repo, sc.master[1], head_repository_id=999, event="pull_request")

    def runs(**params: object) -> dict[str, object]:
        response = requests.get(
            f"{sc.server.url}/repos/{sc.repo.full_name}/actions/runs",
            params=params,
            headers={"Authorization": f"token {TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    many = runs(head_sha=sc.master[0], per_page=100)
    assert many["total_count"] == 1000
    dates = [r["created_at"] for r in many["workflow_runs"]]  # type: ignore[union-attr]
    assert dates == sorted(dates, reverse=True)
    [listed] = runs(branch="master", event="pull_request")["workflow_runs"]  # type: ignore[misc]
    assert listed["id"] == fork.id and listed["head_repository"]["full_name"] == "fork999/Hello-World"
    assert listed["head_repository"]["id"] == 999 and listed["repository"]["id"] == sc.repo.id
    assert runs(head_sha=sc.master[1], event="push")["total_count"] == 0
    response = requests.get(
        f"{sc.server.url}/repos/{sc.repo.full_name}/actions/runs",
        params={"actor": "octocat"},
        headers={"Authorization": f"token {TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 422 and "does not model" in sc.server.problems.pop()
