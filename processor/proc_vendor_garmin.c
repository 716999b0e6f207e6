/* Garmin Health API push and ping bodies -> samples, fetch jobs, lifecycle notices.
 * A body is one JSON object whose keys are summary types, each an array of summaries
 * ({"dailies":[{...}], ...}); a fetched record (kind api_record, record_type "garmin.<type>") is
 * the bare array of one type. Every summary carries userId, summaryId, startTimeInSeconds (UTC
 * epoch), startTimeOffsetInSeconds and durationInSeconds; the interval is [start, start+duration].
 *
 *   summary type        field                               metric (conversion)
 *   dailies/epochs      steps                               steps
 *                       distanceInMeters                    distance
 *                       activeKilocalories                  active_energy
 *   dailies             bmrKilocalories                     basal_energy
 *                       floorsClimbed                       floors_climbed
 *                       restingHeartRateInBeatsPerMinute    resting_heart_rate
 *                       maxHeartRateInBeatsPerMinute        heart_rate_max_24h
 *                       timeOffsetHeartRateSamples{off:v}   heart_rate at start+off
 *                       averageStressLevel (<0 = no data)   score.garmin.stress_level
 *                       bodyBatteryChargedValue             score.garmin.body_battery_charged
 *                       bodyBatteryDrainedValue             score.garmin.body_battery_drained
 *   sleeps              durationInSeconds - awake           sleep_duration_total (s -> min)
 *                       deepSleepDurationInSeconds          sleep_deep_duration (s -> min)
 *                       lightSleepDurationInSeconds         sleep_light_duration (s -> min)
 *                       remSleepInSeconds                   sleep_rem_duration (s -> min)
 *                       awakeDurationInSeconds              sleep_awake_duration (s -> min)
 *                       overallSleepScore (n or {value})    score.garmin.sleep_score
 *   hrv                 lastNightAvg                        hrv_rmssd over the summary
 *                       hrvValues{off:ms}                   hrv_rmssd at start+off
 *   pulseox             timeOffsetSpo2Values{off:%}         spo2 at start+off
 *   allDayRespiration   timeOffsetEpochToBreaths{off:v}     respiratory_rate at start+off
 *   skinTemp            avgDeviationCelsius                 skin_temperature_deviation
 *   bodyComps           weightInGrams                       body_weight (g -> kg)
 *    (point at          bodyFatInPercent                    body_fat_percentage
 *    measurementTime)   bodyMassIndex                       bmi
 *   bloodPressures      systolic / diastolic / pulse        blood_pressure_* / heart_rate
 *   activities          durationInSeconds                   exercise_duration (s -> min)
 *   deregistrations     userId                              lifecycle "revoked"
 *   userPermissionsChange  permissions == []                lifecycle "revoked"
 * An item carrying callbackURL (ping mode) becomes a fetch job {resource = summary type, url}; the
 * URL must point at https://apis.garmin.com/. Series samples get source_record_id
 * "<summaryId>#<offset>". Any other top-level key is "unsupported_record: <key>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

#define VENDOR "garmin"
#define CALLBACK_PREFIX "https://apis.garmin.com/"
#define US_PER_S INT64_C(1000000)

/* What every summary of a data type shares. */
struct summary {
    char user[128];
    char id[PROC_NORM_ID_MAX + 1];
    int64_t start_us, end_us;
    bool has_duration;
    struct proc_emit em;
};

/* A numeric field (or a series map {"<offset s>": value}) and the metric it becomes. */
struct field_map {
    const char *field;
    const char *metric;
    double scale;
};

struct summary_type {
    const char *key;
    bool point; /* measured at measurementTimeInSeconds rather than over an interval */
    const struct field_map *fields;
    size_t n_fields;
    const struct field_map *series;
    size_t n_series;
    enum cm_rc (*extra)(const json_t *item, const struct summary *s, struct cm_err *err);
};

