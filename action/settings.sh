#!/usr/bin/env bash
# Sourced by the action's steps: the inputs a step was given (IN_* variables, which action.yml maps
# through env:, never into a script's text) become gradci's GRADCI_* settings. An input that is set
# becomes its GRADCI_* variable; one left empty leaves the project's configuration ([tool.gradci],
# .gradci.yml) and gradci's defaults in force.
for name in OPS EXCLUDE CHECKS DTYPES DEVICE OP_MODULES SPEC UPSTREAM SHARD WORKERS THREADS TIMEOUT \
  RERUNS MAX_WORKER_RESTART ALLOCATOR DURATIONS BASELINE BASELINE_MODE BASELINE_COMMITS BASELINE_SETUP \
  FAIL_ON COMMENT_MODE CHECK_NAME ARTIFACT_NAME; do
  var=IN_$name
  if [ -n "${!var:-}" ]; then export "GRADCI_$name=${!var}"; fi
done
# The base checkout of baseline-mode rerun is prepared like the head one, unless told otherwise.
if [ -z "${GRADCI_BASELINE_SETUP:-}" ] && [ -n "${IN_SETUP:-}" ]; then export GRADCI_BASELINE_SETUP=$IN_SETUP; fi
export GRADCI_JSON=${IN_JSON:-gradci-results.json} GRADCI_JUNIT=${IN_JUNIT:-gradci-junit.xml}
# shellcheck disable=SC2034 # used by the scripts that source this one
if [ -n "${IN_CONFIG:-}" ]; then config=(--config "$IN_CONFIG"); else config=(); fi

fail() { # CODE MESSAGE
  echo "::error title=gradci::$2"
  echo "exit-code=$1" >> "$GITHUB_OUTPUT"
  exit "$1"
}
