"""gradci's own oracle for the forward-mode AD suite: the upstream class ``TestFwdGradients`` of
PyTorch's ``test/test_ops_fwd_gradients.py``, written here so that CI can run parity without the
upstream file (which never enters this repository). Run by pytest like the upstream file
(``tests/parity/harness.py``); set ``GRADCI_REFERENCE_FWD`` to the upstream file to use that.

Checked against the upstream file by hand (pytorch/pytorch main, December 2026): the same class
name, the same three test methods with the same qualnames (sample seeds come from them), the same
``ops`` parametrization (``op_db``, ``OpDTypes.supported``, float64 and complex128), the same
TestGradients helpers and arguments, the same skip messages, assertion regex and decorators.
Differences, on purpose: it does not set one intra-op thread on macOS (upstream's workaround for a
flaky macOS thread pool; the harness runs pytest with OMP_NUM_THREADS=1 anyway), and it has no
``__main__`` block.
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
        if op.supports_fwgrad_bwgrad:
            self._check_helper(device, dtype, op, op.get_op(), "fwgrad_bwgrad")
            return
        msg = (
            "Running forward-over-backward gradgrad for an OP that has does not support it did not "
            "raise any error. If your op supports forward AD, you should set supports_fwgrad_bwgrad=True."
        )
        with self.assertRaisesRegex(NotImplementedError, UNSUPPORTED, msg=msg):
            self._check_helper(device, dtype, op, op.get_op(), "fwgrad_bwgrad")

    def _forward_ad(self, device, dtype, op, variant, inplace):
        batched = (op.check_batched_forward_grad and not inplace) or (
            op.check_inplace_batched_forward_grad and inplace
        )

        def check():
            self._grad_test_helper(
                device,
                dtype,
                op,
                variant,
                check_forward_ad=True,
                check_backward_ad=False,
                check_batched_grad=False,
                check_batched_forward_grad=batched,
            )

        if op.supports_forward_ad:
            check()
            return
        msg = (
            "Running forward AD for an OP that has does not support it did not raise any error. If "
            "your op supports forward AD, you should set supports_forward_ad=True"
        )
        with self.assertRaisesRegex(NotImplementedError, UNSUPPORTED, msg=msg):
            check()

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
