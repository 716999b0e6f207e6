/* Consume biometric.normalized.v1, write batches to PostgreSQL, then commit the offsets.
 *
 * States: RUNNING (consuming, batching) and BACKOFF (a write or ping failed with CM_RETRY -
 * PostgreSQL down, or DLQ acks too slow: every assigned partition is paused so nothing piles up in
 * memory, consumer_poll keeps the group membership alive, and the same batch is retried with
 * exponential backoff; on success the partitions resume where the application left off).
 * A rebalance that revokes partitions drops their part of the uncommitted batch; the new owner
 * re-reads it and the writes are idempotent.
 * Offsets are committed explicitly after the database COMMIT and after the DLQ producer has
 * acknowledged every dead letter of the batch; the Kafka commit is asynchronous (its result comes
 * to on_commit): the offsets in PostgreSQL are the ones a new owner seeks to, Kafka's only feed
 * lag monitoring, so the next batch need not wait for the broker's round trip.
 * Logs carry counts, durations, partitions, offsets and SQLSTATEs only (PHI rule). */
#include "pers_loop.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/kafka.h"
#include "cm/log.h"
#include "cm/metrics.h"

#define PING_IDLE_US (5 * 1000000LL)     /* prove PostgreSQL answers after this much idleness */
#define BACKOFF_MIN_US (250 * 1000LL)
#define BACKOFF_MAX_US (30 * 1000000LL)
#define DLQ_FLUSH_MS 10000               /* longest wait for DLQ acks before a batch is retried */
#define POLL_MAX_MS 100                  /* stop flag and timers are checked at least this often */
#define ERRLOG_EVERY_US (30 * 1000000LL) /* repeat suppression for consumer errors */

/* ---- batch bookkeeping ---- */

void pers_batch_init(struct pers_batch *b)
{
    memset(b, 0, sizeof(*b));
}

static void row_fini(struct pers_row *r)
{
    cm_biometric_event_fini(&r->ev);
    free(r->topic);
    free(r->key);
    free(r->value);
    memset(r, 0, sizeof(*r));
}

void pers_batch_reset(struct pers_batch *b)
{
    for (size_t i = 0; i < b->n_rows; i++) {
        row_fini(&b->rows[i]);
    }
    for (size_t i = 0; i < b->n_marks; i++) {
        free(b->marks[i].topic);
    }
    b->n_rows = 0;
    b->n_marks = 0;
    b->n_msgs = 0;
    b->first_us = 0;
}

void pers_batch_fini(struct pers_batch *b)
{
    if (b == NULL) {
        return;
    }
    pers_batch_reset(b);
    free(b->rows);
    free(b->marks);
    memset(b, 0, sizeof(*b));
}

bool pers_batch_empty(const struct pers_batch *b)
{
    return b->n_msgs == 0;
}

void pers_batch_note(struct pers_batch *b, const char *topic, int32_t partition, int64_t offset,
                     int64_t now_us)
{
    struct pers_mark *m = NULL;

    if (b->n_msgs == 0) {
        b->first_us = now_us;
    }
    b->n_msgs++;
    for (size_t i = 0; i < b->n_marks; i++) {
        if (b->marks[i].partition == partition && strcmp(b->marks[i].topic, topic) == 0) {
            m = &b->marks[i];
            break;
        }
    }
    if (m == NULL) {
        if (b->n_marks == b->cap_marks) {
            b->cap_marks = b->cap_marks ? b->cap_marks * 2 : 8;
            b->marks = cm_xrealloc(b->marks, b->cap_marks * sizeof(*b->marks));
        }
        m = &b->marks[b->n_marks++];
        m->topic = cm_xstrdup(topic);
        m->partition = partition;
        m->offset = offset;
        m->msgs = 0;
    } else if (offset > m->offset) {
        m->offset = offset;
    }
    m->msgs++;
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d;

    if (p == NULL || n == 0) {
        return NULL;
    }
    d = cm_xmalloc(n);
    memcpy(d, p, n);
    return d;
}

void pers_batch_add(struct pers_batch *b, struct cm_biometric_event *ev, const char *topic,
                    int32_t partition, int64_t offset, const void *key, size_t key_len,
                    const void *value, size_t value_len, int64_t now_us)
{
    struct pers_row *r;

    pers_batch_note(b, topic, partition, offset, now_us);
    if (b->n_rows == b->cap_rows) {
        b->cap_rows = b->cap_rows ? b->cap_rows * 2 : 64;
        b->rows = cm_xrealloc(b->rows, b->cap_rows * sizeof(*b->rows));
    }
    r = &b->rows[b->n_rows++];
    memset(r, 0, sizeof(*r));
    r->ev = *ev;
    memset(ev, 0, sizeof(*ev));
    r->topic = cm_xstrdup(topic);
    r->partition = partition;
    r->offset = offset;
    r->key = dup_bytes(key, key_len);
    r->key_len = r->key != NULL ? key_len : 0;
    r->value = dup_bytes(value, value_len);
    r->value_len = r->value != NULL ? value_len : 0;
}

