/* The processor's configuration: one table (proc_cfg_fields) read from the environment at start-up
 * by main() through cm_cfg_load_or_exit(); immutable afterwards.
 * Ownership: the STR fields are heap strings released by cm_cfg_free(proc_cfg_fields, cfg).
 * Thread: read-only after load, so any. */
#ifndef PROC_CFG_H
#define PROC_CFG_H

#include "cm/cfg.h"

/* The vendors whose REST APIs the fetcher calls, in this order (index of proc_cfg.api[]). */
enum proc_api_vendor {
    PROC_API_WHOOP, PROC_API_OURA, PROC_API_POLAR, PROC_API_FITBIT, PROC_API_GOOGLE_HEALTH,
    PROC_API_WITHINGS, PROC_API_STRAVA, PROC_API_GARMIN, PROC_API_N
};

/* {VENDOR}_CLIENT_ID, _CLIENT_SECRET, _API_BASE_URL, _TOKEN_URL, _TOKEN_AUTH. */
struct proc_api_cfg {
    char *client_id;
    char *client_secret;
    char *api_base_url; /* no trailing slash */
    char *token_url;
    char *token_auth;   /* "basic" (HTTP Basic client_id:client_secret) or "body" (form fields) */
};

struct proc_cfg {
    char *kafka_brokers;
    char *redis_url;
    char *database_url;
    char *group_id;
    long redis_ttl_s;
    long max_timeseries_entries;
    long http_port;
    long batch_max;
    long batch_ms;
    long conn_cache_ttl_s;

    /* the fetcher (proc_fetch.h) */
    bool fetcher_enabled;
    char *fetcher_group_id;
    char *token_encryption_keys;
    long fetch_batch_max;
    long fetch_http_timeout_ms;
    long refresh_lock_ms;
    long refresh_margin_s;
    long fetch_max_attempts;
    long fetch_max_pages;
    long retry_base_ms;
    long retry_max_ms;
    long breaker_min_requests;
    long breaker_failure_pct;
    long breaker_window_s;
    long breaker_open_ms;
    struct proc_api_cfg api[PROC_API_N];
};

/* Slug of an API vendor ("whoop", ...), and the reverse (PROC_API_N when not one). */
const char *proc_api_vendor_name(enum proc_api_vendor v);
enum proc_api_vendor proc_api_vendor_find(const char *slug);

/* Checks that span fields (token auth values, the refresh lock lease below the HTTP timeout,
 * TOKEN_ENCRYPTION_KEYS present when the fetcher runs). CM_INVALID naming the variable. */
enum cm_rc proc_cfg_check(const struct proc_cfg *cfg, struct cm_err *err);

extern const struct cm_cfg_field proc_cfg_fields[];

#endif
