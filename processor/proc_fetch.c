/* The fetcher thread (proc_fetch.h): rounds of up to FETCH_BATCH_MAX jobs.
 * A round: collect -> decode and hold back jobs that are not due (partition paused + seek) ->
 * per job: plan, tokens (refresh when due), breaker, budget -> HTTP in one libcurl multi ->
 * 401s: forced single-flight refresh and one more pass -> outputs (raw / retry / dlq) -> wait for
 * every delivery report -> commit. A Google Health list answer with a nextPageToken chains the
 * next page's request in the same round (at most FETCH_MAX_PAGES; then `page_limit`). Tokens are
 * only in struct proc_tokens and the per-request header list, both wiped after use. Logs carry
 * vendor, HTTP status, reason, partition/offset and pseudonyms. */
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cm/kafka.h"
#include "cm/log.h"
#include "cm/metrics.h"
#include "cm/records.h"
#include "cm/vault.h"
#include "proc_fetch.h"
#include "proc_fetch_plan.h"
#include "proc_norm.h"
#include "proc_oauth.h"
#include "proc_vendors.h"

#define POLL_MS 100
#define ROUND_MS 50
#define DELIVERY_TIMEOUT_MS 30000
#define MAX_BODY (16u * 1024u * 1024u)
#define MAX_PAUSED 256
#define MAX_PASSES 2
#define KEY_MAX 320
#define DUE_SLACK_US 20000

enum outcome { O_NONE, O_PUBLISH, O_DELETE, O_SKIP, O_DEFER, O_RETRY, O_DLQ };

static const char *const outcome_names[] = { "none", "published", "deleted", "skipped",
                                             "deferred", "retried", "dead_lettered" };

struct conn {
    char vendor[24];
    char vuid[128];
    struct proc_tokens t;
    enum cm_rc load_rc;
    bool refresh_tried;
    bool needs_forced;
    struct conn *next;
};

/* One answer to publish as a RawWebhook. */
struct pub {
    struct proc_http_req req;
    char ctype[96];
    struct cm_buf body;
};

struct job {
    rd_kafka_message_t *msg;
    struct cm_fetch_job j;
    enum proc_api_vendor v;
    struct proc_plan plan;
    struct conn *conn;
    size_t next_req;
    bool waiting_401;      /* a request got 401: re-run after the forced refresh */
    bool running;
    enum outcome out;
    bool count_attempt;
    int64_t not_before_us;
    char reason[48];
    char detail[96];
    struct pub *pubs;      /* answers to publish, in request order (pages included) */
    size_t n_pub, cap_pub;
    long pages;            /* list pages fetched after the first (Google Health) */
    bool page_limited;     /* FETCH_MAX_PAGES reached with more pages left */
};

struct xfer {
    struct job *job;
    struct proc_http_req req;
    CURL *e;
    struct curl_slist *hdrs;
    struct cm_buf body;
    char retry_after[32], remaining[32], reset[32], usage[64], limit[96], ctype[96];
    int64_t t0;
};

struct paused {
    char topic[64];
    int32_t partition;
    int64_t resume_us;
};

struct proc_fetcher {
    const struct proc_cfg *cfg;
    struct cm_vault *vault;
    struct proc_oauth *oauth;
    rd_kafka_t *consumer, *producer;
    CURLM *multi;
    struct proc_breaker breakers[PROC_API_N];
    pthread_t thread;
    bool started;
    atomic_bool stop;

    rd_kafka_message_t **msgs;
    size_t n_msgs, cap_msgs;
    struct job *jobs;
    size_t n_jobs;
    struct conn *conns;
    struct paused paused[MAX_PAUSED];
    size_t n_paused;

    size_t outstanding, failed;
    struct cm_buf enc;
};

static struct cm_metric *m_jobs, *m_requests, *m_duration, *m_refresh, *m_rate_limited,
    *m_breaker_state, *m_breaker_transitions;

static void register_metrics(void)
{
    if (m_jobs != NULL) {
        return;
    }
    m_jobs = cm_metric_counter("auren_fetcher_jobs_total", "Fetch jobs by outcome", 2, "vendor",
                               "outcome");
    m_requests = cm_metric_counter("auren_fetcher_requests_total",
                                   "Vendor API requests by answer class", 2, "vendor", "status");
    m_duration = cm_metric_histogram("auren_fetcher_request_duration_seconds",
                                     "Vendor API request duration", cm_metric_latency_buckets,
                                     cm_metric_latency_nbuckets, 1, "vendor");
    m_refresh = cm_metric_counter("auren_fetcher_token_refreshes_total",
                                  "Token refresh attempts by result", 2, "vendor", "result");
    m_rate_limited = cm_metric_counter("auren_fetcher_rate_limited_total",
                                       "Requests held back or answered 429 by rate limits", 1,
                                       "vendor");
    m_breaker_state = cm_metric_gauge("auren_fetcher_breaker_state",
                                      "Circuit breaker per vendor: 0 closed, 1 open, 2 half-open",
                                      1, "vendor");
    m_breaker_transitions = cm_metric_counter("auren_fetcher_breaker_transitions_total",
                                              "Circuit breaker state changes", 2, "vendor",
                                              "state");
}

void proc_fetch_raw_event_id(const char *job_id, size_t index, char out[33])
{
    char input[160];
    int n = snprintf(input, sizeof(input), "api|%s|%zu", job_id, index);

    cm_assert(n > 0 && (size_t)n < sizeof(input));
    proc_digest_id(input, (size_t)n, out);
}

static uint64_t rnd64(void)
{
    uint64_t r;
    cm_random_bytes(&r, sizeof(r));
    return r;
}

