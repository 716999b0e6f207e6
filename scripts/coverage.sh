#!/usr/bin/env bash
# One pass of the test suites on build-coverage/ (CMake preset `coverage`: gcov instrumentation,
# -O0, AddressSanitizer + UBSan with -fno-sanitize-recover), which serves two gates at once
# (README "Security"):
#   - sanitizers: the unit suite fails on any report (ctest); the stack's binaries and every
#     auren-admin the suites run write their reports to .state/sanitizers/, and any file there
#     fails this script;
#   - coverage: gcovr over the product code (common/ gateway/ processor/ persister/ admin/) with
#     the counts of all suites; reports in build-coverage/coverage/ (coverage.txt, coverage.xml
#     (Cobertura), index.html); lines under COVERAGE_MIN_LINES (percent) fail when
#     COVERAGE_GATE=1 (make coverage sets it; make test passes the Makefile's COVERAGE_GATE).
# The suites, in this order (COVERAGE_SUITES picks some, default all):
#   unit    ctest on build-coverage/ (integration cases use the stack)
#   e2e     tests/e2e (pytest) against the stack's binaries restarted from build-coverage/
#   ops     tests/ops: promtool on the live /metrics, dashboard, rules, k8s/, then /readyz under
#           real PostgreSQL and Kafka outages (runs after e2e, so most metric families have series)
#   faults  tests/faults/faults.py --profile full (kill -9 and restart of each component, Kafka
#           stopped 60 s, under load; 0 lost, 0 duplicated), then tests/faults/dlq_replay.py
# The stack must be up (make up). BUILD_DIR=build-coverage is exported to every suite, so each
# restart of a binary they make (scripts/stack.sh start/up after a kill -9 or an outage) and each
# auren-admin they run comes from build-coverage/; after each suite the running binaries are
# checked to be those. Counts: gcov writes a process's .gcda at exit, merging into the file on
# disk, so a binary killed by SIGKILL (the fault suite's point) loses only the counts of its own
# run. To bound that, the binaries are stopped with SIGTERM (counts written, LeakSanitizer run)
# and restarted before the fault suite; at the end every binary still running is stopped with
# SIGTERM and the stack runs $BUILD_DIR (the dev build) again. A binary that had to be killed by
# stack.sh's stop timeout fails the run.
#
#   scripts/coverage.sh            build, zero the counters, run the suites, check, report
#   scripts/coverage.sh report     only the report and the gate, from the counters on disk
set -euo pipefail
LIB_NAME=coverage
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

COVERAGE_MIN_LINES="${COVERAGE_MIN_LINES:-93}"
COVERAGE_GATE="${COVERAGE_GATE:-0}"
COVERAGE_SUITES="${COVERAGE_SUITES:-unit e2e ops faults}"
COV_DIR="$ROOT/build-coverage"
REPORT_DIR="$COV_DIR/coverage"
SAN_DIR="$STATE/sanitizers"
DEV_BUILD="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"
PYTHON=/usr/bin/python3
TEST_DATABASE_URL=postgresql://auren:auren@127.0.0.1:5432/auren_test
BINARIES=(gateway processor persister)

build() {
    if [[ ! -f "$COV_DIR/build.ninja" ]]; then
        cmake --preset coverage -S "$ROOT" >/dev/null
    fi
    cmake --build "$COV_DIR" -j "$JOBS"
}

want() {
    [[ " $COVERAGE_SUITES " == *" $1 "* ]]
}

# The unit suite on the coverage build; integration cases use the stack like `make unit-tests`.
# ctest itself judges the sanitizers there (a report fails the test), so no log_path.
unit_suite() {
    (unset ASAN_OPTIONS UBSAN_OPTIONS &&
        export AUREN_TEST_DATABASE_URL="${AUREN_TEST_DATABASE_URL:-$TEST_DATABASE_URL}" &&
        export AUREN_TEST_KAFKA_BROKERS="${AUREN_TEST_KAFKA_BROKERS:-127.0.0.1:9092}" &&
        export AUREN_TEST_REDIS_URL="${AUREN_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}" &&
        ctest --test-dir "$COV_DIR" --output-on-failure -j "$JOBS" --timeout 600)
}

