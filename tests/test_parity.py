"""Parity with the upstream suite: the same test ids and outcomes as pytest on the reference file.

The subset covers ops with in-place variants and complex support, skip and xfail decorators aimed at
TestBwdGradients, supports_gradgrad=False (fail-gradgrad), in-place autograd that must raise,
hop_db and custom_op_db entries. ``scripts/parity.py`` runs the same comparison on the whole suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "parity"))
import harness

SUBSET = [
    "add",  # in-place variant, complex128
    "acosh",  # in-place autograd unsupported: the in-place check must see it raise
    "abs",  # DecorateInfo skips on the in-place checks
    "div.trunc_rounding",  # a variant; DecorateInfo skip on test_fn_grad
    "cov",  # expectedFailure on grad and gradgrad
    "as_strided.partial_views",  # expectedFailure on the in-place checks
    "nn.functional.hardsigmoid",  # supports_gradgrad=False, so fail-gradgrad runs
    "cdist",  # supports_gradgrad=False
    "resize_",  # no autograd at all
    "NumpyMulCustomOp",  # custom_op_db
    "NumpySortCustomOp",
    "cond",  # hop_db
    "while_loop",  # hop_db, skipped
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> harness.Report:
    reference = harness.reference_path()
    if not reference.is_file():
        pytest.skip(
            f"reference suite not found at {reference} (set GRADCI_REFERENCE to test_ops_gradients.py)"
        )
    return harness.run_parity(SUBSET, [], tmp_path_factory.mktemp("parity"))


def test_same_test_ids(report: harness.Report) -> None:
    assert report.only_gradci == [] and report.only_pytest == [], report.describe()
    assert len(report.gradci.outcomes) > 80


def test_same_outcomes_and_skip_reasons(report: harness.Report) -> None:
    assert report.differing == [], report.describe()


def test_subset_is_varied(report: harness.Report) -> None:
    """Guard the subset itself: it must keep exercising every kind of outcome and check. (An
    expected failure is xfailed, or failed where a torch release broke its marker: 2.14.1 has none.)"""
    outcomes = set(report.gradci.outcomes.values())
    assert {"passed", "skipped"} <= outcomes and outcomes & {"xfailed", "failed"}
    passed = {t for t, o in report.gradci.outcomes.items() if o == "passed"}
    assert any(t.startswith("test_fn_fail_gradgrad_") for t in passed)
    assert any(t.startswith("test_inplace_gradgrad_") for t in passed)
    assert "test_inplace_grad_acosh_cpu_float64" in passed  # the "must raise" branch
    assert any("_complex128" in t for t in passed)
    assert any("Numpy" in t for t in passed) and any("_cond_" in t for t in passed)


# The forward suite (test_ops_fwd_gradients.py, TestFwdGradients): ops with and without forward AD,
# in-place variants, fwgrad_bwgrad supported or not (then it must raise), xfails and skips.
FORWARD_SUBSET = [
    "add",  # forward AD and an in-place variant, complex128
    "abs",  # DecorateInfo skips
    "cov",  # expected failures
    "cdist",  # no forward AD: the checks must see it raise
    "nn.functional.hardsigmoid",  # forward AD without fwgrad_bwgrad
    "as_strided.partial_views",  # expected failures of the in-place checks
    "div.trunc_rounding",  # a variant
    "acosh",  # in-place autograd unsupported: the in-place check is skipped
]


@pytest.fixture(scope="module")
def forward_report(tmp_path_factory: pytest.TempPathFactory) -> harness.Report:
    """Against GRADCI_REFERENCE_FWD (the upstream file) where set, else gradci's own oracle of it."""
    reference = harness.reference_path("forward")
    if not reference.is_file():
        pytest.skip(f"forward reference not found at {reference} (GRADCI_REFERENCE_FWD)")
    return harness.run_parity(FORWARD_SUBSET, [], tmp_path_factory.mktemp("parity-fwd"), suite="forward")


def test_forward_same_ids_outcomes_and_reasons(forward_report: harness.Report) -> None:
    assert forward_report.ok, forward_report.describe()
    assert len(forward_report.gradci.outcomes) > 30
    assert all(
        t.startswith(("test_fn_fwgrad_bwgrad_", "test_forward_mode_AD_", "test_inplace_forward_mode_AD_"))
        for t in forward_report.gradci.outcomes
    )


def test_forward_subset_is_varied(forward_report: harness.Report) -> None:
    outcomes = forward_report.gradci.outcomes
    assert {"passed", "skipped"} <= set(outcomes.values()) and set(outcomes.values()) & {"xfailed", "failed"}
    passed = {t for t, o in outcomes.items() if o == "passed"}
    assert "test_forward_mode_AD_cdist_cpu_float64" in passed  # the "must raise" branch
    assert any(t.startswith("test_inplace_forward_mode_AD_") for t in passed)
    assert any(t.startswith("test_fn_fwgrad_bwgrad_") for t in passed)
    assert any("_complex128" in t for t in passed)