/* ---- Kafka ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct proc_fetcher *f = opaque;

    if (f->outstanding > 0) {
        f->outstanding--;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        f->failed++;
        cm_log_warn("fetcher.delivery_failed", "topic=%s err=%s", rd_kafka_topic_name(m->rkt),
                    rd_kafka_err2name(m->err));
    }
}

static rd_kafka_t *new_client(const struct proc_fetcher *f, rd_kafka_type_t type,
                              struct cm_err *err)
{
    const char *const cprops[][2] = {
        { "group.id", f->cfg->fetcher_group_id }, { "client.id", "auren-fetcher" },
        { "isolation.level", "read_committed" },  { "enable.auto.commit", "false" },
        { "enable.auto.offset.store", "false" },  { "auto.offset.reset", "earliest" },
    };
    const char *const pprops[][2] = {
        { "client.id", "auren-fetcher" }, { "enable.idempotence", "true" },
        { "acks", "all" },                { "linger.ms", "5" },
        { "message.timeout.ms", "30000" },
    };
    rd_kafka_conf_t *conf = cm_kafka_conf_new(f->cfg->kafka_brokers, err);
    char errstr[512];
    size_t n = type == RD_KAFKA_CONSUMER ? CM_ARRAY_LEN(cprops) : CM_ARRAY_LEN(pprops);
    rd_kafka_t *rk;

    if (conf == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *const *p = type == RD_KAFKA_CONSUMER ? cprops[i] : pprops[i];
        if (cm_kafka_set(conf, p[0], p[1], err) != CM_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_opaque(conf, (void *)f);
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    }
    rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        cm_err_set(err, CM_INVALID, "kafka: %s", errstr);
    }
    return rk;
}

struct proc_fetcher *proc_fetcher_new(const struct proc_cfg *cfg, struct cm_err *err)
{
    struct proc_fetcher *f = cm_xcalloc(1, sizeof(*f));
    rd_kafka_topic_partition_list_t *topics;
    struct cm_err verr = { { 0 } };
    rd_kafka_resp_err_t e;

    register_metrics();
    f->cfg = cfg;
    atomic_init(&f->stop, false);
    cm_buf_init(&f->enc, 0);
    for (int i = 0; i < PROC_API_N; i++) {
        proc_breaker_init(&f->breakers[i], cfg->breaker_min_requests, cfg->breaker_failure_pct,
                          cfg->breaker_window_s, cfg->breaker_open_ms);
        cm_metric_set(m_breaker_state, 0, proc_api_vendor_name((enum proc_api_vendor)i));
    }
    f->vault = cm_vault_new(cfg->token_encryption_keys, &verr);
    if (f->vault == NULL) {
        cm_err_set(err, CM_INVALID, "TOKEN_ENCRYPTION_KEYS: %s", verr.msg);
        goto fail;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        (f->multi = curl_multi_init()) == NULL) {
        cm_err_set(err, CM_FATAL, "libcurl initialisation failed");
        goto fail;
    }
    if ((f->oauth = proc_oauth_new(cfg, f->vault, err)) == NULL ||
        (f->producer = new_client(f, RD_KAFKA_PRODUCER, err)) == NULL ||
        (f->consumer = new_client(f, RD_KAFKA_CONSUMER, err)) == NULL) {
        goto fail;
    }
    rd_kafka_poll_set_consumer(f->consumer);
    topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, CM_TOPIC_FETCH, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, CM_TOPIC_FETCH_RETRY, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(f->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_err_set(err, CM_INVALID, "kafka: subscribe: %s", rd_kafka_err2name(e));
        goto fail;
    }
    return f;
fail:
    proc_fetcher_free(f);
    return NULL;
}

/* ---- producing ---- */

static enum cm_rc produce(struct proc_fetcher *f, const char *topic, const void *key,
                          size_t keylen, struct cm_err *err)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            f->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE(f->enc.data, f->enc.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            f->outstanding++;
            return CM_OK;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            return cm_err_set(err, CM_RETRY, "produce to %s: %s", topic, rd_kafka_err2name(e));
        }
        rd_kafka_poll(f->producer, 100);
    }
}

static enum cm_rc publish_raw(struct proc_fetcher *f, const struct job *jb, size_t i,
                              struct cm_err *err)
{
    char event_id[33], key[KEY_MAX];
    const struct proc_http_req *r = &jb->pubs[i].req;
    const struct pub *pb = &jb->pubs[i];
    struct cm_raw_webhook raw = {
        .event_id = event_id,
        .vendor = jb->j.vendor,
        .kind = CM_RAW_API_RECORD,
        .received_at_us = cm_now_us(),
        .method = (char *)(r->form[0] != '\0' ? "POST" : "GET"),
        .path = (char *)r->path,
        .query = r->query[0] != '\0' && jb->j.vendor != NULL &&
                         strcmp(jb->j.vendor, "garmin") != 0
                     ? (char *)r->query
                     : NULL, /* Garmin's callback query carries its pull token: not recorded */
        .content_type = pb->ctype[0] != '\0' ? (char *)pb->ctype : NULL,
        .body = pb->body.data != NULL ? pb->body.data : (uint8_t *)"",
        .body_len = pb->body.len,
        .vendor_user_id = jb->j.vendor_user_id,
        .record_type = (char *)r->record_type,
    };

    proc_fetch_raw_event_id(jb->j.job_id, i, event_id);
    snprintf(key, sizeof(key), "%s:%s", jb->j.vendor, jb->j.vendor_user_id);
    cm_buf_reset(&f->enc);
    if (cm_raw_webhook_encode(&raw, &f->enc, err) != CM_OK) {
        return CM_INVALID;
    }
    return produce(f, CM_TOPIC_RAW, key, strlen(key), err);
}

static enum cm_rc requeue(struct proc_fetcher *f, const struct job *jb, struct cm_err *err)
{
    struct cm_fetch_job j = jb->j;

    j.attempt = jb->count_attempt ? jb->j.attempt + 1 : jb->j.attempt;
    j.not_before_us = jb->not_before_us;
    cm_buf_reset(&f->enc);
    if (cm_fetch_job_encode(&j, &f->enc, err) != CM_OK) {
        return CM_INVALID;
    }
    return produce(f, CM_TOPIC_FETCH_RETRY, jb->msg->key, jb->msg->key_len, err);
}

