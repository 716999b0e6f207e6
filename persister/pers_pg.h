/* PostgreSQL side of the persister: one connection, one transaction per batch.
 *
 * A batch is written as BEGIN; SAVEPOINT; COPY biometric_events FROM STDIN (FORMAT binary);
 * COMMIT (the direct path). When that COPY meets an event_id already stored or repeated in the
 * batch (unique_violation), the transaction rolls back to the savepoint and the batch takes the
 * staging path: COPY staging FROM STDIN (FORMAT binary); INSERT INTO biometric_events SELECT
 * DISTINCT ON (event_id) ... ON CONFLICT (event_id) DO NOTHING; UPDATE the deleted flag of rows a
 * tombstone names (only when the batch has a tombstone); COMMIT. The next 16 batches go straight
 * to the staging path (a replay brings duplicates in runs). Both paths store the same rows.
 * `staging` is a per-connection temporary table (LIKE biometric_events, ON COMMIT DELETE ROWS)
 * created once after each connect.
 *
 * Tombstones (deleted = true) are sticky: a tombstone for an unknown event inserts the row already
 * deleted; a tombstone for a stored row sets its `deleted` flag and changes nothing else; a later
 * non-deleted copy of the same event_id never clears it. A duplicate non-deleted event changes
 * nothing. Inside one batch a tombstone wins over a non-deleted copy of the same event_id.
 *
 * Errors: CM_RETRY when the connection broke or the server is unavailable (the connection is
 * dropped and re-made on the next call), CM_INVALID when the rows themselves are rejected
 * (SQLSTATE class 22 data exception, 23 integrity constraint), CM_FATAL for errors that only a
 * code change fixes. `err` and `sqlstate` never carry server message text, which can quote values.
 * Thread: one thread owns a struct pers_pg. */
#ifndef PERS_PG_H
#define PERS_PG_H

#include "cm/buf.h"
#include "cm/common.h"
#include "cm/records.h"

/* Unix epoch to PostgreSQL epoch (2000-01-01T00:00:00Z), in microseconds. */
#define PERS_PG_EPOCH_OFFSET_US INT64_C(946684800000000)
/* Fields per row of the binary COPY: every column of biometric_events but persisted_at. */
#define PERS_COPY_NFIELDS 15

struct pers_pg;

struct pers_pg_outcome {
    size_t inserted;   /* rows new to biometric_events */
    size_t tombstoned; /* stored rows whose deleted flag this call set */
    char sqlstate[6];  /* on failure: the SQLSTATE, or "" when there was none (connection lost) */
    const char *step;  /* on failure: which statement failed (static text) */
};

/* Returns new; connects lazily. Borrows nothing: `url` is copied. */
struct pers_pg *pers_pg_new(const char *url);
void pers_pg_free(struct pers_pg *pg); /* NULL-safe */

/* Connect (if not connected) and create the staging table. CM_RETRY when the server cannot be
 * reached or the table is missing (migrations not applied yet). */
enum cm_rc pers_pg_connect(struct pers_pg *pg, struct pers_pg_outcome *out, struct cm_err *err);
bool pers_pg_connected(const struct pers_pg *pg);

/* Round trip to prove the server answers (readiness while idle). Connects if needed. */
enum cm_rc pers_pg_ping(struct pers_pg *pg, struct pers_pg_outcome *out, struct cm_err *err);

/* Store `n` events (borrowed) in one transaction, as described above. When `inserted_received_us`
 * is not NULL it must hold `n` entries and receives the received_at of each newly inserted row
 * (out->inserted of them), for the end-to-end latency. On failure nothing is committed. */
enum cm_rc pers_pg_store(struct pers_pg *pg, const struct cm_biometric_event *const *ev, size_t n,
                         int64_t *inserted_received_us, struct pers_pg_outcome *out,
                         struct cm_err *err);

/* The position of one consumed partition: the offset of the next message to read. */
struct pers_pg_offset {
    const char *topic;
    int32_t partition;
    int64_t next_offset;
};

/* Like pers_pg_store, and in the same transaction upsert the consumer_offsets rows of `group`
 * for the `n_offs` partitions in `offs` (borrowed), so rows and offsets commit together. With
 * n == 0 the transaction holds only the offsets; with n_offs == 0 it is pers_pg_store. */
enum cm_rc pers_pg_store_with_offsets(struct pers_pg *pg,
                                      const struct cm_biometric_event *const *ev, size_t n,
                                      int64_t *inserted_received_us, const char *group,
                                      const struct pers_pg_offset *offs, size_t n_offs,
                                      struct pers_pg_outcome *out, struct cm_err *err);

/* Read the stored next offsets of `group` for `n` partitions of `topic`: next[i] receives the
 * offset stored for partitions[i], or -1 when there is none. CM_RETRY when PostgreSQL cannot
 * answer (next is then untouched). */
enum cm_rc pers_pg_load_offsets(struct pers_pg *pg, const char *group, const char *topic,
                                const int32_t *partitions, int64_t *next, size_t n,
                                struct pers_pg_outcome *out, struct cm_err *err);

/* Binary COPY encoding (PostgreSQL "PGCOPY" format): the 19-byte header, one tuple of
 * PERS_COPY_NFIELDS fields per event in the column order of pers_pg_copy_columns, the trailer.
 * Appends to `out` (unbounded buffer). Thread: any. */
extern const char pers_pg_copy_columns[];
void pers_copy_begin(struct cm_buf *out);
void pers_copy_row(struct cm_buf *out, const struct cm_biometric_event *e);
void pers_copy_end(struct cm_buf *out);

/* Unix microseconds to PostgreSQL timestamptz microseconds. A value whose conversion would overflow
 * maps to one the server rejects as out of range (never to +/-infinity). */
int64_t pers_pg_timestamp(int64_t unix_us);

/* Reaction to a SQLSTATE (NULL or "" = no server error: the connection). */
enum cm_rc pers_pg_classify(const char *sqlstate);
/* Bounded metric label for a SQLSTATE: its two-character class, or "connection". `buf` holds 3. */
const char *pers_pg_error_class(const char *sqlstate, char buf[3]);

#endif
