/* The processor loop: one consumer (group PROCESSOR_GROUP_ID on biometric.raw.v1, read_committed,
 * manual commits) and one transactional producer for biometric.normalized.v1, biometric.fetch.v1
 * and biometric.dlq.v1, driven by proc_loop_run() on the main thread. See proc_loop.h for the
 * exactly-once contract. Invariants:
 * - a batch is one Kafka transaction: its outputs and its input offsets
 *   (rd_kafka_send_offsets_to_transaction with the group's metadata) commit or abort together;
 * - Redis is written only after the commit (a cache: a crash right after the commit leaves it
 *   behind until the next write, never ahead of Kafka); its replies are read while the next batch
 *   is collected and processed;
 * - rebalance callbacks run only inside rd_kafka_consumer_poll(), i.e. while a batch is being
 *   collected: messages of revoked partitions are dropped uncommitted, the rest is kept;
 * - a batch that cannot be finished is rewound with a seek; if the seek fails the loop exits so
 *   the group resumes from the committed offsets.
 * Logs carry partitions, offsets, counts, reasons and pseudonyms only. */
#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/kafka.h"
#include "cm/log.h"
#include "cm/metrics.h"
#include "cm/records.h"
#include "proc_loop.h"
#include "proc_norm.h"
#include "proc_redis.h"
#include "proc_users.h"

#define IDLE_POLL_MS 100
#define DELIVERY_TIMEOUT_MS 30000            /* message.timeout.ms of the producer */
#define FLUSH_GRACE_MS 5000                  /* wait this much longer for the reports */
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000
#define SEEK_TIMEOUT_MS 10000
#define TXN_TIMEOUT_MS 10000                 /* per transactional API call */
#define TXN_COMMIT_TRIES 6                   /* retriable commit errors before aborting */
#define KEY_MAX 320

struct proc_loop {
    const struct proc_cfg *cfg;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    struct proc_users *users;
    struct proc_redis *redis;

    rd_kafka_message_t **msgs; /* the batch being collected / processed */
    size_t n_msgs, cap_msgs;

    bool txn_ready;            /* rd_kafka_init_transactions() succeeded */
    bool producer_broken;      /* fatal producer error we recover from with a new producer */
    char txn_id[160];          /* transactional.id (for logs) */

    struct proc_out out;
    struct cm_buf enc;
    long backoff_ms;
    bool fatal;
    char fatal_reason[160];

    bool closed;               /* rd_kafka_consumer_close() was called */
    bool coop;                 /* the group's rebalance protocol, learnt at the first assignment */
    atomic_bool joined;        /* got an assignment (possibly empty) from the group */
    atomic_bool brokers_up;
};

static struct cm_metric *m_normalized, *m_raw, *m_dlq, *m_fetch, *m_redis_errors,
    *m_redis_skipped, *m_batch_size, *m_batch_seconds, *m_produce_errors, *m_lag, *m_pg_errors,
    *m_txn;

static const double batch_size_buckets[] = { 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 };

static void register_metrics(void)
{
    if (m_normalized != NULL) {
        return;
    }
    m_normalized = cm_metric_counter("auren_processor_events_normalized_total",
                                     "Normalized events published", 2, "vendor", "metric");
    m_raw = cm_metric_counter("auren_processor_raw_consumed_total",
                              "Raw records consumed (including replays)", 1, "vendor");
    m_dlq = cm_metric_counter("auren_processor_dlq_records_total",
                              "Records sent to the dead-letter topic", 1, "reason");
    m_fetch = cm_metric_counter("auren_processor_fetch_jobs_total", "Fetch jobs published", 1,
                                "vendor");
    m_redis_errors = cm_metric_counter("auren_processor_redis_errors_total",
                                       "Failed Redis connections, round trips or commands", 0);
    m_redis_skipped = cm_metric_counter("auren_processor_redis_skipped_writes_total",
                                        "Event writes not applied to Redis", 0);
    m_batch_size = cm_metric_histogram("auren_processor_batch_size", "Raw records per batch",
                                       batch_size_buckets, CM_ARRAY_LEN(batch_size_buckets), 0);
    m_batch_seconds = cm_metric_histogram("auren_processor_batch_duration_seconds",
                                          "Time to process, deliver and commit one batch",
                                          cm_metric_latency_buckets, cm_metric_latency_nbuckets, 0);
    m_produce_errors = cm_metric_counter("auren_processor_kafka_produce_errors_total",
                                         "Kafka produce or delivery failures", 1, "topic");
    m_lag = cm_metric_gauge("auren_processor_consumer_lag",
                            "Messages behind the end of the assigned partitions", 0);
    m_pg_errors = cm_metric_counter("auren_processor_pg_errors_total",
                                    "Failed PostgreSQL round trips", 0);
    m_txn = cm_metric_counter("auren_processor_transactions_total",
                              "Kafka transaction steps by outcome (commit ok = one batch)", 2,
                              "step", "outcome");
}

/* ---- pure helpers ---- */

