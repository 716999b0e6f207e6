/* One HTTP request, one phase machine (STYLE.md section 6): route, read the body under a ceiling,
 * authenticate, suspend the connection, produce, and answer from the Kafka delivery report (or
 * 503 when the record cannot be made durable in time).
 *
 * Ownership: a struct gw_request is created by gw_request_on_uri() and holds one reference for MHD
 * (dropped in gw_request_on_completed) plus one while librdkafka holds its encoded value (dropped
 * by gw_request_on_delivery); the last reference frees it.
 * Thread: the MHD callbacks run on MHD's worker threads; gw_request_on_delivery and
 * gw_request_on_tick on the ingest poll thread (or the shutdown thread). The waiting list and
 * each waiting request's reply are guarded by ctx->lock; whoever removes a request from the
 * waiting list resumes its connection, exactly once. */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include <pthread.h>
#include <stdatomic.h>

#include <librdkafka/rdkafka.h>
#include <microhttpd.h>

#include "cm/common.h"

struct gw_cfg;
struct gw_ingest;
struct gw_request;

/* Shared by every request of one server; owned by struct gw_server. */
struct gw_request_ctx {
    const struct gw_cfg *cfg;      /* borrowed, outlives the server */
    struct gw_ingest *ing;         /* set once before the daemon starts */
    pthread_mutex_t lock;          /* guards `waiting` and the replies of waiting requests */
    struct gw_request *waiting;    /* suspended, awaiting a delivery report or the deadline */
    atomic_long in_flight;         /* admitted POST webhooks not yet completed */
    atomic_bool draining;          /* shutting down: refuse new webhooks with 503 */
};

void gw_request_ctx_init(struct gw_request_ctx *ctx, const struct gw_cfg *cfg);
void gw_request_ctx_fini(struct gw_request_ctx *ctx);

/* MHD callbacks (cls = ctx): MHD_OPTION_URI_LOG_CALLBACK, the access handler and
 * MHD_OPTION_NOTIFY_COMPLETED. */
void *gw_request_on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
enum MHD_Result gw_request_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload, size_t *upload_size, void **con_cls);
void gw_request_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                             enum MHD_RequestTerminationCode toe);

/* Ingest callbacks: the delivery report of a request's record (opaque = the request), and the
 * periodic deadline check (arg = ctx) that answers 503 after DELIVERY_TIMEOUT_MS. */
void gw_request_on_delivery(void *opaque, rd_kafka_resp_err_t err);
void gw_request_on_tick(void *arg);

/* Shutdown: answer every waiting request with 503 and resume it. Returns how many. */
size_t gw_request_abort_waiting(struct gw_request_ctx *ctx);

/* /readyz: Kafka reachable and not draining. */
bool gw_request_ready(void *arg, const char **reason);

#endif
