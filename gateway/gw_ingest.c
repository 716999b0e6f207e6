/* librdkafka producer for biometric.raw.v1, backed by the durable spool (gw_spool.h). Messages are
 * produced without copying (the request owns the encoded value until its delivery report) and
 * never flushed per request; a dedicated thread runs rd_kafka_poll() so delivery reports resume
 * suspended HTTP requests promptly. With a spool, a record goes to the spool instead of Kafka
 * when no broker is up or older records still wait there (so the accepted order is kept), when
 * the produce queue refuses it, or when its delivery fails (any rd_kafka_message_status: what may
 * have been persisted is replayed anyway, the pipeline is idempotent on event_id); the request
 * is answered from the spool's fsync. message.timeout.ms is then shorter than
 * DELIVERY_TIMEOUT_MS, leaving time for that fallback before the request's deadline.
 * Readiness comes from the statistics callback (brokers in state UP), so /readyz never blocks
 * on the network. Library logs go through cm_log (cm_kafka_conf_new). */
#include "gw_ingest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/kafka.h"
#include "cm/log.h"
#include "gw_cfg.h"
#include "gw_metrics.h"
#include "gw_spool.h"

#define RECORD_OVERHEAD_MAX 65536 /* RawWebhook fields around the body: ids, path, headers */
#define STATS_INTERVAL_MS "1000"
#define SPOOL_MARGIN_MS 1000 /* of DELIVERY_TIMEOUT_MS kept for the spool fallback */
#define SPOOL_SYNC_MS 5000   /* shutdown: longest wait for the last spool writes */

struct gw_ingest {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    gw_delivery_fn on_delivery;
    gw_tick_fn on_tick;
    void *tick_arg;
    pthread_t poller;
    bool poller_running;
    atomic_bool stop;
    atomic_int brokers_up; /* -1 until the first statistics arrive */
    atomic_bool fatal;
    struct gw_spool *spool;  /* NULL when SPOOL_DIR is empty */
    char replay_tag;         /* its address marks the replayer's messages */
};

/* Permanent delivery errors: the record itself is refused, replaying it cannot help. */
static bool permanent_error(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return true;
    default:
        return false;
    }
}

/* A request's record went to the spool: answer it from the fsync. */
struct spooled {
    struct gw_ingest *ing;
    void *opaque;
};

static void on_spooled(void *arg, bool durable)
{
    struct spooled *sp = arg;

    sp->ing->on_delivery(sp->opaque, durable ? RD_KAFKA_RESP_ERR_NO_ERROR
                                             : RD_KAFKA_RESP_ERR__FAIL);
    free(sp);
}

/* CM_OK: the spool owns the answer (on_delivery follows from the writer thread). */
static enum cm_rc spool_record(struct gw_ingest *ing, const char *key, const void *value,
                               size_t len, void *opaque, struct cm_err *err)
{
    struct spooled *sp = cm_xmalloc(sizeof(*sp));
    enum cm_rc rc;

    sp->ing = ing;
    sp->opaque = opaque;
    rc = gw_spool_append(ing->spool, key, value, len, on_spooled, sp, err);
    if (rc != CM_OK) {
        free(sp);
    }
    return rc;
}