static enum cm_rc dead_letter(struct proc_fetcher *f, const rd_kafka_message_t *m,
                              const char *reason, const char *detail, int32_t attempts,
                              struct cm_err *err)
{
    struct cm_dead_letter d;

    cm_kafka_dead_letter(&d, "fetcher", m, reason, detail, attempts);
    cm_buf_reset(&f->enc);
    if (cm_dead_letter_encode(&d, &f->enc, err) != CM_OK) {
        return CM_INVALID;
    }
    cm_log_info("fetcher.dead_lettered", "partition=%" PRId32 " offset=%" PRId64 " reason=%s",
                m->partition, m->offset, reason);
    return produce(f, CM_TOPIC_DLQ, m->key, m->key_len, err);
}

/* ---- job bookkeeping ---- */

static void set_out(struct job *jb, enum outcome o, const char *reason, const char *detail)
{
    jb->out = o;
    cm_strlcpy(jb->reason, reason, sizeof(jb->reason));
    cm_strlcpy(jb->detail, detail != NULL ? detail : reason, sizeof(jb->detail));
}

static struct pub *add_pub(struct job *jb, const struct proc_http_req *req, const char *ctype)
{
    struct pub *pb;

    if (jb->n_pub == jb->cap_pub) {
        jb->cap_pub = jb->cap_pub == 0 ? 4 : jb->cap_pub * 2;
        jb->pubs = cm_xrealloc(jb->pubs, jb->cap_pub * sizeof(*jb->pubs));
    }
    pb = &jb->pubs[jb->n_pub++];
    pb->req = *req;
    cm_strlcpy(pb->ctype, ctype, sizeof(pb->ctype));
    cm_buf_init(&pb->body, 0);
    return pb;
}

static void clear_pubs(struct job *jb)
{
    for (size_t i = 0; i < jb->n_pub; i++) {
        cm_buf_fini(&jb->pubs[i].body);
    }
    jb->n_pub = 0;
    jb->pages = 0;
    jb->page_limited = false;
}

static void defer_until(struct job *jb, int64_t when_us, const char *why)
{
    set_out(jb, O_DEFER, why, why);
    jb->count_attempt = false;
    jb->not_before_us = when_us;
}

/* A failure that costs an attempt: retry with backoff (at least wait_ms) or, at the last
 * attempt, dead-letter with the reason. */
static void fail_attempt(struct proc_fetcher *f, struct job *jb, const char *why, int64_t wait_ms)
{
    int attempt = jb->j.attempt + 1;
    int64_t backoff = proc_backoff_ms(attempt, f->cfg->retry_base_ms, f->cfg->retry_max_ms,
                                      rnd64());
    char detail[96];

    if (attempt >= f->cfg->fetch_max_attempts) {
        snprintf(detail, sizeof(detail), "attempts=%d last=%s", attempt, why);
        set_out(jb, O_DLQ, "fetch_failed", detail);
        return;
    }
    set_out(jb, O_RETRY, why, why);
    jb->count_attempt = true;
    jb->not_before_us = cm_now_us() + (backoff > wait_ms ? backoff : wait_ms) * 1000;
}

static struct conn *find_conn(struct proc_fetcher *f, const char *vendor, const char *vuid)
{
    struct conn *c;

    for (c = f->conns; c != NULL; c = c->next) {
        if (strcmp(c->vendor, vendor) == 0 && strcmp(c->vuid, vuid) == 0) {
            return c;
        }
    }
    c = cm_xcalloc(1, sizeof(*c));
    cm_strlcpy(c->vendor, vendor, sizeof(c->vendor));
    cm_strlcpy(c->vuid, vuid, sizeof(c->vuid));
    c->next = f->conns;
    f->conns = c;
    struct cm_err err = { { 0 } };
    c->load_rc = proc_oauth_load(f->oauth, vendor, vuid, &c->t, &err);
    if (c->load_rc != CM_OK) {
        cm_log_warn("fetcher.connection_unreadable", "vendor=%s rc=%s reason=%s", vendor,
                    cm_rc_str(c->load_rc), err.msg);
    }
    return c;
}

static void free_conns(struct proc_fetcher *f)
{
    while (f->conns != NULL) {
        struct conn *c = f->conns;
        f->conns = c->next;
        proc_tokens_fini(&c->t);
        free(c);
    }
}

static void log_user(const char *event, const char *vendor, const char *vuid, const char *what)
{
    char pseudo[17];

    if (cm_log_level >= CM_LOG_INFO) {
        cm_log_pseudonym(vuid, pseudo);
        cm_log_info(event, "vendor=%s vendor_user=%s result=%s", vendor, pseudo, what);
    }
}

/* Refresh c's tokens (single flight); sets c's state for its jobs. */
static void refresh_conn(struct proc_fetcher *f, struct conn *c, enum proc_api_vendor v,
                         bool force)
{
    enum proc_refresh_result res = PROC_REFRESH_FAILED;
    struct cm_err err = { { 0 } };
    enum cm_rc rc;

    c->refresh_tried = true;
    rc = proc_oauth_refresh(f->oauth, v, c->vendor, c->vuid, force, &c->t, &res, &err);
    if (rc != CM_OK) {
        c->load_rc = rc;
        cm_metric_inc(m_refresh, c->vendor, "error");
        cm_log_warn("fetcher.refresh_failed", "vendor=%s rc=%s reason=%s", c->vendor,
                    cm_rc_str(rc), err.msg);
        return;
    }
    cm_metric_inc(m_refresh, c->vendor,
                  res == PROC_REFRESH_DONE ? "ok" : res == PROC_REFRESH_RECONSENT ? "invalid_grant"
                                                                                   : "failed");
    log_user("fetcher.token_refresh", c->vendor, c->vuid,
             res == PROC_REFRESH_DONE ? "ok" : res == PROC_REFRESH_RECONSENT ? "reconsent" : err.msg);
    if (res == PROC_REFRESH_RECONSENT) {
        c->t.state = PROC_TOKEN_RECONSENT;
    } else if (res == PROC_REFRESH_FAILED) {
        c->load_rc = CM_RETRY;
    }
}

