# tinykv-rs: build, test and run targets. Every target that needs system packages runs `setup` first.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all setup build test fmt lint cluster cluster-add raft-stress bench \
	project1 project2a project2aa project2ab project2ac project2b project2c project3 project3a project3b \
	project3c project4 project4a project4b project4c \
	grade grade-calibrate bug-zoo course-gen course-verify course-verify-quick course-docs

all: build

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --workspace

## test: every suite of the workspace (unit, scenario, randomized, cluster, process-level), in two
## steps that run each test once (scripts/test.sh): everything but the real-time `threaded::`
## scenarios, then those alone and one at a time. Each simulated cluster scenario runs 3 fresh
## seeds from a base taken from the clock (TINYKV_SEED_BASE to choose it; printed first and last)
## plus the seeds that once failed (tests/src/seeds.rs), so that a build from scratch plus every
## suite stays within CI's budget on 2 cores; the stage targets (make project2b, make project2c)
## run the suites' own default seeds from 0 (TINYKV_SEEDS to change).
test: setup
	@scripts/test.sh

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Stage targets: exactly the tests whose names end in the stage suffix; fail when any fails.
project1: setup
	@scripts/stage.sh 1
project2a: setup
	@scripts/stage.sh 2a
project2aa: setup
	@scripts/stage.sh 2aa
project2ab: setup
	@scripts/stage.sh 2ab
project2ac: setup
	@scripts/stage.sh 2ac
project2b: setup
	@scripts/stage.sh 2b
project2c: setup
	@scripts/stage.sh 2c
project3: setup
	@scripts/stage.sh 3
project3a: setup
	@scripts/stage.sh 3a
project3b: setup
	@scripts/stage.sh 3b
project3c: setup
	@scripts/stage.sh 3c
project4: setup
	@scripts/stage.sh 4
project4a: setup
	@scripts/stage.sh 4a
project4b: setup
	@scripts/stage.sh 4b
project4c: setup
	@scripts/stage.sh 4c

## raft-stress: the seeded raft safety checker over many seeds (TINYKV_RAFT_SEEDS, default 10000),
## or one seed (TINYKV_RAFT_SEED=n).
raft-stress: setup
	TINYKV_RAFT_SEEDS=$${TINYKV_RAFT_SEEDS:-10000} $(CARGO) test --release -p raft --test safety \
		test_raft_safety_randomized -- --nocapture

## bench: criterion benchmarks of the raft core.
bench: setup
	$(CARGO) bench -p raft

## cluster: release binaries, then a local cluster: the scheduler on 127.0.0.1:2379 and three stores
## on 127.0.0.1:20160-20162 (and any added earlier), data in ./data, a log per process; Ctrl-C stops
## it cleanly and running it again resumes from the same data (scripts/cluster.sh says which
## TINYKV_* variables change ports, data dir and region sizes).
cluster: setup
	$(CARGO) build --release -p kvserver -p scheduler --bins
	@scripts/cluster.sh "$${CARGO_TARGET_DIR:-target}/release"

## cluster-add: one more store for the running cluster, on the next free port (127.0.0.1:20163, ...),
## in the foreground: Ctrl-C stops it.
cluster-add: setup
	$(CARGO) build --release -p kvserver -p scheduler --bins
	@scripts/cluster.sh add "$${CARGO_TARGET_DIR:-target}/release"

## grade: the grader (xtask/src/grade.rs): every stage's tests (or STAGE=2b's), each in its own
## process with a time budget (course/calibration.toml times course/stages.toml's multiple), the
## simulated suites on their fixed default seeds; prints a score table, writes grade/report.json
## and grade/junit.xml; exit 0 all passed, 1 failures, 2 the tree does not build, 3 cannot grade.
grade: setup
	@$(CARGO) xtask grade $(if $(STAGE),--stage $(STAGE))

## bug-zoo: classic student mistakes (course/mutants.toml) applied to a reference tree one at a
## time; the stage suites must catch each (xtask/src/zoo.rs). MUTANT=id runs one. Writes
## grade/bug-zoo.md; fails when a mutant is not caught.
bug-zoo: setup
	@$(CARGO) xtask bug-zoo $(if $(MUTANT),--mutant $(MUTANT))

## grade-calibrate: on the reference, records each stage test's time in course/calibration.toml.
grade-calibrate: setup
	@$(CARGO) xtask grade --calibrate

## course-gen: a student tree (docs/course/README.md): PRESET=course (default), only:2ab, from:3b
## or reference, written to OUT (default ../tinykv-student).
course-gen:
	@$(CARGO) xtask course gen --preset $(or $(PRESET),course) --out $(or $(OUT),../tinykv-student)

## course-verify: the full proof that the generated trees are right (xtask/src/verify.rs): the
## reference passes every stage test; in each only:S tree S's tests fail at S's stubs and the
## tests of every stage that does not need S pass. course-verify-quick (part of make test): each
## only:S tree and the course tree build without a warning, and leak nothing of the solution.
course-verify: setup
	@$(CARGO) xtask course verify --full
course-verify-quick: setup
	@$(CARGO) xtask course verify

## course-docs: rewrites the test tables of the guides (docs/course/) from the test sources.
course-docs:
	@$(CARGO) xtask course docs
