/* Polar AccessLink webhooks (notification only) -> fetch jobs. Body:
 *   {"event":"EXERCISE","user_id":475,"entity_id":"aQlC83","timestamp":"...","url":"https://..."}
 *   {"event":"SLEEP","user_id":475,"date":"2019-12-31","timestamp":"...","url":"https://..."}
 *   {"event":"PING","timestamp":"..."}                         -> handshake
 *
 *   event                          resource
 *   EXERCISE                       exercise
 *   SLEEP                          sleep
 *   CONTINUOUS_HEART_RATE          continuous_heart_rate
 *   SLEEP_WISE_CIRCADIAN_BEDTIME   sleep_wise_circadian_bedtime
 *   SLEEP_WISE_ALERTNESS           sleep_wise_alertness
 *   ACTIVITY_SUMMARY               activity_summary
 *   PHYSICAL_INFORMATION           physical_information
 * object_id = entity_id, else the date; a date also gives [date 00:00 UTC, next day 00:00 UTC)
 * as start/end. url is Polar's link to the resource; it must be https://www.polaraccesslink.com/
 * (the fetcher sends the user's token there, so nothing else is accepted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

#define URL_PREFIX "https://www.polaraccesslink.com/"

static const char *const events[][2] = {
    { "EXERCISE", "exercise" },
    { "SLEEP", "sleep" },
    { "CONTINUOUS_HEART_RATE", "continuous_heart_rate" },
    { "SLEEP_WISE_CIRCADIAN_BEDTIME", "sleep_wise_circadian_bedtime" },
    { "SLEEP_WISE_ALERTNESS", "sleep_wise_alertness" },
    { "ACTIVITY_SUMMARY", "activity_summary" },
    { "PHYSICAL_INFORMATION", "physical_information" },
};

static bool url_ok(const char *url)
{
    if (strncmp(url, URL_PREFIX, strlen(URL_PREFIX)) != 0) {
        return false;
    }
    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            return false;
        }
    }
    return true;
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *event, *url, *date;
    const char *resource = NULL;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_str(root, "event", true, &event, err)) != CM_OK) {
        return rc;
    }
    if (strcmp(event, "PING") == 0) {
        out->is_handshake = true;
        return CM_OK;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(events); i++) {
        if (strcmp(events[i][0], event) == 0) {
            resource = events[i][1];
        }
    }
    if (resource == NULL) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(event));
    }
    if ((rc = proc_norm_get_id(root, "user_id", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "entity_id", false, f.object_id, sizeof(f.object_id), err)) !=
            CM_OK ||
        (rc = proc_norm_get_str(root, "date", false, &date, err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "url", true, &url, err)) != CM_OK) {
        return rc;
    }
    if (!url_ok(url) || !cm_strlcpy(f.url, url, sizeof(f.url))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: url");
    }
    if (date != NULL) {
        if (!proc_norm_parse_date(date, &f.start_us)) {
            return cm_err_set(err, CM_INVALID, "bad_time: date");
        }
        f.end_us = f.start_us + INT64_C(86400000000);
        f.has_start = f.has_end = true;
        if (f.object_id[0] == '\0') {
            cm_strlcpy(f.object_id, date, sizeof(f.object_id));
        }
    }
    cm_strlcpy(f.resource, resource, sizeof(f.resource));
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

/* ---- fetched records (base https://www.polaraccesslink.com) ----
 *   polar.exercise               GET /v3/exercises/{id}: start_time (local) with
 *                                start_time_utc_offset (min), duration ("PT1H2M3.5S") ->
 *                                exercise_duration, calories, distance, heart_rate.average
 *   polar.sleep                  GET /v3/users/sleep/{date}: light/deep/REM (s -> min), total =
 *                                their sum, total_interruption_duration -> awake, sleep_score
 *   polar.nightly_recharge       GET /v3/users/nightly-recharge/{date}: heart_rate_avg,
 *                                heart_rate_variability_avg (RMSSD), breathing_rate_avg,
 *                                ans_charge, nightly_recharge_status (the UTC day of `date`)
 *   polar.continuous_heart_rate  GET /v3/users/continuous-heart-rate/{date}: heart_rate_samples
 *                                [{heart_rate, sample_time "HH:MM:SS"}] -> heart_rate points;
 *                                AccessLink gives no offset for them, so they are read as UTC */
#define S_TO_MIN (1.0 / 60.0)

/* ISO 8601 duration as Polar writes it: PT[nH][nM][n[.f]S]. */
static bool parse_duration(const char *s, double *secs)
{
    double total = 0;
    const char *p = s;

    if (strncmp(p, "PT", 2) != 0) {
        return false;
    }
    p += 2;
    while (*p != '\0') {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0) {
            return false;
        }
        if (*end == 'H') {
            total += v * 3600;
        } else if (*end == 'M') {
            total += v * 60;
        } else if (*end == 'S') {
            total += v;
        } else {
            return false;
        }
        p = end + 1;
    }
    *secs = total;
    return p != s + 2;
}

static enum cm_rc exercise_record(const struct cm_raw_webhook *raw, const json_t *rec,
                                  struct proc_emit *em, struct cm_err *err)
{
    static const struct proc_api_metric m[] = {
        { "calories", "active_energy", 1 },
        { "distance", "distance", 1 },
        { "heart_rate.average", "heart_rate", 1 },
    };
    char id[PROC_NORM_ID_MAX + 1];
    const char *start, *dur;
    bool present, has_off;
    int64_t start_us, off_min = 0;
    int32_t off;
    double secs, v;
    enum cm_rc rc;

