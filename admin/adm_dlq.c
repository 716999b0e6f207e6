/* auren-admin dlq list / dlq replay: the operator's view of biometric.dlq.v1 and the way back.
 * `list` reads the whole topic (no group membership) and prints counts and ages per stage and
 * reason - never a payload, key or id. `replay` re-produces each dead letter's original record to
 * its source topic (biometric.raw.v1 or biometric.normalized.v1) inside Kafka transactions that
 * also commit the replay cursor (consumer group ADM_DLQ_GROUP's offsets in biometric.dlq.v1): a
 * dead letter is replayed exactly once however often the command runs or crashes, and what fails
 * again comes back to the DLQ as a new dead letter, after the cursor. Downstream the deterministic
 * event_id makes the replayed record's outputs idempotent. */
#include "adm.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cm/kafka.h"
#include "cm/records.h"

#define ADM_DLQ_GROUP "auren-dlq-replay"
#define ADM_DLQ_TXN_ID "auren-dlq-replay"
#define TIMEOUT_MS 15000
#define TXN_CHUNK 500
#define MAX_KINDS 64

struct dlq_kind {
    char stage[32];
    char reason[64];
    size_t total;
    size_t pending;
    int64_t oldest_us;
    int64_t newest_us;
};

/* Per partition: where to start, where the topic ended when we looked, and the cursor. */
struct dlq_part {
    int32_t id;
    int64_t low, high;
    int64_t cursor; /* committed offset of ADM_DLQ_GROUP, or low when none */
    bool eof;       /* reached the end as it was at open */
};

struct dlq_view {
    rd_kafka_t *c;
    struct dlq_part *parts;
    int n_parts;
};

static void view_fini(struct dlq_view *v)
{
    if (v->c != NULL) {
        rd_kafka_consumer_close(v->c);
        rd_kafka_destroy(v->c);
    }
    free(v->parts);
    memset(v, 0, sizeof(*v));
}

/* A consumer of ADM_DLQ_GROUP (read_committed) with the partitions, watermarks and cursor. */
static enum cm_rc view_open(const char *brokers, struct dlq_view *v, struct cm_err *err)
{
    rd_kafka_conf_t *conf = cm_kafka_conf_new(brokers, err);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_topic_t *rkt;
    char errstr[256];
    rd_kafka_resp_err_t e;

    memset(v, 0, sizeof(*v));
    if (conf == NULL) {
        return CM_INVALID;
    }
    if (cm_kafka_set(conf, "group.id", ADM_DLQ_GROUP, err) != CM_OK ||
        cm_kafka_set(conf, "enable.auto.commit", "false", err) != CM_OK ||
        cm_kafka_set(conf, "isolation.level", "read_committed", err) != CM_OK ||
        cm_kafka_set(conf, "enable.partition.eof", "true", err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return CM_INVALID;
    }
    v->c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (v->c == NULL) {
        rd_kafka_conf_destroy(conf);
        return cm_err_set(err, CM_INVALID, "kafka consumer: %s", errstr);
    }
    rkt = rd_kafka_topic_new(v->c, CM_TOPIC_DLQ, NULL);
    e = rd_kafka_metadata(v->c, 0, rkt, &md, TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err != 0) {
        if (md != NULL) {
            rd_kafka_metadata_destroy(md);
        }
        return cm_err_set(err, CM_RETRY, "%s: metadata unavailable (%s)", CM_TOPIC_DLQ,
                          rd_kafka_err2name(e));
    }
    v->n_parts = md->topics[0].partition_cnt;
    v->parts = cm_xcalloc((size_t)(v->n_parts > 0 ? v->n_parts : 1), sizeof(*v->parts));
    list = rd_kafka_topic_partition_list_new(v->n_parts);
    for (int i = 0; i < v->n_parts; i++) {
        v->parts[i].id = md->topics[0].partitions[i].id;
        rd_kafka_topic_partition_list_add(list, CM_TOPIC_DLQ, v->parts[i].id);
    }
    rd_kafka_metadata_destroy(md);
    e = rd_kafka_committed(v->c, list, TIMEOUT_MS);
    for (int i = 0; i < v->n_parts && e == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        struct dlq_part *p = &v->parts[i];
        e = rd_kafka_query_watermark_offsets(v->c, CM_TOPIC_DLQ, p->id, &p->low, &p->high,
                                             TIMEOUT_MS);
        p->cursor = list->elems[i].offset >= p->low ? list->elems[i].offset : p->low;
    }
    /* No assignment here: view_seek makes the only one. Two assignments in a row followed by a
     * close (an empty DLQ) abort inside librdkafka 2.0 (rd_kafka_assignment_partition_stopped:
     * a partition stopped before it started). */
    rd_kafka_topic_partition_list_destroy(list);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return cm_err_set(err, CM_RETRY, "%s: %s", CM_TOPIC_DLQ, rd_kafka_err2name(e));
    }
    return CM_OK;
}

