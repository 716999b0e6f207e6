#!/usr/bin/env bash
# The local development stack: Apache Kafka 4.1 (KRaft, one combined node, jars from Maven),
# Redis 7 and PostgreSQL 15 (Debian packages), then the three Auren binaries.
#
#   scripts/stack.sh up       start what is not running (idempotent), migrate, create topics
#   scripts/stack.sh down     stop exactly what `up` started: binaries, Kafka, Redis, PostgreSQL
#   scripts/stack.sh status   print what runs
#   scripts/stack.sh reset    down, then wipe all data (the Kafka jar cache is kept)
#   scripts/stack.sh kill9 C  SIGKILL one component C (gateway, processor, persister, kafka,
#                             redis, postgresql), as a crash would; used by the fault suite
#   scripts/stack.sh stop C   stop one component gracefully (SIGTERM / pg_ctl fast)
#   scripts/stack.sh start C  start one stopped component again (no build, no migrations)
#
# All state lives in <checkout>/.state: kafka/ (jars, data, kafka.log), redis/, pg/ (cluster,
# socket, log; owned by the postgres user), run/ (pidfiles), logs/ (one log per binary), spool/
# (the gateway's durable spool, SPOOL_DIR).
# Kafka is formatted once; data survives down/up until `reset`. A port held by something that is
# not ours stops `up` with a message naming the port; only Debian's own default PostgreSQL
# cluster and redis-server service (started by the package install) are stopped for us.
#
# Environment: BUILD_DIR (default <checkout>/build), TOPIC_PARTITIONS (6),
# AUREN_ALLOW_PARTIAL=1 (start the binaries that exist, warn for the others).
set -euo pipefail
LIB_NAME=stack
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
REDIS_PORT=6379
PG_PORT=5432
PG_VERSION=15
PGBIN=/usr/lib/postgresql/$PG_VERSION/bin
# name:port of each binary, in start order; down stops them in the same order (intake first).
BINARIES=(gateway:8080 processor:9101 persister:9102)
TEST_DB_URL=postgresql://auren:auren@127.0.0.1:$PG_PORT/auren_test

BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
RUN="$STATE/run"
LOGS="$STATE/logs"
KAFKA_DIR="$STATE/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
REDIS_DIR="$STATE/redis"
PG_DIR="$STATE/pg"
PGDATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
# A Unix socket path has at most 107 bytes; a deep checkout falls back to a per-checkout /tmp dir.
if ((${#PG_SOCK} + 16 > 107)); then
    PG_SOCK="/tmp/auren-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
fi
PG_LOG="$PG_DIR/postgres.log"

# As root the cluster runs as the postgres OS user; otherwise as whoever runs this script.
if [[ $(id -u) -eq 0 ]]; then
    PG_USER=postgres
    PG_AS=(runuser -u postgres --)
else
    PG_USER="$(id -un)"
    PG_AS=()
fi

# ---- processes and ports -------------------------------------------------------------------

port_busy() {
    [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
}

# Pipelines below never end early (no head, no grep -q): under pipefail a writer killed by
# SIGPIPE would turn a match into a failure.

# The pids listening on a port, one per line.
port_pids() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

port_has_pid() {
    local pids
    pids="$(port_pids "$1")"
    [[ $'\n'"$pids"$'\n' == *$'\n'"$2"$'\n'* ]]
}

cmdline_of() {
    local c
    c="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)"
    printf '%s' "${c% }"
}

cmdline_has() {
    local c
    c="$(cmdline_of "$1")"
    [[ -n "$c" && "$c" == *"$2"* ]]
}

# Who listens on a port, for error messages: "pid N (command)" or "an unknown process".
port_owner() {
    local pids pid c
    pids="$(port_pids "$1")"
    pid="${pids%%$'\n'*}"
    if [[ -n "$pid" ]]; then
        c="$(cmdline_of "$pid")"
        printf 'pid %s (%s)' "$pid" "${c:0:80}"
    else
        printf 'an unknown process'
    fi
}

# Print the pid of our running process NAME (pidfile in run/, command line containing PATTERN).
# A pidfile whose process is gone or is something else is stale and removed.
our_pid() {
    local file="$RUN/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(head -1 "$file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && cmdline_has "$pid" "$2"; then
        printf '%s' "$pid"
        return 0
    fi
    rm -f "$file"
    return 1
}

# TERM, wait up to $3 seconds, then KILL.
stop_pid() {
    local name="$1" pid="$2" timeout="$3" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < timeout * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || { say "$name: stopped"; return 0; }
        sleep 0.2
    done
    warn "$name (pid $pid) did not stop within ${timeout}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 25; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
}

# Wait until 127.0.0.1:$1 accepts connections; fail early if pid $3 dies.
wait_port() {
    local port="$1" timeout="$2" pid="$3" name="$4" log="$5" i
    for ((i = 0; i < timeout * 4; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2 || true
            die "$name exited during start-up (log: $log)"
        fi
        sleep 0.25
    done
    tail -n 30 "$log" >&2 || true
    die "$name did not open port $port within ${timeout}s (log: $log)"
}

rotate_log() {
    local f="$1"
    if [[ -f "$f" ]] && (($(stat -c %s "$f") > 50 * 1024 * 1024)); then
        mv -f "$f" "$f.1"
    fi
}

# ---- Kafka -----------------------------------------------------------------------------------

kafka_pattern() { printf 'kafka.Kafka %s' "$KAFKA_DIR/server.properties"; }

kafka_java() {
    java -Xms64m -Xmx256m -Dlog4j2.configurationFile="$ROOT/kafka/log4j2.yaml" \
        -cp "$KAFKA_LIBS/*" "$@"
}

kafka_ready() {
    kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 5 >/dev/null 2>&1
}

# The PLAINTEXT listener opens only once the broker is unfenced, so the port means ready;
# a metadata request through librdkafka (kcat) confirms it.
kafka_wait_ready() {
    local pid="$1" i
    wait_port "$KAFKA_PORT" 90 "$pid" kafka "$KAFKA_LOG"
    for ((i = 0; i < 40; i++)); do
        kafka_ready && return 0
        sleep 0.5
    done
    die "kafka: port $KAFKA_PORT is open but metadata requests fail (log: $KAFKA_LOG)"
}

kafka_up() {
    local pid cid i
    if pid="$(our_pid kafka "$(kafka_pattern)")"; then
        say "kafka: running (pid $pid)"
        kafka_wait_ready "$pid"
        return 0
    fi
    for i in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_busy "$i" && die "port $i is in use by $(port_owner "$i"), not by this stack's Kafka; stop it first"
    done
    mkdir -p "$KAFKA_DATA" "$RUN"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" "$ROOT/kafka/server.properties" \
        >"$KAFKA_DIR/server.properties"
    if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
        # StorageTool logs INFO lines through our log4j2 config; the id is the last line.
        cid="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
        [[ "$cid" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: could not generate a cluster id"
        rm -rf "$KAFKA_DATA" && mkdir -p "$KAFKA_DATA"
        if ! kafka_java kafka.tools.StorageTool format --standalone -t "$cid" \
                -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1; then
            tail -n 20 "$KAFKA_DIR/format.log" >&2
            die "kafka: formatting $KAFKA_DATA failed (log: $KAFKA_DIR/format.log)"
        fi
        printf '%s\n' "$cid" >"$KAFKA_DIR/cluster.id"
        say "kafka: formatted a new KRaft cluster in $KAFKA_DATA"
    fi
    rotate_log "$KAFKA_LOG"
    # The JVM flags of Kafka's own kafka-run-class.sh, with a small heap.
    setsid java -Xms256m -Xmx768m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -XX:MaxInlineLevel=15 -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_DIR" -Dlog4j2.configurationFile="$ROOT/kafka/log4j2.yaml" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
        >>"$KAFKA_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$RUN/kafka.pid"
    kafka_wait_ready "$pid"
    say "kafka: started (pid $pid, 127.0.0.1:$KAFKA_PORT)"
}

# ---- Redis -----------------------------------------------------------------------------------

redis_ping() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

# Debian's redis-server service listens on 6379 after the package install; it is not ours.
stop_debian_redis() {
    local pid i
    pid="$(cat /run/redis/redis-server.pid 2>/dev/null || true)"
    [[ -n "$pid" ]] && port_has_pid "$REDIS_PORT" "$pid" || return 1
    say "redis: stopping Debian's redis-server service (it holds port $REDIS_PORT; the stack runs its own)"
    if command -v service >/dev/null; then
        service redis-server stop >/dev/null 2>&1 || kill -TERM "$pid"
    else
        kill -TERM "$pid"
    fi
    for ((i = 0; i < 50; i++)); do
        port_busy "$REDIS_PORT" || return 0
        sleep 0.2
    done
    return 1
}

redis_up() {
    local pid i
    if pid="$(our_pid redis redis-server)" && port_has_pid "$REDIS_PORT" "$pid"; then
        say "redis: running (pid $pid)"
        return 0
    fi
    if port_busy "$REDIS_PORT" && ! stop_debian_redis; then
        die "port $REDIS_PORT is in use by $(port_owner "$REDIS_PORT"), not by this stack's Redis; stop it first"
    fi
    mkdir -p "$REDIS_DIR" "$RUN" "$LOGS"
    cat >"$REDIS_DIR/redis.conf" <<EOF
# Generated by scripts/stack.sh; edit the script, not this file.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $RUN/redis.pid
logfile $LOGS/redis.log
dir $REDIS_DIR
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
EOF
    rotate_log "$LOGS/redis.log"
    redis-server "$REDIS_DIR/redis.conf" 9>&- || die "redis: redis-server failed to start (log: $LOGS/redis.log)"
    for ((i = 0; i < 100; i++)); do
        redis_ping && break
        sleep 0.1
    done
    redis_ping || die "redis: no PONG on 127.0.0.1:$REDIS_PORT (log: $LOGS/redis.log)"
    pid="$(cat "$RUN/redis.pid")"
    say "redis: started (pid $pid, 127.0.0.1:$REDIS_PORT)"
}

# ---- PostgreSQL ------------------------------------------------------------------------------

pg() { "${PG_AS[@]}" "$@"; }

pg_running() {
    [[ -f "$PGDATA/PG_VERSION" ]] && pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

psql_admin() {
    pg "$PGBIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d postgres -X -q -t -A \
        -v ON_ERROR_STOP=1 "$@"
}

# The postgres user must be able to reach .state/pg: every parent needs search (x) permission.
pg_make_traversable() {
    local d="$PG_DIR"
    [[ ${#PG_AS[@]} -gt 0 ]] || return 0
    while d="$(dirname "$d")"; [[ "$d" != / ]]; do
        if ! runuser -u "$PG_USER" -- test -x "$d"; then
            say "postgresql: granting others search permission (o+x) on $d so that the postgres user can reach .state/pg"
            chmod o+x "$d"
        fi
    done
}

pg_init() {
    mkdir -p "$PGDATA" "$PG_SOCK"
    chmod 700 "$PGDATA"
    [[ ${#PG_AS[@]} -eq 0 ]] || chown -R "$PG_USER:$PG_USER" "$PG_DIR"
    if ! pg "$PGBIN/initdb" -D "$PGDATA" -U "$PG_USER" -E UTF8 --locale=C \
            --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1; then
        tail -n 20 "$PG_DIR/initdb.log" >&2
        die "postgresql: initdb failed (log: $PG_DIR/initdb.log)"
    fi
    pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# Local Auren stack (scripts/stack.sh). Durable like production: fsync and synchronous commit on.
fsync = on
synchronous_commit = on
full_page_writes = on
password_encryption = scram-sha-256
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    say "postgresql: initialised a new cluster in $PGDATA"
}

# Debian's default cluster (15/main) is started by the package install on port 5432.
stop_debian_pg() {
    local ver name port status
    command -v pg_lsclusters >/dev/null || return 1
    while read -r ver name port status _; do
        if [[ "$port" == "$PG_PORT" && "$status" == online* &&
              -d "/var/lib/postgresql/$ver/$name" && "$name" == main ]]; then
            say "postgresql: stopping Debian's default cluster $ver/main (it holds port $PG_PORT; the stack runs its own): pg_ctlcluster $ver main stop"
            pg_ctlcluster "$ver" main stop || return 1
            return 0
        fi
    done < <(pg_lsclusters -h 2>/dev/null)
    return 1
}

pg_up() {
    local pid
    pg_make_traversable
    mkdir -p "$PG_DIR"
    if pg_running; then
        pid="$(head -1 "$PGDATA/postmaster.pid")"
        say "postgresql: running (pid $pid)"
    else
        if port_busy "$PG_PORT" && ! stop_debian_pg; then
            die "port $PG_PORT is in use by $(port_owner "$PG_PORT"), not by this stack's PostgreSQL; stop it first"
        fi
        [[ -f "$PGDATA/PG_VERSION" ]] || pg_init
        mkdir -p "$PG_SOCK"
        [[ ${#PG_AS[@]} -eq 0 ]] || chown "$PG_USER:$PG_USER" "$PG_DIR" "$PG_SOCK"
        [[ ${#PG_AS[@]} -eq 0 ]] || { touch "$PG_LOG" && chown "$PG_USER:$PG_USER" "$PG_LOG"; }
        if ! pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 -s \
                -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_SOCK" \
                start 9>&-; then
            tail -n 20 "$PG_LOG" >&2
            die "postgresql: pg_ctl start failed (log: $PG_LOG)"
        fi
        pid="$(head -1 "$PGDATA/postmaster.pid")"
        say "postgresql: started (pid $pid, 127.0.0.1:$PG_PORT)"
    fi
    # Role and databases, idempotently: auren for the stack, auren_test for integration tests.
    if [[ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'auren'")" ]]; then
        psql_admin -c "CREATE ROLE auren LOGIN CREATEDB PASSWORD 'auren'"
    fi
    for db in auren auren_test; do
        if [[ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
            psql_admin -c "CREATE DATABASE $db OWNER auren"
        fi
    done
}

# ---- build, schema, topics -------------------------------------------------------------------

# Where the build put auren-NAME: the build root (the documented place) or NAME/ under it.
bin_path() {
    local b
    for b in "$BUILD_DIR/auren-$1" "$BUILD_DIR/$1/auren-$1"; do
        [[ -x "$b" ]] && { printf '%s' "$b"; return 0; }
    done
    printf '%s' "$BUILD_DIR/auren-$1"
}

build_code() {
    local log="$LOGS/build.log" keep=()
    mkdir -p "$LOGS"
    : >"$log"
    say "build: $BUILD_DIR (log: $log)"
    if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
        cmake --preset dev -S "$ROOT" -B "$BUILD_DIR" >>"$log" 2>&1 ||
            { tail -n 30 "$log" >&2; die "cmake configure failed (log: $log)"; }
    fi
    [[ "${AUREN_ALLOW_PARTIAL:-0}" == 1 ]] && keep=(-- -k 0)
    if ! cmake --build "$BUILD_DIR" -j "${JOBS:-2}" "${keep[@]}" >>"$log" 2>&1; then
        if [[ "${AUREN_ALLOW_PARTIAL:-0}" == 1 ]]; then
            warn "the build failed in part (AUREN_ALLOW_PARTIAL=1; log: $log); going on with what was built"
        else
            grep -E 'error|FAILED' "$log" | tail -n 20 >&2 || tail -n 20 "$log" >&2
            die "build failed (log: $log)"
        fi
    fi
    [[ -x "$(bin_path admin)" ]] || die "$BUILD_DIR/auren-admin was not built (log: $log)"
}

admin() {
    local bin
    bin="$(bin_path admin)"
    (set -a && . "$ROOT/config/local.env" && set +a && "$bin" "$@")
}

schema_and_topics() {
    local out
    out="$(admin migrate 2>&1)" || { printf '%s\n' "$out" >&2; die "migrations failed on the auren database"; }
    printf '%s\n' "$out" | sed 's/^/postgresql: /' | grep -v ' 0 applied' || true
    out="$(DATABASE_URL="$TEST_DB_URL" admin migrate 2>&1)" ||
        { printf '%s\n' "$out" >&2; die "migrations failed on the auren_test database"; }
    out="$(admin topics create 2>&1)" || { printf '%s\n' "$out" >&2; die "creating the Kafka topics failed"; }
    printf '%s\n' "$out" | grep -E '^created|warning' | sed 's/^/kafka: /' || true
}

# ---- the three binaries ----------------------------------------------------------------------

http_ok() {
    curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null
}

# Poll $2 on port $1 until it answers 2xx; fail early when pid $4 exits.
wait_http() {
    local port="$1" path="$2" timeout="$3" pid="$4" name="$5" i
    for ((i = 0; i < timeout * 4; i++)); do
        http_ok "$port" "$path" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOGS/$name.log" >&2 || true
            die "$name exited during start-up (log: $LOGS/$name.log)"
        fi
        sleep 0.25
    done
    tail -n 30 "$LOGS/$name.log" >&2 || true
    die "$name: http://127.0.0.1:$port$path did not answer 2xx within ${timeout}s (log: $LOGS/$name.log)"
}

binaries_up() {
    local entry name port bin pid started=()
    mkdir -p "$RUN" "$LOGS"
    for entry in "${BINARIES[@]}"; do
        name="${entry%%:*}" port="${entry##*:}" bin="$(bin_path "$name")"
        if pid="$(our_pid "$name" "/auren-$name")"; then
            if ! cmdline_has "$pid" "$bin"; then
                say "$name: running from another build ($(cmdline_of "$pid")); restarting with $bin"
                stop_pid "$name" "$pid" 20
            elif [[ "$bin" -nt "$RUN/$name.pid" ]]; then
                say "$name: binary rebuilt since it started; restarting"
                stop_pid "$name" "$pid" 20
            else
                say "$name: running (pid $pid)"
                continue
            fi
        fi
        if [[ ! -x "$bin" ]]; then
            [[ "${AUREN_ALLOW_PARTIAL:-0}" == 1 ]] ||
                die "$bin does not exist (build failed?); AUREN_ALLOW_PARTIAL=1 starts the rest"
            warn "$bin does not exist; not starting $name (AUREN_ALLOW_PARTIAL=1)"
            continue
        fi
        port_busy "$port" && die "port $port is in use by $(port_owner "$port"), not by this stack's $name; stop it first"
        rotate_log "$LOGS/$name.log"
        (set -a && . "$ROOT/config/local.env" && set +a &&
            export SPOOL_DIR="${SPOOL_DIR:-$STATE/spool}" &&
            exec setsid "$bin" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&-) &
        pid=$!
        printf '%s\n' "$pid" >"$RUN/$name.pid"
        started+=("$name:$port:$pid")
    done
    for entry in "${started[@]}"; do
        IFS=: read -r name port pid <<<"$entry"
        wait_http "$port" /healthz 30 "$pid" "$name"
        wait_http "$port" /readyz 90 "$pid" "$name"
        say "$name: started (pid $pid, http://127.0.0.1:$port)"
    done
}

# ---- commands --------------------------------------------------------------------------------

cmd_up() {
    local t0=$SECONDS
    if ! kafka_libs_ready || [[ ! -x "$PGBIN/postgres" ]]; then
        "$ROOT/scripts/deps.sh"
    fi
    mkdir -p "$STATE" "$RUN" "$LOGS"
    build_code
    pg_up
    redis_up
    kafka_up
    schema_and_topics
    binaries_up
    say "stack: up in $((SECONDS - t0))s (state in $STATE; logs in $LOGS, $KAFKA_LOG)"
}

cmd_down() {
    local entry name pid
    for entry in "${BINARIES[@]}"; do
        name="${entry%%:*}"
        if pid="$(our_pid "$name" "/auren-$name")"; then
            stop_pid "$name" "$pid" 20
        fi
        rm -f "$RUN/$name.pid"
    done
    if pid="$(our_pid kafka "$(kafka_pattern)")"; then
        stop_pid kafka "$pid" 60
    fi
    rm -f "$RUN/kafka.pid"
    if pid="$(our_pid redis redis-server)"; then
        stop_pid redis "$pid" 30
    fi
    if pg_running; then
        pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 -s stop ||
            die "postgresql: pg_ctl stop failed (log: $PG_LOG)"
        say "postgresql: stopped"
    fi
}

cmd_status() {
    local entry name port pid all=0
    line() { printf '%-11s %-8s %s\n' "$@"; }
    if pg_running; then
        line postgresql running "pid $(head -1 "$PGDATA/postmaster.pid")  127.0.0.1:$PG_PORT"
    else
        line postgresql stopped ""; all=3
    fi
    if pid="$(our_pid redis redis-server)"; then
        line redis running "pid $pid  127.0.0.1:$REDIS_PORT"
    else
        line redis stopped ""; all=3
    fi
    if pid="$(our_pid kafka "$(kafka_pattern)")"; then
        line kafka running "pid $pid  127.0.0.1:$KAFKA_PORT"
    else
        line kafka stopped ""; all=3
    fi
    for entry in "${BINARIES[@]}"; do
        name="${entry%%:*}" port="${entry##*:}"
        if pid="$(our_pid "$name" "/auren-$name")"; then
            if http_ok "$port" /readyz; then
                line "$name" running "pid $pid  http://127.0.0.1:$port  ready"
            else
                line "$name" running "pid $pid  http://127.0.0.1:$port  NOT READY"
            fi
        else
            line "$name" stopped ""; all=3
        fi
    done
    return "$all"
}

cmd_reset() {
    cmd_down
    rm -rf "$KAFKA_DATA" "$KAFKA_DIR/server.properties" "$KAFKA_DIR/cluster.id" \
        "$KAFKA_DIR/format.log" "$KAFKA_LOG" "$KAFKA_LOG.1" "$REDIS_DIR" "$PG_DIR" "$RUN" "$LOGS" \
        "$STATE/spool"
    say "stack: data wiped (Kafka, Redis, PostgreSQL, logs); the Kafka jars in $KAFKA_LIBS are kept"
}

# ---- single components (fault injection) ----------------------------------------------------

component_pid() {
    case "$1" in
    gateway | processor | persister) our_pid "$1" "/auren-$1" ;;
    kafka) our_pid kafka "$(kafka_pattern)" ;;
    redis) our_pid redis redis-server ;;
    postgresql) pg_running && head -1 "$PGDATA/postmaster.pid" ;;
    *) die "unknown component '$1' (gateway, processor, persister, kafka, redis, postgresql)" ;;
    esac
}

cmd_kill9() {
    local pid
    pid="$(component_pid "$1")" || die "$1 is not running"
    kill -KILL "$pid"
    # PostgreSQL's children exit once the postmaster is gone; wait for the port to be free.
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    say "$1: killed (SIGKILL, pid $pid)"
}

cmd_stop_one() {
    local pid
    case "$1" in
    postgresql)
        pg_running && pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 -s stop
        say "postgresql: stopped" ;;
    *)
        pid="$(component_pid "$1")" || { say "$1: not running"; return 0; }
        stop_pid "$1" "$pid" 60 ;;
    esac
}

cmd_start_one() {
    case "$1" in
    gateway | processor | persister) binaries_up ;;
    kafka) kafka_up ;;
    redis) redis_up ;;
    postgresql) pg_up ;;
    *) die "unknown component '$1'" ;;
    esac
}

# One up/down/reset at a time per checkout; a second caller waits for the first. Daemons are
# started with fd 9 closed so that they do not hold the lock.
lock_state() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.stack.lock"
    if ! flock -n 9; then
        say "stack: another scripts/stack.sh is running on $STATE; waiting for it"
        flock -w 600 9 || die "gave up waiting for the other scripts/stack.sh"
    fi
}

case "${1:-}" in
up) lock_state && cmd_up ;;
down) lock_state && cmd_down ;;
status) cmd_status ;;
reset) lock_state && cmd_reset ;;
kill9) [[ -n "${2:-}" ]] || die "usage: $0 kill9 COMPONENT"; cmd_kill9 "$2" ;;
stop) [[ -n "${2:-}" ]] || die "usage: $0 stop COMPONENT"; lock_state && cmd_stop_one "$2" ;;
start) [[ -n "${2:-}" ]] || die "usage: $0 start COMPONENT"; lock_state && cmd_start_one "$2" ;;
*)
    printf 'usage: %s up|down|status|reset|kill9 C|stop C|start C\n' "$0" >&2
    exit 2
    ;;
esac
