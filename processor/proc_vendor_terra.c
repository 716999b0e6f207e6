/* Terra (aggregator) webhooks -> samples and lifecycle notices. Data events carry Terra's own
 * normalised models: {"type":"daily|sleep|body|activity","user":{"user_id":...},"data":[{...}]}.
 * Each data item has metadata{start_time,end_time,summary_id?,upload_type?}; times are ISO 8601
 * (an offset gives utc_offset_seconds; without one the time is read as UTC, no offset recorded).
 * source_record_id = metadata.summary_id, else "<type>:<start UTC>" (Terra dedups daily/body on
 * the start); samples inside a series get "<record id>#<sample time UTC>". upload_type 4 (Delete)
 * marks every sample of the item deleted.
 *
 *   path                                                  metric
 *   heart_rate_data.summary.resting_hr_bpm                resting_heart_rate (record interval)
 *   heart_rate_data.summary.max_hr_bpm (daily only)       heart_rate_max_24h
 *   heart_rate_data.summary.avg_hrv_rmssd / avg_hrv_sdnn  hrv_rmssd / hrv_sdnn
 *   heart_rate_data.detailed.hr_samples[].bpm             heart_rate (point)
 *   heart_rate_data.detailed.hrv_samples_rmssd[].hrv_rmssd, hrv_samples_sdnn[].hrv_sdnn
 *   (body: heart_data.heart_rate_data.*, same mapping)
 *   oxygen_data.avg_saturation_percentage                 spo2 (record interval)
 *   oxygen_data.saturation_samples[].percentage           spo2 (point; type 1 = muscle: skipped)
 *   oxygen_data.vo2max_ml_per_min_per_kg                  vo2_max
 *   distance_data{,.summary}.steps/distance_meters/floors_climbed  steps/distance/floors_climbed
 *   calories_data.net_activity_calories / BMR_calories    active_energy / basal_energy
 *   active_durations_data.activity_seconds (activity)     exercise_duration (s -> min; or end-start
 *                                                         when absent)
 *   sleep_durations_data.asleep.duration_asleep_state_seconds     sleep_duration_total (s -> min)
 *     .asleep.duration_{deep,light,REM}_sleep_state_seconds      sleep_{deep,light,rem}_duration
 *     .awake.duration_awake_state_seconds                 sleep_awake_duration
 *     .sleep_efficiency (percent)                         sleep_efficiency
 *   respiration_data.breaths_data.avg_breaths_per_min     respiratory_rate
 *   temperature_data.delta (sleep)                        skin_temperature_deviation
 *   temperature_data.body_temperature_samples[] / skin_temperature_samples[] (temperature_celsius)
 *                                                         body_temperature / skin_temperature
 *   measurements_data.measurements[] at measurement_time: weight_kg, bodyfat_percentage, BMI,
 *                                  height_cm              body_weight, body_fat_percentage, bmi,
 *                                                         body_height
 *   blood_pressure_data.blood_pressure_samples[]: systolic_bp / diastolic_bp
 *   scores.{recovery,activity,sleep}                      score.terra.<name>
 * Events: healthcheck -> handshake; deauth, access_revoked -> lifecycle "revoked"; auth,
 * user_reauth, connection_error, processing, rate_limit_hit, large_request_*, google_no_datasource,
 * permission_change -> nothing. Other data types (nutrition, menstruation, athlete, ...) ->
 * "unsupported_record: <type>". */
#include <stdio.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

#define VENDOR "terra"

struct record {
    const char *type;
    char rid[PROC_NORM_ID_MAX + 48];
    int64_t start_us, end_us;
    struct proc_emit em;
};