/* ---- HTTP ---- */

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    return cm_buf_append(&x->body, p, size * n) == CM_OK ? size * n : 0;
}

static void copy_header_value(const char *v, size_t n, char *out, size_t outsz)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) {
        n--;
    }
    if (n >= outsz) {
        n = outsz - 1;
    }
    memcpy(out, v, n);
    out[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    static const struct {
        const char *name;
        size_t off, size;
    } wanted[] = {
        { "retry-after", offsetof(struct xfer, retry_after), 32 },
        { "x-ratelimit-remaining", offsetof(struct xfer, remaining), 32 },
        { "fitbit-rate-limit-remaining", offsetof(struct xfer, remaining), 32 },
        { "ratelimit-remaining", offsetof(struct xfer, remaining), 32 },
        { "x-ratelimit-reset", offsetof(struct xfer, reset), 32 },
        { "fitbit-rate-limit-reset", offsetof(struct xfer, reset), 32 },
        { "ratelimit-reset", offsetof(struct xfer, reset), 32 },
        { "x-ratelimit-usage", offsetof(struct xfer, usage), 64 },
        { "x-ratelimit-limit", offsetof(struct xfer, limit), 96 },
        { "content-type", offsetof(struct xfer, ctype), 96 },
    };
    struct xfer *x = arg;
    size_t len = size * n;
    const char *colon = memchr(p, ':', len);

    if (colon == NULL) {
        return len;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(wanted); i++) {
        size_t nl = strlen(wanted[i].name);
        if ((size_t)(colon - p) == nl && strncasecmp(p, wanted[i].name, nl) == 0) {
            copy_header_value(colon + 1, len - nl - 1, (char *)x + wanted[i].off, wanted[i].size);
        }
    }
    return len;
}

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p != NULL; p = p->next) {
        memset(p->data, 0, strlen(p->data));
    }
    curl_slist_free_all(l);
}

/* Start request jb->plan.reqs[jb->next_req] (or `req` when given). false: deferred instead. */
static bool start_request(struct proc_fetcher *f, struct job *jb, const struct proc_http_req *req)
{
    struct proc_breaker *b = &f->breakers[jb->v];
    int64_t now = cm_now_us(), wait_ms = 0;
    struct cm_err err = { { 0 } };
    enum proc_breaker_state before = b->state;
    char auth[8300];

    if (!proc_breaker_allow(b, now)) {
        defer_until(jb, proc_breaker_retry_at_us(b, now) + (int64_t)(rnd64() % 1000000),
                    "breaker_open");
        return false;
    }
    if (b->state != before) {
        cm_metric_set(m_breaker_state, (double)b->state, jb->j.vendor);
        cm_metric_inc(m_breaker_transitions, jb->j.vendor, "half_open");
    }
    if (proc_oauth_rate_take(f->oauth, jb->v, jb->j.vendor_user_id, &wait_ms, &err) != CM_OK) {
        if (b->state == PROC_BREAKER_HALF_OPEN) {
            b->probe_in_flight = false;
        }
        defer_until(jb, now + proc_backoff_ms(1, f->cfg->retry_base_ms, f->cfg->retry_max_ms,
                                              rnd64()) * 1000, "redis_unavailable");
        return false;
    }
    if (wait_ms > 0) {
        if (b->state == PROC_BREAKER_HALF_OPEN) {
            b->probe_in_flight = false;
        }
        cm_metric_inc(m_rate_limited, jb->j.vendor);
        defer_until(jb, now + wait_ms * 1000 + (int64_t)(rnd64() % 200000), "rate_limited");
        return false;
    }
    struct xfer *x = cm_xcalloc(1, sizeof(*x));
    x->job = jb;
    x->req = *req;
    x->t0 = cm_mono_us();
    cm_buf_init(&x->body, MAX_BODY);
    if (snprintf(auth, sizeof(auth), "Authorization: Bearer %s", jb->conn->t.access) <
        (int)sizeof(auth)) {
        x->hdrs = curl_slist_append(x->hdrs, auth);
    }
    memset(auth, 0, sizeof(auth));
    x->hdrs = curl_slist_append(x->hdrs, "Accept: application/json");
    x->e = curl_easy_init();
    curl_easy_setopt(x->e, CURLOPT_URL, x->req.url);
    curl_easy_setopt(x->e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x->e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->e, CURLOPT_TIMEOUT_MS, f->cfg->fetch_http_timeout_ms);
    curl_easy_setopt(x->e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->e, CURLOPT_USERAGENT, "auren-fetcher/1");
    curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
    if (x->req.form[0] != '\0') {
        curl_easy_setopt(x->e, CURLOPT_COPYPOSTFIELDS, x->req.form);
    }
    curl_multi_add_handle(f->multi, x->e);
    jb->running = true;
    return true;
}

static void xfer_free(struct proc_fetcher *f, struct xfer *x)
{
    curl_multi_remove_handle(f->multi, x->e);
    curl_easy_cleanup(x->e);
    wipe_slist(x->hdrs);
    cm_buf_fini(&x->body);
    free(x);
}

static void record_breaker(struct proc_fetcher *f, struct job *jb, bool ok)
{
    struct proc_breaker *b = &f->breakers[jb->v];
    enum proc_breaker_state before = b->state;

    proc_breaker_record(b, ok, cm_now_us());
    if (b->state != before) {
        static const char *const names[] = { "closed", "open", "half_open" };
        cm_metric_set(m_breaker_state, (double)b->state, jb->j.vendor);
        cm_metric_inc(m_breaker_transitions, jb->j.vendor, names[b->state]);
        cm_log_warn("fetcher.breaker", "vendor=%s state=%s", jb->j.vendor, names[b->state]);
    }
}

