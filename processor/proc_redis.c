/* Redis time-series writer. Each batch is one pipeline: per event an EVALSHA of UPSERT_SCRIPT
 * (loaded when the connection is made) that drops the members of that event id at that score and
 * then ZADDs unless it is a tombstone; then one ZREMRANGEBYRANK + EXPIRE per distinct key. The
 * pipeline is written out by proc_redis_flush() and its replies are read later by
 * proc_redis_wait() (at the latest by the next flush), so the caller works on its next batch
 * while Redis executes this one. A lost connection turns the rest of the batch into skipped
 * writes and schedules a reconnect with exponential backoff (RECONNECT_MIN_US ..
 * RECONNECT_MAX_US); Kafka stays the source of truth, so the cache only lags until the next write
 * or the key's TTL. Keys and members hold user ids and values: they are never logged. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/log.h"
#include "cm/metrics.h"
#include "proc_norm.h"
#include "proc_redis.h"

#define RECONNECT_MIN_US (500 * 1000LL)
#define RECONNECT_MAX_US (30 * 1000000LL)
#define KEY_MAX 224

/* KEYS[1] series; ARGV[1] score; ARGV[2] "<event_id>|"; ARGV[3] new member or "" (tombstone).
 * Members of one score are ordered by their bytes, so those starting with "<event_id>|" sit right
 * after the probe member "<event_id>|" itself: the script finds them by rank in O(log N) each
 * instead of reading every member at the score (a series can hold thousands of members at one
 * score). The probe never outlives the script (scripts are atomic). A replay whose member is
 * already there changes nothing. The event id fixes the start time, so the score check is a
 * guard, not a case. */
static const char UPSERT_SCRIPT[] =
    "local k, s, p, m = KEYS[1], ARGV[1], ARGV[2], ARGV[3]\n"
    "if m ~= '' then\n"
    "  local cur = redis.call('ZSCORE', k, m)\n"
    "  if cur and tonumber(cur) == tonumber(s) then return 0 end\n"
    "end\n"
    "redis.call('ZADD', k, s, p)\n"
    "local r = redis.call('ZRANK', k, p)\n"
    "while true do\n"
    "  local nx = redis.call('ZRANGE', k, r + 1, r + 1, 'WITHSCORES')\n"
    "  if #nx == 0 or tonumber(nx[2]) ~= tonumber(s) or string.sub(nx[1], 1, #p) ~= p then\n"
    "    break\n"
    "  end\n"
    "  redis.call('ZREM', k, nx[1])\n"
    "end\n"
    "redis.call('ZREM', k, p)\n"
    "if m ~= '' then redis.call('ZADD', k, s, m) end\n"
    "return 0\n";

struct redis_op {
    char key[KEY_MAX];
    char event_id[33];
    double value;
    int64_t score_ms;
    bool deleted;
};

struct proc_redis {
    struct proc_redis_url url;
    long ttl_s;
    long max_entries;
    struct cm_metric *errors;  /* borrowed */
    struct cm_metric *skipped; /* borrowed */
    redisContext *c;
    char script_sha[48];       /* UPSERT_SCRIPT as loaded on this connection */
    int64_t next_attempt_us;   /* monotonic; reconnect not before */
    int64_t backoff_us;
    bool was_down;             /* log the down/up transitions once */
    struct redis_op *ops;
    size_t n_ops, cap_ops;
    struct cm_buf resp;        /* the pipeline, formatted as RESP */
    size_t wait_cmds;          /* replies of the pipeline in flight, to read */
    size_t wait_ops;           /* of which event writes (the first wait_ops commands) */
};

