/* The fetcher's pure decisions (proc_fetch_plan.h): request plans per vendor, rate-limit hints,
 * backoff with jitter and the circuit breaker. Endpoints follow the vendor notes
 * (/work/shared/reference/vendors.md, summarised in the README's fetch table). Ids are
 * percent-encoded into paths; nothing here logs. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_fetch_plan.h"
#include "proc_norm.h"
#include "proc_vendors.h"

#define DAY_US INT64_C(86400000000)

/* RFC 3986 unreserved characters pass, everything else becomes %XX. */
static bool escape(const char *s, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        if (o + (plain ? 1 : 3) >= outsz) {
            return false;
        }
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return true;
}

/* Fill url/path/query from base + path_and_query ("/v2/x?y=1"). */
static enum cm_rc set_url(struct proc_http_req *r, const char *base, const char *pq,
                          const char *vendor, const char *resource, enum proc_req_step step,
                          struct cm_err *err)
{
    const char *q = strchr(pq, '?');
    size_t plen = q != NULL ? (size_t)(q - pq) : strlen(pq);
    const char *bpath = strstr(base, "://");

    bpath = bpath != NULL ? strchr(bpath + 3, '/') : NULL;
    if (snprintf(r->url, sizeof(r->url), "%s%s", base, pq) >= (int)sizeof(r->url) ||
        snprintf(r->path, sizeof(r->path), "%s%.*s", bpath != NULL ? bpath : "", (int)plen, pq) >=
            (int)sizeof(r->path) ||
        !cm_strlcpy(r->query, q != NULL ? q + 1 : "", sizeof(r->query)) ||
        snprintf(r->record_type, sizeof(r->record_type), "%s.%s", vendor, resource) >=
            (int)sizeof(r->record_type)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: url");
    }
    r->step = step;
    return CM_OK;
}

/* A vendor-supplied absolute URL: keep its path and query, replace its origin by `base`'s. */
static enum cm_rc rebase(struct proc_http_req *r, const char *base, const char *url,
                         const char *vendor, const char *resource, struct cm_err *err)
{
    const char *p = strstr(url, "://");
    const char *bslash;
    char origin[256];

    if (p == NULL || (p = strchr(p + 3, '/')) == NULL) {
        return cm_err_set(err, CM_INVALID, "bad_url");
    }
    for (const char *c = url; *c != '\0'; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#') {
            return cm_err_set(err, CM_INVALID, "bad_url");
        }
    }
    /* origin of base = scheme://host[:port] */
    bslash = strstr(base, "://");
    bslash = bslash != NULL ? strchr(bslash + 3, '/') : NULL;
    size_t olen = bslash != NULL ? (size_t)(bslash - base) : strlen(base);
    if (olen >= sizeof(origin)) {
        return cm_err_set(err, CM_INVALID, "bad_url");
    }
    memcpy(origin, base, olen);
    origin[olen] = '\0';
    enum cm_rc rc = set_url(r, origin, p, vendor, resource, PROC_STEP_PUBLISH, err);
    if (rc == CM_OK) {
        const char *q = strchr(p, '?');
        snprintf(r->path, sizeof(r->path), "%.*s", (int)(q != NULL ? (size_t)(q - p) : strlen(p)),
                 p);
    }
    return rc;
}

static bool is_delete(const struct cm_fetch_job *j)
{
    const char *e = j->event_type;
    size_t n = e != NULL ? strlen(e) : 0;

    return n > 0 && (strcmp(e, "delete") == 0 || (n > 8 && strcmp(e + n - 8, ".deleted") == 0));
}

static void ymd(int64_t us, char out[40])
{
    proc_norm_format_time(us, out);
    out[10] = '\0';
}

static enum cm_rc plan_withings(const struct cm_fetch_job *j, const char *base, int64_t now_us,
                                struct proc_plan *plan, struct cm_err *err)
{
    static const struct {
        const char *resource, *path, *form;
    } w[] = {
        { "weight", "/measure", "action=getmeas&meastypes=1,4,5,6,8&category=1" },
        { "temperature", "/measure", "action=getmeas&meastypes=12,71,73&category=1" },
        { "blood_pressure", "/measure", "action=getmeas&meastypes=9,10,11,54&category=1" },
        { "sleep", "/v2/sleep",
          "action=getsummary&data_fields=hr_average,rr_average,total_sleep_time,"
          "deepsleepduration,lightsleepduration,remsleepduration,wakeupduration,sleep_efficiency" },
        { "activity", "/v2/measure", "action=getactivity" },
    };
    int64_t start = j->has_start ? j->start_time_us : now_us - DAY_US;
    int64_t end = j->has_end ? j->end_time_us : now_us;
    char a[40], b[40];

