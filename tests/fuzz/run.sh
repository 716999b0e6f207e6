#!/usr/bin/env bash
# Runs the libFuzzer targets of the fuzz preset (build-fuzz/fuzz/<target>_fuzz).
#   run.sh fuzz  [target...]   each target for FUZZ_SECONDS (default 600); figures appended to
#                              build-fuzz/fuzz-summary.tsv and printed
#   run.sh smoke [target...]   each target for FUZZ_SECONDS (default 3): `make test`'s fuzz smoke
#   run.sh merge [target...]   minimize seeds + everything found so far into tests/fuzz/corpus/<target>
#                              (libFuzzer -merge=1); commit the result
# New inputs go to build-fuzz/found/<target>/ (never into the repository); crashes to
# build-fuzz/artifacts/<target>-crash-*, and the run fails naming the file. A crash becomes a
# corpus file (copy it into tests/fuzz/corpus/<target>/), a fix and a test.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CORPUS="$ROOT/tests/fuzz/corpus"
mode="${1:-}"
shift || true
case "$mode" in
    fuzz) seconds="${FUZZ_SECONDS:-600}" ;;
    smoke) seconds="${FUZZ_SECONDS:-3}" ;;
    merge) seconds=0 ;;
    *) echo "usage: run.sh fuzz|smoke|merge [target...]" >&2; exit 2 ;;
esac
if (($# > 0)); then
    targets=("$@")
else
    targets=()
    for d in "$CORPUS"/*/; do
        targets+=("$(basename "$d")")
    done
fi
mkdir -p "$BUILD/found" "$BUILD/artifacts" "$BUILD/logs"
summary="$BUILD/fuzz-summary.tsv"
failed=0
for t in "${targets[@]}"; do
    bin="$BUILD/fuzz/${t}_fuzz"
    [[ -x "$bin" ]] || { echo "fuzz: $bin is missing (cmake --build --preset fuzz)" >&2; exit 1; }
    mkdir -p "$BUILD/found/$t" "$CORPUS/$t"
    log="$BUILD/logs/$t.log"
    if [[ "$mode" == merge ]]; then
        new="$CORPUS/$t.merge"
        rm -rf "$new"
        mkdir -p "$new"
        seeds=()
        [[ -d "$BUILD/seeds/$t" ]] && seeds=("$BUILD/seeds/$t")
        "$bin" -merge=1 -rss_limit_mb=2048 "$new" "$CORPUS/$t" "$BUILD/found/$t" "${seeds[@]}" \
            >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
        rm -rf "$CORPUS/$t"
        mv "$new" "$CORPUS/$t"
        echo "fuzz: merged $t: $(find "$CORPUS/$t" -type f | wc -l) inputs"
        continue
    fi
    start=$(date +%s)
    if "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$BUILD/artifacts/$t-" "$BUILD/found/$t" "$CORPUS/$t" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        failed=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$(($(date +%s) - start))
    printf '%s\t%s\t%ss\t%s executions\t%s/s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$took" \
        "${execs:-?}" "$(( ${execs:-0} / (took > 0 ? took : 1) ))" "$result" | tee -a "$summary"
    if [[ "$result" != ok ]]; then
        grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" | head -10 >&2 || true
    fi
done
exit "$failed"