void proc_dlq_reason(const char *err_msg, char *out, size_t outsz)
{
    const char *end = strchr(err_msg, ':');
    size_t n = end != NULL ? (size_t)(end - err_msg) : strlen(err_msg);
    const char *p = err_msg;

    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    if (n == 0) {
        cm_strlcpy(out, "invalid", outsz);
        return;
    }
    if (n >= outsz) {
        n = outsz - 1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

void proc_fetch_job_id(const char *raw_event_id, size_t index, char out[33])
{
    char input[256];
    int n = snprintf(input, sizeof(input), "%s:%zu", raw_event_id, index);

    cm_assert(n > 0 && (size_t)n < sizeof(input));
    proc_digest_id(input, (size_t)n, out);
}

bool proc_fetch_key(const char *vendor, const char *vendor_user_id, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s:%s", vendor, vendor_user_id);

    return n > 0 && (size_t)n < outsz;
}

enum cm_rc proc_stats_consumer_lag(const char *json, size_t len, int64_t *lag)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *topics, *topic, *parts, *part;
    const char *tname, *pname;
    int64_t sum = 0;

    if (root == NULL) {
        return CM_INVALID;
    }
    topics = json_object_get(root, "topics");
    if (!json_is_object(topics)) {
        json_decref(root);
        return CM_INVALID;
    }
    json_object_foreach(topics, tname, topic) {
        parts = json_object_get(topic, "partitions");
        if (!json_is_object(parts)) {
            continue;
        }
        json_object_foreach(parts, pname, part) {
            json_t *v = json_object_get(part, "consumer_lag");

            if (strcmp(pname, "-1") == 0 || !json_is_integer(v) || json_integer_value(v) < 0) {
                continue; /* the UA pseudo-partition, or lag unknown (not consumed by us) */
            }
            sum += (int64_t)json_integer_value(v);
        }
    }
    json_decref(root);
    *lag = sum;
    return CM_OK;
}

/* ---- librdkafka callbacks (all served on the loop thread) ---- */

/* Reports only count and log: a failed delivery fails the transaction's commit, which aborts the
 * whole batch. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_metric_inc(m_produce_errors, rd_kafka_topic_name(m->rkt));
        cm_log_warn("kafka.delivery_failed", "topic=%s err=%s", rd_kafka_topic_name(m->rkt),
                    rd_kafka_err2name(m->err));
    }
}

/* Another live instance took our transactional.id or group.instance.id: this one must stop. */
static bool fenced(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED || e == RD_KAFKA_RESP_ERR__FENCED ||
           e == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID ||
           e == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
}

static void on_error(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    struct proc_loop *l = opaque;
    char fatal[256];

    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));

        cm_log_error("kafka.fatal", "client=%s err=%s", rd_kafka_name(rk), rd_kafka_err2name(orig));
        if (rk == l->producer && !fenced(orig)) {
            l->producer_broken = true; /* e.g. a coordinator that lost our transaction */
            return;
        }
        snprintf(l->fatal_reason, sizeof(l->fatal_reason), "kafka fatal error: %s",
                 rd_kafka_err2name(orig));
        l->fatal = true;
        return;
    }
    if (e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        atomic_store(&l->brokers_up, false);
    }
    cm_log_warn("kafka.error", "client=%s err=%s reason=%s", rd_kafka_name(rk),
                rd_kafka_err2name((rd_kafka_resp_err_t)e), reason);
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    struct proc_loop *l = opaque;
    int64_t lag;
    int up = cm_kafka_stats_brokers_up(json, len);

    if (proc_stats_consumer_lag(json, len, &lag) == CM_OK) {
        cm_metric_set(m_lag, (double)lag);
    }
    if (up >= 0) {
        atomic_store(&l->brokers_up, up > 0); /* also recovers /readyz when nothing is consumed */
    }
    return 0; /* librdkafka frees json */
}

static bool in_list(const rd_kafka_topic_partition_list_t *parts, const rd_kafka_message_t *m)
{
    return rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition) !=
           NULL;
}

/* Drop the collected messages of revoked partitions: they were not processed, and the next owner
 * starts from the committed offset. */
static void drop_revoked(struct proc_loop *l, const rd_kafka_topic_partition_list_t *parts)
{
    size_t kept = 0, dropped = 0;

    for (size_t i = 0; i < l->n_msgs; i++) {
        if (in_list(parts, l->msgs[i])) {
            rd_kafka_message_destroy(l->msgs[i]);
            dropped++;
        } else {
            l->msgs[kept++] = l->msgs[i];
        }
    }
    l->n_msgs = kept;
    if (dropped > 0) {
        cm_log_info("batch.abandoned", "messages=%zu reason=partitions_revoked", dropped);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct proc_loop *l = opaque;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;

    switch (e) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        /* Asked here, never on revoke: rd_kafka_rebalance_protocol() is a blocking request to the
         * group thread, which may no longer answer during rd_kafka_consumer_close() (librdkafka
         * #4041), and close would then hang. */
        l->coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
        cm_log_info("kafka.assigned", "partitions=%d protocol=%s", parts->cnt,
                    l->coop ? "cooperative" : "eager");
        if (l->coop) {
            error = rd_kafka_incremental_assign(rk, parts);
        } else {
            ret = rd_kafka_assign(rk, parts);
        }
        atomic_store(&l->joined, true);
        atomic_store(&l->brokers_up, true);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        cm_log_info("kafka.revoked", "partitions=%d lost=%d", parts->cnt,
                    rd_kafka_assignment_lost(rk));
        drop_revoked(l, parts);
        if (l->coop) {
            error = rd_kafka_incremental_unassign(rk, parts);
        } else {
            ret = rd_kafka_assign(rk, NULL);
        }
        break;
    default:
        cm_log_error("kafka.rebalance_failed", "err=%s", rd_kafka_err2name(e));
        drop_revoked(l, parts);
        ret = rd_kafka_assign(rk, NULL);
        atomic_store(&l->joined, false);
        break;
    }
    if (error != NULL) {
        cm_log_error("kafka.assign_failed", "err=%s", rd_kafka_error_name(error));
        rd_kafka_error_destroy(error);
    } else if (ret != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_log_error("kafka.assign_failed", "err=%s", rd_kafka_err2name(ret));
    }
}

