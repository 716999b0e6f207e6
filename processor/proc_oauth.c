/* OAuth tokens, the refresh single flight and the shared rate budgets (proc_oauth.h).
 * PostgreSQL holds the sealed tokens (one libpq connection, reconnected on failure); Redis holds
 * the refresh locks, the token buckets and the rate-limit blocks (one hiredis connection, short
 * timeouts); the token endpoint is called with a libcurl easy handle whose timeout is below the
 * lock lease. Logs carry vendors, pseudonyms, HTTP statuses and reasons, never tokens. */
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm/buf.h"
#include "cm/log.h"
#include "cm/vault.h"
#include "proc_oauth.h"
#include "proc_redis.h"

#define REDIS_TIMEOUT_MS 2000
#define WAIT_SLICE_MS 50
#define TOKEN_MAX_BODY (64 * 1024)
#define MAX_ROUNDS 3

/* Documented budgets (README "Rate limits"): per app, and per user where the vendor has one
 * (elsewhere the per-user bucket only keeps one user from taking a whole app budget). */
static const struct {
    double app_n, app_window_s, user_n, user_window_s;
} budgets[PROC_API_N] = {
    [PROC_API_WHOOP] = { 100, 60, 50, 60 },
    [PROC_API_OURA] = { 5000, 300, 500, 300 },
    [PROC_API_POLAR] = { 500, 900, 100, 900 },
    [PROC_API_FITBIT] = { 1500, 60, 150, 3600 },
    [PROC_API_GOOGLE_HEALTH] = { 100, 60, 50, 60 },
    [PROC_API_WITHINGS] = { 120, 60, 60, 60 },
    [PROC_API_STRAVA] = { 200, 900, 100, 900 },
    [PROC_API_GARMIN] = { 100, 60, 50, 60 },
};

/* KEYS: app bucket, user bucket, app block, user block. ARGV: now_ms, app cap, app tokens per
 * ms, user cap, user tokens per ms. Returns 0 (taken) or the wait in ms (nothing taken). */
static const char bucket_lua[] =
    "local now=tonumber(ARGV[1])\n"
    "for i=3,4 do local b=redis.call('PTTL',KEYS[i]) if b>0 then return b end end\n"
    "local function level(k,cap,rate)\n"
    "  local v=redis.call('HMGET',k,'t','ts')\n"
    "  local t=tonumber(v[1]) or cap local ts=tonumber(v[2]) or now\n"
    "  if now>ts then t=math.min(cap,t+(now-ts)*rate) end\n"
    "  return t end\n"
    "local c1,r1,c2,r2=tonumber(ARGV[2]),tonumber(ARGV[3]),tonumber(ARGV[4]),tonumber(ARGV[5])\n"
    "local t1=level(KEYS[1],c1,r1) local t2=level(KEYS[2],c2,r2)\n"
    "if t1<1 then return math.ceil((1-t1)/r1) end\n"
    "if t2<1 then return math.ceil((1-t2)/r2) end\n"
    "redis.call('HSET',KEYS[1],'t',tostring(t1-1),'ts',ARGV[1])\n"
    "redis.call('PEXPIRE',KEYS[1],math.ceil(c1/r1)+1000)\n"
    "redis.call('HSET',KEYS[2],'t',tostring(t2-1),'ts',ARGV[1])\n"
    "redis.call('PEXPIRE',KEYS[2],math.ceil(c2/r2)+1000)\n"
    "return 0\n";

static const char unlock_lua[] =
    "if redis.call('GET',KEYS[1])==ARGV[1] then return redis.call('DEL',KEYS[1]) end return 0";

struct proc_oauth {
    const struct proc_cfg *cfg;
    const struct cm_vault *vault;
    PGconn *pg;
    redisContext *redis;
    struct proc_redis_url rurl;
    CURL *curl;
    uint64_t refreshes;
};

void proc_tokens_fini(struct proc_tokens *t)
{
    if (t == NULL) {
        return;
    }
    if (t->access != NULL) {
        memset(t->access, 0, strlen(t->access));
        free(t->access);
    }
    if (t->refresh != NULL) {
        memset(t->refresh, 0, strlen(t->refresh));
        free(t->refresh);
    }
    memset(t, 0, sizeof(*t));
}

