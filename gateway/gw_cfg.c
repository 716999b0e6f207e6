/* Gateway configuration table (DESIGN.md "Configuration") and the few values derived from it.
 * A vendor whose secret or path token is unset is disabled; the Standard Webhooks secret of the
 * companion app must be "whsec_" followed by valid base64, or start-up fails naming the
 * variable. */
#include "gw_cfg.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_verify.h"

#define SECRET (CM_CFG_SECRET)

const struct cm_cfg_field gw_cfg_fields[] = {
    {.env = "KAFKA_BROKERS", .type = CM_CFG_STR, .def = "127.0.0.1:9092",
     .off = offsetof(struct gw_cfg, brokers), .doc = "Kafka bootstrap servers"},
    {.env = "HTTP_PORT", .type = CM_CFG_INT, .def = "8080", .min = 0, .max = 65535,
     .off = offsetof(struct gw_cfg, http_port), .doc = "Webhook listen port (0 = ephemeral)"},
    {.env = "MAX_BODY_BYTES", .type = CM_CFG_SIZE, .def = "1m", .min = 1024, .max = 16L << 20,
     .off = offsetof(struct gw_cfg, max_body), .doc = "Larger request bodies get 413"},
    {.env = "MAX_CONCURRENT_WEBHOOKS", .type = CM_CFG_INT, .def = "40", .min = 1, .max = 100000,
     .off = offsetof(struct gw_cfg, max_in_flight),
     .doc = "Webhooks in flight before answering 503 + Retry-After"},
    {.env = "WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", .type = CM_CFG_INT, .def = "300", .min = 1,
     .max = 86400, .off = offsetof(struct gw_cfg, tolerance_s),
     .doc = "Replay window for signed timestamps, both directions"},
    {.env = "DELIVERY_TIMEOUT_MS", .type = CM_CFG_INT, .def = "5000", .min = 100,
     .max = 300000, .off = offsetof(struct gw_cfg, delivery_timeout_ms),
     .doc = "Longest wait for the Kafka acknowledgement before answering 503"},
    {.env = "SPOOL_DIR", .type = CM_CFG_STR, .def = "/var/lib/auren/spool",
     .off = offsetof(struct gw_cfg, spool_dir),
     .doc = "Durable spool for records Kafka cannot take in time (one per gateway; empty = off)"},
    {.env = "SPOOL_MAX_BYTES", .type = CM_CFG_SIZE, .def = "1g", .min = 1L << 20,
     .max = 1L << 40, .off = offsetof(struct gw_cfg, spool_max_bytes),
     .doc = "Spool size bound; when full, webhooks get 503 + Retry-After"},
    /* HTTP limits (README "Security"). */
    {.env = "HTTP_MAX_CONNECTIONS", .type = CM_CFG_INT, .def = "1024", .min = 16, .max = 60000,
     .off = offsetof(struct gw_cfg, http_max_connections),
     .doc = "Open connections accepted at once; more are refused at accept"},
    {.env = "HTTP_MAX_CONNECTIONS_PER_IP", .type = CM_CFG_INT, .def = "0", .min = 0,
     .max = 60000, .off = offsetof(struct gw_cfg, http_per_ip_connections),
     .doc = "Open connections per client address (0 = no limit; behind an ingress keep 0)"},
    {.env = "HTTP_CONNECTION_TIMEOUT_SECONDS", .type = CM_CFG_INT, .def = "10", .min = 1,
     .max = 600, .off = offsetof(struct gw_cfg, http_connection_timeout_s),
     .doc = "Idle seconds before a connection is closed (slow clients)"},
    {.env = "HTTP_MAX_HEADER_BYTES", .type = CM_CFG_SIZE, .def = "32k", .min = 8192,
     .max = 1L << 20, .off = offsetof(struct gw_cfg, http_max_header_bytes),
     .doc = "Request line and headers; larger requests get 431"},
    {.env = "WEBHOOK_SECRET_WHOOP", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, secret_whoop), .doc = "WHOOP app client secret"},
    {.env = "WEBHOOK_SECRET_OURA", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, secret_oura), .doc = "Oura app client secret"},
    {.env = "WEBHOOK_SECRET_POLAR", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, secret_polar), .doc = "Polar webhook signature_secret_key"},
    {.env = "WEBHOOK_SECRET_FITBIT", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, secret_fitbit), .doc = "Fitbit app client secret"},
    {.env = "WEBHOOK_SECRET_TERRA", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, secret_terra), .doc = "Terra destination signing secret"},
    {.env = "WEBHOOK_SECRET_APP", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, secret_app),
     .doc = "Companion app Standard Webhooks secret (whsec_<base64>)"},
    {.env = "WEBHOOK_PATH_TOKEN_GARMIN", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, token_garmin), .doc = "Path token of /webhooks/garmin/{token}"},
    {.env = "WEBHOOK_PATH_TOKEN_WITHINGS", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, token_withings),
     .doc = "Path token of /webhooks/withings/{token}"},
    {.env = "WEBHOOK_PATH_TOKEN_STRAVA", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, token_strava), .doc = "Path token of /webhooks/strava/{token}"},
    {.env = "GARMIN_CLIENT_ID", .type = CM_CFG_STR,
     .off = offsetof(struct gw_cfg, garmin_client_id),
     .doc = "Expected garmin-client-id request header"},
    {.env = "OURA_VERIFICATION_TOKEN", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, oura_verification_token),
     .doc = "verification_token of the Oura subscription handshake"},
    {.env = "FITBIT_VERIFY_CODE", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, fitbit_verify_code),
     .doc = "Fitbit subscriber verification code"},
    {.env = "STRAVA_VERIFY_TOKEN", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, strava_verify_token),
     .doc = "hub.verify_token of the Strava subscription handshake"},
    {.env = "GOOGLE_HEALTH_AUTHORIZATION", .type = CM_CFG_STR, .flags = SECRET,
     .off = offsetof(struct gw_cfg, google_health_authorization),
     .doc = "Exact Authorization header value sent by the Google Health API"},
    {0},
};