static const struct field_map dailies_fields[] = {
    { "steps", "steps", 1 },
    { "distanceInMeters", "distance", 1 },
    { "activeKilocalories", "active_energy", 1 },
    { "bmrKilocalories", "basal_energy", 1 },
    { "floorsClimbed", "floors_climbed", 1 },
    { "restingHeartRateInBeatsPerMinute", "resting_heart_rate", 1 },
    { "maxHeartRateInBeatsPerMinute", "heart_rate_max_24h", 1 },
    { "bodyBatteryChargedValue", "score.garmin.body_battery_charged", 1 },
    { "bodyBatteryDrainedValue", "score.garmin.body_battery_drained", 1 },
};
static const struct field_map dailies_series[] = {
    { "timeOffsetHeartRateSamples", "heart_rate", 1 },
};
static const struct field_map epochs_fields[] = {
    { "steps", "steps", 1 },
    { "distanceInMeters", "distance", 1 },
    { "activeKilocalories", "active_energy", 1 },
};
static const struct field_map sleeps_fields[] = {
    { "deepSleepDurationInSeconds", "sleep_deep_duration", 1.0 / 60 },
    { "lightSleepDurationInSeconds", "sleep_light_duration", 1.0 / 60 },
    { "remSleepInSeconds", "sleep_rem_duration", 1.0 / 60 },
    { "awakeDurationInSeconds", "sleep_awake_duration", 1.0 / 60 },
};
static const struct field_map hrv_fields[] = {
    { "lastNightAvg", "hrv_rmssd", 1 },
};
static const struct field_map hrv_series[] = {
    { "hrvValues", "hrv_rmssd", 1 },
};
static const struct field_map pulseox_series[] = {
    { "timeOffsetSpo2Values", "spo2", 1 },
};
static const struct field_map respiration_series[] = {
    { "timeOffsetEpochToBreaths", "respiratory_rate", 1 },
};
static const struct field_map skintemp_fields[] = {
    { "avgDeviationCelsius", "skin_temperature_deviation", 1 },
};
static const struct field_map bodycomps_fields[] = {
    { "weightInGrams", "body_weight", 0.001 },
    { "bodyFatInPercent", "body_fat_percentage", 1 },
    { "bodyMassIndex", "bmi", 1 },
};
static const struct field_map bp_fields[] = {
    { "systolic", "blood_pressure_systolic", 1 },
    { "diastolic", "blood_pressure_diastolic", 1 },
    { "pulse", "heart_rate", 1 },
};
static const struct field_map activities_fields[] = {
    { "durationInSeconds", "exercise_duration", 1.0 / 60 },
};

static enum cm_rc dailies_extra(const json_t *item, const struct summary *s, struct cm_err *err);
static enum cm_rc sleeps_extra(const json_t *item, const struct summary *s, struct cm_err *err);

#define MAP(a) (a), CM_ARRAY_LEN(a)
static const struct summary_type summary_types[] = {
    { "dailies", false, MAP(dailies_fields), MAP(dailies_series), dailies_extra },
    { "epochs", false, MAP(epochs_fields), NULL, 0, NULL },
    { "sleeps", false, MAP(sleeps_fields), NULL, 0, sleeps_extra },
    { "hrv", false, MAP(hrv_fields), MAP(hrv_series), NULL },
    { "pulseox", false, NULL, 0, MAP(pulseox_series), NULL },
    { "allDayRespiration", false, NULL, 0, MAP(respiration_series), NULL },
    { "skinTemp", false, MAP(skintemp_fields), NULL, 0, NULL },
    { "bodyComps", true, MAP(bodycomps_fields), NULL, 0, NULL },
    { "bloodPressures", true, MAP(bp_fields), NULL, 0, NULL },
    { "activities", false, MAP(activities_fields), NULL, 0, NULL },
};
#undef MAP

