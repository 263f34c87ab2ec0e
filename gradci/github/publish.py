"""``gradci publish``: tell the pull request what it broke.

Reads the run's context (``context``), the head results (a file, or in a ``workflow_run`` the
triggering run's artifact), finds base results (``artifacts``), compares them (``compare``),
renders the report (``report``), and publishes, each part on its own so one failing does not stop
the others:

1. the check run with annotations (needs ``checks: write``): the report as long as its summary
   allows;
2. the pull-request comment (needs ``pull-requests: write``): the report kept short
   (``report.COMMENT_ROWS`` rows a table), linking to the check run for the rest, and what was
   fixed since its previous version;
3. the job summary (``$GITHUB_STEP_SUMMARY``) and the step outputs (``$GITHUB_OUTPUT``);
4. where the check run could not be written: ``::error`` annotations in the log instead.

Each report links the commit tested (a pull request's head, not the merge commit the run checked
out), the base commit compared with, and, once created, the check run.

A failed API call is a warning (``::warning::`` in Actions) naming what to change, never the
token. A fork's ``pull_request`` run has a read-only token: gradci does not try the two writes
GitHub would refuse and goes straight to the log annotations and the job summary. Exit code: 1
when ``--fail-on`` says the comparison fails, else 0; 4 (``GitHubError``) only where nothing could
be published at all, or the head results could not be fetched; 3 for unusable head results.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from gradci import compare as comparing
from gradci import docs, report
from gradci.errors import EXIT_OK, EXIT_TESTS_FAILED, GitHubError, ResultsFileError
from gradci.options import Settings
from gradci.results import Results, load, write_atomic

from . import artifacts, check_run, comment, workflow_commands
from .client import TOKEN_VARIABLES, Api, scrub
from .context import PULL_REQUEST_EVENTS, Context, from_environment


@dataclass(frozen=True)
class Base:
    """Base results, or why there are none: what every way of finding them gives."""

    results: Results | None
    problem: str | None = None  # why there are none, for the report
    sha: str | None = None  # the commit they are of
    note: str | None = None  # where they came from, for the reader


class Log:
    """What publishing says (stderr; warnings as workflow commands in Actions, never the token)
    and what it published, for the summary line and the exit code."""

    def __init__(self, token: str | None, *, in_actions: bool) -> None:
        self.token = token
        self.in_actions = in_actions
        self.published: list[str] = []
        self.warnings: list[str] = []
        self.skipped: str | None = None  # why the check run and the comment were not tried

    def info(self, text: str) -> None:
        # one line: names from events and artifacts must not start a workflow command of their own
        text = workflow_commands.log_line(scrub(text, self.token))
        print(f"gradci publish: {text}", file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        text = workflow_commands.log_line(scrub(text, self.token))
        self.warnings.append(text)
        if self.in_actions:
            print(workflow_commands.command("warning", text, {"title": "gradci publish"}), flush=True)
        else:
            print(f"gradci publish: warning: {text}", file=sys.stderr, flush=True)


# --- the head results: a file, or the triggering run's artifact -------------------------------------


def head_results(
    settings: Settings, ctx: Context, api: Api | None, log: Log, results_path: Path | None
) -> tuple[Results, Path | None, Context]:
    """The results to publish, where they are, and the context they belong to: a workflow_run of
    a fork's pull request learns its pull request from the artifact (checked)."""
    if ctx.event_name != "workflow_run":
        path = results_path or settings.json or Path(artifacts.RESULTS_FILE)
        return load(path), path, ctx
    if api is None:
        raise GitHubError("a workflow_run publisher needs a token (GITHUB_TOKEN) to download the results")
    if ctx.triggering_run_id is None:
        raise GitHubError("the workflow_run event names no run")
    data, pr_file = _fetch_run_results(settings, api, log, ctx.triggering_run_id)
    head = Results.from_json(data, source=f"the results artifact of run {ctx.triggering_run_id}")
    target = results_path or settings.json
    if target is not None:
        head.save(target)  # as checked: strict JSON, whatever the artifact held
    if ctx.triggering_event in PULL_REQUEST_EVENTS:
        ctx = _resolve_pull_request(ctx, api, log, pr_file)
    return head, target, ctx


