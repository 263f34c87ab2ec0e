"""Hostile and corrupt results files: every command that reads one (``report``, ``compare``,
``merge``, ``run --baseline``) says in one line that it is unusable and exits with 3, never 70,
never a traceback. ``compare`` and ``run --baseline`` with an unusable *base* still report the
head results.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import gradci
from results_factory import result, results

from gradci.results import MAX_FILE_BYTES, Outcome, load


def _good() -> dict[str, Any]:
    return results([result("test_fn_grad_add_cpu_float64", Outcome.PASSED)]).to_json()


def _with_test(**fields: Any) -> str:
    data = _good()
    data["tests"][0].update(fields)
    return json.dumps(data)


def _nested(depth: int) -> str:
    return '{"schema": "gradci.results", "version": 2, "run": ' + "[" * depth + "]" * depth + "}"


HOSTILE: dict[str, Callable[[], str | bytes]] = {
    "bare NaN duration": lambda: _with_test(duration=1.0).replace('"duration": 1.0', '"duration": NaN'),
    "bare Infinity duration": lambda: _with_test(duration=1.0).replace(
        '"duration": 1.0', '"duration": Infinity'
    ),
    "NaN string duration": lambda: _with_test(duration="NaN"),
    "negative duration": lambda: _with_test(duration=-1),
    "string duration": lambda: _with_test(duration="3 seconds"),
    "integer id": lambda: _with_test(id=12345),
    "list message": lambda: _with_test(message=["a", "b"]),
    "unknown outcome": lambda: _with_test(outcome="exploded"),
    "bool sample index": lambda: _with_test(sample_index=True),
    "mismatch without mode": lambda: _with_test(
        mismatch={"output": 0, "input": 0, "max_abs_error": 1.0, "max_rel_error": None}
    ),
    "attempts of strings": lambda: _with_test(attempts=["failed"]),
    "gradcheck without sets": lambda: _with_test(gradcheck={"calls": 1}),
    "gradcheck set of another function": lambda: _with_test(
        gradcheck={"calls": 1, "sets": [{"function": "os.system", "calls": 1, "settings": {}}]}
    ),
    "gradcheck setting a list": lambda: _with_test(
        gradcheck={"calls": 1, "sets": [{"function": "gradcheck", "calls": 1, "settings": {"atol": [1]}}]}
    ),
    "gradcheck setting name with a newline": lambda: _with_test(
        gradcheck={"calls": 1, "sets": [{"function": "gradcheck", "calls": 1, "settings": {"a\nb": 1}}]}
    ),
    "gradcheck negative calls": lambda: _with_test(gradcheck={"calls": -1, "sets": []}),
    "tests not a list": lambda: json.dumps({**_good(), "tests": {"a": 1}}),
    "run not an object": lambda: json.dumps({**_good(), "run": "yesterday"}),
    "deep nesting": lambda: _nested(100_000),
    "truncated": lambda: json.dumps(_good())[:-40],
    "wrong schema": lambda: json.dumps({**_good(), "schema": "junit"}),
    "future version": lambda: json.dumps({**_good(), "version": 99}),
    "string version": lambda: json.dumps({**_good(), "version": "2"}),
    "not UTF-8": lambda: b"\xff\xfe" + json.dumps(_good()).encode("utf-16-le"),
    "empty": lambda: "",
    "a list": lambda: "[]",
}


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "good.json", json.dumps(_good()))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_report_and_merge_refuse_with_exit_3(tmp_path: Path, case: str) -> None:
    bad = _write(tmp_path / "bad.json", HOSTILE[case]())
    for args in (["report", str(bad)], ["merge", str(bad), "-o", "merged.json"]):
        done = gradci(*args, cwd=tmp_path)
        assert done.returncode == 3, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gradci: error: ") and str(bad) in lines[0], lines
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert not (tmp_path / "merged.json").exists()


@pytest.mark.parametrize("case", ["bare NaN duration", "integer id", "deep nesting", "not UTF-8"])
def test_compare_with_an_unusable_base_still_reports_the_head(
    tmp_path: Path, good_file: Path, case: str
) -> None:
    bad = _write(tmp_path / "base.json", HOSTILE[case]())
    done = gradci("compare", str(bad), str(good_file), cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "not compared: base results unusable" in done.stdout  # the head, reported
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    done = gradci("compare", str(good_file), str(bad), cwd=tmp_path)  # unusable head: nothing to report
    assert done.returncode == 3 and done.stdout == ""


def test_run_with_an_unusable_baseline_runs_then_exits_3(tmp_path: Path) -> None:
    bad = _write(tmp_path / "base.json", HOSTILE["list message"]())
    done = gradci("run", "--ops", "add", "--checks", "grad", "--baseline", str(bad), cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "tests[0].message: expected a string" in done.stderr
    assert load(tmp_path / "gradci-results.json").tests[0].outcome is Outcome.PASSED


def test_a_file_larger_than_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:  # sparse: no disk, no memory
        handle.truncate(MAX_FILE_BYTES + 1)
    done = gradci("report", str(huge), cwd=tmp_path)
    assert done.returncode == 3 and "larger than gradci reads (512 MiB)" in done.stderr


def test_version_1_files_are_still_read(tmp_path: Path) -> None:
    data = _good()
    data["version"] = 1
    old = _write(tmp_path / "v1.json", json.dumps(data))
    done = gradci("report", str(old), "--format", "text", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gradci: 1 test · no failures\n")


def test_non_finite_errors_round_trip(tmp_path: Path) -> None:
    """A mismatch with NaN and infinite errors: written as strings, read back as floats, merged."""
    data = _good()
    data["tests"][0].update(
        outcome="failed",
        mismatch={
            "output": 0,
            "input": 0,
            "max_abs_error": "NaN",
            "max_rel_error": "Infinity",
            "slow_mode_max_diff": "-Infinity",
            "at": [],
            "numerical": "nan",
            "analytical": "inf",
            "mode": "fast",
        },
    )
    source = _write(tmp_path / "a.json", json.dumps(data))
    done = gradci("merge", str(source), "-o", "merged.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "merged.json").read_text()
    json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token} in the JSON"))
    mismatch = load(tmp_path / "merged.json").tests[0].mismatch
    assert mismatch is not None and str(mismatch.max_abs_error) == "nan"
    assert (mismatch.max_rel_error, mismatch.slow_mode_max_diff) == (float("inf"), float("-inf"))
    assert (tmp_path / "merged.json").stat().st_size > 0