static void on_delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    struct gw_ingest *ing = opaque;
    rd_kafka_msg_status_t status;
    char key[256];
    struct cm_err err = {{0}};

    (void)rk;
    if (msg->_private == &ing->replay_tag) {
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cm_metric_inc(gw_metrics.produce_errors, "replay_failed");
        }
        gw_spool_replay_report(ing->spool, msg->err == RD_KAFKA_RESP_ERR_NO_ERROR);
        return;
    }
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ing->on_delivery(msg->_private, msg->err);
        return;
    }
    cm_metric_inc(gw_metrics.produce_errors, msg->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
                                                 ? "delivery_timeout"
                                                 : "delivery_failed");
    status = rd_kafka_message_status(msg);
    cm_metric_inc(gw_metrics.delivery_status, status == RD_KAFKA_MSG_STATUS_NOT_PERSISTED
                                                  ? "not_persisted"
                                                  : status == RD_KAFKA_MSG_STATUS_PERSISTED
                                                        ? "persisted"
                                                        : "possibly_persisted");
    cm_log_warn("kafka.delivery_failed", "topic=%s err=%s status=%d", CM_TOPIC_RAW,
                rd_kafka_err2name(msg->err), (int)status);
    if (ing->spool != NULL && !permanent_error(msg->err) && msg->key_len < sizeof(key)) {
        /* The value is still the request's (borrowed until on_delivery); the spool copies it. */
        memcpy(key, msg->key, msg->key_len);
        key[msg->key_len] = '\0';
        if (spool_record(ing, key, msg->payload, msg->len, msg->_private, &err) == CM_OK) {
            return;
        }
        cm_log_warn("spool.append_refused", "reason=%s", err.msg);
    }
    ing->on_delivery(msg->_private, msg->err);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct gw_ingest *ing = opaque;
    char fatal_reason[256];

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal_reason, sizeof(fatal_reason));
        atomic_store(&ing->fatal, true);
        cm_log_error("kafka.fatal", "err=%s reason=%s", rd_kafka_err2name(orig), fatal_reason);
        return;
    }
    /* librdkafka reasons name brokers and error codes, never message contents. */
    cm_log_warn("kafka.error", "err=%s reason=%s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
                reason);
}

/* Count brokers in state UP (bootstrap and learned; not the internal/logical ones). */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    struct gw_ingest *ing = opaque;
    int up = cm_kafka_stats_brokers_up(json, json_len);

    (void)rk;
    if (up >= 0) {
        atomic_store(&ing->brokers_up, up);
        cm_metric_set(gw_metrics.kafka_brokers_up, (double)up);
    }
    return 0; /* librdkafka frees json */
}

static void *poll_main(void *arg)
{
    struct gw_ingest *ing = arg;

    while (!atomic_load(&ing->stop)) {
        rd_kafka_poll(ing->rk, GW_INGEST_TICK_MS);
        if (ing->on_tick != NULL) {
            ing->on_tick(ing->tick_arg);
        }
    }
    return NULL;
}

/* With a spool the broker gets DELIVERY_TIMEOUT_MS minus a margin (at least half of it): a
 * record Kafka could not take in time still reaches the spool before the request's deadline. */
static long spool_message_timeout(long delivery_timeout_ms)
{
    long t = delivery_timeout_ms - SPOOL_MARGIN_MS;

    return t < delivery_timeout_ms / 2 ? delivery_timeout_ms / 2 : t;
}

