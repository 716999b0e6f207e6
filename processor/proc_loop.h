/* The processor's consume -> normalize -> produce -> Redis -> commit loop.
 *
 * Delivery guarantee: at least once. A batch (PROCESSOR_BATCH_MAX messages or PROCESSOR_BATCH_MS)
 * is normalized and every output (normalized events, fetch jobs, dead letters) is produced; the
 * loop then waits for all the delivery reports of the batch. Only when every one succeeded are the
 * Redis series updated and the batch's offsets committed (synchronously, explicit list). When a
 * produce fails, a delivery report is missing, or PostgreSQL cannot answer, nothing is committed:
 * the partitions are rewound to the batch's first offsets and the batch is replayed after a
 * backoff. Replays can publish an output twice; every consumer is idempotent on event_id (and
 * job_id), and Redis members are idempotent by construction. Exactly-once through Kafka
 * transactions is a later step.
 *
 * Ownership: proc_loop_new() borrows cfg (must outlive the loop) and returns new;
 * proc_loop_free() (NULL-safe). Thread: proc_loop_run() on the main thread; proc_loop_ready() from
 * the ops HTTP server's thread. */
#ifndef PROC_LOOP_H
#define PROC_LOOP_H

#include <signal.h>

#include "cm/common.h"
#include "proc_cfg.h"

struct proc_loop;

/* Registers the metrics, creates the Kafka consumer (subscribed) and producer, the PostgreSQL
 * resolver and the Redis writer. NULL with err on bad configuration. */
struct proc_loop *proc_loop_new(const struct proc_cfg *cfg, struct cm_err *err);
/* Run until *stop becomes non-zero (the current batch is finished first), then close the consumer
 * and flush the producer. CM_OK on a clean stop, CM_FATAL (err set) when the loop must exit. */
enum cm_rc proc_loop_run(struct proc_loop *l, const volatile sig_atomic_t *stop,
                         struct cm_err *err);
void proc_loop_free(struct proc_loop *l);

/* cm_ready_fn: joined the consumer group (or has an assignment), brokers reachable, PostgreSQL
 * reachable. */
bool proc_loop_ready(void *arg, const char **reason);

/* ---- pure helpers, exposed for the tests ---- */

/* The dead-letter reason of a normalizer error: the text before the first ':' (trimmed), or
 * "invalid" when empty. */
void proc_dlq_reason(const char *err_msg, char *out, size_t outsz);
/* Deterministic fetch job id: first 32 lower-case hex characters of
 * SHA-256("<raw_event_id>:<index>"). */
void proc_fetch_job_id(const char *raw_event_id, size_t index, char out[33]);
/* Kafka key of a fetch job: "<vendor>:<vendor_user_id>"; false when it does not fit. */
bool proc_fetch_key(const char *vendor, const char *vendor_user_id, char *out, size_t outsz);
/* Sum of consumer_lag over the partitions of a librdkafka statistics JSON document (partitions
 * with an unknown lag, -1, are skipped). CM_INVALID when the document cannot be parsed. */
enum cm_rc proc_stats_consumer_lag(const char *json, size_t len, int64_t *lag);

#endif