static bool parse_long_range(const char *s, size_t n, long lo, long hi, long *out)
{
    char tmp[16];
    char *end;
    long v;

    if (n == 0 || n >= sizeof(tmp)) {
        return false;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    v = strtol(tmp, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

enum cm_rc proc_redis_url_parse(const char *url, struct proc_redis_url *out, struct cm_err *err)
{
    static const char scheme[] = "redis://";
    const char *p, *at, *slash, *hend, *colon;
    long v;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        return cm_err_set(err, CM_INVALID, "REDIS_URL: expected redis://host[:port][/db]");
    }
    p = url + sizeof(scheme) - 1;
    slash = strchr(p, '/');
    hend = slash != NULL ? slash : p + strlen(p);
    at = memchr(p, '@', (size_t)(hend - p));
    if (at != NULL) {
        /* the password may itself hold '@' when not encoded: split at the last one */
        for (const char *q = at; q < hend; q++) {
            if (*q == '@') {
                at = q;
            }
        }
        colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) {
            return cm_err_set(err, CM_INVALID, "REDIS_URL: credentials need user:password");
        }
        if (!cm_pct_decode(p, (size_t)(colon - p), false, out->user, sizeof(out->user)) ||
            !cm_pct_decode(colon + 1, (size_t)(at - colon - 1), false, out->password,
                           sizeof(out->password))) {
            return cm_err_set(err, CM_INVALID, "REDIS_URL: bad credentials encoding");
        }
        p = at + 1;
    }
    if (*p == '[') { /* IPv6 literal */
        const char *close = memchr(p, ']', (size_t)(hend - p));

        if (close == NULL || (size_t)(close - p - 1) >= sizeof(out->host)) {
            return cm_err_set(err, CM_INVALID, "REDIS_URL: bad host");
        }
        memcpy(out->host, p + 1, (size_t)(close - p - 1));
        out->host[close - p - 1] = '\0';
        colon = close + 1 < hend && close[1] == ':' ? close + 1 : NULL;
        if (colon == NULL && close + 1 != hend) {
            return cm_err_set(err, CM_INVALID, "REDIS_URL: bad host");
        }
    } else {
        colon = memchr(p, ':', (size_t)(hend - p));
        size_t hlen = (size_t)((colon != NULL ? colon : hend) - p);

        if (hlen >= sizeof(out->host)) {
            return cm_err_set(err, CM_INVALID, "REDIS_URL: bad host");
        }
        memcpy(out->host, p, hlen);
        out->host[hlen] = '\0';
    }
    if (out->host[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "REDIS_URL: missing host");
    }
    if (colon != NULL) {
        if (!parse_long_range(colon + 1, (size_t)(hend - colon - 1), 1, 65535, &v)) {
            return cm_err_set(err, CM_INVALID, "REDIS_URL: bad port");
        }
        out->port = (int)v;
    }
    if (slash != NULL && slash[1] != '\0') {
        if (!parse_long_range(slash + 1, strlen(slash + 1), 0, 1000000, &v)) {
            return cm_err_set(err, CM_INVALID, "REDIS_URL: bad database number");
        }
        out->db = (int)v;
    }
    return CM_OK;
}

/* "%.15g", or "%.17g" when that does not read back as the same double. An integral value below
 * 1e15 (steps, beats per minute, ...) prints as its digits under "%.15g" and reads back exactly:
 * it skips snprintf and strtod (the bulk of the Redis flush's formatting). -0 keeps snprintf
 * ("-0"). */
size_t proc_redis_format_value(double value, char *out, size_t outsz)
{
    int n;

    if (value > -1e15 && value < 1e15 && value == (double)(int64_t)value &&
        !(value == 0 && signbit(value)) && outsz > 16) {
        size_t len = proc_put_int64(out, (int64_t)value);

        out[len] = '\0';
        return len;
    }
    n = snprintf(out, outsz, "%.15g", value);

    if (strtod(out, NULL) != value) {
        n = snprintf(out, outsz, "%.17g", value);
    }
    cm_assert(n > 0 && (size_t)n < outsz);
    return (size_t)n;
}

size_t proc_redis_member(const char *event_id, double value, char *out, size_t outsz)
{
    char num[32];
    int n;

    proc_redis_format_value(value, num, sizeof(num));
    n = snprintf(out, outsz, "%s|%s", event_id, num);
    cm_assert(n > 0 && (size_t)n < outsz);
    return (size_t)n;
}

bool proc_redis_key(const char *user_id, const char *metric, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "ts:%s:%s", user_id, metric);

    return n > 0 && (size_t)n < outsz;
}