/* Withings answers HTTP 200 with {"status": n}: map it onto HTTP-like classes. */
static long withings_status(const struct xfer *x)
{
    char head[128]; /* the body is not NUL-terminated: search a terminated copy of its start */
    size_t n = x->body.data != NULL ? x->body.len : 0;
    const char *s;
    long st = 0;

    if (n >= sizeof(head)) {
        n = sizeof(head) - 1;
    }
    if (n > 0) {
        memcpy(head, x->body.data, n);
    }
    head[n] = '\0';
    s = strstr(head, "\"status\"");
    if (s == NULL || (size_t)(s - head) > 64) {
        return 200;
    }
    s = strchr(s, ':');
    st = s != NULL ? strtol(s + 1, NULL, 10) : 0;
    if (st == 0) {
        return 200;
    }
    if (st == 401) {
        return 401;
    }
    if (st == 601) {
        return 429;
    }
    return st >= 500 && st < 600 ? 503 : 400;
}

static const char *status_class(long st)
{
    static const char *const names[] = { "2xx", "401", "403", "404", "429", "4xx", "5xx" };
    if (st >= 200 && st < 300) {
        return names[0];
    }
    if (st == 401 || st == 403 || st == 404 || st == 429) {
        return st == 401 ? names[1] : st == 403 ? names[2] : st == 404 ? names[3] : names[4];
    }
    return st >= 500 ? names[6] : names[5];
}

/* Google Health pagination, after the page in x was kept: when it names a next page, start that
 * request (true: the job goes on, or was deferred by the budget or breaker); at FETCH_MAX_PAGES
 * pages mark the job page-limited instead (false: the job completes with what it has). An answer
 * that cannot be paged is dead-lettered (true). */
static bool next_page(struct proc_fetcher *f, struct job *jb, const struct xfer *x)
{
    struct proc_http_req next;
    struct cm_err err = { { 0 } };
    bool more = false;

    if (proc_fetch_plan_next_page(&jb->plan.reqs[jb->next_req],
                                  x->body.data != NULL ? (const void *)x->body.data : "",
                                  x->body.len, &next, &more, &err) != CM_OK) {
        set_out(jb, O_DLQ, "vendor_rejected", err.msg);
        return true;
    }
    if (!more) {
        return false;
    }
    if (jb->pages + 1 >= f->cfg->fetch_max_pages) {
        jb->page_limited = true;
        return false;
    }
    jb->pages++;
    start_request(f, jb, &next);
    return true;
}

static void complete(struct proc_fetcher *f, struct xfer *x, CURLcode cc)
{
    struct job *jb = x->job;
    long st = 0;
    char why[32];

    jb->running = false;
    curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &st);
    cm_metric_observe(m_duration, (double)(cm_mono_us() - x->t0) / 1e6, jb->j.vendor);
    if (cc != CURLE_OK) {
        cm_metric_inc(m_requests, jb->j.vendor, "error");
        record_breaker(f, jb, false);
        snprintf(why, sizeof(why), "%s", cc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport");
        fail_attempt(f, jb, why, 0);
        return;
    }
    if (st >= 200 && st < 300 && jb->v == PROC_API_WITHINGS) {
        st = withings_status(x);
    }
    cm_metric_inc(m_requests, jb->j.vendor, status_class(st));
    struct proc_rate_headers h = {
        .retry_after = x->retry_after[0] != '\0' ? x->retry_after : NULL,
        .remaining = x->remaining[0] != '\0' ? x->remaining : NULL,
        .reset = x->reset[0] != '\0' ? x->reset : NULL,
        .usage = x->usage[0] != '\0' ? x->usage : NULL,
        .limit = x->limit[0] != '\0' ? x->limit : NULL,
    };
    int64_t wait_ms = proc_rate_wait_ms(st, &h, cm_now_us());
    if (wait_ms > 0) {
        proc_oauth_rate_block(f->oauth, jb->v, jb->j.vendor_user_id, wait_ms);
    }
    if (st >= 500 || st == 408) {
        record_breaker(f, jb, false);
        snprintf(why, sizeof(why), "http_%ld", st);
        fail_attempt(f, jb, why, wait_ms);
        return;
    }
    record_breaker(f, jb, true);
    if (st == 429) {
        cm_metric_inc(m_rate_limited, jb->j.vendor);
        fail_attempt(f, jb, "http_429", wait_ms);
        return;
    }
    if (st == 401) {
        if (!jb->conn->refresh_tried) {
            jb->conn->needs_forced = true;
            jb->waiting_401 = true;
            return;
        }
        fail_attempt(f, jb, "http_401", 0);
        return;
    }
    if (st == 403) {
        set_out(jb, O_DLQ, "forbidden", "http_403");
        return;
    }
    if (st == 404) {
        set_out(jb, O_DLQ, "not_found", "http_404");
        return;
    }
    if (st < 200 || st >= 300) {
        snprintf(why, sizeof(why), "http_%ld", st);
        set_out(jb, O_DLQ, "vendor_rejected", why);
        return;
    }
    if (x->req.step == PROC_STEP_WHOOP_CYCLE) {
        struct proc_http_req next;
        struct cm_err err = { { 0 } };
        if (proc_fetch_plan_whoop_recovery(f->cfg->api[PROC_API_WHOOP].api_base_url,
                                           x->body.data, x->body.len, &next, &err) != CM_OK) {
            set_out(jb, O_DLQ, "not_scored", err.msg);
            return;
        }
        start_request(f, jb, &next);
        return;
    }
    struct pub *pb = add_pub(jb, &x->req, x->ctype);
    cm_buf_append(&pb->body, x->body.data != NULL ? x->body.data : (const uint8_t *)"",
                  x->body.len);
    if (jb->v == PROC_API_GOOGLE_HEALTH && next_page(f, jb, x)) {
        return;
    }
    jb->next_req++;
    if (jb->next_req < jb->plan.n) {
        start_request(f, jb, &jb->plan.reqs[jb->next_req]);
    } else {
        set_out(jb, O_PUBLISH, "published", NULL);
    }
}

