/* Withings Notify callbacks (notification only) -> fetch jobs and lifecycle notices. The body is
 * application/x-www-form-urlencoded: userid=30001&appli=1&startdate=1530576000&enddate=1530698753
 * (also deviceid, date, action; unknown fields are ignored).
 *
 *   appli   resource          fetcher service
 *   1       weight            Measure - Getmeas (weight / body composition meastypes)
 *   2       temperature       Measure - Getmeas (temperature meastypes)
 *   4       blood_pressure    Measure - Getmeas (BP, pulse, SpO2 meastypes)
 *   16      activity          Measure v2 - Getactivity / Getintradayactivity
 *   44      sleep             Sleep v2 - Get / Getsummary
 *   46      (user events)     action=unlink|delete -> lifecycle "revoked"; other actions: nothing
 * action=unlink with any appli also ends the connection. startdate/enddate (epoch seconds) become
 * start/end; a `date` (YYYY-MM-DD) gives the whole UTC day. Other appli values ->
 * "unsupported_record: appli". */
#include <math.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

#define MAX_FIELD 256

struct form {
    char userid[128], appli[16], startdate[24], enddate[24], date[24], action[24];
};

static enum cm_rc parse_form(const uint8_t *body, size_t len, struct form *f, struct cm_err *err)
{
    static const struct {
        const char *name;
        size_t off, size;
    } fields[] = {
        { "userid", offsetof(struct form, userid), sizeof(f->userid) },
        { "appli", offsetof(struct form, appli), sizeof(f->appli) },
        { "startdate", offsetof(struct form, startdate), sizeof(f->startdate) },
        { "enddate", offsetof(struct form, enddate), sizeof(f->enddate) },
        { "date", offsetof(struct form, date), sizeof(f->date) },
        { "action", offsetof(struct form, action), sizeof(f->action) },
    };
    const char *p = (const char *)body, *end = p != NULL ? p + len : NULL;

    memset(f, 0, sizeof(*f));
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        char key[MAX_FIELD];

        if (eq == NULL) {
            eq = pair_end;
        }
        if (!cm_pct_decode(p, (size_t)(eq - p), true, key, sizeof(key))) {
            return cm_err_set(err, CM_INVALID, "malformed_form");
        }
        for (size_t i = 0; i < CM_ARRAY_LEN(fields); i++) {
            if (strcmp(key, fields[i].name) != 0) {
                continue;
            }
            char *dst = (char *)f + fields[i].off;
            const char *v = eq < pair_end ? eq + 1 : pair_end;
            if (dst[0] != '\0') {
                return cm_err_set(err, CM_INVALID, "duplicate_field: %s", fields[i].name);
            }
            if (!cm_pct_decode(v, (size_t)(pair_end - v), true, dst, fields[i].size)) {
                return cm_err_set(err, CM_INVALID, "out_of_range: %s", fields[i].name);
            }
        }
        p = pair_end + 1;
    }
    return CM_OK;
}

