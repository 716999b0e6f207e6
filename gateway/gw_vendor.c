/* The vendor table (vendors.md section 15): route shape, authentication, body type, handshake and
 * success status per vendor. Adding a vendor is one row here plus, if it signs differently, one
 * verifier in gw_verify.c. */
#include "gw_vendor.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cm/records.h"
#include "gw_cfg.h"

#define WEBHOOKS_PREFIX "/webhooks/"
#define CONTROL_BODY_MAX 4096 /* control messages are tiny; larger bodies are never one */
#define CFG_OFF(f) offsetof(struct gw_cfg, f)

static const struct gw_vendor vendors[] = {
    {.name = "whoop", .ok_status = 200, .body = GW_BODY_JSON,
     .need_off = {CFG_OFF(secret_whoop)}, .n_need = 1, .verify = gw_verify_whoop,
     .allow = "POST"},
    {.name = "oura", .ok_status = 200, .body = GW_BODY_JSON,
     .need_off = {CFG_OFF(secret_oura)}, .n_need = 1, .verify = gw_verify_oura,
     .handshake = GW_HANDSHAKE_OURA, .allow = "GET, HEAD, POST"},
    {.name = "polar", .ok_status = 200, .body = GW_BODY_JSON,
     .need_off = {CFG_OFF(secret_polar)}, .n_need = 1, .verify = gw_verify_polar,
     .control = GW_CONTROL_POLAR_PING, .allow = "POST"},
    /* Fitbit expects 204 within 5 s. */
    {.name = "fitbit", .ok_status = 204, .body = GW_BODY_JSON,
     .need_off = {CFG_OFF(secret_fitbit)}, .n_need = 1, .verify = gw_verify_fitbit,
     .handshake = GW_HANDSHAKE_FITBIT, .allow = "GET, HEAD, POST"},
    /* Google documents 201 only for the verification POST; notifications get 200. */
    {.name = "google_health", .ok_status = 200, .body = GW_BODY_JSON,
     .need_off = {CFG_OFF(google_health_authorization)}, .n_need = 1,
     .verify = gw_verify_google_health, .control = GW_CONTROL_GOOGLE_VERIFY, .allow = "POST"},
    {.name = "withings", .ok_status = 200, .body = GW_BODY_FORM, .path_token = true,
     .token_off = CFG_OFF(token_withings), .need_off = {CFG_OFF(token_withings)}, .n_need = 1,
     .verify = gw_verify_path_only, .handshake = GW_HANDSHAKE_WITHINGS,
     .allow = "GET, HEAD, POST"},
    {.name = "garmin", .ok_status = 200, .body = GW_BODY_JSON, .path_token = true,
     .token_off = CFG_OFF(token_garmin),
     .need_off = {CFG_OFF(token_garmin), CFG_OFF(garmin_client_id)}, .n_need = 2,
     .verify = gw_verify_garmin, .allow = "POST"},
    {.name = "strava", .ok_status = 200, .body = GW_BODY_JSON, .path_token = true,
     .token_off = CFG_OFF(token_strava), .need_off = {CFG_OFF(token_strava)}, .n_need = 1,
     .verify = gw_verify_path_only, .handshake = GW_HANDSHAKE_STRAVA, .allow = "GET, HEAD, POST"},
    {.name = "terra", .ok_status = 200, .body = GW_BODY_JSON,
     .need_off = {CFG_OFF(secret_terra)}, .n_need = 1, .verify = gw_verify_terra,
     .allow = "POST"},
    {.name = "app", .ok_status = 200, .body = GW_BODY_JSON,
     .need_off = {CFG_OFF(secret_app)}, .n_need = 1, .verify = gw_verify_app, .allow = "POST"},
};

const char *const gw_vendor_kept_headers[] = {
    "content-type",
    "user-agent",
    "x-whoop-signature-timestamp",
    "x-oura-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "garmin-client-id",
    NULL,
};

const struct gw_vendor *gw_vendor_find(const char *name, size_t len)
{
    for (size_t i = 0; i < CM_ARRAY_LEN(vendors); i++) {
        if (strlen(vendors[i].name) == len && memcmp(vendors[i].name, name, len) == 0) {
            return &vendors[i];
        }
    }
    return NULL;
}

const struct gw_vendor *gw_vendor_at(size_t i)
{
    return i < CM_ARRAY_LEN(vendors) ? &vendors[i] : NULL;
}

size_t gw_vendor_count(void)
{
    return CM_ARRAY_LEN(vendors);
}

static const char *cfg_string(const struct gw_cfg *cfg, size_t off)
{
    return *(char *const *)(const void *)((const char *)cfg + off);
}

