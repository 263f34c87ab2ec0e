"""The opcheck family: how ``--checks`` names it, which ops it is planned for (torch.library custom
ops only), its test ids and class, and the spec's skips and xfails of its utilities, run in-process on
the example's real ops. ``test_extension_example.py`` runs it end to end through the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, REPO

from gradci.catalog import OpEntry, custom_op_overload, load_upstream, select
from gradci.checks import BY_METHOD, CHECK_NAMES, DEFAULT_CHECKS, GROUPS, OPCHECK, SUITES
from gradci.errors import ConfigError
from gradci.plan import TestId, build_plan, parse_checks

EXAMPLE = REPO / "examples" / "extension"
OPCHECKS = (
    "opcheck-schema",
    "opcheck-autograd-registration",
    "opcheck-faketensor",
    "opcheck-aot-dispatch-dynamic",
)
FORWARD = ("fwgrad-bwgrad", "forward-ad", "inplace-forward-ad")


# --- --checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["opcheck"], OPCHECKS),  # a suite's name alone: only that suite, as forward
        (["forward"], FORWARD),
        (["+opcheck"], (*DEFAULT_CHECKS, *OPCHECKS)),  # +: added to the default
        (["+forward"], (*DEFAULT_CHECKS, *FORWARD)),
        (["+opcheck", "+forward"], CHECK_NAMES),
        (["+opcheck-faketensor"], (*DEFAULT_CHECKS, "opcheck-faketensor")),
        (["all"], CHECK_NAMES),  # every check, opcheck's too
        (["backward", "forward"], (*DEFAULT_CHECKS, *FORWARD)),
        (["grad", "opcheck-schema"], ("grad", "opcheck-schema")),
    ],
)
def test_checks_words(words: list[str], expected: tuple[str, ...]) -> None:
    assert parse_checks(words) == expected


def test_all_holds_opcheck_and_the_default_does_not() -> None:
    assert set(OPCHECKS) <= set(GROUPS["all"])
    assert GROUPS["opcheck"] == OPCHECKS
    assert not set(OPCHECKS) & set(DEFAULT_CHECKS)


def test_names_and_plus_names_do_not_mix() -> None:
    with pytest.raises(ConfigError, match=r"mix names with \+names") as info:
        parse_checks(["grad", "+opcheck"])
    assert "'grad,opcheck' runs exactly these" in str(info.value.hint)


def test_an_unknown_plus_name_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown check 'opchek'") as info:
        parse_checks(["+opchek"])
    assert "did you mean 'opcheck'" in str(info.value.hint)


# --- ids, classes, the results schema ----------------------------------------------------------------


def test_ids_and_class() -> None:
    test_id = "test_opcheck_faketensor_extops_fused_gelu_cpu_float64"
    parsed = TestId.parse(test_id)
    assert (parsed.check, parsed.op, parsed.device, parsed.dtype) == (
        "opcheck-faketensor",
        "extops_fused_gelu",
        "cpu",
        "float64",
    )
    assert parsed.name == test_id
    assert OPCHECK.class_name("cpu") == "TestOpCheckCPU"
    # one check per utility, in opcheck's own order
    utilities = [c.opcheck_util for c in BY_METHOD.values() if c.suite is OPCHECK]
    assert utilities == [
        "test_schema",
        "test_autograd_registration",
        "test_faketensor",
        "test_aot_dispatch_dynamic",
    ]


def test_the_results_schema_knows_every_check_and_class() -> None:
    schema = json.loads((REPO / "gradci/schemas/results-v2.schema.json").read_text())
    assert schema["$defs"]["check"]["enum"] == list(CHECK_NAMES)
    test = schema["$defs"]["test"]["properties"]
    for check in BY_METHOD.values():
        assert re.match(test["id"]["pattern"], f"{check.method}_some_op_cpu_float64"), check.method
    for suite in SUITES:
        assert re.match(test["classname"]["pattern"], suite.class_name("cpu")), suite.name


# --- which ops ---------------------------------------------------------------------------------------


@pytest.fixture
def spec_ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, OpEntry]:
    """The example's ops named every way a spec can, plus an aten op and an autograd.Function."""
    from gradci.spec import load_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(FIXTURES))
    shutil.copytree(EXAMPLE / "extops", tmp_path / "extops")
    (tmp_path / "gradci-ops.yml").write_text(
        """\
import: extops
ops:
  - name: overload
    op: torch.ops.extops.fused_gelu.default
    samples: [{input: {shape: [3]}}]
  - name: packet
    op: torch.ops.extops.softsign
    samples: [{input: {shape: [3], domain: nonzero}}]
  - name: custom_op_object
    op: extops:fused_gelu
    samples: [{input: {shape: [3]}}]
  - name: broken_fake
    op: torch.ops.extops.fused_gelu_broken_fake.default
    skip:
      opcheck-schema: not what this test is about
    xfail:
      opcheck-faketensor: the fake kernel flattens its output
    samples: [{input: {shape: [2, 3]}}]
  - name: aten_overload
    op: torch.ops.aten.sin.default
    samples: [{input: {shape: [3]}}]
  - name: function_class
    op: extops.functions:_ScaledMul
    samples: [{input: {shape: [3]}, args: [{shape: [3]}, 2.0, false]}]
"""
    )
    return {e.full_name: e for e in load_spec(Path("gradci-ops.yml"))}