# Fail when stack.sh output $1 says a binary had to be killed (SIGKILL writes no .gcda and skips
# the leak check).
no_forced_kill() {
    if [[ "$1" == *"did not stop within"* ]]; then
        printf '%s\n' "$1" | grep 'did not stop within' >&2
        return 1
    fi
}

# Restart the stack's binaries from build $1 (stack.sh stops those of another build with SIGTERM).
restart_binaries() {
    local out
    out="$(BUILD_DIR="$1" "$ROOT/scripts/stack.sh" up 2>&1)" || { printf '%s\n' "$out" >&2; return 1; }
    printf '%s\n' "$out" | grep -E '^(gateway|processor|persister):' || true
    no_forced_kill "$out"
}

# Stop the binaries with SIGTERM (their counts reach the .gcda files, LeakSanitizer runs) and
# start them again from build-coverage/, so that a later SIGKILL loses only what they do next.
checkpoint_binaries() {
    local name out rc=0
    for name in "${BINARIES[@]}"; do
        out="$("$ROOT/scripts/stack.sh" stop "$name" 2>&1)" || { printf '%s\n' "$out" >&2; rc=1; }
        printf '%s\n' "$out" | grep -E "^$name:" || true
        no_forced_kill "$out" || rc=1
    done
    restart_binaries "$COV_DIR" || rc=1
    return "$rc"
}

