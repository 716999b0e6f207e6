/* Fuzz target: the gateway's request routing and header handling, the pure part of
 * gateway/gw_request.c: gw_route_decide (path, path token, method), the vendor handshakes
 * (gw_handshake_answer on the query string), the Content-Type and Content-Length checks and
 * the control-message test on the body.
 * Input: a method line, a URL line (path and optional ?query), "name: value" header lines, an
 * empty line, the body.
 * Invariants: rejections are 404 or 405 (405 with an Allow list); a route names a vendor only
 * for /webhooks/<vendor> (plus exactly the configured token for token vendors); handshakes only
 * for GET/HEAD of vendors that have one, and their answers are valid JSON of printable ASCII
 * that echo a challenge only after the right token; webhooks only for POST; an accepted
 * Content-Type really is the vendor's media type; a declared size is compared correctly. */
#include <jansson.h>

#include "fuzz_util.h"
#include "gw_cfg.h"
#include "gw_handshake.h"
#include "gw_vendor.h"

#define MAX_BODY 1024

static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);

    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(hay + i, needle, m) == 0) {
            return true;
        }
    }
    return false;
}

static struct gw_cfg cfg;

struct query {
    size_t n;
    char *key[16];
    char *val[16];
};

static const char *lookup_query(void *arg, const char *name)
{
    const struct query *q = arg;

    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->key[i], name) == 0) {
            return q->val[i];
        }
    }
    return NULL;
}

static void parse_query(struct query *q, char *s)
{
    q->n = 0;
    while (s != NULL && *s != '\0' && q->n < 16) {
        char *amp = strchr(s, '&');
        char *eq;
        if (amp != NULL) {
            *amp = '\0';
        }
        eq = strchr(s, '=');
        q->key[q->n] = s;
        q->val[q->n] = eq != NULL ? eq + 1 : (char *)"";
        if (eq != NULL) {
            *eq = '\0';
        }
        q->n++;
        s = amp != NULL ? amp + 1 : NULL;
    }
}

static char *take_line(const uint8_t **p, size_t *left)
{
    const uint8_t *nl = memchr(*p, '\n', *left);
    size_t n = nl != NULL ? (size_t)(nl - *p) : *left;
    char *s = malloc(n + 1);

    memcpy(s, *p, n);
    s[n] = '\0';
    *p += nl != NULL ? n + 1 : n;
    *left -= nl != NULL ? n + 1 : n;
    return s;
}

static void check_route(const struct gw_route *rt, const char *path, const char *method)
{
    char want[160];

    FUZZ_CHECK(rt->kind == GW_ROUTE_REJECT || rt->vendor != NULL, "route without a vendor");
    if (rt->vendor == NULL) {
        FUZZ_CHECK(rt->status == 404, "unknown path answered other than 404");
        return;
    }
    if (rt->kind == GW_ROUTE_REJECT) {
        FUZZ_CHECK(rt->status == 404 || rt->status == 405, "rejection other than 404/405");
        FUZZ_CHECK(rt->reason != NULL && rt->reason[0] != '\0', "rejection without a reason");
        FUZZ_CHECK(rt->status != 405 || (rt->allow != NULL && rt->vendor != NULL),
                   "405 without an Allow list");
    }
    if (rt->vendor != NULL) {
        size_t n = (size_t)snprintf(want, sizeof(want), "/webhooks/%s", rt->vendor->name);
        FUZZ_CHECK(strncmp(path, want, n) == 0 && (path[n] == '\0' || path[n] == '/'),
                   "vendor routed from a path that does not name it");
    }
    if (rt->kind == GW_ROUTE_HANDSHAKE) {
        FUZZ_CHECK(strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0,
                   "handshake for a method other than GET/HEAD");
        FUZZ_CHECK(rt->vendor->handshake != GW_HANDSHAKE_NONE, "handshake for a vendor without");
    }
    if (rt->kind == GW_ROUTE_WEBHOOK) {
        FUZZ_CHECK(strcmp(method, "POST") == 0, "webhook for a method other than POST");
    }
    if (rt->kind != GW_ROUTE_REJECT && rt->vendor->path_token) {
        snprintf(want, sizeof(want), "/webhooks/%s/%s", rt->vendor->name,
                 gw_vendor_token(rt->vendor, &cfg));
        FUZZ_CHECK(strcmp(path, want) == 0, "token vendor routed without its exact token");
    } else if (rt->kind != GW_ROUTE_REJECT) {
        snprintf(want, sizeof(want), "/webhooks/%s", rt->vendor->name);
        FUZZ_CHECK(strcmp(path, want) == 0, "vendor routed from a longer path");
    }
}

