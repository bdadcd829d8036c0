#!/usr/bin/env bash
# `make test` (and so CI): every test of the workspace, in two steps that together run each test
# exactly once: first everything but the real-time scenarios (`--skip threaded::`: unit,
# scenario, randomized, simulated, process-level tests, in parallel), then the real-time
# `threaded::` scenarios alone and one at a time (`--test-threads=1`), so that no CPU-bound
# simulated run shares the cores with them. The simulated scenarios run CI's fresh seeds: a base
# from the clock (or TINYKV_SEED_BASE), printed here, and the seeds that once failed (see
# tests/src/seeds.rs); a failing seed prints the command that replays it. Last, the coursework
# kit's quick check (xtask: guide tables, every generated student tree builds and leaks nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/testrun.sh
export TINYKV_SEED_BASE="${TINYKV_SEED_BASE:-$(date +%s)}"
echo "make test: seed base TINYKV_SEED_BASE=${TINYKV_SEED_BASE}"
run_step "all but the real-time scenarios" --workspace -- --skip "$THREADED"
run_step "the real-time scenarios, one at a time" --workspace -- "$THREADED" --test-threads=1
# The coursework kit: the guides' test tables match the test sources, and every student tree
# (each stage stubbed alone, and all together) builds without a warning and leaks nothing of the
# solution (the full proof, with the tests run, is `make course-verify`).
echo "==> the coursework kit: cargo xtask course docs --check && cargo xtask course verify"
KIT_STATUS=0
cargo xtask course docs --check || KIT_STATUS=1
cargo xtask course verify || KIT_STATUS=1
echo "make test: seed base TINYKV_SEED_BASE=${TINYKV_SEED_BASE}"
totals "make test"
if [ "$KIT_STATUS" -ne 0 ]; then echo "make test: the coursework kit check failed" >&2; exit 1; fi
if [ "$TEST_STATUS" -ne 0 ]; then exit "$TEST_STATUS"; fi
if [ "$FAILED" -ne 0 ] || [ "$PASSED" -eq 0 ]; then exit 1; fi
