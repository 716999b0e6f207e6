/* The vendor table: for each webhook vendor its route shape, how it authenticates, which body type
 * it sends, which handshake it needs and which status it expects once the record is durable.
 * Thread: read-only static data; any thread. */
#ifndef GW_VENDOR_H
#define GW_VENDOR_H

#include "gw_verify.h"

struct gw_cfg;

enum gw_body_kind {
    GW_BODY_JSON, /* application/json (parameters such as charset allowed) */
    GW_BODY_FORM, /* application/x-www-form-urlencoded (Withings) */
};

enum gw_handshake_kind {
    GW_HANDSHAKE_NONE,
    GW_HANDSHAKE_OURA,     /* GET ?verification_token&challenge -> {"challenge":...} */
    GW_HANDSHAKE_FITBIT,   /* GET ?verify=CODE -> 204 / 404 */
    GW_HANDSHAKE_STRAVA,   /* GET ?hub.mode&hub.verify_token&hub.challenge -> {"hub.challenge"} */
    GW_HANDSHAKE_WITHINGS, /* HEAD (or GET) -> 200 */
};

/* Bodies the gateway answers itself instead of enqueueing. */
enum gw_control_kind {
    GW_CONTROL_NONE,
    GW_CONTROL_POLAR_PING,     /* {"event":"PING"} -> 200 */
    GW_CONTROL_GOOGLE_VERIFY,  /* {"type":"verification"} -> 201 */
};

struct gw_vendor {
    const char *name;
    unsigned ok_status;      /* answered once the record is durable */
    enum gw_body_kind body;
    bool path_token;         /* reached at /webhooks/{name}/{token} */
    size_t token_off;        /* offsetof(struct gw_cfg, token_*) when path_token */
    size_t need_off[2];      /* cfg string fields that must be set to enable the vendor */
    size_t n_need;
    enum gw_verdict (*verify)(const struct gw_cfg *cfg, const struct gw_verify_req *r);
    enum gw_handshake_kind handshake;
    enum gw_control_kind control;
    const char *allow;       /* Allow header for 405 */
};

/* Vendor by route name, or NULL. */
const struct gw_vendor *gw_vendor_find(const char *name, size_t len);
/* All vendors, in table order. */
const struct gw_vendor *gw_vendor_at(size_t i);
size_t gw_vendor_count(void);

/* true when every setting the vendor needs is present. */
bool gw_vendor_enabled(const struct gw_vendor *v, const struct gw_cfg *cfg);
/* The configured path token (NULL when the vendor has none). */
const char *gw_vendor_token(const struct gw_vendor *v, const struct gw_cfg *cfg);

/* Request headers copied into the RawWebhook (lower-case, non-secret). Never signatures,
 * Authorization or cookies. NULL-terminated. */
extern const char *const gw_vendor_kept_headers[];

/* Whether `body` is the vendor's control message (small JSON object; only the one key is read, no
 * health data is parsed). */
bool gw_vendor_is_control(enum gw_control_kind kind, const uint8_t *body, size_t len);

/* Whether a Content-Type header value is acceptable for the body kind; NULL is not. */
bool gw_vendor_content_type_ok(enum gw_body_kind kind, const char *ctype);

/* Whether a Content-Length header value declares more than max bytes (NULL: not declared). */
bool gw_vendor_declared_too_large(const char *content_length, size_t max);

/* What the path and method of a request call for, before the body is read (pure; the request
 * layer adds draining, size and capacity checks for webhooks). */
enum gw_route_kind {
    GW_ROUTE_REJECT,    /* status/reason: 404 (unknown path, wrong token, disabled) or 405 */
    GW_ROUTE_HANDSHAKE, /* GET/HEAD to a vendor with a handshake */
    GW_ROUTE_WEBHOOK,   /* POST to a vendor route (enabled tells whether it is configured) */
};

struct gw_route {
    enum gw_route_kind kind;
    const struct gw_vendor *vendor; /* NULL when the path names no vendor */
    bool enabled;
    unsigned status;                /* GW_ROUTE_REJECT only */
    const char *reason;             /* GW_ROUTE_REJECT only: static short code */
    const char *allow;              /* Allow header of a 405, else NULL */
};

/* Route `url` (path without the query) and `method`. A wrong or missing path token answers like
 * an unknown path; tokens are compared in constant time. */
void gw_route_decide(const struct gw_cfg *cfg, const char *url, const char *method,
                     struct gw_route *out);

#endif
