"""``TestBwdGradients``, ``TestFwdGradients`` and ``TestOpCheck``: the checks as torch test methods,
per device.

Each check is a method of a ``TestGradients`` subclass named as upstream's (``TestBwdGradients`` for
the backward suite, ``TestFwdGradients`` for forward-mode AD), parametrized with torch's own ``ops``
decorator and instantiated by ``instantiate_device_type_tests``. That is what gives test-for-test
parity with the upstream suites: the same test names, the same OpInfo ``DecorateInfo`` skips and
xfails, the same dtype rules, gradcheck flags and sample seeds. Sample inputs are seeded from the
test function's ``__qualname__`` (``TestBwdGradients.test_fn_grad``), so the qualnames here must
equal upstream's.

``TestOpCheck`` is gradci's own (upstream has no opcheck suite over OpInfos): one method per
``torch.library.opcheck`` utility, built the same way, so skips, xfails, ids and samples work alike.

Importing this module imports torch's testing internals: only planning and workers do.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import re
import unittest
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.autograd.gradcheck import GradcheckError
from torch.testing._internal import common_utils
from torch.testing._internal.common_device_type import (
    OpDTypes,
    instantiate_device_type_tests,
    ops,
    toleranceOverride,
)
from torch.testing._internal.common_utils import (
    TestCase,
    TestGradients,
    skipIfTorchInductor,
    unMarkDynamoStrictTest,
)

from .catalog import GRADGRAD_ERROR, USER_OP_MARK, custom_op_overload
from .checks import BY_METHOD, OPCHECK, Suite

CHECK_DTYPES: tuple[torch.dtype, ...] = (torch.float64, torch.complex128)

# A hook the worker installs to learn which sample input a check is on (and of which op). It
# receives the OpInfo and the iterator its sample_inputs returned, and must yield the same samples.
SampleObserver = Callable[[Any, Iterator[Any]], Iterator[Any]]


def _pass_through(op: Any, samples: Iterator[Any]) -> Iterator[Any]:
    return samples


_observe_samples: SampleObserver = _pass_through


def set_sample_observer(observer: SampleObserver | None) -> None:
    global _observe_samples
    _observe_samples = observer if observer is not None else _pass_through


class _ObservedOp:
    """Forwards everything to an OpInfo, but lets the worker observe the samples it hands out.

    The sample iterator itself is torch's (seeding and PYTORCH_OPINFO_SAMPLE_INPUT_INDEX apply as
    upstream); only iteration is watched.
    """

    def __init__(self, op: Any) -> None:
        self._op = op

    def __getattr__(self, name: str) -> Any:
        return getattr(self._op, name)

    def sample_inputs(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return _observe_samples(self._op, self._op.sample_inputs(*args, **kwargs))


# The bodies are the upstream checks, stated in gradci's words. ``op`` is wrapped only for
# observation; every decision (skip, xfail, gradcheck flags) is made by the real OpInfo and by
# torch's TestGradients helpers.


def _test_fn_grad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    if dtype not in op.supported_backward_dtypes(torch.device(device).type):
        self.skipTest("Skipped! Dtype is not in supported backward dtypes!")
    self._grad_test_helper(device, dtype, _ObservedOp(op), op.get_op())


def _test_inplace_grad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    self._skip_helper(op, device, dtype)
    if not op.inplace_variant:
        self.skipTest("Op has no inplace variant!")
    inplace = self._get_safe_inplace(op.get_inplace())
    if op.supports_inplace_autograd:
        self._grad_test_helper(device, dtype, _ObservedOp(op), inplace)
        return
    # The op claims in-place autograd is unsupported: each sample must raise.
    for sample in _ObservedOp(op).sample_inputs(device, dtype, requires_grad=True):
        if sample.broadcasts_input:
            continue
        with self.assertRaises(Exception):  # noqa: B017 - upstream accepts any exception here
            inplace(sample).sum().backward()


def _test_fn_gradgrad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    self._skip_helper(op, device, dtype)
    if not op.supports_gradgrad:
        self.skipTest("Op claims it doesn't support gradgrad. This is not verified.")
    self._check_helper(device, dtype, _ObservedOp(op), op.get_op(), "bwgrad_bwgrad")


_NO_GRADGRAD = r"derivative for .* is not implemented"


def _unsupported_gradgrad(op: Any) -> str:
    """What double backward must raise: aten's words, or a project's op's own (spec: gradgrad_error)."""
    own = getattr(op, GRADGRAD_ERROR, None) if getattr(op, USER_OP_MARK, False) else None
    return own if isinstance(own, str) else _NO_GRADGRAD


