#!/usr/bin/env bash
# The results artifact: what a later run takes as its base results (runs on the default branch) or
# what a workflow_run publishes (pull requests from forks). Named by the artifact-name template,
# {device} being the device the tests ran on; a shard's name says which shard it is. After the
# publish step, which writes gradci-pr.json beside the results in a pull request's run.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=settings.sh
source "$GITHUB_ACTION_PATH/action/settings.sh"

absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

# The name as gradci resolves artifact-name (input, GRADCI_*, or the project's config file), so that
# it is the name `gradci publish` looks for; the device and shard as the results record them.
artifact=$("$GRADCI_PYTHON" -I - "$GRADCI_JSON" "${IN_COMMAND:-run}" "${config[@]}" << 'PY'
import sys
from pathlib import Path

from gradci.github.artifacts import artifact_name
from gradci.options import resolve
from gradci.results import load

results, command = load(Path(sys.argv[1])), sys.argv[2]
settings = resolve(config=Path(sys.argv[4]) if len(sys.argv) > 4 else None)
name = artifact_name(settings.artifact_name, results.run.device)
shard = results.run.selection.get("shard")
if command == "run" and shard:
    index, count = str(shard).split("/")
    name += f"-shard-{index}-of-{count}"
print(name)
PY
) || fail 3 "cannot name the results artifact from $GRADCI_JSON"
paths=("$(absolute "$GRADCI_JSON")")
[ -f "$GRADCI_JUNIT" ] && paths+=("$(absolute "$GRADCI_JUNIT")")
pr_file=$(dirname "$GRADCI_JSON")/gradci-pr.json
[ -f "$pr_file" ] && paths+=("$(absolute "$pr_file")")

delimiter="gradci_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
{
  echo "artifact-name=$artifact"
  echo "artifact-paths<<$delimiter"
  printf '%s\n' "${paths[@]}"
  echo "$delimiter"
} >> "$GITHUB_OUTPUT"
