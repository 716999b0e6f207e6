# Thin entry points over scripts/ and CMake presets (see README "Local stack and commands").
#   make run        install what is missing, build, start the local stack, send the sample webhooks
#   make test       the whole suite: unit tests (ctest) and end-to-end tests against the real stack;
#                   the ops and fault suites run once, inside the coverage pass (sanitize-tests)
#   make up / down  start / stop the stack in the background (status, reset: see scripts/stack.sh)
#   make test-ops   operations checks: promtool on live /metrics, dashboard, alert rules, k8s/
#   make coverage   unit, e2e, ops and fault suites on the gcov + ASan/UBSan build; gcovr report,
#                   93 % line gate
# BUILD_DIR picks another build tree for the dev preset; JOBS the parallelism (2 cores here).
SHELL := /bin/bash
.DEFAULT_GOAL := build
# Prerequisites run in the order written (deps, build, up, tests), never side by side.
.NOTPARALLEL:

BUILD_DIR ?= build
JOBS ?= 2
PYTHON := /usr/bin/python3
TEST_DATABASE_URL := postgresql://auren:auren@127.0.0.1:5432/auren_test
export BUILD_DIR

.PHONY: deps build up down status reset run test test-unit test-e2e asan clean unit-tests e2e-tests
.PHONY: bench bench-quick
.PHONY: test-ops ops-tests
.PHONY: test-faults fault-tests
.PHONY: fuzz fuzz-smoke fuzz-merge fuzz-build memcheck asan-tests lint
.PHONY: coverage sanitize-tests

deps:
	@scripts/deps.sh

# Configure with the dev preset (RelWithDebInfo, WERROR=ON) unless this tree already is.
build: deps
	@if ! grep -qs '^WERROR:BOOL=ON' $(BUILD_DIR)/CMakeCache.txt; then \
	    cmake --preset dev -B $(BUILD_DIR) >/dev/null; fi
	@cmake --build $(BUILD_DIR) -j $(JOBS) $(if $(filter 1,$(AUREN_ALLOW_PARTIAL)),\
	    -- -k 0 || echo "build: failed in part (AUREN_ALLOW_PARTIAL=1)" >&2)

up: deps build
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

# scripts/stack.sh status exits 3 when something is stopped; here it only prints.
status:
	@scripts/stack.sh status || true

reset:
	@scripts/stack.sh reset

# The stack keeps running afterwards (make down stops it).
run: up
	@test -f scripts/demo.py || { echo "make run: scripts/demo.py is missing" >&2; exit 1; }
	@set -a && . config/local.env && set +a && $(PYTHON) scripts/demo.py

# The ops and fault suites are not listed: sanitize-tests runs them (with the unit and e2e suites)
# on build-coverage/, so their outages count toward coverage and run under the sanitizers.
test: deps build lint up unit-tests sanitize-tests memcheck fuzz-smoke e2e-tests bench-quick

test-unit: build unit-tests

test-e2e: up e2e-tests

test-ops: up ops-tests

# Integration cases among the unit tests use the local stack when it answers:
# AUREN_TEST_DATABASE_URL (its auren_test database), AUREN_TEST_KAFKA_BROKERS and
# AUREN_TEST_REDIS_URL (its Redis, database 15). Without the stack they skip those cases and say so.
TEST_ENV = if pg_isready -q -h 127.0.0.1 -p 5432; then \
	    export AUREN_TEST_DATABASE_URL="$${AUREN_TEST_DATABASE_URL:-$(TEST_DATABASE_URL)}"; fi; \
	if kcat -b 127.0.0.1:9092 -L -m 3 >/dev/null 2>&1; then \
	    export AUREN_TEST_KAFKA_BROKERS="$${AUREN_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"; fi; \
	if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
	    export AUREN_TEST_REDIS_URL="$${AUREN_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"; fi

unit-tests:
	@$(TEST_ENV); ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --timeout 300

e2e-tests:
	@set -a && . config/local.env && set +a && \
	export AUREN_TEST_DATABASE_URL="$${AUREN_TEST_DATABASE_URL:-$(TEST_DATABASE_URL)}" && \
	$(PYTHON) -m pytest -q tests/e2e

# Operations checks (tests/ops/README.md): promtool on each binary's live /metrics, the Grafana
# dashboard's queries against them, promtool check/test rules, kustomize build + schema validation
# of k8s/, then /readyz under real outages (stops and restarts PostgreSQL and Kafka; runs last).
ops-tests:
	@set -a && . config/local.env && set +a && $(PYTHON) -m pytest -q tests/ops

# The benchmark (bench/README.md): every stage against this machine's own ceilings; a table on
# stdout and JSON in bench/results/. bench-quick only proves it runs (make test calls it; no
# speed is asserted). Both stop the stack's binaries for the run and restart them afterwards.
# BENCH_PHASES runs a subset (e.g. BENCH_PHASES=processor,persister; bench/README.md).
bench: deps build up
	@$(PYTHON) bench/bench.py --profile full $(if $(BENCH_PHASES),--phases $(BENCH_PHASES))

bench-quick: deps build up
	@$(PYTHON) bench/bench.py --profile quick $(if $(BENCH_PHASES),--phases $(BENCH_PHASES))

