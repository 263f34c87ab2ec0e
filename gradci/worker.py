"""What runs inside a worker process: one upstream test at a time, with what a person needs to act.

The worker runs each test through unittest (torch's ``TestCase.run``: setUp, the decorated test,
tearDown) and observes three things on the side: which sample input the check was on, the
settings gradcheck and gradgradcheck received (samples.Recorder), and the numerical and analytical
Jacobians gradcheck found apart. Its stdout and stderr go to a log file
that the parent reads per test, and where a crash leaves its last words.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import inspect
import os
import re
import resource
import signal
import sys
import time
import traceback
import types
import unittest
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .protocol import MAX_TRACEBACK, Channel, Fatal, Finished, ProtocolError, Ready, Run
from .results import Mismatch, Outcome
from .samples import Recorder, install_recorder, set_recorder

if TYPE_CHECKING:
    from .suite import TestClasses

# A CUDA error leaves the process's context unusable: the worker must be replaced after it.
_POISONING = re.compile(
    r"CUDA error|device-side assert|illegal memory access|CUBLAS_STATUS|CUDNN_STATUS|cudaError|AcceleratorError"
)
_MAX_SAMPLE = 1_000


@dataclass
class Observed:
    """What the instrumentation saw during the current test."""

    sample_index: int | None = None
    sample: Any = None
    op: Any = None  # the OpInfo whose samples those are
    mismatch: dict[str, Any] | None = None  # as gradcheck compared (fast mode: projections)
    slow_mismatch: dict[str, Any] | None = None  # fast mode's slow-mode recomputation


_observed = Observed()
# The settings each gradcheck/gradgradcheck call of the current test receives (samples.py).
_settings = Recorder(lambda: _observed.sample_index)


def _observe(op: Any, samples: Iterator[Any]) -> Iterator[Any]:
    """Record the index and value of each sample torch's iterator hands out."""
    _observed.op = op
    hooked = False
    set_tracked = getattr(samples, "_set_tracked_input", None)
    if callable(set_tracked):
        # TrackedInputIter knows the true index (also with PYTORCH_OPINFO_SAMPLE_INPUT_INDEX).
        def record(tracked: Any) -> None:
            _observed.sample_index = tracked.index
            set_tracked(tracked)

        samples._set_tracked_input = record  # type: ignore[attr-defined]
        hooked = True
    for index, sample in enumerate(samples):
        if not hooked:
            _observed.sample_index = index
        _observed.sample = sample
        yield sample


def _tensor_text(t: Any) -> str:
    try:
        return f"{t.item():.6g}" if t.numel() == 1 else str(t.tolist())[:200]
    except Exception:  # a value we cannot format is not worth losing the result over
        return repr(t)[:200]


def _install_mismatch_recorder() -> None:
    """See the Jacobians gradcheck found apart, not only the text it makes of them.

    Wraps three private helpers of ``torch.autograd.gradcheck``: the mismatch message (both modes),
    and, while fast mode recomputes the failing pair in slow mode, the two Jacobian builders, so the
    worst element can be named. On a torch without them, failures still carry gradcheck's message.
    """
    import importlib

    gc: Any = importlib.import_module("torch.autograd.gradcheck")  # the module, not the function
    names = (
        "_get_notallclose_msg",
        "_run_slow_mode_and_get_error",
        "_get_numerical_jacobian",
        "_get_analytical_jacobian",
    )
    if not all(hasattr(gc, name) for name in names) or getattr(gc._get_notallclose_msg, "_gradci", False):
        return
    message, slow_mode = gc._get_notallclose_msg, gc._run_slow_mode_and_get_error
    numerical_jacobian, analytical_jacobian = gc._get_numerical_jacobian, gc._get_analytical_jacobian
    slow: dict[str, Any] = {}  # filled only while fast mode recomputes in slow mode

    def on_mismatch(
        analytical: Any, numerical: Any, output_idx: int, input_idx: int, *args: Any, **kwargs: Any
    ) -> str:
        text = str(message(analytical, numerical, output_idx, input_idx, *args, **kwargs))
        test_imag = bool(kwargs.get("test_imag", args[1] if len(args) > 1 else False))
        try:  # never let instrumentation change a test's outcome
            _observed.mismatch = _summarize(analytical, numerical, output_idx, input_idx, test_imag=test_imag)
            if "analytical" in slow and "numerical" in slow:
                _observed.slow_mismatch = _summarize(
                    slow["analytical"], slow["numerical"], output_idx, input_idx, test_imag=test_imag
                )
        except Exception:
            _observed.mismatch = None
        slow.clear()
        return text

    def on_slow_mode(
        func: Any, inputs: Any, outputs: Any, input_idx: int, output_idx: int, *args: Any, **kwargs: Any
    ) -> Any:
        slow.clear()
        slow["pair"] = (input_idx, output_idx)
        return slow_mode(func, inputs, outputs, input_idx, output_idx, *args, **kwargs)

    def on_numerical(*args: Any, **kwargs: Any) -> Any:
        jacobians = numerical_jacobian(*args, **kwargs)
        if "pair" in slow and "numerical" not in slow and not kwargs.get("is_forward_ad"):
            input_idx, output_idx = slow["pair"]
            slow["numerical"] = jacobians[input_idx][output_idx]
        return jacobians

    def on_analytical(*args: Any, **kwargs: Any) -> Any:
        jacobian = analytical_jacobian(*args, **kwargs)
        if "pair" in slow and "analytical" not in slow:
            slow["analytical"] = jacobian
        return jacobian

    on_mismatch._gradci = True  # type: ignore[attr-defined]
    gc._get_notallclose_msg = on_mismatch
    gc._run_slow_mode_and_get_error = on_slow_mode
    gc._get_numerical_jacobian = on_numerical
    gc._get_analytical_jacobian = on_analytical


