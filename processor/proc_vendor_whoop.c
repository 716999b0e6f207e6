/* WHOOP webhooks (notification only) -> fetch jobs. Body (v2; v1 used integer ids):
 *   {"user_id":456,"id":"<uuid>","type":"sleep.updated","trace_id":"<uuid>"}
 *
 *   type                                  resource   event_type    object_id
 *   recovery.updated / recovery.deleted   recovery   the type      id (v2: the sleep's UUID)
 *   sleep.updated / sleep.deleted         sleep      the type      sleep id
 *   workout.updated / workout.deleted     workout    the type      workout id
 * Creates arrive as *.updated. WHOOP sends no deauthorization webhook (revoking the token stops
 * them), so there is no lifecycle output. Any other type -> "unsupported_record: <type>". */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static const char *const resources[] = { "recovery", "sleep", "workout" };

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *type;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_id(root, "user_id", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "id", true, f.object_id, sizeof(f.object_id), err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "type", true, &type, err)) != CM_OK) {
        return rc;
    }
    const char *dot = strchr(type, '.');
    for (size_t i = 0; dot != NULL && i < CM_ARRAY_LEN(resources); i++) {
        size_t n = strlen(resources[i]);
        if ((size_t)(dot - type) == n && strncmp(type, resources[i], n) == 0 &&
            (strcmp(dot + 1, "updated") == 0 || strcmp(dot + 1, "deleted") == 0)) {
            cm_strlcpy(f.resource, resources[i], sizeof(f.resource));
            cm_strlcpy(f.event_type, type, sizeof(f.event_type));
            *proc_out_add_fetch(out) = f;
            return CM_OK;
        }
    }
    return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(type));
}

/* ---- fetched records (base https://api.prod.whoop.com/developer) ----
 *   whoop.sleep     GET /v2/activity/sleep/{id}     stage_summary (ms -> min), respiratory rate,
 *                   efficiency, performance score; total = light + slow wave + REM
 *   whoop.workout   GET /v2/activity/workout/{id}   average HR, kJ -> kcal, distance, strain,
 *                   exercise_duration = end - start
 *   whoop.recovery  GET /v2/cycle/{cycle_id}/recovery (cycle_id read from the sleep): recovery
 *                   score, resting HR, HRV RMSSD, SpO2, skin temperature, at created_at
 * The record's timezone_offset ("-05:00") becomes utc_offset_seconds. */
#define MS_TO_MIN (1.0 / 60000.0)

static const struct proc_api_metric sleep_metrics[] = {
    { "score.stage_summary.total_light_sleep_time_milli", "sleep_light_duration", MS_TO_MIN },
    { "score.stage_summary.total_slow_wave_sleep_time_milli", "sleep_deep_duration", MS_TO_MIN },
    { "score.stage_summary.total_rem_sleep_time_milli", "sleep_rem_duration", MS_TO_MIN },
    { "score.stage_summary.total_awake_time_milli", "sleep_awake_duration", MS_TO_MIN },
    { "score.respiratory_rate", "respiratory_rate", 1 },
    { "score.sleep_efficiency_percentage", "sleep_efficiency", 1 },
    { "score.sleep_performance_percentage", "score.whoop.sleep_performance", 1 },
};

static const struct proc_api_metric workout_metrics[] = {
    { "score.average_heart_rate", "heart_rate", 1 },
    { "score.kilojoule", "active_energy", 1.0 / 4.184 },
    { "score.distance_meter", "distance", 1 },
    { "score.strain", "score.whoop.strain", 1 },
};

static const struct proc_api_metric recovery_metrics[] = {
    { "score.recovery_score", "score.whoop.recovery", 1 },
    { "score.resting_heart_rate", "resting_heart_rate", 1 },
    { "score.hrv_rmssd_milli", "hrv_rmssd", 1 },
    { "score.spo2_percentage", "spo2", 1 },
    { "score.skin_temp_celsius", "skin_temperature", 1 },
};

static enum cm_rc sleep_total(const json_t *rec, const struct proc_api_rec *r, struct cm_err *err)
{
    static const char *const parts[] = {
        "score.stage_summary.total_light_sleep_time_milli",
        "score.stage_summary.total_slow_wave_sleep_time_milli",
        "score.stage_summary.total_rem_sleep_time_milli",
    };
    double sum = 0, v;
    bool present;
    enum cm_rc rc;

    for (size_t i = 0; i < CM_ARRAY_LEN(parts); i++) {
        if ((rc = proc_norm_path_num(rec, parts[i], &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (!present) {
            return CM_OK; /* not scored yet */
        }
        sum += v;
    }
    return proc_norm_emit(&r->em, "sleep_duration_total", sum * MS_TO_MIN, r->start_us, r->end_us,
                          r->id, err);
}

static const struct proc_api_spec api_specs[] = {
    { .resource = "sleep", .id = "id", .start = "start", .end = "end",
      .time = PROC_API_T_RFC3339, .tz_offset = "timezone_offset", .metrics = sleep_metrics,
      .n_metrics = CM_ARRAY_LEN(sleep_metrics), .extra = sleep_total },
    { .resource = "workout", .id = "id", .start = "start", .end = "end",
      .time = PROC_API_T_RFC3339, .tz_offset = "timezone_offset", .metrics = workout_metrics,
      .n_metrics = CM_ARRAY_LEN(workout_metrics), .extra = proc_norm_extra_duration },
    { .resource = "recovery", .id = "sleep_id", .start = "created_at",
      .time = PROC_API_T_RFC3339, .metrics = recovery_metrics,
      .n_metrics = CM_ARRAY_LEN(recovery_metrics) },
};

enum cm_rc proc_whoop_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                            struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, api_specs, CM_ARRAY_LEN(api_specs), out, err);
}
