"""What a step tells the GitHub Actions runner without the API: workflow commands, outputs, summary.

These work with any token, or none, so they are also the fallback where the token cannot write
checks or comments (fork pull requests, Dependabot).

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
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ANNOTATIONS_PER_STEP = 10  # per kind (error, warning, notice); GitHub drops the rest
STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes per step


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