    for (size_t i = 0; i < CM_ARRAY_LEN(w); i++) {
        struct proc_http_req *r = &plan->reqs[0];
        int n;

        if (strcmp(j->resource, w[i].resource) != 0) {
            continue;
        }
        enum cm_rc rc = set_url(r, base, w[i].path, "withings", w[i].resource, PROC_STEP_PUBLISH,
                                err);
        if (rc != CM_OK) {
            return rc;
        }
        if (strcmp(w[i].path, "/measure") == 0) {
            n = snprintf(r->form, sizeof(r->form), "%s&startdate=%" PRId64 "&enddate=%" PRId64,
                         w[i].form, start / 1000000, end / 1000000);
        } else {
            ymd(start, a);
            ymd(end, b);
            n = snprintf(r->form, sizeof(r->form), "%s&startdateymd=%s&enddateymd=%s", w[i].form,
                         a, b);
        }
        if (n < 0 || n >= (int)sizeof(r->form)) {
            return cm_err_set(err, CM_INVALID, "out_of_range: form");
        }
        plan->n = 1;
        return CM_OK;
    }
    plan->kind = PROC_PLAN_SKIP;
    return CM_OK;
}

/* One GET of prefix + escaped object_id + suffix. */
static enum cm_rc plan_by_id(const struct cm_fetch_job *j, const char *base, const char *prefix,
                             const char *suffix, const char *resource, struct proc_plan *plan,
                             struct cm_err *err)
{
    char id[400], pq[600];

    if (j->object_id == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: object_id");
    }
    if (!escape(j->object_id, id, sizeof(id)) ||
        snprintf(pq, sizeof(pq), "%s%s%s", prefix, id, suffix) >= (int)sizeof(pq)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: object_id");
    }
    plan->n = 1;
    return set_url(&plan->reqs[0], base, pq, j->vendor, resource, PROC_STEP_PUBLISH, err);
}

/* Google Health API v4: GET /v4/users/me/dataTypes/{type}/dataPoints (the token names the user)
 * with the documented filter over the notified window (https://developers.google.com/health/
 * filters; only >= and < exist), pageSize 10000 (the maximum); further pages follow
 * nextPageToken (proc_fetch_plan_next_page()). The filter field per record type:
 *   interval  {type}.interval.start_time          >= start AND < end         (RFC 3339)
 *   sample    {type}.sample_time.physical_time    >= start AND < end         (RFC 3339)
 *   daily     {type}.date                         >= day(start) AND < day(end) + 1 day
 *   sleep     sleep.interval.end_time             >= start AND < end + 1 day (sessions that
 *                                                 end after the notified interval included)
 *   exercise  exercise.interval.civil_start_time  >= start - 1 day AND < end + 1 day (the only
 *             documented exercise filter is in the user's local time, whose offset the job does
 *             not know: the window is widened by the largest offset and re-reads are harmless)
 * Data types we do not normalize stay "unsupported_fetch". Source:
 * https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/list */
static enum cm_rc plan_google_health(const struct cm_fetch_job *j, const char *base,
                                     int64_t now_us, struct proc_plan *plan, struct cm_err *err)
{
    const struct proc_gh_type *t = proc_google_health_type(j->resource);
    int64_t start = j->has_start ? j->start_time_us : now_us - DAY_US;
    int64_t end = j->has_end ? j->end_time_us : now_us;
    char a[40], b[40], field[96], filter[320], enc[640], pq[900];
    const char *suffix = "interval.start_time";

    if (t == NULL || strcmp(j->resource, t->data_type) != 0) {
        return cm_err_set(err, CM_INVALID, "unsupported_fetch: %s",
                          proc_norm_safe_name(j->resource));
    }
    switch (t->filter) {
    case PROC_GH_INTERVAL:
        break;
    case PROC_GH_SAMPLE:
        suffix = "sample_time.physical_time";
        break;
    case PROC_GH_DAILY:
        suffix = "date";
        end += DAY_US;
        break;
    case PROC_GH_SLEEP:
        suffix = "interval.end_time";
        end += DAY_US;
        break;
    case PROC_GH_EXERCISE:
        suffix = "interval.civil_start_time";
        start -= DAY_US;
        end += DAY_US;
        break;
    }
    proc_norm_format_time(start, a);
    proc_norm_format_time(end, b);
    if (t->filter == PROC_GH_DAILY) {
        a[10] = b[10] = '\0';
    } else if (t->filter == PROC_GH_EXERCISE) {
        a[19] = b[19] = '\0'; /* civil: no fraction, no offset */
    }
    snprintf(field, sizeof(field), "%s.%s", t->resource, suffix);
    if (snprintf(filter, sizeof(filter), "%s >= \"%s\" AND %s < \"%s\"", field, a, field, b) >=
            (int)sizeof(filter) ||
        !escape(filter, enc, sizeof(enc)) ||
        snprintf(pq, sizeof(pq), "/v4/users/me/dataTypes/%s/dataPoints?pageSize=%d&filter=%s",
                 t->data_type, 10000, enc) >= (int)sizeof(pq)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: url");
    }
    plan->n = 1;
    return set_url(&plan->reqs[0], base, pq, "google_health", t->resource, PROC_STEP_PUBLISH,
                   err);
}