rd_kafka_topic_partition_list_t *pers_batch_offsets(const struct pers_batch *b)
{
    rd_kafka_topic_partition_list_t *list;

    if (b->n_marks == 0) {
        return NULL;
    }
    list = rd_kafka_topic_partition_list_new((int)b->n_marks);
    for (size_t i = 0; i < b->n_marks; i++) {
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(list, b->marks[i].topic, b->marks[i].partition);
        tp->offset = b->marks[i].offset + 1;
    }
    return list;
}

static bool listed(const rd_kafka_topic_partition_list_t *parts, const char *topic,
                   int32_t partition)
{
    for (int i = 0; parts != NULL && i < parts->cnt; i++) {
        if (parts->elems[i].partition == partition && strcmp(parts->elems[i].topic, topic) == 0) {
            return true;
        }
    }
    return false;
}

size_t pers_batch_drop(struct pers_batch *b, const rd_kafka_topic_partition_list_t *parts)
{
    size_t kept = 0;
    size_t kept_rows = 0;
    size_t dropped = 0;

    for (size_t i = 0; i < b->n_rows; i++) {
        if (listed(parts, b->rows[i].topic, b->rows[i].partition)) {
            row_fini(&b->rows[i]);
        } else {
            b->rows[kept_rows++] = b->rows[i];
        }
    }
    b->n_rows = kept_rows;
    for (size_t i = 0; i < b->n_marks; i++) {
        if (listed(parts, b->marks[i].topic, b->marks[i].partition)) {
            dropped += b->marks[i].msgs;
            free(b->marks[i].topic);
        } else {
            b->marks[kept++] = b->marks[i];
        }
    }
    b->n_marks = kept;
    b->n_msgs -= dropped;
    if (b->n_msgs == 0) {
        b->first_us = 0;
    }
    return dropped;
}

/* ---- storing with bisection ---- */

struct store_ctx {
    struct pers_pg *pg;
    struct pers_batch *b;
    const struct pers_store_hooks *hooks;
    struct pers_store_stats *st;
    const struct cm_biometric_event **evs;
    int64_t *received;
    const char *group;                 /* offsets ride along with the first transaction */
    const struct pers_pg_offset *offs; /* NULL once that transaction was tried */
    size_t n_offs;
};

/* The batch's offsets as consumer_offsets rows; returns new (free), NULL when there are none. */
static struct pers_pg_offset *batch_pg_offsets(const struct pers_batch *b, size_t *n)
{
    struct pers_pg_offset *offs;

    *n = b->n_marks;
    if (b->n_marks == 0) {
        return NULL;
    }
    offs = cm_xmalloc(b->n_marks * sizeof(*offs));
    for (size_t i = 0; i < b->n_marks; i++) {
        offs[i].topic = b->marks[i].topic;
        offs[i].partition = b->marks[i].partition;
        offs[i].next_offset = b->marks[i].offset + 1;
    }
    return offs;
}

static enum cm_rc store_range(struct store_ctx *c, const size_t *idx, size_t n, struct cm_err *err)
{
    struct pers_pg_outcome out;
    const struct pers_pg_offset *offs = c->offs;
    enum cm_rc rc;
    size_t mid;

    for (size_t i = 0; i < n; i++) {
        c->evs[i] = &c->b->rows[idx[i]].ev;
    }
    c->st->transactions++;
    c->offs = NULL; /* only the transaction covering every remaining row carries them */
    rc = pers_pg_store_with_offsets(c->pg, c->evs, n, c->received, c->group, offs,
                                    offs != NULL ? c->n_offs : 0, &out, err);
    if (rc == CM_OK && offs != NULL) {
        c->st->offsets_stored = true;
    }
    if (rc != CM_OK && rc != CM_INVALID) {
        c->offs = offs; /* nothing committed: the retry tries the whole batch again */
    }
    if (rc == CM_OK) {
        int64_t commit_us = cm_now_us();
        size_t changed = out.inserted + out.tombstoned;
        for (size_t i = 0; i < n; i++) {
            c->b->rows[idx[i]].done = true;
        }
        c->st->inserted += out.inserted;
        c->st->tombstoned += out.tombstoned;
        c->st->duplicates += n > changed ? n - changed : 0;
        if (c->hooks->committed != NULL) {
            c->hooks->committed(c->hooks->arg, c->received, out.inserted, commit_us);
        }
        return CM_OK;
    }
    if (c->hooks->pg_error != NULL) {
        c->hooks->pg_error(c->hooks->arg, &out);
    }
    if (rc != CM_INVALID) {
        return rc;
    }
    if (n == 1) {
        rc = c->hooks->reject(c->hooks->arg, &c->b->rows[idx[0]], &out);
        if (rc != CM_OK) {
            return cm_err_set(err, rc, "dead-lettering a rejected row failed");
        }
        c->b->rows[idx[0]].done = true;
        c->st->rejected++;
        return CM_OK;
    }
    mid = n / 2;
    rc = store_range(c, idx, mid, err);
    if (rc != CM_OK) {
        return rc;
    }
    return store_range(c, idx + mid, n - mid, err);
}