# Fault injection under load (tests/faults/faults.py): kill -9 and restart each component, stop
# Kafka 60 s; reconcile 2xx'd webhooks against PostgreSQL (about 4 minutes), then a DLQ replay.
# These targets run it on $(BUILD_DIR) (the dev build); `make test` runs it on build-coverage/
# inside sanitize-tests instead. `make test-faults` also writes tests/faults/RESULTS.md and the
# README's table.
test-faults: up
	@set -a && . config/local.env && set +a && $(PYTHON) tests/faults/faults.py --profile full \
	    --out tests/faults/RESULTS.md --readme README.md
	@set -a && . config/local.env && set +a && $(PYTHON) tests/faults/dlq_replay.py

fault-tests:
	@set -a && . config/local.env && set +a && $(PYTHON) tests/faults/faults.py --profile full
	@set -a && . config/local.env && set +a && $(PYTHON) tests/faults/dlq_replay.py

asan: deps
	@if [ ! -f build-asan/build.ninja ]; then cmake --preset asan >/dev/null; fi
	@cmake --build build-asan -j $(JOBS)
	@$(TEST_ENV); ctest --test-dir build-asan --output-on-failure -j $(JOBS) --timeout 600

# ---- hardening (README "Security") ----
# The unit suite again under AddressSanitizer + UBSan (build-asan/, the asan preset).
asan-tests: asan

# One pass of the unit, e2e, ops and fault suites on build-coverage/ (preset coverage: gcov, -O0,
# ASan + UBSan; the stack's binaries and auren-admin come from there): any sanitizer report fails,
# and gcovr reports line and branch coverage of the product code into build-coverage/coverage/
# (scripts/coverage.sh; COVERAGE_SUITES="unit e2e" picks suites while iterating). make coverage
# fails under COVERAGE_MIN_LINES % of lines; make test runs the same pass (sanitize-tests) with
# the same gate (COVERAGE_GATE=0 prints the figures without enforcing them, while iterating).
COVERAGE_MIN_LINES ?= 93
COVERAGE_GATE ?= 1
coverage: deps build up
	@COVERAGE_GATE=1 COVERAGE_MIN_LINES=$(COVERAGE_MIN_LINES) JOBS=$(JOBS) scripts/coverage.sh

sanitize-tests:
	@COVERAGE_GATE=$(COVERAGE_GATE) COVERAGE_MIN_LINES=$(COVERAGE_MIN_LINES) JOBS=$(JOBS) \
	    scripts/coverage.sh

# The unit suite under valgrind memcheck (zero reports; suppressions in tests/memcheck/).
memcheck: build
	@$(TEST_ENV); $(PYTHON) tests/memcheck/run.py $(BUILD_DIR) -j $(JOBS)

# libFuzzer targets (clang-14, build-fuzz/, the fuzz preset) and their seeds.
fuzz-build: deps
	@if [ ! -f build-fuzz/build.ninja ]; then cmake --preset fuzz >/dev/null; fi
	@cmake --build build-fuzz -j $(JOBS) --target fuzzers
	@$(PYTHON) tests/fuzz/make_seeds.py build-fuzz/seeds

# FUZZ_SECONDS per target (default 600); FUZZ_TARGETS to pick some (default all).
fuzz: fuzz-build
	@tests/fuzz/run.sh fuzz $(FUZZ_TARGETS)

# A few seconds per target; part of make test.
fuzz-smoke: fuzz-build
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-3} tests/fuzz/run.sh smoke $(FUZZ_TARGETS)

# Minimize seeds + what the fuzzers found into tests/fuzz/corpus/ (then commit it).
fuzz-merge: fuzz-build
	@tests/fuzz/run.sh merge $(FUZZ_TARGETS)

# Static analysis: clang-tidy (checks in .clang-tidy) and cppcheck over every tracked .c file;
# findings go to $(BUILD_DIR)/lint-*.txt, their counts are printed, and any finding fails.
# bench/normbench.c is built by bench/bench.py, not CMake: its flags are given here.
# make test runs it right after the build.
lint: build
	@files=$$(git ls-files '*.c' ':!bench/normbench.c'); \
	{ printf '%s\n' $$files | xargs -P $(JOBS) -n 6 clang-tidy-14 -p $(BUILD_DIR) --quiet; \
	  clang-tidy-14 --quiet bench/normbench.c -- -std=c11 -D_POSIX_C_SOURCE=200809L \
	    -D_DEFAULT_SOURCE -Icommon/include -Iprocessor; \
	} >$(BUILD_DIR)/lint-clang-tidy.txt 2>/dev/null; \
	cppcheck --quiet --std=c11 --enable=warning,performance,portability --inline-suppr \
	    --project=$(BUILD_DIR)/compile_commands.json -i$(BUILD_DIR) \
	    --template='{file}:{line}: {severity}: {message} [{id}]' 2>$(BUILD_DIR)/lint-cppcheck.txt; \
	tidy=$$(grep -c ': warning: \|: error: ' $(BUILD_DIR)/lint-clang-tidy.txt); \
	cpp=$$(grep -c ': \(warning\|error\|performance\|portability\): ' $(BUILD_DIR)/lint-cppcheck.txt); \
	echo "lint: clang-tidy $$tidy findings ($(BUILD_DIR)/lint-clang-tidy.txt)," \
	     "cppcheck $$cpp findings ($(BUILD_DIR)/lint-cppcheck.txt)"; \
	test "$$tidy" -eq 0 && test "$$cpp" -eq 0

clean:
	rm -rf build build-asan build-tsan build-release build-coverage build-fuzz