static const char *const info_events[] = {
    "auth", "user_reauth", "connection_error", "processing", "rate_limit_hit",
    "large_request_processing", "large_request_sending", "google_no_datasource",
    "permission_change",
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Optional number at obj.key over the record's interval. */
static enum cm_rc emit_num(const struct record *r, const json_t *obj, const char *key,
                           const char *metric, double scale, struct cm_err *err)
{
    bool present;
    double v;
    enum cm_rc rc = proc_norm_get_num(obj, key, &present, &v, err);

    if (rc != CM_OK || !present) {
        return rc;
    }
    return proc_norm_emit(&r->em, metric, v * scale, r->start_us, r->end_us, r->rid, err);
}

/* obj.arr_key = [{time_key: ISO, value_key: n}, ...] -> point samples. */
static enum cm_rc emit_samples(const struct record *r, const json_t *obj, const char *arr_key,
                               const char *time_key, const char *value_key, const char *metric,
                               struct cm_err *err)
{
    const json_t *arr;
    enum cm_rc rc = proc_norm_get_arr(obj, arr_key, &arr, err);
    size_t i;
    const json_t *el;

    if (rc != CM_OK || arr == NULL) {
        return rc;
    }
    json_array_foreach(arr, i, el) {
        bool present, has_time;
        double v;
        int64_t t;
        struct proc_emit em = r->em;
        char when[40], rid[sizeof(r->rid) + 48];

        if (!json_is_object(el)) {
            return cm_err_set(err, CM_INVALID, "wrong_type: %s", arr_key);
        }
        if ((rc = proc_norm_get_num(el, value_key, &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (!present) {
            continue;
        }
        if (strcmp(arr_key, "saturation_samples") == 0) {
            bool typed;
            int64_t kind = 0;
            if ((rc = proc_norm_get_int(el, "type", &typed, &kind, err)) != CM_OK) {
                return rc;
            }
            if (typed && kind == 1) {
                continue; /* muscle oxygen (SmO2), not SpO2 */
            }
        }
        if ((rc = proc_norm_get_time(el, time_key, true, &has_time, &t, &em.has_off, &em.off_s,
                                     err)) != CM_OK) {
            return rc;
        }
        proc_norm_format_time(t, when);
        snprintf(rid, sizeof(rid), "%s#%s", r->rid, when);
        if ((rc = proc_norm_emit(&em, metric, v, t, t, rid, err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

/* Walk obj.k1.k2 (k2 may be NULL); *out NULL when any step is absent. */
static enum cm_rc get_path(const json_t *obj, const char *k1, const char *k2, const json_t **out,
                           struct cm_err *err)
{
    enum cm_rc rc = proc_norm_get_obj(obj, k1, out, err);

    if (rc != CM_OK || *out == NULL || k2 == NULL) {
        return rc;
    }
    return proc_norm_get_obj(*out, k2, out, err);
}

static enum cm_rc emit_heart_rate(const struct record *r, const json_t *hr, struct cm_err *err)
{
    const json_t *sum, *det;
    enum cm_rc rc;

    if (hr == NULL) {
        return CM_OK;
    }
    if ((rc = get_path(hr, "summary", NULL, &sum, err)) != CM_OK ||
        (rc = get_path(hr, "detailed", NULL, &det, err)) != CM_OK) {
        return rc;
    }
    if (sum != NULL &&
        ((rc = emit_num(r, sum, "resting_hr_bpm", "resting_heart_rate", 1, err)) != CM_OK ||
         (strcmp(r->type, "daily") == 0 &&
          (rc = emit_num(r, sum, "max_hr_bpm", "heart_rate_max_24h", 1, err)) != CM_OK) ||
         (rc = emit_num(r, sum, "avg_hrv_rmssd", "hrv_rmssd", 1, err)) != CM_OK ||
         (rc = emit_num(r, sum, "avg_hrv_sdnn", "hrv_sdnn", 1, err)) != CM_OK)) {
        return rc;
    }
    if (det == NULL) {
        return CM_OK;
    }
    if ((rc = emit_samples(r, det, "hr_samples", "timestamp", "bpm", "heart_rate", err)) != CM_OK ||
        (rc = emit_samples(r, det, "hrv_samples_rmssd", "timestamp", "hrv_rmssd", "hrv_rmssd",
                           err)) != CM_OK) {
        return rc;
    }
    return emit_samples(r, det, "hrv_samples_sdnn", "timestamp", "hrv_sdnn", "hrv_sdnn", err);
}

static enum cm_rc emit_distance(const struct record *r, const json_t *item, struct cm_err *err)
{
    const json_t *d, *sum;
    enum cm_rc rc;

    if ((rc = get_path(item, "distance_data", NULL, &d, err)) != CM_OK || d == NULL) {
        return rc;
    }
    /* Daily carries the totals flat, Activity under "summary". */
    if ((rc = get_path(d, "summary", NULL, &sum, err)) != CM_OK) {
        return rc;
    }
    if (sum != NULL) {
        d = sum;
    }
    if ((rc = emit_num(r, d, "steps", "steps", 1, err)) != CM_OK ||
        (rc = emit_num(r, d, "distance_meters", "distance", 1, err)) != CM_OK) {
        return rc;
    }
    return emit_num(r, d, "floors_climbed", "floors_climbed", 1, err);
}

static enum cm_rc emit_sleep_durations(const struct record *r, const json_t *item,
                                       struct cm_err *err)
{
    const json_t *sd, *asleep, *awake;
    enum cm_rc rc;

    if ((rc = get_path(item, "sleep_durations_data", NULL, &sd, err)) != CM_OK || sd == NULL) {
        return rc;
    }
    if ((rc = get_path(sd, "asleep", NULL, &asleep, err)) != CM_OK ||
        (rc = get_path(sd, "awake", NULL, &awake, err)) != CM_OK) {
        return rc;
    }
    const double m = 1.0 / 60;
    if (asleep != NULL &&
        ((rc = emit_num(r, asleep, "duration_asleep_state_seconds", "sleep_duration_total", m,
                        err)) != CM_OK ||
         (rc = emit_num(r, asleep, "duration_deep_sleep_state_seconds", "sleep_deep_duration", m,
                        err)) != CM_OK ||
         (rc = emit_num(r, asleep, "duration_light_sleep_state_seconds", "sleep_light_duration", m,
                        err)) != CM_OK ||
         (rc = emit_num(r, asleep, "duration_REM_sleep_state_seconds", "sleep_rem_duration", m,
                        err)) != CM_OK)) {
        return rc;
    }
    if (awake != NULL &&
        (rc = emit_num(r, awake, "duration_awake_state_seconds", "sleep_awake_duration", m, err)) !=
            CM_OK) {
        return rc;
    }
    return emit_num(r, sd, "sleep_efficiency", "sleep_efficiency", 1, err);
}

static enum cm_rc emit_measurements(const struct record *r, const json_t *item, struct cm_err *err)
{
    static const char *const fields[][2] = {
        { "weight_kg", "body_weight" },
        { "bodyfat_percentage", "body_fat_percentage" },
        { "BMI", "bmi" },
        { "height_cm", "body_height" },
    };
    const json_t *md, *arr, *el;
    size_t i;
    enum cm_rc rc;

    if ((rc = get_path(item, "measurements_data", NULL, &md, err)) != CM_OK || md == NULL ||
        (rc = proc_norm_get_arr(md, "measurements", &arr, err)) != CM_OK || arr == NULL) {
        return rc;
    }
    json_array_foreach(arr, i, el) {
        struct record m = *r;
        bool has_time;
        char when[40];

        if (!json_is_object(el)) {
            return cm_err_set(err, CM_INVALID, "wrong_type: measurements");
        }
        if ((rc = proc_norm_get_time(el, "measurement_time", true, &has_time, &m.start_us,
                                     &m.em.has_off, &m.em.off_s, err)) != CM_OK) {
            return rc;
        }
        m.end_us = m.start_us;
        proc_norm_format_time(m.start_us, when);
        if (snprintf(m.rid, sizeof(m.rid), "%s#%s", r->rid, when) >= (int)sizeof(m.rid)) {
            return cm_err_set(err, CM_INVALID, "out_of_range: summary_id");
        }
        for (size_t f = 0; f < CM_ARRAY_LEN(fields); f++) {
            if ((rc = emit_num(&m, el, fields[f][0], fields[f][1], 1, err)) != CM_OK) {
                return rc;
            }
        }
    }
    return CM_OK;
}

static enum cm_rc emit_scores(const struct record *r, const json_t *item, struct cm_err *err)
{
    static const char *const names[] = { "recovery", "activity", "sleep" };
    const json_t *sc;
    enum cm_rc rc = get_path(item, "scores", NULL, &sc, err);

    if (rc != CM_OK || sc == NULL) {
        return rc;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(names); i++) {
        char metric[64];
        snprintf(metric, sizeof(metric), "score." VENDOR ".%s", names[i]);
        if ((rc = emit_num(r, sc, names[i], metric, 1, err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

static enum cm_rc emit_exercise(const struct record *r, const json_t *item, struct cm_err *err)
{
    const json_t *ad;
    bool present = false;
    double secs = 0;
    enum cm_rc rc;

    if (strcmp(r->type, "activity") != 0) {
        return CM_OK;
    }
    if ((rc = get_path(item, "active_durations_data", NULL, &ad, err)) != CM_OK ||
        (rc = proc_norm_get_num(ad, "activity_seconds", &present, &secs, err)) != CM_OK) {
        return rc;
    }
    if (!present) {
        secs = (double)(r->end_us - r->start_us) / 1e6;
    }
    return proc_norm_emit(&r->em, "exercise_duration", secs / 60, r->start_us, r->end_us, r->rid,
                          err);
}

static enum cm_rc parse_item(const char *type, const char *user, const json_t *item,
                             struct proc_out *out, struct cm_err *err)
{
    struct record r;
    const json_t *meta, *p;
    bool present, has_end_off;
    int32_t end_off;
    int64_t upload = 0;
    char sid[PROC_NORM_ID_MAX + 1];
    enum cm_rc rc;

    memset(&r, 0, sizeof(r));
    r.type = type;
    r.em.out = out;
    r.em.vendor = VENDOR;
    r.em.vendor_user_id = user;
    if (!json_is_object(item)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: data");
    }
    if ((rc = proc_norm_get_obj(item, "metadata", &meta, err)) != CM_OK) {
        return rc;
    }
    if (meta == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: metadata");
    }
    if ((rc = proc_norm_get_time(meta, "start_time", true, &present, &r.start_us, &r.em.has_off,
                                 &r.em.off_s, err)) != CM_OK ||
        (rc = proc_norm_get_time(meta, "end_time", true, &present, &r.end_us, &has_end_off,
                                 &end_off, err)) != CM_OK ||
        (rc = proc_norm_get_id(meta, "summary_id", false, sid, sizeof(sid), err)) != CM_OK ||
        (rc = proc_norm_get_int(meta, "upload_type", &present, &upload, err)) != CM_OK) {
        return rc;
    }
    r.em.deleted = present && upload == 4;
    if (sid[0] != '\0') {
        cm_strlcpy(r.rid, sid, sizeof(r.rid));
    } else {
        char when[40];
        proc_norm_format_time(r.start_us, when);
        snprintf(r.rid, sizeof(r.rid), "%s:%s", type, when);
    }

    const json_t *hr = NULL;
    if ((rc = get_path(item, "heart_rate_data", NULL, &hr, err)) != CM_OK) {
        return rc;
    }
    if (hr == NULL && (rc = get_path(item, "heart_data", "heart_rate_data", &hr, err)) != CM_OK) {
        return rc;
    }
    if ((rc = emit_heart_rate(&r, hr, err)) != CM_OK) {
        return rc;
    }
    if ((rc = get_path(item, "oxygen_data", NULL, &p, err)) != CM_OK ||
        (p != NULL &&
         ((rc = emit_num(&r, p, "avg_saturation_percentage", "spo2", 1, err)) != CM_OK ||
          (rc = emit_samples(&r, p, "saturation_samples", "timestamp", "percentage", "spo2",
                             err)) != CM_OK ||
          (rc = emit_num(&r, p, "vo2max_ml_per_min_per_kg", "vo2_max", 1, err)) != CM_OK))) {
        return rc;
    }
    if ((rc = emit_distance(&r, item, err)) != CM_OK) {
        return rc;
    }
    if ((rc = get_path(item, "calories_data", NULL, &p, err)) != CM_OK ||
        (p != NULL &&
         ((rc = emit_num(&r, p, "net_activity_calories", "active_energy", 1, err)) != CM_OK ||
          (rc = emit_num(&r, p, "BMR_calories", "basal_energy", 1, err)) != CM_OK))) {
        return rc;
    }
    if ((rc = emit_exercise(&r, item, err)) != CM_OK ||
        (rc = emit_sleep_durations(&r, item, err)) != CM_OK) {
        return rc;
    }
    if ((rc = get_path(item, "respiration_data", "breaths_data", &p, err)) != CM_OK ||
        (p != NULL &&
         (rc = emit_num(&r, p, "avg_breaths_per_min", "respiratory_rate", 1, err)) != CM_OK)) {
        return rc;
    }
    if ((rc = get_path(item, "temperature_data", NULL, &p, err)) != CM_OK ||
        (p != NULL &&
         ((rc = emit_num(&r, p, "delta", "skin_temperature_deviation", 1, err)) != CM_OK ||
          (rc = emit_samples(&r, p, "body_temperature_samples", "timestamp", "temperature_celsius",
                             "body_temperature", err)) != CM_OK ||
          (rc = emit_samples(&r, p, "skin_temperature_samples", "timestamp", "temperature_celsius",
                             "skin_temperature", err)) != CM_OK))) {
        return rc;
    }
    if ((rc = emit_measurements(&r, item, err)) != CM_OK) {
        return rc;
    }
    if ((rc = get_path(item, "blood_pressure_data", NULL, &p, err)) != CM_OK ||
        (p != NULL &&
         ((rc = emit_samples(&r, p, "blood_pressure_samples", "timestamp", "systolic_bp",
                             "blood_pressure_systolic", err)) != CM_OK ||
          (rc = emit_samples(&r, p, "blood_pressure_samples", "timestamp", "diastolic_bp",
                             "blood_pressure_diastolic", err)) != CM_OK))) {
        return rc;
    }
    return emit_scores(&r, item, err);
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    static const char *const data_types[] = { "daily", "sleep", "body", "activity" };
    const char *type;
    const json_t *user, *data;
    char uid[128];
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_str(root, "type", true, &type, err)) != CM_OK) {
        return rc;
    }
    if (strcmp(type, "healthcheck") == 0) {
        out->is_handshake = true;
        return CM_OK;
    }
    bool revoke = strcmp(type, "deauth") == 0 || strcmp(type, "access_revoked") == 0;
    bool is_data = in_list(type, data_types, CM_ARRAY_LEN(data_types));
    if (!revoke && !is_data) {
        if (in_list(type, info_events, CM_ARRAY_LEN(info_events))) {
            return CM_OK;
        }
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(type));
    }
    if ((rc = proc_norm_get_obj(root, "user", &user, err)) != CM_OK) {
        return rc;
    }
    if (user == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: user");
    }
    if ((rc = proc_norm_get_id(user, "user_id", true, uid, sizeof(uid), err)) != CM_OK) {
        return rc;
    }
    if (revoke) {
        struct proc_lifecycle *l = proc_out_add_lifecycle(out);
        cm_strlcpy(l->vendor_user_id, uid, sizeof(l->vendor_user_id));
        cm_strlcpy(l->action, "revoked", sizeof(l->action));
        return CM_OK;
    }
    if ((rc = proc_norm_get_arr(root, "data", &data, err)) != CM_OK) {
        return rc;
    }
    if (data == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: data");
    }
    if (json_array_size(data) > PROC_NORM_MAX_ITEMS) {
        return cm_err_set(err, CM_INVALID, "too_many_items");
    }
    size_t i;
    const json_t *item;
    json_array_foreach(data, i, item) {
        if ((rc = parse_item(type, uid, item, out, err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

enum cm_rc proc_terra_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                            struct cm_err *err)
{
    json_t *root;
    enum cm_rc rc = proc_norm_json_load(raw, &root, err);

    if (rc != CM_OK) {
        return rc;
    }
    rc = parse_root(root, out, err);
    json_decref(root);
    return rc;
}