/* Drive the multi handle until every transfer finished. */
static void run_transfers(struct proc_fetcher *f)
{
    int running = 1;

    while (running > 0) {
        CURLMsg *m;
        int left;

        curl_multi_perform(f->multi, &running);
        while ((m = curl_multi_info_read(f->multi, &left)) != NULL) {
            if (m->msg == CURLMSG_DONE) {
                struct xfer *x;
                CURL *e = m->easy_handle;
                CURLcode cc = m->data.result;
                curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
                complete(f, x, cc);
                xfer_free(f, x);
                running = 1; /* complete() may have added a follow-up */
            }
        }
        if (running > 0) {
            curl_multi_poll(f->multi, NULL, 0, 100, NULL);
        }
        rd_kafka_poll(f->producer, 0);
    }
}

/* ---- a round ---- */

static bool is_paused(const struct proc_fetcher *f, const rd_kafka_message_t *m)
{
    for (size_t i = 0; i < f->n_paused; i++) {
        if (f->paused[i].partition == m->partition &&
            strcmp(f->paused[i].topic, rd_kafka_topic_name(m->rkt)) == 0) {
            return true;
        }
    }
    return false;
}

/* Hold a partition back until `resume_us`: pause it and seek to the job that is not due. */
static void pause_at(struct proc_fetcher *f, const rd_kafka_message_t *m, int64_t resume_us)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition);
    rd_kafka_error_t *e;

    p->offset = m->offset;
    rd_kafka_pause_partitions(f->consumer, l);
    e = rd_kafka_seek_partitions(f->consumer, l, 5000);
    if (e != NULL) {
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (f->n_paused < MAX_PAUSED) {
        struct paused *ps = &f->paused[f->n_paused++];
        cm_strlcpy(ps->topic, rd_kafka_topic_name(m->rkt), sizeof(ps->topic));
        ps->partition = m->partition;
        ps->resume_us = resume_us;
    }
}

static void resume_due(struct proc_fetcher *f)
{
    int64_t now = cm_now_us();

    for (size_t i = 0; i < f->n_paused;) {
        if (f->paused[i].resume_us > now) {
            i++;
            continue;
        }
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, f->paused[i].topic, f->paused[i].partition);
        rd_kafka_resume_partitions(f->consumer, l);
        rd_kafka_topic_partition_list_destroy(l);
        f->paused[i] = f->paused[--f->n_paused];
    }
}

