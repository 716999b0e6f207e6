#!/usr/bin/env bash
# One pass of the unit and end-to-end suites on build-coverage/ (CMake preset `coverage`: gcov
# instrumentation, -O0, AddressSanitizer + UBSan with -fno-sanitize-recover), which serves two
# gates at once (README "Security"):
#   - sanitizers: the unit suite fails on any report (ctest); the stack's binaries and the
#     auren-admin runs of the e2e suite write their reports to .state/sanitizers/, and any file
#     there fails this script;
#   - coverage: gcovr over the product code (common/ gateway/ processor/ persister/ admin/) with
#     the counts of both suites; reports in build-coverage/coverage/ (coverage.txt, coverage.xml
#     (Cobertura), index.html); lines under COVERAGE_MIN_LINES (percent) fail when
#     COVERAGE_GATE=1 (make coverage sets it).
# The stack must be up (make up). Its three binaries are restarted from build-coverage/ for the
# e2e suite and afterwards from $BUILD_DIR (the dev build) again; SIGTERM makes them return from
# main, which writes their .gcda files and runs LeakSanitizer.
#
#   scripts/coverage.sh            build, zero the counters, run both suites, check, report
#   scripts/coverage.sh report     only the report and the gate, from the counters on disk
set -euo pipefail
LIB_NAME=coverage
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

COVERAGE_MIN_LINES="${COVERAGE_MIN_LINES:-93}"
COVERAGE_GATE="${COVERAGE_GATE:-0}"
COV_DIR="$ROOT/build-coverage"
REPORT_DIR="$COV_DIR/coverage"
SAN_DIR="$STATE/sanitizers"
DEV_BUILD="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"
PYTHON=/usr/bin/python3
TEST_DATABASE_URL=postgresql://auren:auren@127.0.0.1:5432/auren_test

build() {
    if [[ ! -f "$COV_DIR/build.ninja" ]]; then
        cmake --preset coverage -S "$ROOT" >/dev/null
    fi
    cmake --build "$COV_DIR" -j "$JOBS"
}

# The unit suite on the coverage build; integration cases use the stack like `make unit-tests`.
unit_suite() {
    export AUREN_TEST_DATABASE_URL="${AUREN_TEST_DATABASE_URL:-$TEST_DATABASE_URL}"
    export AUREN_TEST_KAFKA_BROKERS="${AUREN_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
    ctest --test-dir "$COV_DIR" --output-on-failure -j "$JOBS" --timeout 600
}

# Restart the stack's binaries from build $1; fail when one had to be killed (SIGKILL writes no
# .gcda and skips the leak check).
restart_binaries() {
    local out
    out="$(BUILD_DIR="$1" "$ROOT/scripts/stack.sh" up 2>&1)" || { printf '%s\n' "$out" >&2; return 1; }
    printf '%s\n' "$out" | grep -E '^(gateway|processor|persister):' || true
    if [[ "$out" == *"did not stop within"* ]]; then
        printf '%s\n' "$out" | grep 'did not stop within' >&2
        return 1
    fi
}

# The e2e suite against binaries from build-coverage/; the dev binaries come back in any case.
e2e_suite() {
    local rc=0
    restart_binaries "$COV_DIR" || return 1
    (set -a && . "$ROOT/config/local.env" && set +a &&
        export AUREN_TEST_DATABASE_URL="${AUREN_TEST_DATABASE_URL:-$TEST_DATABASE_URL}" &&
        BUILD_DIR="$COV_DIR" "$PYTHON" -m pytest -q "$ROOT/tests/e2e") || rc=$?
    restart_binaries "$DEV_BUILD" || rc=1
    return "$rc"
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
    ((found == 0)) || die "sanitizer reports from the stack's binaries (above; files in $SAN_DIR)"
    say "sanitizers: no reports from the unit suite or the stack's binaries"
}

# Lines and branches per top-level directory, from the Cobertura report.
per_directory() {
    "$PYTHON" - "$REPORT_DIR/coverage.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

dirs = {}
for cls in ET.parse(sys.argv[1]).iter("class"):
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
for top, (lines, hit, br, brhit) in sorted(dirs.items()):
    print("  %-10s lines %5.1f%% (%d/%d)  branches %5.1f%% (%d/%d)"
          % (top + "/", 100.0 * hit / lines, hit, lines, 100.0 * brhit / max(br, 1), brhit, br))
PY
}

report() {
    local gate=()
    mkdir -p "$REPORT_DIR"
    ((COVERAGE_GATE == 1)) && gate=(--fail-under-line "$COVERAGE_MIN_LINES")
    # Product code only; the counters of the tests and fuzz targets are not product coverage.
    (cd "$ROOT" && gcovr --root "$ROOT" --object-directory "$COV_DIR" \
        --filter 'common/' --filter 'gateway/' --filter 'processor/' --filter 'persister/' \
        --filter 'admin/' --exclude-unreachable-branches \
        --txt "$REPORT_DIR/coverage.txt" --xml-pretty --xml "$REPORT_DIR/coverage.xml" \
        --html-details "$REPORT_DIR/index.html" --print-summary "${gate[@]}") || {
        say "coverage: lines under COVERAGE_MIN_LINES=$COVERAGE_MIN_LINES % (report: $REPORT_DIR/coverage.txt)"
        per_directory
        return 1
    }
    per_directory
    say "coverage: report in $REPORT_DIR (coverage.txt, coverage.xml, index.html); gate: lines >= $COVERAGE_MIN_LINES %$( ((COVERAGE_GATE == 1)) || printf ' (not enforced here)')"
}

case "${1:-run}" in
run)
    build
    find "$COV_DIR" -name '*.gcda' -delete
    rm -rf "$SAN_DIR" && mkdir -p "$SAN_DIR"
    # halt_on_error: the first report ends the process (UBSan also via -fno-sanitize-recover).
    export ASAN_OPTIONS="log_path=$SAN_DIR/asan:halt_on_error=1:detect_leaks=1:abort_on_error=0"
    export UBSAN_OPTIONS="log_path=$SAN_DIR/ubsan:print_stacktrace=1:halt_on_error=1"
    t0=$SECONDS
    (unset ASAN_OPTIONS UBSAN_OPTIONS && unit_suite)
    say "coverage: unit suite in $((SECONDS - t0)) s"
    t0=$SECONDS
    e2e_rc=0
    e2e_suite || e2e_rc=$?
    say "coverage: e2e suite in $((SECONDS - t0)) s"
    check_sanitizers
    ((e2e_rc == 0)) || die "the e2e suite failed on the coverage build (exit $e2e_rc)"
    report
    ;;
report) report ;;
*) printf 'usage: %s [run|report]\n' "$0" >&2; exit 2 ;;
esac
