/* The persister's consume -> batch -> PostgreSQL -> commit loop, and the batch bookkeeping it is
 * built on.
 *
 * A batch collects consumed messages: decodable ones become rows, undecodable ones are sent to the
 * DLQ and only their offsets are kept. A batch is written as soon as the consumer has nothing
 * more queued (what arrived during the previous write is taken at once; batches grow with the
 * load), at PERSISTER_BATCH_MAX messages, or at the latest PERSISTER_BATCH_MS after its first
 * one. Exactly once: the batch's rows and its
 * consumer offsets (per partition: highest consumed offset + 1, table consumer_offsets) commit in
 * the same PostgreSQL transaction, and on partition assignment the consumer seeks to the stored
 * offsets. Dead letters of the batch are acknowledged by Kafka before that transaction, so an
 * offset never passes a record that is not durable somewhere. Kafka's committed offsets follow
 * after the database COMMIT (for lag tools, and as the fallback when PostgreSQL cannot be asked
 * at assignment time: a re-read is absorbed by ON CONFLICT (event_id)).
 * Thread: everything here runs on the thread that calls pers_loop_run(), except
 * pers_loop_stop() (async-signal-safe) and pers_loop_ready() (the ops HTTP thread). */
#ifndef PERS_LOOP_H
#define PERS_LOOP_H

#include <librdkafka/rdkafka.h>

#include "cm/common.h"
#include "cm/records.h"
#include "pers_cfg.h"
#include "pers_pg.h"

/* One decodable message. The event and the key/value copies (kept for the DLQ) are owned. */
struct pers_row {
    struct cm_biometric_event ev;
    char *topic;
    int32_t partition;
    int64_t offset;
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
    bool done; /* committed to PostgreSQL or dead-lettered: skipped when a batch is retried */
};

/* Highest offset consumed from one partition in this batch. */
struct pers_mark {
    char *topic;
    int32_t partition;
    int64_t offset;
    size_t msgs; /* messages of this partition in the batch */
};

struct pers_batch {
    struct pers_row *rows;
    size_t n_rows, cap_rows;
    struct pers_mark *marks;
    size_t n_marks, cap_marks;
    size_t n_msgs;    /* messages consumed into the batch: rows plus dead-lettered ones */
    int64_t first_us; /* monotonic time of the first message */
};

void pers_batch_init(struct pers_batch *b);
void pers_batch_fini(struct pers_batch *b);
/* Free the rows and marks; keep the arrays for the next batch. */
void pers_batch_reset(struct pers_batch *b);
bool pers_batch_empty(const struct pers_batch *b);

/* Record a consumed message that produced no row (it went to the DLQ). */
void pers_batch_note(struct pers_batch *b, const char *topic, int32_t partition, int64_t offset,
                     int64_t now_us);
/* Add a decoded event. Takes ownership of the fields of *ev (and zeroes it); copies key/value
 * (either may be NULL with length 0). */
void pers_batch_add(struct pers_batch *b, struct cm_biometric_event *ev, const char *topic,
                    int32_t partition, int64_t offset, const void *key, size_t key_len,
                    const void *value, size_t value_len, int64_t now_us);

/* The offsets to commit: one entry per (topic, partition), highest consumed offset + 1.
 * Returns new (rd_kafka_topic_partition_list_destroy), or NULL when the batch is empty. */
rd_kafka_topic_partition_list_t *pers_batch_offsets(const struct pers_batch *b);

/* Forget the rows and offsets of the listed partitions (revoked: they will be re-read by whoever
 * gets them; the writes are idempotent). Returns how many messages were dropped. */
size_t pers_batch_drop(struct pers_batch *b, const rd_kafka_topic_partition_list_t *parts);

/* What pers_batch_store reports back while it works. */
struct pers_store_hooks {
    /* A row PostgreSQL rejects on its own (data exception / constraint): dead-letter it.
     * Returns CM_OK once handed to the DLQ producer; anything else aborts the store. */
    enum cm_rc (*reject)(void *arg, const struct pers_row *row, const struct pers_pg_outcome *why);
    /* A transaction committed; received_us holds the received_at of its new rows. */
    void (*committed)(void *arg, const int64_t *received_us, size_t n, int64_t commit_us);
    /* A statement failed (for the error counter). */
    void (*pg_error)(void *arg, const struct pers_pg_outcome *why);
    void *arg;
};

struct pers_store_stats {
    size_t inserted;     /* new rows */
    size_t duplicates;   /* rows that changed nothing (already stored, or repeated in the batch) */
    size_t tombstoned;   /* stored rows a tombstone marked deleted */
    size_t rejected;     /* rows handed to hooks->reject */
    size_t transactions; /* transactions attempted */
    bool offsets_stored; /* the batch's offsets committed with its rows (see pers_batch_store) */
};

/* Write the rows of `b` not yet done. When `group` is not NULL the batch's offsets go into the
 * same transaction (st->offsets_stored) - unless PostgreSQL rejects the data (CM_INVALID): then
 * the rows are bisected into smaller transactions until each rejected row stands alone and goes
 * to hooks->reject, the rest commit, and the offsets are left to the caller
 * (pers_batch_store_offsets, once the dead letters are acknowledged). CM_RETRY (connection lost) /
 * CM_FATAL stop the walk: rows that did commit are marked done, so the retry writes only the
 * rest. `st` accumulates. */
enum cm_rc pers_batch_store(struct pers_pg *pg, struct pers_batch *b, const char *group,
                            const struct pers_store_hooks *hooks, struct pers_store_stats *st,
                            struct cm_err *err);
/* Commit the batch's offsets of `group` alone, in one transaction (a failure goes to
 * hooks->pg_error). */
enum cm_rc pers_batch_store_offsets(struct pers_pg *pg, const struct pers_batch *b,
                                    const char *group, const struct pers_store_hooks *hooks,
                                    struct cm_err *err);

struct pers_loop;

/* Create the consumer (subscribed to biometric.normalized.v1), the DLQ producer and the database
 * handle (connected lazily), and register the metrics. Borrows `cfg` for the loop's lifetime.
 * Returns new, or NULL with err (CM_INVALID: bad Kafka configuration). */
struct pers_loop *pers_loop_new(const struct pers_cfg *cfg, struct cm_err *err);
/* Run until pers_loop_stop(); then write the current batch, commit, close the consumer.
 * Returns CM_OK on a clean stop, CM_FATAL when the process must exit with an error. */
enum cm_rc pers_loop_run(struct pers_loop *l);
/* Ask the loop to stop. Async-signal-safe. */
void pers_loop_stop(struct pers_loop *l);
/* cm_ready_fn: partitions assigned and PostgreSQL reachable. */
bool pers_loop_ready(void *arg, const char **reason);
void pers_loop_free(struct pers_loop *l); /* NULL-safe */

#endif
