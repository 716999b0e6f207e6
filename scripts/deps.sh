#!/usr/bin/env bash
# Installs what the build, the local stack and the tests need, and only what is missing:
# Debian 12 packages with apt-get (apt-get update runs only when something must be installed),
# then the Apache Kafka jars with Maven from kafka/pom.xml into .state/kafka/libs, and the
# operations test tools: kubernetes-validate (PyPI, pinned in tests/ops/requirements.txt) in the
# venv .state/venv, kustomize (Go module proxy, pinned below) in .state/bin.
# Pinned to Debian 12 (bookworm): the code is written against librdkafka 2.0.x and PostgreSQL 15,
# so other major versions stop here with a clear message instead of failing later.
# Idempotent and quiet: prints only what it changes. Run as root (or via sudo).
set -euo pipefail
LIB_NAME=deps
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

PACKAGES=(
    build-essential cmake ninja-build pkg-config
    librdkafka-dev libmicrohttpd-dev libhiredis-dev libpq-dev libavro-dev libssl-dev check
    libjansson-dev libcurl4-openssl-dev
    redis-server postgresql kcat curl
    python3-avro python3-confluent-kafka python3-pytest python3-requests
    openjdk-17-jre-headless maven
    prometheus python3-venv python3-yaml
    clang-14 libclang-rt-14-dev valgrind gcovr cppcheck clang-tidy-14
)
# kustomize for the k8s/ manifests test (`go install`, needs the Go toolchain on PATH).
KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5
KUSTOMIZE_VERSION=v5.7.1
# Major versions the code and scripts are written for (Debian 12's).
EXPECT_RDKAFKA='2.0.'
EXPECT_PG=15

installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == "ii " ]]
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "missing packages (${missing[*]}); run as root"
        SUDO=sudo
    else
        SUDO=
    fi
    say "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null || die "apt-get update failed"
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >"${TMPDIR:-/tmp}/auren-deps-apt.log" 2>&1; then
        tail -20 "${TMPDIR:-/tmp}/auren-deps-apt.log" >&2
        die "apt-get install failed (log: ${TMPDIR:-/tmp}/auren-deps-apt.log)"
    fi
}

check_versions() {
    local v
    v="$(dpkg-query -W -f='${Version}' librdkafka-dev)"
    [[ "$v" == "$EXPECT_RDKAFKA"* ]] ||
        die "librdkafka-dev is $v; this project is built and tested against ${EXPECT_RDKAFKA}x (Debian 12)"
    [[ -x "/usr/lib/postgresql/$EXPECT_PG/bin/postgres" ]] ||
        die "PostgreSQL $EXPECT_PG server binaries not found in /usr/lib/postgresql/$EXPECT_PG/bin (Debian 12's postgresql-$EXPECT_PG)"
    v="$(dpkg-query -W -f='${Version}' redis-server)"
    [[ "$v" =~ ^([0-9]+:)?7\. ]] || die "redis-server is $v; Redis 7 is expected (Debian 12)"
    v="$(java -version 2>&1 | sed -n -E '1s/.*version "([0-9]+).*/\1/p')"
    if ! [[ "$v" =~ ^[0-9]+$ ]] || ((v < 17)); then
        die "Kafka 4.x needs Java 17 or newer; 'java' is ${v:-missing} (openjdk-17-jre-headless)"
    fi
}

fetch_kafka() {
    if kafka_libs_ready; then
        return 0
    fi
    say "deps: fetching the Kafka jars with Maven (kafka/pom.xml)"
    local tmp="$KAFKA_LIBS.tmp" log="$STATE/kafka/maven.log"
    mkdir -p "$STATE/kafka"
    rm -rf "$tmp"
    if ! mvn -B -q -Dstyle.color=never -f "$ROOT/kafka/pom.xml" \
            org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
        tail -20 "$log" >&2
        die "Maven could not fetch the Kafka jars (log: $log)"
    fi
    ls "$tmp"/kafka_2.13-*.jar "$tmp"/log4j-slf4j-impl-*.jar >/dev/null 2>&1 ||
        die "the Kafka jar set in $tmp is incomplete (no kafka_2.13 or log4j-slf4j-impl jar)"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    kafka_pom_sum >"$KAFKA_LIBS/.complete"
}

# The venv is rebuilt when tests/ops/requirements.txt changes (its hash is the marker).
ops_venv() {
    local venv="$STATE/venv" req="$ROOT/tests/ops/requirements.txt" sum log="$STATE/venv.log"
    sum="$(sha256sum "$req" | cut -d' ' -f1)"
    if [[ -f "$venv/.complete" ]] && [[ "$(cat "$venv/.complete")" == "$sum" ]]; then
        return 0
    fi
    say "deps: creating $venv (tests/ops/requirements.txt)"
    mkdir -p "$STATE"
    rm -rf "$venv"
    if ! { /usr/bin/python3 -m venv "$venv" &&
            "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"; } >"$log" 2>&1; then
        tail -20 "$log" >&2
        die "could not build the Python venv $venv (log: $log)"
    fi
    printf '%s\n' "$sum" >"$venv/.complete"
}

ops_kustomize() {
    local bin="$STATE/bin/kustomize" log="$STATE/kustomize-install.log" gobin
    if [[ -x "$bin" ]] && [[ "$("$bin" version 2>/dev/null)" == "$KUSTOMIZE_VERSION" ]]; then
        return 0
    fi
    gobin="$(command -v go || true)"
    [[ -n "$gobin" ]] || gobin=/usr/local/go/bin/go
    [[ -x "$gobin" ]] || die "the Go toolchain is needed to install kustomize (go not on PATH)"
    say "deps: installing kustomize $KUSTOMIZE_VERSION into $STATE/bin"
    mkdir -p "$STATE/bin"
    if ! (cd / && GOBIN="$STATE/bin" GOFLAGS= "$gobin" install \
            "$KUSTOMIZE_MODULE@$KUSTOMIZE_VERSION") >"$log" 2>&1; then
        tail -20 "$log" >&2
        die "go install $KUSTOMIZE_MODULE@$KUSTOMIZE_VERSION failed (log: $log)"
    fi
}

install_packages
check_versions
fetch_kafka
ops_venv
ops_kustomize