/* Epoch seconds (and its offset) -> checked micros. */
static enum cm_rc read_epoch(const json_t *item, const char *key, const char *fallback,
                             int64_t *us, struct cm_err *err)
{
    bool present;
    int64_t v;
    enum cm_rc rc = proc_norm_get_int(item, key, &present, &v, err);

    if (rc == CM_OK && !present && fallback != NULL) {
        key = fallback;
        rc = proc_norm_get_int(item, key, &present, &v, err);
    }
    if (rc != CM_OK) {
        return rc;
    }
    if (!present) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", key);
    }
    /* The sample check rejects anything before 2000; this bound only keeps the product finite. */
    if (v < 0 || v > INT64_C(100000000000)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
    }
    *us = v * US_PER_S;
    return CM_OK;
}

static enum cm_rc read_offset(const json_t *item, const char *key, const char *fallback,
                              struct proc_emit *em, struct cm_err *err)
{
    bool present;
    int64_t v;
    enum cm_rc rc = proc_norm_get_int(item, key, &present, &v, err);

    if (rc == CM_OK && !present && fallback != NULL) {
        key = fallback;
        rc = proc_norm_get_int(item, key, &present, &v, err);
    }
    if (rc != CM_OK || !present) {
        return rc;
    }
    if (v < -18 * 3600 || v > 18 * 3600) {
        return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
    }
    em->has_off = true;
    em->off_s = (int32_t)v;
    return CM_OK;
}

static enum cm_rc read_summary(const json_t *item, bool point, struct proc_out *out,
                               struct summary *s, struct cm_err *err)
{
    enum cm_rc rc;

    memset(s, 0, sizeof(*s));
    if ((rc = proc_norm_get_id(item, "userId", true, s->user, sizeof(s->user), err)) != CM_OK ||
        (rc = proc_norm_get_id(item, "summaryId", true, s->id, sizeof(s->id), err)) != CM_OK) {
        return rc;
    }
    s->em.out = out;
    s->em.vendor = VENDOR;
    s->em.vendor_user_id = s->user;
    if (point) {
        if ((rc = read_epoch(item, "measurementTimeInSeconds", "startTimeInSeconds", &s->start_us,
                             err)) != CM_OK ||
            (rc = read_offset(item, "measurementTimeOffsetInSeconds", "startTimeOffsetInSeconds",
                              &s->em, err)) != CM_OK) {
            return rc;
        }
        s->end_us = s->start_us;
        return CM_OK;
    }
    if ((rc = read_epoch(item, "startTimeInSeconds", NULL, &s->start_us, err)) != CM_OK ||
        (rc = read_offset(item, "startTimeOffsetInSeconds", NULL, &s->em, err)) != CM_OK) {
        return rc;
    }
    int64_t dur = 0;
    if ((rc = proc_norm_get_int(item, "durationInSeconds", &s->has_duration, &dur, err)) != CM_OK) {
        return rc;
    }
    if (dur < 0 || dur > 7 * 86400) {
        return cm_err_set(err, CM_INVALID, "out_of_range: durationInSeconds");
    }
    s->end_us = s->start_us + dur * US_PER_S;
    return CM_OK;
}