struct proc_oauth *proc_oauth_new(const struct proc_cfg *cfg, const struct cm_vault *vault,
                                  struct cm_err *err)
{
    struct proc_oauth *o = cm_xcalloc(1, sizeof(*o));

    o->cfg = cfg;
    o->vault = vault;
    if (proc_redis_url_parse(cfg->redis_url, &o->rurl, err) != CM_OK) {
        free(o);
        return NULL;
    }
    o->curl = curl_easy_init();
    if (o->curl == NULL) {
        free(o);
        cm_err_set(err, CM_FATAL, "curl_easy_init failed");
        return NULL;
    }
    return o;
}

void proc_oauth_free(struct proc_oauth *o)
{
    if (o == NULL) {
        return;
    }
    if (o->pg != NULL) {
        PQfinish(o->pg);
    }
    if (o->redis != NULL) {
        redisFree(o->redis);
    }
    curl_easy_cleanup(o->curl);
    free(o);
}

uint64_t proc_oauth_refresh_count(const struct proc_oauth *o)
{
    return o->refreshes;
}

/* ---- PostgreSQL ---- */

static void on_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

static enum cm_rc pg_ready(struct proc_oauth *o, struct cm_err *err)
{
    if (o->pg != NULL && PQstatus(o->pg) == CONNECTION_OK) {
        return CM_OK;
    }
    if (o->pg != NULL) {
        PQfinish(o->pg);
    }
    const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *const vals[] = { "5", "auren-fetcher", o->cfg->database_url, NULL };
    o->pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(o->pg) != CONNECTION_OK) {
        PQfinish(o->pg);
        o->pg = NULL;
        return cm_err_set(err, CM_RETRY, "postgresql unreachable");
    }
    PQsetNoticeReceiver(o->pg, on_notice, NULL);
    return CM_OK;
}

static enum cm_rc pg_failed(struct proc_oauth *o, PGresult *res, const char *what,
                            struct cm_err *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (PQstatus(o->pg) != CONNECTION_OK) {
        PQfinish(o->pg);
        o->pg = NULL;
    }
    return cm_err_set(err, CM_RETRY, "%s: sqlstate %s", what, state != NULL ? state : "-");
}

static char *open_col(struct proc_oauth *o, PGresult *res, int col, const char *kid,
                      const struct cm_vault_aad *aad, struct cm_err *err, enum cm_rc *rc)
{
    size_t n = 0;
    unsigned char *ct;
    struct cm_buf plain;
    char *out = NULL;

    if (PQgetisnull(res, 0, col)) {
        return NULL;
    }
    ct = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, col), &n);
    cm_buf_init(&plain, 0);
    if (ct == NULL || cm_vault_open(o->vault, kid, aad, ct, n, &plain, err) != CM_OK) {
        *rc = cm_err_set(err, CM_INVALID, "token_unreadable");
    } else {
        out = cm_xstrndup((const char *)plain.data, plain.len);
    }
    if (plain.data != NULL) {
        memset(plain.data, 0, plain.cap);
    }
    cm_buf_fini(&plain);
    PQfreemem(ct);
    return out;
}

enum cm_rc proc_oauth_load(struct proc_oauth *o, const char *vendor, const char *vendor_user_id,
                           struct proc_tokens *t, struct cm_err *err)
{
    static const char sql[] =
        "SELECT user_id, status, access_token_ct, refresh_token_ct, key_id,"
        " COALESCE((extract(epoch FROM expires_at) * 1000000)::bigint, 0), token_generation"
        " FROM connections WHERE vendor = $1 AND vendor_user_id = $2";
    const char *params[2] = { vendor, vendor_user_id };
    enum cm_rc rc = pg_ready(o, err);
    PGresult *res;

