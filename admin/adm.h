/* auren-admin: the operator's tool for the bridge's own state. It applies the versioned SQL
 * migrations (schemas/sql), creates the Kafka topics, and manages vendor connections.
 * These functions do the work; main.c parses the command line and picks the exit code.
 * Thread: single-threaded CLI; nothing here is shared. */
#ifndef ADM_H
#define ADM_H

#include <stdbool.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "cm/common.h"

#define ADM_DEFAULT_DATABASE_URL "postgresql://auren:auren@127.0.0.1:5432/auren"
#define ADM_DEFAULT_KAFKA_BROKERS "127.0.0.1:9092"

/* Exit codes: 0 done, 1 the work failed (database, broker, missing row), 2 usage or config. */
enum { ADM_EXIT_OK = 0, ADM_EXIT_FAIL = 1, ADM_EXIT_USAGE = 2 };

/* ---- adm_pg.c: libpq plumbing ---- */

/* Connect to `url` (a libpq URI or key=value string; it wins over our connect_timeout and
 * application_name). Returns a new connection, or NULL with CM_RETRY's reason in `err`. */
PGconn *adm_pg_connect(const char *url, struct cm_err *err);
/* Run one statement (or a script of several) that returns no rows we need.
 * `what` names it in the error: "<what>: SQLSTATE <code>: <primary message>". */
enum cm_rc adm_pg_exec(PGconn *pg, const char *sql, const char *what, struct cm_err *err);
/* Fill `err` from a failed result (SQLSTATE and primary message only, never DETAIL, which can
 * echo row values) or from the connection when `res` is NULL. Returns CM_RETRY for a lost
 * connection, otherwise CM_INVALID. */
enum cm_rc adm_pg_fail(PGconn *pg, const PGresult *res, const char *what, struct cm_err *err);

/* ---- adm_migrate.c: versioned SQL files ---- */

struct adm_migration {
    int version;
    char *name; /* "init" for 001_init.sql */
    char *path;
};

struct adm_migrate_set {
    struct adm_migration *v; /* sorted by version, versions unique */
    size_t n;
};

/* Split "NNN_name.sql" into version and name. The version is 1-9 digits (> 0), the name
 * [A-Za-z0-9_-]+. Returns false for anything else. `name` gets at most namesz-1 bytes. */
bool adm_migrate_parse_name(const char *file, int *version, char *name, size_t namesz);
/* Read the migration files of `dir`. Files not ending in ".sql" are ignored; a ".sql" file with
 * a bad name or a version used twice is CM_INVALID. On CM_OK `set` is filled (may be empty);
 * release it with adm_migrate_set_fini(). */
enum cm_rc adm_migrate_scan(const char *dir, struct adm_migrate_set *set, struct cm_err *err);
void adm_migrate_set_fini(struct adm_migrate_set *set);
/* Apply each migration of `set` that schema_migrations does not list, in version order, each in
 * its own transaction together with its version row, all under a session advisory lock so that
 * concurrent runs apply each file once. Prints one line per applied file and a summary to
 * `out`. Stops at the first failure (that file is rolled back; earlier ones stay). */
enum cm_rc adm_migrate_apply(PGconn *pg, const struct adm_migrate_set *set, FILE *out,
                             struct cm_err *err);

/* ---- adm_topics.c: Kafka topics ---- */

struct adm_topics_opts {
    const char *brokers;
    int partitions;
    int replication;
    int timeout_ms;
};

/* Create the biometric.* topics (raw, normalized, fetch, dlq, fetch retry) with the admin
 * API. A topic that already exists counts as done (its partition count is reported, and a warning printed when it is below the request).
 * CM_RETRY when the broker cannot be reached in time, CM_INVALID when it refuses a topic. */
enum cm_rc adm_topics_create(const struct adm_topics_opts *o, FILE *out, struct cm_err *err);

/* ---- adm_conn.c: vendor connections ---- */