/* ---- construction ---- */

static enum cm_rc set_props(rd_kafka_conf_t *conf, const char *const (*props)[2], size_t n,
                            struct cm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (cm_kafka_set(conf, props[i][0], props[i][1], err) != CM_OK) {
            return CM_INVALID;
        }
    }
    return CM_OK;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf, struct cm_err *err)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));

    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        cm_err_set(err, CM_INVALID, "kafka: %s", errstr);
    }
    return rk;
}

static rd_kafka_t *new_consumer(struct proc_loop *l, struct cm_err *err)
{
    const char *const props[][2] = {
        { "group.id", l->cfg->group_id },
        { "client.id", "auren-processor" },
        { "isolation.level", "read_committed" },
        { "enable.auto.commit", "false" },
        { "enable.auto.offset.store", "false" },
        { "auto.offset.reset", "earliest" },
        { "statistics.interval.ms", "5000" },
        /* a crashed member's partitions move on after 10 s instead of the default 45 s; static
         * membership (group.instance.id) is not used: librdkafka 2.0 fences itself with it when
         * the group coordinator restarts */
        { "session.timeout.ms", "10000" },
    };
    rd_kafka_conf_t *conf = cm_kafka_conf_new(l->cfg->kafka_brokers, err);
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_resp_err_t e;
    rd_kafka_t *rk;

    if (conf == NULL) {
        return NULL;
    }
    if (set_props(conf, props, CM_ARRAY_LEN(props), err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, l);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rk = new_client(RD_KAFKA_CONSUMER, conf, err);
    if (rk == NULL) {
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk); /* callbacks are served by rd_kafka_consumer_poll() */
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, CM_TOPIC_RAW, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_destroy(rk);
        cm_err_set(err, CM_INVALID, "kafka: subscribe: %s", rd_kafka_err2name(e));
        return NULL;
    }
    return rk;
}

/* transactional.id: KAFKA_TRANSACTIONAL_ID when set, else
 * "auren-processor-<group>-<host>". It must be stable across restarts of one instance (the new
 * producer then fences the crashed one and aborts its open transaction at once) and unique among
 * live instances. */
static rd_kafka_t *new_producer(struct proc_loop *l, struct cm_err *err)
{
    char timeout[24];
    /* Fixed: the exactly-once guarantee and the delivery deadline rest on these. */
    const char *const props[][2] = {
        { "client.id", "auren-processor" },
        { "enable.idempotence", "true" },
        { "acks", "all" },
        { "message.timeout.ms", timeout },
        { "transactional.id", l->txn_id },
        { "transaction.timeout.ms", "60000" },
    };
    /* Defaults an operator may change through KAFKA_* (cm_kafka_set_default). */
    const char *const tunables[][2] = {
        { "compression.type", "lz4" },
        /* commit_transaction() flushes without waiting for the linger (librdkafka >= 1.8), so a
         * longer linger adds no latency to a batch and sends its events in fewer, larger
         * requests: 5 -> 50 cut the CPU per event ~10 % (A/B, README Performance) */
        { "linger.ms", "50" },
        /* Right after a commit the coordinator answers the next transaction's AddPartitionsToTxn
         * and AddOffsetsToTxn with CONCURRENT_TRANSACTIONS until the markers are written; each
         * retry waits retry.backoff.ms, whose 100 ms default put ~105 ms into most batches
         * (measured per step of process_batch; README, Performance) */
        { "retry.backoff.ms", "10" },
        /* A dead letter carries a whole raw record (bodies up to the gateway's 16m ceiling):
         * librdkafka's 1 MB default made such a record a poison pill that stopped the loop. */
        { "message.max.bytes", "33554432" },
    };
    rd_kafka_conf_t *conf = cm_kafka_conf_new(l->cfg->kafka_brokers, err);

    if (conf == NULL) {
        return NULL;
    }
    snprintf(timeout, sizeof(timeout), "%d", DELIVERY_TIMEOUT_MS);
    cm_kafka_instance_id("KAFKA_TRANSACTIONAL_ID", "auren-processor", l->cfg->group_id, l->txn_id,
                         sizeof(l->txn_id));
    if (set_props(conf, props, CM_ARRAY_LEN(props), err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(tunables); i++) {
        if (cm_kafka_set_default(conf, tunables[i][0], tunables[i][1], err) != CM_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_opaque(conf, l);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    return new_client(RD_KAFKA_PRODUCER, conf, err);
}

struct proc_loop *proc_loop_new(const struct proc_cfg *cfg, struct cm_err *err)
{
    struct proc_loop *l = cm_xcalloc(1, sizeof(*l));

    register_metrics();
    l->cfg = cfg;
    l->backoff_ms = BACKOFF_MIN_MS;
    atomic_init(&l->joined, false);
    atomic_init(&l->brokers_up, true);
    proc_out_init(&l->out);
    cm_buf_init(&l->enc, 0);
    l->redis = proc_redis_new(cfg->redis_url, cfg->redis_ttl_s, cfg->max_timeseries_entries,
                              m_redis_errors, m_redis_skipped, err);
    if (l->redis == NULL) {
        goto fail;
    }
    l->producer = new_producer(l, err);
    if (l->producer == NULL) {
        goto fail;
    }
    l->users = proc_users_new(cfg->database_url, cfg->conn_cache_ttl_s, m_pg_errors);
    l->consumer = new_consumer(l, err);
    if (l->consumer == NULL) {
        goto fail;
    }
    return l;
fail:
    proc_loop_free(l);
    return NULL;
}

static void destroy_msgs(struct proc_loop *l)
{
    for (size_t i = 0; i < l->n_msgs; i++) {
        rd_kafka_message_destroy(l->msgs[i]);
    }
    l->n_msgs = 0;
}

void proc_loop_free(struct proc_loop *l)
{
    if (l == NULL) {
        return;
    }
    destroy_msgs(l);
    free(l->msgs);
    if (l->consumer != NULL) {
        /* proc_loop_run() closed it already; a second close hangs after a fatal error */
        rd_kafka_destroy_flags(l->consumer, l->closed ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0);
    }
    if (l->producer != NULL) {
        rd_kafka_destroy(l->producer);
    }
    proc_users_free(l->users);
    proc_redis_free(l->redis);
    proc_out_fini(&l->out);
    cm_buf_fini(&l->enc);
    free(l);
}

bool proc_loop_ready(void *arg, const char **reason)
{
    struct proc_loop *l = arg;
    const char *why = NULL;

    if (!atomic_load(&l->joined)) {
        why = "kafka consumer group not joined";
    } else if (!atomic_load(&l->brokers_up)) {
        why = "kafka brokers down";
    } else if (!proc_users_reachable(l->users)) {
        why = "postgresql unreachable";
    }
    if (reason != NULL) {
        *reason = why;
    }
    return why == NULL;
}

/* ---- producing ---- */

static enum cm_rc produce(struct proc_loop *l, const char *topic, const void *key, size_t keylen,
                          struct cm_err *err)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            l->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE(l->enc.data, l->enc.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);

        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            return CM_OK;
        }
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && !l->fatal) {
            rd_kafka_poll(l->producer, 100); /* serve reports until there is room */
            continue;
        }
        cm_metric_inc(m_produce_errors, topic);
        return cm_err_set(err, cm_kafka_classify(e) == CM_FATAL ? CM_FATAL : CM_RETRY,
                          "produce to %s: %s", topic, rd_kafka_err2name(e));
    }
}