int64_t proc_redis_score_ms(int64_t start_us)
{
    int64_t q = start_us / 1000;

    if (start_us % 1000 < 0) {
        q--;
    }
    return q;
}

struct proc_redis *proc_redis_new(const char *url, long ttl_s, long max_entries,
                                  struct cm_metric *errors, struct cm_metric *skipped,
                                  struct cm_err *err)
{
    struct proc_redis *r = cm_xcalloc(1, sizeof(*r));

    if (proc_redis_url_parse(url, &r->url, err) != CM_OK) {
        free(r);
        return NULL;
    }
    r->ttl_s = ttl_s;
    r->max_entries = max_entries;
    r->errors = errors;
    r->skipped = skipped;
    r->backoff_us = RECONNECT_MIN_US;
    cm_buf_init(&r->resp, 0);
    return r;
}

void proc_redis_free(struct proc_redis *r)
{
    if (r == NULL) {
        return;
    }
    proc_redis_wait(r); /* the writes in flight land before the connection closes */
    if (r->c != NULL) {
        redisFree(r->c);
    }
    free(r->ops);
    cm_buf_fini(&r->resp);
    free(r);
}

void proc_redis_add(struct proc_redis *r, const char *user_id, const char *metric,
                    const char *event_id, double value, int64_t start_us, bool deleted)
{
    struct redis_op *op;

    if (r->n_ops == r->cap_ops) {
        r->cap_ops = r->cap_ops == 0 ? 256 : r->cap_ops * 2;
        r->ops = cm_xrealloc(r->ops, r->cap_ops * sizeof(*r->ops));
    }
    op = &r->ops[r->n_ops];
    if (!proc_redis_key(user_id, metric, op->key, sizeof(op->key))) {
        /* ids are bounded well below this by the connections table; count it, do not store */
        if (r->skipped != NULL) {
            cm_metric_inc(r->skipped);
        }
        return;
    }
    cm_strlcpy(op->event_id, event_id, sizeof(op->event_id));
    op->value = value;
    op->score_ms = proc_redis_score_ms(start_us);
    op->deleted = deleted;
    r->n_ops++;
}

size_t proc_redis_pending(const struct proc_redis *r)
{
    return r->n_ops;
}

void proc_redis_discard(struct proc_redis *r)
{
    r->n_ops = 0;
}

bool proc_redis_connected(const struct proc_redis *r)
{
    return r->c != NULL;
}

static void count_error(struct proc_redis *r)
{
    if (r->errors != NULL) {
        cm_metric_inc(r->errors);
    }
}

static void drop_connection(struct proc_redis *r, const char *why)
{
    if (r->c != NULL) {
        redisFree(r->c);
        r->c = NULL;
    }
    count_error(r);
    r->next_attempt_us = cm_mono_us() + r->backoff_us;
    if (!r->was_down) {
        cm_log_warn("redis.down", "reason=%s retry_ms=%" PRId64, why, r->backoff_us / 1000);
        r->was_down = true;
    }
    r->backoff_us = r->backoff_us * 2 > RECONNECT_MAX_US ? RECONNECT_MAX_US : r->backoff_us * 2;
}

/* Run one setup command synchronously; false on an error reply or a broken link. A string reply
 * is copied to out when given. */
static bool setup_command(struct proc_redis *r, int argc, const char **argv, char *out,
                          size_t outsz)
{
    redisReply *reply = redisCommandArgv(r->c, argc, argv, NULL);
    bool ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;

    if (ok && out != NULL) {
        ok = reply->type == REDIS_REPLY_STRING && cm_strlcpy(out, reply->str, outsz);
    }
    if (reply != NULL) {
        freeReplyObject(reply);
    }
    return ok;
}

