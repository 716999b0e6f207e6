/* The gateway server: the Kafka producer and the libmicrohttpd daemon (epoll, a small thread
 * pool, suspend/resume) serving the webhook routes and /healthz, /readyz, /metrics.
 * main() is config, gw_server_new, wait for a signal, gw_server_shutdown, gw_server_free; tests
 * start the same server on port 0 against librdkafka's mock cluster.
 * Ownership: gw_server_new returns new and borrows `cfg` (it must outlive the server).
 * Thread: call everything from one controlling thread. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <librdkafka/rdkafka.h>

#include "cm/common.h"

struct gw_cfg;
struct gw_server;

/* kafka_props: optional NULL-terminated name/value pairs applied to the producer last (tests).
 * Logs "gateway.listening port=N" and the enabled vendors. NULL with err on failure. */
struct gw_server *gw_server_new(const struct gw_cfg *cfg, const char *const *kafka_props,
                                struct cm_err *err);
uint16_t gw_server_port(const struct gw_server *srv);
/* true after a fatal producer error: the process should shut down and exit non-zero. */
bool gw_server_failed(struct gw_server *srv);
/* Stop accepting, wait (bounded) for in-flight webhooks, flush Kafka, answer what still waits
 * with 503, stop the daemon. Idempotent. */
void gw_server_shutdown(struct gw_server *srv);
/* The producer (tests reach the mock cluster through it). */
rd_kafka_t *gw_server_kafka(struct gw_server *srv);
void gw_server_free(struct gw_server *srv); /* NULL-safe; shuts down first if needed */

#endif