static void collect(struct proc_fetcher *f)
{
    int64_t deadline = 0;

    while (f->n_msgs < (size_t)f->cfg->fetch_batch_max && !atomic_load(&f->stop)) {
        int64_t now = cm_mono_us() / 1000;
        int timeout = deadline == 0 ? POLL_MS : (int)(deadline - now);
        rd_kafka_message_t *m;

        if (deadline != 0 && timeout <= 0) {
            break;
        }
        m = rd_kafka_consumer_poll(f->consumer, timeout);
        if (m == NULL) {
            if (deadline == 0) {
                return;
            }
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                cm_log_warn("fetcher.consume_error", "err=%s", rd_kafka_err2name(m->err));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (deadline == 0) {
            deadline = cm_mono_us() / 1000 + ROUND_MS;
        }
        if (f->n_msgs == f->cap_msgs) {
            f->cap_msgs = f->cap_msgs == 0 ? 64 : f->cap_msgs * 2;
            /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers, size is right */
            f->msgs = cm_xrealloc(f->msgs, f->cap_msgs * sizeof(*f->msgs));
        }
        f->msgs[f->n_msgs++] = m;
    }
}

/* Decide each job's first step; start the requests of those that can run. */
static void triage(struct proc_fetcher *f, struct job *jb)
{
    struct cm_err err = { { 0 } };
    int64_t now = cm_now_us();
    uint64_t r = rnd64();

    jb->v = proc_api_vendor_find(jb->j.vendor);
    if (jb->v == PROC_API_N) {
        set_out(jb, O_DLQ, "unsupported_fetch", "vendor has no API fetcher");
        return;
    }
    if (proc_fetch_plan(&jb->j, f->cfg->api[jb->v].api_base_url, now, &jb->plan, &err) != CM_OK) {
        char reason[48];
        const char *colon = strchr(err.msg, ':');
        snprintf(reason, sizeof(reason), "%.*s",
                 (int)(colon != NULL ? (size_t)(colon - err.msg) : strlen(err.msg)), err.msg);
        set_out(jb, O_DLQ, reason, err.msg);
        return;
    }
    if (jb->plan.kind == PROC_PLAN_SKIP) {
        set_out(jb, O_SKIP, "skipped", NULL);
        return;
    }
    jb->conn = find_conn(f, jb->j.vendor, jb->j.vendor_user_id);
    if (jb->conn->load_rc == CM_RETRY) {
        defer_until(jb, now + proc_backoff_ms(1, f->cfg->retry_base_ms, f->cfg->retry_max_ms, r) *
                                  1000, "database_unavailable");
        return;
    }
    if (jb->conn->load_rc != CM_OK) {
        set_out(jb, O_DLQ, "token_unreadable", "stored token does not open with the loaded keys");
        return;
    }
    if (jb->plan.kind == PROC_PLAN_DELETE) {
        set_out(jb, jb->conn->t.state == PROC_TOKEN_NO_ROW ? O_DLQ : O_DELETE,
                jb->conn->t.state == PROC_TOKEN_NO_ROW ? "unknown_connection" : "deleted", NULL);
        return;
    }
    switch (jb->conn->t.state) {
    case PROC_TOKEN_NO_ROW:
        set_out(jb, O_DLQ, "unknown_connection", "vendor_user_id has no connection");
        return;
    case PROC_TOKEN_REVOKED:
        set_out(jb, O_DLQ, "connection_revoked", "connection status is revoked");
        return;
    case PROC_TOKEN_RECONSENT:
        set_out(jb, O_DLQ, "reconsent_required", "the vendor rejected the refresh token");
        return;
    case PROC_TOKEN_MISSING:
        set_out(jb, O_DLQ, "missing_token", "the connection has no stored tokens");
        return;
    case PROC_TOKEN_OK:
        break;
    }
    if (!jb->conn->refresh_tried && proc_oauth_due(&jb->conn->t, now, f->cfg->refresh_margin_s, r)) {
        refresh_conn(f, jb->conn, jb->v, false);
        if (jb->conn->t.state == PROC_TOKEN_RECONSENT) {
            set_out(jb, O_DLQ, "reconsent_required", "the vendor rejected the refresh token");
            return;
        }
        if (jb->conn->load_rc != CM_OK) {
            fail_attempt(f, jb, "refresh_failed", 0);
            return;
        }
    }
    start_request(f, jb, &jb->plan.reqs[0]);
}

/* Jobs that got a 401 before any refresh of their connection: refresh once (forced), re-run. */
static bool second_pass(struct proc_fetcher *f)
{
    bool any = false;

    for (size_t i = 0; i < f->n_jobs; i++) {
        struct job *jb = &f->jobs[i];
        if (!jb->waiting_401) {
            continue;
        }
        jb->waiting_401 = false;
        if (jb->conn->needs_forced && !jb->conn->refresh_tried) {
            refresh_conn(f, jb->conn, jb->v, true);
        }
        if (jb->conn->t.state == PROC_TOKEN_RECONSENT) {
            set_out(jb, O_DLQ, "reconsent_required", "the vendor rejected the refresh token");
        } else if (jb->conn->load_rc != CM_OK || jb->conn->t.state != PROC_TOKEN_OK) {
            fail_attempt(f, jb, "refresh_failed", 0);
        } else {
            clear_pubs(jb);
            jb->next_req = 0;
            any = start_request(f, jb, &jb->plan.reqs[0]) || any;
        }
    }
    return any;
}

/* Google Health DELETE (a data type and an interval, no object): our stored events of that data
 * type, recognised by their source_record_id ("<member>@<time>" or a data point name
 * ".../dataTypes/<type>/dataPoints/...", proc_vendor_google_health.c), starting within
 * [start, end]. */
static enum cm_rc deleted_window(struct proc_fetcher *f, const struct job *jb, struct cm_buf *out,
                                 size_t *n, struct cm_err *err)
{
    const struct proc_gh_type *t = proc_google_health_type(jb->j.resource);
    char own[96], named[128];

    cm_assert(t != NULL); /* the plan (PROC_PLAN_DELETE) accepted only known data types */
    snprintf(own, sizeof(own), "%s@%%", t->member);
    snprintf(named, sizeof(named), "%%dataTypes/%s/dataPoints/%%", t->data_type);
    return proc_oauth_window_events(f->oauth, jb->j.vendor, jb->conn->t.user_id, own, named,
                                    jb->j.start_time_us, jb->j.end_time_us, out, n, err);
}

static enum cm_rc emit(struct proc_fetcher *f, struct job *jb, struct cm_err *err)
{
    enum cm_rc rc = CM_OK;

    if (jb->out == O_DELETE) {
        size_t n = 0;
        struct proc_http_req r;
        memset(&r, 0, sizeof(r));
        snprintf(r.record_type, sizeof(r.record_type), "%s.deleted", jb->j.vendor);
        cm_strlcpy(r.path, "/fetcher/deleted", sizeof(r.path));
        clear_pubs(jb);
        struct pub *pb = add_pub(jb, &r, "application/json");
        rc = jb->v == PROC_API_GOOGLE_HEALTH ? deleted_window(f, jb, &pb->body, &n, err)
                                             : proc_oauth_object_events(
                                                   f->oauth, jb->j.vendor, jb->conn->t.user_id,
                                                   jb->j.object_id, &pb->body, &n, err);
        if (rc != CM_OK) {
            defer_until(jb, cm_now_us() + f->cfg->retry_base_ms * 1000, "database_unavailable");
            rc = CM_OK;
        } else if (n == 0) {
            jb->out = O_SKIP; /* nothing of that object was stored */
        } else {
            rc = publish_raw(f, jb, 0, err);
        }
    }
    if (jb->out == O_PUBLISH) {
        for (size_t i = 0; i < jb->n_pub && rc == CM_OK; i++) {
            rc = publish_raw(f, jb, i, err);
        }
        if (rc == CM_OK && jb->page_limited) {
            /* what was read is published; the job itself goes to the DLQ for a replay with a
             * larger FETCH_MAX_PAGES (re-published pages keep their event ids) */
            char detail[48];
            snprintf(detail, sizeof(detail), "pages=%ld", jb->pages + 1);
            set_out(jb, O_DLQ, "page_limit", detail);
        }
    }
    if (jb->out == O_DEFER || jb->out == O_RETRY) {
        rc = requeue(f, jb, err);
    } else if (jb->out == O_DLQ) {
        rc = dead_letter(f, jb->msg, jb->reason, jb->detail, jb->j.attempt + 1, err);
    }
    if (rc == CM_OK) {
        cm_metric_inc(m_jobs, jb->j.vendor != NULL ? jb->j.vendor : "unknown",
                      outcome_names[jb->out]);
    }
    return rc;
}

static void job_fini(struct job *jb)
{
    clear_pubs(jb);
    free(jb->pubs);
    cm_fetch_job_fini(&jb->j);
}

static rd_kafka_topic_partition_list_t *offsets(struct proc_fetcher *f, bool first)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);

    for (size_t i = 0; i < f->n_jobs; i++) {
        const rd_kafka_message_t *m = f->jobs[i].msg;
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(l, rd_kafka_topic_name(m->rkt), m->partition);
        int64_t off = first ? m->offset : m->offset + 1;
        if (p == NULL) {
            p = rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition);
            p->offset = off;
        } else if (first ? off < p->offset : off > p->offset) {
            p->offset = off;
        }
    }
    return l;
}

