/* Google Health API webhooks (Fitbit's successor; notification only) -> fetch jobs, and the data
 * points the fetcher reads back -> samples.
 *
 * Sources of the fetched shapes (Google Health API v4 reference):
 *   shape                                         page
 *   list: ListDataPointsResponse                  [R]/users.dataTypes.dataPoints/list
 *     {dataPoints[], nextPageToken}
 *   DataPoint {name, dataSource, union member:    [R]/users.dataTypes.dataPoints
 *     steps | heartRate | weight | oxygenSaturation | ...}
 *   filter fields per record type                 https://developers.google.com/health/filters
 *   Steps {count, interval}                       [N]Data.Steps.html
 *   HeartRate {beatsPerMinute, sampleTime}        [N]Data.HeartRate.html
 *   Weight {weightGrams, sampleTime, notes}       [N]Data.Weight.html
 *   OxygenSaturation {percentage, sampleTime}     [N]Data.OxygenSaturation.html
 *   HeartRateVariability {rootMeanSquareOf...,    [D]HeartRateVariability
 *     standardDeviationMilliseconds, sampleTime}
 *   RespiratoryRateSleepSummary {fullSleepStats   [D]RespiratoryRateSleepSummary
 *     {breathsPerMinute}, sampleTime}
 *   DailyRestingHeartRate {beatsPerMinute, date}  [D]DailyRestingHeartRate
 *   DailyHeartRateVariability {averageHeart...,   [D]DailyHeartRateVariability
 *     date}
 *   DailyRespiratoryRate {breathsPerMinute, date} [D]DailyRespiratoryRate
 *   DailyOxygenSaturation {averagePercentage,     [D]DailyOxygenSaturation
 *     date}
 *   DailySleepTemperatureDerivations {nightly-,   [D]DailySleepTemperatureDerivations
 *     baselineTemperatureCelsius, date}
 *   Sleep {interval, type, stages[], summary}     [D]Sleep, SleepStage, SleepSummary,
 *                                                 StageSummary, SessionTimeInterval
 *   Exercise {interval, exerciseType,             [D]Exercise, MetricsSummary
 *     activeDuration, metricsSummary}
 *   ObservationSampleTime {physicalTime,          [N]Data.ObservationSampleTime.html
 *     utcOffset, civilTime}
 *   ObservationTimeInterval {startTime, endTime,  [N]Data.ObservationTimeInterval.html
 *     startUtcOffset, endUtcOffset, civil*}
 * [R] = https://developers.google.com/health/reference/rest/v4
 * [N] = https://googleapis.dev/dotnet/Google.Apis.GoogleHealthAPI.v4/latest/api/
 *       Google.Apis.GoogleHealthAPI.v4.  (the generated client's JSON property names)
 * [D] = https://doc.deno.land/https://googleapis.deno.dev/v1/health:v4.ts/~/  (generated types)
 *
 * Webhook body: a JSON array (a single object is accepted too) of
 *   {"data":{"healthUserId":"...","operation":"UPSERT|DELETE","dataType":"steps",
 *            "intervals":[{"physicalTimeInterval":{"startTime":"...","endTime":"..."}}],
 *            "clientProvidedSubscriptionName":"...","version":"..."}}
 * and the verification POST {"type":"verification"} -> handshake.
 *
 *   field          fetch job
 *   healthUserId   vendor_user_id
 *   dataType       resource (as given: [A-Za-z0-9_.-], < 48 chars)
 *   operation      event_type "upsert" / "delete"
 *   intervals      start = earliest startTime, end = latest endTime (when any)
 * UPSERT: the fetcher lists the data type's points over that window (proc_fetch_plan.c), following
 * nextPageToken. DELETE: one job per interval; the fetcher tombstones our stored events of that
 * data type whose start lies in the interval (how they are found: end of this file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

/* The notified intervals. UPSERT: one job over [earliest start, latest end] (listing more than
 * changed is harmless). DELETE: one job per interval, so disjoint intervals never tombstone what
 * lies between them; a DELETE without intervals is rejected ("missing_field: intervals"). */