# Every binary of the stack runs, from build-coverage/ (a restart from another build would neither
# count nor be sanitized).
binaries_from_coverage_build() {
    local name pid exe rc=0
    for name in "${BINARIES[@]}"; do
        pid="$(head -1 "$STATE/run/$name.pid" 2>/dev/null || true)"
        exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
        exe="${exe% (deleted)}"
        if [[ -z "$pid" || -z "$exe" ]]; then
            warn "$name is not running after the $2 suite"
            rc=1
        elif [[ "$exe" != "$1"/* ]]; then
            warn "$name runs $exe after the $2 suite, not a binary of $1"
            rc=1
        fi
    done
    return "$rc"
}

# Run one pytest or script suite with the coverage build's binaries; $1 names it.
stack_suite() {
    local name="$1" rc=0
    shift
    (set -a && . "$ROOT/config/local.env" && set +a &&
        export AUREN_TEST_DATABASE_URL="${AUREN_TEST_DATABASE_URL:-$TEST_DATABASE_URL}" &&
        export BUILD_DIR="$COV_DIR" && cd "$ROOT" && "$@") || rc=$?
    binaries_from_coverage_build "$COV_DIR" "$name" || rc=1
    return "$rc"
}

fault_suite() {
    "$PYTHON" tests/faults/faults.py --profile full && "$PYTHON" tests/faults/dlq_replay.py
}

# Any report file of the stack's binaries fails the run (ASan, LSan and UBSan share log_path).
check_sanitizers() {
    local f found=0
    for f in "$SAN_DIR"/*; do
        [[ -s "$f" ]] || continue
        found=1
        warn "sanitizer report in $f:"
        head -n 60 "$f" >&2
    done
    ((found == 0)) || { warn "sanitizer reports from the stack's binaries (above; files in $SAN_DIR)"; return 1; }
    say "sanitizers: no reports from the unit suite, the stack's binaries or auren-admin"
}

# Lines and branches in all and per top-level directory, from the Cobertura report; with the
# gate on, exit 1 (naming the figure and the threshold) when lines are under the minimum.
summary() {
    "$PYTHON" - "$REPORT_DIR/coverage.xml" "$COVERAGE_MIN_LINES" "$COVERAGE_GATE" <<'PY'
import sys
import xml.etree.ElementTree as ET

path, minimum, gate = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
dirs = {}
for cls in ET.parse(path).iter("class"):
    top = cls.get("filename").split("/")[0]
    d = dirs.setdefault(top, [0, 0, 0, 0])
    for line in cls.iter("line"):
        d[0] += 1
        d[1] += int(line.get("hits")) > 0
        cond = line.get("condition-coverage")
        if cond:
            done, total = cond.split("(")[1].rstrip(")").split("/")
            d[2] += int(total)
            d[3] += int(done)
total = [sum(d[i] for d in dirs.values()) for i in range(4)]


def show(name, lines, hit, br, brhit):
    print("  %-10s lines %5.1f%% (%d/%d)  branches %5.1f%% (%d/%d)"
          % (name, 100.0 * hit / max(lines, 1), hit, lines, 100.0 * brhit / max(br, 1), brhit,
             br))


show("all", *total)
for top, d in sorted(dirs.items()):
    show(top + "/", *d)
lines, hit = total[0], total[1]
pct = 100.0 * hit / max(lines, 1)
if hit * 100.0 < minimum * lines:
    msg = ("coverage: lines %.2f %% (%d of %d) are under COVERAGE_MIN_LINES = %g %%"
           % (pct, hit, lines, minimum))
    if gate:
        print(msg + " (COVERAGE_GATE=1): failing", file=sys.stderr)
        sys.exit(1)
    print(msg + " (not enforced: COVERAGE_GATE=0)")
else:
    print("coverage: lines %.2f %% (%d of %d) meet COVERAGE_MIN_LINES = %g %%"
          % (pct, hit, lines, minimum))
PY
}

report() {
    mkdir -p "$REPORT_DIR"
    # Product code only; the counters of the tests and fuzz targets are not product coverage.
    (cd "$ROOT" && gcovr --root "$ROOT" --object-directory "$COV_DIR" \
        --filter 'common/' --filter 'gateway/' --filter 'processor/' --filter 'persister/' \
        --filter 'admin/' --exclude-unreachable-branches \
        --txt "$REPORT_DIR/coverage.txt" --xml-pretty --xml "$REPORT_DIR/coverage.xml" \
        --html-details "$REPORT_DIR/index.html" --print-summary) || return 1
    say "coverage: report in $REPORT_DIR (coverage.txt, coverage.xml, index.html)"
    summary
}

# Run suite $1 (function and arguments follow), time it, remember a failure and go on.
FAILED=()
run_suite() {
    local name="$1" t0=$SECONDS rc=0
    shift
    want "$name" || return 0
    "$@" || rc=$?
    say "coverage: $name suite in $((SECONDS - t0)) s$( ((rc == 0)) || printf ' (FAILED, exit %d)' "$rc")"
    ((rc == 0)) || FAILED+=("$name")
}

case "${1:-run}" in
run)
    build
    find "$COV_DIR" -name '*.gcda' -delete
    rm -rf "$SAN_DIR" && mkdir -p "$SAN_DIR"
    # halt_on_error: the first report ends the process (UBSan also via -fno-sanitize-recover).
    export ASAN_OPTIONS="log_path=$SAN_DIR/asan:halt_on_error=1:detect_leaks=1:abort_on_error=0"
    export UBSAN_OPTIONS="log_path=$SAN_DIR/ubsan:print_stacktrace=1:halt_on_error=1"
    t_all=$SECONDS
    run_suite unit unit_suite
    if want e2e || want ops || want faults; then
        if restart_binaries "$COV_DIR"; then
            run_suite e2e stack_suite e2e "$PYTHON" -m pytest -q tests/e2e
            run_suite ops stack_suite ops "$PYTHON" -m pytest -q tests/ops
            if want faults; then
                checkpoint_binaries || FAILED+=("checkpoint")
                run_suite faults stack_suite faults fault_suite
            fi
        else
            FAILED+=("restart")
        fi
        # The dev binaries come back in any case; the coverage ones stop with SIGTERM.
        restart_binaries "$DEV_BUILD" || FAILED+=("final stop")
    fi
    say "coverage: suites ($COVERAGE_SUITES) in $((SECONDS - t_all)) s"
    check_sanitizers || FAILED+=("sanitizers")
    report_rc=0
    report || report_rc=$?
    ((${#FAILED[@]} == 0)) || die "failed on the coverage build: ${FAILED[*]}"
    ((report_rc == 0)) || die "coverage gate (above)"
    ;;
report) report ;;
*) printf 'usage: %s [run|report]\n' "$0" >&2; exit 2 ;;
esac
