/* librdkafka configuration shared by the binaries: bootstrap servers, library logs routed into our
 * JSON log (librdkafka messages name brokers, topics and errors, never message contents), and the
 * KAFKA_FOO_BAR=value passthrough (foo.bar; "__" stands for a literal "_"), like kcat -X. */
#include "cm/kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cm/log.h"

extern char **environ;

static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
    if (level <= 3) {
        cm_log_error("kafka.log", "fac=%s msg=%s", fac, buf);
    } else if (level == 4) {
        cm_log_warn("kafka.log", "fac=%s msg=%s", fac, buf);
    } else if (level <= 6) {
        cm_log_info("kafka.log", "fac=%s msg=%s", fac, buf);
    } else {
        cm_log_debug("kafka.log", "fac=%s msg=%s", fac, buf);
    }
}

enum cm_rc cm_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                        struct cm_err *err)
{
    char errstr[256];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        return cm_err_set(err, CM_INVALID, "kafka property %s: %s", name, errstr);
    }
    return CM_OK;
}

/* KAFKA_MESSAGE_TIMEOUT_MS -> message.timeout.ms; KAFKA_FOO__BAR -> foo_bar. */
static void env_to_property(const char *env, char *out, size_t cap)
{
    size_t o = 0;

    for (const char *p = env + strlen("KAFKA_"); *p != '\0' && o + 1 < cap; p++) {
        if (p[0] == '_' && p[1] == '_') {
            out[o++] = '_';
            p++;
        } else if (*p == '_') {
            out[o++] = '.';
        } else {
            out[o++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        }
    }
    out[o] = '\0';
}

/* The variable of property `prop` (linger.ms -> KAFKA_LINGER_MS, a_b -> KAFKA_A__B): the inverse
 * of env_to_property(). */
static void property_to_env(const char *prop, char *out, size_t cap)
{
    size_t o = strlen("KAFKA_");

    memcpy(out, "KAFKA_", o);
    for (const char *p = prop; *p != '\0' && o + 2 < cap; p++) {
        if (*p == '.') {
            out[o++] = '_';
        } else if (*p == '_') {
            out[o++] = '_';
            out[o++] = '_';
        } else {
            out[o++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        }
    }
    out[o] = '\0';
}

enum cm_rc cm_kafka_set_default(rd_kafka_conf_t *conf, const char *name, const char *value,
                                struct cm_err *err)
{
    char env[128];

    property_to_env(name, env, sizeof(env));
    if (getenv(env) != NULL) {
        return CM_OK;
    }
    return cm_kafka_set(conf, name, value, err);
}

rd_kafka_conf_t *cm_kafka_conf_new(const char *brokers, struct cm_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    if (cm_kafka_set(conf, "bootstrap.servers", brokers, err) != CM_OK ||
        cm_kafka_set(conf, "client.id", "auren", err) != CM_OK ||
        /* small produce and transaction requests go out at once instead of waiting behind
         * Nagle for the previous one's ACK (bench/: p50 and p99 of the durable ack) */
        cm_kafka_set(conf, "socket.nagle.disable", "true", err) != CM_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (char **e = environ; *e != NULL; e++) {
        char name[128];
        char prop[128];
        const char *eq = strchr(*e, '=');
        size_t n;

        if (strncmp(*e, "KAFKA_", 6) != 0 || eq == NULL) {
            continue;
        }
        n = (size_t)(eq - *e);
        if (n >= sizeof(name)) {
            continue;
        }
        memcpy(name, *e, n);
        name[n] = '\0';
        /* Handled by the binaries themselves: the broker list, and the per-instance
         * transactional id (cm_kafka_instance_id), which must not leak into other clients of the
         * same process (the fetcher's plain producer would become transactional). */
        if (strcmp(name, "KAFKA_BROKERS") == 0 || strcmp(name, "KAFKA_TRANSACTIONAL_ID") == 0) {
            continue;
        }
        env_to_property(name, prop, sizeof(prop));
        if (cm_kafka_set(conf, prop, eq + 1, err) != CM_OK) {
            /* Name the variable, not the value (it may be a SASL secret). */
            cm_err_set(err, CM_INVALID, "%s is not a valid librdkafka property (%s)", name, prop);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

enum cm_rc cm_kafka_classify(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return CM_OK;
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
        return CM_FATAL;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return CM_RETRY;
    default:
        return CM_INVALID;
    }
}

int cm_kafka_stats_brokers_up(const char *json, size_t len)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = root != NULL ? json_object_get(root, "brokers") : NULL;
    const char *name;
    json_t *b;
    int up = 0;

    if (!json_is_object(brokers)) {
        json_decref(root);
        return -1;
    }
    json_object_foreach(brokers, name, b) {
        const char *state = json_string_value(json_object_get(b, "state"));
        const char *source = json_string_value(json_object_get(b, "source"));

        if (state != NULL && strcmp(state, "UP") == 0 && source != NULL &&
            strcmp(source, "internal") != 0 && strcmp(source, "logical") != 0) {
            up++;
        }
    }
    json_decref(root);
    return up;
}

void cm_kafka_instance_id(const char *env, const char *prefix, const char *group, char *out,
                          size_t outsz)
{
    const char *v = getenv(env);
    char host[128] = "localhost";

    if (v != NULL && v[0] != '\0') {
        cm_strlcpy(out, v, outsz);
        return;
    }
    if (gethostname(host, sizeof(host)) != 0) {
        cm_strlcpy(host, "localhost", sizeof(host));
    }
    host[sizeof(host) - 1] = '\0';
    snprintf(out, outsz, "%s-%s-%s", prefix, group, host);
}

void cm_kafka_dead_letter(struct cm_dead_letter *d, const char *stage,
                          const rd_kafka_message_t *m, const char *reason, const char *detail,
                          int32_t attempts)
{
    /* The record API is not const-correct (the decoders own what they fill); nothing written
     * through these pointers by the encoder. */
    *d = (struct cm_dead_letter){
        .stage = (char *)stage,
        .reason = (char *)reason,
        .detail = (char *)detail,
        .source_topic = (char *)rd_kafka_topic_name(m->rkt),
        .source_partition = m->partition,
        .source_offset = m->offset,
        .key = m->key,
        .key_len = m->key != NULL ? m->key_len : 0,
        .value = m->payload,
        .value_len = m->payload != NULL ? m->len : 0,
        .failed_at_us = cm_now_us(),
        .attempts = attempts,
    };
}
