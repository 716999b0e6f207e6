/* The gateway's configuration: one table (gw_cfg_fields) read from the environment at start-up,
 * plus values derived from it (the decoded Standard Webhooks key).
 * Ownership: struct gw_cfg lives in caller storage; gw_cfg_fini() releases its strings.
 * Thread: load once in main() (or a test fixture); read-only afterwards, from any thread. */
#ifndef GW_CFG_H
#define GW_CFG_H

#include "cm/cfg.h"
#include "cm/common.h"

#define GW_APP_KEY_MAX 128

struct gw_cfg {
    char *brokers;
    long http_port;
    size_t max_body;
    long max_in_flight;
    long tolerance_s;
    long delivery_timeout_ms;
    char *spool_dir;        /* "" disables the spool (then Kafka down means 503) */
    size_t spool_max_bytes;

    /* HTTP limits (README "Security"). */
    long http_max_connections;
    long http_per_ip_connections;   /* 0 = no per-address limit */
    long http_connection_timeout_s; /* idle time before a connection is closed */
    size_t http_max_header_bytes;   /* request line + headers; larger gets 431 */

    /* Per-vendor secrets; an empty string means "not configured" (the vendor answers 404). */
    char *secret_whoop;
    char *secret_oura;
    char *secret_polar;
    char *secret_fitbit;
    char *secret_terra;
    char *secret_app; /* whsec_<base64> */
    char *token_garmin;
    char *token_withings;
    char *token_strava;
    char *garmin_client_id;
    char *oura_verification_token;
    char *fitbit_verify_code;
    char *strava_verify_token;
    char *google_health_authorization;

    /* Derived by gw_cfg_derive(): base64-decoded part of secret_app after "whsec_". */
    uint8_t app_key[GW_APP_KEY_MAX];
    size_t app_key_len;
};

extern const struct cm_cfg_field gw_cfg_fields[];

/* Zero `cfg`, load the table from the environment and derive the computed values.
 * Returns CM_OK, or CM_INVALID with `err` naming the variable (never its value). */
enum cm_rc gw_cfg_load(struct gw_cfg *cfg, struct cm_err *err);

/* main(): --help / --print-config / load; prints one line naming the bad variable and exits 2. */
void gw_cfg_load_or_exit(struct gw_cfg *cfg, int argc, char **argv);

/* Validate and derive computed values (the app key). Call after filling the string fields by hand
 * (tests). CM_INVALID names the variable. */
enum cm_rc gw_cfg_derive(struct gw_cfg *cfg, struct cm_err *err);

/* Decode a Standard Webhooks secret "whsec_<base64>" into key (cap bytes). */
enum cm_rc gw_cfg_decode_app_secret(const char *secret, uint8_t *key, size_t cap, size_t *len,
                                    struct cm_err *err);

/* true when a string setting is present (non-NULL, non-empty). */
bool gw_cfg_is_set(const char *s);

void gw_cfg_fini(struct gw_cfg *cfg); /* NULL-safe */

#endif
