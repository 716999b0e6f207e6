/* The webhook request phase machine (see gw_request.h). Order of checks, cheapest and least
 * revealing first: route (404), method (405), draining (503), vendor configured (404), declared
 * size (413), capacity (503 + Retry-After); then, once the body is read: size (413), Polar PING
 * (200), authentication (401), content type (415), Google verification (201); then the record is
 * produced and the answer waits for its delivery report. Response bodies are short reason codes
 * and never echo the payload; logs carry the request id, vendor, status, reason and sizes only. */
#include "gw_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/httpd.h"
#include "cm/log.h"
#include "cm/records.h"
#include "gw_cfg.h"
#include "gw_handshake.h"
#include "gw_ingest.h"
#include "gw_metrics.h"
#include "gw_vendor.h"

#define WEBHOOKS_PREFIX "/webhooks/"
#define RETRY_AFTER_BUSY 1     /* seconds: at capacity */
#define RETRY_AFTER_KAFKA 5    /* seconds: nothing durable can take the record */
#define DISCARD_FACTOR 4       /* read at most this many times MAX_BODY_BYTES before closing */
#define QUERY_MAX 4096

enum gw_phase {
    GW_ROUTE,     /* first call: headers known, body not yet read */
    GW_READ_BODY, /* consuming upload chunks */
    GW_PRODUCE,   /* body complete and accepted: suspend, produce */
    GW_WAIT_ACK,  /* resumed by the delivery report, the deadline or shutdown */
    GW_REPLY,     /* queue the reply */
    GW_DONE,      /* reply queued (or answered by the ops routes) */
};

struct gw_request {
    struct gw_request_ctx *ctx;
    struct MHD_Connection *conn;
    atomic_int refs;
    enum gw_phase phase;
    char id[33];               /* request id = RawWebhook event id */
    int64_t started_us;        /* monotonic */
    int64_t received_at_us;    /* wall clock */
    char *query;               /* raw query string, or NULL */
    const struct gw_vendor *vendor;
    const char *label;         /* vendor label for metrics/logs; NULL for the ops routes */
    const char *method;        /* one of a fixed set, never client text */
    bool admitted;             /* counted in ctx->in_flight */
    bool too_large;
    size_t discarded;
    size_t body_len;           /* bytes received (for logs and metrics) */
    struct cm_buf body;
    struct cm_buf value;       /* encoded RawWebhook; borrowed by librdkafka until the report */
    struct gw_reply reply;
    unsigned retry_after;
    const char *allow;
    /* Waiting list (ctx->lock). */
    bool waiting;
    int64_t deadline_us;       /* monotonic */
    struct gw_request *prev;
    struct gw_request *next;
    struct gw_request *expired_next;
};

void gw_request_ctx_init(struct gw_request_ctx *ctx, const struct gw_cfg *cfg)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->cfg = cfg;
    pthread_mutex_init(&ctx->lock, NULL);
    atomic_init(&ctx->in_flight, 0);
    atomic_init(&ctx->draining, false);
}

void gw_request_ctx_fini(struct gw_request_ctx *ctx)
{
    pthread_mutex_destroy(&ctx->lock);
}

static void request_unref(struct gw_request *req)
{
    if (atomic_fetch_sub(&req->refs, 1) != 1) {
        return;
    }
    cm_buf_fini(&req->body);
    cm_buf_fini(&req->value);
    free(req->query);
    free(req);
}

static const char *lookup_header(void *arg, const char *name)
{
    return MHD_lookup_connection_value(arg, MHD_HEADER_KIND, name);
}

static const char *lookup_query(void *arg, const char *name)
{
    return MHD_lookup_connection_value(arg, MHD_GET_ARGUMENT_KIND, name);
}

static const char *method_name(const char *m)
{
    static const char *const known[] = {"POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"};

    for (size_t i = 0; i < CM_ARRAY_LEN(known); i++) {
        if (strcmp(m, known[i]) == 0) {
            return known[i];
        }
    }
    return "other";
}

static void set_error(struct gw_request *req, unsigned status, const char *reason)
{
    gw_handshake_error(&req->reply, status, reason);
    req->phase = GW_REPLY;
}