static rd_kafka_conf_t *build_conf(const struct gw_cfg *cfg, const char *const *props,
                                   struct gw_ingest *ing, struct cm_err *err)
{
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg->brokers, err);
    char timeout[32];
    char max_msg[32];

    if (conf == NULL) {
        return NULL;
    }
    snprintf(timeout, sizeof(timeout), "%ld",
             gw_cfg_is_set(cfg->spool_dir) ? spool_message_timeout(cfg->delivery_timeout_ms)
                                           : cfg->delivery_timeout_ms);
    /* A body of MAX_BODY_BYTES plus the record around it must fit (librdkafka's default of
     * 1000000 refused bodies near the 1m default: found by tests/e2e/test_bad_input.py). */
    snprintf(max_msg, sizeof(max_msg), "%zu", cfg->max_body + RECORD_OVERHEAD_MAX);
    /* Overridable: batching and compression. Fixed: durability, the single-report guarantee
     * and the statistics readiness depends on. linger.ms 1: a millisecond of requests share one
     * produce request; with 0 each went alone, and the broker's and the producer thread's cost
     * per request capped the gateway (cap 40, back to back on the shared bench box: 3.3-3.6 k/s
     * with 0, 4.4-5.9 k/s with 1, 3.1-4.2 k/s with 2, 4.0 k/s with 5; Kafka's CPU per request
     * halved). */
    if (cm_kafka_set_default(conf, "linger.ms", "1", err) != CM_OK ||
        cm_kafka_set_default(conf, "compression.type", "lz4", err) != CM_OK ||
        cm_kafka_set(conf, "client.id", "auren-gateway", err) != CM_OK ||
        cm_kafka_set(conf, "enable.idempotence", "true", err) != CM_OK ||
        cm_kafka_set(conf, "acks", "all", err) != CM_OK ||
        cm_kafka_set(conf, "message.timeout.ms", timeout, err) != CM_OK ||
        cm_kafka_set_default(conf, "message.max.bytes", max_msg, err) != CM_OK ||
        cm_kafka_set(conf, "statistics.interval.ms", STATS_INTERVAL_MS, err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (size_t i = 0; props != NULL && props[i] != NULL && props[i + 1] != NULL; i += 2) {
        if (cm_kafka_set(conf, props[i], props[i + 1], err) != CM_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery_report);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_opaque(conf, ing);
    return conf;
}

/* Replayer: produce one spooled record (copied: the segment buffer is the replayer's). */
static enum cm_rc replay_produce(void *arg, const char *key, size_t keylen, const void *value,
                                 size_t len)
{
    struct gw_ingest *ing = arg;
    rd_kafka_resp_err_t e;

    if (atomic_load(&ing->fatal)) {
        return CM_FATAL;
    }
    e = rd_kafka_producev(ing->rk, RD_KAFKA_V_RKT(ing->rkt), RD_KAFKA_V_KEY(key, keylen),
                          RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_OPAQUE(&ing->replay_tag), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        return CM_OK;
    }
    return e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? CM_RETRY : CM_FATAL;
}

static bool replay_ready(void *arg)
{
    struct gw_ingest *ing = arg;

    return atomic_load(&ing->brokers_up) > 0 && !atomic_load(&ing->fatal);
}

struct gw_ingest *gw_ingest_new(const struct gw_cfg *cfg, const char *const *props,
                                gw_delivery_fn on_delivery, gw_tick_fn on_tick, void *tick_arg,
                                struct cm_err *err)
{
    struct gw_ingest *ing = cm_xcalloc(1, sizeof(*ing));
    rd_kafka_conf_t *conf;
    char errstr[512];

    ing->on_delivery = on_delivery;
    ing->on_tick = on_tick;
    ing->tick_arg = tick_arg;
    atomic_init(&ing->stop, false);
    atomic_init(&ing->brokers_up, -1);
    atomic_init(&ing->fatal, false);
    conf = build_conf(cfg, props, ing, err);
    if (conf == NULL) {
        goto fail;
    }
    ing->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (ing->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        cm_err_set(err, CM_INVALID, "kafka producer: %s", errstr);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    ing->rkt = rd_kafka_topic_new(ing->rk, CM_TOPIC_RAW, NULL);
    if (ing->rkt == NULL) {
        cm_err_set(err, CM_INVALID, "kafka topic %s: %s", CM_TOPIC_RAW,
                   rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (gw_cfg_is_set(cfg->spool_dir)) {
        ing->spool = gw_spool_open(cfg->spool_dir, cfg->spool_max_bytes, err);
        if (ing->spool == NULL) {
            goto fail;
        }
        cm_metric_set(gw_metrics.spool_max_bytes, (double)cfg->spool_max_bytes);
    }
    if (pthread_create(&ing->poller, NULL, poll_main, ing) != 0) {
        cm_err_set(err, CM_FATAL, "cannot start the kafka poll thread");
        goto fail;
    }
    ing->poller_running = true;
    if (ing->spool != NULL &&
        gw_spool_start_replayer(ing->spool, replay_produce, replay_ready, ing, err) != CM_OK) {
        goto fail;
    }
    return ing;
fail:
    gw_ingest_free(ing);
    return NULL;
}

enum cm_rc gw_ingest_send(struct gw_ingest *ing, const char *key, const void *value, size_t len,
                          void *opaque, struct cm_err *err)
{
    rd_kafka_resp_err_t e;
    enum cm_rc rc;

    if (atomic_load(&ing->fatal)) {
        cm_metric_inc(gw_metrics.produce_errors, "producer_fatal");
        return cm_err_set(err, CM_FATAL, "producer_fatal");
    }
    /* No broker up (known from the statistics), or records still queued in the spool: the spool
     * answers now, and keeps the order in which records were accepted. */
    if (ing->spool != NULL &&
        (atomic_load(&ing->brokers_up) == 0 || gw_spool_backlog(ing->spool))) {
        return spool_record(ing, key, value, len, opaque, err);
    }
    e = rd_kafka_producev(ing->rk, RD_KAFKA_V_RKT(ing->rkt),
                          RD_KAFKA_V_KEY(key, strlen(key)),
                          RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        return CM_OK;
    }
    rc = cm_kafka_classify(e);
    if (ing->spool != NULL && !permanent_error(e) && rc != CM_FATAL) {
        cm_metric_inc(gw_metrics.produce_errors,
                      e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? "queue_full" : "produce_failed");
        return spool_record(ing, key, value, len, opaque, err);
    }
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        cm_metric_inc(gw_metrics.produce_errors, "queue_full");
        return cm_err_set(err, CM_RETRY, "queue_full");
    }
    cm_metric_inc(gw_metrics.produce_errors, "produce_failed");
    cm_log_warn("kafka.produce_failed", "topic=%s err=%s", CM_TOPIC_RAW, rd_kafka_err2name(e));
    return cm_err_set(err, rc == CM_FATAL ? CM_FATAL : CM_RETRY, "produce_failed");
}

bool gw_ingest_ready(struct gw_ingest *ing, const char **reason)
{
    int up = atomic_load(&ing->brokers_up);

    if (atomic_load(&ing->fatal)) {
        *reason = "kafka producer failed";
        return false;
    }
    if (up <= 0 && ing->spool != NULL && up == 0) {
        return true; /* accepting into the spool; /metrics shows its depth */
    }
    if (up <= 0) {
        *reason = up < 0 ? "kafka connecting" : "no kafka broker reachable";
        return false;
    }
    return true;
}

bool gw_ingest_failed(struct gw_ingest *ing)
{
    return atomic_load(&ing->fatal);
}

void gw_ingest_stop_poller(struct gw_ingest *ing)
{
    if (ing == NULL) {
        return;
    }
    gw_spool_stop_replayer(ing->spool);
    if (!ing->poller_running) {
        return;
    }
    atomic_store(&ing->stop, true);
    pthread_join(ing->poller, NULL);
    ing->poller_running = false;
}

int gw_ingest_flush(struct gw_ingest *ing, int timeout_ms)
{
    rd_kafka_flush(ing->rk, timeout_ms);
    return rd_kafka_outq_len(ing->rk);
}

void gw_ingest_purge(struct gw_ingest *ing)
{
    if (rd_kafka_outq_len(ing->rk) == 0) {
        gw_spool_sync(ing->spool, SPOOL_SYNC_MS);
        return;
    }
    rd_kafka_purge(ing->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    /* Serve the purge reports so every opaque is released exactly once; with a spool they are
     * appended there, and answered once the writer has synced them. */
    for (int i = 0; i < 50 && rd_kafka_outq_len(ing->rk) > 0; i++) {
        rd_kafka_poll(ing->rk, 20);
    }
    gw_spool_sync(ing->spool, SPOOL_SYNC_MS);
}

rd_kafka_t *gw_ingest_handle(struct gw_ingest *ing)
{
    return ing->rk;
}

void gw_ingest_free(struct gw_ingest *ing)
{
    if (ing == NULL) {
        return;
    }
    gw_ingest_stop_poller(ing);
    if (ing->rkt != NULL) {
        rd_kafka_topic_destroy(ing->rkt);
    }
    if (ing->rk != NULL) {
        rd_kafka_destroy(ing->rk);
    }
    gw_spool_close(ing->spool);
    free(ing);
}