static enum cm_rc dead_letter(struct proc_loop *l, const rd_kafka_message_t *m, const char *reason,
                              const char *detail, struct cm_err *err)
{
    struct cm_dead_letter d;
    enum cm_rc rc;

    cm_kafka_dead_letter(&d, "processor", m, reason, detail, 1);
    cm_buf_reset(&l->enc);
    if (cm_dead_letter_encode(&d, &l->enc, err) != CM_OK) {
        /* our own record failed to encode: a bug; replaying the batch cannot help */
        return cm_err_set(err, CM_FATAL, "dead letter encode failed");
    }
    rc = produce(l, CM_TOPIC_DLQ, m->key, m->key_len, err);
    if (rc != CM_OK) {
        return rc;
    }
    cm_metric_inc(m_dlq, reason);
    cm_log_info("record.dead_lettered", "partition=%" PRId32 " offset=%" PRId64 " reason=%s",
                m->partition, m->offset, reason);
    return CM_OK;
}

static void log_connection(const char *event, const struct cm_raw_webhook *raw,
                           const char *vendor_user_id, const rd_kafka_message_t *m)
{
    char pseudo[17];

    if (cm_log_level < CM_LOG_INFO) {
        return;
    }
    cm_log_pseudonym(vendor_user_id, pseudo);
    cm_log_info(event, "vendor=%s vendor_user=%s partition=%" PRId32 " offset=%" PRId64,
                raw->vendor, pseudo, m->partition, m->offset);
}

/* Resolve with a one-entry memo: a webhook's samples are usually grouped by user. */
struct resolved {
    char vendor_user_id[128];
    enum proc_conn_state state;
    char user_id[PROC_USER_ID_MAX];
    bool valid;
};

static enum cm_rc resolve(struct proc_loop *l, const char *vendor, const char *vendor_user_id,
                          struct resolved *r, struct cm_err *err)
{
    if (r->valid && strcmp(r->vendor_user_id, vendor_user_id) == 0) {
        return CM_OK;
    }
    r->valid = false;
    if (vendor_user_id[0] == '\0') {
        r->state = PROC_CONN_UNKNOWN;
        r->user_id[0] = '\0';
    } else if (proc_users_resolve(l->users, vendor, vendor_user_id, &r->state, r->user_id, err) !=
               CM_OK) {
        return CM_RETRY;
    }
    cm_strlcpy(r->vendor_user_id, vendor_user_id, sizeof(r->vendor_user_id));
    r->valid = true;
    return CM_OK;
}

static enum cm_rc publish_sample(struct proc_loop *l, const struct cm_raw_webhook *raw,
                                 const struct proc_sample *s, const char *user_id,
                                 struct cm_err *err)
{
    /* the encoder only borrows these pointers */
    struct cm_biometric_event e = {
        .event_id = (char *)s->event_id,
        .user_id = (char *)user_id,
        .vendor = raw->vendor,
        .metric = (char *)s->metric,
        .value = s->value,
        .unit = (char *)s->unit,
        .loinc = (char *)s->loinc,
        .start_time_us = s->start_us,
        .end_time_us = s->end_us,
        .has_utc_offset = s->has_utc_offset,
        .utc_offset_seconds = s->utc_offset_s,
        .source_record_id = (char *)s->source_record_id,
        .raw_event_id = raw->event_id,
        .ingested_at_us = cm_now_us(),
        .received_at_us = raw->received_at_us,
        .deleted = s->deleted,
    };
    enum cm_rc rc;

