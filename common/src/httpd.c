/* Operations endpoints (/healthz, /readyz, /metrics) for the processor and persister, on a small
 * libmicrohttpd daemon with its own thread; the gateway reuses cm_httpd_answer_ops() from its
 * webhook daemon. Nothing here touches health data. */
#include "cm/httpd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/log.h"
#include "cm/metrics.h"

struct cm_httpd {
    struct MHD_Daemon *d;
    cm_ready_fn ready;
    void *arg;
    uint16_t port;
};

enum MHD_Result cm_httpd_reply_text(struct MHD_Connection *conn, unsigned status, const char *ctype,
                                    const char *body, unsigned retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

bool cm_httpd_answer_ops(struct MHD_Connection *conn, const char *method, const char *url,
                         cm_ready_fn ready, void *arg, enum MHD_Result *result)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    if (strcmp(url, "/healthz") == 0) {
        *result = get ? cm_httpd_reply_text(conn, 200, "text/plain", "ok\n", 0)
                      : cm_httpd_reply_text(conn, 405, "text/plain", "method not allowed\n", 0);
        return true;
    }
    if (strcmp(url, "/readyz") == 0) {
        const char *why = NULL;
        char body[160];
        if (!get) {
            *result = cm_httpd_reply_text(conn, 405, "text/plain", "method not allowed\n", 0);
        } else if (ready == NULL || ready(arg, &why)) {
            *result = cm_httpd_reply_text(conn, 200, "text/plain", "ready\n", 0);
        } else {
            snprintf(body, sizeof(body), "not ready: %s\n", why != NULL ? why : "starting");
            *result = cm_httpd_reply_text(conn, 503, "text/plain", body, 5);
        }
        return true;
    }
    if (strcmp(url, "/metrics") == 0) {
        struct cm_buf b;
        struct MHD_Response *r;

        if (!get) {
            *result = cm_httpd_reply_text(conn, 405, "text/plain", "method not allowed\n", 0);
            return true;
        }
        cm_buf_init(&b, 0);
        cm_metrics_render(&b);
        /* MHD frees the buffer with free() once sent. */
        r = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_FREE);
        if (r == NULL) {
            cm_buf_fini(&b);
            *result = MHD_NO;
            return true;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
        *result = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return true;
    }
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct cm_httpd *h = cls;
    enum MHD_Result ret = MHD_NO;

    /* Ignore request bodies: none of these routes takes one. */
    if (*con_cls == NULL) {
        *con_cls = h;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (!cm_httpd_answer_ops(conn, method, url, h->ready, h->arg, &ret)) {
        ret = cm_httpd_reply_text(conn, 404, "text/plain", "not found\n", 0);
    }
    return ret;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt,
                                                               va_list ap)
{
    char msg[256];

    /* MHD's messages describe connections and sockets, not payloads. */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    cm_log_debug("httpd.mhd", "%s", msg);
}

struct cm_httpd *cm_httpd_start(uint16_t port, cm_ready_fn ready, void *arg, struct cm_err *err)
{
    struct cm_httpd *h = cm_xcalloc(1, sizeof(*h));
    const union MHD_DaemonInfo *info;

    h->ready = ready;
    h->arg = arg;
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, port,
                            NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)10, MHD_OPTION_END);
    if (h->d == NULL) {
        free(h);
        cm_err_set(err, CM_FATAL, "cannot listen on port %u", (unsigned)port);
        return NULL;
    }
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : port;
    return h;
}

uint16_t cm_httpd_port(const struct cm_httpd *h)
{
    return h->port;
}

void cm_httpd_stop(struct cm_httpd *h)
{
    if (h == NULL) {
        return;
    }
    if (h->d != NULL) {
        MHD_stop_daemon(h->d);
    }
    free(h);
}
