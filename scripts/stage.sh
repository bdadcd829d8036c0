#!/usr/bin/env bash
# Runs exactly one stage's tests, selected by name suffix (`_2ab` selects test_..._2ab), across the
# whole workspace, and fails when any fails or when none ran. Usage: scripts/stage.sh 2ab [cargo args]
set -uo pipefail
stage="$1"; shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace "$@" -- "_${stage}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "project${stage}: ${passed} passed, ${failed} failed"
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ "$passed" -eq 0 ]; then echo "project${stage}: no test ran" >&2; exit 1; fi