enum cm_rc proc_fetch_plan_next_page(const struct proc_http_req *first, const void *body,
                                     size_t len, struct proc_http_req *next, bool *more,
                                     struct cm_err *err)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *tok = root != NULL ? json_object_get(root, "nextPageToken") : NULL;
    char enc[800];
    enum cm_rc rc = CM_OK;

    *more = false;
    if (root == NULL || !json_is_object(root)) {
        rc = cm_err_set(err, CM_INVALID, "malformed_json");
    } else if (json_is_string(tok) && json_string_length(tok) > 0) {
        *next = *first;
        if (!escape(json_string_value(tok), enc, sizeof(enc)) ||
            (size_t)snprintf(next->url, sizeof(next->url), "%s&pageToken=%s", first->url, enc) >=
                sizeof(next->url) ||
            (size_t)snprintf(next->query, sizeof(next->query), "%s&pageToken=%s", first->query,
                             enc) >= sizeof(next->query)) {
            rc = cm_err_set(err, CM_INVALID, "out_of_range: nextPageToken");
        } else {
            *more = true;
        }
    } else if (tok != NULL && !json_is_string(tok) && !json_is_null(tok)) {
        rc = cm_err_set(err, CM_INVALID, "wrong_type: nextPageToken");
    }
    json_decref(root);
    return rc;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

enum cm_rc proc_fetch_plan(const struct cm_fetch_job *j, const char *base, int64_t now_us,
                           struct proc_plan *plan, struct cm_err *err)
{
    static const char *const oura_types[] = { "sleep", "daily_sleep", "daily_readiness",
                                              "daily_spo2", "daily_activity", "workout" };
    const char *v = j->vendor, *res = j->resource;