bool gw_cfg_is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

enum cm_rc gw_cfg_decode_app_secret(const char *secret, uint8_t *key, size_t cap, size_t *len,
                                    struct cm_err *err)
{
    static const char prefix[] = "whsec_";
    const char *b64;

    if (strncmp(secret, prefix, sizeof(prefix) - 1) != 0) {
        return cm_err_set(err, CM_INVALID, "WEBHOOK_SECRET_APP must start with whsec_");
    }
    b64 = secret + sizeof(prefix) - 1;
    if (!gw_verify_b64_decode(b64, strlen(b64), key, cap, len) || *len == 0) {
        return cm_err_set(err, CM_INVALID,
                          "WEBHOOK_SECRET_APP must be whsec_ followed by valid base64");
    }
    return CM_OK;
}

enum cm_rc gw_cfg_derive(struct gw_cfg *cfg, struct cm_err *err)
{
    cfg->app_key_len = 0;
    if (gw_cfg_is_set(cfg->secret_app)) {
        return gw_cfg_decode_app_secret(cfg->secret_app, cfg->app_key, sizeof(cfg->app_key),
                                        &cfg->app_key_len, err);
    }
    return CM_OK;
}

enum cm_rc gw_cfg_load(struct gw_cfg *cfg, struct cm_err *err)
{
    enum cm_rc rc;

    memset(cfg, 0, sizeof(*cfg));
    rc = cm_cfg_load(gw_cfg_fields, cfg, err);
    if (rc == CM_OK) {
        rc = gw_cfg_derive(cfg, err);
    }
    return rc;
}

void gw_cfg_load_or_exit(struct gw_cfg *cfg, int argc, char **argv)
{
    struct cm_err err = {{0}};

    memset(cfg, 0, sizeof(*cfg));
    cm_cfg_load_or_exit("gateway", gw_cfg_fields, cfg, argc, argv);
    if (gw_cfg_derive(cfg, &err) != CM_OK) {
        fprintf(stderr, "auren-gateway: config: %s\n", err.msg);
        exit(2);
    }
}

void gw_cfg_fini(struct gw_cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    cm_cfg_free(gw_cfg_fields, cfg);
    memset(cfg->app_key, 0, sizeof(cfg->app_key));
    cfg->app_key_len = 0;
}