static struct dlq_part *part_of(struct dlq_view *v, int32_t id)
{
    for (int i = 0; i < v->n_parts; i++) {
        if (v->parts[i].id == id) {
            return &v->parts[i];
        }
    }
    return NULL;
}

/* Set the partitions to start at `from_cursor` ? cursor : low. */
static enum cm_rc view_seek(struct dlq_view *v, bool from_cursor, struct cm_err *err)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(v->n_parts);
    rd_kafka_resp_err_t e;

    for (int i = 0; i < v->n_parts; i++) {
        rd_kafka_topic_partition_list_add(list, CM_TOPIC_DLQ, v->parts[i].id)->offset =
            from_cursor ? v->parts[i].cursor : v->parts[i].low;
    }
    e = rd_kafka_assign(v->c, list);
    rd_kafka_topic_partition_list_destroy(list);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? CM_OK
                                           : cm_err_set(err, CM_RETRY, "assign: %s",
                                                        rd_kafka_err2name(e));
}

/* Next message below the partition's high watermark (as seen at open), or NULL when every
 * partition is done. Messages of aborted transactions are skipped by read_committed: the
 * positions may jump, so "done" is position >= high. */
static rd_kafka_message_t *view_next(struct dlq_view *v, const bool *from_cursor,
                                     struct cm_err *err)
{
    int64_t deadline = cm_mono_us() + 60 * 1000000LL;

    for (;;) {
        bool done = true;
        rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new(v->n_parts);
        rd_kafka_message_t *m;

        for (int i = 0; i < v->n_parts; i++) {
            rd_kafka_topic_partition_list_add(pos, CM_TOPIC_DLQ, v->parts[i].id);
        }
        rd_kafka_position(v->c, pos);
        for (int i = 0; i < v->n_parts; i++) {
            int64_t start = *from_cursor ? v->parts[i].cursor : v->parts[i].low;
            int64_t at = pos->elems[i].offset >= 0 ? pos->elems[i].offset : start;
            if (at < v->parts[i].high && !v->parts[i].eof) {
                done = false;
            }
        }
        rd_kafka_topic_partition_list_destroy(pos);
        if (done) {
            return NULL;
        }
        if (cm_mono_us() > deadline) {
            cm_err_set(err, CM_RETRY, "%s: timed out reading to the end", CM_TOPIC_DLQ);
            return NULL;
        }
        m = rd_kafka_consumer_poll(v->c, 500);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            struct dlq_part *p = part_of(v, m->partition);
            if (p != NULL && m->offset >= p->high) {
                p->eof = true; /* only transaction markers were left */
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cm_err_set(err, CM_RETRY, "%s: %s", CM_TOPIC_DLQ, rd_kafka_err2name(m->err));
            rd_kafka_message_destroy(m);
            return NULL;
        }
        if (part_of(v, m->partition) == NULL || m->offset >= part_of(v, m->partition)->high) {
            rd_kafka_message_destroy(m); /* arrived after we looked: the next run's */
            continue;
        }
        return m;
    }
}

static struct dlq_kind *kind_for(struct dlq_kind *kinds, size_t *n, const char *stage,
                                 const char *reason)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(kinds[i].stage, stage) == 0 && strcmp(kinds[i].reason, reason) == 0) {
            return &kinds[i];
        }
    }
    if (*n == MAX_KINDS) {
        return &kinds[MAX_KINDS - 1]; /* folded into the last line; reasons are a short list */
    }
    memset(&kinds[*n], 0, sizeof(kinds[*n]));
    cm_strlcpy(kinds[*n].stage, stage, sizeof(kinds[*n].stage));
    cm_strlcpy(kinds[*n].reason, reason, sizeof(kinds[*n].reason));
    return &kinds[(*n)++];
}

static void format_age(int64_t us, char *out, size_t outsz)
{
    int64_t s = us / 1000000;

    if (s < 0) {
        s = 0;
    }
    if (s < 120) {
        snprintf(out, outsz, "%" PRId64 "s", s);
    } else if (s < 7200) {
        snprintf(out, outsz, "%" PRId64 "m", s / 60);
    } else if (s < 172800) {
        snprintf(out, outsz, "%" PRId64 "h", s / 3600);
    } else {
        snprintf(out, outsz, "%" PRId64 "d", s / 86400);
    }
}

