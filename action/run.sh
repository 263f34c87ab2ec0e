#!/usr/bin/env bash
# The action's main step: [setup,] gradci run (or merge), then gradci publish; step outputs; the exit
# code. Inputs arrive as IN_* variables, which action.yml maps through env: (never into this text).
set -uo pipefail

gradci=$GRADCI_BIN
python=$(dirname "$gradci")/python
token=${IN_TOKEN:-}
# The checks run the project's code (and the setup command): no token in their environment.
unset IN_TOKEN GITHUB_TOKEN GH_TOKEN

fail() { # CODE MESSAGE
  echo "::error title=gradci::$2"
  echo "exit-code=$1" >> "$GITHUB_OUTPUT"
  exit "$1"
}
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

# An input that is set becomes its GRADCI_* variable; one left empty leaves the project's
# configuration ([tool.gradci], .gradci.yml) and gradci's defaults in force.
for name in OPS EXCLUDE CHECKS DTYPES DEVICE OP_MODULES SPEC UPSTREAM SHARD WORKERS THREADS TIMEOUT \
  RERUNS ALLOCATOR DURATIONS BASELINE BASELINE_MODE BASELINE_COMMITS BASELINE_SETUP FAIL_ON COMMENT_MODE \
  CHECK_NAME ARTIFACT_NAME; do
  var=IN_$name
  if [ -n "${!var:-}" ]; then export "GRADCI_$name=${!var}"; fi
done
# The base checkout of baseline-mode rerun is prepared like the head one, unless told otherwise.
if [ -z "${GRADCI_BASELINE_SETUP:-}" ] && [ -n "${IN_SETUP:-}" ]; then export GRADCI_BASELINE_SETUP=$IN_SETUP; fi
export GRADCI_JSON=${IN_JSON:-gradci-results.json} GRADCI_JUNIT=${IN_JUNIT:-gradci-junit.xml}
config=()
if [ -n "${IN_CONFIG:-}" ]; then config=(--config "$IN_CONFIG"); fi

command=${IN_COMMAND:-run}
code=0
case $command in
  run)
    if [ -n "${IN_SETUP:-}" ]; then
      echo "::group::gradci: setup"
      bash -c "$IN_SETUP" || fail $? "the setup command failed"
      echo "::endgroup::"
    fi
    "$gradci" run "${config[@]}" || code=$?
    ;;
  merge)
    shopt -s globstar nullglob
    # shellcheck disable=SC2206 # merge-files holds glob patterns, expanded here
    files=(${IN_MERGE_FILES:-})
    [ "${#files[@]}" -gt 0 ] || fail 3 "merge-files matches no file: '${IN_MERGE_FILES:-}'"
    "$gradci" merge "${files[@]}" -o "$GRADCI_JSON" --junit "$GRADCI_JUNIT" || code=$?
    ;;
  publish) ;;
  *) fail 2 "command must be run, merge or publish, not '$command'" ;;
esac
# 0 and 1 are results (1: tests failed); anything else means there are none to publish.
if [ "$code" -ne 0 ] && [ "$code" -ne 1 ]; then
  echo "exit-code=$code" >> "$GITHUB_OUTPUT"
  exit "$code"
fi

published=false
if [ "${IN_PUBLISH:-true}" = true ]; then
  GITHUB_TOKEN=$token "$gradci" publish "${config[@]}"
  code=$?
  published=true
elif [ "$command" = publish ]; then
  fail 2 "command publish with publish: false does nothing"
fi

# The results artifact: what a later run takes as its base results (runs on the default branch) or
# what a workflow_run publishes (pull requests from forks). Named by the artifact-name template,
# {device} being the device the tests ran on; a shard's name says which shard it is.
artifact=""
paths=()
if [ "$command" != publish ] && [ -f "$GRADCI_JSON" ]; then
  device=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["run"]["device"])' "$GRADCI_JSON") \
    || fail 3 "cannot read the device from $GRADCI_JSON"
  template=${IN_ARTIFACT_NAME:-}
  [ -n "$template" ] || template='gradci-results-{device}'
  artifact=${template//\{device\}/$device}
  if [ "$command" = run ] && [ -n "${GRADCI_SHARD:-}" ]; then
    artifact="$artifact-shard-${GRADCI_SHARD%%/*}-of-${GRADCI_SHARD##*/}"
  fi
  paths+=("$(absolute "$GRADCI_JSON")")
  [ -f "$GRADCI_JUNIT" ] && paths+=("$(absolute "$GRADCI_JUNIT")")
  pr_file=$(dirname "$GRADCI_JSON")/gradci-pr.json
  [ -f "$pr_file" ] && paths+=("$(absolute "$pr_file")")
fi

delimiter="gradci_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
{
  echo "exit-code=$code"
  echo "artifact-name=$artifact"
  echo "artifact-paths<<$delimiter"
  if [ "${#paths[@]}" -gt 0 ]; then printf '%s\n' "${paths[@]}"; fi
  echo "$delimiter"
  if [ "$published" = false ]; then
    [ -f "$GRADCI_JSON" ] && echo "results-json=$GRADCI_JSON"
    [ -f "$GRADCI_JUNIT" ] && echo "junit-xml=$GRADCI_JUNIT"
  fi
} >> "$GITHUB_OUTPUT"
exit "$code"