    proc_tokens_fini(t);
    if (rc != CM_OK) {
        return rc;
    }
    res = PQexecParams(o->pg, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pg_failed(o, res, "connections read", err);
        PQclear(res);
        return rc;
    }
    if (PQntuples(res) == 0) {
        t->state = PROC_TOKEN_NO_ROW;
        PQclear(res);
        return CM_OK;
    }
    cm_strlcpy(t->user_id, PQgetvalue(res, 0, 0), sizeof(t->user_id));
    t->expires_at_us = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    t->generation = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
    const char *status = PQgetvalue(res, 0, 1);
    if (strcmp(status, "revoked") == 0) {
        t->state = PROC_TOKEN_REVOKED;
    } else if (strcmp(status, "active") != 0) {
        t->state = PROC_TOKEN_RECONSENT;
    } else if (PQgetisnull(res, 0, 2) || PQgetisnull(res, 0, 4)) {
        t->state = PROC_TOKEN_MISSING;
    } else {
        struct cm_vault_aad aad = { vendor, vendor_user_id, t->user_id, "access" };
        const char *kid = PQgetvalue(res, 0, 4);
        t->state = PROC_TOKEN_OK;
        t->access = open_col(o, res, 2, kid, &aad, err, &rc);
        aad.field = "refresh";
        if (rc == CM_OK) {
            t->refresh = open_col(o, res, 3, kid, &aad, err, &rc);
        }
    }
    PQclear(res);
    if (rc != CM_OK) {
        proc_tokens_fini(t);
    }
    return rc;
}

/* Commit a refreshed pair under generation `gen` (both re-sealed with the active key). */
static enum cm_rc store_tokens(struct proc_oauth *o, const char *vendor, const char *vuid,
                               const struct proc_tokens *t, const char *access,
                               const char *refresh, int64_t expires_at_us, bool *stored,
                               struct cm_err *err)
{
    static const char sql[] =
        "UPDATE connections SET access_token_ct = $1, refresh_token_ct = $2, key_id = $3,"
        " expires_at = CASE WHEN $4::bigint = 0 THEN NULL ELSE to_timestamp($4::bigint / 1e6) END,"
        " token_generation = token_generation + 1, refreshed_at = now(), updated_at = now()"
        " WHERE vendor = $5 AND vendor_user_id = $6 AND token_generation = $7"
        " AND status = 'active'";
    struct cm_vault_aad aad = { vendor, vuid, t->user_id, "access" };
    struct cm_buf at, rt;
    char exp[24], gen[24];
    enum cm_rc rc;

    cm_buf_init(&at, 0);
    cm_buf_init(&rt, 0);
    rc = cm_vault_seal(o->vault, &aad, access, strlen(access), &at, err);
    aad.field = "refresh";
    if (rc == CM_OK && refresh != NULL) {
        rc = cm_vault_seal(o->vault, &aad, refresh, strlen(refresh), &rt, err);
    }
    if (rc == CM_OK && (rc = pg_ready(o, err)) == CM_OK) {
        snprintf(exp, sizeof(exp), "%" PRId64, expires_at_us);
        snprintf(gen, sizeof(gen), "%" PRId64, t->generation);
        const char *params[7] = { (const char *)at.data,
                                  refresh != NULL ? (const char *)rt.data : NULL,
                                  cm_vault_active_kid(o->vault), exp, vendor, vuid, gen };
        int lens[7] = { (int)at.len, (int)rt.len, 0, 0, 0, 0, 0 };
        int fmts[7] = { 1, 1, 0, 0, 0, 0, 0 };
        PGresult *res = PQexecParams(o->pg, sql, 7, NULL, params, lens, fmts, 0);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = pg_failed(o, res, "connections refresh", err);
        } else {
            *stored = strcmp(PQcmdTuples(res), "1") == 0;
        }
        PQclear(res);
    }
    cm_buf_fini(&at);
    cm_buf_fini(&rt);
    return rc;
}