def _test_fn_fail_gradgrad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    self._skip_helper(op, device, dtype)
    if op.supports_gradgrad:
        self.skipTest("Skipped! Operation does support gradgrad")
    with self.assertRaisesRegex(RuntimeError, _unsupported_gradgrad(op)):
        self._check_helper(device, dtype, _ObservedOp(op), op.get_op(), "bwgrad_bwgrad")


def _test_inplace_gradgrad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    self._skip_helper(op, device, dtype)
    if not op.inplace_variant or not op.supports_inplace_autograd:
        self.skipTest("Skipped! Operation does not support inplace autograd.")
    inplace = self._get_safe_inplace(op.get_inplace())
    self._check_helper(device, dtype, _ObservedOp(op), inplace, "bwgrad_bwgrad")


# Forward-mode AD (TestFwdGradients). Where the op says it is unsupported, upstream checks that
# using it raises, with aten's message. A project's op is mostly a Python autograd.Function or a
# C++ torch::autograd::Function, whose messages say the same in other words (the C++ one as a
# RuntimeError): gradci accepts those for a project's op, and only aten's for upstream ops (parity).
# A torch.library custom op's autograd raises nothing: its tangents are zeros.
_NO_FORWARD_AD = r"Trying to use forward AD with .* that does not support it"
_NO_JVP = r"You must implement the jvp function for custom autograd\.Function to use it with forward mode AD"
_NO_CPP_JVP = r"jvp is not implemented for the c\+\+ API of custom Function"  # a RuntimeError


def _unsupported_forward_ad(op: Any) -> str:
    return f"{_NO_FORWARD_AD}|{_NO_JVP}" if getattr(op, USER_OP_MARK, False) else _NO_FORWARD_AD


def _raises_unsupported(self: Any, op: Any, flag: str, what: str, check: Callable[[], None]) -> None:
    """The op declares ``flag`` False: using forward AD on it must raise NotImplementedError."""
    hint = (
        f"the op declares {flag}=False, yet {what} ran without raising: declare it True if the op supports it"
    )
    try:
        with self.assertRaisesRegex(NotImplementedError, _unsupported_forward_ad(op), msg=hint):
            check()
    except RuntimeError as exc:
        if not getattr(op, USER_OP_MARK, False):
            raise  # upstream's ops fail as upstream's test does
        if not isinstance(exc, GradcheckError):
            if re.search(_NO_CPP_JVP, str(exc)):
                return  # refused, in the words of a C++ torch::autograd::Function
            raise
        # Not refused, and wrong: most often torch's zero tangents through an autograd kernel with
        # no forward formula (a torch.library custom op's), which "mismatch" alone does not explain.
        raise AssertionError(
            f"forward AD ran though the op declares {flag}: false (expected NotImplementedError "
            "'Trying to use forward AD with ... that does not support it'), and its tangents "
            "disagree with finite differences: torch gives zero tangents, not an error, through an "
            "autograd kernel without a forward formula (a torch.library custom op's); if the op has "
            "none, skip or xfail this check for it\n"
            f"{exc}"
        ) from exc


def _test_fn_fwgrad_bwgrad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    self._skip_helper(op, device, dtype)
    if op.supports_fwgrad_bwgrad:
        self._check_helper(device, dtype, _ObservedOp(op), op.get_op(), "fwgrad_bwgrad")
        return
    _raises_unsupported(
        self,
        op,
        "supports_fwgrad_bwgrad",
        "forward-over-reverse gradgrad",
        lambda: self._check_helper(device, dtype, _ObservedOp(op), op.get_op(), "fwgrad_bwgrad"),
    )