def _summarize(
    analytical: Any, numerical: Any, output_idx: int, input_idx: int, *, test_imag: bool
) -> dict[str, Any]:
    import torch

    a = analytical.detach().to("cpu")
    n = numerical.detach().to("cpu", a.dtype) if numerical.dtype != a.dtype else numerical.detach().to("cpu")
    diff = (a - n).abs()
    flat = int(diff.argmax()) if diff.numel() else 0
    at = list(torch.unravel_index(torch.tensor(flat), diff.shape)) if diff.dim() > 0 and diff.numel() else []
    a_at = a.reshape(-1)[flat] if a.numel() else a
    n_at = n.reshape(-1)[flat] if n.numel() else n
    max_abs = float(diff.max()) if diff.numel() else 0.0
    denom = float(n_at.abs()) if n.numel() else 0.0
    return {
        "output": output_idx,
        "input": input_idx,
        "max_abs_error": max_abs,
        "max_rel_error": max_abs / denom if denom > 0 else None,  # undefined where numerical is 0
        "at": [int(i) for i in at],
        "numerical": _tensor_text(n_at),
        "analytical": _tensor_text(a_at),
        "imaginary_part": test_imag,
    }


def input_labels(sample: Any, names: tuple[str, ...] | None = None) -> list[str]:
    """Where each gradcheck input (a tensor that requires grad) sits in the sample, in gradcheck order:
    by parameter name where ``names`` (the op's positional parameters) has one, else by position."""
    import torch

    labels: list[str] = []

    def visit(value: Any, label: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.requires_grad:
                labels.append(label)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            for i, item in enumerate(value):
                visit(item, f"{label}[{i}]")

    def named(position: int, fallback: str) -> str:
        return names[position] if names is not None and position < len(names) else fallback

    visit(sample.input, named(0, "input"))
    for i, arg in enumerate(sample.args):
        visit(arg, named(i + 1, f"args[{i}]"))
    for key, value in sample.kwargs.items():
        visit(value, key if names is not None else f"kwargs[{key!r}]")
    return labels


def parameter_names(op: Any) -> tuple[str, ...] | None:
    """The positional parameter names of a project's op (an OpInfo), from its schema or Python
    signature; None where unknown, and for upstream's ops (their wrappers' names, ``x`` of a lambda,
    say, would mislead)."""
    from .catalog import USER_OP_MARK

    if op is None or not getattr(op, USER_OP_MARK, False):
        return None
    try:
        names = _positional_names(op.op)
    except Exception:  # no signature to read (a builtin, say): positions it is
        return None
    return names or None


def _positional_names(fn: Any) -> tuple[str, ...]:
    import torch

    schema = getattr(fn, "_schema", None) or getattr(getattr(fn, "default", None), "_schema", None)
    if schema is not None:  # a torch.ops overload or packet (a torch.library custom op)
        return tuple(a.name for a in schema.arguments if not a.kwarg_only)
    fn = inspect.unwrap(fn)
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):  # Function.apply
        names = _positional(inspect.signature(owner.forward))
        base = getattr(torch.autograd.function, "_SingleLevelFunction", None)
        # forward takes ctx first unless the Function has a setup_context of its own
        with_ctx = base is None or owner.setup_context is base.setup_context
        return names[1:] if with_ctx else names
    return _positional(inspect.signature(fn))


def _positional(signature: inspect.Signature) -> tuple[str, ...]:
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            break  # *args: the positions after it have no names
        names.append(parameter.name)
    return tuple(names)


def sample_summary(sample: Any) -> str | None:
    if sample is None:
        return None
    try:
        text = sample.summary() if callable(getattr(sample, "summary", None)) else repr(sample)
    except Exception:
        text = repr(sample)
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_SAMPLE else text[:_MAX_SAMPLE] + " ..."


