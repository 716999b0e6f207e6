/* Oura API v2 webhooks (notification only) -> fetch jobs. Body:
 *   {"event_type":"create|update|delete","data_type":"sleep","object_id":"<id>",
 *    "event_time":"<ISO 8601>","user_id":"<oura user id>"}
 * resource = data_type (one of Oura's documented webhook data types, below), event_type as
 * given, object_id = object_id; the fetcher reads GET /v2/usercollection/{data_type}/{object_id}.
 * Oura sends no deauthorization webhook. Unknown data_type -> "unsupported_record: <data_type>". */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static const char *const data_types[] = {
    "tag", "enhanced_tag", "workout", "session", "sleep", "daily_sleep", "daily_readiness",
    "daily_activity", "daily_spo2", "sleep_time", "rest_mode_period", "ring_configuration",
    "daily_stress", "daily_cycle_phases", "activation_status", "daily_cardiovascular_age",
    "daily_resilience", "vo2_max", "period_start", "pregnancy", "fertile_window",
    "ovulation_confirmed", "blood_glucose",
};

static const char *const event_types[] = { "create", "update", "delete" };

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *data_type, *event_type;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_id(root, "user_id", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "data_type", true, &data_type, err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "event_type", true, &event_type, err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "object_id", true, f.object_id, sizeof(f.object_id), err)) !=
            CM_OK) {
        return rc;
    }
    if (!in_list(data_type, data_types, CM_ARRAY_LEN(data_types))) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s",
                          proc_norm_safe_name(data_type));
    }
    if (!in_list(event_type, event_types, CM_ARRAY_LEN(event_types))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: event_type");
    }
    cm_strlcpy(f.resource, data_type, sizeof(f.resource));
    cm_strlcpy(f.event_type, event_type, sizeof(f.event_type));
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

/* ---- fetched records (GET https://api.ouraring.com/v2/usercollection/{type}/{id}) ----
 *   oura.sleep            bedtime_start..bedtime_end: durations (s -> min), efficiency, average
 *                         HRV, average HR, average breath
 *   oura.daily_sleep      day: score
 *   oura.daily_readiness  day: score, temperature_deviation
 *   oura.daily_spo2       day: spo2_percentage.average
 *   oura.daily_activity   day: steps, active_calories, equivalent_walking_distance, score
 *   oura.workout          start_datetime..end_datetime: calories, distance, duration
 * A "day" record covers that UTC day. */
#define S_TO_MIN (1.0 / 60.0)

static const struct proc_api_metric sleep_metrics[] = {
    { "total_sleep_duration", "sleep_duration_total", S_TO_MIN },
    { "deep_sleep_duration", "sleep_deep_duration", S_TO_MIN },
    { "light_sleep_duration", "sleep_light_duration", S_TO_MIN },
    { "rem_sleep_duration", "sleep_rem_duration", S_TO_MIN },
    { "awake_time", "sleep_awake_duration", S_TO_MIN },
    { "efficiency", "sleep_efficiency", 1 },
    { "average_hrv", "hrv_rmssd", 1 },
    { "average_heart_rate", "heart_rate", 1 },
    { "average_breath", "respiratory_rate", 1 },
};
static const struct proc_api_metric daily_sleep_metrics[] = {
    { "score", "score.oura.sleep", 1 },
};
static const struct proc_api_metric readiness_metrics[] = {
    { "score", "score.oura.readiness", 1 },
    { "temperature_deviation", "skin_temperature_deviation", 1 },
};
static const struct proc_api_metric spo2_metrics[] = {
    { "spo2_percentage.average", "spo2", 1 },
};
static const struct proc_api_metric activity_metrics[] = {
    { "steps", "steps", 1 },
    { "active_calories", "active_energy", 1 },
    { "equivalent_walking_distance", "distance", 1 },
    { "score", "score.oura.activity", 1 },
};
static const struct proc_api_metric workout_metrics[] = {
    { "calories", "active_energy", 1 },
    { "distance", "distance", 1 },
};

#define DAY_SPEC(RES, M)                                                                         \
    { .resource = (RES), .id = "id", .start = "day", .time = PROC_API_T_DATE, .metrics = (M),     \
      .n_metrics = CM_ARRAY_LEN(M) }

static const struct proc_api_spec api_specs[] = {
    { .resource = "sleep", .id = "id", .start = "bedtime_start", .end = "bedtime_end",
      .time = PROC_API_T_RFC3339, .metrics = sleep_metrics,
      .n_metrics = CM_ARRAY_LEN(sleep_metrics) },
    DAY_SPEC("daily_sleep", daily_sleep_metrics),
    DAY_SPEC("daily_readiness", readiness_metrics),
    DAY_SPEC("daily_spo2", spo2_metrics),
    DAY_SPEC("daily_activity", activity_metrics),
    { .resource = "workout", .id = "id", .start = "start_datetime", .end = "end_datetime",
      .time = PROC_API_T_RFC3339, .metrics = workout_metrics,
      .n_metrics = CM_ARRAY_LEN(workout_metrics), .extra = proc_norm_extra_duration },
};

enum cm_rc proc_oura_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                           struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, api_specs, CM_ARRAY_LEN(api_specs), out, err);
}
