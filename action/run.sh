#!/usr/bin/env bash
# The action's run step: [setup,] gradci run (or merge), and for baseline-mode rerun gradci baseline.
# The setup command, the project's code and the base's code run here, so action.yml gives this
# step no token: it is in the environment of the publish step only (publish.sh).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=settings.sh
source "$GITHUB_ACTION_PATH/action/settings.sh"

gradci=$GRADCI_BIN
if [ -n "${GITHUB_TOKEN:-}${GH_TOKEN:-}" ]; then
  echo "::warning title=gradci::the job's environment holds a token (GITHUB_TOKEN or GH_TOKEN), which the project's code can read: give it to the steps that need it, not to the job"
fi
unset GITHUB_TOKEN GH_TOKEN

command=${IN_COMMAND:-run}
publish=${IN_PUBLISH:-true}
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
  publish)
    [ "$publish" = true ] || fail 2 "command publish with publish: false does nothing"
    ;;
  *) fail 2 "command must be run, merge or publish, not '$command'" ;;
esac

{
  echo "exit-code=$code"
  if [ "$command" != publish ]; then
    [ -f "$GRADCI_JSON" ] && echo "results-json=$GRADCI_JSON"
    [ -f "$GRADCI_JUNIT" ] && echo "junit-xml=$GRADCI_JUNIT"
  fi
  # 0 and 1 are results (1: tests failed): they are published and uploaded. Anything else stops.
  if [ "$command" != publish ] && { [ "$code" -eq 0 ] || [ "$code" -eq 1 ]; } && [ -f "$GRADCI_JSON" ]; then
    echo "results=true"
  fi
} >> "$GITHUB_OUTPUT"
if [ "$code" -ne 0 ] && [ "$code" -ne 1 ]; then exit "$code"; fi

if [ "$publish" != true ]; then exit "$code"; fi
# Base results of baseline-mode rerun are made here, by the base's code, without the token; in
# any other mode this says there is nothing to do. The publish step compares with them.
if [ "$command" = run ]; then
  "$gradci" baseline "${config[@]}" \
    || echo "::warning title=gradci::gradci baseline ended with exit code $?: publishing without the base results it makes"
fi
exit 0 # the publish step gives the verdict