    memset(plan, 0, sizeof(*plan));
    plan->kind = PROC_PLAN_FETCH;
    if (is_delete(j) && strcmp(v, "google_health") == 0) {
        /* A DELETE names a data type and an interval, no object: tombstones of our events of
         * that type in the interval (proc_fetch.c). */
        const struct proc_gh_type *t = proc_google_health_type(res);
        if (t == NULL || strcmp(res, t->data_type) != 0) {
            return cm_err_set(err, CM_INVALID, "unsupported_fetch: %s", proc_norm_safe_name(res));
        }
        if (!j->has_start || !j->has_end) {
            return cm_err_set(err, CM_INVALID, "missing_field: intervals");
        }
        plan->kind = PROC_PLAN_DELETE;
        return CM_OK;
    }
    if (is_delete(j)) {
        if (j->object_id == NULL) {
            return cm_err_set(err, CM_INVALID, "missing_field: object_id");
        }
        plan->kind = PROC_PLAN_DELETE;
        return CM_OK;
    }
    if (strcmp(v, "whoop") == 0) {
        if (strcmp(res, "sleep") == 0) {
            return plan_by_id(j, base, "/v2/activity/sleep/", "", "sleep", plan, err);
        }
        if (strcmp(res, "workout") == 0) {
            return plan_by_id(j, base, "/v2/activity/workout/", "", "workout", plan, err);
        }
        if (strcmp(res, "recovery") == 0) {
            enum cm_rc rc = plan_by_id(j, base, "/v2/activity/sleep/", "", "sleep", plan, err);
            plan->reqs[0].step = PROC_STEP_WHOOP_CYCLE;
            return rc;
        }
    } else if (strcmp(v, "oura") == 0) {
        if (in_list(res, oura_types, CM_ARRAY_LEN(oura_types))) {
            char prefix[80];
            snprintf(prefix, sizeof(prefix), "/v2/usercollection/%s/", res);
            return plan_by_id(j, base, prefix, "", res, plan, err);
        }
        plan->kind = PROC_PLAN_SKIP;
        return CM_OK;
    } else if (strcmp(v, "strava") == 0 && strcmp(res, "activity") == 0) {
        enum cm_rc rc = plan_by_id(j, base, "/activities/", "", "activity", plan, err);
        cm_strlcpy(plan->reqs[0].record_type, "strava.activity", sizeof(plan->reqs[0].record_type));
        return rc;
    } else if (strcmp(v, "polar") == 0) {
        if (j->url == NULL) {
            return cm_err_set(err, CM_INVALID, "missing_field: url");
        }
        if (strcmp(res, "exercise") != 0 && strcmp(res, "sleep") != 0 &&
            strcmp(res, "continuous_heart_rate") != 0) {
            plan->kind = PROC_PLAN_SKIP;
            return CM_OK;
        }
        enum cm_rc rc = rebase(&plan->reqs[0], base, j->url, "polar", res, err);
        plan->n = 1;
        if (rc == CM_OK && strcmp(res, "sleep") == 0 && j->object_id != NULL) {
            /* AccessLink sends no nightly-recharge event: it is read with the night's sleep. */
            char pq[128], date[64];
            if (!escape(j->object_id, date, sizeof(date)) ||
                snprintf(pq, sizeof(pq), "/v3/users/nightly-recharge/%s", date) >= (int)sizeof(pq)) {
                return cm_err_set(err, CM_INVALID, "out_of_range: object_id");
            }
            rc = set_url(&plan->reqs[1], base, pq, "polar", "nightly_recharge", PROC_STEP_PUBLISH,
                         err);
            plan->n = 2;
        }
        return rc;
    } else if (strcmp(v, "fitbit") == 0) {
        static const char *const paths[][2] = {
            { "sleep", "/1.2/user/-/sleep/date/" },
            { "body", "/1/user/-/body/log/weight/date/" },
            { "activities", "/1/user/-/activities/date/" },
        };
        for (size_t i = 0; i < CM_ARRAY_LEN(paths); i++) {
            if (strcmp(res, paths[i][0]) == 0) {
                return plan_by_id(j, base, paths[i][1], ".json", res, plan, err);
            }
        }
        plan->kind = PROC_PLAN_SKIP; /* foods: nothing in the taxonomy */
        return CM_OK;
    } else if (strcmp(v, "withings") == 0) {
        return plan_withings(j, base, now_us, plan, err);
    } else if (strcmp(v, "google_health") == 0) {
        return plan_google_health(j, base, now_us, plan, err);
    } else if (strcmp(v, "garmin") == 0) {
        if (j->url == NULL) {
            return cm_err_set(err, CM_INVALID, "missing_field: url");
        }
        plan->n = 1;
        return rebase(&plan->reqs[0], base, j->url, "garmin", res, err);
    }
    return cm_err_set(err, CM_INVALID, "unsupported_fetch: %s", proc_norm_safe_name(v));
}

enum cm_rc proc_fetch_plan_whoop_recovery(const char *base, const void *sleep_body, size_t len,
                                          struct proc_http_req *out, struct cm_err *err)
{
    json_t *root = json_loadb(sleep_body, len, 0, NULL);
    json_t *cycle = root != NULL ? json_object_get(root, "cycle_id") : NULL;
    char pq[96];
    enum cm_rc rc;

    if (!json_is_integer(cycle) || json_integer_value(cycle) < 0) {
        json_decref(root);
        return cm_err_set(err, CM_INVALID, "missing_field: cycle_id");
    }
    snprintf(pq, sizeof(pq), "/v2/cycle/%" JSON_INTEGER_FORMAT "/recovery",
             json_integer_value(cycle));
    json_decref(root);
    memset(out, 0, sizeof(*out));
    rc = set_url(out, base, pq, "whoop", "recovery", PROC_STEP_PUBLISH, err);
    return rc;
}

/* ---- rate-limit hints ---- */

/* Leading non-negative number of a header value ("60", "100, 100;window=60"), or -1. */
static double leading_num(const char *s)
{
    char *end;
    double v;

    if (s == NULL) {
        return -1;
    }
    while (*s == ' ') {
        s++;
    }
    v = strtod(s, &end);
    return end == s || v < 0 || v > 1e9 ? -1 : v;
}

