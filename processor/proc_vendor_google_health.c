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
 *   ObservationSampleTime {physicalTime,          [N]Data.ObservationSampleTime.html
 *     utcOffset, civilTime}
 *   ObservationTimeInterval {startTime, endTime,  [N]Data.ObservationTimeInterval.html
 *     startUtcOffset, endUtcOffset, civil*}
 * [R] = https://developers.google.com/health/reference/rest/v4
 * [N] = https://googleapis.dev/dotnet/Google.Apis.GoogleHealthAPI.v4/latest/api/
 *       Google.Apis.GoogleHealthAPI.v4.  (the generated client's JSON property names)
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
 * The fetcher lists the data type's points over that window (proc_fetch_plan.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static enum cm_rc parse_intervals(const json_t *data, struct proc_fetch *f, struct cm_err *err)
{
    const json_t *arr, *iv;
    size_t i;
    enum cm_rc rc = proc_norm_get_arr(data, "intervals", &arr, err);

    if (rc != CM_OK || arr == NULL) {
        return rc;
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
        if (!f->has_start || start < f->start_us) {
            f->start_us = start;
        }
        if (!f->has_end || end > f->end_us) {
            f->end_us = end;
        }
        f->has_start = f->has_end = true;
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
    if ((rc = parse_intervals(data, &f, err)) != CM_OK) {
        return rc;
    }
    *proc_out_add_fetch(out) = f;
    return CM_OK;
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
 *   record type                     dataPoints[] member        metric
 *   google_health.steps             steps.count over           steps
 *                                   steps.interval.{startTime,endTime}
 *   google_health.heart_rate        heartRate.beatsPerMinute   heart_rate (at sampleTime)
 *   google_health.weight            weight.weightGrams / 1000  body_weight kg (at sampleTime)
 *   google_health.oxygen_saturation oxygenSaturation.percentage spo2 % (at sampleTime)
 * Times: physicalTime / startTime / endTime (RFC 3339, UTC). The record id is the data point's
 * `name` when the API gives one (only identifiable types have it), else
 * "<member>@<start time>", so a re-read of the same point gets the same event id. A data point
 * without the record type's member -> "missing_field: <member>". */
struct gh_type {
    const char *resource, *member, *value;
    bool interval;
    const char *metric;
    double scale;
};

static const struct gh_type gh_types[] = {
    { "steps", "steps", "count", true, "steps", 1 },
    { "heart_rate", "heartRate", "beatsPerMinute", false, "heart_rate", 1 },
    { "weight", "weight", "weightGrams", false, "body_weight", 0.001 },
    { "oxygen_saturation", "oxygenSaturation", "percentage", false, "spo2", 1 },
};

/* A required number. The API's JSON follows the proto3 mapping, where int64 fields (steps.count,
 * heartRate.beatsPerMinute) are JSON strings of decimal digits: both forms are read. */
static enum cm_rc get_value(const json_t *obj, const char *key, double *out, struct cm_err *err)
{
    const json_t *v = json_object_get(obj, key);
    bool present;

    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s);

        if (n == 0 || n > 18 || strspn(s, "0123456789") != n) {
            return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
        }
        *out = strtod(s, NULL);
        return CM_OK;
    }
    enum cm_rc rc = proc_norm_get_num(obj, key, &present, out, err);
    if (rc == CM_OK && !present) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", key);
    }
    return rc;
}

static enum cm_rc data_point(const struct cm_raw_webhook *raw, const json_t *rec,
                             struct proc_emit *em, struct cm_err *err)
{
    const char *rt = strchr(raw->record_type, '.') + 1; /* checked by proc_norm_api_parse() */
    const struct gh_type *t = NULL;
    const json_t *body, *when;
    const char *name;
    char id[PROC_NORM_ID_MAX + 1], iso[40];
    bool present, has_off;
    int32_t off;
    int64_t start, end;
    double v;
    enum cm_rc rc;

    for (size_t i = 0; i < CM_ARRAY_LEN(gh_types); i++) {
        if (strcmp(rt, gh_types[i].resource) == 0) {
            t = &gh_types[i];
        }
    }
    if (t == NULL) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(rt));
    }
    if (!json_is_object(rec)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: dataPoint");
    }
    if ((rc = proc_norm_get_obj(rec, t->member, &body, err)) != CM_OK) {
        return rc;
    }
    if (body == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", t->member);
    }
    if ((rc = proc_norm_get_obj(body, t->interval ? "interval" : "sampleTime", &when, err)) !=
        CM_OK) {
        return rc;
    }
    if (when == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s",
                          t->interval ? "interval" : "sampleTime");
    }
    if ((rc = proc_norm_get_time(when, t->interval ? "startTime" : "physicalTime", true,
                                 &present, &start, &has_off, &off, err)) != CM_OK) {
        return rc;
    }
    end = start;
    if (t->interval && (rc = proc_norm_get_time(when, "endTime", true, &present, &end, &has_off,
                                                &off, err)) != CM_OK) {
        return rc;
    }
    if (end < start) {
        return cm_err_set(err, CM_INVALID, "out_of_range: endTime");
    }
    if ((rc = proc_norm_get_str(rec, "name", false, &name, err)) != CM_OK) {
        return rc;
    }
    proc_norm_format_time(start, iso);
    if (name != NULL ? !proc_norm_id_ok(name) || !cm_strlcpy(id, name, sizeof(id))
                     : snprintf(id, sizeof(id), "%s@%s", t->member, iso) >= (int)sizeof(id)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: name");
    }
    if ((rc = get_value(body, t->value, &v, err)) != CM_OK) {
        return rc;
    }
    return proc_norm_emit(em, t->metric, v * t->scale, start, end, id, err);
}

static const struct proc_api_spec api_specs[] = {
    { .resource = "steps", .items = "dataPoints", .record = data_point },
    { .resource = "heart_rate", .items = "dataPoints", .record = data_point },
    { .resource = "weight", .items = "dataPoints", .record = data_point },
    { .resource = "oxygen_saturation", .items = "dataPoints", .record = data_point },
};

enum cm_rc proc_google_health_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                                    struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, api_specs, CM_ARRAY_LEN(api_specs), out, err);
}
