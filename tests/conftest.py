from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def json(self, path: Path) -> Any:
        return json.loads(path.read_text())


def gradci(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Completed:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.pop("GITHUB_ACTIONS", None)
    full_env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "gradci", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Completed(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def run_gradci(tmp_path: Path):
    def call(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Completed:
        return gradci(*args, cwd=cwd or tmp_path, env=env)

    return call
