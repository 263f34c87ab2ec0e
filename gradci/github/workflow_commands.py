"""What a step tells the GitHub Actions runner without the API: workflow commands, outputs, summary.

The one module that speaks workflow commands: it writes gradci's own (annotations, log groups) and
escapes untrusted text (op names, messages, samples, repro commands) so that it starts none. These
work with any token, or none, so they are also the fallback where the token cannot write checks or
comments (fork pull requests, Dependabot).

* Untrusted text: ``escape_workflow_commands`` (see there for the runner's rules), always, in or out
  of GitHub Actions: gradci run in a container or over ssh in a job has no ``GITHUB_ACTIONS``, yet its
  output lands in the job's log.
* Workflow commands (``::error file=F,line=L,title=T::message``) on stdout. GitHub shows at most
  10 error, 10 warning and 10 notice annotations per step and 50 per job; more are dropped
  silently, so ``error_annotations`` writes at most ``ANNOTATIONS_PER_STEP`` and says how many
  it left out in the last one.
* Step outputs appended to ``$GITHUB_OUTPUT`` in the ``name<<DELIMITER`` form, which is safe for
  any value (a random delimiter that the value does not contain).
* The job summary appended to ``$GITHUB_STEP_SUMMARY``: 1 MiB per step at most.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ANNOTATIONS_PER_STEP = 10  # per kind (error, warning, notice); GitHub drops the rest
STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes per step


# --- untrusted text in the log ---------------------------------------------------------------------
#
# The runner (actions/runner, OutputManager and ActionCommand) reads a step's output a line at a time
# with .NET's StreamReader.ReadLine, which ends a line at \n, \r or \r\n. A line is a command when,
# after TrimStart(), it starts with "::" (v2), or when "##[" occurs anywhere in it (v1, still parsed),
# followed by a command name it knows. Both tests are culture-sensitive .NET string comparisons, done
# by ICU: characters with no collation weight (zero-width spaces and joiners, soft hyphens, most
# control and format characters, many combining marks) are skipped, so ":\u200b:error::x" is a
# command too. The escape therefore splits at every line break and, in each line, breaks "::" at the
# start and "##[" anywhere with a plain space, looking through every character that might weigh
# nothing (all but printable ASCII) rather than a list of them that changes with ICU versions.

# Every line break: the runner's, and the others str.splitlines() and Unicode know.
LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# ":" and ":" at a line's start, with only whitespace or maybe-weightless characters before and between.
_V2_COMMAND = re.compile(r"^([^\n\x21-\x7e]*:)(?=[^\n\t\x20-\x7e]*:)", re.MULTILINE)
# "#", "#" and "[" anywhere, with only maybe-weightless characters between.
_V1_COMMAND = re.compile(r"#[^\n\t\x20-\x7e]*#[^\n\t\x20-\x7e]*\[")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # unprintable: print() would fail on them


def escape_workflow_commands(text: str) -> str:
    """Untrusted text, safe to write to a log: it issues no workflow command, whatever it holds.

    Line breaks become ``\\n``; ``::`` starting a line becomes ``: :``; ``##[`` becomes ``## [``.
    Idempotent, and the identity on text that needs none of it.
    """
    text = _SURROGATE.sub("\N{REPLACEMENT CHARACTER}", LINE_BREAK.sub("\n", text))
    text = _V1_COMMAND.sub(lambda match: match[0][:-1] + " [", text)
    return _V2_COMMAND.sub(r"\1 ", text)


def log_line(text: str) -> str:
    """Untrusted text as one safe line of a log (line breaks become spaces)."""
    return escape_workflow_commands(LINE_BREAK.sub(" ", text))


def start_group(title: str, out: IO[str] | None = None) -> None:
    """A foldable section of the log, until ``end_group``."""
    print(command("group", title), file=out or sys.stdout, flush=True)


def end_group(out: IO[str] | None = None) -> None:
    print("::endgroup::", file=out or sys.stdout, flush=True)


# --- gradci's own workflow commands -------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF are encoded (as @actions/core does)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ``:`` and ``,``, which delimit properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, properties: Mapping[str, str | int | None] | None = None) -> str:
    props = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in (properties or {}).items()
        if value is not None
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


@dataclass(frozen=True)
class LogAnnotation:
    message: str
    title: str | None = None
    file: str | None = None
    line: int | None = None


def error_annotations(
    annotations: Sequence[LogAnnotation], *, more: int = 0, out: IO[str] | None = None
) -> int:
    """Write ``::error`` commands, at most ``ANNOTATIONS_PER_STEP``; returns how many were written.

    ``more`` counts further failures not in ``annotations``; what does not fit is summed up in the
    last annotation, which then points to the job summary.
    """
    out = out or sys.stdout
    left_out = more + max(0, len(annotations) - ANNOTATIONS_PER_STEP)
    shown = list(annotations[: ANNOTATIONS_PER_STEP - 1 if left_out else ANNOTATIONS_PER_STEP])
    lines = [command("error", a.message, {"file": a.file, "line": a.line, "title": a.title}) for a in shown]
    if left_out:
        rest = more + len(annotations) - len(shown)
        lines.append(
            command(
                "error",
                f"{rest} more not shown here (GitHub shows {ANNOTATIONS_PER_STEP} error annotations "
                "per step): see the job summary and the results JSON",
                {"title": f"gradci: {rest} more"},
            )
        )
    for line in lines:
        print(line, file=out)
    out.flush()
    return len(lines)


def notice(message: str, *, title: str | None = None, out: IO[str] | None = None) -> None:
    print(command("notice", message, {"title": title}), file=out or sys.stdout, flush=True)


def _env_file(name: str, environ: Mapping[str, str] | None) -> Path | None:
    value = (environ if environ is not None else os.environ).get(name)
    return Path(value) if value else None


def set_outputs(values: Mapping[str, str], *, environ: Mapping[str, str] | None = None) -> bool:
    """Append step outputs to ``$GITHUB_OUTPUT``; False where there is none (not in Actions)."""
    path = _env_file("GITHUB_OUTPUT", environ)
    if path is None:
        return False
    chunks = []
    for name, value in values.items():
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        while delimiter in value:  # pragma: no cover - 128 random bits
            delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        chunks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(chunks))
    return True


def summary_room(*, environ: Mapping[str, str] | None = None) -> int | None:
    """Bytes still free in this step's summary, or None where there is no summary file."""
    path = _env_file("GITHUB_STEP_SUMMARY", environ)
    if path is None:
        return None
    used = path.stat().st_size if path.exists() else 0
    return max(0, STEP_SUMMARY_LIMIT - used)


def append_summary(markdown: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Append to ``$GITHUB_STEP_SUMMARY``; False where there is none (not in Actions)."""
    path = _env_file("GITHUB_STEP_SUMMARY", environ)
    if path is None:
        return False
    with path.open("a", encoding="utf-8") as handle:
        handle.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return True