    cm_buf_reset(&l->enc);
    rc = cm_biometric_event_encode(&e, &l->enc, err);
    if (rc != CM_OK) {
        return rc; /* CM_INVALID: dead-lettered by the caller */
    }
    rc = produce(l, CM_TOPIC_NORMALIZED, user_id, strlen(user_id), err);
    if (rc != CM_OK) {
        return rc;
    }
    proc_redis_add(l->redis, user_id, s->metric, s->event_id, s->value, s->start_us, s->deleted);
    cm_metric_inc(m_normalized, raw->vendor, s->metric);
    return CM_OK;
}

static enum cm_rc publish_fetch(struct proc_loop *l, const struct cm_raw_webhook *raw,
                                const struct proc_fetch *f, size_t index, const char *user_id,
                                struct cm_err *err)
{
    char job_id[33], key[KEY_MAX];
    int64_t now = cm_now_us();
    struct cm_fetch_job j = {
        .job_id = job_id,
        .vendor = raw->vendor,
        .vendor_user_id = (char *)f->vendor_user_id,
        .user_id = (char *)user_id,
        .resource = (char *)f->resource,
        .event_type = f->event_type[0] != '\0' ? (char *)f->event_type : NULL,
        .object_id = f->object_id[0] != '\0' ? (char *)f->object_id : NULL,
        .url = f->url[0] != '\0' ? (char *)f->url : NULL,
        .has_start = f->has_start,
        .start_time_us = f->start_us,
        .has_end = f->has_end,
        .end_time_us = f->end_us,
        .raw_event_id = raw->event_id,
        .attempt = 0,
        .not_before_us = now,
        .created_at_us = now,
    };
    enum cm_rc rc;

    proc_fetch_job_id(raw->event_id, index, job_id);
    if (!proc_fetch_key(raw->vendor, f->vendor_user_id, key, sizeof(key))) {
        return cm_err_set(err, CM_INVALID, "fetch key too long");
    }
    cm_buf_reset(&l->enc);
    rc = cm_fetch_job_encode(&j, &l->enc, err);
    if (rc != CM_OK) {
        return rc;
    }
    rc = produce(l, CM_TOPIC_FETCH, key, strlen(key), err);
    if (rc == CM_OK) {
        cm_metric_inc(m_fetch, raw->vendor);
    }
    return rc;
}

/* Outcome flags of one raw record: which dead letters it needs. */
struct msg_outcome {
    bool unknown;
    bool revoked;
    bool unencodable;
    struct cm_err encode_err;
};

static enum cm_rc route_samples(struct proc_loop *l, const struct cm_raw_webhook *raw,
                                const rd_kafka_message_t *m, struct msg_outcome *o,
                                struct cm_err *err)
{
    struct resolved r = { .valid = false };