def _forward_grad_helper(
    self: Any, device: str, dtype: torch.dtype, op: Any, variant: Any, *, inplace: bool
) -> None:
    # each variant has its own flag for the vmap'd forward-grad check
    batched = bool(op.check_inplace_batched_forward_grad if inplace else op.check_batched_forward_grad)

    def check() -> None:
        self._grad_test_helper(
            device,
            dtype,
            _ObservedOp(op),
            variant,
            check_forward_ad=True,
            check_backward_ad=False,
            check_batched_grad=False,
            check_batched_forward_grad=batched,
        )

    if op.supports_forward_ad:
        check()
        return
    _raises_unsupported(self, op, "supports_forward_ad", "forward-mode AD", check)


def _test_forward_mode_ad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    self._skip_helper(op, device, dtype)
    _forward_grad_helper(self, device, dtype, op, op.get_op(), inplace=False)


def _test_inplace_forward_mode_ad(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
    self._skip_helper(op, device, dtype)
    if not op.inplace_variant or not op.supports_inplace_autograd:
        self.skipTest("Skipped! Operation does not support inplace autograd.")
    _forward_grad_helper(self, device, dtype, op, self._get_safe_inplace(op.get_inplace()), inplace=True)


def _opcheck(utility: str) -> Callable[..., None]:
    """A check that runs one ``torch.library.opcheck`` utility on each sample of a custom op."""

    def body(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
        overload = custom_op_overload(op)
        if overload is None:  # the plan never asks for it; a hand-run test might
            self.skipTest("Skipped! opcheck checks torch.library custom ops only")
        # requires_grad as in the gradient checks: opcheck then checks the autograd registration and
        # the backward under AOTAutograd too. Its default tolerances (assert_close's) apply.
        for sample in _ObservedOp(op).sample_inputs(device, dtype, requires_grad=True):
            found = torch.library.opcheck(
                overload,
                (sample.input, *sample.args),
                sample.kwargs,
                test_utils=(utility,),
                raise_exception=False,
            )
            error = found[utility]
            # opcheck's own raise wraps the error in "opcheck(op, ...): ... failed with ..."; the
            # utility's error itself is the better headline (the test id names the utility).
            if isinstance(error, BaseException):
                raise error

    return body


_BODIES: Mapping[str, Callable[..., None]] = {
    "test_fn_grad": _test_fn_grad,
    "test_inplace_grad": _test_inplace_grad,
    "test_fn_gradgrad": _test_fn_gradgrad,
    "test_fn_fail_gradgrad": _test_fn_fail_gradgrad,
    "test_inplace_gradgrad": _test_inplace_gradgrad,
    "test_fn_fwgrad_bwgrad": _test_fn_fwgrad_bwgrad,
    "test_forward_mode_AD": _test_forward_mode_ad,
    "test_inplace_forward_mode_AD": _test_inplace_forward_mode_ad,
    **{c.method: _opcheck(c.opcheck_util) for c in BY_METHOD.values() if c.opcheck_util is not None},
}
# The base class of each suite's generic class: upstream's for the gradient suites.
_BASES: Mapping[Suite, type[unittest.TestCase]] = {OPCHECK: TestCase}


def _upstream_decorators(method: str) -> tuple[Callable[[Any], Any], ...]:
    """The decorators upstream puts on a test below ``ops`` (applied first, innermost last)."""
    if method == "test_forward_mode_AD":
        reason = (
            "Different precision of openblas functions: https://github.com/OpenMathLib/OpenBLAS/issues/4194"
        )
        return (unittest.skipIf(platform.machine() == "s390x", reason=reason),)
    if method == "test_inplace_forward_mode_AD":
        return (skipIfTorchInductor("to be fixed"),)
    return ()


XFAIL_REASON = "gradci_xfail_reason"


def expected_failure(reason: str) -> Callable[[Any], Any]:
    """``unittest.expectedFailure`` that remembers why (a spec's ``xfail``); the worker reports it."""

    def decorate(fn: Any) -> Any:
        fn = unittest.expectedFailure(fn)
        setattr(fn, XFAIL_REASON, reason)  # torch's wrappers copy the function's __dict__ onwards
        return fn

    return decorate


def gradcheck_tolerance(op: Any, device: str, dtype: torch.dtype, method: str) -> tuple[float, float] | None:
    """(atol, rtol) of a project's op from an active ``toleranceOverride`` DecorateInfo, if any.

    Upstream's TestGradients gives gradcheck no tolerances, so an OpInfo's toleranceOverride has no
    effect there; for a project's ops (never upstream's, for parity) gradci passes it to gradcheck.
    """
    if not getattr(op, USER_OP_MARK, False):
        return None
    return tolerance_override(op, device, dtype, method)


def tolerance_override(op: Any, device: str, dtype: torch.dtype, method: str) -> tuple[float, float] | None:
    """(atol, rtol) of an active ``toleranceOverride`` DecorateInfo of any op (``gradci samples``
    says where upstream ignores one)."""
    device_type = torch.device(device).type
    params = {"op": op, "dtype": dtype, "device": device}
    generic_class = BY_METHOD[method].suite.generic_class
    for decorator in op.get_decorators(generic_class, method, device_type, dtype, params):
        if isinstance(decorator, toleranceOverride) and dtype in decorator.d:
            found = decorator.d[dtype]
            return float(found.atol), float(found.rtol)
    return None


@contextlib.contextmanager
def _gradcheck_tolerance(tolerance: tuple[float, float] | None) -> Iterator[None]:
    if tolerance is None:
        yield
        return
    # TestGradients._check_helper calls these module functions with no atol/rtol of its own.
    atol, rtol = tolerance
    saved = common_utils.gradcheck, common_utils.gradgradcheck
    common_utils.gradcheck = functools.partial(saved[0], atol=atol, rtol=rtol)
    common_utils.gradgradcheck = functools.partial(saved[1], atol=atol, rtol=rtol)
    try:
        yield
    finally:
        common_utils.gradcheck, common_utils.gradgradcheck = saved


def _fresh_method(method: str) -> Callable[..., None]:
    """A new function object per build: ``ops`` stores its parametrization on the function."""
    body = _BODIES[method]

    def test(self: Any, device: str, dtype: torch.dtype, op: Any) -> None:
        with _gradcheck_tolerance(gradcheck_tolerance(op, device, dtype, method)):
            body(self, device, dtype, op)

    test.__name__ = method
    # the sample seed is derived from this: TestBwdGradients.test_fn_grad
    test.__qualname__ = f"{BY_METHOD[method].suite.generic_class}.{method}"
    test.__doc__ = BY_METHOD[method].description
    decorated: Callable[..., None] = test
    for decorator in _upstream_decorators(method):
        decorated = decorator(decorated)
    return decorated


TestClasses = Mapping[str, type[unittest.TestCase]]  # test method -> its device class


def build_test_classes(device_type: str, ops_by_method: Mapping[str, Sequence[Any]]) -> TestClasses:
    """The device-specific test classes (``TestBwdGradientsCPU``, ``TestFwdGradientsCPU``,
    ``TestOpCheckCPU``) over the given ops per check, one per suite that has tests; keyed by test
    method."""
    gradcheck_ops = functools.partial(ops, dtypes=OpDTypes.supported, allowed_dtypes=list(CHECK_DTYPES))
    namespaces: dict[Suite, dict[str, Any]] = {}
    for method, op_list in ops_by_method.items():
        if op_list:  # torch refuses an empty op list
            suite = BY_METHOD[method].suite
            namespace = namespaces.setdefault(
                suite, {"__module__": __name__, "__qualname__": suite.generic_class}
            )
            namespace[method] = gradcheck_ops(list(op_list))(_fresh_method(method))
    classes: dict[str, type[unittest.TestCase]] = {}
    for suite, namespace in namespaces.items():
        base = _BASES.get(suite, TestGradients)
        generic = unMarkDynamoStrictTest(type(suite.generic_class, (base,), namespace))
        scope: dict[str, Any] = {suite.generic_class: generic}
        instantiate_device_type_tests(generic, scope, only_for=device_type)
        name = suite.class_name(device_type)
        if name not in scope:
            # torch generates no class for a device type it cannot use here (no CUDA, say).
            raise LookupError(f"torch instantiated no {name} on this machine")
        classes.update(dict.fromkeys((m for m in namespace if m.startswith("test")), scope[name]))
    return classes


def class_for(classes: TestClasses, test_id: str) -> type[unittest.TestCase] | None:
    """The class that holds test ``test_id`` (``test_fn_grad_add_cpu_float64``), if any."""
    for method in sorted(classes, key=len, reverse=True):  # test_fn_gradgrad before test_fn_grad
        if test_id.startswith(method + "_"):
            return classes[method]
    return None