static enum cm_rc parse_intervals(const json_t *data, struct proc_fetch *f, bool each,
                                  struct proc_out *out, struct cm_err *err)
{
    const json_t *arr, *iv;
    size_t i;
    enum cm_rc rc = proc_norm_get_arr(data, "intervals", &arr, err);

    if (rc != CM_OK) {
        return rc;
    }
    if (each && json_array_size(arr) == 0) {
        return cm_err_set(err, CM_INVALID, "missing_field: intervals");
    }
    json_array_foreach(arr, i, iv) {
        const json_t *pti;
        bool present, has_off;
        int32_t off;
        int64_t start, end;

        if ((rc = proc_norm_get_obj(iv, "physicalTimeInterval", &pti, err)) != CM_OK) {
            return rc;
        }
        if (pti == NULL) {
            return cm_err_set(err, CM_INVALID, "missing_field: physicalTimeInterval");
        }
        if ((rc = proc_norm_get_time(pti, "startTime", true, &present, &start, &has_off, &off,
                                     err)) != CM_OK ||
            (rc = proc_norm_get_time(pti, "endTime", true, &present, &end, &has_off, &off, err)) !=
                CM_OK) {
            return rc;
        }
        if (end < start) {
            return cm_err_set(err, CM_INVALID, "out_of_range: endTime");
        }
        if (each) {
            struct proc_fetch *one = proc_out_add_fetch(out);
            *one = *f;
            one->start_us = start;
            one->end_us = end;
            one->has_start = one->has_end = true;
            continue;
        }
        if (!f->has_start || start < f->start_us) {
            f->start_us = start;
        }
        if (!f->has_end || end > f->end_us) {
            f->end_us = end;
        }
        f->has_start = f->has_end = true;
    }
    if (!each) {
        *proc_out_add_fetch(out) = *f;
    }
    return CM_OK;
}

static enum cm_rc parse_one(const json_t *n, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const json_t *data;
    const char *op, *type;
    enum cm_rc rc;

    if (!json_is_object(n)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: notification");
    }
    if ((rc = proc_norm_get_obj(n, "data", &data, err)) != CM_OK) {
        return rc;
    }
    if (data == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: data");
    }
    if ((rc = proc_norm_get_id(data, "healthUserId", true, f.vendor_user_id,
                               sizeof(f.vendor_user_id), err)) != CM_OK ||
        (rc = proc_norm_get_str(data, "operation", true, &op, err)) != CM_OK ||
        (rc = proc_norm_get_str(data, "dataType", true, &type, err)) != CM_OK) {
        return rc;
    }
    if (strcmp(op, "UPSERT") == 0) {
        cm_strlcpy(f.event_type, "upsert", sizeof(f.event_type));
    } else if (strcmp(op, "DELETE") == 0) {
        cm_strlcpy(f.event_type, "delete", sizeof(f.event_type));
    } else {
        return cm_err_set(err, CM_INVALID, "out_of_range: operation");
    }
    if (strcmp(proc_norm_safe_name(type), "?") == 0 ||
        !cm_strlcpy(f.resource, type, sizeof(f.resource))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: dataType");
    }
    return parse_intervals(data, &f, strcmp(op, "DELETE") == 0, out, err);
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    enum cm_rc rc;

    if (json_is_object(root)) {
        const char *type;
        if ((rc = proc_norm_get_str(root, "type", false, &type, err)) != CM_OK) {
            return rc;
        }
        if (type != NULL && strcmp(type, "verification") == 0) {
            out->is_handshake = true;
            return CM_OK;
        }
        return parse_one(root, out, err);
    }
    return proc_norm_each(root, parse_one, out, err);
}