static enum cm_rc mark_reconsent(struct proc_oauth *o, const char *vendor, const char *vuid,
                                 int64_t generation, struct cm_err *err)
{
    static const char sql[] =
        "UPDATE connections SET status = 'reconsent_required', status_reason = 'invalid_grant',"
        " updated_at = now() WHERE vendor = $1 AND vendor_user_id = $2 AND token_generation = $3"
        " AND status = 'active'";
    char gen[24];
    const char *params[3] = { vendor, vuid, gen };
    enum cm_rc rc = pg_ready(o, err);

    if (rc != CM_OK) {
        return rc;
    }
    snprintf(gen, sizeof(gen), "%" PRId64, generation);
    PGresult *res = PQexecParams(o->pg, sql, 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = pg_failed(o, res, "connections mark", err);
    }
    PQclear(res);
    return rc;
}

/* ---- Redis ---- */

static redisReply *redis_cmd(struct proc_oauth *o, struct cm_err *err, int argc,
                             const char **argv)
{
    redisReply *r;

    if (o->redis == NULL) {
        struct timeval tv = { REDIS_TIMEOUT_MS / 1000, (REDIS_TIMEOUT_MS % 1000) * 1000 };
        o->redis = redisConnectWithTimeout(o->rurl.host, o->rurl.port, tv);
        if (o->redis == NULL || o->redis->err != 0) {
            if (o->redis != NULL) {
                redisFree(o->redis);
                o->redis = NULL;
            }
            cm_err_set(err, CM_RETRY, "redis unreachable");
            return NULL;
        }
        redisSetTimeout(o->redis, tv);
        if (o->rurl.password[0] != '\0') {
            r = o->rurl.user[0] != '\0'
                    ? redisCommand(o->redis, "AUTH %s %s", o->rurl.user, o->rurl.password)
                    : redisCommand(o->redis, "AUTH %s", o->rurl.password);
            freeReplyObject(r);
        }
        if (o->rurl.db != 0) {
            freeReplyObject(redisCommand(o->redis, "SELECT %d", o->rurl.db));
        }
    }
    r = redisCommandArgv(o->redis, argc, argv, NULL);
    if (r == NULL) {
        redisFree(o->redis);
        o->redis = NULL;
        cm_err_set(err, CM_RETRY, "redis round trip failed");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        cm_err_set(err, CM_RETRY, "redis error reply");
        return NULL;
    }
    return r;
}

static void lock_key(const char *vendor, const char *vuid, char *out, size_t outsz)
{
    snprintf(out, outsz, "lock:refresh:%s:%s", vendor, vuid);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- the token request ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return cm_buf_append(arg, p, size * n) == CM_OK ? size * n : 0;
}

bool proc_oauth_refresh_form(enum proc_api_vendor v, const struct proc_api_cfg *api,
                             const char *refresh_token, char *form, size_t formsz)
{
    CURL *c = curl_easy_init();
    char *rt = curl_easy_escape(c, refresh_token, 0);
    char *id = curl_easy_escape(c, api->client_id, 0);
    char *secret = curl_easy_escape(c, api->client_secret, 0);
    bool body_auth = strcmp(api->token_auth, "body") == 0;
    int n = -1;

    if (rt != NULL && id != NULL && secret != NULL) {
        n = snprintf(form, formsz, "%sgrant_type=refresh_token&refresh_token=%s%s%s%s%s%s",
                     v == PROC_API_WITHINGS ? "action=requesttoken&" : "", rt,
                     body_auth ? "&client_id=" : "", body_auth ? id : "",
                     body_auth ? "&client_secret=" : "", body_auth ? secret : "",
                     v == PROC_API_WHOOP ? "&scope=offline" : "");
    }
    if (rt != NULL) {
        memset(rt, 0, strlen(rt));
    }
    curl_free(rt);
    curl_free(id);
    if (secret != NULL) {
        memset(secret, 0, strlen(secret));
    }
    curl_free(secret);
    curl_easy_cleanup(c);
    return n > 0 && (size_t)n < formsz;
}