enum cm_rc pers_batch_store(struct pers_pg *pg, struct pers_batch *b, const char *group,
                            const struct pers_store_hooks *hooks, struct pers_store_stats *st,
                            struct cm_err *err)
{
    struct store_ctx c = { .pg = pg, .b = b, .hooks = hooks, .st = st, .group = group };
    struct pers_pg_offset *offs = NULL;
    size_t *idx;
    size_t n = 0;
    enum cm_rc rc = CM_OK;

    if (b->n_rows == 0) {
        return CM_OK;
    }
    idx = cm_xmalloc(b->n_rows * sizeof(*idx));
    for (size_t i = 0; i < b->n_rows; i++) {
        if (!b->rows[i].done) {
            idx[n++] = i;
        }
    }
    if (group != NULL && st->rejected == 0) {
        offs = batch_pg_offsets(b, &c.n_offs);
        c.offs = offs;
    }
    if (n > 0) {
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers, size is right */
        c.evs = cm_xmalloc(n * sizeof(*c.evs));
        c.received = cm_xmalloc(n * sizeof(*c.received));
        rc = store_range(&c, idx, n, err);
        free(c.evs);
        free(c.received);
    }
    free(offs);
    free(idx);
    return rc;
}

enum cm_rc pers_batch_store_offsets(struct pers_pg *pg, const struct pers_batch *b,
                                    const char *group, const struct pers_store_hooks *hooks,
                                    struct cm_err *err)
{
    struct pers_pg_outcome out;
    size_t n_offs;
    struct pers_pg_offset *offs = batch_pg_offsets(b, &n_offs);
    enum cm_rc rc = CM_OK;

    if (offs != NULL) {
        rc = pers_pg_store_with_offsets(pg, NULL, 0, NULL, group, offs, n_offs, &out, err);
        if (rc != CM_OK && hooks->pg_error != NULL) {
            hooks->pg_error(hooks->arg, &out);
        }
    }
    free(offs);
    return rc;
}

/* ---- metrics ---- */

static struct cm_metric *m_inserted;
static struct cm_metric *m_duplicate;
static struct cm_metric *m_tombstoned;
static struct cm_metric *m_batches;
static struct cm_metric *m_batch_size;
static struct cm_metric *m_batch_seconds;
static struct cm_metric *m_pg_errors;
static struct cm_metric *m_lag;
static struct cm_metric *m_e2e;
static struct cm_metric *m_dlq;

static const double batch_size_buckets[] = { 1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000 };
static const double e2e_buckets[] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30 };

static void register_metrics(void)
{
    static bool done;

    if (done) {
        return;
    }
    done = true;
    m_inserted = cm_metric_counter("auren_persister_rows_inserted_total",
                                   "Rows newly inserted into biometric_events", 0);
    m_duplicate = cm_metric_counter("auren_persister_rows_duplicate_total",
                                    "Rows already stored (idempotent replays and repeats)", 0);
    m_tombstoned = cm_metric_counter("auren_persister_rows_tombstoned_total",
                                     "Stored rows marked deleted by a tombstone", 0);
    m_batches = cm_metric_counter("auren_persister_batches_total",
                                  "Batches by outcome (committed, retry, commit_failed, dropped)",
                                  1, "outcome");
    m_batch_size = cm_metric_histogram("auren_persister_batch_size", "Messages per batch",
                                       batch_size_buckets, CM_ARRAY_LEN(batch_size_buckets), 0);
    m_batch_seconds = cm_metric_histogram(
        "auren_persister_batch_duration_seconds", "Database write plus offset commit per batch",
        cm_metric_latency_buckets, cm_metric_latency_nbuckets, 0);
    m_pg_errors = cm_metric_counter("auren_persister_pg_errors_total",
                                    "PostgreSQL errors by SQLSTATE class", 1, "class");
    m_lag = cm_metric_gauge("auren_persister_consumer_lag",
                            "Messages behind the end of the assigned partitions", 0);
    m_e2e = cm_metric_histogram("auren_pipeline_e2e_latency_seconds",
                                "Webhook received by the gateway to row committed in PostgreSQL",
                                e2e_buckets, CM_ARRAY_LEN(e2e_buckets), 0);
    m_dlq = cm_metric_counter("auren_persister_dlq_records_total", "Records sent to the DLQ", 1,
                              "reason");
}

/* ---- the loop ---- */

struct pers_loop {
    const struct pers_cfg *cfg;
    rd_kafka_t *rk;  /* consumer */
    rd_kafka_t *dlq; /* producer of biometric.dlq.v1 */
    struct pers_pg *pg;
    struct pers_batch batch;
    atomic_bool stop;
    atomic_int assigned; /* partitions currently assigned */
    bool cooperative;    /* the group's rebalance protocol, learnt at the first assignment */
    atomic_bool pg_ok;   /* last PostgreSQL round trip succeeded */
    atomic_long dlq_failed;
    bool paused; /* BACKOFF: partitions paused, retry at retry_at_us */
    bool drained; /* the last poll found nothing queued: the open batch is written at once */
    int64_t retry_at_us;
    int64_t backoff_us;
    int64_t last_pg_us;
    rd_kafka_resp_err_t last_err;
    int64_t last_err_log_us;
};

/* The number of assigned partitions, kept by the rebalance callback itself: asking librdkafka
 * (rd_kafka_assignment) from the callback is a blocking request to the group thread, and during
 * rd_kafka_consumer_close() that thread may already have stopped answering (librdkafka #4041). */
