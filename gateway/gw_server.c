/* Server lifecycle: start the producer and its poll thread, then the MHD daemon (epoll internal
 * threads, suspend/resume for the wait on the delivery report); shut down in the order that loses
 * nothing: quiesce, drain in-flight (bounded), flush, answer the rest with 503, stop. */
#include "gw_server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cm/log.h"
#include "gw_cfg.h"
#include "gw_ingest.h"
#include "gw_metrics.h"
#include "gw_request.h"
#include "gw_vendor.h"

#define HTTP_THREADS 4
#define FLUSH_TIMEOUT_MS 2000
#define DRAIN_GRACE_MS 2000   /* beyond DELIVERY_TIMEOUT_MS, for answers to be written */
#define REPLY_WAIT_MS 1000    /* after aborting the waiting ones, for their 503s to go out */

struct gw_server {
    struct gw_request_ctx ctx;
    struct gw_ingest *ing;
    struct MHD_Daemon *d;
    MHD_socket quiesced;
    uint16_t port;
    bool shut;
};

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];

    (void)cls;
    /* MHD's messages describe sockets and protocol errors, not payloads. */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    cm_log_warn("gateway.httpd", "%s", msg);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void log_vendors(const struct gw_cfg *cfg)
{
    char on[256] = "";
    char off[256] = "";

    for (size_t i = 0; i < gw_vendor_count(); i++) {
        const struct gw_vendor *v = gw_vendor_at(i);
        char *dst = gw_vendor_enabled(v, cfg) ? on : off;
        size_t n = strlen(dst);
        snprintf(dst + n, 256 - n, "%s%s", n > 0 ? "," : "", v->name);
    }
    cm_log_info("gateway.vendors", "enabled=%s disabled=%s", on[0] ? on : "-",
                off[0] ? off : "-");
}

struct gw_server *gw_server_new(const struct gw_cfg *cfg, const char *const *kafka_props,
                                struct cm_err *err)
{
    struct gw_server *srv = cm_xcalloc(1, sizeof(*srv));
    const union MHD_DaemonInfo *info;

    gw_metrics_init();
    cm_metric_set(gw_metrics.in_flight_limit, (double)cfg->max_in_flight);
    gw_request_ctx_init(&srv->ctx, cfg);
    srv->quiesced = MHD_INVALID_SOCKET;
    srv->ing = gw_ingest_new(cfg, kafka_props, gw_request_on_delivery, gw_request_on_tick,
                             &srv->ctx, err);
    if (srv->ing == NULL) {
        goto fail;
    }
    srv->ctx.ing = srv->ing;
    srv->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
        (uint16_t)cfg->http_port, NULL, NULL, gw_request_on_access, &srv->ctx,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first, so MHD logs nothing itself */
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)HTTP_THREADS,
        MHD_OPTION_URI_LOG_CALLBACK, gw_request_on_uri, &srv->ctx,
        MHD_OPTION_NOTIFY_COMPLETED, gw_request_on_completed, &srv->ctx,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->http_connection_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->http_max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)cfg->http_per_ip_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->http_max_header_bytes,
        MHD_OPTION_END);
    if (srv->d == NULL) {
        cm_err_set(err, CM_FATAL, "cannot listen on HTTP_PORT=%ld", cfg->http_port);
        goto fail;
    }
    info = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info != NULL ? info->port : (uint16_t)cfg->http_port;
    cm_log_info("gateway.listening", "port=%u", (unsigned)srv->port);
    log_vendors(cfg);
    return srv;
fail:
    gw_server_free(srv);
    return NULL;
}

uint16_t gw_server_port(const struct gw_server *srv)
{
    return srv->port;
}

bool gw_server_failed(struct gw_server *srv)
{
    return gw_ingest_failed(srv->ing);
}

rd_kafka_t *gw_server_kafka(struct gw_server *srv)
{
    return gw_ingest_handle(srv->ing);
}

static void wait_in_flight(struct gw_request_ctx *ctx, long budget_ms)
{
    for (long waited = 0; atomic_load(&ctx->in_flight) > 0 && waited < budget_ms; waited += 10) {
        sleep_ms(10);
    }
}

void gw_server_shutdown(struct gw_server *srv)
{
    size_t aborted = 0;
    int left = 0;

    if (srv == NULL || srv->shut) {
        return;
    }
    srv->shut = true;
    atomic_store(&srv->ctx.draining, true);
    if (srv->d != NULL) {
        srv->quiesced = MHD_quiesce_daemon(srv->d);
        cm_log_info("gateway.draining", "in_flight=%ld", atomic_load(&srv->ctx.in_flight));
        wait_in_flight(&srv->ctx, srv->ctx.cfg->delivery_timeout_ms + DRAIN_GRACE_MS);
    }
    if (srv->ing != NULL) {
        gw_ingest_stop_poller(srv->ing);
        left = gw_ingest_flush(srv->ing, FLUSH_TIMEOUT_MS);
        gw_ingest_purge(srv->ing); /* with a spool, purged records are spooled and answered */
        aborted = gw_request_abort_waiting(&srv->ctx);
    }
    if (srv->d != NULL) {
        wait_in_flight(&srv->ctx, REPLY_WAIT_MS);
        MHD_stop_daemon(srv->d);
        srv->d = NULL;
    }
    if (srv->quiesced != MHD_INVALID_SOCKET) {
        close(srv->quiesced);
        srv->quiesced = MHD_INVALID_SOCKET;
    }
    cm_log_info("gateway.stopped", "unflushed=%d aborted=%zu", left, aborted);
}

void gw_server_free(struct gw_server *srv)
{
    if (srv == NULL) {
        return;
    }
    gw_server_shutdown(srv);
    gw_ingest_free(srv->ing);
    gw_request_ctx_fini(&srv->ctx);
    free(srv);
}
