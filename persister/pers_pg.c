/* PostgreSQL writer of auren-persister (see pers_pg.h for the transaction shape and the tombstone
 * rule). Rows travel in PostgreSQL's binary COPY format: no text escaping, no float formatting,
 * and the server parses nothing but lengths and network-order integers.
 * Invariant: after any failure the transaction is rolled back (or the connection dropped), so the
 * next call starts clean; server error text is never copied out because it can quote values. */
#include "pers_pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/log.h"

#define COPY_CHUNK (256 * 1024)
/* After a batch met a stored (or repeated) event_id, this many batches take the staging path
 * at once instead of trying the direct COPY first: a replay usually brings many duplicates. */
#define STAGING_AFTER_CONFLICT 16

struct pers_pg {
    char *url;
    PGconn *conn;
    int staging_batches; /* batches left that skip the direct COPY */
};

const char pers_pg_copy_columns[] =
    "event_id, user_id, vendor, metric, value, unit, loinc, start_time, end_time, "
    "utc_offset_seconds, source_record_id, raw_event_id, ingested_at, received_at, deleted";

#define COLS                                                                                   \
    "event_id, user_id, vendor, metric, value, unit, loinc, start_time, end_time, "            \
    "utc_offset_seconds, source_record_id, raw_event_id, ingested_at, received_at, deleted"

static const char sql_staging[] =
    "CREATE TEMP TABLE IF NOT EXISTS staging (LIKE biometric_events INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS";
static const char sql_copy[] = "COPY staging (" COLS ") FROM STDIN (FORMAT binary)";
/* The fast path: rows straight into the table under a savepoint. A duplicate event_id (stored
 * before, or twice in the batch) fails it with unique_violation; the batch then rolls back to the
 * savepoint and takes the staging path, whose result is the same as if it had gone there first
 * (a batch without a repeated id inserts every row, tombstones already deleted). */
static const char sql_begin_direct[] = "BEGIN; SAVEPOINT direct";
static const char sql_copy_direct[] =
    "COPY biometric_events (" COLS ") FROM STDIN (FORMAT binary)";
/* DISTINCT ON keeps one row per event_id (a tombstone first), so the statement never meets the
 * same key twice; RETURNING yields exactly the rows that were new. */
static const char sql_insert[] =
    "INSERT INTO biometric_events (" COLS ") "
    "SELECT DISTINCT ON (event_id) " COLS " FROM staging ORDER BY event_id, deleted DESC "
    "ON CONFLICT (event_id) DO NOTHING "
    "RETURNING (extract(epoch FROM received_at) * 1000000)::bigint";
static const char sql_tombstone[] =
    "UPDATE biometric_events b SET deleted = true FROM staging s "
    "WHERE s.event_id = b.event_id AND s.deleted AND NOT b.deleted";

/* Rows and offsets share a transaction; an offset only moves to what this batch consumed. */
static const char sql_offsets_upsert[] =
    "INSERT INTO consumer_offsets (consumer_group, topic, kafka_partition, next_offset) "
    "VALUES ($1, $2, $3::integer, $4::bigint) "
    "ON CONFLICT (consumer_group, topic, kafka_partition) "
    "DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()";
static const char sql_offsets_load[] =
    "SELECT kafka_partition, next_offset FROM consumer_offsets "
    "WHERE consumer_group = $1 AND topic = $2";

/* ---- binary COPY encoding ---- */

static void put_bytes(struct cm_buf *out, const void *p, size_t n)
{
    /* The buffer is unbounded, so an append only fails by aborting on OOM. */
    cm_assert(cm_buf_append(out, p, n) == CM_OK);
}

static void put_u16(struct cm_buf *out, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    put_bytes(out, b, sizeof(b));
}

static void put_u32(struct cm_buf *out, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    put_bytes(out, b, sizeof(b));
}

static void put_u64(struct cm_buf *out, uint64_t v)
{
    uint8_t b[8];

    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    }
    put_bytes(out, b, sizeof(b));
}

static void put_null(struct cm_buf *out)
{
    put_u32(out, UINT32_MAX); /* length -1 */
}

static void put_text(struct cm_buf *out, const char *s)
{
    size_t n;

    if (s == NULL) {
        put_null(out); /* required columns reject it with 23502, which dead-letters the row */
        return;
    }
    n = strlen(s);
    cm_assert(n <= INT32_MAX);
    put_u32(out, (uint32_t)n);
    put_bytes(out, s, n);
}

