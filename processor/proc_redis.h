/* The real-time per-user cache: Redis sorted sets ts:{user_id}:{metric}.
 *
 * Member format (documented in the README): "<event_id>|<value>", the value printed as the
 * shortest of %.15g / %.17g that reads back as the same double; score = start_time in epoch
 * milliseconds. One member per sample: writing a sample first removes any member of the same
 * event id at that score (a vendor correction replaces the value), so replays are idempotent;
 * a tombstone only removes. Each touched key is then trimmed to the newest
 * MAX_TIMESERIES_ENTRIES members and its TTL set to REDIS_TTL_SECONDS.
 *
 * Usage per batch: proc_redis_add() for each event, then proc_redis_flush() (writes the pipeline
 * and returns) once the batch is durable in Kafka, or proc_redis_discard(); proc_redis_wait()
 * reads the replies (the next flush does it first), so the caller can prepare its next batch
 * while Redis works on this one. Redis is a cache: when it is
 * down the writes are counted as skipped and the pipeline goes on; the connection is retried with
 * exponential backoff.
 * Ownership: proc_redis_new() returns new; proc_redis_free() (NULL-safe). Thread: one owner. */
#ifndef PROC_REDIS_H
#define PROC_REDIS_H

#include "cm/common.h"

struct cm_metric;
struct proc_redis;

struct proc_redis_url {
    char host[256];
    int port;
    int db;
    char user[128];     /* "" when none */
    char password[256]; /* "" when none */
};

/* redis://[[user]:password@]host[:port][/db] (user and password may be percent-encoded);
 * CM_INVALID with a reason that never repeats the URL. */
enum cm_rc proc_redis_url_parse(const char *url, struct proc_redis_url *out, struct cm_err *err);

/* The value as stored in a member; returns the length, out must hold 32 bytes. */
size_t proc_redis_format_value(double value, char *out, size_t outsz);
/* "<event_id>|<value>"; returns the length (truncated output is a programmer error). */
size_t proc_redis_member(const char *event_id, double value, char *out, size_t outsz);
/* "ts:<user_id>:<metric>"; returns false when it does not fit. */
bool proc_redis_key(const char *user_id, const char *metric, char *out, size_t outsz);
/* Score of a sample: start time in epoch milliseconds (rounded toward minus infinity). */
int64_t proc_redis_score_ms(int64_t start_us);

/* errors / skipped (borrowed, may be NULL): counters of failed round trips or error replies, and
 * of event writes not applied. NULL with err when the URL is invalid; otherwise connects lazily. */
struct proc_redis *proc_redis_new(const char *url, long ttl_s, long max_entries,
                                  struct cm_metric *errors, struct cm_metric *skipped,
                                  struct cm_err *err);
void proc_redis_free(struct proc_redis *r);

/* Queue the write of one event (copied). */
void proc_redis_add(struct proc_redis *r, const char *user_id, const char *metric,
                    const char *event_id, double value, int64_t start_us, bool deleted);
size_t proc_redis_pending(const struct proc_redis *r);
/* Forget the queued writes (the batch will be replayed). */
void proc_redis_discard(struct proc_redis *r);
/* Read the replies of the writes in flight (blocking) first, then send the queued writes as one
 * pipeline without waiting for its replies, and clear the queue. Returns how many were sent; the
 * others were counted as skipped. */
size_t proc_redis_flush(struct proc_redis *r);
/* Read the replies of the pipeline in flight, if any. Returns how many of its writes were applied;
 * the others (error replies, or all of them when the link broke) were counted as skipped. */
size_t proc_redis_wait(struct proc_redis *r);
/* Event writes sent and not yet confirmed by proc_redis_wait(). */
size_t proc_redis_in_flight(const struct proc_redis *r);
/* Is the connection currently up? (false before the first flush) */
bool proc_redis_connected(const struct proc_redis *r);

#endif