static bool ensure_connected(struct proc_redis *r)
{
    struct timeval connect_tv = { .tv_sec = 2, .tv_usec = 0 };
    struct timeval io_tv = { .tv_sec = 5, .tv_usec = 0 };
    char db[16];

    if (r->c != NULL) {
        return true;
    }
    if (cm_mono_us() < r->next_attempt_us) {
        return false;
    }
    r->c = redisConnectWithTimeout(r->url.host, r->url.port, connect_tv);
    if (r->c == NULL || r->c->err != 0) {
        drop_connection(r, "connect");
        return false;
    }
    if (redisSetTimeout(r->c, io_tv) != REDIS_OK) {
        drop_connection(r, "timeout");
        return false;
    }
    redisEnableKeepAlive(r->c);
    if (r->url.password[0] != '\0') {
        const char *auth_user[] = { "AUTH", r->url.user, r->url.password };
        const char *auth[] = { "AUTH", r->url.password };
        bool ok = r->url.user[0] != '\0' ? setup_command(r, 3, auth_user, NULL, 0)
                                         : setup_command(r, 2, auth, NULL, 0);

        if (!ok) {
            drop_connection(r, "auth");
            return false;
        }
    }
    if (r->url.db != 0) {
        const char *sel[] = { "SELECT", db };

        snprintf(db, sizeof(db), "%d", r->url.db);
        if (!setup_command(r, 2, sel, NULL, 0)) {
            drop_connection(r, "select");
            return false;
        }
    }
    {
        const char *load[] = { "SCRIPT", "LOAD", UPSERT_SCRIPT };

        if (!setup_command(r, 3, load, r->script_sha, sizeof(r->script_sha))) {
            drop_connection(r, "script_load");
            return false;
        }
    }
    if (r->was_down) {
        cm_log_info("redis.up", "port=%d db=%d", r->url.port, r->url.db);
    }
    r->was_down = false;
    r->backoff_us = RECONNECT_MIN_US;
    return true;
}

static int cmp_op_key(const void *a, const void *b)
{
    const struct redis_op *const *x = a;
    const struct redis_op *const *y = b;

    return strcmp((*x)->key, (*y)->key);
}

/* RESP is written here rather than by redisAppendCommandArgv: formatting each command through
 * hiredis' sds strings and snprintf cost more than the rest (the flush: 13 % -> 9 % of the
 * processor's perf samples). */
static void resp_len(struct cm_buf *b, char kind, size_t n)
{
    char num[32];
    size_t len;

    num[0] = kind;
    len = 1 + proc_put_int64(num + 1, (int64_t)n);
    num[len++] = '\r';
    num[len++] = '\n';
    cm_assert(cm_buf_append(b, num, len) == CM_OK);
}

static void resp_arg(struct cm_buf *b, const char *s, size_t n)
{
    resp_len(b, '$', n);
    cm_assert(cm_buf_append(b, s, n) == CM_OK && cm_buf_append(b, "\r\n", 2) == CM_OK);
}

static void resp_str(struct cm_buf *b, const char *s)
{
    resp_arg(b, s, strlen(s));
}

size_t proc_redis_wait(struct proc_redis *r)
{
    size_t applied = 0, n_cmds = r->wait_cmds, n_ops = r->wait_ops;
    bool noscript = false;

    r->wait_cmds = 0;
    r->wait_ops = 0;
    if (n_cmds == 0) {
        return 0;
    }
    for (size_t i = 0; i < n_cmds; i++) {
        void *reply = NULL;

        if (r->c == NULL || redisGetReply(r->c, &reply) != REDIS_OK) {
            drop_connection(r, "reply");
            applied = 0; /* unknown how much landed: count the batch as skipped */
            goto out;
        }
        if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) {
            count_error(r);
            /* NOSCRIPT after a SCRIPT FLUSH: reconnecting loads the script again */
            noscript = noscript || strncmp(((redisReply *)reply)->str, "NOSCRIPT", 8) == 0;
        } else if (i < n_ops) {
            applied++;
        }
        freeReplyObject(reply);
    }
    if (noscript) {
        drop_connection(r, "noscript");
    }
