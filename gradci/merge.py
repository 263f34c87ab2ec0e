"""Join the results of shards (or any runs over disjoint tests) into one results file.

Refused unless told otherwise, because the merged file would mislead: a test id in more than one
file (``allow_overlap``: the worse result counts, as in ``compare``), and results from different
torch builds or devices (``allow_mixed``: the run records every version seen). Lesser differences
(another gradci, another commit, another selection, missing or interrupted shards) are warnings.

The merged run starts when the first part started and ends when the last ended; its ``duration``
is the longest part's, the wall time of shards that ran side by side. ``run.merged_from`` lists
the parts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .compare import by_id
from .errors import ResultsFileError
from .results import Results, RunInfo, load

_SHOWN = 5  # ids or files named in one message


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _distinct(values: Sequence[str | None]) -> list[str | None]:
    seen: list[str | None] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _environment(run: RunInfo) -> str:
    git = f" ({run.torch_git_version[:10]})" if run.torch_git_version else ""
    return f"torch {run.torch_version}{git} on {run.device}"


def merge(
    parts: Sequence[tuple[str, Results]],
    *,
    allow_overlap: bool = False,
    allow_mixed: bool = False,
    command: Sequence[str] = (),
) -> tuple[Results, list[str]]:
    """The merged results and the warnings about them. ``parts``: (file name, results)."""
    if not parts:
        raise ResultsFileError("nothing to merge")
    warnings: list[str] = []
    runs = [results.run for _, results in parts]

    environments = _distinct([_environment(run) for run in runs])
    if len(environments) > 1:
        message = f"the results come from different environments: {'; '.join(map(str, environments))}"
        if not allow_mixed:
            raise ResultsFileError(message, hint="--allow-mixed merges them anyway")
        warnings.append(message)

    owners: dict[str, list[str]] = {}
    for name, results in parts:
        for test in results.tests:
            owners.setdefault(test.id, []).append(name)
    overlap = sorted(test_id for test_id, names in owners.items() if len(names) > 1)
    if overlap:
        files = _distinct([name for test_id in overlap for name in owners[test_id]])
        message = f"{len(overlap)} test id(s) appear in more than one file ({_listed(overlap)}; in {_listed([str(f) for f in files])})"
        if not allow_overlap:
            raise ResultsFileError(message, hint="--allow-overlap keeps the worse result of each")
        warnings.append(message + "; the worse result of each is kept")

    for label, values in (
        ("gradci versions", [run.gradci_version for run in runs]),
        ("commits", [run.git_sha for run in runs]),
    ):
        seen = _distinct(values)
        if len(seen) > 1:
            warnings.append(f"the results come from different {label}: {', '.join(str(v) for v in seen)}")
    selections = _distinct([repr({k: v for k, v in run.selection.items() if k != "shard"}) for run in runs])
    if len(selections) > 1:
        warnings.append("the results were run with different selections (--ops, --checks, ...)")
    warnings.extend(_shard_warnings(parts))
    interrupted = [name for (name, _), run in zip(parts, runs, strict=True) if run.interrupted]
    if interrupted:
        warnings.append(f"interrupted, so incomplete: {_listed(interrupted)}")

    chosen, _ = by_id(test for _, results in parts for test in results.tests)
    first = runs[0]
    starts = [t for t in (_time(run.started_at) for run in runs) if t is not None]
    ends = [t for t in (_time(run.finished_at) for run in runs) if t is not None]
    durations = [run.duration for run in runs if run.duration is not None]

    def same(values: Sequence[Any]) -> Any:
        return values[0] if len(_distinct(values)) == 1 else None

    run = replace(
        first,
        torch_version=", ".join(str(v) for v in _distinct([r.torch_version for r in runs])),
        torch_git_version=", ".join(str(v) for v in _distinct([r.torch_git_version for r in runs]))
        if any(r.torch_git_version for r in runs)
        else None,
        gradci_version=same([r.gradci_version for r in runs]) or first.gradci_version,
        device_name=same([r.device_name for r in runs]),
        cuda_version=same([r.cuda_version for r in runs]),
        started_at=min(starts).isoformat(timespec="seconds") if starts else first.started_at,
        finished_at=max(ends).isoformat(timespec="seconds") if ends else None,
        duration=max(durations) if durations else None,
        workers=same([r.workers for r in runs]),
        threads_per_worker=same([r.threads_per_worker for r in runs]),
        selection={**first.selection, "shard": None},
        command=list(command),
        git_sha=same([r.git_sha for r in runs]),
        interrupted=bool(interrupted),
        first_result_after=min(
            (r.first_result_after for r in runs if r.first_result_after is not None), default=None
        ),
        worker_peak_rss_mib=max(
            (r.worker_peak_rss_mib for r in runs if r.worker_peak_rss_mib is not None), default=None
        ),
        merged_from=[
            {
                "file": name,
                "tests": len(results.tests),
                "shard": results.run.selection.get("shard"),
                "torch_version": results.run.torch_version,
                "git_sha": results.run.git_sha,
                "started_at": results.run.started_at,
                "duration": results.run.duration,
                "interrupted": results.run.interrupted,
            }
            for name, results in parts
        ],
    )
    return Results(run, sorted(chosen.values(), key=lambda t: t.id)), warnings


def _shard_warnings(parts: Sequence[tuple[str, Results]]) -> list[str]:
    shards = [results.run.selection.get("shard") for _, results in parts]
    if not any(shards):
        return []
    counts = {str(s).split("/")[1] for s in shards if s}
    if len(counts) > 1 or not all(shards):
        return [f"the parts are not shards of one split: {', '.join(str(s or 'all') for s in shards)}"]
    total = int(counts.pop())
    have = {int(str(s).split("/")[0]) for s in shards}
    missing = [f"{k}/{total}" for k in range(1, total + 1) if k not in have]
    return [f"shard(s) {', '.join(missing)} missing: the merged results are partial"] if missing else []


def merge_files(
    paths: Sequence[Path],
    *,
    allow_overlap: bool = False,
    allow_mixed: bool = False,
    command: Sequence[str] = (),
) -> tuple[Results, list[str]]:
    """Load and merge; a missing or unusable file is an error naming it (exit code 3)."""
    parts = [(str(path), load(path)) for path in paths]
    return merge(parts, allow_overlap=allow_overlap, allow_mixed=allow_mixed, command=command)