static void run_round(struct proc_fetcher *f)
{
    struct cm_err err = { { 0 } };
    enum cm_rc rc = CM_OK;
    int64_t now = cm_now_us();

    f->jobs = cm_xcalloc(f->n_msgs, sizeof(*f->jobs));
    f->n_jobs = 0;
    for (size_t i = 0; i < f->n_msgs; i++) {
        rd_kafka_message_t *m = f->msgs[i];
        struct job *jb = &f->jobs[f->n_jobs];

        if (is_paused(f, m)) {
            rd_kafka_message_destroy(m); /* re-read after the resume */
            continue;
        }
        memset(jb, 0, sizeof(*jb));
        jb->msg = m;
        if (cm_fetch_job_decode(m->payload, m->len, &jb->j, &err) != CM_OK) {
            set_out(jb, O_DLQ, "undecodable", err.msg);
            f->n_jobs++;
            continue;
        }
        if (jb->j.not_before_us > now + DUE_SLACK_US) {
            pause_at(f, m, jb->j.not_before_us);
            cm_fetch_job_fini(&jb->j);
            rd_kafka_message_destroy(m);
            continue;
        }
        f->n_jobs++;
    }
    f->n_msgs = 0;
    for (size_t i = 0; i < f->n_jobs; i++) {
        if (f->jobs[i].out == O_NONE) {
            triage(f, &f->jobs[i]);
        }
    }
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        run_transfers(f);
        if (!second_pass(f)) {
            break;
        }
    }
    run_transfers(f);
    f->outstanding = f->failed = 0;
    for (size_t i = 0; i < f->n_jobs && rc == CM_OK; i++) {
        struct job *jb = &f->jobs[i];
        if (jb->out == O_NONE || jb->waiting_401) {
            fail_attempt(f, jb, "incomplete", 0);
        }
        rc = emit(f, jb, &err);
    }
    int64_t deadline = cm_mono_us() + (DELIVERY_TIMEOUT_MS + 5000) * INT64_C(1000);
    while (rc == CM_OK && f->outstanding > 0 && cm_mono_us() < deadline) {
        rd_kafka_flush(f->producer, 100);
    }
    if (rc == CM_OK && (f->outstanding > 0 || f->failed > 0)) {
        rc = cm_err_set(&err, CM_RETRY, "deliveries failed or missing");
    }
    rd_kafka_topic_partition_list_t *l = offsets(f, rc != CM_OK);
    if (l->cnt > 0) {
        if (rc == CM_OK) {
            rd_kafka_commit(f->consumer, l, 0);
        } else {
            cm_log_warn("fetcher.round_retry", "jobs=%zu reason=%s", f->n_jobs, err.msg);
            rd_kafka_error_t *e = rd_kafka_seek_partitions(f->consumer, l, 5000);
            if (e != NULL) {
                rd_kafka_error_destroy(e);
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    for (size_t i = 0; i < f->n_jobs; i++) {
        job_fini(&f->jobs[i]);
        rd_kafka_message_destroy(f->jobs[i].msg);
    }
    free(f->jobs);
    f->jobs = NULL;
    f->n_jobs = 0;
    free_conns(f);
    if (rc != CM_OK) {
        for (int i = 0; i < 10 && !atomic_load(&f->stop); i++) {
            rd_kafka_poll(f->producer, 100);
        }
    }
}

static void *thread_main(void *arg)
{
    struct proc_fetcher *f = arg;
    rd_kafka_resp_err_t e;

    cm_log_info("fetcher.started", "group=%s batch_max=%ld", f->cfg->fetcher_group_id,
                f->cfg->fetch_batch_max);
    while (!atomic_load(&f->stop)) {
        resume_due(f);
        rd_kafka_poll(f->producer, 0);
        collect(f);
        if (f->n_msgs > 0) {
            run_round(f);
        }
    }
    for (size_t i = 0; i < f->n_msgs; i++) {
        rd_kafka_message_destroy(f->msgs[i]);
    }
    f->n_msgs = 0;
    e = rd_kafka_consumer_close(f->consumer);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        cm_log_warn("fetcher.close_failed", "err=%s", rd_kafka_err2name(e));
    }
    rd_kafka_flush(f->producer, 10000);
    cm_log_info("fetcher.stopped", "refreshes=%" PRIu64, proc_oauth_refresh_count(f->oauth));
    return NULL;
}

enum cm_rc proc_fetcher_start(struct proc_fetcher *f, struct cm_err *err)
{
    if (pthread_create(&f->thread, NULL, thread_main, f) != 0) {
        return cm_err_set(err, CM_FATAL, "cannot start the fetcher thread");
    }
    f->started = true;
    return CM_OK;
}

void proc_fetcher_stop(struct proc_fetcher *f)
{
    if (f == NULL || !f->started) {
        return;
    }
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    f->started = false;
}

void proc_fetcher_free(struct proc_fetcher *f)
{
    if (f == NULL) {
        return;
    }
    proc_fetcher_stop(f);
    if (f->consumer != NULL) {
        rd_kafka_destroy(f->consumer);
    }
    if (f->producer != NULL) {
        rd_kafka_destroy(f->producer);
    }
    if (f->multi != NULL) {
        curl_multi_cleanup(f->multi);
    }
    proc_oauth_free(f->oauth);
    cm_vault_free(f->vault);
    free(f->msgs);
    cm_buf_fini(&f->enc);
    free(f);
}
