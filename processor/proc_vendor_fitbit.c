/* Fitbit (legacy Web API) subscription notifications (notification only) -> fetch jobs and
 * lifecycle notices. Body: a JSON array, possibly batching several notifications:
 *   [{"collectionType":"sleep","date":"2026-11-20","ownerId":"FITBIT1","ownerType":"user",
 *     "subscriptionId":"1"}]
 *
 *   collectionType     output
 *   activities         fetch resource "activities"
 *   body               fetch resource "body"
 *   foods              fetch resource "foods"
 *   sleep              fetch resource "sleep"
 *   userRevokedAccess  lifecycle "revoked"
 * A date gives object_id = the date and start/end = [date 00:00 UTC, next day 00:00 UTC) (the
 * Fitbit date is the user's local day: the fetcher uses the date text, not the instant).
 * Other collection types -> "unsupported_record: <collectionType>". */
#include <stdio.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static const char *const collections[] = { "activities", "body", "foods", "sleep" };

static enum cm_rc parse_one(const json_t *n, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *type, *owner_type, *date;
    enum cm_rc rc;

    if (!json_is_object(n)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: notification");
    }
    if ((rc = proc_norm_get_str(n, "collectionType", true, &type, err)) != CM_OK ||
        (rc = proc_norm_get_id(n, "ownerId", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_str(n, "ownerType", false, &owner_type, err)) != CM_OK ||
        (rc = proc_norm_get_str(n, "date", false, &date, err)) != CM_OK) {
        return rc;
    }
    if (owner_type != NULL && strcmp(owner_type, "user") != 0) {
        return cm_err_set(err, CM_INVALID, "out_of_range: ownerType");
    }
    if (strcmp(type, "userRevokedAccess") == 0) {
        struct proc_lifecycle *l = proc_out_add_lifecycle(out);
        cm_strlcpy(l->vendor_user_id, f.vendor_user_id, sizeof(l->vendor_user_id));
        cm_strlcpy(l->action, "revoked", sizeof(l->action));
        return CM_OK;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(collections); i++) {
        if (strcmp(collections[i], type) != 0) {
            continue;
        }
        cm_strlcpy(f.resource, type, sizeof(f.resource));
        if (date != NULL) {
            if (!proc_norm_parse_date(date, &f.start_us)) {
                return cm_err_set(err, CM_INVALID, "bad_time: date");
            }
            f.end_us = f.start_us + INT64_C(86400000000);
            f.has_start = f.has_end = true;
            cm_strlcpy(f.object_id, date, sizeof(f.object_id));
        }
        *proc_out_add_fetch(out) = f;
        return CM_OK;
    }
    return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(type));
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    return proc_norm_each(root, parse_one, out, err);
}

/* ---- fetched records (base https://api.fitbit.com; metric units: no Accept-Language) ----
 *   fitbit.sleep       GET /1.2/user/-/sleep/date/{date}.json: sleep[]{logId, startTime, endTime,
 *                      minutesAsleep, minutesAwake, efficiency, levels.summary.{deep,light,rem}
 *                      .minutes}
 *   fitbit.body        GET /1/user/-/body/log/weight/date/{date}.json: weight[]{logId, date, time,
 *                      weight (kg), bmi, fat (%)} at date + time
 *   fitbit.activities  GET /1/user/-/activities/date/{date}.json: summary{steps, activityCalories,
 *                      restingHeartRate, floors, distances[activity "total"] (km)}; the day comes
 *                      from the request path (the record's path field)
 * Fitbit times are the user's local wall clock without an offset; they are read as UTC. */
static const struct proc_api_metric sleep_metrics[] = {
    { "minutesAsleep", "sleep_duration_total", 1 },
    { "minutesAwake", "sleep_awake_duration", 1 },
    { "efficiency", "sleep_efficiency", 1 },
    { "levels.summary.deep.minutes", "sleep_deep_duration", 1 },
    { "levels.summary.light.minutes", "sleep_light_duration", 1 },
    { "levels.summary.rem.minutes", "sleep_rem_duration", 1 },
};