def _fetch_run_results(
    settings: Settings, api: Api, log: Log, run_id: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    pattern = artifacts.artifact_name(settings.artifact_name, "*")
    found = [
        artifacts.Artifact.from_json(a)
        for a in artifacts.run_artifacts(api, run_id)
        if fnmatchcase(str(a.get("name")), pattern) and not a.get("expired")
    ]
    if not found:
        raise GitHubError(
            f"run {run_id} uploaded no artifact matching {pattern}",
            hint="the pull_request workflow uploads gradci-results.json with actions/upload-artifact",
        )
    names = sorted({a.name for a in found})
    if len(names) > 1:
        raise GitHubError(
            f"run {run_id} uploaded several results artifacts ({', '.join(names)})",
            hint="set artifact-name to the one to publish, e.g. gradci-results-cuda",
        )
    chosen = found[0]
    log.info(f"head results: artifact {chosen.name} of run {run_id}")
    data = artifacts.download(api, chosen)
    try:
        return artifacts.read_archive(data, f"artifact {chosen.name} of run {run_id}", pr_file=True)
    except ValueError as exc:
        raise ResultsFileError(str(exc)) from None


def _resolve_pull_request(ctx: Context, api: Api, log: Log, pr_file: dict[str, Any] | None) -> Context:
    """A fork's workflow_run lists no pull request: take its number from the artifact, checked.

    The artifact was written by pull-request code, so its number is only a hint: the pull
    request must exist here and have exactly the head commit the triggering run tested.
    """
    candidates: list[int] = []
    if ctx.pr_number is not None:
        candidates.append(ctx.pr_number)
    hinted = (pr_file or {}).get("number")
    if isinstance(hinted, int) and not isinstance(hinted, bool) and hinted > 0:
        candidates.append(hinted)
    for number in candidates:
        try:
            pull = api.repo.get_pull(number)
            head_sha, base_ref = api.call(
                f"read pull request #{number}", functools.partial(_head_and_base, pull)
            )
        except GitHubError as exc:
            log.warn(str(exc))
            continue
        if head_sha == ctx.head_sha:
            return replace(ctx, pr_number=number, base_ref=base_ref)
        log.info(f"pull request #{number} has head {head_sha[:10]}, not {ctx.head_sha[:10]}: not this run's")
    if ctx.head_repository and ctx.head_ref:
        owner = ctx.head_repository.split("/", 1)[0]
        try:
            for pull in api.iterate(
                f"find the pull request of {owner}:{ctx.head_ref}",
                api.repo.get_pulls(state="open", head=f"{owner}:{ctx.head_ref}"),
                limit=10,
            ):
                if pull.head.sha == ctx.head_sha:
                    return replace(ctx, pr_number=pull.number, base_ref=pull.base.ref)
        except GitHubError as exc:
            log.warn(str(exc))
    log.warn(
        f"no open pull request has head {ctx.head_sha[:10]} (pushed again since?): publishing the check run only"
    )
    return ctx


# --- publishing -------------------------------------------------------------------------------------


class Publisher:
    """Publishes one run's results: ``Publisher(settings, context, api, log, environ)``, its API
    client given (None without a token), as EnricoMi's publisher is given its GitHub client."""

    def __init__(
        self, settings: Settings, context: Context, api: Api | None, log: Log, environ: Mapping[str, str]
    ) -> None:
        self.settings = settings
        self.context = context
        self.api = api
        self.log = log
        self.environ = environ
        self.in_actions = environ.get("GITHUB_ACTIONS") == "true"
        self.check_run_url: str | None = None  # once created: the comment and job summary link it

    def reachable_api(self) -> Api | None:
        """The API, unless there is no token or GitHub was unreachable (said once already)."""
        if self.api is None or self.api.unreachable:
            return None
        return self.api

    def run(self, head: Results, results_file: Path | None) -> int:
        ctx = self.context
        base = self.find_base(head, results_file)
        comparison = comparing.compare(base.results, head, baseline_problem=base.problem)
        fail = comparison.should_fail(self.settings.fail_on)
        conclusion = "failure" if fail else "success"
        self.log.info(f"{report.headline(head, comparison)} -> {conclusion}")

        if self.read_only_token():
            self.log.skipped = (
                "a pull_request run from a fork has a read-only token: no check run or comment "
                "(GitHub would refuse both), log annotations and the job summary instead; "
                f"for both, the two-workflow pattern ({docs.url('publishing.md', 'pull-requests-from-forks')})"
            )
            self.log.info(self.log.skipped)
            wrote_check = False
        else:
            wrote_check = self.publish_check(head, comparison, base, conclusion)
        if not wrote_check:
            self.log_annotations(comparison)
        if self.log.skipped is None:
            self.publish_comment(head, comparison, base)
        self.job_summary(head, comparison, base)
        self.outputs(head, comparison, base, conclusion, results_file)
        if ctx.event_name in PULL_REQUEST_EVENTS:
            self.write_pr_file(results_file)

        if not self.log.published:
            reasons = self.log.warnings + ([self.log.skipped] if self.log.skipped else [])
            raise GitHubError(
                "nothing could be published: " + ("; ".join(reasons) or "no GitHub Actions run"),
                hint="the results files are kept; see the warnings above",
            )
        self.log.info("published: " + ", ".join(self.log.published))
        if self.settings.baseline is not None:
            problem = comparing.problem_error(comparison)  # a base file the user named: as compare does
            if problem is not None:
                raise problem
        return EXIT_TESTS_FAILED if fail else EXIT_OK

    def find_base(self, head: Results, results_file: Path | None) -> Base:
        """Base results as the settings say: a file, `gradci baseline`'s rerun, an artifact, or none."""
        settings = self.settings
        if settings.baseline is not None:
            results, problem = comparing.load_baseline(settings.baseline)
            if results is None:
                return Base(None, problem)
            note = f"base results: {settings.baseline}"
            self.log.info(note)
            return Base(results, sha=results.run.git_sha, note=note)
        if settings.baseline_mode == "none":
            return Base(None, "no comparison asked for (baseline-mode: none)")
        if settings.baseline_mode == "rerun":
            # made by `gradci baseline` without the token: publishing runs no repository code
            from . import rerun

            results, problem, sha = rerun.read(results_file, self.context)
            if results is None or sha is None:
                return Base(None, problem)
            note = f"base results: gradci run on {sha[:10]} (baseline-mode rerun)"
            self.log.info(note)
            return Base(results, sha=sha, note=note)
        return self.base_from_artifact(head)

    def base_commit(self) -> tuple[str | None, str | None, str | None]:
        """(branch, commit to search from, merge base) for this event; None where there is none."""
        ctx = self.context
        assert self.api is not None
        branch = ctx.base_ref or ctx.default_branch
        if branch is None:
            return None, None, None
        if ctx.event_name == "push":
            # the branch as it was before this push, or before this commit
            return branch, ctx.base_sha or ctx.head_sha, None
        merge_base = artifacts.merge_base(self.api, branch, ctx.head_sha)
        if merge_base == ctx.head_sha:  # the commit is on the base branch: its history before it
            return branch, ctx.head_sha, None
        return branch, merge_base, merge_base

    def base_from_artifact(self, head: Results) -> Base:
        api = self.reachable_api()
        if api is None:
            why = "no token to look for them" if self.api is None else "GitHub is unreachable"
            return Base(None, f"no base results: {why}")
        name = artifacts.artifact_name(self.settings.artifact_name, head.run.device)
        try:
            branch, start, merge_base = self.base_commit()
            if branch is None or start is None:
                return Base(None, "no base results: this event names no base branch")
            search = artifacts.find_base_artifact(
                api,
                name,
                branch=branch,
                start=start,
                depth=self.settings.baseline_commits,
                skip=self.context.head_sha,
                merge_base_sha=merge_base,
            )
            self.log.info(search.note)
            if search.artifact is None:
                return Base(None, search.note)
            data = artifacts.download(api, search.artifact)
        except GitHubError as exc:
            self.log.warn(f"no base results: {exc}")
            return Base(None, f"no base results: {exc.message}")
        source = f"artifact {name} of {search.artifact.head_sha[:10]}"
        try:
            parsed, _ = artifacts.read_archive(data, source)
            results = Results.from_json(parsed, source=source)
        except (ValueError, ResultsFileError) as exc:
            problem = f"base results unusable: {exc}"
            self.log.warn(f"{problem}; comparing with nothing")
            return Base(None, problem)
        return Base(results, sha=search.artifact.head_sha, note=search.note)

    def links(
        self, comparison: comparing.Comparison, base: Base, rest: tuple[str, str] | None = None
    ) -> report.Links:
        ctx = self.context
        return report.Links(
            server=ctx.server_url,
            repository=ctx.repository,
            head_sha=ctx.head_sha,
            base_sha=base.sha if comparison.base is not None else None,
            check_run=self.check_run_url,
            rest=rest,
        )

    def render(
        self,
        head: Results,
        comparison: comparing.Comparison,
        base: Base,
        budget: int,
        *,
        max_rows: int | None = None,
        since: report.Since | None = None,
        rest: tuple[str, str] | None = None,
        full_samples: bool = True,
    ) -> str:
        """The report within ``budget`` bytes, with a footer: where the base came from, the run."""
        parts = []
        if base.note and comparison.base is not None:
            parts.append(report.md_text(base.note))
        run_url = report.safe_url(self.context.run_url)
        if run_url:
            parts.append(f"[workflow run]({run_url})")
        footer = f"\n<sub>{' · '.join(parts)}</sub>\n" if parts else ""
        name = self.settings.check_name
        text = report.render(
            head,
            comparison,
            fmt="markdown",
            budget=max(0, budget - report.size(footer)),
            title=name,
            links=self.links(comparison, base, rest),
            max_rows=max_rows,
            since=since,
            full_samples=full_samples,
        )
        return text + footer if report.size(text + footer) <= budget else text

    def publish_check(
        self, head: Results, comparison: comparing.Comparison, base: Base, conclusion: str
    ) -> bool:
        api = self.reachable_api()
        if api is None:
            return False
        ctx = self.context
        found, total = check_run.annotations_for(
            comparison,
            root=ctx.workspace,
            workflow_path=ctx.workflow_path,
            # a workflow_run has not checked out the pull request's files (and must not)
            check_disk=ctx.event_name != "workflow_run",
        )
        note = ""
        if total > len(found):
            note = f"\n\n_Annotations: the first {len(found):,} of {total:,}; the results files hold every failure._\n"
        name = self.settings.check_name
        # the annotations hold each sample in full: the summary's bytes go to rows
        budget = check_run.SUMMARY_LIMIT - report.size(note)
        summary = self.render(head, comparison, base, budget, full_samples=False)
        try:
            done = check_run.publish(
                api,
                name=name,
                head_sha=ctx.head_sha,
                conclusion=conclusion,
                title=report.headline(head, comparison),
                summary=summary + note,
                annotations=found,
                details_url=ctx.run_url,
            )
        except GitHubError as exc:
            self.log.warn(self._explain_write_failure("check run", exc))
            return False
        if done.warning:
            self.log.warn(done.warning)
        self.check_run_url = done.url
        self.log.published.append(f"check run {name!r} ({done.annotations} annotations)")
        return True

    def read_only_token(self) -> bool:
        """A fork's pull_request run: GitHub gives it a read-only token (pull_request_target writes)."""
        return self.context.fork and self.context.event_name == "pull_request"

    def _explain_write_failure(self, what: str, exc: GitHubError) -> str:
        text = f"{exc}"
        # Forks' runs do not get here; Dependabot's pull_request runs have a read-only token too.
        if exc.status in (403, 404) and self.context.event_name == "pull_request":
            text += (
                f"; a {what} on a pull request whose run has a read-only token (Dependabot's, by "
                f"default) needs the two-workflow pattern ({docs.url('publishing.md', 'pull-requests-from-forks')})"
            )
        return text

    def log_annotations(self, comparison: comparing.Comparison) -> None:
        if not self.in_actions:
            return
        ctx = self.context
        found, total = check_run.annotations_for(
            comparison, root=ctx.workspace, workflow_path=ctx.workflow_path, check_disk=True
        )
        shown = [
            workflow_commands.LogAnnotation(a.message.split("\n", 1)[0][:1000], a.title, a.path, a.line)
            for a in found
        ]
        if shown:
            written = workflow_commands.error_annotations(shown, more=total - len(found))
            self.log.published.append(f"{written} annotations in the log")

    def publish_comment(self, head: Results, comparison: comparing.Comparison, base: Base) -> None:
        ctx = self.context
        mode = self.settings.comment_mode
        api = self.reachable_api()
        if mode == "off" or ctx.pr_number is None or api is None:
            return
        create = comment.wanted(mode, comparison)
        name = self.settings.check_name
        try:
            found = comment.find(api, ctx.pr_number, check_name=name)
        except GitHubError as exc:
            self.log.warn(self._explain_write_failure("comment", exc))
            return
        since = comment.fixed_since(comment.read_state(found.body), head, ctx.head_sha)
        if since is not None and since.fixed:
            what = "run" if since.same_commit else "push"
            self.log.info(f"fixed since the previous {what}: {len(since.fixed):,}")
        tail = f"\n{comment.state(ctx.head_sha, comment.failing_ids(head))}\n"
        # the comment stays short; the rest is in the check run (or the run's job summary)
        rest = None
        if self.check_run_url:
            rest = ("the check run", self.check_run_url)
        elif ctx.run_url and self.environ.get("GITHUB_STEP_SUMMARY"):
            rest = ("the job summary", ctx.run_url)
        budget = comment.body_budget(name) - report.size(tail)
        body = self.render(
            head, comparison, base, budget, max_rows=report.COMMENT_ROWS, since=since, rest=rest
        )
        try:
            done = comment.write(api, found, ctx.pr_number, body + tail, check_name=name, create=create)
        except GitHubError as exc:
            self.log.warn(self._explain_write_failure("comment", exc))
            return
        if done.action != "skipped":
            self.log.published.append(f"pull-request comment ({done.action})")
        else:
            self.log.info(f"no comment (comment-mode {mode}: nothing to report)")

    def job_summary(self, head: Results, comparison: comparing.Comparison, base: Base) -> None:
        room = workflow_commands.summary_room(environ=self.environ)
        if room is None:
            return
        text = self.render(head, comparison, base, max(0, room - 1))
        try:
            workflow_commands.append_summary(text, environ=self.environ)
        except OSError as exc:
            self.log.warn(f"cannot write the job summary: {exc}")
            return
        self.log.published.append("job summary")

    def outputs(
        self,
        head: Results,
        comparison: comparing.Comparison,
        base: Base,
        conclusion: str,
        results_file: Path | None,
    ) -> None:
        C = comparing.Category
        compared = comparison.base is not None
        junit = self.settings.junit
        values = {
            "new-failures": str(comparison.count(C.NEW_FAILURE) if compared else len(head.failing)),
            "fixed": str(comparison.count(C.FIXED)),
            "still-failing": str(comparison.count(C.STILL_FAILING)),
            "flaky": str(comparison.count(C.FLAKY)),
            "total": str(len(head.tests)),
            "results-json": str(results_file) if results_file is not None else "",
            "junit-xml": str(junit) if junit is not None and junit.is_file() else "",
            "conclusion": conclusion,
            "compared": "true" if compared else "false",
            "base-sha": (base.sha or "") if comparison.base is not None else "",
        }
        try:
            workflow_commands.set_outputs(values, environ=self.environ)
        except OSError as exc:
            self.log.warn(f"cannot write the step outputs: {exc}")

    def write_pr_file(self, results_file: Path | None) -> None:
        """For a later workflow_run publisher: which pull request these results belong to."""
        ctx = self.context
        if ctx.pr_number is None:
            return
        folder = results_file.parent if results_file is not None else Path()
        data = {
            "number": ctx.pr_number,
            "head_sha": ctx.head_sha,
            "base_ref": ctx.base_ref,
            "repository": ctx.repository,
        }
        try:
            write_atomic(folder / artifacts.PR_FILE, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            self.log.warn(f"cannot write {folder / artifacts.PR_FILE}: {exc}")


def _head_and_base(pull: Any) -> tuple[str, str]:
    return str(pull.head.sha), str(pull.base.ref)


def publish(settings: Settings, results: Path | None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    ctx = from_environment(env)
    token = next((env[v] for v in TOKEN_VARIABLES if env.get(v)), None)
    log = Log(token, in_actions=env.get("GITHUB_ACTIONS") == "true")
    what = f"pull request #{ctx.pr_number}" if ctx.pr_number else f"{ctx.event_name} on {ctx.head_ref or '?'}"
    log.info(f"{ctx.repository} {what}, commit {ctx.head_sha[:10]}" + (" (from a fork)" if ctx.fork else ""))
    api = Api(ctx, token) if token else None
    if api is None:
        log.warn(
            "no token (GITHUB_TOKEN): no base results, check run or comment; "
            "the job summary and log annotations only"
        )
    try:
        head, results_file, ctx = head_results(settings, ctx, api, log, results)
        return Publisher(settings, ctx, api, log, env).run(head, results_file)
    finally:
        if api is not None:
            api.close()