    for (size_t i = 0; i < l->out.n_samples; i++) {
        const struct proc_sample *s = &l->out.samples[i];
        bool fresh = !r.valid || strcmp(r.vendor_user_id, s->vendor_user_id) != 0;
        enum cm_rc rc;

        if (resolve(l, raw->vendor, s->vendor_user_id, &r, err) != CM_OK) {
            return CM_RETRY;
        }
        if (r.state == PROC_CONN_UNKNOWN) {
            if (fresh) {
                log_connection("connection.unknown", raw, s->vendor_user_id, m);
            }
            o->unknown = true;
            continue;
        }
        if (r.state == PROC_CONN_REVOKED) {
            o->revoked = true;
            continue;
        }
        rc = publish_sample(l, raw, s, r.user_id, err);
        if (rc == CM_INVALID) {
            o->unencodable = true;
            o->encode_err = *err;
        } else if (rc != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

static enum cm_rc route_fetches(struct proc_loop *l, const struct cm_raw_webhook *raw,
                                const rd_kafka_message_t *m, struct msg_outcome *o,
                                struct cm_err *err)
{
    struct resolved r = { .valid = false };

    for (size_t i = 0; i < l->out.n_fetches; i++) {
        const struct proc_fetch *f = &l->out.fetches[i];
        enum cm_rc rc;

        if (resolve(l, raw->vendor, f->vendor_user_id, &r, err) != CM_OK) {
            return CM_RETRY;
        }
        if (f->vendor_user_id[0] == '\0') {
            o->unknown = true; /* nothing to fetch for */
            continue;
        }
        if (r.state == PROC_CONN_REVOKED) {
            o->revoked = true; /* no token to fetch with */
            continue;
        }
        /* an unknown user still gets a job (user_id null): the fetcher resolves it again */
        rc = publish_fetch(l, raw, f, i, r.state == PROC_CONN_ACTIVE ? r.user_id : NULL, err);
        if (rc == CM_INVALID) {
            o->unencodable = true;
            o->encode_err = *err;
        } else if (rc != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

static enum cm_rc apply_lifecycle(struct proc_loop *l, const struct cm_raw_webhook *raw,
                                  const rd_kafka_message_t *m, struct cm_err *err)
{
    for (size_t i = 0; i < l->out.n_lifecycle; i++) {
        const struct proc_lifecycle *c = &l->out.lifecycle[i];

        if (strcmp(c->action, "revoked") != 0 || c->vendor_user_id[0] == '\0') {
            cm_log_warn("lifecycle.ignored", "vendor=%s action=%s partition=%" PRId32
                        " offset=%" PRId64, raw->vendor, c->action, m->partition, m->offset);
            continue;
        }
        if (proc_users_revoke(l->users, raw->vendor, c->vendor_user_id, err) != CM_OK) {
            return CM_RETRY;
        }
        log_connection("connection.revoked", raw, c->vendor_user_id, m);
    }
    return CM_OK;
}

/* One raw record: decode, normalize, route. CM_OK when everything it needs was produced (dead
 * letters included); CM_RETRY / CM_FATAL abort the batch. */
static enum cm_rc process_msg(struct proc_loop *l, const rd_kafka_message_t *m, struct cm_err *err)
{
    struct cm_raw_webhook raw;
    struct msg_outcome o = { .unknown = false };
    struct cm_err nerr = { .msg = "" };
    char reason[64];
    enum cm_rc rc;

    memset(&raw, 0, sizeof(raw));
    if (cm_raw_webhook_decode(m->payload, m->len, &raw, &nerr) != CM_OK) {
        cm_raw_webhook_fini(&raw);
        cm_metric_inc(m_raw, "unknown");
        return dead_letter(l, m, "undecodable", nerr.msg, err);
    }
    cm_metric_inc(m_raw, raw.vendor);
    proc_out_reset(&l->out);
    rc = proc_normalize(&raw, &l->out, &nerr);
    if (rc != CM_OK) {
        if (rc == CM_INVALID) {
            proc_dlq_reason(nerr.msg, reason, sizeof(reason));
            rc = dead_letter(l, m, reason, nerr.msg, err);
        } else {
            cm_err_set(err, rc, "normalize: %s", nerr.msg);
        }
        goto out;
    }
    if (l->out.is_handshake) {
        cm_log_debug("record.handshake", "vendor=%s partition=%" PRId32 " offset=%" PRId64,
                     raw.vendor, m->partition, m->offset);
        goto out;
    }
    rc = route_samples(l, &raw, m, &o, err);
    if (rc == CM_OK) {
        rc = route_fetches(l, &raw, m, &o, err);
    }
    if (rc == CM_OK) {
        rc = apply_lifecycle(l, &raw, m, err);
    }
    /* Dead letters carry the whole raw record even when only some of its users failed: a replay
     * republishes the known users' events too, which is harmless (same event ids). */
    if (rc == CM_OK && o.unknown) {
        rc = dead_letter(l, m, "unknown_connection", "vendor_user_id has no connection", err);
    }
    if (rc == CM_OK && o.revoked) {
        rc = dead_letter(l, m, "connection_revoked", "connection status is revoked", err);
    }
    if (rc == CM_OK && o.unencodable) {
        rc = dead_letter(l, m, "unencodable", o.encode_err.msg, err);
    }
out:
    cm_raw_webhook_fini(&raw);
    return rc;
}

/* ---- batches ---- */

static void push_msg(struct proc_loop *l, rd_kafka_message_t *m)
{
    if (l->n_msgs == l->cap_msgs) {
        l->cap_msgs = l->cap_msgs == 0 ? 64 : l->cap_msgs * 2;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers, size is right */
        l->msgs = cm_xrealloc(l->msgs, l->cap_msgs * sizeof(*l->msgs));
    }
    l->msgs[l->n_msgs++] = m;
}

static void on_consumer_error(struct proc_loop *l, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        atomic_store(&l->brokers_up, false);
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        on_error(l->consumer, m->err, "consumer", l);
        return;
    }
    cm_log_warn("kafka.consume_error", "topic=%s partition=%" PRId32 " err=%s",
                m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "-", m->partition,
                rd_kafka_err2name(m->err));
}

/* Collect up to batch_max messages. The batch closes as soon as the consumer has nothing more
 * queued (what arrived while the previous batch was committing is taken at once, and a lone
 * message does not wait for company: batches grow with the load, not with a timer), and at the
 * latest batch_ms after its first message. Returns with an empty batch after IDLE_POLL_MS of
 * silence, so the caller can look at *stop. */
static void collect(struct proc_loop *l, const volatile sig_atomic_t *stop)
{
    int64_t deadline = 0;

    while (l->n_msgs < (size_t)l->cfg->batch_max && *stop == 0 && !l->fatal) {
        int64_t now = cm_mono_us() / 1000;
        rd_kafka_message_t *m;

        if (deadline != 0 && now >= deadline) {
            break;
        }
        m = rd_kafka_consumer_poll(l->consumer, deadline == 0 ? IDLE_POLL_MS : 0);
        if (m == NULL) {
            if (deadline == 0 && l->n_msgs == 0) {
                return;
            }
            if (l->n_msgs > 0) {
                break; /* nothing more queued */
            }
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            on_consumer_error(l, m);
            rd_kafka_message_destroy(m);
            continue;
        }
        atomic_store(&l->brokers_up, true);
        if (deadline == 0) {
            deadline = cm_mono_us() / 1000 + l->cfg->batch_ms;
        }
        push_msg(l, m);
    }
}

/* Per partition of the batch: the first offset (rewind) or one past the last (commit). */
static rd_kafka_topic_partition_list_t *batch_offsets(const struct proc_loop *l, bool first)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);

    for (size_t i = 0; i < l->n_msgs; i++) {
        const rd_kafka_message_t *m = l->msgs[i];
        const char *topic = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(parts, topic, m->partition);
        int64_t off = first ? m->offset : m->offset + 1;

        if (p == NULL) {
            p = rd_kafka_topic_partition_list_add(parts, topic, m->partition);
            p->offset = off;
        } else if (first ? off < p->offset : off > p->offset) {
            p->offset = off;
        }
    }
    return parts;
}

/* Rewind the batch's partitions; on failure the loop must exit (see the file header). */
static bool rewind_batch(struct proc_loop *l)
{
    rd_kafka_topic_partition_list_t *parts = batch_offsets(l, true);
    rd_kafka_error_t *error = rd_kafka_seek_partitions(l->consumer, parts, SEEK_TIMEOUT_MS);
    bool ok = error == NULL;

    if (error != NULL) {
        cm_log_error("kafka.seek_failed", "err=%s", rd_kafka_error_name(error));
        rd_kafka_error_destroy(error);
    }
    for (int i = 0; ok && i < parts->cnt; i++) {
        if (parts->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cm_log_error("kafka.seek_failed", "partition=%" PRId32 " err=%s",
                         parts->elems[i].partition, rd_kafka_err2name(parts->elems[i].err));
            ok = false;
        }
    }
    if (ok) {
        for (int i = 0; i < parts->cnt; i++) {
            cm_log_info("batch.rewound", "partition=%" PRId32 " offset=%" PRId64,
                        parts->elems[i].partition, parts->elems[i].offset);
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return ok;
}

/* Sleep for the current backoff in short slices (the producer keeps serving reports); returns
 * early when asked to stop. */
static void backoff(struct proc_loop *l, const volatile sig_atomic_t *stop)
{
    int64_t until = cm_mono_us() / 1000 + l->backoff_ms;

    while (*stop == 0 && !l->fatal && cm_mono_us() / 1000 < until) {
        rd_kafka_poll(l->producer, 50);
    }
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

/* ---- transactions ---- */

/* Map a transactional API error: fenced by a newer instance with our transactional.id ->
 * CM_FATAL (stop); any other fatal producer error -> the producer is replaced (producer_broken)
 * and the batch replayed; anything else -> CM_RETRY (the caller aborts and replays). */
static enum cm_rc txn_fail(struct proc_loop *l, rd_kafka_error_t *error, const char *step,
                           struct cm_err *err)
{
    bool fatal = rd_kafka_error_is_fatal(error);
    enum cm_rc rc = fatal && fenced(rd_kafka_error_code(error)) ? CM_FATAL : CM_RETRY;

    cm_metric_inc(m_txn, step, fatal ? "fatal" : "failed");
    cm_err_set(err, rc, "transaction %s: %s", step, rd_kafka_error_name(error));
    if (rc == CM_FATAL) {
        snprintf(l->fatal_reason, sizeof(l->fatal_reason), "transaction %s: %s", step,
                 rd_kafka_error_name(error));
        l->fatal = true;
    } else if (fatal) {
        l->producer_broken = true;
    }
    rd_kafka_error_destroy(error);
    return rc;
}

/* init_transactions once per producer; retried on every batch until it succeeds (the broker may
 * be down at start). It also fences a previous incarnation and aborts its open transaction. */
static enum cm_rc txn_init(struct proc_loop *l, struct cm_err *err)
{
    rd_kafka_error_t *error;

    if (l->txn_ready) {
        return CM_OK;
    }
    error = rd_kafka_init_transactions(l->producer, TXN_TIMEOUT_MS);
    if (error != NULL) {
        return txn_fail(l, error, "init", err);
    }
    l->txn_ready = true;
    cm_log_info("kafka.transactions_ready", "transactional_id=%s", l->txn_id);
    return CM_OK;
}

/* An abort that cannot finish leaves the producer unusable: it is replaced. */
static void txn_abort(struct proc_loop *l)
{
    for (int i = 0; i < 3 && !l->fatal && !l->producer_broken; i++) {
        rd_kafka_error_t *error = rd_kafka_abort_transaction(l->producer, TXN_TIMEOUT_MS);

        if (error == NULL) {
            cm_metric_inc(m_txn, "abort", "ok");
            return;
        }
        if (rd_kafka_error_is_fatal(error) || !rd_kafka_error_is_retriable(error)) {
            struct cm_err ignored;
            txn_fail(l, error, "abort", &ignored);
            l->producer_broken = !l->fatal;
            return;
        }
        rd_kafka_error_destroy(error);
    }
    l->producer_broken = !l->fatal;
}

/* Replace a broken producer: the new one's init_transactions (same transactional.id) fences the
 * old epoch and aborts whatever it left open. CM_FATAL when a new producer cannot be made. */
static enum cm_rc reset_producer(struct proc_loop *l, struct cm_err *err)
{
    cm_log_warn("kafka.producer_reset", "transactional_id=%s", l->txn_id);
    cm_metric_inc(m_txn, "producer_reset", "ok");
    rd_kafka_purge(l->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(l->producer, 0);
    rd_kafka_destroy(l->producer);
    l->txn_ready = false;
    l->producer_broken = false;
    l->producer = new_producer(l, err);
    if (l->producer == NULL) {
        snprintf(l->fatal_reason, sizeof(l->fatal_reason), "cannot recreate the producer");
        l->fatal = true;
        return CM_FATAL;
    }
    return CM_RETRY;
}

/* The batch's input offsets go into the transaction with the group's metadata (KIP-447), so a
 * zombie member of an older generation cannot commit them. */
static enum cm_rc txn_send_offsets(struct proc_loop *l, struct cm_err *err)
{
    rd_kafka_topic_partition_list_t *parts = batch_offsets(l, false);
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(l->consumer);
    rd_kafka_error_t *error;

    error = rd_kafka_send_offsets_to_transaction(l->producer, parts, cgmd, TXN_TIMEOUT_MS);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    rd_kafka_topic_partition_list_destroy(parts);
    return error == NULL ? CM_OK : txn_fail(l, error, "send_offsets", err);
}

/* Commit; a retriable error (broker slow or briefly away) is retried as the API allows, an error
 * that requires an abort is returned as CM_RETRY. */
static enum cm_rc txn_commit(struct proc_loop *l, const volatile sig_atomic_t *stop,
                             struct cm_err *err)
{
    for (int i = 0; i < TXN_COMMIT_TRIES; i++) {
        rd_kafka_error_t *error = rd_kafka_commit_transaction(l->producer, TXN_TIMEOUT_MS);

        if (error == NULL) {
            cm_metric_inc(m_txn, "commit", "ok");
            return CM_OK;
        }
        if (rd_kafka_error_is_fatal(error) || rd_kafka_error_txn_requires_abort(error) ||
            !rd_kafka_error_is_retriable(error) || *stop != 0) {
            return txn_fail(l, error, "commit", err);
        }
        cm_log_warn("kafka.commit_retry", "err=%s attempt=%d", rd_kafka_error_name(error), i + 1);
        rd_kafka_error_destroy(error);
    }
    return cm_err_set(err, CM_RETRY, "transaction commit: retries exhausted");
}

static enum cm_rc process_batch(struct proc_loop *l, const volatile sig_atomic_t *stop,
                                struct cm_err *err)
{
    int64_t t0 = cm_mono_us();
    size_t n = l->n_msgs;
    rd_kafka_error_t *error;
    bool open = false;
    enum cm_rc rc;

    proc_redis_discard(l->redis);
    rc = txn_init(l, err);
    if (rc == CM_OK) {
        error = rd_kafka_begin_transaction(l->producer);
        rc = error == NULL ? CM_OK : txn_fail(l, error, "begin", err);
        open = rc == CM_OK;
    }
    for (size_t i = 0; i < n && rc == CM_OK; i++) {
        rc = process_msg(l, l->msgs[i], err);
    }
    if (rc == CM_OK) {
        rc = txn_send_offsets(l, err);
    }
    if (rc == CM_OK) {
        rc = txn_commit(l, stop, err);
    }
    if (rc == CM_OK) {
        size_t writes = proc_redis_pending(l->redis);
        size_t sent = proc_redis_flush(l->redis); /* replies are read during the next batch */

        cm_metric_observe(m_batch_size, (double)n);
        cm_metric_observe(m_batch_seconds, (double)(cm_mono_us() - t0) / 1e6);
        cm_log_debug("batch.committed", "messages=%zu redis_writes=%zu redis_sent=%zu", n,
                     writes, sent);
        l->backoff_ms = BACKOFF_MIN_MS;
    } else {
        proc_redis_discard(l->redis);
        if (open && !l->fatal && !l->producer_broken) {
            txn_abort(l);
        }
        if (l->producer_broken && !l->fatal) {
            struct cm_err rerr = { .msg = "" };
            if (reset_producer(l, &rerr) == CM_FATAL) {
                *err = rerr;
            }
        }
        if (l->fatal && rc != CM_FATAL) {
            rc = cm_err_set(err, CM_FATAL, "%s", l->fatal_reason);
        } else if (!l->fatal) {
            rc = CM_RETRY;
        }
    }
    if (rc == CM_RETRY) {
        cm_log_warn("batch.retry", "messages=%zu reason=%s backoff_ms=%ld", n, err->msg,
                    l->backoff_ms);
        if (!rewind_batch(l)) {
            rc = cm_err_set(err, CM_FATAL, "could not rewind the batch");
        }
    }
    destroy_msgs(l);
    if (rc == CM_RETRY) {
        backoff(l, stop);
        rc = CM_OK;
    }
    return rc;
}

enum cm_rc proc_loop_run(struct proc_loop *l, const volatile sig_atomic_t *stop,
                         struct cm_err *err)
{
    enum cm_rc rc = CM_OK;
    rd_kafka_resp_err_t e;

    cm_log_info("processor.started", "group=%s batch_max=%ld batch_ms=%ld", l->cfg->group_id,
                l->cfg->batch_max, l->cfg->batch_ms);
    while (*stop == 0 && rc == CM_OK) {
        rd_kafka_poll(l->producer, 0);
        proc_users_check(l->users);
        collect(l, stop);
        if (l->n_msgs == 0) {
            proc_redis_wait(l->redis); /* idle: account for the last batch's writes now */
        }
        if (l->fatal) {
            rc = cm_err_set(err, CM_FATAL, "%s", l->fatal_reason);
        } else if (l->n_msgs > 0) {
            rc = process_batch(l, stop, err); /* finished even when *stop was set meanwhile */
        }
    }
    destroy_msgs(l);
    proc_redis_wait(l->redis);
    cm_log_info("processor.stopping", "rc=%s", cm_rc_str(rc));
    e = rd_kafka_consumer_close(l->consumer);
    l->closed = true;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_log_warn("kafka.close_failed", "err=%s", rd_kafka_err2name(e));
    }
    /* no producer when its replacement could not be made (reset_producer) */
    e = l->producer != NULL ? rd_kafka_flush(l->producer, 10000) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_log_warn("kafka.flush_failed", "err=%s", rd_kafka_err2name(e));
    }
    return rc;
}