static void set_ok(struct gw_request *req, unsigned status, const char *reason)
{
    req->reply.status = status;
    req->reply.reason = reason;
    if (status == 204) {
        req->reply.ctype = "text/plain";
        req->reply.body[0] = '\0';
    } else {
        req->reply.ctype = "application/json";
        snprintf(req->reply.body, sizeof(req->reply.body), "{\"status\":\"%s\"}", reason);
    }
    req->phase = GW_REPLY;
}

void *gw_request_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct gw_request *req = cm_xcalloc(1, sizeof(*req));
    const char *q = strchr(uri, '?');

    req->ctx = cls;
    req->conn = conn;
    atomic_init(&req->refs, 1);
    req->phase = GW_ROUTE;
    cm_random_id(req->id);
    req->started_us = cm_mono_us();
    req->received_at_us = cm_now_us();
    req->method = "other";
    if (q != NULL && q[1] != '\0' && strlen(q + 1) <= QUERY_MAX) {
        req->query = cm_xstrdup(q + 1);
    }
    cm_buf_init(&req->body, 0);
    cm_buf_init(&req->value, 0);
    return req;
}

/* Headers known: decide 404/405/413/503, answer handshakes, or admit the webhook. */
static void route(struct gw_request *req, const char *url, const char *method)
{
    const struct gw_cfg *cfg = req->ctx->cfg;
    struct gw_route rt;

    gw_route_decide(cfg, url, method, &rt);
    req->vendor = rt.vendor;
    req->label = rt.vendor != NULL ? rt.vendor->name : "unknown";
    req->allow = rt.allow;
    if (rt.kind == GW_ROUTE_REJECT || rt.vendor == NULL) {
        set_error(req, rt.kind == GW_ROUTE_REJECT ? rt.status : 404,
                  rt.kind == GW_ROUTE_REJECT ? rt.reason : "not_found");
        return;
    }
    if (rt.kind == GW_ROUTE_HANDSHAKE) {
        gw_handshake_answer(rt.vendor->handshake, cfg, lookup_query, req->conn, &req->reply);
        req->phase = GW_REPLY;
        return;
    }
    /* Raw bytes beyond ASCII are not legal in a URL, and the record's query must be UTF-8. */
    if (req->query != NULL && !cm_utf8_valid(req->query, strlen(req->query))) {
        set_error(req, 400, "bad_query");
        return;
    }
    if (atomic_load(&req->ctx->draining)) {
        req->retry_after = RETRY_AFTER_BUSY;
        set_error(req, 503, "shutting_down");
        return;
    }
    /* Polar's creation PING arrives before the secret exists; its check waits for the body. */
    if (!rt.enabled && rt.vendor->control != GW_CONTROL_POLAR_PING) {
        set_error(req, 404, "vendor_not_configured");
        return;
    }
    if (gw_vendor_declared_too_large(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                                 MHD_HTTP_HEADER_CONTENT_LENGTH),
                                     cfg->max_body)) {
        set_error(req, 413, "body_too_large");
        return;
    }
    if (atomic_fetch_add(&req->ctx->in_flight, 1) >= req->ctx->cfg->max_in_flight) {
        atomic_fetch_sub(&req->ctx->in_flight, 1);
        req->retry_after = RETRY_AFTER_BUSY;
        set_error(req, 503, "at_capacity");
        return;
    }
    req->admitted = true;
    gw_metrics_in_flight_add(1);
    cm_buf_init(&req->body, cfg->max_body);
    req->phase = GW_READ_BODY;
}

/* Consume one upload chunk; past the ceiling keep draining (bounded) so the 413 can be sent. */
static enum MHD_Result read_chunk(struct gw_request *req, const char *upload, size_t *upload_size)
{
    size_t n = *upload_size;

    *upload_size = 0;
    if (!req->too_large && cm_buf_append(&req->body, upload, n) != CM_OK) {
        req->too_large = true;
        req->discarded = req->body.len;
        cm_buf_fini(&req->body);
    }
    if (req->too_large) {
        req->discarded += n;
        if (req->discarded / DISCARD_FACTOR > req->ctx->cfg->max_body) {
            cm_log_warn("gateway.body_abandoned", "req=%s vendor=%s bytes=%zu", req->id,
                        req->label, req->discarded);
            return MHD_NO; /* close the connection rather than read without end */
        }
    }
    return MHD_YES;
}

