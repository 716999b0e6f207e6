/* The fetcher's pure parts: request plans per vendor, rate-limit hints, backoff with jitter, the
 * circuit breaker, and the OAuth token request / answer handling. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proc_fetch.h"
#include "proc_fetch_plan.h"
#include "proc_oauth.h"
#include "../check_run.h"

static struct cm_fetch_job job(const char *vendor, const char *resource, const char *object_id)
{
    struct cm_fetch_job j;

    memset(&j, 0, sizeof(j));
    j.job_id = (char *)"0123456789abcdef0123456789abcdef";
    j.vendor = (char *)vendor;
    j.vendor_user_id = (char *)"u1";
    j.resource = (char *)resource;
    j.object_id = (char *)object_id;
    return j;
}

START_TEST(test_plans)
{
    struct cm_err err = { { 0 } };
    struct proc_plan p;
    struct cm_fetch_job j = job("whoop", "workout", "a/b c");

    ck_assert_int_eq(proc_fetch_plan(&j, "https://api.prod.whoop.com/developer", 0, &p, &err),
                     CM_OK);
    ck_assert_int_eq(p.kind, PROC_PLAN_FETCH);
    ck_assert_str_eq(p.reqs[0].url,
                     "https://api.prod.whoop.com/developer/v2/activity/workout/a%2Fb%20c");
    ck_assert_str_eq(p.reqs[0].path, "/developer/v2/activity/workout/a%2Fb%20c");
    ck_assert_str_eq(p.reqs[0].record_type, "whoop.workout");

    j = job("whoop", "recovery", "s1");
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h/w", 0, &p, &err), CM_OK);
    ck_assert_int_eq(p.reqs[0].step, PROC_STEP_WHOOP_CYCLE);
    struct proc_http_req next;
    const char sleep[] = "{\"id\":\"s1\",\"cycle_id\":93845}";
    ck_assert_int_eq(proc_fetch_plan_whoop_recovery("http://h/w", sleep, strlen(sleep), &next,
                                                    &err), CM_OK);
    ck_assert_str_eq(next.url, "http://h/w/v2/cycle/93845/recovery");
    ck_assert_str_eq(next.record_type, "whoop.recovery");
    ck_assert_int_eq(proc_fetch_plan_whoop_recovery("http://h/w", "{}", 2, &next, &err),
                     CM_INVALID);

    j = job("whoop", "sleep", "s1");
    j.event_type = (char *)"sleep.deleted";
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h", 0, &p, &err), CM_OK);
    ck_assert_int_eq(p.kind, PROC_PLAN_DELETE);

    j = job("polar", "sleep", "2026-11-20");
    j.url = (char *)"https://www.polaraccesslink.com/v3/users/sleep/2026-11-20";
    ck_assert_int_eq(proc_fetch_plan(&j, "http://127.0.0.1:18080/ignored", 0, &p, &err), CM_OK);
    ck_assert_uint_eq(p.n, 2);
    ck_assert_str_eq(p.reqs[0].url, "http://127.0.0.1:18080/v3/users/sleep/2026-11-20");
    ck_assert_str_eq(p.reqs[1].record_type, "polar.nightly_recharge");

    j = job("fitbit", "foods", "2026-11-20");
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h", 0, &p, &err), CM_OK);
    ck_assert_int_eq(p.kind, PROC_PLAN_SKIP);
    j = job("fitbit", "body", "2026-11-20");
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h", 0, &p, &err), CM_OK);
    ck_assert_str_eq(p.reqs[0].url, "http://h/1/user/-/body/log/weight/date/2026-11-20.json");

    j = job("withings", "blood_pressure", NULL);
    j.has_start = j.has_end = true;
    j.start_time_us = INT64_C(1795158000) * 1000000;
    j.end_time_us = j.start_time_us + 60000000;
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h/withings", 0, &p, &err), CM_OK);
    ck_assert_str_eq(p.reqs[0].url, "http://h/withings/measure");
    ck_assert_ptr_nonnull(strstr(p.reqs[0].form, "meastypes=9,10,11,54"));
    ck_assert_ptr_nonnull(strstr(p.reqs[0].form, "startdate=1795158000&enddate=1795158060"));

    j = job("google_health", "heart-rate", NULL);
    j.has_start = j.has_end = true;
    j.start_time_us = INT64_C(1795420800) * 1000000; /* 2026-11-23T08:00:00Z */
    j.end_time_us = j.start_time_us + 300000000;
    ck_assert_int_eq(proc_fetch_plan(&j, "https://health.googleapis.com", 0, &p, &err), CM_OK);
    ck_assert_str_eq(p.reqs[0].path, "/v4/users/me/dataTypes/heart-rate/dataPoints");
    ck_assert_str_eq(p.reqs[0].query,
                     "pageSize=10000&filter=heart_rate.sample_time.physical_time%20%3E%3D%20%22"
                     "2026-11-23T08%3A00%3A00Z%22%20AND%20heart_rate.sample_time.physical_time"
                     "%20%3C%20%222026-11-23T08%3A05%3A00Z%22");
    ck_assert_str_eq(p.reqs[0].record_type, "google_health.heart_rate");
    j = job("google_health", "steps", NULL);
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h", INT64_C(1795420800) * 1000000, &p, &err),
                     CM_OK);
    ck_assert_ptr_nonnull(strstr(p.reqs[0].query, "steps.interval.start_time%20%3E%3D%20%22"
                                                  "2026-11-22T08%3A00%3A00Z"));
    j = job("google_health", "body-fat", NULL);
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h", 0, &p, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "unsupported_fetch: body-fat");
    j = job("oura", "sleep", NULL);
    ck_assert_int_eq(proc_fetch_plan(&j, "http://h", 0, &p, &err), CM_INVALID);
}
END_TEST

