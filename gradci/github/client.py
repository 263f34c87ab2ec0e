"""The GitHub REST API through PyGithub: one client, retries, and errors a person can act on.

Every call goes through ``Api.call``, which turns PyGithub's and requests' exceptions into one
``GitHubError`` (exit code 4) naming what gradci tried, the HTTP status and what to do about it.
The token is never part of a message: ``scrub`` removes it from anything that is shown.

Retries: 5xx, 429 and rate-limited 403 responses are retried (``Retry-After`` is honoured, up to
``MAX_RETRY_AFTER`` seconds), as are connection failures; writes are spaced by
``WRITE_INTERVAL`` seconds, as GitHub asks of clients that create content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from gradci import __version__
from gradci.errors import GitHubError

from .context import Context

T = TypeVar("T")

TIMEOUT = 30  # seconds per request
RETRIES = 3
BACKOFF = 0.5  # seconds, doubled per retry (urllib3)
MAX_RETRY_AFTER = 120.0  # seconds; GitHub asks for at most a minute in practice
WRITE_INTERVAL = 1.0  # seconds between writes (GitHub's advice against secondary rate limits)
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")


def _retry() -> Any:
    from github import GithubRetry

    class Retry(GithubRetry):  # type: ignore[misc]
        def get_retry_after(self, response: Any) -> float | None:
            value = super().get_retry_after(response)
            return None if value is None else min(float(value), MAX_RETRY_AFTER)

    return Retry(
        total=RETRIES,
        backoff_factor=BACKOFF,
        status_forcelist=[*range(500, 600), 429],
        raise_on_status=False,  # hand the last response to PyGithub, which raises with its status
        secondary_rate_wait=60,
        max_rate_limit_wait=MAX_RETRY_AFTER,
    )


class Api:
    """The repository's REST API as this run's token sees it."""

    def __init__(self, context: Context, token: str) -> None:
        from github import Auth, Github

        self.context = context
        self.token = token
        self.github = Github(
            auth=Auth.Token(token),
            base_url=context.api_url,
            timeout=TIMEOUT,
            user_agent=f"gradci/{__version__}",
            retry=_retry(),
            per_page=100,
            seconds_between_requests=None,
            seconds_between_writes=WRITE_INTERVAL or None,
            lazy=True,
        )
        self.repo = self.github.get_repo(context.repository)
        self.unreachable = False  # a call failed for the network after its retries: stop trying

    @property
    def requester(self) -> Any:
        return self.github.requester

    def scrub(self, text: str) -> str:
        return scrub(text, self.token)

    def call(self, what: str, action: Callable[[], T], *, permission: str | None = None) -> T:
        """Run ``action`` (PyGithub calls); failures become one ``GitHubError`` about ``what``."""
        try:
            return action()
        except (GitHubError, StopIteration):
            raise
        except Exception as exc:
            raise self.error(what, exc, permission=permission) from None

    def iterate(self, what: str, items: Any, *, limit: int) -> Iterator[Any]:
        """At most ``limit`` items of a PyGithub ``PaginatedList``, fetching pages as needed."""
        iterator = self.call(what, lambda: iter(items))
        for _ in range(limit):
            try:
                item = self.call(what, lambda: next(iterator))
            except StopIteration:
                return
            yield item

    def error(self, what: str, exc: BaseException, *, permission: str | None = None) -> GitHubError:
        import requests

        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            self.unreachable = True
        return describe(what, exc, token=self.token, api_url=self.context.api_url, permission=permission)

    def close(self) -> None:
        self.github.close()


def scrub(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return text


def _github_message(data: Any) -> str:
    if not isinstance(data, dict):
        return str(data)[:200] if data else ""
    message = str(data.get("message") or "").strip()
    details = [
        str(e.get("message") or e.get("code") or "")
        for e in data.get("errors") or []
        if isinstance(e, dict) and (e.get("message") or e.get("code"))
    ]
    if details:
        message += ": " + "; ".join(details)
    return " ".join(message.split())[:300]


def describe(
    what: str, exc: BaseException, *, token: str | None, api_url: str, permission: str | None = None
) -> GitHubError:
    """One clear error for a failed API call."""
    import requests
    from github import GithubException, RateLimitExceededException

    if isinstance(exc, GithubException):
        status = exc.status
        said = _github_message(exc.data)
        shown = f"{status} {said}".strip()
        if isinstance(exc, RateLimitExceededException) or "rate limit" in said.lower() or status == 429:
            message, hint = (
                f"cannot {what}: GitHub's rate limit held after retries ({shown})",
                "try again later",
            )
        elif status == 401:
            message = f"cannot {what}: GitHub rejected the token ({shown})"
            hint = "the token is missing, expired or meant for another GitHub server (GITHUB_API_URL)"
        elif status == 403:
            message = f"cannot {what}: the token is not allowed to ({shown})"
            hint = (
                f"grant the job 'permissions: {permission}'" if permission else "check the job's permissions"
            ) + "; a fork's pull request only ever gets a read-only token"
        elif status == 404:
            message = f"cannot {what}: not found ({shown})"
            hint = "the repository, pull request or artifact does not exist, or the token cannot see it"
        elif status == 410:
            message, hint = f"cannot {what}: gone ({shown})", "artifacts expire (90 days by default)"
        elif status == 422:
            message, hint = f"cannot {what}: GitHub rejected the request ({shown})", None
        else:
            message, hint = f"cannot {what}: GitHub answered {shown}", "GitHub may be having trouble"
        return GitHubError(scrub(message, token), hint=hint, status=status)
    if isinstance(exc, requests.RequestException | OSError):
        reason = type(exc).__name__
        inner = str(exc)
        if "Max retries exceeded" in inner or "Connection refused" in inner:
            reason += ": connection failed"
        elif isinstance(exc, requests.Timeout):
            reason += f": no answer within {TIMEOUT} s"
        return GitHubError(
            scrub(f"cannot {what}: the GitHub API at {api_url} is unreachable ({reason})", token),
            hint="a network problem, or GITHUB_API_URL is wrong",
        )
    return GitHubError(scrub(f"cannot {what}: {type(exc).__name__}: {exc}", token)[:500])
