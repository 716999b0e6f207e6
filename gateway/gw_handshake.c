/* Vendor verification handshakes (vendors.md section 0.3): the GET/HEAD requests a vendor sends
 * when a subscription is created. Tokens are compared in constant time; an unset token disables
 * the handshake (404), so an empty query value can never match an empty setting. */
#include "gw_handshake.h"

#include <stdio.h>
#include <string.h>

#include "gw_cfg.h"

void gw_handshake_error(struct gw_reply *out, unsigned status, const char *reason)
{
    out->status = status;
    out->ctype = "application/json";
    out->reason = reason;
    snprintf(out->body, sizeof(out->body), "{\"error\":\"%s\"}", reason);
}

static bool token_matches(const char *got, const char *want)
{
    return got != NULL && cm_ct_equal(got, strlen(got), want, strlen(want));
}

/* Printable ASCII only, 1..GW_CHALLENGE_MAX bytes: keeps the echo valid JSON and small. */
static bool challenge_ok(const char *c)
{
    size_t n;

    if (c == NULL) {
        return false;
    }
    n = strlen(c);
    if (n == 0 || n > GW_CHALLENGE_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)c[i] < 0x20 || (unsigned char)c[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static void reply_challenge(struct gw_reply *out, const char *key, const char *challenge)
{
    size_t o;
    int n = snprintf(out->body, sizeof(out->body), "{\"%s\":\"", key);

    o = (size_t)n;
    for (const char *p = challenge; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            out->body[o++] = '\\';
        }
        out->body[o++] = *p;
    }
    out->body[o++] = '"';
    out->body[o++] = '}';
    out->body[o] = '\0';
    out->status = 200;
    out->ctype = "application/json";
    out->reason = "ok";
}

static void answer_oura(const struct gw_cfg *cfg, gw_lookup_fn query, void *arg,
                        struct gw_reply *out)
{
    const char *challenge = query(arg, "challenge");

    if (!gw_cfg_is_set(cfg->oura_verification_token)) {
        gw_handshake_error(out, 404, "handshake_not_configured");
    } else if (!token_matches(query(arg, "verification_token"), cfg->oura_verification_token)) {
        gw_handshake_error(out, 401, "bad_verification_token");
    } else if (!challenge_ok(challenge)) {
        gw_handshake_error(out, 400, "bad_challenge");
    } else {
        reply_challenge(out, "challenge", challenge);
    }
}

static void answer_fitbit(const struct gw_cfg *cfg, gw_lookup_fn query, void *arg,
                          struct gw_reply *out)
{
    /* Fitbit sends the right code (expects 204) and a wrong one (expects 404). */
    if (gw_cfg_is_set(cfg->fitbit_verify_code) &&
        token_matches(query(arg, "verify"), cfg->fitbit_verify_code)) {
        out->status = 204;
        out->ctype = "text/plain";
        out->reason = "ok";
        out->body[0] = '\0';
    } else {
        gw_handshake_error(out, 404, "bad_verify_code");
    }
}

static void answer_strava(const struct gw_cfg *cfg, gw_lookup_fn query, void *arg,
                          struct gw_reply *out)
{
    const char *mode = query(arg, "hub.mode");
    const char *challenge = query(arg, "hub.challenge");

    if (!gw_cfg_is_set(cfg->strava_verify_token)) {
        gw_handshake_error(out, 404, "handshake_not_configured");
    } else if (!token_matches(query(arg, "hub.verify_token"), cfg->strava_verify_token)) {
        gw_handshake_error(out, 401, "bad_verify_token");
    } else if (mode == NULL || strcmp(mode, "subscribe") != 0) {
        gw_handshake_error(out, 400, "bad_hub_mode");
    } else if (!challenge_ok(challenge)) {
        gw_handshake_error(out, 400, "bad_challenge");
    } else {
        reply_challenge(out, "hub.challenge", challenge);
    }
}

void gw_handshake_answer(enum gw_handshake_kind kind, const struct gw_cfg *cfg, gw_lookup_fn query,
                         void *arg, struct gw_reply *out)
{
    switch (kind) {
    case GW_HANDSHAKE_OURA:
        answer_oura(cfg, query, arg, out);
        break;
    case GW_HANDSHAKE_FITBIT:
        answer_fitbit(cfg, query, arg, out);
        break;
    case GW_HANDSHAKE_STRAVA:
        answer_strava(cfg, query, arg, out);
        break;
    case GW_HANDSHAKE_WITHINGS:
        /* Withings only checks reachability (the path token was checked by the router). */
        out->status = 200;
        out->ctype = "text/plain";
        out->reason = "ok";
        out->body[0] = '\0';
        break;
    case GW_HANDSHAKE_NONE:
    default:
        gw_handshake_error(out, 405, "method_not_allowed");
        break;
    }
}
