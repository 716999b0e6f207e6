/* The processor's consume -> normalize -> produce -> Redis loop, exactly once through Kafka.
 *
 * Delivery guarantee: exactly once into Kafka. A batch (what the consumer has queued, at most
 * PROCESSOR_BATCH_MAX messages or PROCESSOR_BATCH_MS after its first) is one Kafka transaction: every output (normalized events, fetch jobs, dead
 * letters) and the batch's input offsets (sent to the transaction with the consumer group's
 * metadata) commit or abort together; downstream consumers read with isolation.level
 * read_committed, so an aborted batch is never seen. When a produce fails, the commit fails or
 * PostgreSQL cannot answer, the transaction is aborted, the partitions are rewound to the batch's
 * first offsets and the batch is replayed after a backoff. A fatal producer error (fenced by a
 * newer instance with the same transactional.id) stops the loop with CM_FATAL. Redis is written
 * after the commit; its writes are idempotent (event_id members), and while Redis is down they are
 * skipped and counted (proc_redis: reconnect attempts with exponential backoff act as the circuit
 * breaker), never holding up Kafka.
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