/* Body complete: decide 413/200 ping/401/415/201 or go on to produce. */
static void validate(struct gw_request *req)
{
    const struct gw_cfg *cfg = req->ctx->cfg;
    const struct gw_vendor *v = req->vendor;
    struct gw_verify_req vr = {
        .header = lookup_header,
        .header_arg = req->conn,
        .body = req->body.data,
        .body_len = req->body.len,
        .now_ms = cm_now_ms(),
        .tolerance_s = cfg->tolerance_s,
    };
    enum gw_verdict verdict;

    if (req->too_large) {
        set_error(req, 413, "body_too_large");
        return;
    }
    req->body_len = req->body.len;
    cm_metric_observe(gw_metrics.body_bytes, (double)req->body.len, req->label);
    verdict = gw_vendor_enabled(v, cfg) ? v->verify(cfg, &vr) : GW_VERIFY_UNCONFIGURED;
    if (v->control == GW_CONTROL_POLAR_PING &&
        gw_vendor_is_control(v->control, req->body.data, req->body.len)) {
        /* Answered whether or not the signature verified: the PING that creates the webhook
         * is signed with a secret Polar only reveals in the creation response. Not enqueued. */
        cm_log_info("gateway.polar_ping", "req=%s verified=%s", req->id,
                    verdict == GW_VERIFY_OK ? "yes" : "no");
        set_ok(req, 200, "ping");
        return;
    }
    if (verdict == GW_VERIFY_UNCONFIGURED) {
        set_error(req, 404, "vendor_not_configured");
        return;
    }
    if (verdict != GW_VERIFY_OK) {
        cm_metric_inc(gw_metrics.signature_failures, req->label);
        set_error(req, 401, gw_verdict_str(verdict));
        return;
    }
    if (!gw_vendor_content_type_ok(v->body, lookup_header(req->conn, "Content-Type"))) {
        set_error(req, 415, "unsupported_media_type");
        return;
    }
    if (v->control == GW_CONTROL_GOOGLE_VERIFY &&
        gw_vendor_is_control(v->control, req->body.data, req->body.len)) {
        set_ok(req, 201, "verified");
        return;
    }
    if (req->body.len == 0) {
        set_error(req, 400, "empty_body");
        return;
    }
    req->phase = GW_PRODUCE;
}

/* The RawWebhook value: ids, times, the path without the secret token, allow-listed headers. */
static enum cm_rc encode_record(struct gw_request *req, struct cm_err *err)
{
    struct cm_header headers[8];
    struct cm_raw_webhook r;
    char path[64];
    size_t nh = 0;
    enum cm_rc rc;

    memset(&r, 0, sizeof(r));
    snprintf(path, sizeof(path), "%s%s", WEBHOOKS_PREFIX, req->vendor->name);
    for (size_t i = 0; gw_vendor_kept_headers[i] != NULL && nh < CM_ARRAY_LEN(headers); i++) {
        const char *val = lookup_header(req->conn, gw_vendor_kept_headers[i]);
        if (val != NULL && !cm_utf8_valid(val, strlen(val))) {
            /* obs-text (RFC 9110) is legal in a header but not in an Avro string: the header is
             * left out rather than the webhook refused with a 500 on every retry. */
            cm_log_warn("gateway.header_dropped", "req=%s vendor=%s header=%s reason=not_utf8",
                        req->id, req->label, gw_vendor_kept_headers[i]);
            continue;
        }
        if (val != NULL) {
            headers[nh].name = (char *)gw_vendor_kept_headers[i];
            headers[nh].value = (char *)val;
            nh++;
        }
    }
    r.event_id = req->id;
    r.vendor = (char *)req->vendor->name;
    r.kind = CM_RAW_WEBHOOK;
    r.received_at_us = req->received_at_us;
    r.method = "POST";
    r.path = path;
    r.query = req->query;
    r.content_type = (char *)lookup_header(req->conn, "Content-Type");
    r.headers = headers;
    r.n_headers = nh;
    r.body = req->body.data;
    r.body_len = req->body.len;
    rc = cm_raw_webhook_encode(&r, &req->value, err);
    if (rc == CM_OK) {
        cm_buf_fini(&req->body); /* the encoded value carries the bytes now */
    }
    return rc;
}

/* Caller holds ctx->lock. */
static void waiting_add(struct gw_request_ctx *ctx, struct gw_request *req)
{
    req->waiting = true;
    req->prev = NULL;
    req->next = ctx->waiting;
    if (ctx->waiting != NULL) {
        ctx->waiting->prev = req;
    }
    ctx->waiting = req;
}