class _Collector(unittest.TestResult):
    """unittest's verdict for one test, mapped to gradci's outcomes (and so to pytest's)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcome = Outcome.PASSED
        self.message = ""
        self.trace: str | None = None
        self.exc: BaseException | None = None

    def _fail(self, outcome: Outcome, test: unittest.TestCase, err: Any) -> None:
        self.outcome = outcome
        self.exc = err[1]
        self.message = _one_line(err[1])
        self.trace = self._exc_info_to_string(err, test)  # type: ignore[attr-defined]

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        self._fail(Outcome.FAILED, test, err)

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        # An exception in a test body is a failure to pytest too; gradci keeps ERROR for lost tests.
        self._fail(Outcome.FAILED, test, err)

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        if err is not None:
            self._fail(Outcome.FAILED, test, err)

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self.outcome, self.message = Outcome.SKIPPED, str(reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        self.outcome, self.message = Outcome.XFAILED, _one_line(err[1])
        # A spec's xfail says why it is expected (suite.expected_failure); upstream's xfails do not.
        reason = getattr(getattr(test, test._testMethodName, None), "gradci_xfail_reason", None)
        if reason:
            self.message = f"expected failure: {reason} ({self.message})"

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        self.outcome, self.message = (
            Outcome.XPASSED,
            "Unexpected success: the test is marked as an expected failure",
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _mismatch(observed: Observed, exc: BaseException | None) -> Mismatch | None:
    """The mismatch to report: in fast mode, the worst element of the slow-mode recomputation."""
    raw = observed.slow_mismatch or observed.mismatch
    if raw is None:
        return None
    message = str(exc or "")
    fast = observed.slow_mismatch is not None or "in fast mode" in message
    labels = (
        input_labels(observed.sample, parameter_names(observed.op)) if observed.sample is not None else []
    )
    index = raw["input"]
    if index < len(labels):
        label: str | None = labels[index]
    elif labels:
        label = f"grad_output[{index - len(labels)}]"  # gradgradcheck's extra inputs
    else:
        label = None
    return Mismatch(
        output=raw["output"],
        input=index,
        input_label=label,
        max_abs_error=raw["max_abs_error"],
        max_rel_error=raw["max_rel_error"],
        at=raw["at"],
        numerical=raw["numerical"],
        analytical=raw["analytical"],
        mode="fast" if fast else "slow",
        slow_mode_max_diff=observed.slow_mismatch["max_abs_error"] if observed.slow_mismatch else None,
        fast_mode_only="might've passed in slow_mode" in message,
        imaginary_part=raw["imaginary_part"],
    )


def run_one(
    cls: type[unittest.TestCase] | None, name: str, *, interrupt_fails: bool = False
) -> dict[str, Any]:
    """Run one test of ``cls`` in this process and describe its outcome.

    ``interrupt_fails``: a ``KeyboardInterrupt`` is the test's failure, not the user's Ctrl-C (in a
    worker, which ignores SIGINT, only a test can raise it); unittest would let it through.
    """
    global _observed
    _observed = Observed()
    _settings.reset()
    collector = _Collector()
    start = time.perf_counter()
    if cls is None or not hasattr(cls, name):
        # The plan and torch's instantiation disagree: say so rather than guess.
        collector.outcome = Outcome.ERROR
        collector.message = f"torch instantiated no test {name} (gradci's plan and torch disagree)"
    else:
        case = cls(name)
        set_recorder(_settings)
        try:
            case.run(collector)
        except KeyboardInterrupt:
            if not interrupt_fails:
                raise
            collector.addError(case, sys.exc_info())
        finally:
            set_recorder(None)
    duration = time.perf_counter() - start
    failed = collector.outcome in (Outcome.FAILED, Outcome.XPASSED)
    observed = _observed
    result: dict[str, Any] = {
        "outcome": collector.outcome,
        "duration": duration,
        "message": collector.message,
        "gradcheck": _settings.to_json(),
    }
    if failed:
        result.update(
            sample_index=observed.sample_index,
            sample=sample_summary(observed.sample),
            mismatch=_mismatch(observed, collector.exc),
            traceback=collector.trace,
            poisoned=bool(_POISONING.search(collector.message + (collector.trace or ""))),
        )
    _observed = Observed()  # drop references to the sample's tensors
    return result


# --- process side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    threads: int
    log_path: Path
    build: Callable[[], TestClasses]  # returns the device test classes, by test method
    key: str  # proves a message on the channel is this worker's (protocol.Channel)
    inherited: tuple[int, ...] = ()  # the parent's ends of channels, which a forked child closes


def _redirect_output(log_path: Path) -> int:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    return fd


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the parent dies, even by SIGKILL (the channel's EOF
    cannot tell: forked siblings hold its other end too)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _exit(code: int) -> NoReturn:
    """Leave now: a thread a test left running must not keep the worker (and its parent) waiting,
    as the interpreter's normal exit would, joining every non-daemon thread."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a test may have closed it
            stream.flush()
    os._exit(code)


