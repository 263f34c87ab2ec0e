"""Which malloc the test processes use.

gradcheck allocates and frees many small tensors; jemalloc and tcmalloc serve that pattern faster
than glibc's malloc (PyTorch's CPU performance guide recommends either), about 10% of the full
suite's wall time here (docs/performance.md). An allocator can only be chosen when a process
starts, so ``gradci run`` re-executes itself once, before importing torch, with the library in
``LD_PRELOAD``; the forked workers inherit it. Outcomes do not depend on it: arithmetic is the same.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError
from .options import ALLOCATORS

_LIBRARIES = {"jemalloc": ("jemalloc",), "tcmalloc": ("tcmalloc_minimal", "tcmalloc")}
# Set in the re-executed process: which allocator it runs with ("system" when none was preloaded).
ACTIVE = "GRADCI_ALLOCATOR_ACTIVE"


def _find(kind: str) -> str | None:
    for name in _LIBRARIES[kind]:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def library(choice: str) -> str | None:
    """The shared library to preload for ``choice``, or None for glibc's malloc."""
    if choice == "system" or not sys.platform.startswith("linux"):
        return None
    if choice == "auto":
        return _find("jemalloc") or _find("tcmalloc")
    if choice in _LIBRARIES:
        found = _find(choice)
        if found is None:
            package = "libjemalloc2" if choice == "jemalloc" else "libtcmalloc-minimal4"
            raise ConfigError(
                f"allocator {choice}: the library is not installed", hint=f"e.g. apt-get install {package}"
            )
        return found
    if not Path(choice).is_file():
        raise ConfigError(
            f"allocator {choice!r}: expected {', '.join(ALLOCATORS)} or the path of a malloc library"
        )
    return str(Path(choice).resolve())


def active() -> str:
    return os.environ.get(ACTIVE, "system")


def reexec_with(choice: str, argv: Sequence[str]) -> None:
    """Start this gradci command again with the allocator preloaded; returns if nothing is to be done."""
    if ACTIVE in os.environ:
        return  # this is the re-executed process (or the choice was made already)
    lib = library(choice)
    if lib is None:
        os.environ[ACTIVE] = "system"
        return
    preload = " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))
    env = {**os.environ, "LD_PRELOAD": preload, ACTIVE: Path(lib).name}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "gradci", *argv], env)