static void count_assigned(struct pers_loop *l, rd_kafka_resp_err_t e, int cnt)
{
    int now = atomic_load(&l->assigned);

    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        now = l->cooperative ? now + cnt : cnt;
    } else {
        now = l->cooperative && now >= cnt ? now - cnt : 0;
    }
    atomic_store(&l->assigned, now);
}

static void set_paused(struct pers_loop *l, bool pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;

    if (rd_kafka_assignment(l->rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR && parts != NULL) {
        if (parts->cnt > 0) {
            rd_kafka_resp_err_t e = pause ? rd_kafka_pause_partitions(l->rk, parts)
                                          : rd_kafka_resume_partitions(l->rk, parts);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                cm_log_warn("consumer.pause_failed", "pause=%d err=%s", pause,
                            rd_kafka_err2name(e));
            }
        }
        rd_kafka_topic_partition_list_destroy(parts);
    }
    l->paused = pause;
}

static void log_partitions(const char *event, const rd_kafka_topic_partition_list_t *parts)
{
    char text[512];
    size_t o = 0;

    text[0] = '\0';
    for (int i = 0; i < parts->cnt && o < sizeof(text); i++) {
        int w = snprintf(text + o, sizeof(text) - o, "%s%d", i ? "," : "",
                         parts->elems[i].partition);
        if (w < 0) {
            break;
        }
        o += (size_t)w;
    }
    cm_log_info(event, "count=%d partitions=%s", parts->cnt, text);
}

static void hook_pg_error(void *arg, const struct pers_pg_outcome *why);

/* Start each newly assigned partition at the offset stored with the rows (consumer_offsets).
 * Without an answer from PostgreSQL the group's committed offsets apply: they never pass the
 * stored ones (Kafka commits after the database), so the worst case is an idempotent re-read.
 * Returns the stored positions found (new, for the Kafka commit after the assignment: an async
 * commit lost to a rebalance would otherwise leave Kafka's offset, and the lag, behind on a
 * partition that gets no new records), or NULL. */
static rd_kafka_topic_partition_list_t *seek_to_stored(struct pers_loop *l,
                                                       rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *stored = NULL;
    struct pers_pg_outcome out;
    struct cm_err err = {{0}};
    int32_t *ids;
    int64_t *next;
    size_t n = (size_t)parts->cnt;
    size_t found = 0;

    if (n == 0) {
        return NULL;
    }
    ids = cm_xmalloc(n * sizeof(*ids));
    next = cm_xmalloc(n * sizeof(*next));
    for (size_t i = 0; i < n; i++) {
        ids[i] = parts->elems[i].partition;
    }
    if (pers_pg_load_offsets(l->pg, l->cfg->group_id, CM_TOPIC_NORMALIZED, ids, next, n, &out,
                             &err) != CM_OK) {
        hook_pg_error(l, &out);
        cm_log_warn("offsets.load_failed", "partitions=%zu fallback=kafka_committed", n);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (next[i] >= 0 && strcmp(parts->elems[i].topic, CM_TOPIC_NORMALIZED) == 0) {
                parts->elems[i].offset = next[i];
                if (stored == NULL) {
                    stored = rd_kafka_topic_partition_list_new((int)n);
                }
                rd_kafka_topic_partition_list_add(stored, CM_TOPIC_NORMALIZED, ids[i])->offset =
                    next[i];
                found++;
                cm_log_info("offsets.seek", "partition=%d offset=%lld", (int)ids[i],
                            (long long)next[i]);
            }
        }
        cm_log_info("offsets.loaded", "partitions=%zu stored=%zu", n, found);
    }
    free(ids);
    free(next);
    return stored;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct pers_loop *l = opaque;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_topic_partition_list_t *stored;
        /* Asked here, never on revoke: the revoke that rd_kafka_consumer_close() triggers may
         * find the group thread gone, and this call would then block for ever. */
        l->cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
        log_partitions("consumer.assigned", parts);
        stored = seek_to_stored(l, parts);
        if (l->cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
        } else {
            aerr = rd_kafka_assign(rk, parts);
        }
        if (error == NULL && aerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* A partition keeps its pause flag across revoke and re-assign: set it explicitly
             * to the loop's state (paused while PostgreSQL is down). */
            if (l->paused) {
                rd_kafka_pause_partitions(rk, parts);
            } else {
                rd_kafka_resume_partitions(rk, parts);
            }
            if (stored != NULL) {
                rd_kafka_commit(rk, stored, 1); /* the result comes to on_commit */
            }
        }
        if (stored != NULL) {
            rd_kafka_topic_partition_list_destroy(stored);
        }
    } else {
        size_t dropped = pers_batch_drop(&l->batch, parts);
        log_partitions("consumer.revoked", parts);
        if (dropped > 0) {
            cm_log_info("batch.dropped", "messages=%zu reason=revoked", dropped);
            cm_metric_inc(m_batches, "dropped");
        }
        if (l->cooperative) {
            error = rd_kafka_incremental_unassign(rk, parts);
        } else {
            aerr = rd_kafka_assign(rk, NULL);
        }
    }
    if (error != NULL) {
        cm_log_error("consumer.assign_failed", "err=%s", rd_kafka_error_name(error));
        rd_kafka_error_destroy(error);
    }
    if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_log_error("consumer.assign_failed", "err=%s", rd_kafka_err2name(aerr));
    }
    if (error == NULL && aerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        count_assigned(l, e, parts != NULL ? parts->cnt : 0); /* only what librdkafka took */
    }
}