/* Caller holds ctx->lock. Returns true when `req` was waiting (the caller must resume it). */
static bool waiting_take(struct gw_request_ctx *ctx, struct gw_request *req)
{
    if (!req->waiting) {
        return false;
    }
    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else {
        ctx->waiting = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    req->prev = req->next = NULL;
    req->waiting = false;
    return true;
}

/* Suspend first (the report can race us), then produce; on failure resume and answer 503. */
static void produce(struct gw_request *req)
{
    struct gw_request_ctx *ctx = req->ctx;
    struct cm_err err = {{0}};
    enum cm_rc rc;
    bool mine;

    if (encode_record(req, &err) != CM_OK) {
        cm_metric_inc(gw_metrics.produce_errors, "encode_failed");
        cm_log_error("gateway.encode_failed", "req=%s vendor=%s reason=%s", req->id, req->label,
                     err.msg);
        set_error(req, 500, "encode_failed");
        return;
    }
    req->phase = GW_WAIT_ACK;
    MHD_suspend_connection(req->conn);
    pthread_mutex_lock(&ctx->lock);
    req->deadline_us = cm_mono_us() + ctx->cfg->delivery_timeout_ms * 1000;
    waiting_add(ctx, req);
    pthread_mutex_unlock(&ctx->lock);
    atomic_fetch_add(&req->refs, 1); /* librdkafka's reference, dropped by the report */
    rc = gw_ingest_send(ctx->ing, req->vendor->name, req->value.data, req->value.len, req, &err);
    if (rc == CM_OK) {
        return;
    }
    atomic_fetch_sub(&req->refs, 1); /* no report will come; MHD still holds its reference */
    cm_log_warn("gateway.produce_failed", "req=%s vendor=%s reason=%s", req->id, req->label,
                err.msg);
    pthread_mutex_lock(&ctx->lock);
    mine = waiting_take(ctx, req);
    if (mine) {
        req->retry_after = RETRY_AFTER_KAFKA;
        gw_handshake_error(&req->reply, 503, "kafka_unavailable");
    }
    pthread_mutex_unlock(&ctx->lock);
    if (mine) {
        MHD_resume_connection(req->conn);
    }
}

void gw_request_on_delivery(void *opaque, rd_kafka_resp_err_t err)
{
    struct gw_request *req = opaque;
    struct gw_request_ctx *ctx = req->ctx;
    bool mine;

    pthread_mutex_lock(&ctx->lock);
    mine = waiting_take(ctx, req);
    if (mine && err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_ok(req, req->vendor->ok_status, "accepted");
    } else if (mine) {
        req->retry_after = RETRY_AFTER_KAFKA;
        gw_handshake_error(&req->reply, 503,
                           err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ? "delivery_timeout"
                                                                   : "kafka_unavailable");
    }
    pthread_mutex_unlock(&ctx->lock);
    if (mine) {
        MHD_resume_connection(req->conn);
    } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Answered 503 at the deadline, durable after all: the vendor's retry is a duplicate,
         * which the pipeline's deterministic event ids absorb. */
        cm_log_info("gateway.late_delivery", "req=%s vendor=%s", req->id, req->label);
    }
    request_unref(req);
}

