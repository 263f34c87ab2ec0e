"""Each spec op tried once at load, in a forked child so that a crashing kernel cannot take gradci
down: its samples built and the op run forward, to reject a dtype the op cannot take and a sample
without a tensor that requires grad before any test runs."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from gradci.checks import DTYPE_NAMES
from gradci.errors import SpecError

from .model import OpSpec, Spec

_PROBE_TIMEOUT = 60.0


def probe_ops(spec: Spec, built: Sequence[tuple[OpSpec, Any]]) -> SpecError | None:
    """Run ``_probe`` in a child process: a kernel that crashes or hangs there costs nothing.

    A child that dies or times out is not an error here: the checks will meet the same op and
    report it as those tests' failure, with the crash isolation of the runner.
    """
    if not hasattr(os, "fork"):
        found = _probe(spec, built)
    else:
        try:
            found = json.loads(in_child(lambda out: json.dump(_probe(spec, built), out)) or b"null")
        except ValueError:
            return None
    return SpecError(found[0], hint=found[1]) if found else None


def in_child(report: Callable[[IO[str]], None], timeout: float = _PROBE_TIMEOUT) -> bytes:
    """What ``report`` wrote before it returned, crashed or ran out of ``timeout``, run in a forked
    child (its stdout and stderr silenced) that leaves without running the parent's cleanup."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            with os.fdopen(write_end, "w") as out:
                report(out)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([pipe], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    return b"".join(chunks)


def _probe(spec: Spec, built: Sequence[tuple[OpSpec, Any]]) -> tuple[str, str | None] | None:
    """The first problem: (message, hint), or None. Runs the project's code: call it in a child."""
    import torch

    for op, info in built:
        samples: dict[str, Any] = {}
        for dtype_name in DTYPE_NAMES:
            dtype = getattr(torch, dtype_name)
            try:
                samples[dtype_name] = list(info.sample_inputs("cpu", dtype, requires_grad=True))
            except Exception as exc:
                if dtype_name not in op.dtypes:
                    continue  # only a reference for the dtypes it is checked in
                return (
                    f"{spec.path}:{op.line_of('samples')}: {op.key}.samples: {op.samples!r} raised "
                    f"{type(exc).__name__} in {dtype_name}: {first_line(exc)}",
                    None,
                )
            if dtype_name not in op.dtypes:
                continue
            if not samples[dtype_name]:
                return (
                    f"{spec.path}:{op.line_of('samples')}: {op.key}.samples: {op.samples!r} yields no sample",
                    None,
                )
            for i, sample in enumerate(samples[dtype_name]):
                if not _grad_tensors(sample):
                    return (
                        f"{spec.path}:{op.line_of('samples')}: {op.key}.samples: sample {i} of "
                        f"{op.samples!r} creates no tensor that requires grad in {dtype_name}",
                        "gradcheck needs at least one floating-point or complex tensor with requires_grad",
                    )
        # A dtype the op cannot take: the forward raises in it but runs in the other one.
        errors: dict[str, BaseException | None] = {}
        for dtype_name, found in samples.items():
            if found:
                errors[dtype_name] = _forward_error(info, found[0])
        runs = [d for d, e in errors.items() if e is None]
        for dtype_name in op.dtypes:
            error = errors.get(dtype_name)
            if error is not None and runs:
                return (
                    f"{spec.path}:{op.line_of('dtypes')}: {op.key}.dtypes: {op.full_name} cannot take "
                    f"{dtype_name}: {type(error).__name__}: {first_line(error)}",
                    f"it runs in {', '.join(runs)}; leave {dtype_name} out of its dtypes",
                )
    return None


def _forward_error(info: Any, sample: Any) -> BaseException | None:
    import torch

    try:
        with torch.no_grad():
            info.op(sample.input, *sample.args, **sample.kwargs)
    except Exception as exc:
        return exc
    return None


def _grad_tensors(sample: Any) -> bool:
    import torch

    def visit(value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            return bool(value.requires_grad)
        if isinstance(value, list | tuple):
            return any(visit(v) for v in value)
        return False

    return (
        visit(sample.input)
        or any(visit(a) for a in sample.args)
        or any(visit(v) for v in sample.kwargs.values())
    )


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
