#!/usr/bin/env bash
# `make test` (and so CI): every test of the workspace, in two steps that together run each test
# exactly once: first everything but the real-time scenarios (`--skip threaded::`: unit,
# scenario, randomized, simulated, process-level tests, in parallel), then the real-time
# `threaded::` scenarios alone and one at a time (`--test-threads=1`), so that no CPU-bound
# simulated run shares the cores with them. The simulated scenarios run CI's fresh seeds: a base
# from the clock (or TINYKV_SEED_BASE), printed here, and the seeds that once failed (see
# tests/src/seeds.rs); a failing seed prints the command that replays it.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/testrun.sh
export TINYKV_SEED_BASE="${TINYKV_SEED_BASE:-$(date +%s)}"
echo "make test: seed base TINYKV_SEED_BASE=${TINYKV_SEED_BASE}"
run_step "all but the real-time scenarios" --workspace -- --skip "$THREADED"
run_step "the real-time scenarios, one at a time" --workspace -- "$THREADED" --test-threads=1
echo "make test: seed base TINYKV_SEED_BASE=${TINYKV_SEED_BASE}"
totals "make test"
if [ "$TEST_STATUS" -ne 0 ]; then exit "$TEST_STATUS"; fi
if [ "$FAILED" -ne 0 ] || [ "$PASSED" -eq 0 ]; then exit 1; fi