int64_t proc_rate_wait_ms(long http_status, const struct proc_rate_headers *h, int64_t now_us)
{
    double retry_after = leading_num(h->retry_after);
    double reset = leading_num(h->reset);
    double remaining = leading_num(h->remaining);
    double wait_s = -1;

    if (http_status == 429) {
        wait_s = retry_after >= 0 ? retry_after : reset;
        if (wait_s < 1) {
            wait_s = 1;
        }
    } else if (remaining == 0 && reset >= 0) {
        wait_s = reset;
    } else if (h->usage != NULL && h->limit != NULL) {
        /* Strava: "usage15,usageDay" against "limit15,limitDay". */
        double u = leading_num(h->usage), l = leading_num(h->limit);
        if (u >= 0 && l > 0 && u >= l) {
            int64_t s = now_us / 1000000;
            wait_s = (double)(900 - s % 900);
        }
    }
    return wait_s < 0 ? 0 : (int64_t)(wait_s * 1000);
}

int64_t proc_backoff_ms(int attempt, long base_ms, long max_ms, uint64_t rnd)
{
    int64_t d = base_ms;

    for (int i = 1; i < attempt && d < max_ms; i++) {
        d *= 2;
    }
    if (d > max_ms) {
        d = max_ms;
    }
    return d / 2 + (int64_t)(rnd % (uint64_t)(d / 2 + 1));
}

/* ---- circuit breaker ---- */

void proc_breaker_init(struct proc_breaker *b, long min_requests, long failure_pct,
                       long window_s, long open_ms)
{
    memset(b, 0, sizeof(*b));
    b->state = PROC_BREAKER_CLOSED;
    b->bucket_us = window_s * INT64_C(1000000) / PROC_BREAKER_BUCKETS;
    if (b->bucket_us <= 0) {
        b->bucket_us = 1;
    }
    b->min_requests = min_requests;
    b->failure_pct = failure_pct;
    b->open_us = open_ms * INT64_C(1000);
}

bool proc_breaker_allow(struct proc_breaker *b, int64_t now_us)
{
    switch (b->state) {
    case PROC_BREAKER_CLOSED:
        return true;
    case PROC_BREAKER_OPEN:
        if (now_us - b->opened_at_us < b->open_us) {
            return false;
        }
        b->state = PROC_BREAKER_HALF_OPEN;
        b->probe_in_flight = true;
        return true;
    case PROC_BREAKER_HALF_OPEN:
        if (b->probe_in_flight) {
            return false;
        }
        b->probe_in_flight = true;
        return true;
    }
    return true;
}

static void open_breaker(struct proc_breaker *b, int64_t now_us)
{
    b->state = PROC_BREAKER_OPEN;
    b->opened_at_us = now_us;
    b->probe_in_flight = false;
    memset(b->ok, 0, sizeof(b->ok));
    memset(b->failed, 0, sizeof(b->failed));
}

void proc_breaker_record(struct proc_breaker *b, bool ok, int64_t now_us)
{
    int64_t slot_start = now_us - now_us % b->bucket_us;
    size_t i = (size_t)((now_us / b->bucket_us) % PROC_BREAKER_BUCKETS);
    long total = 0, failed = 0;

    if (b->state == PROC_BREAKER_HALF_OPEN) {
        b->probe_in_flight = false;
        if (ok) {
            b->state = PROC_BREAKER_CLOSED;
        } else {
            open_breaker(b, now_us);
        }
        return;
    }
    if (b->state == PROC_BREAKER_OPEN) {
        return; /* a request that started before the breaker opened */
    }
    if (b->bucket_start[i] != slot_start) {
        b->bucket_start[i] = slot_start;
        b->ok[i] = b->failed[i] = 0;
    }
    if (ok) {
        b->ok[i]++;
    } else {
        b->failed[i]++;
    }
    for (size_t k = 0; k < PROC_BREAKER_BUCKETS; k++) {
        if (now_us - b->bucket_start[k] < b->bucket_us * PROC_BREAKER_BUCKETS) {
            total += b->ok[k] + b->failed[k];
            failed += b->failed[k];
        }
    }
    if (!ok && total >= b->min_requests && failed * 100 >= b->failure_pct * total) {
        open_breaker(b, now_us);
    }
}

int64_t proc_breaker_retry_at_us(const struct proc_breaker *b, int64_t now_us)
{
    if (b->state == PROC_BREAKER_OPEN) {
        return b->opened_at_us + b->open_us;
    }
    return now_us + b->open_us / 4;
}