static void put_int8_field(struct cm_buf *out, int64_t v)
{
    put_u32(out, 8);
    put_u64(out, (uint64_t)v);
}

static void put_float8(struct cm_buf *out, double v)
{
    uint64_t bits;

    memcpy(&bits, &v, sizeof(bits));
    put_u32(out, 8);
    put_u64(out, bits);
}

int64_t pers_pg_timestamp(int64_t unix_us)
{
    if (unix_us <= INT64_MIN + PERS_PG_EPOCH_OFFSET_US) {
        return INT64_MIN + 1; /* below PostgreSQL's range; INT64_MIN itself means -infinity */
    }
    return unix_us - PERS_PG_EPOCH_OFFSET_US;
}

void pers_copy_begin(struct cm_buf *out)
{
    static const uint8_t sig[11] = { 'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0 };

    put_bytes(out, sig, sizeof(sig));
    put_u32(out, 0); /* flags: no OIDs */
    put_u32(out, 0); /* header extension length */
}

void pers_copy_row(struct cm_buf *out, const struct cm_biometric_event *e)
{
    put_u16(out, PERS_COPY_NFIELDS);
    put_text(out, e->event_id);
    put_text(out, e->user_id);
    put_text(out, e->vendor);
    put_text(out, e->metric);
    put_float8(out, e->value);
    put_text(out, e->unit);
    put_text(out, e->loinc);
    put_int8_field(out, pers_pg_timestamp(e->start_time_us));
    put_int8_field(out, pers_pg_timestamp(e->end_time_us));
    if (e->has_utc_offset) {
        put_u32(out, 4);
        put_u32(out, (uint32_t)e->utc_offset_seconds);
    } else {
        put_null(out);
    }
    put_text(out, e->source_record_id);
    put_text(out, e->raw_event_id);
    put_int8_field(out, pers_pg_timestamp(e->ingested_at_us));
    put_int8_field(out, pers_pg_timestamp(e->received_at_us));
    put_u32(out, 1);
    put_bytes(out, e->deleted ? "\x01" : "\x00", 1);
}

void pers_copy_end(struct cm_buf *out)
{
    put_u16(out, UINT16_MAX); /* field count -1 */
}

/* ---- error classes ---- */

enum cm_rc pers_pg_classify(const char *sqlstate)
{
    if (sqlstate == NULL || strlen(sqlstate) != 5) {
        return CM_RETRY;
    }
    if (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0) {
        return CM_INVALID;
    }
    if (strncmp(sqlstate, "42", 2) == 0) {
        /* Missing table or column: migrations not applied yet, which a deploy fixes. */
        if (strcmp(sqlstate, "42P01") == 0 || strcmp(sqlstate, "42703") == 0) {
            return CM_RETRY;
        }
        return CM_FATAL;
    }
    if (strncmp(sqlstate, "0A", 2) == 0) {
        return CM_FATAL;
    }
    /* 08 connection, 40 serialization/deadlock, 53 resources, 57 operator intervention (restart,
     * statement timeout), 58/XX server trouble, 28 credentials (rotated secrets): retry later. */
    return CM_RETRY;
}

const char *pers_pg_error_class(const char *sqlstate, char buf[3])
{
    if (sqlstate == NULL || strlen(sqlstate) != 5) {
        return "connection";
    }
    buf[0] = sqlstate[0];
    buf[1] = sqlstate[1];
    buf[2] = '\0';
    return buf;
}

/* ---- connection ---- */

static void on_notice(void *arg, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

    /* The notice text may quote data; its code and severity may not. */
    cm_log_debug("pg.notice", "severity=%s sqlstate=%s", sev != NULL ? sev : "?",
                 state != NULL ? state : "?");
}

struct pers_pg *pers_pg_new(const char *url)
{
    struct pers_pg *pg = cm_xcalloc(1, sizeof(*pg));

    pg->url = cm_xstrdup(url);
    return pg;
}

static void drop_conn(struct pers_pg *pg)
{
    if (pg->conn != NULL) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
}

void pers_pg_free(struct pers_pg *pg)
{
    if (pg == NULL) {
        return;
    }
    drop_conn(pg);
    free(pg->url);
    free(pg);
}

bool pers_pg_connected(const struct pers_pg *pg)
{
    return pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK;
}

static void outcome_clear(struct pers_pg_outcome *out)
{
    memset(out, 0, sizeof(*out));
    out->step = "";
}

/* Fill the outcome and err from a failed result (res may be NULL) and pick the reaction. After a
 * broken link or a failed transaction the session is reset so the next call starts clean. */
static enum cm_rc fail(struct pers_pg *pg, PGresult *res, const char *step,
                       struct pers_pg_outcome *out, struct cm_err *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    bool lost = pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK;
    enum cm_rc rc;

    out->step = step;
    if (state != NULL && strlen(state) == 5 && !lost) {
        cm_strlcpy(out->sqlstate, state, sizeof(out->sqlstate));
        rc = pers_pg_classify(state);
    } else if (state != NULL && strlen(state) == 5) {
        cm_strlcpy(out->sqlstate, state, sizeof(out->sqlstate));
        rc = CM_RETRY;
    } else {
        out->sqlstate[0] = '\0';
        rc = CM_RETRY;
    }
    if (res != NULL) {
        PQclear(res);
    }
    if (lost) {
        drop_conn(pg);
    } else if (PQtransactionStatus(pg->conn) != PQTRANS_IDLE) {
        PGresult *rb = PQexec(pg->conn, "ROLLBACK");
        if (PQresultStatus(rb) != PGRES_COMMAND_OK) {
            drop_conn(pg);
        }
        PQclear(rb);
    }
    return cm_err_set(err, rc, "postgres %s failed: sqlstate=%s", step,
                      out->sqlstate[0] != '\0' ? out->sqlstate : "none (connection)");
}

static enum cm_rc exec_ok(struct pers_pg *pg, const char *sql, const char *step,
                          struct pers_pg_outcome *out, struct cm_err *err)
{
    PGresult *res = PQexec(pg->conn, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        return fail(pg, res, step, out, err);
    }
    PQclear(res);
    return CM_OK;
}

enum cm_rc pers_pg_connect(struct pers_pg *pg, struct pers_pg_outcome *out, struct cm_err *err)
{
    /* Our defaults come first; the URL (dbname, expanded) is last so it can override them. */
    static const char *const keys[] = { "connect_timeout",     "keepalives",
                                        "keepalives_idle",     "keepalives_interval",
                                        "keepalives_count",    "tcp_user_timeout",
                                        "application_name",    "options",
                                        "dbname",              NULL };
    const char *vals[CM_ARRAY_LEN(keys)] = { "5",  "1",  "10", "5", "3", "30000", "auren-persister",
                                             "-c statement_timeout=60000", pg->url, NULL };
    enum cm_rc rc;

    outcome_clear(out);
    if (pers_pg_connected(pg)) {
        return CM_OK;
    }
    drop_conn(pg);
    pg->conn = PQconnectdbParams(keys, vals, 1);
    if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
        drop_conn(pg);
        out->step = "connect";
        /* The server's text can name the user and database: keep it out of the error. */
        return cm_err_set(err, CM_RETRY, "postgres connect failed");
    }
    PQsetNoticeReceiver(pg->conn, on_notice, NULL);
    rc = exec_ok(pg, sql_staging, "create_staging", out, err);
    if (rc != CM_OK) {
        drop_conn(pg);
        return rc == CM_INVALID ? CM_FATAL : rc;
    }
    return CM_OK;
}

