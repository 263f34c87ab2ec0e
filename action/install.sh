#!/usr/bin/env bash
# The action's first step: gradci in virtualenvs of its own, made from the job's Python.
#   gradci-publish-venv  gradci and its torch-free dependencies, none of the job's packages: the
#                        publish step (which holds the token) runs there, so no code the job
#                        installed runs next to the token; merge runs there too
#   gradci-venv          command run only: on top of the job's packages, so that gradci checks the
#                        torch and the project the job installed (CPU or CUDA) without touching them
#   IN_PYTHON   the job's interpreter (input python)
#   IN_PACKAGE  what to pip install (input gradci-package; default: this action's own source)
#   IN_COMMAND  run | publish | merge: only `run` needs torch
set -euo pipefail

python=${IN_PYTHON:-python3}
package=${IN_PACKAGE:-$GITHUB_ACTION_PATH}
temp=${RUNNER_TEMP:-${TMPDIR:-/tmp}}
venv=$temp/gradci-venv
publish_venv=$temp/gradci-publish-venv

if ! command -v "$python" > /dev/null; then
  echo "::error title=gradci::no Python '$python' (input python): set one up first, e.g. with actions/setup-python"
  exit 2
fi

# A missing torch would make pip fetch a CUDA build of several GB: say so instead.
if [ "${IN_COMMAND:-run}" = run ] && ! "$python" -c 'import torch' 2> /dev/null; then
  echo "::error title=gradci::torch cannot be imported by $python: install torch (and the project to check) in a step before gradci"
  exit 2
fi

# Isolated (-I): pip sees only this virtualenv, so it installs every dependency into it.
"$python" -m venv --clear "$publish_venv"
isolated=("$publish_venv/bin/python" -I)
pip=(-m pip install --quiet --disable-pip-version-check)
wheels=$(mktemp -d "$temp/gradci-wheel.XXXXXX")
trap 'rm -rf "$wheels"' EXIT
"${isolated[@]}" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$wheels" "$package"
wheel=("$wheels"/gradci-*.whl)
"${isolated[@]}" "${pip[@]}" --no-deps "${wheel[0]}"

# A torch outside what gradci supports would make pip replace it (several GB): say so instead.
if [ "${IN_COMMAND:-run}" = run ]; then
  torch_version=$("$python" -c 'import torch; print(torch.__version__)')
  "${isolated[@]}" - "$torch_version" << 'PY' || exit 2
import sys
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
from gradci.docs import url
have = sys.argv[1]
for text in requires("gradci") or []:
    requirement = Requirement(text)
    if requirement.name == "torch" and not requirement.specifier.contains(have, prereleases=True):
        print(f"::error title=gradci::the job's torch {have} is not one gradci supports (torch{requirement.specifier}): "
              f"install a supported torch before gradci, or check another one with scripts/parity.py ({url('supported-torch.md', 'checking-another-version')})")
        sys.exit(1)
PY
fi
mapfile -t deps < <("${isolated[@]}" -c '
import re
from importlib.metadata import requires
for req in requires("gradci") or []:
    name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
    if "extra ==" not in req and name not in ("torch", "numpy", "expecttest"):
        print(req)
')
"${isolated[@]}" "${pip[@]}" "${deps[@]}"
"${isolated[@]}" -m gradci --version
echo "publish-python=$publish_venv/bin/python" >> "$GITHUB_OUTPUT"

if [ "${IN_COMMAND:-run}" != run ]; then
  # Merging and publishing need no torch.
  echo "gradci=$publish_venv/bin/gradci" >> "$GITHUB_OUTPUT"
  exit 0
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
"$venv/bin/python" "${pip[@]}" "${wheel[0]}"
"$venv/bin/gradci" --version
echo "gradci=$venv/bin/gradci" >> "$GITHUB_OUTPUT"
