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
    """Guard the subset itself: it must keep exercising every kind of outcome and check."""
    outcomes = set(report.gradci.outcomes.values())
    assert {"passed", "skipped", "xfailed"} <= outcomes
    passed = {t for t, o in report.gradci.outcomes.items() if o == "passed"}
    assert any(t.startswith("test_fn_fail_gradgrad_") for t in passed)
    assert any(t.startswith("test_inplace_gradgrad_") for t in passed)
    assert "test_inplace_grad_acosh_cpu_float64" in passed  # the "must raise" branch
    assert any("_complex128" in t for t in passed)
    assert any("Numpy" in t for t in passed) and any("_cond_" in t for t in passed)