/* Sum consumer_lag over the partitions this member consumes. */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, json_len, 0, &jerr);
    json_t *topics;
    const char *tname;
    json_t *t;
    double sum = 0;

    if (root == NULL) {
        return 0;
    }
    topics = json_object_get(root, "topics");
    json_object_foreach(topics, tname, t) {
        json_t *parts = json_object_get(t, "partitions");
        const char *pname;
        json_t *p;
        json_object_foreach(parts, pname, p) {
            json_int_t lag = json_integer_value(json_object_get(p, "consumer_lag"));
            if (strcmp(pname, "-1") != 0 && json_is_true(json_object_get(p, "desired")) &&
                lag > 0) {
                sum += (double)lag;
            }
        }
    }
    cm_metric_set(m_lag, sum);
    json_decref(root);
    return 0; /* librdkafka frees the JSON */
}

static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct pers_loop *l = opaque;

    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add(&l->dlq_failed, 1);
        cm_log_error("dlq.delivery_failed", "topic=%s err=%s", CM_TOPIC_DLQ,
                     rd_kafka_err2name(m->err));
    }
}

/* Hand one dead letter to the DLQ producer (acknowledged before the batch's offsets commit). */
static enum cm_rc send_dead_letter(struct pers_loop *l, struct cm_dead_letter *d)
{
    struct cm_buf out;
    struct cm_err err = {{0}};
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    enum cm_rc rc = CM_OK;

    cm_buf_init(&out, 0);
    if (cm_dead_letter_encode(d, &out, &err) != CM_OK) {
        cm_log_error("dlq.encode_failed", "reason=%s err=%s", d->reason, err.msg);
        cm_buf_fini(&out);
        return CM_FATAL;
    }
    for (int tries = 0; tries < 600; tries++) {
        e = rd_kafka_producev(l->dlq, RD_KAFKA_V_TOPIC(CM_TOPIC_DLQ),
                              RD_KAFKA_V_KEY(d->key, (d->key != NULL ? d->key_len : 0)),
                              RD_KAFKA_V_VALUE(out.data, out.len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            break;
        }
        rd_kafka_poll(l->dlq, 100);
    }
    cm_buf_fini(&out);
    if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && d->value != NULL) {
        /* The envelope pushed a near-limit record over: send the coordinates without the bytes. */
        d->detail = (char *)"source value omitted: too large";
        d->value = NULL;
        d->value_len = 0;
        return send_dead_letter(l, d);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_log_error("dlq.produce_failed", "reason=%s partition=%d offset=%lld err=%s", d->reason,
                     (int)d->source_partition, (long long)d->source_offset,
                     rd_kafka_err2name(e));
        rc = e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? CM_RETRY : CM_FATAL;
    } else {
        cm_metric_inc(m_dlq, d->reason);
        cm_log_warn("dlq.sent", "reason=%s topic=%s partition=%d offset=%lld", d->reason,
                    d->source_topic, (int)d->source_partition, (long long)d->source_offset);
    }
    return rc;
}

static enum cm_rc hook_reject(void *arg, const struct pers_row *row,
                              const struct pers_pg_outcome *why)
{
    struct pers_loop *l = arg;
    struct cm_dead_letter d;
    char detail[64];

    snprintf(detail, sizeof(detail), "sqlstate=%s step=%s", why->sqlstate, why->step);
    /* The row outlives its Kafka message (rows are written after the batch is consumed), so the
     * dead letter is built from the row's copy of the coordinates and bytes. */
    d = (struct cm_dead_letter){
        .stage = (char *)"persister",
        .reason = (char *)"rejected_by_database",
        .detail = detail,
        .source_topic = (char *)row->topic,
        .source_partition = row->partition,
        .source_offset = row->offset,
        .key = (uint8_t *)row->key,
        .key_len = row->key_len,
        .value = (uint8_t *)row->value,
        .value_len = row->value_len,
        .failed_at_us = cm_now_us(),
        .attempts = 1,
    };
    return send_dead_letter(l, &d);
}

static void hook_committed(void *arg, const int64_t *received_us, size_t n, int64_t commit_us)
{
    for (size_t i = 0; i < n; i++) {
        double s = (double)(commit_us - received_us[i]) / 1e6;
        cm_metric_observe(m_e2e, s > 0 ? s : 0.0);
    }
}

static void hook_pg_error(void *arg, const struct pers_pg_outcome *why)
{
    char cls[3];

    cm_metric_inc(m_pg_errors, pers_pg_error_class(why->sqlstate, cls));
    cm_log_warn("pg.error", "step=%s sqlstate=%s", why->step,
                why->sqlstate[0] != '\0' ? why->sqlstate : "none");
}

