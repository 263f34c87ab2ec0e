"""The engine's commands: ``run``, ``list``, ``ops`` and ``repro``. ``cli.py`` parses, these act."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

from . import __version__
from .console import Console, print_summary
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TESTS_FAILED, SelectionError
from .options import Settings
from .results import Results


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A cancelled CI job sends SIGTERM: end like Ctrl-C, writing what finished."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_outputs(results: Results, settings: Settings, console: Console) -> list[str]:
    """The results JSON and JUnit XML; each is written even if the other cannot be."""
    from . import junit

    written: list[str] = []
    for path, write in ((settings.json, results.save), (settings.junit, lambda p: junit.write(results, p))):
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            console.warning(f"cannot write {path}: {exc}")
        else:
            written.append(str(path))
    return written


def run(settings: Settings, argv: Sequence[str]) -> int:
    from .session import Session

    console = Console(settings.progress)
    session = Session.prepare(settings, argv)
    tests = session.plan.tests
    workers, threads = session.workers_and_threads()
    ops = len({t.op for t in tests})
    console.info(
        f"gradci {__version__}: {len(tests)} tests over {ops} ops on {session.device}, "
        f"{workers} workers x {threads} threads" + (f", shard {settings.shard}" if settings.shard else "")
    )
    with _sigterm_as_interrupt():
        progress = console.progress(len(tests))
        try:
            with console.group(f"gradci: running {len(tests)} tests"):
                results, error = session.execute(progress.advance)
        finally:
            progress.close()
    written = write_outputs(results, settings, console)
    print_summary(results)
    if written:
        console.info("results: " + ", ".join(written))
    if error is not None:
        raise error
    if results.run.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_TESTS_FAILED if results.failing else EXIT_OK


def list_tests(settings: Settings) -> int:
    from .session import make_plan, resolve_device

    device = settings.device if settings.device != "auto" else resolve_device("auto")
    for test_id in make_plan(settings, device).ids:
        print(test_id)
    return EXIT_OK


def list_ops(settings: Settings) -> int:
    from .catalog import select
    from .session import load_entries

    for entry in select(load_entries(settings), settings.ops, settings.exclude):
        where = f"  {entry.location}" if entry.location else ""
        print(f"{entry.full_name}\t{entry.db}{where}")
    return EXIT_OK


def repro(settings: Settings, test_id: str, sample: int | None) -> int:
    """Re-run one test (optionally one sample) in this process, showing everything."""
    from .plan import TestId

    parsed = TestId.parse(test_id)
    if sample is not None:
        # Read by torch's testing internals at import: set it before they are imported.
        os.environ["PYTORCH_OPINFO_SAMPLE_INPUT_INDEX"] = str(sample)
    from .catalog import select
    from .plan import build_plan
    from .session import load_entries, resolve_device
    from .suite import build_test_class
    from .worker import instrument, run_one

    resolve_device(parsed.device)
    entries = [e for e in load_entries(settings) if e.formatted_name == parsed.op]
    plan = build_plan(
        select(entries, (), ()), device=parsed.device, checks=(parsed.check,), dtypes=(parsed.dtype,)
    )
    if parsed.name not in plan.ids:
        raise SelectionError(
            f"no test {parsed.name} among the configured ops", hint="'gradci list' prints the known test ids"
        )
    cls = build_test_class(parsed.device, plan.ops_by_method)
    instrument()
    print(
        f"gradci repro: {cls.__name__}.{parsed.name}"
        + (f", sample {sample} only" if sample is not None else ""),
        flush=True,
    )
    result = run_one(cls, parsed.name)
    outcome = result["outcome"]
    print(f"outcome: {outcome.value}" + (f" - {result['message']}" if result["message"] else ""))
    if result.get("sample_index") is not None:
        print(f"sample input {result['sample_index']}: {result.get('sample')}")
    mismatch = result.get("mismatch")
    if mismatch is not None:
        print(f"mismatch: {mismatch}")
    if result.get("traceback"):
        print(result["traceback"], file=sys.stderr)
    return EXIT_TESTS_FAILED if outcome.failing else EXIT_OK