enum cm_rc adm_dlq_list(const char *brokers, FILE *out, struct cm_err *err)
{
    static struct dlq_kind kinds[MAX_KINDS];
    struct dlq_view v;
    size_t n = 0, undecodable = 0, total = 0, pending = 0;
    int64_t now = cm_now_us();
    bool from_cursor = false;
    rd_kafka_message_t *m;
    enum cm_rc rc = view_open(brokers, &v, err);

    if (rc == CM_OK) {
        rc = view_seek(&v, false, err);
    }
    while (rc == CM_OK && (m = view_next(&v, &from_cursor, err)) != NULL) {
        struct cm_dead_letter d;
        struct cm_err derr;
        struct dlq_part *p = part_of(&v, m->partition);

        memset(&d, 0, sizeof(d));
        if (cm_dead_letter_decode(m->payload, m->len, &d, &derr) != CM_OK) {
            undecodable++;
        } else {
            struct dlq_kind *k = kind_for(kinds, &n, d.stage, d.reason);
            bool is_pending = p != NULL && m->offset >= p->cursor;
            k->total++;
            k->pending += is_pending;
            if (k->oldest_us == 0 || d.failed_at_us < k->oldest_us) {
                k->oldest_us = d.failed_at_us;
            }
            if (d.failed_at_us > k->newest_us) {
                k->newest_us = d.failed_at_us;
            }
            total++;
            pending += is_pending;
        }
        cm_dead_letter_fini(&d);
        rd_kafka_message_destroy(m);
    }
    if (rc == CM_OK && err->msg[0] != '\0') {
        rc = CM_RETRY;
    }
    if (rc == CM_OK) {
        fprintf(out, "stage\treason\ttotal\tpending\toldest\tnewest\n");
        for (size_t i = 0; i < n; i++) {
            char oldest[16], newest[16];
            format_age(now - kinds[i].oldest_us, oldest, sizeof(oldest));
            format_age(now - kinds[i].newest_us, newest, sizeof(newest));
            fprintf(out, "%s\t%s\t%zu\t%zu\t%s\t%s\n", kinds[i].stage, kinds[i].reason,
                    kinds[i].total, kinds[i].pending, oldest, newest);
        }
        fprintf(out, "# %zu dead letters, %zu pending replay%s\n", total, pending,
                undecodable > 0 ? " (some records were not DeadLetters)" : "");
    }
    view_fini(&v);
    return rc;
}

/* ---- replay ---- */

static enum cm_rc txn_check(rd_kafka_error_t *error, const char *step, struct cm_err *err)
{
    enum cm_rc rc;

    if (error == NULL) {
        return CM_OK;
    }
    rc = rd_kafka_error_is_fatal(error) ? CM_FATAL : CM_RETRY;
    cm_err_set(err, rc, "transaction %s: %s", step, rd_kafka_error_name(error));
    rd_kafka_error_destroy(error);
    return rc;
}

