/* The Kafka side of the gateway: one idempotent producer (acks=all) to biometric.raw.v1, a
 * dedicated poll thread that serves delivery reports, and broker readiness from librdkafka's
 * statistics. There is exactly one delivery report per accepted message because
 * message.timeout.ms equals DELIVERY_TIMEOUT_MS.
 * Ownership: gw_ingest_new returns new; gw_ingest_free (NULL-safe) destroys it.
 * Thread: gw_ingest_send / gw_ingest_ready from any thread; the callbacks run on the poll thread
 * (or on the thread calling gw_ingest_flush / gw_ingest_purge after gw_ingest_stop_poller). */
#ifndef GW_INGEST_H
#define GW_INGEST_H

#include <librdkafka/rdkafka.h>

#include "cm/common.h"

struct gw_cfg;
struct gw_ingest;

#define GW_INGEST_TICK_MS 20 /* longest gap between on_tick calls */

/* Delivery report of one message: `opaque` as given to gw_ingest_send, err NO_ERROR = durable. */
typedef void (*gw_delivery_fn)(void *opaque, rd_kafka_resp_err_t err);
/* Called on the poll thread at least every GW_INGEST_TICK_MS (deadline checks). */
typedef void (*gw_tick_fn)(void *arg);

/* props: optional NULL-terminated name/value pairs applied last (tests: test.mock.num.brokers).
 * Returns new (poll thread running), or NULL with err naming the failing property. */
struct gw_ingest *gw_ingest_new(const struct gw_cfg *cfg, const char *const *props,
                                gw_delivery_fn on_delivery, gw_tick_fn on_tick, void *tick_arg,
                                struct cm_err *err);

/* Enqueue one record. `value` is borrowed until the delivery report for `opaque` has been
 * delivered (no copy). Returns CM_OK (exactly one report will follow), CM_RETRY (queue full or
 * a transient error: no report will come) or CM_FATAL; err holds a short reason code. */
enum cm_rc gw_ingest_send(struct gw_ingest *ing, const char *key, const void *value, size_t len,
                          void *opaque, struct cm_err *err);

/* true when at least one broker connection is up and the producer has no fatal error. */
bool gw_ingest_ready(struct gw_ingest *ing, const char **reason);
/* true after a fatal producer error (the process should restart). */
bool gw_ingest_failed(struct gw_ingest *ing);

/* Shutdown steps, in this order: stop the poll thread; flush (serving reports on the calling
 * thread; returns the number of messages still outstanding); purge whatever is left (its reports
 * are served with a purge error). */
void gw_ingest_stop_poller(struct gw_ingest *ing);
int gw_ingest_flush(struct gw_ingest *ing, int timeout_ms);
void gw_ingest_purge(struct gw_ingest *ing);

/* The producer handle (tests reach the mock cluster through it). */
rd_kafka_t *gw_ingest_handle(struct gw_ingest *ing);

void gw_ingest_free(struct gw_ingest *ing);

#endif
