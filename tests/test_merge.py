"""``gradci merge``: shards joined into one results file and JUnit XML, and what it refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO, gradci
from junitparser import JUnitXml
from lxml import etree
from results_factory import result, results, save, tid

from gradci.errors import ResultsFileError
from gradci.merge import merge

SCHEMA = json.loads((REPO / "gradci/schemas/results-v2.schema.json").read_text())
XSD = Path(os.environ.get("GRADCI_JUNIT_XSD", REPO.parent / "shared" / "junit" / "junit-10.xsd"))


def _shard(k: int, n: int, ops: str, **run):
    return results(
        [result(op, "failed" if op.startswith("x") else "passed") for op in ops],
        selection={"ops": [], "shard": f"{k}/{n}"},
        **run,
    )


def test_merge_joins_shards() -> None:
    one = _shard(1, 2, "abx", started_at="2026-01-01T10:00:05+00:00", duration=100.0)
    two = _shard(2, 2, "cd", started_at="2026-01-01T10:00:00+00:00", duration=120.0)
    two.run.finished_at = "2026-01-01T10:09:00+00:00"
    merged, warnings = merge([("one.json", one), ("two.json", two)], command=["gradci", "merge"])
    assert warnings == []
    assert [t.id for t in merged.tests] == sorted(tid(op) for op in "abxcd")
    run = merged.run
    assert run.started_at == "2026-01-01T10:00:00+00:00" and run.finished_at == "2026-01-01T10:09:00+00:00"
    assert run.duration == 120.0  # shards ran side by side: the longest is the wall time
    assert run.selection["shard"] is None and run.command == ["gradci", "merge"]
    assert [p["file"] for p in run.merged_from] == ["one.json", "two.json"]
    assert [p["shard"] for p in run.merged_from] == ["1/2", "2/2"]
    data = json.loads(json.dumps(merged.to_json()))
    jsonschema.validate(data, SCHEMA)
    assert data["summary"] == {
        "total": 5, "passed": 4, "failed": 1, "error": 0, "skipped": 0, "xfailed": 0, "xpassed": 0, "flaky": 0
    }  # fmt: skip


def test_overlap_is_refused_unless_allowed() -> None:
    one = _shard(1, 2, "ab")
    two = results([result("b", "failed"), result("c")], selection={"shard": "2/2"})
    with pytest.raises(ResultsFileError, match=r"1 test id\(s\) appear in more than one file") as caught:
        merge([("one.json", one), ("two.json", two)])
    assert tid("b") in str(caught.value) and "one.json, two.json" in str(caught.value)
    assert "--allow-overlap" in str(caught.value)
    merged, warnings = merge([("one.json", one), ("two.json", two)], allow_overlap=True)
    assert {t.id: t.outcome.value for t in merged.tests}[tid("b")] == "failed"  # the worse result
    assert len(merged.tests) == 3 and "the worse result of each is kept" in warnings[0]


def test_mixed_torch_or_device_is_refused_unless_allowed() -> None:
    one = _shard(1, 2, "a")
    two = _shard(2, 2, "b", torch_version="2.12.0+cpu")
    with pytest.raises(ResultsFileError, match=r"different environments: torch 2\.13\.0"):
        merge([("one.json", one), ("two.json", two)])
    merged, warnings = merge([("one.json", one), ("two.json", two)], allow_mixed=True)
    assert merged.run.torch_version == "2.13.0+cpu, 2.12.0+cpu" and "different environments" in warnings[0]
    cuda = results([result("c", device="cuda")], device="cuda", selection={"shard": "2/2"})
    with pytest.raises(ResultsFileError, match="on cuda"):
        merge([("one.json", one), ("cuda.json", cuda)])


def test_lesser_differences_are_warnings() -> None:
    one = _shard(1, 3, "a", git_sha="1" * 40)
    two = _shard(3, 3, "b", git_sha="2" * 40, interrupted=True)
    merged, warnings = merge([("one.json", one), ("two.json", two)])
    text = " | ".join(warnings)
    assert "different commits" in text and "shard(s) 2/3 missing" in text and "interrupted" in text
    assert merged.run.git_sha is None and merged.run.interrupted is True


def test_nothing_to_merge() -> None:
    with pytest.raises(ResultsFileError, match="nothing to merge"):
        merge([])


def test_merge_command_writes_results_and_junit(tmp_path: Path) -> None:
    save(tmp_path / "s1.json", _shard(1, 2, "abx").tests, selection={"shard": "1/2"})
    save(tmp_path / "s2.json", _shard(2, 2, "cd").tests, selection={"shard": "2/2"})
    done = gradci("merge", "s1.json", "s2.json", "-o", "all.json", "--junit", "all.xml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("merged 2 results files: 1 failed, 4 passed")
    data = json.loads((tmp_path / "all.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert len(data["tests"]) == 5
    xml = JUnitXml.fromfile(str(tmp_path / "all.xml"))
    cases = {case.name for suite in xml for case in suite}
    assert cases == {t["id"] for t in data["tests"]}
    if XSD.is_file():
        schema = etree.XMLSchema(etree.parse(str(XSD)))
        assert schema.validate(etree.parse(str(tmp_path / "all.xml"))), schema.error_log


def test_merge_command_errors(tmp_path: Path) -> None:
    save(tmp_path / "s1.json", [result("a")])
    done = gradci("merge", "s1.json", "s1.json", "-o", "all.json", cwd=tmp_path)
    assert done.returncode == 3 and not (tmp_path / "all.json").exists()
    assert done.stderr.startswith("gradci: error: 1 test id(s) appear in more than one file")
    done = gradci("merge", "s1.json", "s1.json", "-o", "all.json", "--allow-overlap", cwd=tmp_path)
    assert done.returncode == 0 and "warning: 1 test id(s)" in done.stderr
    (tmp_path / "cut.json").write_text('{"schema": "gradci.results", "vers')
    done = gradci("merge", "s1.json", "cut.json", "-o", "all.json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (3, "gradci: error: cut.json: truncated (line 1, column 30)\n")
    done = gradci("merge", "s1.json", cwd=tmp_path)  # -o is required
    assert done.returncode == 2 and "-o/--output" in done.stderr


def test_real_shards_merge_to_the_whole_run(run_gradci, tmp_path: Path) -> None:
    """Three real runs: shard 1/2, shard 2/2, and everything; the merge equals the whole."""
    selection = ["--op-modules", "gradci_testops", "--ops", "testops.*scale,testops.known_bad,testops.fixed"]
    selection += ["--checks", "grad,gradgrad", "--junit", ""]
    for name, extra in (("s1", ["--shard", "1/2"]), ("s2", ["--shard", "2/2"]), ("all", [])):
        done = run_gradci("run", *selection, *extra, "--json", f"{name}.json")
        assert done.returncode in (0, 1), done.stderr
    done = run_gradci("merge", "s1.json", "s2.json", "-o", "merged.json", "--junit", "merged.xml")
    assert done.returncode == 0, done.stderr

    def outcomes(name: str) -> dict[str, str]:
        return {t["id"]: t["outcome"] for t in json.loads((tmp_path / name).read_text())["tests"]}

    whole, merged = outcomes("all.json"), outcomes("merged.json")
    assert merged == whole and len(whole) == 8 and set(whole.values()) >= {"passed", "failed", "xfailed"}
    assert outcomes("s1.json").keys().isdisjoint(outcomes("s2.json").keys())
    done = run_gradci("compare", "all.json", "merged.json", "--json", "cmp.json")
    assert done.returncode == 0 and done.stdout.startswith(
        "gradci: 8 tests ±0 · no new failures · 1 still failing on base · "
    )
    assert not any(
        json.loads((tmp_path / "cmp.json").read_text())["tests"][k] for k in ("new_test", "removed_test")
    )