enum cm_rc pers_pg_ping(struct pers_pg *pg, struct pers_pg_outcome *out, struct cm_err *err)
{
    enum cm_rc rc = pers_pg_connect(pg, out, err);

    if (rc != CM_OK) {
        return rc;
    }
    return exec_ok(pg, "SELECT 1", "ping", out, err);
}

/* COPY the rows with `sql`. When `conflict` is not NULL, a unique_violation sets it and returns
 * CM_OK with the transaction left failed (the caller rolls back to its savepoint). */
static enum cm_rc copy_rows(struct pers_pg *pg, const char *sql,
                            const struct cm_biometric_event *const *ev, size_t n, bool *conflict,
                            struct pers_pg_outcome *out, struct cm_err *err)
{
    struct cm_buf b;
    PGresult *res;
    bool sent = true;

    res = PQexec(pg->conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        return fail(pg, res, "copy", out, err);
    }
    PQclear(res);

    cm_buf_init(&b, 0);
    pers_copy_begin(&b);
    for (size_t i = 0; i < n; i++) {
        pers_copy_row(&b, ev[i]);
    }
    pers_copy_end(&b);
    for (size_t off = 0; off < b.len && sent; off += COPY_CHUNK) {
        size_t len = b.len - off < COPY_CHUNK ? b.len - off : COPY_CHUNK;
        sent = PQputCopyData(pg->conn, (const char *)b.data + off, (int)len) == 1;
    }
    cm_buf_fini(&b);
    if (PQputCopyEnd(pg->conn, sent ? NULL : "client send failed") != 1) {
        return fail(pg, NULL, "copy", out, err);
    }
    /* Rows the server refuses (bad UTF-8, timestamp out of range, NULL in a NOT NULL column)
     * surface here, after the end of data. */
    res = PQgetResult(pg->conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        PGresult *rest;
        while ((rest = PQgetResult(pg->conn)) != NULL) {
            PQclear(rest);
        }
        if (conflict != NULL && state != NULL && strcmp(state, "23505") == 0 &&
            pers_pg_connected(pg)) {
            PQclear(res);
            *conflict = true;
            return CM_OK;
        }
        return fail(pg, res, "copy", out, err);
    }
    PQclear(res);
    while ((res = PQgetResult(pg->conn)) != NULL) {
        PQclear(res);
    }
    if (!sent) {
        return fail(pg, NULL, "copy", out, err);
    }
    return CM_OK;
}

