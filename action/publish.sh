#!/usr/bin/env bash
# The action's publish step, the only one with the token (GITHUB_TOKEN, from input token): gradci
# publish and nothing else. It runs in gradci's own virtualenv, which holds none of the job's
# packages, as `python -I` (no PYTHONPATH, working directory or user site on sys.path), so no code
# of the project runs next to the token, not even the .pth file of an editable install.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=settings.sh
source "$GITHUB_ACTION_PATH/action/settings.sh"

"$GRADCI_PYTHON" -I -m gradci publish "${config[@]}"
code=$?
echo "exit-code=$code" >> "$GITHUB_OUTPUT"
exit "$code"
