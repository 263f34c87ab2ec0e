"""The declarative spec (gradci-ops.yml): validation errors with file:line:key, the OpInfos it builds,
what each setting does to real gradchecks, and how gradci finds it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FIXTURES, REPO, gradci

from gradci.errors import ConfigError, SpecError
from gradci.options import resolve
from gradci.spec import load_spec, parse_spec

EXAMPLE = REPO / "examples" / "extension"
ONE = "    samples: [{input: {shape: [3]}}]\n"
FAILING = ("failed", "error", "xpassed")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(FIXTURES))
    return tmp_path


def results_of(path: Path) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in json.loads(path.read_text())["tests"]}


# --- validation: one precise line per mistake ------------------------------------------------------

PARSE_ERRORS = [
    (
        "ops:\n  - op: [x\n",
        "gradci-ops.yml:3: not valid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    ("", "gradci-ops.yml: the spec is empty (list operators under 'ops:')"),
    ("opps: []\n", "gradci-ops.yml:1: opps: unknown key (did you mean 'ops'?)"),
    (
        "workers: 2\nops: []\n",
        "gradci-ops.yml:1: workers: unknown key (run options belong in .gradci.yml or [tool.gradci] of "
        "pyproject.toml; this file lists operators)",
    ),
    ("ops: []\n", "gradci-ops.yml:1: ops: expected at least one operator"),
    (
        "ops:\n  - add\n",
        "gradci-ops.yml:2: ops[0]: expected a mapping with at least 'op' and 'samples', got 'add'",
    ),
    (
        "ops:\n  - op: m:f\n    sample: []\n",
        "gradci-ops.yml:3: ops[0].sample: unknown key (did you mean 'samples'?)",
    ),
    (
        "ops:\n  - samples: [{input: {shape: [3]}}]\n",
        "gradci-ops.yml:2: ops[0]: missing 'op' (the callable to check, e.g. op: mypkg.ops:fused_gelu or "
        "op: torch.ops.mylib.fused_gelu.default)",
    ),
    (
        "ops:\n  - op: m:f\n    samples:\n      - input: {shpae: [3]}\n",
        "gradci-ops.yml:4: ops[0].samples[0].input.shpae: unknown key (did you mean 'shape'?)",
    ),
    (
        "ops:\n  - op: m:f\n    dtypes: [float64, float32]\n" + ONE,
        "gradci-ops.yml:3: ops[0].dtypes: gradient checks run in float64 and complex128 only, not float32 "
        "(gradcheck needs double precision, as upstream's TestBwdGradients)",
    ),
    (
        "ops:\n  - op: m:f\n    dtypes: [flaot64]\n" + ONE,
        "gradci-ops.yml:3: ops[0].dtypes[0]: unknown dtype 'flaot64' (did you mean 'float64'?)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3, -1]}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.shape: expected a list of sizes (whole numbers >= 0), "
        "e.g. [3, 4]; [] is a 0-d tensor",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3], range: [1, -1]}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.range: expected low < high, got [1, -1]",
    ),
    (
        "ops:\n  - op: m:f\n    samples:\n      - input: {shape: [3]}\n        args: [{shape: [2], domain: postive}]\n",
        "gradci-ops.yml:5: ops[0].samples[0].args[0].domain: unknown domain 'postive' (did you mean 'positive'?)",
    ),
    (
        "ops:\n  - op: m:f\n    samples:\n      - input: {shape: [3], requires_grad: false}\n        args: [2.0]\n",
        "gradci-ops.yml:4: ops[0].samples[0]: creates no tensor that requires grad in float64 (gradcheck "
        "needs at least one floating-point or complex tensor with requires_grad)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3], dtype: int64, requires_grad: true}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.requires_grad: int64 tensors cannot require grad (only "
        "floating-point and complex tensors can)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3]}, kwargs: [1]}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].kwargs: expected a mapping of keyword arguments, got a list",
    ),
    (
        "ops:\n  - op: m:f\n    skip: {gradgard: flaky}\n" + ONE,
        "gradci-ops.yml:3: ops[0].skip.gradgard: unknown key (did you mean 'gradgrad'?)",
    ),
    (
        "ops:\n  - op: m:f\n    xfail:\n      grad: {dtypes: [float64]}\n" + ONE,
        "gradci-ops.yml:4: ops[0].xfail.grad: missing 'reason' (say why the xfail is there)",
    ),
    (
        "ops:\n  - op: m:f\n    xfail:\n      grad: {reason: r, dtypes: [complex128]}\n" + ONE,
        "gradci-ops.yml:4: ops[0].xfail.grad.dtypes: the op is not checked in complex128",
    ),
    (
        "ops:\n  - op: m:f\n    gradcheck: {atol: 0.01}\n" + ONE,
        "gradci-ops.yml:3: ops[0].gradcheck.atol: give atol and rtol together (gradcheck's defaults are "
        "atol 1e-05, rtol 0.001)",
    ),
    (
        "ops:\n  - op: m:f\n    gradcheck: {rtol: -1, atol: 0}\n" + ONE,
        "gradci-ops.yml:3: ops[0].gradcheck.rtol: expected a number >= 0, got '-1'",
    ),
    (
        "ops:\n  - op: m:f\n    gradcheck: {fast: false}\n" + ONE,
        "gradci-ops.yml:3: ops[0].gradcheck.fast: unknown key (did you mean 'fast_mode'?)",
    ),
    (
        "ops:\n  - op: m:f\n    supports_gradgrad: no-ish\n" + ONE,
        "gradci-ops.yml:3: ops[0].supports_gradgrad: expected true or false, got 'no-ish'",
    ),
    (
        "ops:\n  - op: m:f\n" + ONE + "  - op: n:f\n" + ONE,
        "gradci-ops.yml:4: ops[1]: a second operator named 'f'; the first is at line 2 (give one a "
        "distinct name or variant)",
    ),
    (
        "ops:\n  - op: m:f\n    gradgrad_error: double (backwards\n" + ONE,
        "gradci-ops.yml:3: ops[0].gradgrad_error: not a valid regular expression: missing ), unterminated "
        "subpattern at position 7 (Python's re syntax)",
    ),
    (
        "ops:\n  - op: m:f\n    supports_gradgrad: true\n    gradgrad_error: not supported\n" + ONE,
        "gradci-ops.yml:3: ops[0].supports_gradgrad: true, but gradgrad_error says double backward raises "
        "(leave supports_gradgrad out: gradgrad_error implies false)",
    ),
    (
        "extra: 1\nops: []\n",
        "gradci-ops.yml:1: extra: unknown key (valid keys: version, import, defaults, ops; x-NAME keys are "
        "ignored (a place for YAML anchors))",
    ),
    (
        "defaults: [1]\nops: []\n",
        "gradci-ops.yml:1: defaults: expected a mapping of op settings every op inherits, got a list",
    ),
    (
        "defaults:\n  dtype: [float64]\nops: []\n",
        "gradci-ops.yml:2: defaults.dtype: unknown key (did you mean 'dtypes'?)",
    ),
    (
        "defaults:\n  samples: []\nops:\n  - op: m:f\n" + ONE,
        "gradci-ops.yml:2: defaults.samples: not a default: each op gives its own (defaults take dtypes, "
        "supports_gradgrad, gradgrad_error, supports_inplace_autograd, supports_forward_ad, "
        "supports_fwgrad_bwgrad, gradcheck, skip, xfail; share samples with a YAML anchor under an x- key)",
    ),
    (
        "defaults:\n  gradcheck: {atol: 0.1}\nops: []\n",
        "gradci-ops.yml:2: defaults.gradcheck.atol: give atol and rtol together (gradcheck's defaults are "
        "atol 1e-05, rtol 0.001)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3]}, repeat: 0}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].repeat: expected a whole number from 1 to 100, got '0' (each "
        "repeat is one more gradcheck in every test of the op)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3]}, repeat: 2.5}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].repeat: expected a whole number from 1 to 100, got '2.5' (each "
        "repeat is one more gradcheck in every test of the op)",
    ),
    (
        "ops:\n  - op: m:f\n    samples:\n      - input: {values: [1, 2]}\n        repeat: 10\n",
        "gradci-ops.yml:5: ops[0].samples[0].repeat: 10 identical samples: none of its tensors is random "
        "(repeat draws random tensors ('shape') anew with another seed; literal 'values' stay the same)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3], distribution: gauss}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.distribution: unknown distribution 'gauss' (choose from "
        "uniform, normal)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [3], distribution: normal, domain: positive}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.domain: a normal tensor takes no domain (give 'range' to "
        "clamp its values to [low, high])",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {values: [1, 2], distribution: normal}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.distribution: literal 'values' take no distribution",
    ),
    (
        "ops:\n  - op: m:f\n    samples:\n      - input: {shape: [3]}\n        args: [{shape: [3], dtype: int64, distribution: normal}]\n",
        "gradci-ops.yml:5: ops[0].samples[0].args[0].distribution: normal values need a floating-point or "
        "complex dtype, not int64",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [2, 3], permute: [0, 2]}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.permute: expected a permutation of the tensor's 2 dims "
        "(0 to 1), got [0, 2]",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {values: [[1, 2]], permute: [0, 1]}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.permute: [0, 1] keeps the order: the tensor would be "
        "contiguous (e.g. [1, 0] for a transposed matrix; 'noncontiguous: true' for a 1-d tensor)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [], permute: []}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.permute: [] keeps the order: the tensor would be "
        "contiguous (e.g. [1, 0] for a transposed matrix; 'noncontiguous: true' for a 1-d tensor)",
    ),
    (
        "ops:\n  - op: m:f\n    samples: [{input: {shape: [2, 3], noncontiguous: true, permute: [1, 0]}}]\n",
        "gradci-ops.yml:3: ops[0].samples[0].input.permute: give 'noncontiguous' or 'permute', not both",
    ),
    (
        "ops:\n  - op: not a path\n" + ONE,
        "gradci-ops.yml:2: ops[0].op: expected an import path such as 'mypkg.ops:fused_gelu' or "
        "'torch.ops.mylib.op', got 'not a path'",
    ),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors(project: Path, text: str, message: str) -> None:
    (project / "gradci-ops.yml").write_text(text)
    with pytest.raises(SpecError) as info:
        parse_spec(Path("gradci-ops.yml"))
    assert str(info.value) == message


def test_defaults_are_inherited_and_overridden_key_by_key(project: Path) -> None:
    """A key an op gives replaces the default; gradcheck merges setting by setting, skip and xfail
    check by check; x- keys hold anchors and are otherwise ignored."""
    (project / "gradci-ops.yml").write_text(
        """\
