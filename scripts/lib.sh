# shellcheck shell=bash
# Shared helpers of scripts/deps.sh and scripts/stack.sh (sourced, not run).
# Sets ROOT (the checkout) and STATE (ROOT/.state, the one ignored folder with all local state).

ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null ||
        (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd))"
STATE="$ROOT/.state"
KAFKA_LIBS="$STATE/kafka/libs"

say()  { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "${LIB_NAME:-auren}" "$*" >&2; }
die()  { printf '%s: error: %s\n' "${LIB_NAME:-auren}" "$*" >&2; exit 1; }

# True when the jar cache holds a complete Kafka runtime (deps.sh writes the marker last).
kafka_libs_ready() {
    [[ -f "$KAFKA_LIBS/.complete" ]] && [[ "$(cat "$KAFKA_LIBS/.complete")" == "$(kafka_pom_sum)" ]]
}

# The cache is valid for one version of kafka/pom.xml.
kafka_pom_sum() {
    sha256sum "$ROOT/kafka/pom.xml" | cut -d' ' -f1
}
