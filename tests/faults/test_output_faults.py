"""Outputs that cannot be written: one line naming the file, exit 6 (or 2 for two outputs at one
path, before anything runs); the other outputs are written; an earlier run's file is never left
where this run's could not go. Special files are written to, not replaced.

The read-only and full filesystems are real: tmpfs mounts (as root; skipped otherwise).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import gradci

from gradci.errors import OutputError
from gradci.results import load

RUN = ("run", "--ops", "add", "--checks", "grad", "--dtypes", "float64")


def _mount(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 KiB filesystem (one page) holding an earlier run's results."""
    target = tmp_path / "small"
    _mount(target, "size=4k")
    (target / "gradci-results.json").write_text('{"stale": true}')
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "ro"
    _mount(target, "ro,size=16k")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gradci: error:")]


def test_the_same_path_twice_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = gradci(*RUN, "--json", "out.xml", "--junit", "./out.xml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert _error_lines(done.stderr) == [
        "gradci: error: --json and --junit name the same file out.xml (give each its own path)"
    ]
    assert "running" not in done.stderr and list(tmp_path.iterdir()) == []


def test_a_path_under_a_regular_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "reports").write_text("a file, not a folder")
    done = gradci(*RUN, "--junit", "reports/junit.xml", cwd=tmp_path)
    assert done.returncode == OutputError.exit_code == 6, done.stderr
    assert _error_lines(done.stderr) == [
        "gradci: error: cannot write --junit reports/junit.xml: Not a directory"
    ]
    assert not (tmp_path / "gradci-results.json").exists()


def test_a_read_only_filesystem_is_refused_before_anything_runs(tmp_path: Path, read_only_fs: Path) -> None:
    done = gradci(*RUN, "--json", str(read_only_fs / "r.json"), cwd=tmp_path)
    assert done.returncode == 6, done.stderr
    assert _error_lines(done.stderr) == [
        f"gradci: error: cannot write --json {read_only_fs / 'r.json'}: Read-only file system"
    ]


def test_a_full_filesystem_loses_one_file_and_the_stale_one_goes(tmp_path: Path, small_fs: Path) -> None:
    """The results JSON does not fit: exit 6 naming it, the JUnit XML elsewhere is written, and the
    earlier run's results there are removed rather than left to pass for this run's."""
    done = gradci(
        "run",
        "--ops",
        "add,mul,sub",
        "--json",
        str(small_fs / "gradci-results.json"),
        "--junit",
        "junit.xml",
        cwd=tmp_path,
    )
    assert done.returncode == 6, done.stderr
    [line] = _error_lines(done.stderr)
    assert line == (
        f"gradci: error: cannot write {small_fs / 'gradci-results.json'}: No space left on device "
        "(the file an earlier run left there was removed)"
    )
    assert not (small_fs / "gradci-results.json").exists()
    assert list(small_fs.iterdir()) == []  # no temporary file left behind
    assert "test_fn_grad_add_cpu_float64" in (tmp_path / "junit.xml").read_text()
    assert "== " in done.stdout  # the console summary, too


def test_dev_full_is_written_to_and_fails_alone(tmp_path: Path) -> None:
    done = gradci(*RUN, "--json", "/dev/full", cwd=tmp_path)
    assert done.returncode == 6, done.stderr
    assert _error_lines(done.stderr) == ["gradci: error: cannot write /dev/full: No space left on device"]
    assert (tmp_path / "gradci-junit.xml").is_file()
    assert Path("/dev/full").is_char_device()


def test_dev_stdout_is_written_to_not_replaced(tmp_path: Path) -> None:
    done = gradci(*RUN, "--junit", "/dev/stdout", "--progress", "none", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<?xml") and "test_fn_grad_add_cpu_float64" in done.stdout
    assert Path("/dev/stdout").is_symlink()
    assert load(tmp_path / "gradci-results.json").tests


def test_a_symlinked_output_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link.json").symlink_to(tmp_path / "real" / "results.json")
    done = gradci(*RUN, "--json", "link.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "real" / "results.json").read_text())["tests"]


def test_merge_and_compare_outputs_fail_alike(tmp_path: Path) -> None:
    assert gradci(*RUN, cwd=tmp_path).returncode == 0
    (tmp_path / "blocked").write_text("")
    done = gradci("merge", "gradci-results.json", "-o", "blocked/m.json", cwd=tmp_path)
    assert done.returncode == 6 and "cannot write --output blocked/m.json: Not a directory" in done.stderr
    done = gradci("merge", "gradci-results.json", "-o", "m.json", "--junit", "m.json", cwd=tmp_path)
    assert done.returncode == 2 and "--output and --junit name the same file" in done.stderr
    done = gradci(
        "compare", "gradci-results.json", "gradci-results.json", "--json", "/dev/full", cwd=tmp_path
    )
    assert done.returncode == 6 and "cannot write /dev/full: No space left on device" in done.stderr
    assert "no new failures" in done.stdout  # the report still printed
    done = gradci("report", "gradci-results.json", "-o", "blocked/r.md", cwd=tmp_path)
    assert done.returncode == 6 and "cannot write --output blocked/r.md" in done.stderr
