#!/usr/bin/env bash
# The results artifact: what a later run takes as its base results (runs on the default branch) or
# what a workflow_run publishes (pull requests from forks). Named by the artifact-name template,
# {device} being the device the tests ran on; a shard's name says which shard it is. After the
# publish step, which writes gradci-pr.json beside the results in a pull request's run.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=settings.sh
source "$GITHUB_ACTION_PATH/action/settings.sh"

absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

device=$("$GRADCI_PYTHON" -I -c 'import json, sys; print(json.load(open(sys.argv[1]))["run"]["device"])' "$GRADCI_JSON") \
  || fail 3 "cannot read the device from $GRADCI_JSON"
template=${IN_ARTIFACT_NAME:-}
[ -n "$template" ] || template='gradci-results-{device}'
artifact=${template//\{device\}/$device}
if [ "${IN_COMMAND:-run}" = run ] && [ -n "${GRADCI_SHARD:-}" ]; then
  artifact="$artifact-shard-${GRADCI_SHARD%%/*}-of-${GRADCI_SHARD##*/}"
fi
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