out:
    if (applied < n_ops && r->skipped != NULL) {
        cm_metric_add(r->skipped, (double)(n_ops - applied));
    }
    return applied;
}

size_t proc_redis_in_flight(const struct proc_redis *r)
{
    return r->wait_ops;
}

/* Write hiredis' output buffer to the socket (blocking); false when the link broke. */
static bool write_out(struct proc_redis *r)
{
    int done = 0;

    while (done == 0) {
        if (redisBufferWrite(r->c, &done) != REDIS_OK) {
            return false;
        }
    }
    return true;
}

size_t proc_redis_flush(struct proc_redis *r)
{
    struct redis_op **sorted = NULL;
    size_t n_cmds = 0, sent = 0, n_ops = r->n_ops;
    char score[24], prefix[40], member[80], stop[24], ttl[24];
    size_t sha_len;

    proc_redis_wait(r);
    if (n_ops == 0) {
        return 0;
    }
    if (!ensure_connected(r)) {
        goto out;
    }
    sha_len = strlen(r->script_sha); /* loaded by ensure_connected() */
    cm_buf_reset(&r->resp);
    stop[proc_put_int64(stop, -(r->max_entries + 1))] = '\0';
    ttl[proc_put_int64(ttl, r->ttl_s)] = '\0';
    for (size_t i = 0; i < n_ops; i++) {
        const struct redis_op *op = &r->ops[i];
        size_t idlen = strlen(op->event_id);
        size_t mlen = 0;

        memcpy(prefix, op->event_id, idlen);
        prefix[idlen] = '|';
        if (!op->deleted) {
            memcpy(member, prefix, idlen + 1);
            mlen = idlen + 1 + proc_redis_format_value(op->value, member + idlen + 1,
                                                       sizeof(member) - idlen - 1);
        }
        resp_len(&r->resp, '*', 7);
        resp_arg(&r->resp, "EVALSHA", 7);
        resp_arg(&r->resp, r->script_sha, sha_len);
        resp_arg(&r->resp, "1", 1);
        resp_str(&r->resp, op->key);
        resp_arg(&r->resp, score, proc_put_int64(score, op->score_ms));
        resp_arg(&r->resp, prefix, idlen + 1);
        resp_arg(&r->resp, member, mlen);
        n_cmds++;
    }
    /* trim and expire each key once, after all its samples */
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers, size is right */
    sorted = cm_xmalloc(n_ops * sizeof(*sorted));
    for (size_t i = 0; i < n_ops; i++) {
        sorted[i] = &r->ops[i];
    }
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers, size is right */
    qsort(sorted, n_ops, sizeof(*sorted), cmp_op_key);
    for (size_t i = 0; i < n_ops; i++) {
        if (i > 0 && strcmp(sorted[i]->key, sorted[i - 1]->key) == 0) {
            continue;
        }
        resp_len(&r->resp, '*', 4);
        resp_arg(&r->resp, "ZREMRANGEBYRANK", 15);
        resp_str(&r->resp, sorted[i]->key);
        resp_arg(&r->resp, "0", 1);
        resp_str(&r->resp, stop);
        resp_len(&r->resp, '*', 3);
        resp_arg(&r->resp, "EXPIRE", 6);
        resp_str(&r->resp, sorted[i]->key);
        resp_str(&r->resp, ttl);
        n_cmds += 2;
    }
    if (redisAppendFormattedCommand(r->c, (const char *)r->resp.data, r->resp.len) != REDIS_OK ||
        !write_out(r)) {
        drop_connection(r, "write");
        goto out;
    }
    r->wait_cmds = n_cmds;
    r->wait_ops = n_ops;
    sent = n_ops;
out:
    if (sent < n_ops && r->skipped != NULL) {
        cm_metric_add(r->skipped, (double)(n_ops - sent));
    }
    free(sorted);
    r->n_ops = 0;
    return sent;
}