/* ---- fetched records (base https://health.googleapis.com) ----
 * One list answer {dataPoints[], nextPageToken} per page; every DataPoint carries the member of
 * its data type. Times: physicalTime / startTime / endTime (RFC 3339, UTC); a daily type's
 * `date` {year, month, day} covers that whole UTC day.
 *   record type (google_health.)   dataPoints[] member                       metric
 *   steps                          steps.count over steps.interval           steps
 *   heart_rate                     heartRate.beatsPerMinute                  heart_rate
 *   weight                         weight.weightGrams / 1000                 body_weight kg
 *   oxygen_saturation              oxygenSaturation.percentage               spo2
 *   heart_rate_variability         heartRateVariability.                     hrv_rmssd,
 *                                  rootMeanSquareOfSuccessiveDifferencesMilliseconds,
 *                                  .standardDeviationMilliseconds            hrv_sdnn (each
 *                                                                            when present)
 *   respiratory_rate_sleep_summary respiratoryRateSleepSummary.              respiratory_rate
 *                                  fullSleepStats.breathsPerMinute
 *   daily_resting_heart_rate       dailyRestingHeartRate.beatsPerMinute      resting_heart_rate
 *   daily_heart_rate_variability   dailyHeartRateVariability.                hrv_rmssd (when
 *                                  averageHeartRateVariabilityMilliseconds   present)
 *   daily_respiratory_rate         dailyRespiratoryRate.breathsPerMinute     respiratory_rate
 *   daily_oxygen_saturation        dailyOxygenSaturation.averagePercentage   spo2
 *   daily_sleep_temperature_       dailySleepTemperatureDerivations.         skin_temperature;
 *     derivations                  nightlyTemperatureCelsius (- baseline-    skin_temperature_
 *                                  TemperatureCelsius when given)            deviation
 *   sleep                          sleep over sleep.interval: summary.minutesAsleep
 *                                  -> sleep_duration_total; summary.stagesSummary[] minutes of
 *                                  DEEP / LIGHT / REM / AWAKE -> sleep_{deep,light,rem,awake}_
 *                                  duration; minutesAsleep / minutesInSleepPeriod -> sleep_
 *                                  efficiency %. Without a summary the same come from the
 *                                  stages[] segments (ASLEEP counts as asleep; RESTLESS as
 *                                  neither) and the session length.
 *   exercise                       exercise over exercise.interval: activeDuration ("1800s")
 *                                  -> exercise_duration min (else end - start); metricsSummary.
 *                                  caloriesKcal -> active_energy, .distanceMillimeters / 1000 ->
 *                                  distance m, .averageHeartRateBeatsPerMinute -> heart_rate
 *                                  (each when present; metricsSummary.steps is not read: the
 *                                  steps data type already counts them, as for Oura and Strava
 *                                  workouts)
 * The record id is the data point's `name` when the API gives one (identifiable types:
 * "users/{user}/dataTypes/{type}/dataPoints/{id}"), else "<member>@<start time>", so a re-read of
 * the same point gets the same event id. These two forms are also how a DELETE notification finds
 * our stored events of a data type (proc_fetch.c): source_record_id "<member>@%" or
 * "%dataTypes/<type>/dataPoints/%", start_time within the notified interval. A data point
 * without its member -> "missing_field: <member>". */
struct gh_metric {
    const char *path, *metric;
    double scale;
    bool required;
};

struct gh_type {
    struct proc_gh_type t;
    const struct gh_metric *m;
    size_t n;
    enum cm_rc (*record)(const json_t *body, const char *id, int64_t start, int64_t end,
                         const struct proc_emit *em, struct cm_err *err);
};

#define GH_M(...) ((const struct gh_metric[]){ __VA_ARGS__ })
#define GH_N(...) (sizeof((const struct gh_metric[]){ __VA_ARGS__ }) / sizeof(struct gh_metric))
#define GH_T(TYPE, RES, MEMBER, FILTER, ...)                                                     \
    { .t = { (TYPE), (RES), (MEMBER), (FILTER) }, .m = GH_M(__VA_ARGS__),                      \
      .n = GH_N(__VA_ARGS__) }

static enum cm_rc sleep_record(const json_t *body, const char *id, int64_t start, int64_t end,
                               const struct proc_emit *em, struct cm_err *err);