static void log_commit_failed(rd_kafka_resp_err_t e, int partitions)
{
    /* The rows are durable; an uncommitted offset only means an idempotent re-read. */
    cm_log_warn("offsets.commit_failed", "err=%s partitions=%d", rd_kafka_err2name(e),
                partitions);
    cm_metric_inc(m_batches, "commit_failed");
}

/* The result of an asynchronous commit, served by rd_kafka_consumer_poll(). */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                      rd_kafka_topic_partition_list_t *offs, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        log_commit_failed(e, offs != NULL ? offs->cnt : 0);
        return;
    }
    for (int i = 0; offs != NULL && i < offs->cnt; i++) {
        cm_log_debug("offsets.committed", "topic=%s partition=%d offset=%lld",
                     offs->elems[i].topic, (int)offs->elems[i].partition,
                     (long long)offs->elems[i].offset);
    }
}

static rd_kafka_t *new_consumer(struct pers_loop *l, struct cm_err *err)
{
    rd_kafka_conf_t *conf = cm_kafka_conf_new(l->cfg->brokers, err);
    char errstr[256];
    rd_kafka_t *rk;

    if (conf == NULL) {
        return NULL;
    }
    if (cm_kafka_set(conf, "group.id", l->cfg->group_id, err) != CM_OK ||
        /* a crashed member's partitions move on after 10 s (not 45 s); no static membership:
         * librdkafka 2.0 fences itself with it when the group coordinator restarts */
        cm_kafka_set(conf, "session.timeout.ms", "10000", err) != CM_OK ||
        cm_kafka_set(conf, "isolation.level", "read_committed", err) != CM_OK ||
        cm_kafka_set(conf, "enable.auto.commit", "false", err) != CM_OK ||
        cm_kafka_set(conf, "enable.auto.offset.store", "false", err) != CM_OK ||
        cm_kafka_set(conf, "auto.offset.reset", "earliest", err) != CM_OK ||
        cm_kafka_set(conf, "statistics.interval.ms", "5000", err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, l);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        cm_err_set(err, CM_INVALID, "kafka consumer: %s", errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk); /* stats and errors are served by consumer_poll */
    return rk;
}

static rd_kafka_t *new_dlq_producer(struct pers_loop *l, struct cm_err *err)
{
    rd_kafka_conf_t *conf = cm_kafka_conf_new(l->cfg->brokers, err);
    char errstr[256];
    rd_kafka_t *rk;

    if (conf == NULL) {
        return NULL;
    }
    /* No local timeout: a dead letter waits out a Kafka outage instead of being lost. */
    if (cm_kafka_set(conf, "enable.idempotence", "true", err) != CM_OK ||
        cm_kafka_set(conf, "message.timeout.ms", "0", err) != CM_OK ||
        cm_kafka_set_default(conf, "linger.ms", "5", err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, l);
    rd_kafka_conf_set_dr_msg_cb(conf, on_dlq_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        cm_err_set(err, CM_INVALID, "kafka producer: %s", errstr);
        return NULL;
    }
    return rk;
}

struct pers_loop *pers_loop_new(const struct pers_cfg *cfg, struct cm_err *err)
{
    struct pers_loop *l = cm_xcalloc(1, sizeof(*l));
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_resp_err_t e;

    register_metrics();
    l->cfg = cfg;
    pers_batch_init(&l->batch);
    atomic_init(&l->stop, false);
    atomic_init(&l->assigned, 0);
    atomic_init(&l->pg_ok, false);
    atomic_init(&l->dlq_failed, 0);
    l->backoff_us = BACKOFF_MIN_US;
    l->pg = pers_pg_new(cfg->database_url);
    if ((l->dlq = new_dlq_producer(l, err)) == NULL || (l->rk = new_consumer(l, err)) == NULL) {
        pers_loop_free(l);
        return NULL;
    }
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, CM_TOPIC_NORMALIZED, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(l->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_err_set(err, CM_INVALID, "subscribe %s: %s", CM_TOPIC_NORMALIZED, rd_kafka_err2name(e));
        pers_loop_free(l);
        return NULL;
    }
    return l;
}

void pers_loop_stop(struct pers_loop *l)
{
    atomic_store(&l->stop, true);
}

bool pers_loop_ready(void *arg, const char **reason)
{
    struct pers_loop *l = arg;

    if (!atomic_load(&l->pg_ok)) {
        if (reason != NULL) {
            *reason = "postgres unreachable";
        }
        return false;
    }
    if (atomic_load(&l->assigned) == 0) {
        if (reason != NULL) {
            *reason = "no partitions assigned";
        }
        return false;
    }
    return true;
}

void pers_loop_free(struct pers_loop *l)
{
    if (l == NULL) {
        return;
    }
    if (l->rk != NULL) {
        rd_kafka_destroy(l->rk);
    }
    if (l->dlq != NULL) {
        rd_kafka_flush(l->dlq, 5000);
        rd_kafka_destroy(l->dlq);
    }
    pers_pg_free(l->pg);
    pers_batch_fini(&l->batch);
    free(l);
}

static enum cm_rc handle_message(struct pers_loop *l, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    struct cm_biometric_event ev;
    struct cm_dead_letter dl;
    struct cm_err err = {{0}};
    int64_t now = cm_mono_us();

    memset(&ev, 0, sizeof(ev));
    if (m->payload != NULL &&
        cm_biometric_event_decode(m->payload, m->len, &ev, &err) == CM_OK) {
        pers_batch_add(&l->batch, &ev, topic, m->partition, m->offset, m->key, m->key_len,
                       m->payload, m->len, now);
        return CM_OK;
    }
    cm_biometric_event_fini(&ev);
    if (m->payload == NULL) {
        cm_strlcpy(err.msg, "empty value", sizeof(err.msg));
    }
    /* The offset is only kept once the dead letter is queued; on failure the loop stops with
     * CM_FATAL and no commit passes this record, so it is re-read after the restart. */
    cm_kafka_dead_letter(&dl, "persister", m, "undecodable", err.msg, 1);
    if (send_dead_letter(l, &dl) != CM_OK) {
        return CM_FATAL;
    }
    pers_batch_note(&l->batch, topic, m->partition, m->offset, now);
    return CM_OK;
}

static void handle_consumer_error(struct pers_loop *l, const rd_kafka_message_t *m)
{
    int64_t now = cm_mono_us();

    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        return;
    }
    if (m->err != l->last_err || now - l->last_err_log_us > ERRLOG_EVERY_US) {
        cm_log_warn("consumer.error", "err=%s partition=%d", rd_kafka_err2name(m->err),
                    (int)m->partition);
        l->last_err = m->err;
        l->last_err_log_us = now;
    }
}

/* Wait for the DLQ producer to acknowledge everything; CM_RETRY when Kafka is too slow. */
static enum cm_rc wait_dead_letters(struct pers_loop *l, long failed_before, struct cm_err *err)
{
    if (rd_kafka_outq_len(l->dlq) > 0) {
        rd_kafka_flush(l->dlq, DLQ_FLUSH_MS);
    }
    if (atomic_load(&l->dlq_failed) != failed_before) {
        return cm_err_set(err, CM_FATAL, "a dead letter was not delivered");
    }
    if (rd_kafka_outq_len(l->dlq) > 0) {
        return cm_err_set(err, CM_RETRY, "%d dead letters still unacknowledged",
                          rd_kafka_outq_len(l->dlq));
    }
    return CM_OK;
}

static void commit_offsets(struct pers_loop *l)
{
    rd_kafka_topic_partition_list_t *offs = pers_batch_offsets(&l->batch);
    rd_kafka_resp_err_t e;

    if (offs == NULL) {
        return;
    }
    e = rd_kafka_commit(l->rk, offs, 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_commit_failed(e, offs->cnt);
    }
    rd_kafka_topic_partition_list_destroy(offs);
}

/* Write the batch: its dead letters acknowledged first, then rows and offsets in one PostgreSQL
 * transaction (or, after a bisection, the offsets in a transaction of their own once the new dead
 * letters are acknowledged), then the Kafka commit. CM_RETRY keeps the batch. */
static enum cm_rc write_batch(struct pers_loop *l)
{
    struct pers_store_hooks hooks = { .reject = hook_reject, .committed = hook_committed,
                                      .pg_error = hook_pg_error, .arg = l };
    struct pers_store_stats st;
    struct cm_err err = {{0}};
    long failed_before = atomic_load(&l->dlq_failed);
    int64_t t0 = cm_mono_us();
    size_t msgs = l->batch.n_msgs;
    double secs;
    enum cm_rc rc;

    memset(&st, 0, sizeof(st));
    rc = wait_dead_letters(l, failed_before, &err);
    if (rc == CM_OK) {
        rc = pers_batch_store(l->pg, &l->batch, l->cfg->group_id, &hooks, &st, &err);
        if (rc == CM_RETRY) {
            atomic_store(&l->pg_ok, false);
        }
    }
    if (rc == CM_OK && !st.offsets_stored) {
        rc = wait_dead_letters(l, failed_before, &err);
        if (rc == CM_OK) {
            rc = pers_batch_store_offsets(l->pg, &l->batch, l->cfg->group_id, &hooks, &err);
            if (rc == CM_RETRY) {
                atomic_store(&l->pg_ok, false);
            }
        }
    }
    if (rc == CM_OK) {
        atomic_store(&l->pg_ok, true);
        l->last_pg_us = cm_mono_us();
    }
    cm_metric_add(m_inserted, (double)st.inserted);
    cm_metric_add(m_duplicate, (double)st.duplicates);
    cm_metric_add(m_tombstoned, (double)st.tombstoned);
    if (rc != CM_OK) {
        cm_metric_inc(m_batches, rc == CM_RETRY ? "retry" : "failed");
        cm_log_warn("batch.not_committed", "messages=%zu rc=%s err=%s", msgs, cm_rc_str(rc),
                    err.msg);
        return rc;
    }
    commit_offsets(l);
    secs = (double)(cm_mono_us() - t0) / 1e6;
    cm_metric_inc(m_batches, "committed");
    cm_metric_observe(m_batch_size, (double)msgs);
    cm_metric_observe(m_batch_seconds, secs);
    cm_log_debug("batch.committed",
                 "messages=%zu inserted=%zu duplicates=%zu tombstoned=%zu rejected=%zu "
                 "transactions=%zu duration_ms=%.1f",
                 msgs, st.inserted, st.duplicates, st.tombstoned, st.rejected, st.transactions,
                 secs * 1e3);
    pers_batch_reset(&l->batch);
    return CM_OK;
}

static void enter_backoff(struct pers_loop *l)
{
    uint32_t r;
    int64_t jitter;

    if (!l->paused) {
        cm_log_warn("consumer.paused", "messages_held=%zu pg_ok=%d", l->batch.n_msgs,
                    (int)atomic_load(&l->pg_ok));
        set_paused(l, true);
        l->backoff_us = BACKOFF_MIN_US;
    } else {
        l->backoff_us = l->backoff_us * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : l->backoff_us * 2;
    }
    cm_random_bytes(&r, sizeof(r));
    jitter = (int64_t)(r % (uint32_t)(l->backoff_us / 5 + 1));
    l->retry_at_us = cm_mono_us() + l->backoff_us + jitter;
}

static void leave_backoff(struct pers_loop *l)
{
    if (l->paused) {
        cm_log_info("consumer.resumed", "messages_held=%zu", l->batch.n_msgs);
        set_paused(l, false);
    }
    l->backoff_us = BACKOFF_MIN_US;
    atomic_store(&l->pg_ok, true);
}

static enum cm_rc ping(struct pers_loop *l)
{
    struct pers_pg_outcome out;
    struct cm_err err = {{0}};
    enum cm_rc rc = pers_pg_ping(l->pg, &out, &err);

    if (rc == CM_OK) {
        l->last_pg_us = cm_mono_us();
        atomic_store(&l->pg_ok, true);
    } else {
        atomic_store(&l->pg_ok, false);
        hook_pg_error(l, &out);
    }
    return rc;
}

static bool batch_due(const struct pers_loop *l, int64_t now)
{
    return !pers_batch_empty(&l->batch) &&
           ((long)l->batch.n_msgs >= l->cfg->batch_max || l->drained ||
            now - l->batch.first_us >= l->cfg->batch_ms * 1000);
}

static int poll_timeout_ms(const struct pers_loop *l, int64_t now)
{
    int64_t until;

    if (l->paused) {
        until = l->retry_at_us - now;
    } else if (!pers_batch_empty(&l->batch)) {
        return 0; /* take what is queued; an empty poll closes the batch (batch_due) */
    } else {
        return POLL_MAX_MS;
    }
    if (until <= 0) {
        return 0;
    }
    return until / 1000 + 1 > POLL_MAX_MS ? POLL_MAX_MS : (int)(until / 1000 + 1);
}

/* One step of the timers: write a due batch, retry after backoff, ping when idle. */
static enum cm_rc tick(struct pers_loop *l)
{
    int64_t now = cm_mono_us();
    enum cm_rc rc = CM_OK;

    if (l->paused) {
        if (now < l->retry_at_us) {
            return CM_OK;
        }
        rc = pers_batch_empty(&l->batch) ? ping(l) : write_batch(l);
        if (rc == CM_OK) {
            leave_backoff(l);
        }
    } else if (batch_due(l, now)) {
        rc = write_batch(l);
    } else if (pers_batch_empty(&l->batch) && now - l->last_pg_us > PING_IDLE_US) {
        rc = ping(l);
    }
    if (rc == CM_RETRY) {
        enter_backoff(l);
        rc = CM_OK;
    }
    return rc;
}

enum cm_rc pers_loop_run(struct pers_loop *l)
{
    enum cm_rc rc = CM_OK;
    char fatal[256];

    cm_log_info("persister.started", "topic=%s batch_max=%ld batch_ms=%ld", CM_TOPIC_NORMALIZED,
                l->cfg->batch_max, l->cfg->batch_ms);
    if (ping(l) != CM_OK) {
        enter_backoff(l);
    }
    while (!atomic_load(&l->stop) && rc == CM_OK) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(l->rk, poll_timeout_ms(l, cm_mono_us()));

        l->drained = m == NULL;
        if (m != NULL) {
            if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                handle_consumer_error(l, m);
            } else {
                rc = handle_message(l, m);
            }
            rd_kafka_message_destroy(m);
            if (rc != CM_OK) {
                break;
            }
        }
        rd_kafka_poll(l->dlq, 0);
        if (rd_kafka_fatal_error(l->rk, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cm_log_error("consumer.fatal", "err=%s", fatal);
            rc = CM_FATAL;
            break;
        }
        rc = tick(l);
    }
    if (rc == CM_OK && !pers_batch_empty(&l->batch)) {
        /* SIGTERM: one last attempt at the current batch, paused or not. */
        if (write_batch(l) != CM_OK) {
            cm_log_warn("shutdown.batch_abandoned", "messages=%zu (re-read after restart)",
                        l->batch.n_msgs);
        }
    }
    pers_batch_reset(&l->batch);
    rd_kafka_consumer_close(l->rk);
    rd_kafka_flush(l->dlq, 5000);
    cm_log_info("persister.stopped", "rc=%s", cm_rc_str(rc));
    return rc;
}