enum cm_rc proc_oauth_parse_token(enum proc_api_vendor v, long http_status, const char *body,
                                  size_t len, char **access, char **refresh, long *expires_in,
                                  bool *invalid_grant, struct cm_err *err)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *obj = root, *e;
    enum cm_rc rc = CM_OK;

    *access = *refresh = NULL;
    *expires_in = 0;
    *invalid_grant = false;
    if (!json_is_object(root)) {
        json_decref(root);
        return cm_err_set(err, CM_RETRY, "token endpoint: http %ld, no JSON", http_status);
    }
    if (v == PROC_API_WITHINGS) {
        json_t *st = json_object_get(root, "status");
        if (json_is_integer(st) && json_integer_value(st) != 0) {
            *invalid_grant = json_integer_value(st) == 401 || json_integer_value(st) == 503;
            rc = cm_err_set(err, CM_RETRY, "token endpoint: withings status %" JSON_INTEGER_FORMAT,
                            json_integer_value(st));
        }
        obj = json_object_get(root, "body");
    }
    e = json_object_get(root, "error");
    if (rc == CM_OK && json_is_string(e)) {
        *invalid_grant = strcmp(json_string_value(e), "invalid_grant") == 0;
        rc = cm_err_set(err, CM_RETRY, "token endpoint: http %ld, error %s", http_status,
                        *invalid_grant ? "invalid_grant" : "other");
    }
    const json_t *at = json_object_get(obj, "access_token");
    const json_t *rt = json_object_get(obj, "refresh_token");
    const json_t *ex = json_object_get(obj, "expires_in");
    if (rc == CM_OK && (http_status < 200 || http_status > 299 || !json_is_string(at) ||
                        json_string_length(at) == 0)) {
        rc = cm_err_set(err, CM_RETRY, "token endpoint: http %ld without access_token",
                        http_status);
    }
    if (rc == CM_OK) {
        *access = cm_xstrdup(json_string_value(at));
        if (json_is_string(rt) && json_string_length(rt) > 0) {
            *refresh = cm_xstrdup(json_string_value(rt));
        }
        if (json_is_integer(ex) && json_integer_value(ex) > 0) {
            *expires_in = (long)json_integer_value(ex);
        }
    }
    json_decref(root);
    return rc;
}