def test_planned_for_custom_ops_only(spec_ops: dict[str, OpEntry]) -> None:
    import torch

    assert custom_op_overload(spec_ops["packet"].op) is torch.ops.extops.softsign.default
    assert custom_op_overload(spec_ops["custom_op_object"].op) is torch.ops.extops.fused_gelu.default
    assert custom_op_overload(spec_ops["aten_overload"].op) is None  # aten's: not a custom op
    assert custom_op_overload(spec_ops["function_class"].op) is None
    plan = build_plan(list(spec_ops.values()), device="cpu", checks=parse_checks(["+opcheck"]))
    planned = {(t.op, t.check) for t in plan.tests}
    for name in ("overload", "packet", "custom_op_object", "broken_fake"):
        assert {c for op, c in planned if op == name} == {*DEFAULT_CHECKS, *OPCHECKS}
    for name in ("aten_overload", "function_class"):  # gradient checks, no opcheck
        assert {c for op, c in planned if op == name} == set(DEFAULT_CHECKS)
    assert {t.classname for t in plan.tests if t.check in OPCHECKS} == {"TestOpCheckCPU"}


def test_upstream_ops_are_never_opchecked() -> None:
    """custom_op_db's ops are custom ops, but upstream runs no opcheck suite over its databases."""
    upstream = select(load_upstream(), ["NumpyMulCustomOp", "add", "cond"], [])
    assert build_plan(upstream, device="cpu", checks=GROUPS["opcheck"]).tests == ()


def test_real_utilities_with_the_spec_skips_and_xfails(
    spec_ops: dict[str, OpEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test runs its utility on the op's samples; a spec's skip and xfail name the check."""
    from torch.testing._internal import common_device_type

    from gradci import suite, worker

    # as in gradci's workers (cli.py sets PYTORCH_PRINT_REPRO_ON_FAILURE=0): torch would otherwise
    # re-raise every error as a plain Exception with its repro appended
    monkeypatch.setattr(common_device_type, "PRINT_REPRO_ON_FAILURE", False)
    suite.set_sample_observer(worker._observe)  # as a worker does: which sample failed
    try:
        outcomes = _run_all(spec_ops)
    finally:
        suite.set_sample_observer(None)

    for method in ("schema", "autograd_registration", "faketensor", "aot_dispatch_dynamic"):
        for op in ("overload", "packet"):
            assert outcomes[f"test_opcheck_{method}_{op}_cpu_float64"]["outcome"].value == "passed"
    schema = outcomes["test_opcheck_schema_broken_fake_cpu_float64"]
    assert (schema["outcome"].value, schema["message"]) == ("skipped", "not what this test is about")
    fake = outcomes["test_opcheck_faketensor_broken_fake_cpu_float64"]
    assert fake["outcome"].value == "xfailed"
    assert fake["message"].startswith(
        "expected failure: the fake kernel flattens its output (MetadataMismatchError:"
    )
    # not xfailed: the wrong fake kernel fails the AOTAutograd utility too (the example xfails it)
    aot = outcomes["test_opcheck_aot_dispatch_dynamic_broken_fake_cpu_float64"]
    assert aot["outcome"].value == "failed" and aot["sample_index"] == 0


def _run_all(spec_ops: dict[str, OpEntry]) -> dict[str, dict[str, Any]]:
    from gradci.suite import build_test_classes, class_for
    from gradci.worker import run_one

    entries = [spec_ops[n] for n in ("overload", "packet", "broken_fake")]
    plan = build_plan(entries, device="cpu", checks=GROUPS["opcheck"])
    classes = build_test_classes("cpu", plan.ops_by_method)
    outcomes = {}
    for test in plan.tests:
        cls = class_for(classes, test.id)
        assert cls is not None and cls.__name__ == "TestOpCheckCPU"
        outcomes[test.id] = run_one(cls, test.id)
    return outcomes


def test_an_opcheck_expectation_on_an_op_opcheck_skips_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It would do nothing: say so, with the line, as for every other spec mistake."""
    from gradci.errors import SpecError
    from gradci.spec import load_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(FIXTURES))
    (tmp_path / "gradci-ops.yml").write_text(
        "ops:\n  - op: gradci_specops:two_x\n    xfail:\n      opcheck-faketensor: no fake kernel\n"
        "    samples: [{input: {shape: [3]}}]\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(Path("gradci-ops.yml"))
    assert str(info.value) == (
        "gradci-ops.yml:4: ops[0].xfail.opcheck-faketensor: 'gradci_specops:two_x' is not a torch.library "
        "custom op, so opcheck does not run on it (opcheck runs on an OpOverload outside aten: "
        "torch.ops.mylib.op.default or a torch.library.custom_op)"
    )


def test_opcheck_over_no_custom_op_says_why_nothing_ran(tmp_path: Path) -> None:
    """A run that checks nothing must not pass for a green one: it says why, in one line."""
    from conftest import gradci

    done = gradci("run", "--checks", "opcheck", "--ops", "abs", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "no tests:" in line]
    assert "opcheck runs only on torch.library custom ops" in line
    assert json.loads((tmp_path / "gradci-results.json").read_text())["tests"] == []