static enum cm_rc insert_rows(struct pers_pg *pg, int64_t *received_us, size_t cap,
                              struct pers_pg_outcome *out, struct cm_err *err)
{
    PGresult *res = PQexec(pg->conn, sql_insert);
    int nt;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        return fail(pg, res, "insert", out, err);
    }
    nt = PQntuples(res);
    out->inserted = (size_t)nt;
    for (int i = 0; received_us != NULL && i < nt && (size_t)i < cap; i++) {
        char *end;
        const char *v = PQgetvalue(res, i, 0);
        long long us = strtoll(v, &end, 10);
        received_us[i] = (end != v && *end == '\0') ? (int64_t)us : 0;
    }
    PQclear(res);
    return CM_OK;
}

static enum cm_rc mark_tombstones(struct pers_pg *pg, struct pers_pg_outcome *out,
                                  struct cm_err *err)
{
    PGresult *res = PQexec(pg->conn, sql_tombstone);
    char *end;
    const char *v;

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        return fail(pg, res, "tombstone", out, err);
    }
    v = PQcmdTuples(res);
    out->tombstoned = (size_t)strtoul(v, &end, 10);
    PQclear(res);
    return CM_OK;
}

/* Upsert one consumer_offsets row per partition (inside the caller's transaction). */
static enum cm_rc upsert_offsets(struct pers_pg *pg, const char *group,
                                 const struct pers_pg_offset *offs, size_t n_offs,
                                 struct pers_pg_outcome *out, struct cm_err *err)
{
    for (size_t i = 0; i < n_offs; i++) {
        char part[16], next[24];
        const char *params[4] = { group, offs[i].topic, part, next };
        PGresult *res;

        snprintf(part, sizeof(part), "%d", (int)offs[i].partition);
        snprintf(next, sizeof(next), "%lld", (long long)offs[i].next_offset);
        res = PQexecParams(pg->conn, sql_offsets_upsert, 4, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            return fail(pg, res, "offsets", out, err);
        }
        PQclear(res);
    }
    return CM_OK;
}

/* Direct COPY of a batch inside the open transaction (after SAVEPOINT direct). *done tells
 * whether the rows are in; when not, the transaction is back at the savepoint. */
static enum cm_rc copy_direct(struct pers_pg *pg, const struct cm_biometric_event *const *ev,
                              size_t n, int64_t *received_us, bool *done,
                              struct pers_pg_outcome *out, struct cm_err *err)
{
    bool conflict = false;
    enum cm_rc rc = copy_rows(pg, sql_copy_direct, ev, n, &conflict, out, err);