/* POST the refresh; fills new tokens or sets *invalid. */
static enum cm_rc token_request(struct proc_oauth *o, enum proc_api_vendor v,
                                const struct proc_tokens *t, char **access, char **refresh,
                                long *expires_in, bool *invalid, struct cm_err *err)
{
    const struct proc_api_cfg *api = &o->cfg->api[v];
    char form[8192];
    struct cm_buf body;
    struct curl_slist *hdrs = NULL;
    long status = 0, timeout = o->cfg->refresh_lock_ms - 1000;
    CURLcode cc;
    enum cm_rc rc;

    if (!proc_oauth_refresh_form(v, api, t->refresh, form, sizeof(form))) {
        return cm_err_set(err, CM_INVALID, "refresh request too large");
    }
    cm_buf_init(&body, TOKEN_MAX_BODY);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    curl_easy_reset(o->curl);
    curl_easy_setopt(o->curl, CURLOPT_URL, api->token_url);
    curl_easy_setopt(o->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(o->curl, CURLOPT_COPYPOSTFIELDS, form);
    curl_easy_setopt(o->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(o->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(o->curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(o->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(o->curl, CURLOPT_TIMEOUT_MS, timeout < 500 ? 500L : timeout);
    curl_easy_setopt(o->curl, CURLOPT_USERAGENT, "auren-fetcher/1");
    if (strcmp(api->token_auth, "basic") == 0) {
        curl_easy_setopt(o->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(o->curl, CURLOPT_USERNAME, api->client_id);
        curl_easy_setopt(o->curl, CURLOPT_PASSWORD, api->client_secret);
    }
    memset(form, 0, sizeof(form));
    o->refreshes++;
    cc = curl_easy_perform(o->curl);
    curl_easy_getinfo(o->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_reset(o->curl); /* drops the copied form and credentials */
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        rc = cm_err_set(err, CM_RETRY, "token endpoint: %s", curl_easy_strerror(cc));
    } else {
        rc = proc_oauth_parse_token(v, status, (const char *)body.data, body.len, access, refresh,
                                    expires_in, invalid, err);
    }
    if (body.data != NULL) {
        memset(body.data, 0, body.cap);
    }
    cm_buf_fini(&body);
    return rc;
}

bool proc_oauth_due(const struct proc_tokens *t, int64_t now_us, long margin_s, uint64_t rnd)
{
    int64_t margin_us = (int64_t)margin_s * 1000000;

    if (t->expires_at_us == 0) {
        return false; /* unknown expiry: refreshed on a 401 */
    }
    int64_t jitter = margin_us > 0 ? (int64_t)(rnd % (uint64_t)margin_us) : 0;
    return now_us >= t->expires_at_us - margin_us - jitter;
}

/* Holding the lock: refresh unless the row already moved on. */
static enum cm_rc refresh_locked(struct proc_oauth *o, enum proc_api_vendor v, const char *vendor,
                                 const char *vuid, bool force, int64_t seen_gen,
                                 struct proc_tokens *t, enum proc_refresh_result *result,
                                 struct cm_err *err)
{
    char *access = NULL, *refresh = NULL;
    long expires_in = 0;
    bool invalid = false, stored = false;
    enum cm_rc rc = proc_oauth_load(o, vendor, vuid, t, err);
    uint64_t rnd;

    if (rc != CM_OK) {
        return rc;
    }
    if (t->state != PROC_TOKEN_OK) {
        *result = t->state == PROC_TOKEN_RECONSENT ? PROC_REFRESH_RECONSENT : PROC_REFRESH_FAILED;
        return cm_err_set(err, CM_OK, "connection no longer active");
    }
    cm_random_bytes(&rnd, sizeof(rnd));
    if (t->generation != seen_gen ||
        (!force && !proc_oauth_due(t, cm_now_us(), o->cfg->refresh_margin_s, rnd))) {
        *result = PROC_REFRESH_DONE; /* another replica refreshed meanwhile */
        return CM_OK;
    }
    if (t->refresh == NULL) {
        *result = PROC_REFRESH_RECONSENT; /* nothing to refresh with (e.g. Polar: re-consent) */
        return mark_reconsent(o, vendor, vuid, t->generation, err);
    }
    rc = token_request(o, v, t, &access, &refresh, &expires_in, &invalid, err);
    if (rc != CM_OK) {
        if (invalid) {
            *result = PROC_REFRESH_RECONSENT;
            return mark_reconsent(o, vendor, vuid, t->generation, err);
        }
        *result = PROC_REFRESH_FAILED;
        return CM_OK;
    }
    /* Commit first: a rotated refresh token must be durable before anything uses the pair. */
    int64_t exp = expires_in > 0 ? cm_now_us() + (int64_t)expires_in * 1000000 : 0;
    rc = store_tokens(o, vendor, vuid, t, access, refresh != NULL ? refresh : t->refresh, exp,
                      &stored, err);
    if (rc == CM_OK && stored) {
        char *keep = refresh != NULL ? refresh : cm_xstrdup(t->refresh);
        proc_tokens_fini(t);
        rc = proc_oauth_load(o, vendor, vuid, t, err);
        memset(keep, 0, strlen(keep));
        free(keep);
        refresh = NULL;
        *result = PROC_REFRESH_DONE;
    } else if (rc == CM_OK) {
        *result = PROC_REFRESH_FAILED;
        cm_err_set(err, CM_OK, "connection changed during the refresh");
    }
    memset(access, 0, strlen(access)); /* token_request() set it: it returned CM_OK */
    free(access);
    if (refresh != NULL) {
        memset(refresh, 0, strlen(refresh));
        free(refresh);
    }
    return rc;
}

enum cm_rc proc_oauth_refresh(struct proc_oauth *o, enum proc_api_vendor v, const char *vendor,
                              const char *vendor_user_id, bool force, struct proc_tokens *t,
                              enum proc_refresh_result *result, struct cm_err *err)
{
    char key[400], token[33], lease[24];
    int64_t seen_gen = t->generation;
    enum cm_rc rc = CM_OK;

    lock_key(vendor, vendor_user_id, key, sizeof(key));
    snprintf(lease, sizeof(lease), "%ld", o->cfg->refresh_lock_ms);
    *result = PROC_REFRESH_FAILED;
    for (int round = 0; round < MAX_ROUNDS; round++) {
        const char *set[] = { "SET", key, token, "NX", "PX", lease };
        redisReply *r;

        cm_random_id(token);
        r = redis_cmd(o, err, 6, set);
        if (r == NULL) {
            return CM_RETRY;
        }
        bool got = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (got) {
            rc = refresh_locked(o, v, vendor, vendor_user_id, force, seen_gen, t, result, err);
            const char *del[] = { "EVAL", unlock_lua, "1", key, token };
            struct cm_err uerr;
            freeReplyObject(redis_cmd(o, &uerr, 5, del));
            return rc;
        }
        /* Someone else refreshes: wait for the lock to go, then read what they stored. */
        int64_t until = cm_mono_us() + (o->cfg->refresh_lock_ms + 500) * 1000;
        for (;;) {
            const char *get[] = { "EXISTS", key };
            r = redis_cmd(o, err, 2, get);
            if (r == NULL) {
                return CM_RETRY;
            }
            bool held = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
            freeReplyObject(r);
            if (!held || cm_mono_us() > until) {
                break;
            }
            sleep_ms(WAIT_SLICE_MS);
        }
        if ((rc = proc_oauth_load(o, vendor, vendor_user_id, t, err)) != CM_OK) {
            return rc;
        }
        if (t->state == PROC_TOKEN_RECONSENT) {
            *result = PROC_REFRESH_RECONSENT;
            return CM_OK;
        }
        if (t->state == PROC_TOKEN_OK && t->generation != seen_gen) {
            *result = PROC_REFRESH_DONE;
            return CM_OK;
        }
        if (t->state != PROC_TOKEN_OK) {
            return CM_OK;
        }
    }
    cm_err_set(err, CM_OK, "refresh lock stayed busy");
    return CM_OK;
}

/* ---- rate budgets ---- */

enum cm_rc proc_oauth_rate_take(struct proc_oauth *o, enum proc_api_vendor v,
                                const char *vendor_user_id, int64_t *wait_ms, struct cm_err *err)
{
    const char *vendor = proc_api_vendor_name(v);
    char k1[64], k2[400], k3[64], k4[400], now[24], c1[24], r1[32], c2[24], r2[32];
    redisReply *r;

    snprintf(k1, sizeof(k1), "rl:%s:app", vendor);
    snprintf(k2, sizeof(k2), "rl:%s:user:%s", vendor, vendor_user_id);
    snprintf(k3, sizeof(k3), "rl:%s:app:block", vendor);
    snprintf(k4, sizeof(k4), "rl:%s:user:%s:block", vendor, vendor_user_id);
    snprintf(now, sizeof(now), "%" PRId64, cm_now_ms());
    snprintf(c1, sizeof(c1), "%.0f", budgets[v].app_n);
    snprintf(r1, sizeof(r1), "%.9g", budgets[v].app_n / (budgets[v].app_window_s * 1000));
    snprintf(c2, sizeof(c2), "%.0f", budgets[v].user_n);
    snprintf(r2, sizeof(r2), "%.9g", budgets[v].user_n / (budgets[v].user_window_s * 1000));
    const char *argv[] = { "EVAL", bucket_lua, "4", k1, k2, k3, k4, now, c1, r1, c2, r2 };
    r = redis_cmd(o, err, (int)CM_ARRAY_LEN(argv), argv);
    if (r == NULL) {
        return CM_RETRY;
    }
    *wait_ms = r->type == REDIS_REPLY_INTEGER ? r->integer : 1000;
    freeReplyObject(r);
    return CM_OK;
}

void proc_oauth_rate_block(struct proc_oauth *o, enum proc_api_vendor v,
                           const char *vendor_user_id, int64_t wait_ms)
{
    const char *vendor = proc_api_vendor_name(v);
    char key[400], px[24];
    struct cm_err err;

    if (wait_ms <= 0) {
        return;
    }
    if (v == PROC_API_FITBIT) {
        snprintf(key, sizeof(key), "rl:%s:user:%s:block", vendor, vendor_user_id);
    } else {
        snprintf(key, sizeof(key), "rl:%s:app:block", vendor);
    }
    snprintf(px, sizeof(px), "%" PRId64, wait_ms);
    const char *argv[] = { "SET", key, "1", "PX", px };
    freeReplyObject(redis_cmd(o, &err, 5, argv));
}

/* ---- stored events of a deleted vendor object ---- */

/* The rows of a (source_record_id, metric, start_time) query as a "<vendor>.deleted" body. */
static enum cm_rc deleted_body(PGresult *res, struct cm_buf *out, size_t *n, struct cm_err *err)
{
    json_t *root = json_object(), *arr = json_array();
    char *text;
    enum cm_rc rc;

    for (int i = 0; i < PQntuples(res); i++) {
        json_t *e = json_object();
        json_object_set_new(e, "source_record_id", json_string(PQgetvalue(res, i, 0)));
        json_object_set_new(e, "metric", json_string(PQgetvalue(res, i, 1)));
        json_object_set_new(e, "start_time", json_string(PQgetvalue(res, i, 2)));
        json_array_append_new(arr, e);
    }
    *n = (size_t)PQntuples(res);
    json_object_set_new(root, "deleted", arr);
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    rc = text != NULL ? cm_buf_append_str(out, text) : CM_INVALID;
    free(text);
    return rc == CM_OK ? CM_OK : cm_err_set(err, CM_INVALID, "deleted record too large");
}

/* Run one query of deleted events and turn its rows into the body. */
static enum cm_rc deleted_query(struct proc_oauth *o, const char *sql, int nparams,
                                const char *const *params, struct cm_buf *out, size_t *n,
                                struct cm_err *err)
{
    enum cm_rc rc = pg_ready(o, err);
    PGresult *res;

    *n = 0;
    if (rc != CM_OK) {
        return rc;
    }
    res = PQexecParams(o->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pg_failed(o, res, "events of a deleted object", err);
    } else {
        rc = deleted_body(res, out, n, err);
    }
    PQclear(res);
    return rc;
}

#define DELETED_COLUMNS                                                                          \
    "SELECT source_record_id, metric,"                                                           \
    " to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"               \
    " FROM biometric_events WHERE vendor = $1 AND user_id = $2 AND NOT deleted"

enum cm_rc proc_oauth_object_events(struct proc_oauth *o, const char *vendor, const char *user_id,
                                    const char *object_id, struct cm_buf *out, size_t *n,
                                    struct cm_err *err)
{
    static const char sql[] = DELETED_COLUMNS
        " AND (source_record_id = $3 OR source_record_id LIKE $4) LIMIT 100000";
    char like[300];
    const char *params[4] = { vendor, user_id, object_id, like };

    /* LIKE pattern "<id>#%" with the id's own % _ \ escaped */
    size_t k = 0;
    for (const char *p = object_id; *p != '\0' && k + 4 < sizeof(like); p++) {
        if (*p == '%' || *p == '_' || *p == '\\') {
            like[k++] = '\\';
        }
        like[k++] = *p;
    }
    like[k++] = '#';
    like[k++] = '%';
    like[k] = '\0';
    return deleted_query(o, sql, 4, params, out, n, err);
}

enum cm_rc proc_oauth_window_events(struct proc_oauth *o, const char *vendor, const char *user_id,
                                    const char *like1, const char *like2, int64_t start_us,
                                    int64_t end_us, struct cm_buf *out, size_t *n,
                                    struct cm_err *err)
{
    static const char sql[] = DELETED_COLUMNS
        " AND (source_record_id LIKE $3 OR source_record_id LIKE $4)"
        " AND start_time >= 'epoch'::timestamptz + $5::bigint * interval '1 microsecond'"
        " AND (start_time < 'epoch'::timestamptz + $6::bigint * interval '1 microsecond'"
        "      OR start_time = 'epoch'::timestamptz + $5::bigint * interval '1 microsecond')"
        " LIMIT 100000";
    char a[24], b[24];
    const char *params[6] = { vendor, user_id, like1, like2, a, b };

    snprintf(a, sizeof(a), "%" PRId64, start_us);
    snprintf(b, sizeof(b), "%" PRId64, end_us);
    return deleted_query(o, sql, 6, params, out, n, err);
}