static enum cm_rc exercise_record(const json_t *body, const char *id, int64_t start, int64_t end,
                                  const struct proc_emit *em, struct cm_err *err);

static const struct gh_type gh_types[] = {
    GH_T("steps", "steps", "steps", PROC_GH_INTERVAL, { "count", "steps", 1, true }),
    GH_T("heart-rate", "heart_rate", "heartRate", PROC_GH_SAMPLE,
         { "beatsPerMinute", "heart_rate", 1, true }),
    GH_T("weight", "weight", "weight", PROC_GH_SAMPLE,
         { "weightGrams", "body_weight", 0.001, true }),
    GH_T("oxygen-saturation", "oxygen_saturation", "oxygenSaturation", PROC_GH_SAMPLE,
         { "percentage", "spo2", 1, true }),
    GH_T("heart-rate-variability", "heart_rate_variability", "heartRateVariability",
         PROC_GH_SAMPLE,
         { "rootMeanSquareOfSuccessiveDifferencesMilliseconds", "hrv_rmssd", 1, false },
         { "standardDeviationMilliseconds", "hrv_sdnn", 1, false }),
    GH_T("respiratory-rate-sleep-summary", "respiratory_rate_sleep_summary",
         "respiratoryRateSleepSummary", PROC_GH_SAMPLE,
         { "fullSleepStats.breathsPerMinute", "respiratory_rate", 1, true }),
    GH_T("daily-resting-heart-rate", "daily_resting_heart_rate", "dailyRestingHeartRate",
         PROC_GH_DAILY, { "beatsPerMinute", "resting_heart_rate", 1, true }),
    GH_T("daily-heart-rate-variability", "daily_heart_rate_variability",
         "dailyHeartRateVariability", PROC_GH_DAILY,
         { "averageHeartRateVariabilityMilliseconds", "hrv_rmssd", 1, false }),
    GH_T("daily-respiratory-rate", "daily_respiratory_rate", "dailyRespiratoryRate",
         PROC_GH_DAILY, { "breathsPerMinute", "respiratory_rate", 1, true }),
    GH_T("daily-oxygen-saturation", "daily_oxygen_saturation", "dailyOxygenSaturation",
         PROC_GH_DAILY, { "averagePercentage", "spo2", 1, true }),
    GH_T("daily-sleep-temperature-derivations", "daily_sleep_temperature_derivations",
         "dailySleepTemperatureDerivations", PROC_GH_DAILY,
         { "nightlyTemperatureCelsius", "skin_temperature", 1, true }),
    { .t = { "sleep", "sleep", "sleep", PROC_GH_SLEEP }, .record = sleep_record },
    { .t = { "exercise", "exercise", "exercise", PROC_GH_EXERCISE }, .record = exercise_record },
};

const struct proc_gh_type *proc_google_health_type(const char *name)
{
    for (size_t i = 0; name != NULL && i < CM_ARRAY_LEN(gh_types); i++) {
        if (strcmp(name, gh_types[i].t.data_type) == 0 ||
            strcmp(name, gh_types[i].t.resource) == 0) {
            return &gh_types[i].t;
        }
    }
    return NULL;
}

/* A number at a dotted path. The API's JSON follows the proto3 mapping, where int64 fields
 * (steps.count, beatsPerMinute, minutesAsleep, ...) are JSON strings of decimal digits: both forms
 * are read. Absent: *present = false ("missing_field" when required). */
static enum cm_rc get_value(const json_t *obj, const char *path, bool required, bool *present,
                            double *out, struct cm_err *err)
{
    const json_t *v = proc_norm_path(obj, path);
    const char *key = strrchr(path, '.') != NULL ? strrchr(path, '.') + 1 : path;

    *present = v != NULL;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s);

        if (n == 0 || n > 18 || strspn(s, "0123456789") != n) {
            return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
        }
        *out = strtod(s, NULL);
        return CM_OK;
    }
    enum cm_rc rc = proc_norm_path_num(obj, path, present, out, err);
    if (rc == CM_OK && !*present && required) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", key);
    }
    return rc;
}