static enum cm_rc emit_fields(const json_t *item, const struct summary *s,
                              const struct field_map *f, size_t n, struct cm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        bool present;
        double v;
        enum cm_rc rc = proc_norm_get_num(item, f[i].field, &present, &v, err);
        if (rc != CM_OK) {
            return rc;
        }
        if (present &&
            (rc = proc_norm_emit(&s->em, f[i].metric, v * f[i].scale, s->start_us, s->end_us, s->id,
                                 err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

/* {"<seconds from start>": value, ...}; null values are gaps and skipped. */
static enum cm_rc emit_series(const json_t *item, const struct summary *s,
                              const struct field_map *f, size_t n, struct cm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *map;
        const char *k;
        json_t *v;
        enum cm_rc rc = proc_norm_get_obj(item, f[i].field, &map, err);

        if (rc != CM_OK) {
            return rc;
        }
        if (map == NULL) {
            continue;
        }
        json_object_foreach((json_t *)map, k, v) {
            char *end = NULL;
            long off = strtol(k, &end, 10);
            char rid[PROC_NORM_ID_MAX + 24];

            if (end == k || *end != '\0' || off < 0 || off > 7L * 86400) {
                return cm_err_set(err, CM_INVALID, "out_of_range: %s", f[i].field);
            }
            if (json_is_null(v)) {
                continue;
            }
            if (!json_is_number(v)) {
                return cm_err_set(err, CM_INVALID, "wrong_type: %s", f[i].field);
            }
            int64_t t = s->start_us + (int64_t)off * US_PER_S;
            snprintf(rid, sizeof(rid), "%s#%ld", s->id, off);
            rc = proc_norm_emit(&s->em, f[i].metric, json_number_value(v) * f[i].scale, t, t, rid,
                                err);
            if (rc != CM_OK) {
                return rc;
            }
        }
    }
    return CM_OK;
}

static enum cm_rc dailies_extra(const json_t *item, const struct summary *s, struct cm_err *err)
{
    bool present;
    double v;
    enum cm_rc rc = proc_norm_get_num(item, "averageStressLevel", &present, &v, err);

    /* Garmin reports a negative stress level when there was not enough data. */
    if (rc != CM_OK || !present || v < 0) {
        return rc;
    }
    return proc_norm_emit(&s->em, "score.garmin.stress_level", v, s->start_us, s->end_us, s->id,
                          err);
}

static enum cm_rc sleeps_extra(const json_t *item, const struct summary *s, struct cm_err *err)
{
    bool present = false;
    double awake = 0, score = 0;
    enum cm_rc rc;

    /* durationInSeconds spans the whole sleep period, awake stretches included. */
    if ((rc = proc_norm_get_num(item, "awakeDurationInSeconds", &present, &awake, err)) != CM_OK) {
        return rc;
    }
    if (s->has_duration) {
        double total = (double)(s->end_us - s->start_us) / (double)US_PER_S - (present ? awake : 0);
        if (total < 0) {
            return cm_err_set(err, CM_INVALID, "out_of_range: awakeDurationInSeconds");
        }
        rc = proc_norm_emit(&s->em, "sleep_duration_total", total / 60, s->start_us, s->end_us,
                            s->id, err);
        if (rc != CM_OK) {
            return rc;
        }
    }
    const json_t *obj;
    if (json_is_object(json_object_get(item, "overallSleepScore"))) {
        if ((rc = proc_norm_get_obj(item, "overallSleepScore", &obj, err)) != CM_OK ||
            (rc = proc_norm_get_num(obj, "value", &present, &score, err)) != CM_OK) {
            return rc;
        }
    } else {
        rc = proc_norm_get_num(item, "overallSleepScore", &present, &score, err);
        if (rc != CM_OK) {
            return rc;
        }
    }
    if (!present) {
        return CM_OK;
    }
    return proc_norm_emit(&s->em, "score.garmin.sleep_score", score, s->start_us, s->end_us, s->id,
                          err);
}

/* Ping mode: {"userId":..., "callbackURL":"https://apis.garmin.com/..."}. */
static enum cm_rc add_ping(const char *type, const json_t *item, struct proc_out *out,
                           struct cm_err *err)
{
    char user[128];
    const char *url;
    enum cm_rc rc;

    if ((rc = proc_norm_get_id(item, "userId", true, user, sizeof(user), err)) != CM_OK ||
        (rc = proc_norm_get_str(item, "callbackURL", true, &url, err)) != CM_OK) {
        return rc;
    }
    struct proc_fetch f = { 0 };
    if (strncmp(url, CALLBACK_PREFIX, strlen(CALLBACK_PREFIX)) != 0 ||
        !cm_strlcpy(f.url, url, sizeof(f.url))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: callbackURL");
    }
    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            return cm_err_set(err, CM_INVALID, "out_of_range: callbackURL");
        }
    }
    cm_strlcpy(f.vendor_user_id, user, sizeof(f.vendor_user_id));
    cm_strlcpy(f.resource, type, sizeof(f.resource));
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

static enum cm_rc add_lifecycle(const char *type, const json_t *item, struct proc_out *out,
                                struct cm_err *err)
{
    char user[128];
    enum cm_rc rc = proc_norm_get_id(item, "userId", true, user, sizeof(user), err);

    if (rc != CM_OK) {
        return rc;
    }
    if (strcmp(type, "userPermissionsChange") == 0) {
        const json_t *perms;
        if ((rc = proc_norm_get_arr(item, "permissions", &perms, err)) != CM_OK) {
            return rc;
        }
        /* Only a change that leaves no permission at all ends the connection. */
        if (perms == NULL || json_array_size(perms) > 0) {
            return CM_OK;
        }
    }
    struct proc_lifecycle *l = proc_out_add_lifecycle(out);
    cm_strlcpy(l->vendor_user_id, user, sizeof(l->vendor_user_id));
    cm_strlcpy(l->action, "revoked", sizeof(l->action));
    return CM_OK;
}

static enum cm_rc parse_type(const char *type, const json_t *arr, struct proc_out *out,
                             size_t *n_items, struct cm_err *err)
{
    const struct summary_type *t = NULL;
    bool lifecycle = strcmp(type, "deregistrations") == 0 ||
                     strcmp(type, "userPermissionsChange") == 0;

    for (size_t i = 0; i < CM_ARRAY_LEN(summary_types) && !lifecycle; i++) {
        if (strcmp(summary_types[i].key, type) == 0) {
            t = &summary_types[i];
        }
    }
    if (t == NULL && !lifecycle) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(type));
    }
    if (!json_is_array(arr)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", t != NULL ? t->key : "lifecycle");
    }
    size_t i;
    const json_t *item;
    json_array_foreach(arr, i, item) {
        enum cm_rc rc;
        struct summary s;

        if (++*n_items > PROC_NORM_MAX_ITEMS) {
            return cm_err_set(err, CM_INVALID, "too_many_items");
        }
        if (!json_is_object(item)) {
            return cm_err_set(err, CM_INVALID, "wrong_type: %s", t != NULL ? t->key : "lifecycle");
        }
        if (lifecycle) {
            rc = add_lifecycle(type, item, out, err);
        } else if (json_object_get(item, "callbackURL") != NULL) {
            rc = add_ping(t->key, item, out, err);
        } else if ((rc = read_summary(item, t->point, out, &s, err)) == CM_OK &&
                   (rc = emit_fields(item, &s, t->fields, t->n_fields, err)) == CM_OK &&
                   (rc = emit_series(item, &s, t->series, t->n_series, err)) == CM_OK &&
                   t->extra != NULL) {
            rc = t->extra(item, &s, err);
        }
        if (rc != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

enum cm_rc proc_garmin_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                             struct cm_err *err)
{
    json_t *root;
    enum cm_rc rc = proc_norm_json_load(raw, &root, err);
    size_t n_items = 0;

    if (rc != CM_OK) {
        return rc;
    }
    if (raw->kind == CM_RAW_API_RECORD) {
        /* A record fetched from a ping's callbackURL: the bare array of one summary type. */
        const char *rt = raw->record_type;
        if (rt == NULL || strncmp(rt, VENDOR ".", strlen(VENDOR ".")) != 0) {
            rc = cm_err_set(err, CM_INVALID, "missing_field: record_type");
        } else {
            rc = parse_type(rt + strlen(VENDOR "."), root, out, &n_items, err);
        }
    } else if (!json_is_object(root)) {
        rc = cm_err_set(err, CM_INVALID, "wrong_type: body");
    } else {
        const char *key;
        json_t *arr;
        json_object_foreach(root, key, arr) {
            if ((rc = parse_type(key, arr, out, &n_items, err)) != CM_OK) {
                break;
            }
        }
    }
    json_decref(root);
    return rc;
}
