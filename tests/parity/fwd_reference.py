"""gradci's own oracle for the forward-mode AD suite: the upstream class ``TestFwdGradients`` of
PyTorch's ``test/test_ops_fwd_gradients.py``, written here so that CI can run parity without the
upstream file (which never enters this repository). Run by pytest like the upstream file
(``tests/parity/harness.py``); set ``GRADCI_REFERENCE_FWD`` to the upstream file to use that.

Checked against the upstream file by hand (pytorch/pytorch main, December 2026): the same class
name, the same three test methods with the same qualnames (sample seeds come from them), the same
``ops`` parametrization (``op_db``, ``OpDTypes.supported``, float64 and complex128), the same
TestGradients helpers and arguments, the same skip messages, assertion regex and decorators.
Differences, on purpose: it does not set one intra-op thread on macOS (upstream's workaround for a
flaky macOS thread pool; the harness runs pytest with OMP_NUM_THREADS=1 anyway), it has no
``__main__`` block, and its code and assertion hints are its own (the skip reasons and the
regex, which decide outcomes, are upstream's).
"""

import platform
from functools import partial
from unittest import skipIf

import torch
from torch.testing._internal.common_device_type import (
    OpDTypes,
    instantiate_device_type_tests,
    ops,
)
from torch.testing._internal.common_methods_invocations import op_db
from torch.testing._internal.common_utils import (
    TestGradients,
    skipIfTorchInductor,
    unMarkDynamoStrictTest,
)

double_precision_ops = partial(ops, dtypes=OpDTypes.supported, allowed_dtypes=[torch.double, torch.cdouble])
UNSUPPORTED = r"Trying to use forward AD with .* that does not support it"


@unMarkDynamoStrictTest
class TestFwdGradients(TestGradients):
    @double_precision_ops(op_db)
    def test_fn_fwgrad_bwgrad(self, device, dtype, op):
        self._skip_helper(op, device, dtype)
        run = lambda: self._check_helper(device, dtype, op, op.get_op(), "fwgrad_bwgrad")  # noqa: E731
        self._supported_or_raises(op.supports_fwgrad_bwgrad, run, "supports_fwgrad_bwgrad")

    def _supported_or_raises(self, supported, run, flag):
        """A supported op's check must pass; an unsupported one's must raise aten's error."""
        if supported:
            run()
        else:
            with self.assertRaisesRegex(
                NotImplementedError, UNSUPPORTED, msg=f"{flag}=False but nothing raised"
            ):
                run()

    def _forward_ad(self, device, dtype, op, variant, inplace):
        flags = {"check_forward_ad": True, "check_backward_ad": False, "check_batched_grad": False}
        flags["check_batched_forward_grad"] = bool(
            op.check_inplace_batched_forward_grad if inplace else op.check_batched_forward_grad
        )
        run = lambda: self._grad_test_helper(device, dtype, op, variant, **flags)  # noqa: E731
        self._supported_or_raises(op.supports_forward_ad, run, "supports_forward_ad")

    @double_precision_ops(op_db)
    @skipIf(
        platform.machine() == "s390x",
        reason="Different precision of openblas functions: https://github.com/OpenMathLib/OpenBLAS/issues/4194",
    )
    def test_forward_mode_AD(self, device, dtype, op):
        self._skip_helper(op, device, dtype)
        self._forward_ad(device, dtype, op, op.get_op(), inplace=False)

    @double_precision_ops(op_db)
    @skipIfTorchInductor("to be fixed")
    def test_inplace_forward_mode_AD(self, device, dtype, op):
        self._skip_helper(op, device, dtype)
        if not op.inplace_variant or not op.supports_inplace_autograd:
            self.skipTest("Skipped! Operation does not support inplace autograd.")
        self._forward_ad(device, dtype, op, self._get_safe_inplace(op.get_inplace()), inplace=True)


instantiate_device_type_tests(TestFwdGradients, globals())
