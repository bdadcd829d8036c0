#!/usr/bin/env bash
# Runs exactly one stage's tests: those whose names END in the stage suffix or in one of its
# sub-stages' (`2ab` selects `test_..._2ab`; `2a` selects `_2aa`, `_2ab` and `_2ac`, as TinyKV's
# `make project2a` does; nothing under a module named `..._2ab` nor `test_..._2ab_x`), across the whole
# workspace, and fails when any fails or when none ran. The names are listed with `--list`,
# filtered with an exact-end match, and run with `--exact`; the real-time `threaded::` scenarios
# among them run after the others, one at a time (scripts/testrun.sh).
# Usage: scripts/stage.sh 2ab [cargo args]
set -uo pipefail
cd "$(dirname "$0")/.."
stage="$1"; shift
. scripts/testrun.sh
list=$(mktemp)
trap 'rm -f "$TEST_LOG" "$list"' EXIT
if ! cargo test --workspace "$@" -- --list >"$list"; then
    echo "project${stage}: listing the tests failed" >&2
    exit 1
fi
mapfile -t names < <(sed -n 's/: test$//p' "$list" | grep -E "_${stage}[a-z]?\$" | sort -u)
mapfile -t others < <(printf '%s\n' "${names[@]}" | grep -vF "$THREADED" | grep .)
mapfile -t threaded < <(printf '%s\n' "${names[@]}" | grep -F "$THREADED")
if [ "${#others[@]}" -gt 0 ]; then
    run_step "project${stage}" --workspace "$@" -- --exact "${others[@]}"
fi
if [ "${#threaded[@]}" -gt 0 ]; then
    run_step "project${stage}, real-time scenarios one at a time" --workspace "$@" -- \
        --exact --test-threads=1 "${threaded[@]}"
fi
totals "project${stage}"
if [ "$TEST_STATUS" -ne 0 ]; then exit "$TEST_STATUS"; fi
if [ "$PASSED" -eq 0 ]; then echo "project${stage}: no test ran" >&2; exit 1; fi
if [ "$FAILED" -ne 0 ]; then exit 1; fi