bool gw_vendor_enabled(const struct gw_vendor *v, const struct gw_cfg *cfg)
{
    for (size_t i = 0; i < v->n_need; i++) {
        if (!gw_cfg_is_set(cfg_string(cfg, v->need_off[i]))) {
            return false;
        }
    }
    /* The app key is derived; a set-but-undecodable secret never gets this far (start-up fails). */
    if (v->verify == gw_verify_app && cfg->app_key_len == 0) {
        return false;
    }
    return true;
}

const char *gw_vendor_token(const struct gw_vendor *v, const struct gw_cfg *cfg)
{
    return v->path_token ? cfg_string(cfg, v->token_off) : NULL;
}

bool gw_vendor_content_type_ok(enum gw_body_kind kind, const char *ctype)
{
    const char *want = kind == GW_BODY_FORM ? "application/x-www-form-urlencoded"
                                            : "application/json";
    size_t n;

    /* The value is recorded as an Avro string: parameters that are not UTF-8 are refused. */
    if (ctype == NULL || !cm_utf8_valid(ctype, strlen(ctype))) {
        return false;
    }
    while (*ctype == ' ' || *ctype == '\t') {
        ctype++;
    }
    /* The media type ends at ';' (parameters such as charset are fine) or trailing blanks. */
    n = strcspn(ctype, "; \t");
    return n == strlen(want) && strncasecmp(ctype, want, n) == 0;
}

bool gw_vendor_is_control(enum gw_control_kind kind, const uint8_t *body, size_t len)
{
    const char *key;
    const char *want;
    json_t *root;
    json_t *v;
    bool match;

    switch (kind) {
    case GW_CONTROL_POLAR_PING:
        key = "event";
        want = "PING";
        break;
    case GW_CONTROL_GOOGLE_VERIFY:
        key = "type";
        want = "verification";
        break;
    case GW_CONTROL_NONE:
    default:
        return false;
    }
    if (len == 0 || len > CONTROL_BODY_MAX) {
        return false;
    }
    root = json_loadb((const char *)body, len, 0, NULL);
    if (root == NULL) {
        return false;
    }
    v = json_is_object(root) ? json_object_get(root, key) : NULL;
    match = json_is_string(v) && strcmp(json_string_value(v), want) == 0;
    json_decref(root);
    return match;
}

bool gw_vendor_declared_too_large(const char *content_length, size_t max)
{
    unsigned long long v;
    char *end;

    if (content_length == NULL) {
        return false;
    }
    v = strtoull(content_length, &end, 10);
    return end != content_length && v > (unsigned long long)max;
}

/* Constant-time path token check. Both lengths are known to the attacker only through ours. */
static bool token_ok(const char *got, size_t gotlen, const char *want)
{
    return want != NULL && gotlen > 0 && cm_ct_equal(got, gotlen, want, strlen(want));
}

static void route_reject(struct gw_route *out, unsigned status, const char *reason)
{
    out->kind = GW_ROUTE_REJECT;
    out->status = status;
    out->reason = reason;
}

void gw_route_decide(const struct gw_cfg *cfg, const char *url, const char *method,
                     struct gw_route *out)
{
    const struct gw_vendor *v;
    const char *seg;
    const char *rest;

    memset(out, 0, sizeof(*out));
    if (strncmp(url, WEBHOOKS_PREFIX, strlen(WEBHOOKS_PREFIX)) != 0) {
        route_reject(out, 404, "not_found");
        return;
    }
    seg = url + strlen(WEBHOOKS_PREFIX);
    rest = seg + strcspn(seg, "/");
    v = gw_vendor_find(seg, (size_t)(rest - seg));
    if (v == NULL) {
        route_reject(out, 404, "not_found");
        return;
    }
    out->vendor = v;
    out->enabled = gw_vendor_enabled(v, cfg);
    if (v->path_token) {
        const char *tok = rest[0] == '/' ? rest + 1 : rest;
        if (!out->enabled) {
            route_reject(out, 404, "vendor_not_configured");
            return;
        }
        if (rest[0] != '/' || strchr(tok, '/') != NULL ||
            !token_ok(tok, strlen(tok), gw_vendor_token(v, cfg))) {
            route_reject(out, 404, "not_found");
            return;
        }
    } else if (rest[0] != '\0') {
        route_reject(out, 404, "not_found");
        return;
    }
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        if (v->handshake == GW_HANDSHAKE_NONE) {
            out->allow = v->allow;
            route_reject(out, 405, "method_not_allowed");
            return;
        }
        out->kind = GW_ROUTE_HANDSHAKE;
        return;
    }
    if (strcmp(method, "POST") != 0) {
        out->allow = v->allow;
        route_reject(out, 405, "method_not_allowed");
        return;
    }
    out->kind = GW_ROUTE_WEBHOOK;
}