    if ((rc = proc_norm_get_id(rec, "id", true, id, sizeof(id), err)) != CM_OK ||
        (rc = proc_norm_get_str(rec, "start_time", true, &start, err)) != CM_OK ||
        (rc = proc_norm_get_str(rec, "duration", true, &dur, err)) != CM_OK ||
        (rc = proc_norm_get_int(rec, "start_time_utc_offset", &present, &off_min, err)) != CM_OK) {
        return rc;
    }
    if (!proc_norm_parse_time(start, &start_us, &has_off, &off)) {
        return cm_err_set(err, CM_INVALID, "bad_time: start_time");
    }
    if (!parse_duration(dur, &secs) || secs > 86400.0 * 7) {
        return cm_err_set(err, CM_INVALID, "out_of_range: duration");
    }
    if (!has_off && present) {
        if (off_min < -18 * 60 || off_min > 18 * 60) {
            return cm_err_set(err, CM_INVALID, "out_of_range: start_time_utc_offset");
        }
        start_us -= off_min * 60 * INT64_C(1000000); /* local wall time -> UTC */
        off = (int32_t)(off_min * 60);
        has_off = true;
    }
    em->has_off = has_off;
    em->off_s = off;
    int64_t end_us = start_us + (int64_t)(secs * 1e6);
    if ((rc = proc_norm_emit(em, "exercise_duration", secs / 60.0, start_us, end_us, id, err)) !=
        CM_OK) {
        return rc;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(m); i++) {
        if ((rc = proc_norm_path_num(rec, m[i].path, &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (present && (rc = proc_norm_emit(em, m[i].metric, v * m[i].scale, start_us, end_us, id,
                                            err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

static enum cm_rc chr_record(const struct cm_raw_webhook *raw, const json_t *rec,
                             struct proc_emit *em, struct cm_err *err)
{
    const char *date;
    const json_t *samples, *s;
    int64_t day_us;
    size_t i;
    enum cm_rc rc;

    if ((rc = proc_norm_get_str(rec, "date", true, &date, err)) != CM_OK ||
        (rc = proc_norm_get_arr(rec, "heart_rate_samples", &samples, err)) != CM_OK) {
        return rc;
    }
    if (!proc_norm_parse_date(date, &day_us)) {
        return cm_err_set(err, CM_INVALID, "bad_time: date");
    }
    json_array_foreach(samples, i, s) {
        const char *t;
        char iso[40], srid[64];
        int64_t us;
        bool has_off, present;
        int32_t off;
        double hr;

        if ((rc = proc_norm_get_str(s, "sample_time", true, &t, err)) != CM_OK ||
            (rc = proc_norm_get_num(s, "heart_rate", &present, &hr, err)) != CM_OK) {
            return rc;
        }
        if (strlen(t) != 8 || snprintf(iso, sizeof(iso), "%sT%sZ", date, t) >= (int)sizeof(iso) ||
            !proc_norm_parse_time(iso, &us, &has_off, &off) || us < day_us) {
            return cm_err_set(err, CM_INVALID, "bad_time: sample_time");
        }
        snprintf(srid, sizeof(srid), "chr-%s#%s", date, t);
        if (present && (rc = proc_norm_emit(em, "heart_rate", hr, us, us, srid, err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

static const struct proc_api_metric sleep_metrics[] = {
    { "light_sleep", "sleep_light_duration", S_TO_MIN },
    { "deep_sleep", "sleep_deep_duration", S_TO_MIN },
    { "rem_sleep", "sleep_rem_duration", S_TO_MIN },
    { "total_interruption_duration", "sleep_awake_duration", S_TO_MIN },
    { "sleep_score", "score.polar.sleep_score", 1 },
};

static enum cm_rc sleep_total(const json_t *rec, const struct proc_api_rec *r, struct cm_err *err)
{
    double sum = 0, v;
    bool present;
    enum cm_rc rc;

    for (size_t i = 0; i < 3; i++) {
        if ((rc = proc_norm_path_num(rec, sleep_metrics[i].path, &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (!present) {
            return CM_OK;
        }
        sum += v;
    }
    return proc_norm_emit(&r->em, "sleep_duration_total", sum * S_TO_MIN, r->start_us, r->end_us,
                          r->id, err);
}

static const struct proc_api_metric recharge_metrics[] = {
    { "heart_rate_avg", "heart_rate", 1 },
    { "heart_rate_variability_avg", "hrv_rmssd", 1 },
    { "breathing_rate_avg", "respiratory_rate", 1 },
    { "ans_charge", "score.polar.ans_charge", 1 },
    { "nightly_recharge_status", "score.polar.nightly_recharge", 1 },
};

static const struct proc_api_spec api_specs[] = {
    { .resource = "exercise", .record = exercise_record },
    { .resource = "sleep", .id = "date", .start = "sleep_start_time", .end = "sleep_end_time",
      .time = PROC_API_T_RFC3339, .metrics = sleep_metrics,
      .n_metrics = CM_ARRAY_LEN(sleep_metrics), .extra = sleep_total },
    { .resource = "nightly_recharge", .id = "date", .start = "date", .time = PROC_API_T_DATE,
      .metrics = recharge_metrics, .n_metrics = CM_ARRAY_LEN(recharge_metrics) },
    { .resource = "continuous_heart_rate", .record = chr_record },
};

enum cm_rc proc_polar_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                            struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, api_specs, CM_ARRAY_LEN(api_specs), out, err);
}