x-vector: &vector [{input: {shape: [3]}}]
x-notes: {anything: [goes, here]}
defaults:
  dtypes: [float64, complex128]
  supports_forward_ad: true
  gradgrad_error: double backwards on \\w+ not supported
  gradcheck: {atol: 0.01, rtol: 0.01, check_batched_grad: false}
  skip: {gradgrad: slow, inplace-grad: no in-place variant}
  xfail: {forward-ad: no jvp}
ops:
  - op: m:inherits
    samples: *vector
  - op: m:overrides
    dtypes: [float64]
    supports_gradgrad: true
    gradcheck: {check_batched_grad: true, fast_mode: false}
    skip: {forward-ad: not today}
    xfail: {gradgrad: {reason: broken, dtypes: [float64]}}
    samples: *vector
"""
    )
    inherits, overrides = parse_spec(Path("gradci-ops.yml")).ops
    assert inherits.dtypes == ("float64", "complex128") and inherits.supports_forward_ad
    assert (inherits.gradgrad_error, inherits.supports_gradgrad) == (
        r"double backwards on \w+ not supported",
        False,
    )
    assert (inherits.atol, inherits.rtol, inherits.check_batched_grad, inherits.fast_mode) == (
        0.01,
        0.01,
        False,
        None,
    )
    assert [(e.check, e.reason) for e in inherits.skips] == [
        ("gradgrad", "slow"),
        ("inplace-grad", "no in-place variant"),
    ]
    assert [(e.check, e.reason) for e in inherits.xfails] == [("forward-ad", "no jvp")]
    assert overrides.dtypes == ("float64",) and overrides.supports_forward_ad
    # supports_gradgrad: true drops the inherited gradgrad_error
    assert (overrides.gradgrad_error, overrides.supports_gradgrad) == (None, True)
    assert (overrides.atol, overrides.rtol, overrides.check_batched_grad, overrides.fast_mode) == (
        0.01,
        0.01,
        True,
        False,
    )
    # its skip of forward-ad replaces the inherited xfail; its xfail of gradgrad the inherited skip
    assert [(e.check, e.reason) for e in overrides.skips] == [
        ("inplace-grad", "no in-place variant"),
        ("forward-ad", "not today"),
    ]
    assert [(e.check, e.reason, e.dtypes) for e in overrides.xfails] == [("gradgrad", "broken", ("float64",))]
    # a later error (the probe's "cannot take complex128") points at the op's own key, else its entry
    assert overrides.lines.get("dtypes") == 14 and "dtypes" not in inherits.lines


LOAD_ERRORS = [
    (
        "ops:\n  - op: nosuchmod:f\n" + ONE,
        "gradci-ops.yml:2: ops[0].op: op 'nosuchmod:f': cannot import 'nosuchmod': No module named 'nosuchmod'",
    ),
    (
        "ops:\n  - op: gradci_specops:slighty_off\n" + ONE,
        "gradci-ops.yml:2: ops[0].op: op 'gradci_specops:slighty_off': 'gradci_specops' has no attribute "
        "'slighty_off' (did you mean 'slightly_off'?)",
    ),
    (
        "ops:\n  - op: torch.ops.nosuchns.op\n" + ONE,
        "gradci-ops.yml:2: ops[0].op: op 'torch.ops.nosuchns.op': 'torch.ops.nosuchns' has no attribute 'op' "
        "(no operator is registered in torch.ops.nosuchns: is the library imported ('import:')?)",
    ),
    (
        "ops:\n  - op: torch.ops.aten.sinn.default\n" + ONE,
        "gradci-ops.yml:2: ops[0].op: op 'torch.ops.aten.sinn.default': 'torch.ops.aten' has no attribute "
        "'sinn' (did you mean 'sin', 'sinh', 'sinc'?)",
    ),
    (
        "ops:\n  - op: gradci_specops:NOT_CALLABLE\n" + ONE,
        "gradci-ops.yml:2: ops[0].op: 'gradci_specops:NOT_CALLABLE' is an int, not an op (name a function, "
        "a torch.library custom op, a torch.ops overload or an autograd.Function)",
    ),
    (
        "ops:\n  - op: gradci_specops\n" + ONE,
        "gradci-ops.yml:2: ops[0].op: 'gradci_specops' is a module, not an op (name a function, a "
        "torch.library custom op, a torch.ops overload or an autograd.Function)",
    ),
    (
        "ops:\n  - op: gradci_specops:two_x\n    inplace: gradci_specops:NOT_CALLABLE\n" + ONE,
        "gradci-ops.yml:3: ops[0].inplace: 'gradci_specops:NOT_CALLABLE' is an int, not an op",
    ),
    (
        "import: [gradci_specops, nosuchmod]\nops:\n  - op: gradci_specops:two_x\n" + ONE,
        "gradci-ops.yml:1: import: cannot import 'nosuchmod': No module named 'nosuchmod'",
    ),
    (
        "ops:\n  - op: torch.erf\n    dtypes: [float64, complex128]\n" + ONE,
        'gradci-ops.yml:3: ops[0].dtypes: erf cannot take complex128: NotImplementedError: "erf_vml_cpu" '
        "not implemented for 'ComplexDouble' (it runs in float64; leave complex128 out of its dtypes)",
    ),
    (
        "ops:\n  - op: gradci_specops:two_x\n    samples: gradci_specops:no_grad_samples\n",
        "gradci-ops.yml:3: ops[0].samples: sample 1 of 'gradci_specops:no_grad_samples' creates no tensor "
        "that requires grad in float64 (gradcheck needs at least one floating-point or complex tensor with "
        "requires_grad)",
    ),
    (
        "ops:\n  - op: gradci_specops:two_x\n    samples: gradci_specops:raising_samples\n",
        "gradci-ops.yml:3: ops[0].samples: 'gradci_specops:raising_samples' raised RuntimeError in float64: "
        "no samples today",
    ),
    (
        "ops:\n  - op: gradci_specops:two_x\n    samples: gradci_specops:NOT_CALLABLE\n",
        "gradci-ops.yml:3: ops[0].samples: 'gradci_specops:NOT_CALLABLE' is an int, not a function (a sample "
        "function takes (op, device, dtype, requires_grad, **kwargs) and yields SampleInputs)",
    ),
]


@pytest.mark.parametrize(("text", "message"), LOAD_ERRORS)
def test_load_errors(project: Path, text: str, message: str) -> None:
    (project / "gradci-ops.yml").write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(Path("gradci-ops.yml"))
    assert str(info.value) == message


def test_an_op_that_raises_is_no_load_error(project: Path) -> None:
    """It raises in every dtype: not a dtype problem, but the checks' failure (see test_settings_...)."""
    (project / "gradci-ops.yml").write_text(
        "ops:\n  - op: gradci_specops:raises\n    dtypes: [float64, complex128]\n" + ONE
    )
    assert [e.full_name for e in load_spec(Path("gradci-ops.yml"))] == ["raises"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ops: [\n", "gradci: error: gradci-ops.yml:2: not valid YAML"),
        ("ops:\n  - op: nosuchmod:f\n" + ONE, "gradci: error: gradci-ops.yml:2: ops[0].op: op 'nosuchmod:f'"),
        (
            "ops:\n  - op: gradci_specops:NOT_CALLABLE\n" + ONE,
            "gradci: error: gradci-ops.yml:2: ops[0].op: 'gradci_specops:NOT_CALLABLE' is an int, not an op",
        ),
        (
            "ops:\n  - op: m:f\n    samples: [{input: {shape: [3], requires_grad: false}}]\n",
            "gradci: error: gradci-ops.yml:3: ops[0].samples[0]: creates no tensor that requires grad",
        ),
        (
            "ops:\n  - op: torch.erf\n    dtypes: [complex128]\n" + ONE,
            "gradci: error: gradci-ops.yml:3: ops[0].dtypes: erf cannot take complex128",
        ),
    ],
    ids=["unparsable", "unknown-op", "not-callable", "no-grad", "bad-dtype"],
)
def test_bad_spec_is_one_line_exit_2_before_any_test(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "gradci-ops.yml").write_text(spec)
    done = gradci("run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert done.stderr.startswith(message), done.stderr
    assert not (tmp_path / "gradci-results.json").exists()  # no test ran


def test_missing_spec_file(tmp_path: Path) -> None:
    done = gradci("list", "--spec", "ops.yml", cwd=tmp_path)
    assert (done.returncode, done.stderr.strip()) == (2, "gradci: error: spec file ops.yml does not exist")


# --- what the spec builds --------------------------------------------------------------------------


def test_samples_are_built_as_written(project: Path) -> None:
    (project / "gradci-ops.yml").write_text(
        """\
ops:
  - name: mylib.echo
    variant: many
    op: gradci_specops:echo
    dtypes: [float64, complex128]
    samples:
      - input: {shape: [2, 3], domain: positive, noncontiguous: true}
        args:
          - {shape: [3], range: [-1, 1], requires_grad: false}
          - [{shape: [2]}, {shape: [], domain: nonzero}]
          - {values: [[0, 1], [1, 0]], dtype: int64}
          - 2.5
          - [0, 1]
        kwargs: {alpha: -1, mode: mean, scale: {shape: [1], domain: negative}, flag: null}
      - input: {values: 1.5}
        broadcasts_input: true
"""
    )
    (entry,) = load_spec(Path("gradci-ops.yml"))
    assert (entry.full_name, entry.formatted_name, entry.db) == ("mylib.echo.many", "mylib_echo_many", "user")
    info = entry.op
    assert info.inplace_variant is None and info.supports_gradgrad and info.supports_inplace_autograd
    assert set(info.supported_dtypes("cpu")) == {torch.float64, torch.complex128}
    first, second = info.sample_inputs("cpu", torch.float64, requires_grad=True)
    x = first.input
    assert x.shape == (2, 3) and x.dtype == torch.float64 and x.requires_grad and not x.is_contiguous()
    assert bool(((x >= 0.1) & (x <= 9)).all())
    bounded, pair, index, scalar, dims = first.args
    assert bounded.shape == (3,) and not bounded.requires_grad and bool((bounded.abs() <= 1).all())
    assert [t.shape for t in pair] == [(2,), ()] and all(t.requires_grad for t in pair)
    assert float(pair[1].detach().abs()) >= 0.1
    assert index.dtype == torch.int64 and index.tolist() == [[0, 1], [1, 0]] and not index.requires_grad
    assert (scalar, dims) == (2.5, [0, 1])
    assert list(first.kwargs) == ["alpha", "mode", "scale", "flag"]
    assert first.kwargs["alpha"] == -1 and first.kwargs["mode"] == "mean" and first.kwargs["flag"] is None
    assert bool((first.kwargs["scale"] <= -0.1).all()) and first.kwargs["scale"].requires_grad
    assert second.input.tolist() == 1.5 and second.broadcasts_input and second.args == ()
    (complex_first, _) = info.sample_inputs("cpu", torch.complex128, requires_grad=True)
    assert complex_first.input.dtype == torch.complex128 and complex_first.args[2].dtype == torch.int64
    # fresh tensors on every call, as gradcheck needs
    again, _ = info.sample_inputs("cpu", torch.float64, requires_grad=True)
    assert again.input is not x
    no_grad, _ = info.sample_inputs("cpu", torch.float64, requires_grad=False)
    assert not no_grad.input.requires_grad


def _repeated(count: int) -> str:
    return f"""\
ops:
  - op: gradci_specops:two_x
    samples:
      - input: {{shape: [5]}}
        args: [{{values: [1, 2]}}]
        repeat: {count}
      - input: {{shape: [5]}}
"""


def test_repeat_makes_samples_with_seeds_of_their_own(project: Path) -> None:
    (project / "gradci-ops.yml").write_text(_repeated(4))
    (info,) = [e.op for e in load_spec(Path("gradci-ops.yml"))]
    torch.manual_seed(0)
    samples = list(info.sample_inputs("cpu", torch.float64, requires_grad=True))
    assert len(samples) == 5
    repeats, after = samples[:4], samples[4]
    assert len({tuple(s.input.tolist()) for s in repeats}) == 4  # distinct random values
    assert all(s.args[0].tolist() == [1.0, 2.0] for s in repeats)  # literal values stay
    seeds = [int(s.name.rpartition("seed ")[2]) for s in repeats]
    assert seeds == list(range(seeds[0], seeds[0] + 4))
    assert [s.name.partition(",")[0] for s in repeats] == [
        f"samples[0] repeat {k} of 4" for k in (1, 2, 3, 4)
    ]
    assert after.name == ""
    # each repeat is its seed's: made again from it, the same tensor
    torch.manual_seed(seeds[2])
    from torch.testing import make_tensor

    assert torch.equal(make_tensor((5,), device="cpu", dtype=torch.float64), repeats[2].input.detach())
    # the same test seed gives the same samples; the sample after them does not depend on the count
    torch.manual_seed(0)
    again = list(info.sample_inputs("cpu", torch.float64, requires_grad=True))
    assert all(torch.equal(a.input, b.input) for a, b in zip(samples, again, strict=True))
    (project / "gradci-ops.yml").write_text(_repeated(9))
    (other,) = [e.op for e in load_spec(Path("gradci-ops.yml"))]
    torch.manual_seed(0)
    longer = list(other.sample_inputs("cpu", torch.float64, requires_grad=True))
    assert len(longer) == 10 and torch.equal(longer[-1].input, after.input)
    assert torch.equal(longer[0].input, repeats[0].input)


def test_normal_and_permuted_tensors(project: Path) -> None:
    (project / "gradci-ops.yml").write_text(
        """\
ops:
  - op: gradci_specops:echo
    dtypes: [float64, complex128]
    samples:
      - input: {shape: [4000], distribution: normal}
        args:
          - {shape: [4000], distribution: normal, range: [-0.5, 0.5]}
          - {shape: [2, 3, 4], permute: [2, 0, 1]}
          - {values: [[1, 2, 3], [4, 5, 6]], permute: [1, 0]}
          - {shape: [3, 5], distribution: normal, permute: [1, 0], range: [-1, 1]}
"""
    )
    (entry,) = load_spec(Path("gradci-ops.yml"))
    (sample,) = entry.op.sample_inputs("cpu", torch.float64, requires_grad=True)
    normal, clamped, permuted, literal, both = sample.input.detach(), *(a.detach() for a in sample.args)
    assert abs(float(normal.mean())) < 0.1 and 0.9 < float(normal.std()) < 1.1  # randn's, not [-9, 9]'s
    assert float(clamped.min()) == -0.5 and float(clamped.max()) == 0.5  # clamped, not rescaled
    assert 0.4 < float((clamped.abs() == 0.5).double().mean()) < 0.8  # P(|N(0, 1)| > 0.5) = 0.62
    assert permuted.shape == (2, 3, 4) and not permuted.is_contiguous()
    assert permuted.permute(1, 2, 0).is_contiguous()  # made as [3, 4, 2], then permuted
    assert literal.tolist() == [[1, 2, 3], [4, 5, 6]] and not literal.is_contiguous()
    assert both.shape == (3, 5) and not both.is_contiguous() and float(both.abs().max()) <= 1
    assert sample.input.requires_grad and sample.args[1].requires_grad and sample.args[1].is_leaf
    (complex_sample,) = entry.op.sample_inputs("cpu", torch.complex128, requires_grad=True)
    part = complex_sample.args[0].detach()
    assert part.is_complex() and float(part.real.abs().max()) <= 0.5 and float(part.imag.abs().max()) <= 0.5


def test_op_paths(project: Path) -> None:
    """Every way to name an op resolves to something OpInfo can hold and call."""
    shutil.copytree(EXAMPLE / "extops", project / "extops")
    (project / "gradci-ops.yml").write_text(
        """\
import: extops
ops:
  - op: torch.ops.extops.fused_gelu.default
    samples: [{input: {shape: [3]}}]
  - op: torch.ops.extops.softsign
    samples: [{input: {shape: [3]}}]
  - name: custom_op_object
    op: extops:fused_gelu
    samples: [{input: {shape: [3]}}]
  - name: function_class
    op: extops.functions:_ScaledMul
    samples: [{input: {shape: [3]}, args: [{shape: [3]}, 2.0, false]}]
  - name: dotted
    op: extops.functions.scale_shift
    inplace: extops.functions.scale_shift_
    samples: [{input: {shape: [3]}, args: [{shape: [3]}]}]
  - op: torch.sin
    samples: [{input: {shape: [3]}}]
"""
    )
    entries = {e.full_name: e.op for e in load_spec(Path("gradci-ops.yml"))}
    assert list(entries) == [
        "extops.fused_gelu",
        "extops.softsign",
        "custom_op_object",
        "function_class",
        "dotted",
        "sin",
    ]
    assert entries["extops.fused_gelu"].op is torch.ops.extops.fused_gelu.default
    assert entries["custom_op_object"].op is torch.ops.extops.fused_gelu.default  # checked via torch.ops
    import extops.functions

    assert entries["function_class"].op == extops.functions._ScaledMul.apply
    assert entries["dotted"].inplace_variant is extops.functions.scale_shift_
    for info in entries.values():
        sample = next(iter(info.sample_inputs("cpu", torch.float64, requires_grad=True)))
        out = info.op(sample.input, *sample.args, **sample.kwargs)
        assert out.shape == (3,)


def test_locations_are_relative_to_the_repository_root(tmp_path: Path) -> None:
    sub = tmp_path / "python" / "mylib"
    sub.mkdir(parents=True)
    (sub / "gradci-ops.yml").write_text(
        "ops:\n  - op: gradci_specops:two_x\n"
        + ONE
        + "\n  - name: second\n    op: gradci_specops:two_x\n"
        + ONE
    )
    done = gradci("ops", cwd=sub, env={"GITHUB_WORKSPACE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "two_x\tuser  python/mylib/gradci-ops.yml:2",
        "second\tuser  python/mylib/gradci-ops.yml:5",
    ]


# --- configuration: --spec, pick-up, --upstream --------------------------------------------------


def test_spec_is_picked_up_and_turns_upstream_off(tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text("ops:\n  - op: gradci_specops:two_x\n" + ONE)
    settings = resolve({}, environ={}, directory=tmp_path)
    assert settings.spec == tmp_path / "gradci-ops.yml" and settings.use_upstream is False
    assert resolve({"upstream": "true"}, environ={}, directory=tmp_path).use_upstream is True
    off = resolve({"spec": ""}, environ={}, directory=tmp_path)
    assert off.spec is None and off.use_upstream is True
    assert resolve({}, environ={"GRADCI_SPEC": "other.yml"}, directory=tmp_path).spec == Path("other.yml")
    (tmp_path / ".gradci.yml").write_text("spec: ops/mine.yml\n")
    assert resolve({}, environ={}, directory=tmp_path).spec == Path("ops/mine.yml")

    # the CLI: only the spec's op; with --upstream, upstream's too
    (tmp_path / ".gradci.yml").unlink()
    root = {"GITHUB_WORKSPACE": str(tmp_path)}  # locations are relative to it
    assert gradci("ops", cwd=tmp_path, env=root).stdout == "two_x\tuser  gradci-ops.yml:2\n"
    both = gradci("ops", "--upstream", "--ops", "two_x,sin", cwd=tmp_path, env=root)
    assert both.stdout.splitlines()[0] == "two_x\tuser  gradci-ops.yml:2"
    assert both.stdout.splitlines()[1].startswith("sin\top_db")


def test_two_spec_files_are_one_too_many(tmp_path: Path) -> None:
    for name in ("gradci-ops.yml", "gradci-ops.yaml"):
        (tmp_path / name).write_text("ops:\n  - op: gradci_specops:two_x\n" + ONE)
    with pytest.raises(SpecError) as info:
        resolve({}, environ={}, directory=tmp_path)
    # named from the working directory (here, another one: so in full)
    assert (
        str(info.value)
        == f"both {tmp_path / 'gradci-ops.yml'} and gradci-ops.yaml are there (keep one of them)"
    )
    assert resolve({"spec": "gradci-ops.yaml"}, environ={}, directory=tmp_path).spec == Path(
        "gradci-ops.yaml"
    )


def test_operator_definitions_in_the_config_file_are_pointed_at_the_spec(tmp_path: Path) -> None:
    (tmp_path / ".gradci.yml").write_text("ops:\n  - op: mypkg:f\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, environ={}, directory=tmp_path)
    assert "declare operators in gradci-ops.yml (--spec)" in str(info.value)


# --- each setting, on real gradchecks ----------------------------------------------------------------

FEATURES = """\
ops:
  - name: spec.off_default          # backward 0.3% off: fails gradcheck's rtol 1e-3
    op: gradci_specops:slightly_off
    samples: &vector [{input: {shape: [4]}}]
  - name: spec.off_tolerant
    op: gradci_specops:slightly_off
    gradcheck: {atol: 0.01, rtol: 0.01}
    samples: *vector
  - name: spec.nondet_default       # backward differs by 1e-10 between calls
    op: gradci_specops:nondeterministic
    samples: *vector
  - name: spec.nondet_tolerant
    op: gradci_specops:nondeterministic
    gradcheck: {nondet_tol: 1.0e-7}
    samples: *vector
  - name: spec.no_vmap_default      # backward cannot be batched
    op: gradci_specops:no_vmap
    samples: *vector
  - name: spec.no_vmap
    op: gradci_specops:no_vmap
    gradcheck: {check_batched_grad: false, check_batched_gradgrad: false}
    samples: *vector
  - name: spec.slow
    op: gradci_testops:wrong_scale
    gradcheck: {fast_mode: false}
    samples: *vector
  - name: spec.expectations
    op: gradci_testops:wrong_scale
    dtypes: [float64, complex128]
    xfail: {grad: "the backward for x is off by 1.5x (#12)"}
    skip:
      gradgrad: {reason: "complex double backward is slow", dtypes: [complex128]}
      inplace-grad: "no in-place variant yet"
    samples: *vector
  - name: spec.xpass
    op: gradci_testops:good_scale
    xfail: {grad: "thought broken"}
    samples: *vector
  - name: spec.raises
    op: gradci_specops:raises
    samples: *vector
"""


def test_settings_take_effect_on_real_gradchecks(tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text(FEATURES)
    done = gradci(
        "run", "--op-modules", "gradci_specops", "--checks", "grad,inplace-grad,gradgrad", cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    tests = results_of(tmp_path / "gradci-results.json")

    def result(check: str, op: str, dtype: str = "float64") -> dict[str, Any]:
        return tests[f"test_{check}_spec_{op}_cpu_{dtype}"]

    # tolerances reach gradcheck
    assert result("fn_grad", "off_default")["outcome"] == "failed"
    assert result("fn_grad", "off_default")["message"].startswith("GradcheckError: Jacobian mismatch")
    assert result("fn_grad", "off_tolerant")["outcome"] == "passed"
    # ... also from an OpInfo module's toleranceOverride DecorateInfo
    assert tests["test_fn_grad_opinfo_off_tolerant_cpu_float64"]["outcome"] == "passed"
    assert tests["test_fn_grad_opinfo_off_default_cpu_float64"]["outcome"] == "failed"
    # nondet_tol
    assert result("fn_grad", "nondet_default")["message"].startswith(
        "GradcheckError: Backward is not reentrant"
    )
    assert result("fn_grad", "nondet_tolerant")["outcome"] == "passed"
    # batched gradients
    assert "While computing batched gradients" in result("fn_grad", "no_vmap_default")["message"]
    assert result("fn_grad", "no_vmap")["outcome"] == "passed"
    # slow mode: gradcheck itself computes full Jacobians
    assert result("fn_grad", "slow")["outcome"] == "failed"
    assert result("fn_grad", "slow")["mismatch"]["mode"] == "slow"
    assert result("fn_grad", "off_default")["mismatch"]["mode"] == "fast"
    # expectations, upstream-shaped: xfailed with the reason, skipped with the reason
    xfailed = result("fn_grad", "expectations")
    assert xfailed["outcome"] == "xfailed"
    assert xfailed["message"].startswith(
        "expected failure: the backward for x is off by 1.5x (#12) (GradcheckError: Jacobian mismatch"
    )
    assert result("fn_grad", "expectations", "complex128")["outcome"] == "xfailed"
    assert result("fn_gradgrad", "expectations", "complex128") == {
        **result("fn_gradgrad", "expectations", "complex128"),
        "outcome": "skipped",
        "message": "complex double backward is slow",
    }
    assert result("fn_gradgrad", "expectations")["outcome"] == "passed"  # float64 is not skipped
    assert result("inplace_grad", "expectations")["message"] == "no in-place variant yet"
    assert result("fn_grad", "xpass")["outcome"] == "xpassed"
    # an op that raises inside a check is that test's failure, and the run goes on
    raised = result("fn_grad", "raises")
    assert raised["outcome"] == "failed" and raised["message"] == "ValueError: boom: this op always raises"
    assert "ValueError: boom" in raised["traceback"]
    assert len(tests) == 2 * 3 + 10 * 3 + 3  # 2 OpInfo-module ops, 10 spec ops, one also in complex128
    assert "XPASS test_fn_grad_spec_xpass_cpu_float64" in done.stdout


@pytest.mark.parametrize(("checks", "count"), [("backward", 65), ("forward", 39), ("opcheck", 12)])
def test_spec_ops_give_the_outcomes_of_hand_written_opinfos(tmp_path: Path, checks: str, count: int) -> None:
    """The example's spec and the same ops written as OpInfos (tests/fixtures/extops_opinfos.py), in
    the backward suite, the forward one (supports_forward_ad and friends, xfails of its checks) and
    opcheck (custom ops only, either way)."""
    shutil.copytree(EXAMPLE / "extops", tmp_path / "extops")
    shutil.copy(EXAMPLE / "gradci-ops.yml", tmp_path)
    root = {"GITHUB_WORKSPACE": str(tmp_path)}  # locations are relative to it
    common = ("--checks", checks, "--junit", "", "--reruns", "0")
    from_spec = gradci("run", "--json", "spec.json", *common, cwd=tmp_path, env=root)
    by_hand = gradci(
        "run", "--spec", "", "--op-modules", "extops_opinfos", "--json", "hand.json", *common, cwd=tmp_path, env=root
    )  # fmt: skip
    assert from_spec.returncode == by_hand.returncode == 1, from_spec.stderr + by_hand.stderr
    spec, hand = results_of(tmp_path / "spec.json"), results_of(tmp_path / "hand.json")
    assert sorted(spec) == sorted(hand) and len(spec) == count

    def essence(test: dict[str, Any]) -> tuple[Any, ...]:
        # the same samples (same seeds, same tensors), so the same mismatch to the digit
        return test["outcome"], test["message"], test.get("sample_index"), test.get("mismatch")

    assert {i: essence(t) for i, t in spec.items()} == {i: essence(t) for i, t in hand.items()}
    some = next(iter(sorted(spec)))
    assert spec[some]["location"]["file"] == "gradci-ops.yml"
    assert hand[some]["location"]["file"].endswith("extops_opinfos.py")


def test_spawned_workers_rebuild_spec_ops(tmp_path: Path) -> None:
    """The start method CUDA uses: each worker loads the spec again from the settings."""
    (tmp_path / "gradci-ops.yml").write_text(FEATURES)
    done = gradci(
        "run",
        "--ops",
        "spec.off_*,spec.expectations",
        "--checks",
        "grad",
        "--workers",
        "1",
        cwd=tmp_path,
        env={"GRADCI_START_METHOD": "spawn"},
    )
    assert done.returncode == 1, done.stderr
    outcomes = {i: t["outcome"] for i, t in results_of(tmp_path / "gradci-results.json").items()}
    assert outcomes == {
        "test_fn_grad_spec_off_default_cpu_float64": "failed",
        "test_fn_grad_spec_off_tolerant_cpu_float64": "passed",
        "test_fn_grad_spec_expectations_cpu_float64": "xfailed",
        "test_fn_grad_spec_expectations_cpu_complex128": "xfailed",
    }


GRADGRAD_ERRORS = """\
ops:
  - name: own_words           # double backward raises "double backwards on ... not supported"
    op: gradci_specops:square_no_gradgrad
    gradgrad_error: double backwards on \\w+ not supported
    samples: &vector [{input: {shape: [4]}}]
  - name: aten_words_expected # without gradgrad_error, fail-gradgrad wants aten's wording
    op: gradci_specops:square_no_gradgrad
    supports_gradgrad: false
    samples: *vector
  - name: other_words
    op: gradci_specops:square_no_gradgrad
    gradgrad_error: derivative for .* is not implemented
    samples: *vector
"""


def test_gradgrad_error_is_what_fail_gradgrad_verifies(tmp_path: Path) -> None:
    """An op whose double backward raises in its own words (torchvision's kernels do): with
    gradgrad_error matching them fail-gradgrad passes; with aten's default, or another regex, it fails."""
    (tmp_path / "gradci-ops.yml").write_text(GRADGRAD_ERRORS)
    done = gradci("run", "--checks", "grad,gradgrad,fail-gradgrad", "--reruns", "0", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    tests = results_of(tmp_path / "gradci-results.json")
    outcomes = {i: t["outcome"] for i, t in tests.items()}
    assert outcomes == {
        **{f"test_fn_grad_{op}_cpu_float64": "passed" for op in ("own_words", "aten_words_expected", "other_words")},
        **{f"test_fn_gradgrad_{op}_cpu_float64": "skipped" for op in ("own_words", "aten_words_expected", "other_words")},
        "test_fn_fail_gradgrad_own_words_cpu_float64": "passed",
        "test_fn_fail_gradgrad_aten_words_expected_cpu_float64": "failed",
        "test_fn_fail_gradgrad_other_words_cpu_float64": "failed",
    }  # fmt: skip
    for op in ("aten_words_expected", "other_words"):
        message = tests[f"test_fn_fail_gradgrad_{op}_cpu_float64"]["message"]
        assert message == (
            'AssertionError: "derivative for .* is not implemented" does not match "double backwards on '
            'square_no_gradgrad not supported"'
        )


DEFAULTS = """\
x-vector: &vector [{input: {shape: [4]}}]
defaults:
  dtypes: [float64, complex128]
  gradcheck: {atol: 0.01, rtol: 0.01, check_batched_grad: false}
  skip: {gradgrad: "double backward checked elsewhere"}
ops:
  - name: d.no_vmap            # inherits check_batched_grad: false
    op: gradci_specops:no_vmap
    samples: *vector
  - name: d.no_vmap_batched    # turns it back on, keeps the inherited tolerances
    op: gradci_specops:no_vmap
    gradcheck: {check_batched_grad: true}
    skip: {gradgrad: "its own reason"}
    samples: *vector
  - name: d.off                # 0.3% off: passes the inherited rtol 0.01
    op: gradci_specops:slightly_off
    samples: *vector
  - name: d.off_strict         # gradcheck's own tolerances again: fails, as its xfail says
    op: gradci_specops:slightly_off
    dtypes: [float64]
    gradcheck: {atol: 1.0e-5, rtol: 1.0e-3}
    xfail: {grad: "0.3% off"}
    samples: *vector
"""


def test_defaults_take_effect_on_real_gradchecks(tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text(DEFAULTS)
    done = gradci("run", "--checks", "grad,gradgrad", "--reruns", "0", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    tests = results_of(tmp_path / "gradci-results.json")
    outcomes = {i: t["outcome"] for i, t in tests.items() if i.startswith("test_fn_grad_")}
    assert outcomes == {
        "test_fn_grad_d_no_vmap_cpu_float64": "passed",
        "test_fn_grad_d_no_vmap_cpu_complex128": "passed",
        "test_fn_grad_d_no_vmap_batched_cpu_float64": "failed",
        "test_fn_grad_d_no_vmap_batched_cpu_complex128": "failed",
        "test_fn_grad_d_off_cpu_float64": "passed",
        "test_fn_grad_d_off_cpu_complex128": "passed",
        "test_fn_grad_d_off_strict_cpu_float64": "xfailed",
    }
    assert (
        "While computing batched gradients" in tests["test_fn_grad_d_no_vmap_batched_cpu_float64"]["message"]
    )
    gradgrad = {i: t["message"] for i, t in tests.items() if i.startswith("test_fn_gradgrad_")}
    assert len(gradgrad) == 7 and all(tests[i]["outcome"] == "skipped" for i in gradgrad)
    assert gradgrad["test_fn_gradgrad_d_no_vmap_batched_cpu_float64"] == "its own reason"
    assert gradgrad["test_fn_gradgrad_d_off_strict_cpu_float64"] == "double backward checked elsewhere"


REPEATED = """\
ops:
  - name: many                  # 30 draws with seeds of their own: one sums to more than 0
    op: gradci_specops:wrong_for_positive_sums
    samples: [{input: {shape: [2]}, repeat: 30}]
"""


def test_repeat_finds_what_one_draw_can_miss(tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text(REPEATED)
    done = gradci("run", "--checks", "grad", "--reruns", "0", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    (failed,) = results_of(tmp_path / "gradci-results.json").values()
    assert failed["outcome"] == "failed" and failed["message"].startswith("GradcheckError: Jacobian mismatch")
    index = failed["sample_index"]
    assert 0 <= index < 30
    assert f"name='samples[0] repeat {index + 1} of 30, seed " in failed["sample"]
    (numerical, analytical) = (
        float(failed["mismatch"]["numerical"]),
        float(failed["mismatch"]["analytical"]),
    )
    assert (numerical, analytical) == pytest.approx((2, 3))


LAYOUTS = """\
ops:
  - name: layout.contiguous    # reads memory as if contiguous: right for a contiguous input
    op: gradci_specops:strides_ignored
    samples: [{input: {shape: [3, 4]}}]
  - name: layout.permuted      # ... and wrong for a transposed one, which gradcheck catches
    op: gradci_specops:strides_ignored
    samples: [{input: {shape: [3, 4], permute: [1, 0]}}]
  - name: layout.mm            # a correct op on a permuted normal input
    op: torch.mm
    samples: [{input: {shape: [3, 4], distribution: normal, permute: [1, 0]}, args: [{shape: [4, 2], distribution: normal}]}]
"""


def test_permuted_inputs_reach_gradcheck(tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text(LAYOUTS)
    done = gradci("run", "--checks", "grad", "--reruns", "0", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    tests = results_of(tmp_path / "gradci-results.json")
    assert {i: t["outcome"] for i, t in tests.items()} == {
        "test_fn_grad_layout_contiguous_cpu_float64": "passed",
        "test_fn_grad_layout_permuted_cpu_float64": "failed",
        "test_fn_grad_layout_mm_cpu_float64": "passed",
    }
    failed = tests["test_fn_grad_layout_permuted_cpu_float64"]
    assert failed["message"].startswith("GradcheckError: Jacobian mismatch")
    assert "size=(3, 4)" in failed["sample"] and "contiguous=False" in failed["sample"]


BATCHED = """\
ops:
  - name: vmap.backward        # its backward leaves torch: only the batched (vmap) part fails
    op: gradci_specops:no_vmap
    samples: [{input: {shape: [4]}}]
  - name: vmap.forward         # its jvp branches on a value (.item()): only forward AD's batched part fails
    op: gradci_specops:no_vmap_jvp
    supports_forward_ad: true
    samples: [{input: {shape: [4]}}]
  - name: vmap.forward_off
    op: gradci_specops:no_vmap_jvp
    supports_forward_ad: true
    gradcheck: {check_batched_forward_grad: false}
    samples: [{input: {shape: [4]}}]
"""


def test_a_batched_check_failure_says_so_and_how_to_turn_it_off(tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text(BATCHED)
    done = gradci("run", "--checks", "grad,forward-ad", "--reruns", "0", "--progress", "plain", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    tests = results_of(tmp_path / "gradci-results.json")
    assert {i: t["outcome"] for i, t in tests.items()} == {
        "test_fn_grad_vmap_backward_cpu_float64": "failed",
        "test_forward_mode_AD_vmap_backward_cpu_float64": "passed",  # must raise: it has no jvp
        "test_fn_grad_vmap_forward_cpu_float64": "passed",
        "test_forward_mode_AD_vmap_forward_cpu_float64": "failed",
        "test_fn_grad_vmap_forward_off_cpu_float64": "passed",
        "test_forward_mode_AD_vmap_forward_off_cpu_float64": "passed",
    }
    backward = tests["test_fn_grad_vmap_backward_cpu_float64"]
    forward = tests["test_forward_mode_AD_vmap_forward_cpu_float64"]
    assert backward["message"].startswith("GradcheckError: While computing batched gradients")
    assert forward["message"].startswith("GradcheckError: While computing batched gradients")
    lines = {line.strip() for line in done.stdout.splitlines() if line.strip().startswith("FAILED ")}
    assert lines == {
        f"FAILED {backward['id']} - {backward['message']} (sample 0, in the batched gradient check, under "
        "vmap: turn it off for this op with gradcheck: {check_batched_grad: false})",
        f"FAILED {forward['id']} - {forward['message']} (sample 0, in the batched gradient check, under "
        "vmap: turn it off for this op with gradcheck: {check_batched_forward_grad: false})",
    }
    # the same headline in the JUnit XML
    junit = (tmp_path / "gradci-junit.xml").read_text()
    assert "under vmap: turn it off for this op with gradcheck: {check_batched_grad: false})" in junit


def test_inputs_are_named_by_parameter_where_the_signature_says(project: Path) -> None:
    from torch.testing._internal.common_methods_invocations import op_db

    from gradci.worker import input_labels, parameter_names

    shutil.copytree(EXAMPLE / "extops", project / "extops")
    (project / "gradci-ops.yml").write_text(
        """\
import: extops
ops:
  - op: gradci_specops:shifted                    # a function
    samples: [{input: {shape: [3]}, args: [{shape: [3]}], kwargs: {weight: {shape: [3]}}}]
  - op: gradci_specops:_Shifted                   # an autograd.Function: forward's names, ctx left out
    samples: [{input: {shape: [3]}, args: [{shape: [3]}, 2.0]}]
  - op: gradci_specops:_NoVmapJvp                 # ... with setup_context: forward has no ctx
    samples: [{input: {shape: [3]}}]
  - op: torch.ops.extops.fused_gelu.default       # a custom op: its schema's names
    samples: [{input: {shape: [3]}}]
  - op: gradci_specops:echo                       # *args: positions
    samples: [{input: [{shape: [3]}, {shape: [2]}], args: [{shape: [3]}], kwargs: {scale: {shape: [1]}}}]
"""
    )
    infos = {e.full_name: e.op for e in load_spec(Path("gradci-ops.yml"))}
    names = {name: parameter_names(info) for name, info in infos.items()}
    assert names == {
        "shifted": ("x", "offset", "weight"),
        "_Shifted": ("x", "offset", "weight"),
        "_NoVmapJvp": ("x",),
        "extops.fused_gelu": ("x",),
        "echo": None,
    }
    labels = {
        name: input_labels(
            next(iter(info.sample_inputs("cpu", torch.float64, requires_grad=True))), names[name]
        )
        for name, info in infos.items()
    }
    assert labels["shifted"] == ["x", "offset", "weight"]
    assert labels["echo"] == ["input[0]", "input[1]", "args[0]", "kwargs['scale']"]
    assert parameter_names(next(op for op in op_db if op.name == "mul")) is None  # upstream's: positions


def test_a_mismatch_names_the_parameter(tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text(
        "ops:\n  - op: gradci_specops:shifted\n    samples: [{input: {shape: [3]}, args: [{shape: [3]}]}]\n"
    )
    done = gradci("run", "--checks", "grad", "--reruns", "0", "--progress", "plain", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    (failed,) = results_of(tmp_path / "gradci-results.json").values()
    mismatch = failed["mismatch"]
    assert (mismatch["input"], mismatch["input_label"]) == (1, "offset")
    assert (float(mismatch["numerical"]), float(mismatch["analytical"])) == pytest.approx((2, 1))
    assert f"(sample 0, offset: numerical {mismatch['numerical']} vs analytical" in done.stdout
    junit = (tmp_path / "gradci-junit.xml").read_text()
    assert "output 0 w.r.t. input 1 (offset)" in junit
