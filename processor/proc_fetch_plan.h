/* The fetcher's pure parts (no I/O, every clock and random value passed in), so the unit tests
 * drive them directly:
 * - the request plan: which vendor endpoint(s) a FetchJob implies, and what record type the
 *   answer is published as;
 * - rate-limit hints read from a vendor's answer headers;
 * - exponential backoff with jitter;
 * - the per-vendor circuit breaker.
 * Thread: any (no shared state); a struct proc_breaker has one owner. */
#ifndef PROC_FETCH_PLAN_H
#define PROC_FETCH_PLAN_H

#include "cm/common.h"
#include "cm/records.h"

#define PROC_FETCH_MAX_REQS 2

enum proc_req_step {
    PROC_STEP_PUBLISH,        /* the answer is published as an api_record */
    PROC_STEP_WHOOP_CYCLE,    /* WHOOP sleep read only for its cycle_id, then the recovery */
};

struct proc_http_req {
    char url[2048];           /* full URL; may hold a vendor-issued secret (Garmin): never logged */
    char path[512];           /* the URL's path, for RawWebhook.path */
    char query[1536];         /* the URL's query without '?', "" when none */
    char form[512];           /* POST form body (Withings), "" for GET */
    char record_type[64];     /* "<vendor>.<resource>" */
    enum proc_req_step step;
};

enum proc_plan_kind {
    PROC_PLAN_FETCH,          /* reqs[0..n) */
    PROC_PLAN_DELETE,         /* the vendor deleted object_id (Google Health: a data type over
                                 [start, end]): tombstones, nothing to fetch */
    PROC_PLAN_SKIP,           /* nothing we normalize (e.g. Fitbit foods): acknowledged */
};

struct proc_plan {
    enum proc_plan_kind kind;
    struct proc_http_req reqs[PROC_FETCH_MAX_REQS];
    size_t n;
};

/* The plan of `j` against the vendor's API base URL (no trailing slash). Vendor-supplied URLs
 * (Polar's `url`, Garmin's callbackURL) keep their path and query and get `base` as origin, so
 * staging and tests can point elsewhere. CM_INVALID with a reason ("unsupported_fetch: <vendor>",
 * "missing_field: object_id", "bad_url") when the job cannot be planned; now_us bounds windowless
 * Withings jobs (the last day). */
enum cm_rc proc_fetch_plan(const struct cm_fetch_job *j, const char *base, int64_t now_us,
                           struct proc_plan *plan, struct cm_err *err);
/* Google Health pagination: the request for the page after `body` (a list answer to `first` or to
 * one of its follow-ups): `first` with "&pageToken=<nextPageToken>" appended. *more is false on
 * the last page (no or an empty nextPageToken). CM_INVALID: not a JSON object, or a token that
 * does not fit ("out_of_range: nextPageToken"). */
enum cm_rc proc_fetch_plan_next_page(const struct proc_http_req *first, const void *body,
                                     size_t len, struct proc_http_req *next, bool *more,
                                     struct cm_err *err);
/* The follow-up of a PROC_STEP_WHOOP_CYCLE answer: GET /v2/cycle/{cycle_id}/recovery. */
enum cm_rc proc_fetch_plan_whoop_recovery(const char *base, const void *sleep_body, size_t len,
                                          struct proc_http_req *out, struct cm_err *err);

/* Rate-limit headers of one answer, as received (NULL when absent). */
struct proc_rate_headers {
    const char *retry_after;        /* Retry-After: seconds (or an HTTP date, read as unknown) */
    const char *remaining;          /* X-RateLimit-Remaining, fitbit-rate-limit-remaining,
                                       RateLimit-Remaining (first that is present) */
    const char *reset;              /* ...-Reset: seconds until the window resets */
    const char *usage;              /* Strava X-RateLimit-Usage "15min,daily" */
    const char *limit;              /* X-RateLimit-Limit "15min,daily" (Strava) or WHOOP text */
};

/* How long the vendor asks us to wait (ms) after this answer: on a 429 the reset / Retry-After
 * (at least 1 s when neither is given); on a 2xx only when the remaining budget is 0 (or Strava's
 * usage reached its limit: until the next quarter hour). 0 = no wait. */
int64_t proc_rate_wait_ms(long http_status, const struct proc_rate_headers *h, int64_t now_us);

/* Backoff before attempt `attempt` (1 = after the first failure): d = min(max, base * 2^(a-1)),
 * then "equal jitter": d/2 + rnd % (d/2 + 1). */
int64_t proc_backoff_ms(int attempt, long base_ms, long max_ms, uint64_t rnd);

/* ---- circuit breaker ---- */

enum proc_breaker_state { PROC_BREAKER_CLOSED = 0, PROC_BREAKER_OPEN = 1, PROC_BREAKER_HALF_OPEN = 2 };

#define PROC_BREAKER_BUCKETS 10

struct proc_breaker {
    enum proc_breaker_state state;
    int64_t bucket_us;              /* window / PROC_BREAKER_BUCKETS */
    int64_t bucket_start[PROC_BREAKER_BUCKETS];
    long ok[PROC_BREAKER_BUCKETS], failed[PROC_BREAKER_BUCKETS];
    long min_requests, failure_pct;
    int64_t open_us;
    int64_t opened_at_us;
    bool probe_in_flight;
};

void proc_breaker_init(struct proc_breaker *b, long min_requests, long failure_pct,
                       long window_s, long open_ms);
/* May a request go now? Open -> half-open once open_ms passed (one probe at a time). */
bool proc_breaker_allow(struct proc_breaker *b, int64_t now_us);
/* The outcome of an allowed request. A failure over min_requests at failure_pct or more opens
 * the breaker; in half-open the probe decides: success closes, failure opens again. */
void proc_breaker_record(struct proc_breaker *b, bool ok, int64_t now_us);
/* When a refused request should be tried again (the next probe time). */
int64_t proc_breaker_retry_at_us(const struct proc_breaker *b, int64_t now_us);

#endif
