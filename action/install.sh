#!/usr/bin/env bash
# The action's first step: gradci in a virtualenv of its own, on top of the job's Python, so that it
# checks the torch and the project the job installed (CPU or CUDA) without touching them.
#   IN_PYTHON   the job's interpreter (input python)
#   IN_PACKAGE  what to pip install (input gradci-package; default: this action's own source)
#   IN_COMMAND  run | publish | merge: only `run` needs torch
set -euo pipefail

python=${IN_PYTHON:-python3}
package=${IN_PACKAGE:-$GITHUB_ACTION_PATH}
venv="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/gradci-venv"

if ! command -v "$python" > /dev/null; then
  echo "::error title=gradci::no Python '$python' (input python): set one up first, e.g. with actions/setup-python"
  exit 2
fi
"$python" -m venv --clear --system-site-packages "$venv"

# --system-site-packages reaches the base installation only. Where the job's Python is itself a
# virtualenv, its site directories are added too, after gradci's own, with their .pth files
# processed (so editable installs of the project work).
"$python" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))' \
  | "$venv/bin/python" -c '
import sys, sysconfig
from pathlib import Path
dirs = [line for line in sys.stdin.read().splitlines() if line and Path(line).is_dir()]
pth = Path(sysconfig.get_paths()["purelib"]) / "_gradci_job_python.pth"
pth.write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in dirs), encoding="utf-8")
'

pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
if [ "${IN_COMMAND:-run}" = run ]; then
  # A missing torch would make pip fetch a CUDA build of several GB: say so instead.
  if ! "$venv/bin/python" -c 'import torch' 2> /dev/null; then
    echo "::error title=gradci::torch cannot be imported by $python: install torch (and the project to check) in a step before gradci"
    exit 2
  fi
  "${pip[@]}" "$package"
else
  # Publishing and merging need no torch: gradci without its torch-side dependencies.
  "${pip[@]}" --no-deps "$package"
  mapfile -t deps < <("$venv/bin/python" -c '
import re
from importlib.metadata import requires
for req in requires("gradci") or []:
    name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
    if "extra ==" not in req and name not in ("torch", "numpy", "expecttest"):
        print(req)
')
  "${pip[@]}" "${deps[@]}"
fi

"$venv/bin/gradci" --version
echo "gradci=$venv/bin/gradci" >> "$GITHUB_OUTPUT"