/* True for the vendors the gateway serves (whoop, oura, polar, fitbit, google_health, withings,
 * garmin, strava, terra, app). */
bool adm_conn_vendor_valid(const char *vendor);
/* True for an id we accept on the command line: 1-256 printable ASCII bytes. */
bool adm_conn_id_valid(const char *id);
/* Insert or update (vendor, vendor_user_id) -> user_id with status active. Tokens are kept. */
enum cm_rc adm_conn_add(PGconn *pg, const char *vendor, const char *vendor_user_id,
                        const char *user_id, struct cm_err *err);
/* Print a tab-separated table (header first) of the connections, all vendors when `vendor` is
 * NULL: vendor, vendor_user_id, user_id, status, expires_at (UTC, "-" if none) and whether
 * tokens are stored. Never prints a token. Returns the row count in `*rows` when not NULL. */
enum cm_rc adm_conn_list(PGconn *pg, const char *vendor, FILE *out, size_t *rows,
                         struct cm_err *err);
/* Mark a connection revoked and drop its tokens. CM_INVALID when there is no such connection. */
enum cm_rc adm_conn_revoke(PGconn *pg, const char *vendor, const char *vendor_user_id,
                           struct cm_err *err);

struct cm_vault;

/* OAuth tokens of a connection as an operator hands them over (after the vendor's consent flow). */
struct adm_conn_tokens {
    const char *access_token;  /* required */
    const char *refresh_token; /* NULL when the vendor issues none (Polar) */
    long long expires_at_s;    /* epoch seconds; 0 = unknown (the fetcher refreshes on a 401) */
    const char *scopes;        /* NULL when not given */
};

/* Seal the tokens with the vault's active key, bound to (vendor, vendor_user_id, user_id), and
 * store them on the connection (inserted or re-activated, token_generation + 1). Never prints
 * or logs a token. */
enum cm_rc adm_conn_set_tokens(PGconn *pg, const struct cm_vault *v, const char *vendor,
                               const char *vendor_user_id, const char *user_id,
                               const struct adm_conn_tokens *t, struct cm_err *err);

/* ---- adm_keys.c: token key rotation ---- */

/* Re-seal every connection whose tokens are sealed under another key than the vault's active
 * one, one row per statement (no long lock; the processors keep running). A row refreshed
 * meanwhile (token_generation changed) is read again. Rows sealed under a key that is not
 * loaded are counted in *missing and left as they are. */
enum cm_rc adm_keys_rotate(PGconn *pg, const struct cm_vault *v, size_t *rotated, size_t *missing,
                           struct cm_err *err);
/* ---- adm_dlq.c: the dead-letter topic ---- */

/* Print per stage and reason: total dead letters, how many are pending replay, oldest and newest
 * age. Never prints a payload, key or id. */
enum cm_rc adm_dlq_list(const char *brokers, FILE *out, struct cm_err *err);
/* Re-produce every pending dead letter's original record to its source topic, exactly once
 * (Kafka transactions that also move the replay cursor); prints a one-line summary. */
enum cm_rc adm_dlq_replay(const char *brokers, FILE *out, struct cm_err *err);

/* ---- adm_spool.c: a gateway spool segment set aside as damaged-<seq>.spool ---- */
/* One line per record of the file (offset, size, whether it follows a damaged range, and for a
 * raw webhook its event id, vendor, kind, received time and body size; never a byte of its key,
 * headers or body), one per unreadable range, then a summary. */
enum cm_rc adm_spool_scan(const char *path, FILE *out, struct cm_err *err);
/* Send the records starting at `offsets` (each an intact record that decodes as a raw webhook;
 * CM_INVALID before anything is sent otherwise) to biometric.raw.v1 with their spooled key and
 * value, idempotent, acks=all, and wait for every delivery report (CM_RETRY when one failed). */
enum cm_rc adm_spool_replay(const char *brokers, const char *path, const size_t *offsets, size_t n,
                            FILE *out, struct cm_err *err);

#endif
