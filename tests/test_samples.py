"""``gradci samples`` / ``gradci ops -v`` and the gradcheck settings in the results: real torch, real
OpInfos (upstream's and a project's), the example extension's spec; what the display shows is what a
run records."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import REPO, gradci

from gradci.results import MAX_SETS, Results, load
from gradci.samples import Recorder, printable

SCHEMA = json.loads((REPO / "gradci" / "schemas" / "results-v2.schema.json").read_text())
OPS = ("--op-modules", "gradci_sampleops")


def _block(text: str, test_id: str) -> list[str]:
    """The lines under ``check: TEST_ID`` in the settings part, up to the next check."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(f": {test_id}"))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("      "):
            break
        block.append(line.strip())
    return block


def test_an_upstream_op_shows_its_samples_and_settings_and_ops_v_says_the_same(tmp_path: Path) -> None:
    done = gradci("samples", "abs", "--dtypes", "float64", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("abs (op_db; ")
    assert "  parameters: self\n" in out  # from aten's schema
    assert re.search(
        r"    sample 0:\n      input \(self\)  tensor \(20, 20\) float64, requires_grad, range ", out
    )
    grad = _block(out, "test_fn_grad_abs_cpu_float64")
    assert grad[0].startswith("gradcheck x") and "fast_mode=True atol=1e-05 rtol=0.001" in grad[0]
    assert "check_batched_grad=True" in grad[0] and "check_grad_dtypes=True" in grad[0]
    gradgrad = _block(out, "test_fn_gradgrad_abs_cpu_float64")
    assert "gen_non_contig_grad_outputs=False|True" in gradgrad[0]  # torch's helper calls it twice
    assert _block(out, "test_fn_fail_gradgrad_abs_cpu_float64") == [
        "skipped: Skipped! Operation does support gradgrad"
    ]

    verbose = gradci("ops", "-v", "--ops", "abs", "--dtypes", "float64", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stdout == out

    unknown = gradci("samples", "abss", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        "gradci: error: op pattern 'abss' matches no operator (did you mean abs?)"
    ]


def _settings(record: dict[str, Any]) -> dict[str, list[str]]:
    """Per function, 'key=value' as the display writes each (values seen, joined with |)."""
    shown: dict[str, dict[str, list[str]]] = {}
    for one in record["sets"]:
        keys = shown.setdefault(one["function"], {})
        for key, value in one["settings"].items():
            text = str(value)
            if text not in keys.setdefault(key, []):
                keys[key].append(text)
    return {f: [f"{k}={'|'.join(v)}" for k, v in keys.items()] for f, keys in shown.items()}


def test_the_settings_shown_are_those_a_run_records(tmp_path: Path) -> None:
    """A project's op with every gradcheck field of its OpInfo changed and a toleranceOverride: the
    dry run of ``gradci samples`` and a real run agree on every setting of every test."""
    args = ("--ops", "samples.tuned", "--checks", "grad,gradgrad", *OPS)
    shown = gradci("samples", "samples.tuned", "--checks", "grad,gradgrad", *OPS, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "  parameters: x, weight, scale, index\n" in out
    noncontiguous = (
        r"input \(x\) +tensor \(3, 4\) float64, requires_grad, non-contiguous, strides \(1, 3\), range "
    )
    assert re.search(noncontiguous, out)
    assert re.search(r"args\[0\] \(weight\) +tensor \(2,\) float64, requires_grad, range ", out)
    assert re.search(r"args\[0\] \(weight\) +tensor \(3,\) float64, range ", out)  # no grad
    assert re.search(r"kwargs\['scale'\] +0.5 \(float\)\n", out)
    assert re.search(r"kwargs\['index'\] +tensor \(2,\) int64, range 0..2\n", out)

    run = gradci("run", *args, "--workers", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout
    data = json.loads((tmp_path / "gradci-results.json").read_text())
    jsonschema.validate(data, SCHEMA)
    tests = {t["id"]: t for t in data["tests"]}
    grad = tests["test_fn_grad_samples_tuned_cpu_float64"]["gradcheck"]
    assert grad["calls"] == 2 and len(grad["sets"]) == 1  # one call per sample, the same settings
    first = grad["sets"][0]
    assert (first["function"], first["calls"], first["first_sample"]) == ("gradcheck", 2, 0)
    # the OpInfo's fields, and the toleranceOverride gradci passes for a project's op
    assert (
        first["settings"]
        | {
            "fast_mode": False,
            "atol": 1e-4,
            "rtol": 2e-3,
            "nondet_tol": 1e-9,
            "check_batched_grad": False,
        }
        == first["settings"]
    )
    gradgrad = tests["test_fn_gradgrad_samples_tuned_cpu_float64"]["gradcheck"]
    assert gradgrad["calls"] == 4
    assert [s["settings"]["gen_non_contig_grad_outputs"] for s in gradgrad["sets"]] == [False, True]
    assert all(
        s["settings"]["check_batched_grad"] is False for s in gradgrad["sets"]
    )  # check_batched_gradgrad

    for test_id, test in tests.items():
        line = " ".join(_block(out, test_id))
        for function, pairs in _settings(test["gradcheck"]).items():
            assert f"{function} x" in line
            for pair in pairs:
                assert pair in line.split(), (test_id, pair)

    # the file reads back as it was written; without the field (an older v2 file) it still loads
    results = load(tmp_path / "gradci-results.json")
    assert results.to_json()["tests"] == data["tests"]
    for test in data["tests"]:
        test.pop("gradcheck", None)
    older = Results.from_json(data)
    assert all(t.gradcheck is None for t in older.tests)
    jsonschema.validate(older.to_json(), SCHEMA)


def test_spec_ops_show_parameter_names_and_the_spec_s_tensors(tmp_path: Path) -> None:
    project = tmp_path / "extension"
    shutil.copytree(
        REPO / "examples" / "extension",
        project,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "gradci-results.json", "*.xml"),
    )
    done = gradci(
        "samples",
        "extops.scale_shift",
        "extops.fused_gelu",
        "--checks",
        "grad",
        "--dtypes",
        "float64",
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    blocks = out.split("\n\n")
    assert [b.split(" ", 1)[0] for b in blocks] == ["extops.fused_gelu", "extops.scale_shift"]  # spec order
    assert blocks[1].startswith("extops.scale_shift (user; gradci-ops.yml:30)")
    assert "  parameters: x, shift\n" in blocks[1]  # the autograd.Function's forward, less ctx
    assert re.search(r"args\[0\] \(shift\)  tensor \(4,\) float64, range ", blocks[1])  # requires_grad: false
    assert "kwargs['scale']  -2.0 (float)" in blocks[1]
    assert "  parameters: x\n" in blocks[0]  # the custom op's schema
    assert re.search(
        r"input \(x\)  tensor \(2, 3\) float64, requires_grad, non-contiguous, strides ", blocks[0]
    )
    assert re.search(r"input \(x\)  tensor \(\) float64, requires_grad, range -?\d", blocks[0])


def test_hostile_names_and_reprs_are_escaped(tmp_path: Path) -> None:
    done = gradci("samples", "samples.evil*", "--checks", "grad", *OPS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in out.splitlines():
        assert line == "" or line.isprintable(), repr(line)  # no \r, ESC, bidi override
        assert not line.lstrip().startswith("::") and "##[" not in line, line
    assert out.startswith(r"samples.evil\n::error::INJECTED\r\x1b[2K (user; ")
    assert r"kwargs['thing']  line1\n::error::INJECTED\r\x1b[31mred\u202e (Hostile)" in out
    assert r"kwargs['label']  'a\nb\r::warning::c' (str)" in out


def test_the_recorder_keeps_each_distinct_set_once_and_at_most_max_sets() -> None:
    sample = [0]
    recorder = Recorder(lambda: sample[0])
    assert recorder.to_json() is None  # no call: no gradcheck object
    for sample[0] in range(3):
        recorder.record("gradcheck", {"atol": 1e-5, "fast_mode": True})
    sample[0] = 3
    recorder.record("gradgradcheck", {"atol": 1e-5, "fast_mode": True})
    record = recorder.to_json()
    assert record == {
        "calls": 4,
        "sets": [
            {
                "function": "gradcheck",
                "calls": 3,
                "first_sample": 0,
                "settings": {"atol": 1e-5, "fast_mode": True},
            },
            {
                "function": "gradgradcheck",
                "calls": 1,
                "first_sample": 3,
                "settings": {"atol": 1e-5, "fast_mode": True},
            },
        ],
    }
    recorder.reset()
    for eps in range(MAX_SETS + 3):
        recorder.record("gradcheck", {"eps": eps, "odd": object()})
    record = recorder.to_json()
    assert record is not None and len(record["sets"]) == MAX_SETS and record["sets_left_out"] == 3
    assert record["sets"][0]["settings"]["odd"].startswith("<object object at ")  # a repr, as text


def test_printable_escapes_every_line_break_and_control() -> None:
    assert printable("a\nb\rc\x1b\u2028\u202e\x85 d") == r"a\nb\rc\x1b\u2028\u202e\x85 d"
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


@pytest.mark.parametrize(
    "bad", [{"calls": 1, "sets": [{"function": "gradcheck", "calls": 0, "settings": {}}]}]
)
def test_a_bad_gradcheck_object_is_named(bad: dict[str, Any]) -> None:
    from results_factory import result, results

    from gradci.errors import ResultsFileError
    from gradci.results import Outcome

    data = results([result("test_fn_grad_add_cpu_float64", Outcome.PASSED)]).to_json()
    data["tests"][0]["gradcheck"] = bad
    with pytest.raises(ResultsFileError, match=r"tests\[0\]\.gradcheck\.sets\[0\]\.calls"):
        Results.from_json(data)
