/* librdkafka helpers shared by the three binaries.
 * - cm_kafka_conf_new(): bootstrap servers, our log callback (library logs go through cm_log),
 *   and every environment variable KAFKA_FOO_BAR (except KAFKA_BROKERS and
 *   KAFKA_TRANSACTIONAL_ID) passed as foo.bar ("__" stands for "_"), like kcat -X.
 * Thread: any. */
#ifndef CM_KAFKA_H
#define CM_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "cm/common.h"
#include "cm/records.h"

#define CM_TOPIC_RAW "biometric.raw.v1"
#define CM_TOPIC_NORMALIZED "biometric.normalized.v1"
#define CM_TOPIC_FETCH "biometric.fetch.v1"
#define CM_TOPIC_DLQ "biometric.dlq.v1"
/* Fetch jobs waiting for their not_before time (backoff, rate limit, open circuit breaker). */
#define CM_TOPIC_FETCH_RETRY "biometric.fetch.retry.v1"

/* Returns new conf (caller owns until rd_kafka_new succeeds), or NULL with err naming the property. */
rd_kafka_conf_t *cm_kafka_conf_new(const char *brokers, struct cm_err *err);
/* Set one property; CM_INVALID with err naming it. */
enum cm_rc cm_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, struct cm_err *err);
/* A tunable default: set `name` unless the operator chose a value through its KAFKA_* variable
 * (which cm_kafka_conf_new() applied). For batching, compression and sizes, never for settings
 * the binary's guarantees rest on (those use cm_kafka_set() and win over KAFKA_*). */
enum cm_rc cm_kafka_set_default(rd_kafka_conf_t *conf, const char *name, const char *value,
                                struct cm_err *err);

/* Map a librdkafka error to our classes: fatal -> CM_FATAL, retriable/queue full/transport -> CM_RETRY,
 * else CM_INVALID. */
enum cm_rc cm_kafka_classify(rd_kafka_resp_err_t e);

/* Brokers in state UP in a librdkafka statistics JSON (bootstrap and learned brokers; not the
 * internal or logical ones), or -1 when the JSON has no "brokers" object. Readiness from here
 * recovers by itself once the brokers are back, without waiting for a message or a rebalance. */
int cm_kafka_stats_brokers_up(const char *json, size_t len);
/* An id that is stable across restarts of one instance and distinct between hosts, for
 * transactional.id and group.instance.id: the environment variable `env` when set and not empty,
 * else "<prefix>-<group>-<hostname>". */
void cm_kafka_instance_id(const char *env, const char *prefix, const char *group, char *out,
                          size_t outsz);
/* Fill d for consumed message m failing at `stage` now: its coordinates, key and value (borrowed
 * from m: encode d before m is destroyed). reason and detail must be payload-free. */
void cm_kafka_dead_letter(struct cm_dead_letter *d, const char *stage,
                          const rd_kafka_message_t *m, const char *reason, const char *detail,
                          int32_t attempts);

#endif