/* Non-negative decimal integer, the whole string. */
static bool parse_uint(const char *s, int64_t max, int64_t *out)
{
    char *end = NULL;

    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static const struct {
    int64_t appli;
    const char *resource;
} applis[] = {
    { 1, "weight" }, { 2, "temperature" }, { 4, "blood_pressure" }, { 16, "activity" },
    { 44, "sleep" },
};

static enum cm_rc parse_body(const struct form *form, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    int64_t uid, appli, t;

    if (form->userid[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "missing_field: userid");
    }
    if (form->appli[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "missing_field: appli");
    }
    /* Canonical decimal only: "030001" would be another id for the same user. */
    if (!parse_uint(form->userid, INT64_MAX, &uid) ||
        (form->userid[0] == '0' && form->userid[1] != '\0')) {
        return cm_err_set(err, CM_INVALID, "out_of_range: userid");
    }
    if (!parse_uint(form->appli, 1000, &appli)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: appli");
    }
    cm_strlcpy(f.vendor_user_id, form->userid, sizeof(f.vendor_user_id));
    if (strcmp(form->action, "unlink") == 0 ||
        (appli == 46 && strcmp(form->action, "delete") == 0)) {
        struct proc_lifecycle *l = proc_out_add_lifecycle(out);
        cm_strlcpy(l->vendor_user_id, form->userid, sizeof(l->vendor_user_id));
        cm_strlcpy(l->action, "revoked", sizeof(l->action));
        return CM_OK;
    }
    if (appli == 46) {
        return CM_OK; /* profile update: nothing to fetch */
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(applis); i++) {
        if (applis[i].appli == appli) {
            cm_strlcpy(f.resource, applis[i].resource, sizeof(f.resource));
        }
    }
    if (f.resource[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "unsupported_record: appli");
    }
    cm_strlcpy(f.event_type, form->action, sizeof(f.event_type));
    /* Epoch seconds; the upper bound keeps the micros product finite. */
    const int64_t max_s = INT64_C(100000000000);
    if (form->startdate[0] != '\0') {
        if (!parse_uint(form->startdate, max_s, &t)) {
            return cm_err_set(err, CM_INVALID, "out_of_range: startdate");
        }
        f.start_us = t * 1000000;
        f.has_start = true;
    }
    if (form->enddate[0] != '\0') {
        if (!parse_uint(form->enddate, max_s, &t)) {
            return cm_err_set(err, CM_INVALID, "out_of_range: enddate");
        }
        f.end_us = t * 1000000;
        f.has_end = true;
    }
    if (f.has_start && f.has_end && f.end_us < f.start_us) {
        return cm_err_set(err, CM_INVALID, "out_of_range: enddate");
    }
    if (!f.has_start && !f.has_end && form->date[0] != '\0') {
        if (proc_norm_parse_date(form->date, &f.start_us)) {
            f.end_us = f.start_us + INT64_C(86400000000);
        } else if (parse_uint(form->date, max_s, &t)) {
            f.start_us = f.end_us = t * 1000000;
        } else {
            return cm_err_set(err, CM_INVALID, "bad_time: date");
        }
        f.has_start = f.has_end = true;
    }
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

/* ---- fetched records (base https://wbsapi.withings.net; answers wrapped {"status":0,"body":..}) --
 *   withings.weight / .temperature / .blood_pressure   POST /measure action=getmeas:
 *       body.measuregrps[]{grpid, date, category, measures[]{value, type, unit}}, real value =
 *       value x 10^unit, category 1 (real measures) only; meastype 1 body_weight, 4 body_height
 *       (m -> cm), 6 body_fat_percentage, 9 blood_pressure_diastolic, 10 _systolic,
 *       11 heart_rate, 12 / 71 body_temperature, 73 skin_temperature, 54 spo2; point at date
 *   withings.sleep      POST /v2/sleep action=getsummary: body.series[]{id, startdate, enddate,
 *       data{total_sleep_time, deep/light/remsleepduration, wakeupduration (s -> min),
 *       sleep_efficiency (0..1 -> %), hr_average, rr_average}}
 *   withings.activity   POST /v2/measure action=getactivity: body.activities[]{date, steps,
 *       distance, calories}: the UTC day */
static const struct {
    int type;
    const char *metric;
    double scale;
} meastypes[] = {
    { 1, "body_weight", 1 },        { 4, "body_height", 100 },
    { 6, "body_fat_percentage", 1 }, { 9, "blood_pressure_diastolic", 1 },
    { 10, "blood_pressure_systolic", 1 }, { 11, "heart_rate", 1 },
    { 12, "body_temperature", 1 },  { 71, "body_temperature", 1 },
    { 73, "skin_temperature", 1 },  { 54, "spo2", 1 },
};

static enum cm_rc measure_group(const struct cm_raw_webhook *raw, const json_t *grp,
                                struct proc_emit *em, struct cm_err *err)
{
    char id[PROC_NORM_ID_MAX + 1];
    int64_t date, category;
    bool present;
    const json_t *measures, *m;
    size_t i;
    enum cm_rc rc;

    if ((rc = proc_norm_get_id(grp, "grpid", true, id, sizeof(id), err)) != CM_OK ||
        (rc = proc_norm_get_int(grp, "date", &present, &date, err)) != CM_OK) {
        return rc;
    }
    if (!present || date < 0 || date > INT64_C(100000000000)) {
        return cm_err_set(err, CM_INVALID, "bad_time: date");
    }
    if ((rc = proc_norm_get_int(grp, "category", &present, &category, err)) != CM_OK) {
        return rc;
    }
    if (present && category != 1) {
        return CM_OK; /* 2 = a user objective, not a measurement */
    }
    if ((rc = proc_norm_get_arr(grp, "measures", &measures, err)) != CM_OK) {
        return rc;
    }
    json_array_foreach(measures, i, m) {
        int64_t type, unit, value;
        bool p1, p2, p3;

        if ((rc = proc_norm_get_int(m, "type", &p1, &type, err)) != CM_OK ||
            (rc = proc_norm_get_int(m, "unit", &p2, &unit, err)) != CM_OK ||
            (rc = proc_norm_get_int(m, "value", &p3, &value, err)) != CM_OK) {
            return rc;
        }
        if (!p1 || !p2 || !p3 || unit < -12 || unit > 12) {
            return cm_err_set(err, CM_INVALID, "out_of_range: measures");
        }
        for (size_t k = 0; k < CM_ARRAY_LEN(meastypes); k++) {
            if (meastypes[k].type != type) {
                continue;
            }
            double v = unit < 0 ? (double)value / pow(10.0, (double)-unit)
                                : (double)value * pow(10.0, (double)unit);
            v *= meastypes[k].scale;
            if ((rc = proc_norm_emit(em, meastypes[k].metric, v, date * INT64_C(1000000),
                                     date * INT64_C(1000000), id, err)) != CM_OK) {
                return rc;
            }
        }
    }
    return CM_OK;
}

static const struct proc_api_metric sleep_metrics[] = {
    { "data.total_sleep_time", "sleep_duration_total", 1.0 / 60 },
    { "data.deepsleepduration", "sleep_deep_duration", 1.0 / 60 },
    { "data.lightsleepduration", "sleep_light_duration", 1.0 / 60 },
    { "data.remsleepduration", "sleep_rem_duration", 1.0 / 60 },
    { "data.wakeupduration", "sleep_awake_duration", 1.0 / 60 },
    { "data.sleep_efficiency", "sleep_efficiency", 100 },
    { "data.hr_average", "heart_rate", 1 },
    { "data.rr_average", "respiratory_rate", 1 },
};

static const struct proc_api_metric activity_metrics[] = {
    { "steps", "steps", 1 },
    { "distance", "distance", 1 },
    { "calories", "active_energy", 1 },
};

#define MEASURE_SPEC(RES)                                                                          \
    { .resource = (RES), .items = "body.measuregrps", .record = measure_group }

static const struct proc_api_spec api_specs[] = {
    MEASURE_SPEC("weight"),
    MEASURE_SPEC("temperature"),
    MEASURE_SPEC("blood_pressure"),
    { .resource = "sleep", .items = "body.series", .id = "id", .start = "startdate",
      .end = "enddate", .time = PROC_API_T_EPOCH_S, .metrics = sleep_metrics,
      .n_metrics = CM_ARRAY_LEN(sleep_metrics) },
    { .resource = "activity", .items = "body.activities", .id = "date", .start = "date",
      .time = PROC_API_T_DATE, .metrics = activity_metrics,
      .n_metrics = CM_ARRAY_LEN(activity_metrics) },
};

enum cm_rc proc_withings_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                               struct cm_err *err)
{
    struct form form;
    enum cm_rc rc;

    if (raw->kind == CM_RAW_API_RECORD) {
        return proc_norm_api_parse(raw, api_specs, CM_ARRAY_LEN(api_specs), out, err);
    }
    if (raw->body_len > PROC_NORM_MAX_BODY) {
        return cm_err_set(err, CM_INVALID, "too_large");
    }
    if ((rc = parse_form(raw->body, raw->body_len, &form, err)) != CM_OK) {
        return rc;
    }
    return parse_body(&form, out, err);
}
