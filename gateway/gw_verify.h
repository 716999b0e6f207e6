/* Webhook authentication: one verifier per vendor, all with the same shape, each checking the
 * vendor's signature (or shared secret) over the RAW body bytes in constant time and, where the
 * vendor signs a timestamp, the replay window in both directions (stale and future).
 * Verifiers read headers through a lookup callback, so they are pure and testable without HTTP.
 * Thread: any (no shared mutable state). */
#ifndef GW_VERIFY_H
#define GW_VERIFY_H

#include "cm/common.h"

struct gw_cfg;

/* Returns the value of header / query argument `name` (case-insensitive for headers), or NULL. */
typedef const char *(*gw_lookup_fn)(void *arg, const char *name);

struct gw_verify_req {
    gw_lookup_fn header;
    void *header_arg;
    const uint8_t *body;
    size_t body_len;
    int64_t now_ms;   /* wall clock, injected so tests can use the published vectors */
    long tolerance_s; /* replay window, both directions */
};

enum gw_verdict {
    GW_VERIFY_OK = 0,
    GW_VERIFY_UNCONFIGURED, /* the vendor's secret is not set */
    GW_VERIFY_MISSING,      /* a required header is absent */
    GW_VERIFY_MALFORMED,    /* a header is present but cannot be parsed */
    GW_VERIFY_STALE,        /* signed timestamp outside the replay window (past or future) */
    GW_VERIFY_MISMATCH,     /* signature or shared secret does not match */
};

/* Short reason code for responses, logs and metrics: "bad_signature", "stale_timestamp", ... */
const char *gw_verdict_str(enum gw_verdict v);

/* WHOOP: X-WHOOP-Signature = base64(HMAC-SHA256(secret, X-WHOOP-Signature-Timestamp || body)),
 * the timestamp in milliseconds. */
enum gw_verdict gw_verify_whoop(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Oura: x-oura-signature = hex(HMAC-SHA256(secret, x-oura-timestamp || body)); the hex is
 * decoded, so letter case does not matter. The timestamp unit is not documented: values >= 1e11
 * are read as milliseconds, smaller ones as seconds. */
enum gw_verdict gw_verify_oura(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Polar: Polar-Webhook-Signature = hex(HMAC-SHA256(secret, body)). Polar signs no timestamp, so
 * there is no replay window for Polar. */
enum gw_verdict gw_verify_polar(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Fitbit: X-Fitbit-Signature = base64(HMAC-SHA1(secret + "&", body)). No timestamp. */
enum gw_verdict gw_verify_fitbit(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Terra: terra-signature = "t=<unix s>,v1=<hex>[,v1=...]", HMAC-SHA256(secret, t + "." + body);
 * any v1 may match, other schemes are ignored (downgrade protection). */
enum gw_verdict gw_verify_terra(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Companion app, Standard Webhooks: webhook-id, webhook-timestamp (unix s), webhook-signature =
 * space-separated "v1,<base64>" list, HMAC-SHA256(app_key, id + "." + ts + "." + body). */
enum gw_verdict gw_verify_app(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Google Health API: Authorization equals GOOGLE_HEALTH_AUTHORIZATION. The additional ECDSA
 * X-HEALTHAPI-SIGNATURE is not checked (Google's public key location is not documented). */
enum gw_verdict gw_verify_google_health(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Garmin signs nothing: garmin-client-id must equal GARMIN_CLIENT_ID (the path token is checked by
 * the router). */
enum gw_verdict gw_verify_garmin(const struct gw_cfg *cfg, const struct gw_verify_req *r);
/* Withings, Strava: nothing beyond the path token checked by the router. */
enum gw_verdict gw_verify_path_only(const struct gw_cfg *cfg, const struct gw_verify_req *r);

/* Codec helpers (also used by configuration and tests). */
/* Standard base64 with padding (missing padding tolerated); false on any invalid character,
 * bad length or when the result would not fit in cap bytes. */
bool gw_verify_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);
/* Hex of either case; false on odd length, bad digit or overflow of cap. */
bool gw_verify_hex_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);
/* HMAC over the concatenation of nparts buffers. digest: "SHA256" or "SHA1". out holds 64 bytes. */
bool gw_verify_hmac(const char *digest, const void *key, size_t keylen, const void *const *parts,
                    const size_t *lens, size_t nparts, uint8_t *out, size_t *outlen);

#endif
