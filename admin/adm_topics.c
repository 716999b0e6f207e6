/* Creates the bridge's Kafka topics with librdkafka's admin API (CreateTopics). Idempotent:
 * TOPIC_ALREADY_EXISTS is success, and the existing partition count is read back from the
 * metadata so that a topic made smaller than asked is reported rather than silently kept.
 * One short-lived producer handle per run; nothing is produced. */
#include "adm.h"

#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cm/kafka.h"

static const char *const topics[] = { CM_TOPIC_RAW, CM_TOPIC_NORMALIZED, CM_TOPIC_FETCH,
                                      CM_TOPIC_DLQ, CM_TOPIC_FETCH_RETRY };

/* Partition count of an existing topic, or -1 when the metadata cannot say. */
static int partition_count(rd_kafka_t *rk, const char *name, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
    int n = -1;

    if (rkt == NULL) {
        return -1;
    }
    if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < md->topic_cnt; i++) {
            if (strcmp(md->topics[i].topic, name) == 0 &&
                md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                n = md->topics[i].partition_cnt;
            }
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

static enum cm_rc report(rd_kafka_t *rk, rd_kafka_event_t *ev,
                         const struct adm_topics_opts *o, FILE *out, struct cm_err *err)
{
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    const rd_kafka_topic_result_t **results;
    size_t cnt = 0;

    if (res == NULL) {
        return cm_err_set(err, CM_RETRY, "topics: unexpected admin event %s",
                          rd_kafka_event_name(ev));
    }
    results = rd_kafka_CreateTopics_result_topics(res, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        const char *name = rd_kafka_topic_result_name(results[i]);
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
        int have;

        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(out, "created %s (%d partitions, replication %d)\n", name, o->partitions,
                    o->replication);
        } else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            have = partition_count(rk, name, o->timeout_ms);
            fprintf(out, "exists  %s (%d partitions)\n", name, have);
            if (have >= 0 && have < o->partitions) {
                fprintf(stderr, "auren-admin: warning: %s has %d partitions, fewer than the "
                        "%d asked for; partitions are never added automatically\n", name, have,
                        o->partitions);
            }
        } else {
            return cm_err_set(err, cm_kafka_classify(e) == CM_RETRY ? CM_RETRY : CM_INVALID,
                              "topics: %s: %s", name, rd_kafka_err2name(e));
        }
    }
    if (cnt != CM_ARRAY_LEN(topics)) {
        return cm_err_set(err, CM_RETRY, "topics: %zu results for %zu topics", cnt,
                          CM_ARRAY_LEN(topics));
    }
    return CM_OK;
}

enum cm_rc adm_topics_create(const struct adm_topics_opts *o, FILE *out, struct cm_err *err)
{
    enum cm_rc rc = CM_OK;
    rd_kafka_NewTopic_t *nt[CM_ARRAY_LEN(topics)] = { 0 };
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_t *rk = NULL;
    char errstr[256];
    rd_kafka_conf_t *conf = cm_kafka_conf_new(o->brokers, err);

    if (conf == NULL) {
        return CM_INVALID;
    }
    if (cm_kafka_set(conf, "client.id", "auren-admin", err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return CM_INVALID;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return cm_err_set(err, CM_INVALID, "topics: cannot create client: %s", errstr);
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(topics); i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], o->partitions, o->replication, errstr,
                                      sizeof(errstr));
        if (nt[i] == NULL) {
            rc = cm_err_set(err, CM_INVALID, "topics: %s: %s", topics[i], errstr);
            goto out;
        }
    }
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (rd_kafka_AdminOptions_set_request_timeout(opts, o->timeout_ms, errstr, sizeof(errstr)) ||
        rd_kafka_AdminOptions_set_operation_timeout(opts, o->timeout_ms, errstr,
                                                    sizeof(errstr))) {
        rc = cm_err_set(err, CM_INVALID, "topics: timeout: %s", errstr);
        goto out;
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, CM_ARRAY_LEN(topics), opts, q);
    /* The request times out by itself; the extra second only covers delivering that result. */
    ev = rd_kafka_queue_poll(q, o->timeout_ms + 1000);
    if (ev == NULL) {
        rc = cm_err_set(err, CM_RETRY, "topics: no answer from %s within %d ms", o->brokers,
                        o->timeout_ms);
        goto out;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = cm_err_set(err, CM_RETRY, "topics: %s: %s",
                        rd_kafka_err2name(rd_kafka_event_error(ev)),
                        rd_kafka_event_error_string(ev));
        goto out;
    }
    rc = report(rk, ev, o, out, err);
out:
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    if (q != NULL) {
        rd_kafka_queue_destroy(q);
    }
    if (opts != NULL) {
        rd_kafka_AdminOptions_destroy(opts);
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(topics); i++) {
        if (nt[i] != NULL) {
            rd_kafka_NewTopic_destroy(nt[i]);
        }
    }
    rd_kafka_destroy(rk);
    return rc;
}