static void check_handshake(const struct gw_route *rt, struct query *q)
{
    struct gw_reply reply;
    json_t *j;

    memset(&reply, 0, sizeof(reply));
    gw_handshake_answer(rt->vendor->handshake, &cfg, lookup_query, q, &reply);
    FUZZ_CHECK(reply.status == 200 || reply.status == 204 || reply.status == 400 ||
                   reply.status == 401 || reply.status == 404,
               "handshake status outside 200/204/400/401/404");
    FUZZ_CHECK(reply.reason != NULL && reply.ctype != NULL, "handshake reply incomplete");
    for (const char *c = reply.body; *c != '\0'; c++) {
        FUZZ_CHECK(*c >= 0x20 && *c <= 0x7e, "handshake body not printable ASCII");
    }
    if (reply.body[0] != '\0') {
        j = json_loads(reply.body, 0, NULL);
        FUZZ_CHECK(j != NULL && json_is_object(j), "handshake body is not a JSON object");
        json_decref(j);
    }
    if (reply.status == 200 && rt->vendor->handshake == GW_HANDSHAKE_OURA) {
        const char *tok = lookup_query(q, "verification_token");
        FUZZ_CHECK(tok != NULL && strcmp(tok, cfg.oura_verification_token) == 0,
                   "challenge echoed without the verification token");
    }
    if (reply.status == 200 && rt->vendor->handshake == GW_HANDSHAKE_STRAVA) {
        const char *tok = lookup_query(q, "hub.verify_token");
        FUZZ_CHECK(tok != NULL && strcmp(tok, cfg.strava_verify_token) == 0,
                   "challenge echoed without the verify token");
    }
    if (reply.status == 204) {
        const char *code = lookup_query(q, "verify");
        FUZZ_CHECK(code != NULL && strcmp(code, cfg.fitbit_verify_code) == 0,
                   "fitbit verification without the code");
    }
}

static void check_headers(const struct fuzz_headers *h, const uint8_t *body, size_t len)
{
    const char *ct = fuzz_headers_get((void *)h, "Content-Type");
    const char *cl = fuzz_headers_get((void *)h, "Content-Length");

    for (int kind = GW_BODY_JSON; kind <= GW_BODY_FORM; kind++) {
        const char *want = kind == GW_BODY_FORM ? "application/x-www-form-urlencoded"
                                                : "application/json";
        if (gw_vendor_content_type_ok((enum gw_body_kind)kind, ct)) {
            const char *t = ct + strspn(ct, " \t");
            char end = t[strlen(want)];
            FUZZ_CHECK(strncasecmp(t, want, strlen(want)) == 0 &&
                           (end == '\0' || end == ';' || end == ' ' || end == '\t'),
                       "content type accepted that is not the vendor's media type");
        }
    }
    if (cl != NULL && cl[0] != '\0' && strspn(cl, "0123456789") == strlen(cl) &&
        strlen(cl) <= 18) {
        unsigned long long v = strtoull(cl, NULL, 10);
        FUZZ_CHECK(gw_vendor_declared_too_large(cl, MAX_BODY) == (v > MAX_BODY),
                   "declared size compared wrongly");
    }
    if (gw_vendor_is_control(GW_CONTROL_POLAR_PING, body, len)) {
        FUZZ_CHECK(len <= 4096 && contains(body, len, "PING"), "PING without PING");
    }
    if (gw_vendor_is_control(GW_CONTROL_GOOGLE_VERIFY, body, len)) {
        FUZZ_CHECK(len <= 4096 && contains(body, len, "verification"),
                   "verification without verification");
    }
    FUZZ_CHECK(!gw_vendor_is_control(GW_CONTROL_NONE, body, len), "control kind none matched");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t left = size;
    struct fuzz_headers h;
    struct gw_route rt;
    struct query q;
    const uint8_t *body;
    size_t head_len, body_len;
    char *method, *url, *qs;

    cfg.secret_whoop = "s";
    cfg.secret_oura = "s";
    cfg.secret_polar = "s";
    cfg.secret_fitbit = "s";
    cfg.secret_terra = "s";
    cfg.google_health_authorization = "Bearer g";
    cfg.garmin_client_id = "garmin-client";
    cfg.token_garmin = "garmin-token-0123";
    cfg.token_withings = "withings-token-0123";
    cfg.token_strava = "strava-token-0123";
    cfg.oura_verification_token = "oura-vt";
    cfg.fitbit_verify_code = "fitbit-code";
    cfg.strava_verify_token = "strava-vt";
    /* secret_app unset: the app route exercises the disabled-vendor branch. */

    method = take_line(&p, &left);
    url = take_line(&p, &left);
    fuzz_split(p, left, &head_len, &body, &body_len);
    fuzz_headers_parse(&h, (const char *)p, head_len);
    qs = strchr(url, '?');
    if (qs != NULL) {
        *qs++ = '\0';
    }
    gw_route_decide(&cfg, url, method, &rt);
    check_route(&rt, url, method);
    if (rt.kind == GW_ROUTE_HANDSHAKE) {
        parse_query(&q, qs);
        check_handshake(&rt, &q);
    }
    check_headers(&h, body, body_len);
    fuzz_headers_fini(&h);
    free(method);
    free(url);
    return 0;
}