static rd_kafka_t *new_txn_producer(const char *brokers, struct cm_err *err)
{
    rd_kafka_conf_t *conf = cm_kafka_conf_new(brokers, err);
    char errstr[256];
    rd_kafka_t *p;

    if (conf == NULL) {
        return NULL;
    }
    if (cm_kafka_set(conf, "transactional.id", ADM_DLQ_TXN_ID, err) != CM_OK ||
        cm_kafka_set(conf, "enable.idempotence", "true", err) != CM_OK ||
        cm_kafka_set(conf, "acks", "all", err) != CM_OK ||
        /* Replayed records are as large as their originals (raw bodies up to MAX_BODY_BYTES):
         * the same compression and size ceiling as the processor's producer, or a ~1 MB body
         * fails locally with MSG_SIZE_TOO_LARGE and aborts the replay transaction. */
        cm_kafka_set(conf, "compression.type", "lz4", err) != CM_OK ||
        cm_kafka_set(conf, "message.max.bytes", "33554432", err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (p == NULL) {
        rd_kafka_conf_destroy(conf);
        cm_err_set(err, CM_INVALID, "kafka producer: %s", errstr);
    }
    return p;
}

/* Commit the records produced so far with the cursor moved past `offsets`. */
static enum cm_rc commit_chunk(rd_kafka_t *p, rd_kafka_t *c,
                               const rd_kafka_topic_partition_list_t *offsets, struct cm_err *err)
{
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(c);
    enum cm_rc rc = txn_check(rd_kafka_send_offsets_to_transaction(p, offsets, cgmd, TIMEOUT_MS),
                              "send_offsets", err);

    rd_kafka_consumer_group_metadata_destroy(cgmd);
    if (rc == CM_OK) {
        rc = txn_check(rd_kafka_commit_transaction(p, TIMEOUT_MS), "commit", err);
    }
    return rc;
}

static bool replayable_topic(const char *t)
{
    return t != NULL && (strcmp(t, CM_TOPIC_RAW) == 0 || strcmp(t, CM_TOPIC_NORMALIZED) == 0);
}

enum cm_rc adm_dlq_replay(const char *brokers, FILE *out, struct cm_err *err)
{
    struct dlq_view v;
    rd_kafka_t *p = NULL;
    rd_kafka_topic_partition_list_t *offsets = NULL;
    size_t replayed = 0, skipped = 0, in_txn = 0;
    bool from_cursor = true, open = false;
    rd_kafka_message_t *m;
    enum cm_rc rc = CM_OK;

    /* The producer first: init_transactions fences an older replay before the cursor is read,
     * and a consumer closed right after its assignment (no producer) aborts inside librdkafka
     * 2.0 (rd_kafka_assignment_partition_stopped). */
    memset(&v, 0, sizeof(v));
    if ((p = new_txn_producer(brokers, err)) == NULL) {
        rc = CM_INVALID;
    }
    if (rc == CM_OK) {
        rc = txn_check(rd_kafka_init_transactions(p, TIMEOUT_MS), "init", err);
    }
    if (rc == CM_OK) {
        rc = view_open(brokers, &v, err);
    }
    if (rc == CM_OK) {
        rc = view_seek(&v, true, err);
    }
    offsets = rd_kafka_topic_partition_list_new(v.n_parts > 0 ? v.n_parts : 1);
    while (rc == CM_OK && (m = view_next(&v, &from_cursor, err)) != NULL) {
        struct cm_dead_letter d;
        struct cm_err derr;
        rd_kafka_topic_partition_t *tp;

        if (!open) {
            rc = txn_check(rd_kafka_begin_transaction(p), "begin", err);
            open = rc == CM_OK;
        }
        memset(&d, 0, sizeof(d));
        if (rc == CM_OK && cm_dead_letter_decode(m->payload, m->len, &d, &derr) == CM_OK &&
            d.value != NULL && d.value_len > 0 && replayable_topic(d.source_topic)) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                p, RD_KAFKA_V_TOPIC(d.source_topic), RD_KAFKA_V_KEY(d.key, d.key_len),
                RD_KAFKA_V_VALUE(d.value, d.value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_END);
            while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(p, 100);
                e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(d.source_topic),
                                      RD_KAFKA_V_KEY(d.key, d.key_len),
                                      RD_KAFKA_V_VALUE(d.value, d.value_len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            }
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = cm_err_set(err, CM_RETRY, "produce to %s: %s", d.source_topic,
                                rd_kafka_err2name(e));
            } else {
                replayed++;
            }
        } else if (rc == CM_OK) {
            skipped++; /* no record to send back (or not ours): the cursor passes it */
        }
        cm_dead_letter_fini(&d);
        tp = rd_kafka_topic_partition_list_find(offsets, CM_TOPIC_DLQ, m->partition);
        if (tp == NULL) {
            tp = rd_kafka_topic_partition_list_add(offsets, CM_TOPIC_DLQ, m->partition);
        }
        tp->offset = m->offset + 1;
        rd_kafka_message_destroy(m);
        if (rc == CM_OK && ++in_txn >= TXN_CHUNK) {
            rc = commit_chunk(p, v.c, offsets, err);
            open = false;
            in_txn = 0;
        }
    }
    if (rc == CM_OK && err->msg[0] != '\0') {
        rc = CM_RETRY;
    }
    if (rc == CM_OK && open) {
        rc = commit_chunk(p, v.c, offsets, err);
        open = false;
    }
    if (rc != CM_OK && open && rc != CM_FATAL) {
        rd_kafka_error_t *e = rd_kafka_abort_transaction(p, TIMEOUT_MS);
        if (e != NULL) {
            rd_kafka_error_destroy(e);
        }
    }
    if (rc == CM_OK) {
        fprintf(out, "replayed %zu dead letters to their source topics (%zu without a "
                     "replayable record)\n", replayed, skipped);
    }
    rd_kafka_topic_partition_list_destroy(offsets);
    if (p != NULL) {
        rd_kafka_destroy(p);
    }
    view_fini(&v);
    return rc;
}
