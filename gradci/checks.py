"""The checks of PyTorch's two gradient suites, and gradci's opcheck family, as gradci names them.

* backward: ``test/test_ops_gradients.py``, class ``TestBwdGradients``: five checks, the default.
* forward: ``test/test_ops_fwd_gradients.py``, class ``TestFwdGradients``: forward-mode AD, three
  checks (what ``torch.func.jvp``, ``jacfwd`` and forward-over-reverse Hessians rely on).
* opcheck: gradci's own class ``TestOpCheck``: ``torch.library.opcheck``'s four utilities, one check
  each, for a project's ``torch.library`` custom ops only (upstream has no such suite over its
  databases, so no upstream op is planned; ``plan.py`` asks ``catalog.custom_op_overload``).

A light registry (no torch import): names users type, upstream test methods and classes, and which
upstream databases each check runs over in its reference file. The bodies live in ``suite.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

UPSTREAM_DBS = ("op_db", "hop_db", "custom_op_db")
USER_DB = "user"
DTYPE_NAMES = ("float64", "complex128")  # gradcheck needs double precision


@dataclass(frozen=True)
class Suite:
    name: str  # what users type: --checks forward
    generic_class: str  # the upstream test class, before device instantiation
    upstream_file: str  # where PyTorch keeps it (opcheck: where its utilities live)

    def class_name(self, device: str) -> str:
        """``TestBwdGradientsCPU``: the class instantiate_device_type_tests makes for a device."""
        return f"{self.generic_class}{device.upper()}"


BACKWARD = Suite("backward", "TestBwdGradients", "test/test_ops_gradients.py")
FORWARD = Suite("forward", "TestFwdGradients", "test/test_ops_fwd_gradients.py")
OPCHECK = Suite("opcheck", "TestOpCheck", "torch/testing/_internal/optests/generate_tests.py")
SUITES: tuple[Suite, ...] = (BACKWARD, FORWARD, OPCHECK)


@dataclass(frozen=True)
class Check:
    name: str  # what users type: --checks grad,gradgrad
    method: str  # the upstream test method
    upstream_dbs: frozenset[str]  # the databases the reference file runs it over
    description: str
    suite: Suite
    opcheck_util: str | None = None  # the torch.library.opcheck utility this check runs

    @property
    def custom_ops_only(self) -> bool:
        """Planned only for ops that are torch.library custom ops (an OpOverload outside aten)."""
        return self.opcheck_util is not None

    def applies_to(self, db: str) -> bool:
        """A project's own ops run through every check, as custom_op_db's do."""
        return db == USER_DB or db in self.upstream_dbs


_ALL = frozenset(UPSTREAM_DBS)
_OP_DB = frozenset({"op_db"})
CHECKS: tuple[Check, ...] = (
    Check("grad", "test_fn_grad", _ALL, "gradcheck of the function variant", BACKWARD),
    Check(
        "inplace-grad",
        "test_inplace_grad",
        frozenset({"op_db", "custom_op_db"}),
        "gradcheck of the in-place variant, or: in-place autograd must raise when unsupported",
        BACKWARD,
    ),
    Check("gradgrad", "test_fn_gradgrad", _ALL, "gradgradcheck of the function variant", BACKWARD),
    Check(
        "fail-gradgrad",
        "test_fn_fail_gradgrad",
        frozenset({"op_db", "custom_op_db"}),
        "for supports_gradgrad=False: double backward must raise 'derivative ... not implemented' (a spec's "
        "gradgrad_error: its own words)",
        BACKWARD,
    ),
    Check(
        "inplace-gradgrad", "test_inplace_gradgrad", _OP_DB, "gradgradcheck of the in-place variant", BACKWARD
    ),
    Check(
        "fwgrad-bwgrad",
        "test_fn_fwgrad_bwgrad",
        _OP_DB,
        "forward-over-reverse gradgradcheck; for supports_fwgrad_bwgrad=False: it must raise "
        "'Trying to use forward AD with ... that does not support it'",
        FORWARD,
    ),
    Check(
        "forward-ad",
        "test_forward_mode_AD",
        _OP_DB,
        "gradcheck of forward-mode AD (and batched forward grad where the op asks); for "
        "supports_forward_ad=False: it must raise",
        FORWARD,
    ),
    Check(
        "inplace-forward-ad",
        "test_inplace_forward_mode_AD",
        _OP_DB,
        "forward-mode AD gradcheck of the in-place variant",
        FORWARD,
    ),
    # opcheck: upstream_dbs empty, so only a project's ops (and of those only custom ops).
    Check(
        "opcheck-schema",
        "test_opcheck_schema",
        frozenset(),
        "opcheck's test_schema: the implementation does what the schema says (mutation, aliasing)",
        OPCHECK,
        "test_schema",
    ),
    Check(
        "opcheck-autograd-registration",
        "test_opcheck_autograd_registration",
        frozenset(),
        "opcheck's test_autograd_registration: autograd is registered through torch.library "
        "(register_autograd or an Autograd key), not another dispatch key",
        OPCHECK,
        "test_autograd_registration",
    ),
    Check(
        "opcheck-faketensor",
        "test_opcheck_faketensor",
        frozenset(),
        "opcheck's test_faketensor: a fake (meta) kernel exists and gives the real output's "
        "shape, strides, dtype and device",
        OPCHECK,
        "test_faketensor",
    ),
    Check(
        "opcheck-aot-dispatch-dynamic",
        "test_opcheck_aot_dispatch_dynamic",
        frozenset(),
        "opcheck's test_aot_dispatch_dynamic: outputs and gradients under AOTAutograd with dynamic "
        "shapes (torch.compile's path) equal eager's",
        OPCHECK,
        "test_aot_dispatch_dynamic",
    ),
)
CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
BY_NAME: Mapping[str, Check] = {c.name: c for c in CHECKS}
BY_METHOD: Mapping[str, Check] = {c.method: c for c in CHECKS}
BY_CLASS: Mapping[str, Suite] = {s.generic_class: s for s in SUITES}

# Names that stand for several checks in --checks: a suite's name, or all of them (opcheck too:
# its checks plan nothing for ops that are not custom ops, so ``all`` costs upstream runs nothing).
GROUPS: Mapping[str, tuple[str, ...]] = {
    **{s.name: tuple(c.name for c in CHECKS if c.suite is s) for s in SUITES},
    "all": CHECK_NAMES,
}
# What runs when nothing is said: the backward suite, what the action has always promised.
DEFAULT_CHECKS: tuple[str, ...] = GROUPS[BACKWARD.name]
ADD = "+"  # --checks +opcheck: the default checks and these


def expand(words: Sequence[str]) -> list[str]:
    """Check names with group names (``forward``, ``all``) replaced by their checks; a word with a
    leading ``+`` adds to the default checks (plan.parse_checks refuses mixing both kinds)."""
    added = any(word.startswith(ADD) for word in words)
    names = [name for word in words for name in GROUPS.get(word.removeprefix(ADD), (word.removeprefix(ADD),))]
    return [*DEFAULT_CHECKS, *names] if added else names


def suite_of(check: str) -> Suite:
    """The suite a check belongs to; a name gradci does not know (from a file) is backward's."""
    known = BY_NAME.get(check)
    return known.suite if known is not None else BACKWARD
