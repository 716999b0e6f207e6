/* Vendor verification handshakes answered by the gateway itself (nothing is enqueued):
 * Oura GET ?verification_token&challenge, Fitbit GET ?verify=, Strava GET ?hub.*, Withings HEAD.
 * Pure: query arguments come through a lookup callback, the answer is filled into caller storage.
 * Echoed challenges are limited to printable ASCII and GW_CHALLENGE_MAX bytes, and JSON-escaped.
 * Thread: any. */
#ifndef GW_HANDSHAKE_H
#define GW_HANDSHAKE_H

#include "gw_vendor.h"

#define GW_CHALLENGE_MAX 512

struct gw_reply {
    unsigned status;
    const char *ctype;   /* static */
    const char *reason;  /* static short code for logs and metrics ("ok", "bad_token", ...) */
    char body[2 * GW_CHALLENGE_MAX + 64];
};

void gw_handshake_answer(enum gw_handshake_kind kind, const struct gw_cfg *cfg, gw_lookup_fn query,
                         void *arg, struct gw_reply *out);

/* Fill `out` with {"error":"<reason>"} and the status. */
void gw_handshake_error(struct gw_reply *out, unsigned status, const char *reason);

#endif