/* The filter of each Google Health record type over 2026-11-23T08:00:00Z .. 08:05:00Z. */
START_TEST(test_google_health_plans)
{
    static const struct {
        const char *type, *record_type, *filter;
    } want[] = {
        { "heart-rate-variability", "google_health.heart_rate_variability",
          "heart_rate_variability.sample_time.physical_time >= \"2026-11-23T08:00:00Z\" AND "
          "heart_rate_variability.sample_time.physical_time < \"2026-11-23T08:05:00Z\"" },
        { "respiratory-rate-sleep-summary", "google_health.respiratory_rate_sleep_summary",
          "respiratory_rate_sleep_summary.sample_time.physical_time >= \"2026-11-23T08:00:00Z\""
          " AND respiratory_rate_sleep_summary.sample_time.physical_time < "
          "\"2026-11-23T08:05:00Z\"" },
        { "daily-resting-heart-rate", "google_health.daily_resting_heart_rate",
          "daily_resting_heart_rate.date >= \"2026-11-23\" AND daily_resting_heart_rate.date < "
          "\"2026-11-24\"" },
        { "daily-heart-rate-variability", "google_health.daily_heart_rate_variability",
          "daily_heart_rate_variability.date >= \"2026-11-23\" AND "
          "daily_heart_rate_variability.date < \"2026-11-24\"" },
        { "daily-respiratory-rate", "google_health.daily_respiratory_rate",
          "daily_respiratory_rate.date >= \"2026-11-23\" AND daily_respiratory_rate.date < "
          "\"2026-11-24\"" },
        { "daily-oxygen-saturation", "google_health.daily_oxygen_saturation",
          "daily_oxygen_saturation.date >= \"2026-11-23\" AND daily_oxygen_saturation.date < "
          "\"2026-11-24\"" },
        { "daily-sleep-temperature-derivations",
          "google_health.daily_sleep_temperature_derivations",
          "daily_sleep_temperature_derivations.date >= \"2026-11-23\" AND "
          "daily_sleep_temperature_derivations.date < \"2026-11-24\"" },
        { "sleep", "google_health.sleep",
          "sleep.interval.end_time >= \"2026-11-23T08:00:00Z\" AND sleep.interval.end_time < "
          "\"2026-11-24T08:05:00Z\"" },
        { "exercise", "google_health.exercise",
          "exercise.interval.civil_start_time >= \"2026-11-22T08:00:00\" AND "
          "exercise.interval.civil_start_time < \"2026-11-24T08:05:00\"" },
    };
    struct cm_err err = { { 0 } };
    struct proc_plan p;

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct cm_fetch_job j = job("google_health", want[i].type, NULL);
        char path[128], q[1024];
        j.has_start = j.has_end = true;
        j.start_time_us = INT64_C(1795420800) * 1000000;
        j.end_time_us = j.start_time_us + 300000000;
        ck_assert_int_eq(proc_fetch_plan(&j, "http://h", 0, &p, &err), CM_OK);
        ck_assert_int_eq(p.kind, PROC_PLAN_FETCH);
        snprintf(path, sizeof(path), "/v4/users/me/dataTypes/%s/dataPoints", want[i].type);
        ck_assert_str_eq(p.reqs[0].path, path);
        ck_assert_str_eq(p.reqs[0].record_type, want[i].record_type);
        /* undo the percent-encoding of the query */
        size_t o = 0;
        for (const char *c = p.reqs[0].query; *c != '\0' && o + 1 < sizeof(q); c++) {
            if (*c == '%' && c[1] != '\0' && c[2] != '\0') {
                char hex[3] = { c[1], c[2], '\0' };
                q[o++] = (char)strtol(hex, NULL, 16);
                c += 2;
            } else {
                q[o++] = *c;
            }
        }
        q[o] = '\0';
        ck_assert_str_eq(q + strlen("pageSize=10000&filter="), want[i].filter);
        ck_assert_int_eq(strncmp(q, "pageSize=10000&filter=", 22), 0);
    }

    /* DELETE: a data type over an interval, nothing fetched; no interval or an unread type: no */
    struct cm_fetch_job d = job("google_health", "heart-rate", NULL);
    d.event_type = (char *)"delete";
    ck_assert_int_eq(proc_fetch_plan(&d, "http://h", 0, &p, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "missing_field: intervals");
    d.has_start = d.has_end = true;
    d.start_time_us = d.end_time_us = INT64_C(1795420800) * 1000000;
    ck_assert_int_eq(proc_fetch_plan(&d, "http://h", 0, &p, &err), CM_OK);
    ck_assert_int_eq(p.kind, PROC_PLAN_DELETE);
    d.resource = (char *)"body-fat";
    ck_assert_int_eq(proc_fetch_plan(&d, "http://h", 0, &p, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "unsupported_fetch: body-fat");
    d.resource = (char *)"heart_rate"; /* the record type's spelling is not a data type */
    ck_assert_int_eq(proc_fetch_plan(&d, "http://h", 0, &p, &err), CM_INVALID);
}
END_TEST

START_TEST(test_google_health_next_page)
{
    struct cm_err err = { { 0 } };
    struct proc_plan p;
    struct proc_http_req next;
    bool more = true;
    struct cm_fetch_job j = job("google_health", "steps", NULL);
    const char last[] = "{\"dataPoints\":[],\"nextPageToken\":\"\"}";
    const char none[] = "{\"dataPoints\":[]}";
    const char page[] = "{\"dataPoints\":[{}],\"nextPageToken\":\"CgA=/x y\"}";
    char want[2100];

    ck_assert_int_eq(proc_fetch_plan(&j, "http://h", INT64_C(1795420800) * 1000000, &p, &err),
                     CM_OK);
    ck_assert_int_eq(proc_fetch_plan_next_page(&p.reqs[0], last, strlen(last), &next, &more,
                                               &err), CM_OK);
    ck_assert(!more);
    more = true;
    ck_assert_int_eq(proc_fetch_plan_next_page(&p.reqs[0], none, strlen(none), &next, &more,
                                               &err), CM_OK);
    ck_assert(!more);
    ck_assert_int_eq(proc_fetch_plan_next_page(&p.reqs[0], page, strlen(page), &next, &more,
                                               &err), CM_OK);
    ck_assert(more);
    snprintf(want, sizeof(want), "%s&pageToken=CgA%%3D%%2Fx%%20y", p.reqs[0].url);
    ck_assert_str_eq(next.url, want);
    snprintf(want, sizeof(want), "%s&pageToken=CgA%%3D%%2Fx%%20y", p.reqs[0].query);
    ck_assert_str_eq(next.query, want);
    ck_assert_str_eq(next.path, p.reqs[0].path);
    ck_assert_str_eq(next.record_type, "google_health.steps");
    ck_assert_int_eq(proc_fetch_plan_next_page(&p.reqs[0], "[]", 2, &next, &more, &err),
                     CM_INVALID);
    const char num[] = "{\"nextPageToken\":5}";
    ck_assert_int_eq(proc_fetch_plan_next_page(&p.reqs[0], num, strlen(num), &next, &more, &err),
                     CM_INVALID);
    ck_assert_str_eq(err.msg, "wrong_type: nextPageToken");
    /* a token that does not fit the URL is refused, not cut */
    char big[1200] = "{\"nextPageToken\":\"";
    memset(big + strlen(big), 'a', sizeof(big) - 3 - strlen(big));
    big[sizeof(big) - 3] = '"';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(proc_fetch_plan_next_page(&p.reqs[0], big, strlen(big), &next, &more, &err),
                     CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: nextPageToken");
}
END_TEST

START_TEST(test_rate_hints)
{
    struct proc_rate_headers h = { .retry_after = "3", .reset = "10" };
    struct proc_rate_headers none = { 0 };
    struct proc_rate_headers spent = { .remaining = "0", .reset = "42" };
    struct proc_rate_headers strava = { .usage = "200,900", .limit = "200,2000" };

    ck_assert_int_eq(proc_rate_wait_ms(429, &h, 0), 3000);
    ck_assert_int_eq(proc_rate_wait_ms(429, &none, 0), 1000);
    ck_assert_int_eq(proc_rate_wait_ms(200, &h, 0), 0);
    ck_assert_int_eq(proc_rate_wait_ms(200, &spent, 0), 42000);
    ck_assert_int_eq(proc_rate_wait_ms(200, &strava, INT64_C(1000) * 1000000), 800000);
}
END_TEST

START_TEST(test_backoff)
{
    for (int a = 1; a < 12; a++) {
        for (uint64_t r = 0; r < 2000; r += 97) {
            int64_t d = proc_backoff_ms(a, 1000, 60000, r);
            int64_t cap = 1000LL << (a - 1) > 60000 ? 60000 : 1000LL << (a - 1);
            ck_assert_int_ge(d, cap / 2);
            ck_assert_int_le(d, cap);
        }
    }
}
END_TEST

START_TEST(test_breaker)
{
    struct proc_breaker b;
    int64_t t = 1000000000;

    proc_breaker_init(&b, 4, 50, 10, 2000);
    for (int i = 0; i < 3; i++) {
        ck_assert(proc_breaker_allow(&b, t));
        proc_breaker_record(&b, false, t);
    }
    ck_assert_int_eq(b.state, PROC_BREAKER_CLOSED); /* below the minimum volume */
    proc_breaker_record(&b, false, t);
    ck_assert_int_eq(b.state, PROC_BREAKER_OPEN);
    ck_assert(!proc_breaker_allow(&b, t + 1000000));
    ck_assert_int_eq(proc_breaker_retry_at_us(&b, t), t + 2000000);
    ck_assert(proc_breaker_allow(&b, t + 2000000)); /* the half-open probe */
    ck_assert(!proc_breaker_allow(&b, t + 2000001)); /* one at a time */
    proc_breaker_record(&b, false, t + 2100000);
    ck_assert_int_eq(b.state, PROC_BREAKER_OPEN);
    ck_assert(proc_breaker_allow(&b, t + 4200000));
    proc_breaker_record(&b, true, t + 4300000);
    ck_assert_int_eq(b.state, PROC_BREAKER_CLOSED);
    /* successes keep it closed */
    for (int i = 0; i < 20; i++) {
        proc_breaker_record(&b, i % 4 != 0, t + 5000000); /* 25-40 % failures */
    }
    ck_assert_int_eq(b.state, PROC_BREAKER_CLOSED);
}
END_TEST

/* Jobs that cannot be planned say why; jobs of nothing we normalize are skipped. */
START_TEST(test_plan_rejections)
{
    struct cm_err err = { { 0 } };
    struct proc_plan p;
    struct cm_fetch_job j;
    char big[2100], longid[600];

    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "http://", 7);
    memset(longid, '7', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
#define PLAN_FAILS(base, reason)                                                                  \
    do {                                                                                          \
        ck_assert_int_eq(proc_fetch_plan(&j, base, 0, &p, &err), CM_INVALID);                     \
        ck_assert_str_eq(err.msg, reason);                                                        \
    } while (0)
#define PLAN_SKIPS()                                                                              \
    do {                                                                                          \
        ck_assert_int_eq(proc_fetch_plan(&j, "http://h", 0, &p, &err), CM_OK);                   \
        ck_assert_int_eq(p.kind, PROC_PLAN_SKIP);                                                 \
    } while (0)

    j = job("whoop", "sleep", "s1");
    PLAN_FAILS(big, "out_of_range: url");
    j = job("whoop", "sleep", longid); /* was reported as a missing field */
    PLAN_FAILS("http://h", "out_of_range: object_id");
    j = job("whoop", "sleep", NULL);
    j.event_type = (char *)"sleep.deleted";
    PLAN_FAILS("http://h", "missing_field: object_id");
    j = job("withings", "weight", NULL);
    PLAN_FAILS(big, "out_of_range: url");
    j = job("withings", "heart_rate", NULL);
    PLAN_SKIPS();
    j = job("google_health", "steps", NULL);
    PLAN_FAILS(big, "out_of_range: url");
    j = job("oura", "heart_rate", "x");
    PLAN_SKIPS();
    j = job("polar", "exercise", "x");
    PLAN_FAILS("http://h", "missing_field: url");
    j.url = (char *)"https://www.polaraccesslink.com/v3/users/activity-transactions/1";
    j.resource = (char *)"activity";
    PLAN_SKIPS();
    j.resource = (char *)"exercise";
    j.url = (char *)"no-scheme/v3/exercises/1";
    PLAN_FAILS("http://h", "bad_url");
    j.url = (char *)"https://host-without-path";
    PLAN_FAILS("http://h", "bad_url");
    j.url = (char *)"https://h/v3/exercises/1#frag";
    PLAN_FAILS("http://h", "bad_url");
    j.url = (char *)"https://h/v3/exercises/a b";
    PLAN_FAILS("http://h", "bad_url");
    j.url = (char *)"https://h/v3/exercises/1";
    memset(big + 7, 'o', 300);
    big[307] = '\0';
    PLAN_FAILS(big, "bad_url"); /* an origin longer than any host */
    memset(big, 'b', sizeof(big) - 1);
    memcpy(big, "http://", 7);
    j = job("polar", "sleep", longid);
    j.url = (char *)"https://www.polaraccesslink.com/v3/users/sleep/2026-11-20";
    PLAN_FAILS("http://h", "out_of_range: object_id");
    j = job("garmin", "dailies", NULL);
    PLAN_FAILS("http://h", "missing_field: url");
    j = job("terra", "activity", "x");
    PLAN_FAILS("http://h", "unsupported_fetch: terra");
#undef PLAN_FAILS
#undef PLAN_SKIPS
}
END_TEST

/* Rate hints with spaces; a breaker with a zero window; a half-open breaker whose probe was
 * given back (the fetcher does so when the probe could not take a budget). */
START_TEST(test_hint_and_breaker_edges)
{
    struct proc_rate_headers h = { .retry_after = "   7" };
    struct proc_breaker b;
    int64_t t = 1000000000;

    ck_assert_int_eq(proc_rate_wait_ms(429, &h, 0), 7000);
    proc_breaker_init(&b, 1, 50, 0, 1000);
    ck_assert_int_eq(b.bucket_us, 1);
    proc_breaker_record(&b, false, t);
    ck_assert_int_eq(b.state, PROC_BREAKER_OPEN);
    ck_assert(proc_breaker_allow(&b, t + 1000000));
    ck_assert_int_eq(b.state, PROC_BREAKER_HALF_OPEN);
    b.probe_in_flight = false;
    ck_assert(proc_breaker_allow(&b, t + 1000001));
    ck_assert(b.probe_in_flight);
    ck_assert(!proc_breaker_allow(&b, t + 1000002));
    ck_assert_int_eq(proc_breaker_retry_at_us(&b, t), t + 250000);
}
END_TEST

START_TEST(test_token_request_and_answer)
{
    struct proc_api_cfg basic = { "id", "s&cret", "http://h", "http://h/t", (char *)"basic" };
    struct proc_api_cfg body = { "id", "s&cret", "http://h", "http://h/t", (char *)"body" };
    char form[512], *at, *rt;
    long exp;
    bool invalid;
    struct cm_err err = { { 0 } };

    ck_assert(proc_oauth_refresh_form(PROC_API_FITBIT, &basic, "r/1", form, sizeof(form)));
    ck_assert_str_eq(form, "grant_type=refresh_token&refresh_token=r%2F1");
    ck_assert(proc_oauth_refresh_form(PROC_API_WHOOP, &body, "r1", form, sizeof(form)));
    ck_assert_str_eq(form, "grant_type=refresh_token&refresh_token=r1&client_id=id"
                           "&client_secret=s%26cret&scope=offline");
    ck_assert(proc_oauth_refresh_form(PROC_API_WITHINGS, &body, "r1", form, sizeof(form)));
    ck_assert(strncmp(form, "action=requesttoken&", 20) == 0);
    ck_assert(!proc_oauth_refresh_form(PROC_API_OURA, &body, "r1", form, 10));

    const char ok[] = "{\"access_token\":\"A\",\"refresh_token\":\"R\",\"expires_in\":3600}";
    ck_assert_int_eq(proc_oauth_parse_token(PROC_API_OURA, 200, ok, strlen(ok), &at, &rt, &exp,
                                            &invalid, &err), CM_OK);
    ck_assert_str_eq(at, "A");
    ck_assert_str_eq(rt, "R");
    ck_assert_int_eq(exp, 3600);
    free(at);
    free(rt);
    const char wrapped[] = "{\"status\":0,\"body\":{\"access_token\":\"A2\",\"expires_in\":10800}}";
    ck_assert_int_eq(proc_oauth_parse_token(PROC_API_WITHINGS, 200, wrapped, strlen(wrapped), &at,
                                            &rt, &exp, &invalid, &err), CM_OK);
    ck_assert_str_eq(at, "A2");
    ck_assert_ptr_null(rt);
    free(at);
    const char bad[] = "{\"error\":\"invalid_grant\",\"access_token\":\"leak\"}";
    ck_assert_int_eq(proc_oauth_parse_token(PROC_API_STRAVA, 400, bad, strlen(bad), &at, &rt,
                                            &exp, &invalid, &err), CM_RETRY);
    ck_assert(invalid);
    ck_assert_ptr_null(strstr(err.msg, "leak"));
    ck_assert_int_eq(proc_oauth_parse_token(PROC_API_STRAVA, 502, "<html>", 6, &at, &rt, &exp,
                                            &invalid, &err), CM_RETRY);
    ck_assert(!invalid);
}
END_TEST

START_TEST(test_refresh_due_with_jitter)
{
    struct proc_tokens t = { .state = PROC_TOKEN_OK, .expires_at_us = INT64_C(10000) * 1000000 };
    int64_t margin = 300;

    ck_assert(!proc_oauth_due(&t, (10000 - 601) * INT64_C(1000000), margin, 0));
    ck_assert(proc_oauth_due(&t, (10000 - 300) * INT64_C(1000000), margin, 0));
    ck_assert(proc_oauth_due(&t, (10000 - 599) * INT64_C(1000000), margin, 299999999));
    ck_assert(!proc_oauth_due(&t, (10000 - 599) * INT64_C(1000000), margin, 0));
    t.expires_at_us = 0;
    ck_assert(!proc_oauth_due(&t, 0, margin, 0));
}
END_TEST

START_TEST(test_raw_event_id_is_deterministic)
{
    char a[33], b[33], c[33];

    proc_fetch_raw_event_id("job-1", 0, a);
    proc_fetch_raw_event_id("job-1", 0, b);
    proc_fetch_raw_event_id("job-1", 1, c);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);
    ck_assert_uint_eq(strlen(a), 32);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proc_fetch");
    TCase *tc = tcase_create("pure");

    tcase_add_test(tc, test_plans);
    tcase_add_test(tc, test_google_health_plans);
    tcase_add_test(tc, test_google_health_next_page);
    tcase_add_test(tc, test_rate_hints);
    tcase_add_test(tc, test_backoff);
    tcase_add_test(tc, test_breaker);
    tcase_add_test(tc, test_plan_rejections);
    tcase_add_test(tc, test_hint_and_breaker_edges);
    tcase_add_test(tc, test_token_request_and_answer);
    tcase_add_test(tc, test_refresh_due_with_jitter);
    tcase_add_test(tc, test_raw_event_id_is_deterministic);
    suite_add_tcase(s, tc);
    return check_run(s);
}
