"""Every error gradci reports to a user, each with its exit code.

The CLI turns a ``GradciError`` into one line on stderr (``gradci: error: ...``) and exits with
its ``exit_code``; nothing else in gradci prints a traceback for bad input.

Exit codes (documented in docs/reliability.md#exit-codes):

==  =====================================================================
0   success: every test passed, skipped or failed as expected
1   tests failed (``run``), or the comparison found what ``--fail-on`` fails on
2   usage or configuration error: bad flag, config, spec, unknown op, no such device
3   a results file is missing, malformed or incompatible (e.g. the baseline)
4   the GitHub API refused or failed (results files are still written)
5   the container engine is missing or failed
6   an output file (results JSON, JUnit XML, report) cannot be written; the others are written
7   the test workers could not start (gave up after --max-worker-restart replacements); the
    finished tests' results are written
70  internal error: a bug in gradci (set GRADCI_DEBUG=1 for the traceback)
130 interrupted (Ctrl-C or SIGTERM); results computed so far are written
141 the reader of gradci's output went away (a closed pipe); 0 for ``list``, ``ops``, ``samples``
    and ``config``
==  =====================================================================
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_TESTS_FAILED = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


class GradciError(Exception):
    """An error caused by the user's input or environment, reported as one line."""

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # lines shown under the one-line error (a worker's last output)

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class UsageError(GradciError):
    """A bad command line."""


class ConfigError(GradciError):
    """A bad value in a config file, a GRADCI_* variable or a flag."""


class SpecError(ConfigError):
    """A custom-op spec file that does not parse or does not validate."""


class SelectionError(GradciError):
    """An op pattern that selects nothing, an unknown test id, an unloadable op module."""


class DeviceError(GradciError):
    """The requested device is not available in this torch build or machine."""


class ResultsFileError(GradciError):
    """A results JSON that is missing, truncated, of another schema or otherwise unusable."""

    exit_code: ClassVar[int] = 3


class GitHubError(GradciError):
    """The GitHub API refused a request or could not be reached."""

    exit_code: ClassVar[int] = 4

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status  # the HTTP status, None for a network failure


class ContainerError(GradciError):
    """The container engine is missing or a container run failed to start."""

    exit_code: ClassVar[int] = 5


class OutputError(GradciError):
    """An output file that cannot be written: a path under a regular file, read-only, disk full."""

    exit_code: ClassVar[int] = 6


class WorkerStartError(GradciError):
    """Test workers keep dying before they are ready (a crash in setup, not in a test)."""

    exit_code: ClassVar[int] = 7