/* A google.type.Date {year, month, day} -> midnight UTC of that day. */
static enum cm_rc get_date(const json_t *body, int64_t *us, struct cm_err *err)
{
    const json_t *d;
    int64_t y, m, day;
    bool py, pm, pd;
    char ymd[16];
    enum cm_rc rc = proc_norm_get_obj(body, "date", &d, err);

    if (rc != CM_OK) {
        return rc;
    }
    if (d == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: date");
    }
    if ((rc = proc_norm_get_int(d, "year", &py, &y, err)) != CM_OK ||
        (rc = proc_norm_get_int(d, "month", &pm, &m, err)) != CM_OK ||
        (rc = proc_norm_get_int(d, "day", &pd, &day, err)) != CM_OK) {
        return rc;
    }
    if (!py || !pm || !pd || y < 1 || y > 9999 || m < 1 || m > 12 || day < 1 || day > 31 ||
        snprintf(ymd, sizeof(ymd), "%04d-%02d-%02d", (int)y, (int)m, (int)day) != 10 ||
        !proc_norm_parse_date(ymd, us)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: date");
    }
    return CM_OK;
}

/* start/end of a data point of type t from its member `body`. */
static enum cm_rc point_time(const struct gh_type *t, const json_t *body, int64_t *start,
                             int64_t *end, struct cm_err *err)
{
    const char *obj = t->t.filter == PROC_GH_SAMPLE ? "sampleTime" : "interval";
    const json_t *when;
    bool present, has_off;
    int32_t off;
    enum cm_rc rc;

    if (t->t.filter == PROC_GH_DAILY) {
        if ((rc = get_date(body, start, err)) == CM_OK) {
            *end = *start + INT64_C(86400000000);
        }
        return rc;
    }
    if ((rc = proc_norm_get_obj(body, obj, &when, err)) != CM_OK) {
        return rc;
    }
    if (when == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", obj);
    }
    if (t->t.filter == PROC_GH_SAMPLE) {
        rc = proc_norm_get_time(when, "physicalTime", true, &present, start, &has_off, &off, err);
        *end = *start;
        return rc;
    }
    if ((rc = proc_norm_get_time(when, "startTime", true, &present, start, &has_off, &off, err)) !=
            CM_OK ||
        (rc = proc_norm_get_time(when, "endTime", true, &present, end, &has_off, &off, err)) !=
            CM_OK) {
        return rc;
    }
    return *end < *start ? cm_err_set(err, CM_INVALID, "out_of_range: endTime") : CM_OK;
}

static enum cm_rc emit_metrics(const struct gh_type *t, const json_t *body, const char *id,
                               int64_t start, int64_t end, const struct proc_emit *em,
                               struct cm_err *err)
{
    enum cm_rc rc = CM_OK;

    for (size_t i = 0; i < t->n && rc == CM_OK; i++) {
        bool present;
        double v;

        if ((rc = get_value(body, t->m[i].path, t->m[i].required, &present, &v, err)) == CM_OK &&
            present) {
            rc = proc_norm_emit(em, t->m[i].metric, v * t->m[i].scale, start, end, id, err);
        }
    }
    if (rc == CM_OK && strcmp(t->t.member, "dailySleepTemperatureDerivations") == 0) {
        bool pn, pb;
        double nightly, base;
        if ((rc = get_value(body, "nightlyTemperatureCelsius", true, &pn, &nightly, err)) ==
                CM_OK &&
            (rc = get_value(body, "baselineTemperatureCelsius", false, &pb, &base, err)) ==
                CM_OK &&
            pb) {
            rc = proc_norm_emit(em, "skin_temperature_deviation", nightly - base, start, end, id,
                                err);
        }
    }
    return rc;
}

/* Minutes per stage type of a sleep, from summary.stagesSummary[] or (no summary) stages[]. */
struct sleep_minutes {
    double asleep, deep, light, rem, awake, period;
    bool has_asleep, has_period;
};

