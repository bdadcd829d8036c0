#!/usr/bin/env bash
# Shared by scripts/test.sh (make test) and scripts/stage.sh (make projectX): runs `cargo test`
# in steps, logs each, and sums the runner's "test result:" lines over all steps. Source it.

# The real-time scenarios (RocksDB, real threads and clocks) are the tests whose names contain
# `threaded::`: they run alone, one at a time, after everything else.
THREADED='threaded::'

TEST_LOG=$(mktemp)
trap 'rm -f "$TEST_LOG"' EXIT
TEST_STATUS=0

# run_step <title> <cargo test arguments...>: runs one step, appending its output to the log.
run_step() {
    local title="$1"; shift
    # --no-fail-fast: a failing test binary does not keep the later ones from running, so one
    # run reports every failure.
    echo "==> $title: cargo test --no-fail-fast $*"
    cargo test --no-fail-fast "$@" 2>&1 | tee -a "$TEST_LOG"
    local status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ]; then TEST_STATUS=$status; fi
}

# totals <label>: prints "<label>: N passed, N failed, N ignored" over every step run so far,
# from the runner's own "test result:" lines; sets PASSED and FAILED.
totals() {
    local sums
    sums=$(grep -E '^test result:' "$TEST_LOG" | awk '
        { for (i = 1; i <= NF; i++) {
              if ($(i) ~ /^passed/) p += $(i-1);
              if ($(i) ~ /^failed/) f += $(i-1);
              if ($(i) ~ /^ignored/) g += $(i-1) } }
        END { print p+0, f+0, g+0 }')
    read -r PASSED FAILED IGNORED <<<"$sums"
    echo "$1: ${PASSED} passed, ${FAILED} failed, ${IGNORED} ignored"
}
