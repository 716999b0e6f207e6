/* bench-ceiling: the HTTP ceiling the gateway is compared with. A bare libmicrohttpd responder
 * with the gateway's thread model and options (epoll internal thread, a pool of 4, suspend/resume
 * allowed, the same connection limit and timeout; see gateway/gw_server.c): it reads each POST
 * body into a buffer, as the gateway does, and answers 200 {"status":"accepted"} with the
 * gateway's headers. No verification, no Kafka: what is left is the HTTP stack's own cost.
 * Usage: bench-ceiling PORT   (runs until SIGTERM/SIGINT) */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#define HTTP_THREADS 4
#define HTTP_CONNECTION_TIMEOUT_S 30
#define HTTP_CONNECTION_LIMIT 1024
#define BODY_MAX (1024 * 1024)

static const char reply_body[] = "{\"status\":\"accepted\"}";

struct ce_req {
    char *body;
    size_t len;
    size_t cap;
    bool too_large;
};

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct ce_req *req = *con_cls;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    if (req == NULL) {
        req = calloc(1, sizeof(*req));
        if (req == NULL) {
            return MHD_NO;
        }
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (req->len + n > BODY_MAX) {
            req->too_large = true;
            return MHD_YES;
        }
        if (req->len + n > req->cap) {
            size_t cap = req->cap ? req->cap * 2 : 1024;
            char *p;
            while (cap < req->len + n) {
                cap *= 2;
            }
            p = realloc(req->body, cap);
            if (p == NULL) {
                return MHD_NO;
            }
            req->body = p;
            req->cap = cap;
        }
        memcpy(req->body + req->len, upload, n);
        req->len += n;
        return MHD_YES;
    }
    resp = MHD_create_response_from_buffer(sizeof(reply_body) - 1, (void *)reply_body,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    ret = MHD_queue_response(conn, req->too_large ? 413 : 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ce_req *req = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (req != NULL) {
        free(req->body);
        free(req);
        *con_cls = NULL;
    }
}

int main(int argc, char **argv)
{
    struct MHD_Daemon *d;
    sigset_t stop;
    int sig = 0;
    long port;

    if (argc != 2 || (port = strtol(argv[1], NULL, 10)) <= 0 || port > 65535) {
        fprintf(stderr, "usage: bench-ceiling PORT\n");
        return 2;
    }
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME,
                         (uint16_t)port, NULL, NULL, on_access, NULL,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)HTTP_THREADS,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_CONNECTION_TIMEOUT_S,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTION_LIMIT,
                         MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "bench-ceiling: cannot listen on port %ld\n", port);
        return 1;
    }
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    return 0;
}