static void add_stage(struct sleep_minutes *s, const char *type, double min)
{
    if (strcmp(type, "DEEP") == 0) {
        s->deep += min;
    } else if (strcmp(type, "LIGHT") == 0) {
        s->light += min;
    } else if (strcmp(type, "REM") == 0) {
        s->rem += min;
    } else if (strcmp(type, "AWAKE") == 0) {
        s->awake += min;
    }
}

static enum cm_rc sleep_from_stages(const json_t *body, int64_t start, int64_t end,
                                    struct sleep_minutes *s, struct cm_err *err)
{
    const json_t *arr, *st;
    size_t i;
    enum cm_rc rc = proc_norm_get_arr(body, "stages", &arr, err);

    if (rc != CM_OK) {
        return rc;
    }
    json_array_foreach(arr, i, st) {
        const char *type;
        bool present, has_off;
        int32_t off;
        int64_t a, b;

        if ((rc = proc_norm_get_str(st, "type", true, &type, err)) != CM_OK ||
            (rc = proc_norm_get_time(st, "startTime", true, &present, &a, &has_off, &off, err)) !=
                CM_OK ||
            (rc = proc_norm_get_time(st, "endTime", true, &present, &b, &has_off, &off, err)) !=
                CM_OK) {
            return rc;
        }
        if (b < a) {
            return cm_err_set(err, CM_INVALID, "out_of_range: endTime");
        }
        add_stage(s, type, (double)(b - a) / 60e6);
        if (strcmp(type, "ASLEEP") == 0) {
            s->asleep += (double)(b - a) / 60e6;
        }
    }
    s->asleep += s->deep + s->light + s->rem;
    s->has_asleep = json_array_size(arr) > 0;
    s->period = (double)(end - start) / 60e6;
    s->has_period = true;
    return CM_OK;
}

static enum cm_rc sleep_record(const json_t *body, const char *id, int64_t start, int64_t end,
                               const struct proc_emit *em, struct cm_err *err)
{
    struct sleep_minutes s = { 0 };
    const json_t *sum, *arr, *st;
    size_t i;
    enum cm_rc rc = proc_norm_get_obj(body, "summary", &sum, err);

    if (rc == CM_OK && sum == NULL) {
        rc = sleep_from_stages(body, start, end, &s, err);
    } else if (rc == CM_OK) {
        if ((rc = get_value(sum, "minutesAsleep", false, &s.has_asleep, &s.asleep, err)) !=
                CM_OK ||
            (rc = get_value(sum, "minutesInSleepPeriod", false, &s.has_period, &s.period, err)) !=
                CM_OK ||
            (rc = proc_norm_get_arr(sum, "stagesSummary", &arr, err)) != CM_OK) {
            return rc;
        }
        json_array_foreach(arr, i, st) {
            const char *type;
            bool present;
            double min;
            if ((rc = proc_norm_get_str(st, "type", true, &type, err)) != CM_OK ||
                (rc = get_value(st, "minutes", true, &present, &min, err)) != CM_OK) {
                return rc;
            }
            add_stage(&s, type, min);
        }
    }
    if (rc != CM_OK) {
        return rc;
    }
    const struct {
        const char *metric;
        double v;
        bool present;
    } out[] = {
        { "sleep_duration_total", s.asleep, s.has_asleep },
        { "sleep_deep_duration", s.deep, s.deep > 0 },
        { "sleep_light_duration", s.light, s.light > 0 },
        { "sleep_rem_duration", s.rem, s.rem > 0 },
        { "sleep_awake_duration", s.awake, s.awake > 0 },
        { "sleep_efficiency", s.period > 0 ? 100 * s.asleep / s.period : 0,
          s.has_asleep && s.has_period && s.period > 0 },
    };
    for (i = 0; i < CM_ARRAY_LEN(out) && rc == CM_OK; i++) {
        if (out[i].present) {
            rc = proc_norm_emit(em, out[i].metric, out[i].v, start, end, id, err);
        }
    }
    return rc;
}

