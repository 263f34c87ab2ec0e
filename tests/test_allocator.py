"""--allocator: the test processes really run with the chosen malloc, and bad choices are one line."""

from __future__ import annotations

import ctypes.util
import json
from pathlib import Path

import pytest

INSTALLED = ctypes.util.find_library("jemalloc") or ctypes.util.find_library("tcmalloc_minimal")


def _run(run_gradci, tmp_path: Path, *args: str, expect: str) -> dict:
    done = run_gradci(
        "run",
        "--op-modules",
        "gradci_allocops",
        "--checks",
        "grad",
        *args,
        env={"GRADCI_TEST_EXPECT_ALLOCATOR": expect},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "gradci-results.json").read_text())["run"]


def test_system_malloc(run_gradci, tmp_path: Path) -> None:
    run = _run(run_gradci, tmp_path, "--allocator", "system", expect="system")
    assert run["allocator"] == "system"


@pytest.mark.skipif(
    not INSTALLED, reason="neither jemalloc nor tcmalloc is installed (apt-get install libjemalloc2)"
)
def test_auto_preloads_an_installed_allocator_into_the_workers(run_gradci, tmp_path: Path) -> None:
    run = _run(run_gradci, tmp_path, expect="preloaded")  # the probe op fails unless the worker has it loaded
    assert run["allocator"] in ("libjemalloc.so.2", "libtcmalloc_minimal.so.4", "libtcmalloc.so.4")


def test_a_missing_library_is_one_line_exit_2(run_gradci) -> None:
    done = run_gradci("run", "--op-modules", "gradci_allocops", "--allocator", "/no/such/libmalloc.so")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "gradci: error: allocator '/no/such/libmalloc.so': expected auto, system, jemalloc, tcmalloc "
        "or the path of a malloc library"
    )