def _finished(test_id: str, result: dict[str, Any]) -> Finished:
    mismatch = result.get("mismatch")
    traceback_text = result.get("traceback")
    if traceback_text is not None and len(traceback_text) > MAX_TRACEBACK:
        traceback_text = (
            f"[... {len(traceback_text) - MAX_TRACEBACK:,} characters cut]\n"
            + traceback_text[-MAX_TRACEBACK:]
        )
    return Finished(
        test_id=test_id,
        outcome=result["outcome"].value,
        duration=float(result["duration"]),
        message=str(result.get("message") or ""),
        sample_index=result.get("sample_index"),
        sample=result.get("sample"),
        mismatch=asdict(mismatch) if mismatch is not None else None,
        traceback=traceback_text,
        poisoned=bool(result.get("poisoned")),
        max_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # peak so far
        gradcheck=result.get("gradcheck"),
    )


def worker_main(conn: Connection, config: WorkerConfig) -> None:
    """Serve tests until told to stop: receive a test id, send back its result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    for fd in config.inherited:  # no test of ours can write into another worker's channel
        with contextlib.suppress(OSError):
            os.close(fd)
    channel = Channel(conn.fileno(), config.key)  # ``conn`` keeps the descriptor open
    _redirect_output(config.log_path)
    try:
        import torch

        torch.set_num_threads(config.threads)
        from .suite import class_for

        classes = config.build()
        instrument()
        map_stack_to_modules()
        for cls in dict.fromkeys(classes.values()):  # each class once, in a stable order
            cls.setUpClass()
    except BaseException as exc:  # setup failed: tell the parent why, in one line
        traceback.print_exc()
        try:
            channel.send(Fatal(_one_line(exc), traceback.format_exc()))
        finally:
            _exit(1)
    try:
        channel.send(Ready(os.getpid()))
        while True:
            message = channel.receive()
            if not isinstance(message, Run):
                break  # Stop
            result = run_one(class_for(classes, message.test_id), message.test_id, interrupt_fails=True)
            channel.send(_finished(message.test_id, result))
            if result.get("poisoned"):
                break  # the parent sees us exit and starts a fresh worker
    except EOFError:  # the parent is gone
        _exit(1)
    except (OSError, ProtocolError) as exc:  # a test broke the channel: say so where the parent looks
        print(
            f"gradci worker: the channel to gradci is broken ({exc}): did the test close or write "
            "to a descriptor it does not own?",
            file=sys.stderr,
        )
        _exit(1)
    _exit(0)


def instrument(on_samples: Callable[[Any], None] | None = None) -> None:
    """Watch samples, gradcheck's settings and Jacobian mismatches in this process (a worker, or
    ``gradci repro``). ``on_samples`` sees each sample iterator first (``gradci repro`` counts the
    samples with it)."""
    from . import suite

    if on_samples is None:
        suite.set_sample_observer(_observe)
    else:
        hook = on_samples

        def observe(op: Any, samples: Iterator[Any]) -> Iterator[Any]:
            hook(samples)
            return _observe(op, samples)

        suite.set_sample_observer(observe)
    _install_mismatch_recorder()
    install_recorder()


def map_stack_to_modules() -> None:
    """Tell ``inspect`` which module each frame below this one belongs to.

    torch's ``@ops`` wrapper calls ``inspect.stack()`` in every test. For a frame whose file is no
    module's ``__file__`` (``<frozen runpy>`` under ``python -m gradci``, ``<string>`` in a spawned
    worker), ``inspect.getmodule`` scans all of ``sys.modules`` (thousands, with torch) several
    times per call: 3 to 6 ms per test, more than a skipped test costs otherwise. Such a frame
    runs in its module's namespace, so the mapping is the one a scan would find if it could; and
    ``linecache`` reads no source for a ``<...>`` name, so nothing else inspect reports changes.
    """
    by_file = getattr(inspect, "modulesbyfile", None)
    if not isinstance(by_file, dict):
        return
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        filename = frame.f_code.co_filename
        module = sys.modules.get(name) if isinstance(name, str) else None
        if filename.startswith("<") and module is not None and vars(module) is frame.f_globals:
            # both keys getmodule tries: the name as given, and inspect.getabsfile's form of it
            by_file.setdefault(filename, name)
            by_file.setdefault(os.path.normcase(os.path.abspath(filename)), name)  # noqa: PTH100
        frame = frame.f_back