/* A protobuf Duration in JSON: decimal seconds with an "s" suffix ("1800s", "1.5s"). */
static bool parse_duration(const char *s, double *sec)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || strcmp(end, "s") != 0 || !(v >= 0 && v < 1e9)) {
        return false;
    }
    *sec = v;
    return true;
}

static enum cm_rc exercise_record(const json_t *body, const char *id, int64_t start,
                                  int64_t end, const struct proc_emit *em, struct cm_err *err)
{
    static const struct gh_metric summary[] = {
        { "metricsSummary.caloriesKcal", "active_energy", 1, false },
        { "metricsSummary.distanceMillimeters", "distance", 0.001, false },
        { "metricsSummary.averageHeartRateBeatsPerMinute", "heart_rate", 1, false },
    };
    const struct gh_type t = { .m = summary, .n = CM_ARRAY_LEN(summary), .t = { .member = "" } };
    const char *active;
    double sec = (double)(end - start) / 1e6;
    enum cm_rc rc = proc_norm_get_str(body, "activeDuration", false, &active, err);

    if (rc != CM_OK) {
        return rc;
    }
    if (active != NULL && !parse_duration(active, &sec)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: activeDuration");
    }
    if ((rc = proc_norm_emit(em, "exercise_duration", sec / 60, start, end, id, err)) != CM_OK) {
        return rc;
    }
    return emit_metrics(&t, body, id, start, end, em, err);
}

static enum cm_rc data_point(const struct cm_raw_webhook *raw, const json_t *rec,
                             struct proc_emit *em, struct cm_err *err)
{
    const char *rt = strchr(raw->record_type, '.') + 1; /* checked by proc_norm_api_parse() */
    const struct proc_gh_type *pt = proc_google_health_type(rt);
    const struct gh_type *t = (const struct gh_type *)pt; /* .t is the first member */
    const json_t *body;
    const char *name;
    char id[PROC_NORM_ID_MAX + 1], iso[40];
    int64_t start = 0, end = 0;
    enum cm_rc rc;

    if (pt == NULL || strcmp(rt, pt->resource) != 0) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(rt));
    }
    if (!json_is_object(rec)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: dataPoint");
    }
    if ((rc = proc_norm_get_obj(rec, t->t.member, &body, err)) != CM_OK) {
        return rc;
    }
    if (body == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", t->t.member);
    }
    if ((rc = point_time(t, body, &start, &end, err)) != CM_OK ||
        (rc = proc_norm_get_str(rec, "name", false, &name, err)) != CM_OK) {
        return rc;
    }
    proc_norm_format_time(start, iso);
    if (name != NULL ? !proc_norm_id_ok(name) || !cm_strlcpy(id, name, sizeof(id))
                     : snprintf(id, sizeof(id), "%s@%s", t->t.member, iso) >= (int)sizeof(id)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: name");
    }
    if (t->record != NULL) {
        return t->record(body, id, start, end, em, err);
    }
    return emit_metrics(t, body, id, start, end, em, err);
}

#define GH_SPEC(RES) { .resource = (RES), .items = "dataPoints", .record = data_point }

static const struct proc_api_spec api_specs[] = {
    GH_SPEC("steps"),
    GH_SPEC("heart_rate"),
    GH_SPEC("weight"),
    GH_SPEC("oxygen_saturation"),
    GH_SPEC("heart_rate_variability"),
    GH_SPEC("respiratory_rate_sleep_summary"),
    GH_SPEC("daily_resting_heart_rate"),
    GH_SPEC("daily_heart_rate_variability"),
    GH_SPEC("daily_respiratory_rate"),
    GH_SPEC("daily_oxygen_saturation"),
    GH_SPEC("daily_sleep_temperature_derivations"),
    GH_SPEC("sleep"),
    GH_SPEC("exercise"),
};

enum cm_rc proc_google_health_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                                    struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, api_specs, CM_ARRAY_LEN(api_specs), out, err);
}