void gw_request_on_tick(void *arg)
{
    struct gw_request_ctx *ctx = arg;
    struct gw_request *expired = NULL;
    int64_t now = cm_mono_us();

    pthread_mutex_lock(&ctx->lock);
    for (struct gw_request *r = ctx->waiting, *next; r != NULL; r = next) {
        next = r->next;
        if (r->deadline_us <= now) {
            waiting_take(ctx, r);
            r->retry_after = RETRY_AFTER_KAFKA;
            gw_handshake_error(&r->reply, 503, "delivery_timeout");
            r->expired_next = expired;
            expired = r;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
    /* Resume outside the lock. A suspended connection cannot complete, so each request is alive
     * until its resume; it is not touched afterwards. */
    while (expired != NULL) {
        struct gw_request *r = expired;
        expired = r->expired_next;
        cm_metric_inc(gw_metrics.produce_errors, "gateway_deadline");
        MHD_resume_connection(r->conn);
    }
}

size_t gw_request_abort_waiting(struct gw_request_ctx *ctx)
{
    struct gw_request *taken = NULL;
    size_t n = 0;

    pthread_mutex_lock(&ctx->lock);
    while (ctx->waiting != NULL) {
        struct gw_request *r = ctx->waiting;
        waiting_take(ctx, r);
        r->retry_after = RETRY_AFTER_KAFKA;
        gw_handshake_error(&r->reply, 503, "shutting_down");
        r->expired_next = taken;
        taken = r;
    }
    pthread_mutex_unlock(&ctx->lock);
    while (taken != NULL) {
        struct gw_request *r = taken;
        taken = r->expired_next;
        MHD_resume_connection(r->conn);
        n++;
    }
    return n;
}

bool gw_request_ready(void *arg, const char **reason)
{
    struct gw_request_ctx *ctx = arg;

    if (atomic_load(&ctx->draining)) {
        *reason = "shutting down";
        return false;
    }
    return gw_ingest_ready(ctx->ing, reason);
}

static enum MHD_Result send_reply(struct gw_request *req)
{
    const struct gw_reply *rp = &req->reply;
    size_t len = strlen(rp->body);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)rp->body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    char ra[16];

    if (resp == NULL) {
        return MHD_NO;
    }
    if (len > 0) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rp->ctype);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (req->retry_after > 0) {
        snprintf(ra, sizeof(ra), "%u", req->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (req->allow != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, req->allow);
    }
    ret = MHD_queue_response(req->conn, rp->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result gw_request_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload, size_t *upload_size, void **con_cls)
{
    struct gw_request *req = *con_cls;
    enum MHD_Result ret;

    (void)version;
    if (req == NULL) { /* no URI callback ran (cannot happen with our daemon options) */
        req = gw_request_on_uri(cls, url, conn);
        *con_cls = req;
    }
    for (;;) {
        switch (req->phase) {
        case GW_ROUTE:
            req->method = method_name(method);
            if (cm_httpd_answer_ops(conn, method, url, gw_request_ready, req->ctx, &ret)) {
                req->phase = GW_DONE;
                return ret;
            }
            route(req, url, method);
            if (req->phase == GW_READ_BODY) {
                return MHD_YES; /* the body arrives in the following calls */
            }
            break;
        case GW_READ_BODY:
            if (*upload_size != 0) {
                return read_chunk(req, upload, upload_size);
            }
            validate(req);
            break;
        case GW_PRODUCE:
            produce(req);
            if (req->phase == GW_WAIT_ACK) {
                return MHD_YES; /* suspended; resumed by the report, the deadline or shutdown */
            }
            break;
        case GW_WAIT_ACK:
            /* Resumed: whoever took us off the waiting list stored the reply under the lock. */
            pthread_mutex_lock(&req->ctx->lock);
            req->phase = GW_REPLY;
            pthread_mutex_unlock(&req->ctx->lock);
            break;
        case GW_REPLY:
            req->phase = GW_DONE;
            return send_reply(req);
        case GW_DONE:
        default:
            *upload_size = 0; /* a body after an early answer is discarded */
            return MHD_YES;
        }
    }
}

void gw_request_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
    struct gw_request *req = *con_cls;
    double secs;

    (void)cls;
    (void)conn;
    if (req == NULL) {
        return;
    }
    *con_cls = NULL;
    secs = (double)(cm_mono_us() - req->started_us) / 1e6;
    if (req->label != NULL && req->reply.status != 0) {
        char status[16];
        snprintf(status, sizeof(status), "%u", req->reply.status);
        cm_metric_inc(gw_metrics.requests, req->label, status);
        cm_metric_observe(gw_metrics.duration, secs, req->label);
        if (req->reply.status >= 400) {
            cm_metric_inc(gw_metrics.rejected, req->label, req->reply.reason);
        }
        cm_log_info("gateway.request",
                    "req=%s vendor=%s method=%s status=%u reason=%s bytes=%zu dur_ms=%.1f%s",
                    req->id, req->label, req->method, req->reply.status, req->reply.reason,
                    req->too_large ? req->discarded : req->body_len, secs * 1000.0,
                    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=yes");
    } else if (req->label != NULL) {
        cm_log_info("gateway.request_aborted", "req=%s vendor=%s method=%s toe=%d dur_ms=%.1f",
                    req->id, req->label, req->method, (int)toe, secs * 1000.0);
    }
    if (req->admitted) {
        atomic_fetch_sub(&req->ctx->in_flight, 1);
        gw_metrics_in_flight_add(-1);
    }
    request_unref(req);
}