static enum cm_rc weight_record(const struct cm_raw_webhook *raw, const json_t *rec,
                                struct proc_emit *em, struct cm_err *err)
{
    static const struct proc_api_metric m[] = {
        { "weight", "body_weight", 1 }, { "bmi", "bmi", 1 }, { "fat", "body_fat_percentage", 1 },
    };
    char id[PROC_NORM_ID_MAX + 1], iso[40];
    const char *date, *time;
    int64_t us;
    bool has_off, present;
    int32_t off;
    double v;
    enum cm_rc rc;

    if ((rc = proc_norm_get_id(rec, "logId", true, id, sizeof(id), err)) != CM_OK ||
        (rc = proc_norm_get_str(rec, "date", true, &date, err)) != CM_OK ||
        (rc = proc_norm_get_str(rec, "time", true, &time, err)) != CM_OK) {
        return rc;
    }
    if (strlen(date) != 10 || strlen(time) != 8 ||
        snprintf(iso, sizeof(iso), "%sT%s", date, time) >= (int)sizeof(iso) ||
        !proc_norm_parse_time(iso, &us, &has_off, &off)) {
        return cm_err_set(err, CM_INVALID, "bad_time: date");
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(m); i++) {
        if ((rc = proc_norm_path_num(rec, m[i].path, &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (present && (rc = proc_norm_emit(em, m[i].metric, v, us, us, id, err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

/* The YYYY-MM-DD before ".json" at the end of the request path. */
static bool path_date(const char *path, char date[11])
{
    size_t n = path != NULL ? strlen(path) : 0;
    int64_t us;

    if (n < 15 || strcmp(path + n - 5, ".json") != 0) {
        return false;
    }
    memcpy(date, path + n - 15, 10);
    date[10] = '\0';
    return proc_norm_parse_date(date, &us);
}

static enum cm_rc activities_record(const struct cm_raw_webhook *raw, const json_t *rec,
                                    struct proc_emit *em, struct cm_err *err)
{
    static const struct proc_api_metric m[] = {
        { "summary.steps", "steps", 1 },
        { "summary.activityCalories", "active_energy", 1 },
        { "summary.restingHeartRate", "resting_heart_rate", 1 },
        { "summary.floors", "floors_climbed", 1 },
    };
    char date[11], id[24];
    const json_t *dists, *d;
    int64_t day;
    bool present;
    double v;
    size_t i;
    enum cm_rc rc;

    if (!path_date(raw->path, date)) {
        return cm_err_set(err, CM_INVALID, "bad_time: path");
    }
    proc_norm_parse_date(date, &day);
    snprintf(id, sizeof(id), "day-%s", date);
    for (size_t k = 0; k < CM_ARRAY_LEN(m); k++) {
        if ((rc = proc_norm_path_num(rec, m[k].path, &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (present && (rc = proc_norm_emit(em, m[k].metric, v, day, day + INT64_C(86400000000),
                                            id, err)) != CM_OK) {
            return rc;
        }
    }
    const json_t *summary = proc_norm_path(rec, "summary");
    if ((rc = proc_norm_get_arr(summary, "distances", &dists, err)) != CM_OK) {
        return rc;
    }
    json_array_foreach(dists, i, d) {
        const char *what;
        if ((rc = proc_norm_get_str(d, "activity", false, &what, err)) != CM_OK ||
            (rc = proc_norm_get_num(d, "distance", &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (what != NULL && strcmp(what, "total") == 0 && present) {
            return proc_norm_emit(em, "distance", v * 1000, day, day + INT64_C(86400000000), id,
                                  err);
        }
    }
    return CM_OK;
}

static const struct proc_api_spec api_specs[] = {
    { .resource = "sleep", .items = "sleep", .id = "logId", .start = "startTime",
      .end = "endTime", .time = PROC_API_T_RFC3339, .metrics = sleep_metrics,
      .n_metrics = CM_ARRAY_LEN(sleep_metrics) },
    { .resource = "body", .items = "weight", .record = weight_record },
    { .resource = "activities", .record = activities_record },
};

enum cm_rc proc_fitbit_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                             struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, api_specs, CM_ARRAY_LEN(api_specs), out, err);
}
