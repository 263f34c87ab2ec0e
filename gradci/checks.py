"""The five checks of PyTorch's ``test/test_ops_gradients.py`` (class ``TestBwdGradients``).

A light registry (no torch import): names users type, upstream test methods, and which upstream
databases each check runs over in the reference suite. The check bodies live in ``suite.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

UPSTREAM_DBS = ("op_db", "hop_db", "custom_op_db")
USER_DB = "user"
DTYPE_NAMES = ("float64", "complex128")  # gradcheck needs double precision


@dataclass(frozen=True)
class Check:
    name: str  # what users type: --checks grad,gradgrad
    method: str  # the upstream test method
    upstream_dbs: frozenset[str]  # the databases the reference suite runs it over
    description: str

    def applies_to(self, db: str) -> bool:
        """A project's own ops run through every check, as custom_op_db's do."""
        return db == USER_DB or db in self.upstream_dbs


_ALL = frozenset(UPSTREAM_DBS)
CHECKS: tuple[Check, ...] = (
    Check("grad", "test_fn_grad", _ALL, "gradcheck of the function variant"),
    Check(
        "inplace-grad",
        "test_inplace_grad",
        frozenset({"op_db", "custom_op_db"}),
        "gradcheck of the in-place variant, or: in-place autograd must raise when unsupported",
    ),
    Check("gradgrad", "test_fn_gradgrad", _ALL, "gradgradcheck of the function variant"),
    Check(
        "fail-gradgrad",
        "test_fn_fail_gradgrad",
        frozenset({"op_db", "custom_op_db"}),
        "for supports_gradgrad=False: double backward must raise 'derivative ... not implemented'",
    ),
    Check(
        "inplace-gradgrad",
        "test_inplace_gradgrad",
        frozenset({"op_db"}),
        "gradgradcheck of the in-place variant",
    ),
)
CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
BY_NAME: Mapping[str, Check] = {c.name: c for c in CHECKS}
BY_METHOD: Mapping[str, Check] = {c.method: c for c in CHECKS}