    *done = false;
    if (rc != CM_OK) {
        return rc;
    }
    if (conflict) {
        pg->staging_batches = STAGING_AFTER_CONFLICT;
        return exec_ok(pg, "ROLLBACK TO SAVEPOINT direct", "rollback_direct", out, err);
    }
    for (size_t i = 0; received_us != NULL && i < n; i++) {
        received_us[i] = ev[i]->received_at_us;
    }
    out->inserted = n;
    *done = true;
    return CM_OK;
}

static bool any_tombstone(const struct cm_biometric_event *const *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ev[i]->deleted) {
            return true;
        }
    }
    return false;
}

/* The staging path: COPY into staging, INSERT ... SELECT DISTINCT ON ... ON CONFLICT DO
 * NOTHING, then the tombstone UPDATE when the batch has a tombstone at all. */
static enum cm_rc store_staged(struct pers_pg *pg, const struct cm_biometric_event *const *ev,
                               size_t n, int64_t *received_us, struct pers_pg_outcome *out,
                               struct cm_err *err)
{
    enum cm_rc rc = copy_rows(pg, sql_copy, ev, n, NULL, out, err);

    if (rc == CM_OK) {
        rc = insert_rows(pg, received_us, n, out, err);
    }
    if (rc == CM_OK && any_tombstone(ev, n)) {
        rc = mark_tombstones(pg, out, err);
    }
    return rc;
}

enum cm_rc pers_pg_store(struct pers_pg *pg, const struct cm_biometric_event *const *ev, size_t n,
                         int64_t *inserted_received_us, struct pers_pg_outcome *out,
                         struct cm_err *err)
{
    return pers_pg_store_with_offsets(pg, ev, n, inserted_received_us, NULL, NULL, 0, out, err);
}

enum cm_rc pers_pg_store_with_offsets(struct pers_pg *pg,
                                      const struct cm_biometric_event *const *ev, size_t n,
                                      int64_t *inserted_received_us, const char *group,
                                      const struct pers_pg_offset *offs, size_t n_offs,
                                      struct pers_pg_outcome *out, struct cm_err *err)
{
    enum cm_rc rc = pers_pg_connect(pg, out, err);
    bool direct, done = false;

    if (rc != CM_OK) {
        return rc;
    }
    if (n == 0 && n_offs == 0) {
        return CM_OK;
    }
    direct = n > 0 && pg->staging_batches == 0;
    if (n > 0 && pg->staging_batches > 0) {
        pg->staging_batches--;
    }
    if ((rc = exec_ok(pg, direct ? sql_begin_direct : "BEGIN", "begin", out, err)) != CM_OK ||
        (direct && (rc = copy_direct(pg, ev, n, inserted_received_us, &done, out, err)) != CM_OK) ||
        (n > 0 && !done &&
         (rc = store_staged(pg, ev, n, inserted_received_us, out, err)) != CM_OK) ||
        (n_offs > 0 && (rc = upsert_offsets(pg, group, offs, n_offs, out, err)) != CM_OK)) {
        out->inserted = 0;
        out->tombstoned = 0;
        return rc;
    }
    if ((rc = exec_ok(pg, "COMMIT", "commit", out, err)) != CM_OK) {
        /* A link lost during COMMIT leaves the outcome unknown; the retry is idempotent. */
        out->inserted = 0;
        out->tombstoned = 0;
        return rc;
    }
    return CM_OK;
}

enum cm_rc pers_pg_load_offsets(struct pers_pg *pg, const char *group, const char *topic,
                                const int32_t *partitions, int64_t *next, size_t n,
                                struct pers_pg_outcome *out, struct cm_err *err)
{
    const char *params[2] = { group, topic };
    enum cm_rc rc = pers_pg_connect(pg, out, err);
    PGresult *res;

    if (rc != CM_OK) {
        return rc;
    }
    res = PQexecParams(pg->conn, sql_offsets_load, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        return fail(pg, res, "load_offsets", out, err);
    }
    for (size_t i = 0; i < n; i++) {
        next[i] = -1;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        long part = strtol(PQgetvalue(res, r, 0), NULL, 10);
        long long off = strtoll(PQgetvalue(res, r, 1), NULL, 10);

        for (size_t i = 0; i < n; i++) {
            if (partitions[i] == part) {
                next[i] = (int64_t)off;
            }
        }
    }
    PQclear(res);
    return CM_OK;
}
