/* Malformed records, one branch each: every API record and webhook here is rejected with the
 * exact dead-letter reason the processor publishes (or, where the vendor's format allows the
 * gap, accepted with the samples that remain), and a rejected record emits nothing. The bodies
 * are minimal variants of the fixtures in tests/fixtures/<vendor>/. */
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "proc_norm.h"
#include "proc_suites.h"
#include "proc_vendors.h"

struct reject_case {
    const char *vendor;
    const char *record_type; /* NULL: a webhook */
    const char *path;
    const char *body;
    const char *err; /* NULL: accepted */
    size_t n_samples, n_lifecycle;
};

#define FITBIT_DAY "/1/user/-/activities/date/2026-11-20.json"
#define POLAR_EX "{\"id\":\"e1\",\"start_time\":\"2026-11-20T10:40:02\",\"duration\":"
#define POLAR_SLEEP                                                                                \
    "{\"date\":\"2026-11-20\",\"sleep_start_time\":\"2026-11-19T23:10:12+01:00\","                \
    "\"sleep_end_time\":\"2026-11-20T06:55:40+01:00\","
#define POLAR_CHR "{\"date\":\"2026-11-20\",\"heart_rate_samples\":["
#define WITHINGS_GRP "{\"body\":{\"measuregrps\":[{\"grpid\":1,\"date\":1795158000,"
#define TERRA(TYPE) "{\"type\":\"" TYPE "\",\"user\":{\"user_id\":\"tu1\"},\"data\":["
#define TERRA_META                                                                                 \
    "{\"metadata\":{\"start_time\":\"2026-11-20T00:00:00Z\",\"end_time\":\"2026-11-20T06:00:00Z\""
#define GARMIN_SLEEP                                                                               \
    "{\"sleeps\":[{\"userId\":\"g1\",\"summaryId\":\"s1\",\"startTimeInSeconds\":1795212720,"      \
    "\"durationInSeconds\":27000,"
#define GH_INTERVAL                                                                                \
    "\"interval\":{\"startTime\":\"2026-11-23T00:00:00Z\",\"endTime\":\"2026-11-23T06:00:00Z\"}"
#define GH_HR(BODY) "{\"dataPoints\":[{\"heartRate\":{\"beatsPerMinute\":61" BODY "}}]}"
#define FITBIT_SLEEP                                                                               \
    "{\"sleep\":[{\"logId\":1,\"startTime\":\"2026-11-20T00:00:00.000\","                          \
    "\"endTime\":\"2026-11-20T06:00:00.000\","
#define WHOOP_SLEEP                                                                                \
    "{\"id\":\"s1\",\"start\":\"2026-11-23T00:00:00Z\",\"end\":\"2026-11-23T06:00:00Z\","          \
    "\"score\":{\"stage_summary\":{\"total_light_sleep_time_milli\":"
#define APP_DEVICE                                                                                 \
    "{\"schema\":\"auren.app.v1\",\"user_id\":\"u\",\"device\":{\"platform\":\"ios\","             \
    "\"source\":\"healthkit\"},\"samples\":"

static const struct reject_case cases[] = {
    /* fitbit: body (weight logs) and daily activity summaries */
    { "fitbit", "fitbit.body", "/x",
      "{\"weight\":[{\"date\":\"2026-11-20\",\"time\":\"07:19:59\"}]}",
      "missing_field: logId", 0, 0 },
    { "fitbit", "fitbit.body", "/x",
      "{\"weight\":[{\"logId\":1,\"date\":\"2026-11-2\",\"time\":\"07:19:59\"}]}",
      "bad_time: date", 0, 0 },
    { "fitbit", "fitbit.body", "/x",
      "{\"weight\":[{\"logId\":1,\"date\":\"2026-11-20\",\"time\":\"07:19:59\",\"weight\":\"x\"}]}",
      "wrong_type: weight", 0, 0 },
    { "fitbit", "fitbit.body", "/x",
      "{\"weight\":[{\"logId\":1,\"date\":\"2026-11-20\",\"time\":\"07:19:59\",\"weight\":99999}]}",
      "out_of_range: body_weight", 0, 0 },
    { "fitbit", "fitbit.activities", "/1/user/-/activities/date/2026-13-45.json",
      "{\"summary\":{}}", "bad_time: path", 0, 0 },
    { "fitbit", "fitbit.activities", "/x.json", "{\"summary\":{}}", "bad_time: path", 0, 0 },
    { "fitbit", "fitbit.activities", FITBIT_DAY, "{\"summary\":{\"steps\":\"x\"}}",
      "wrong_type: steps", 0, 0 },
    { "fitbit", "fitbit.activities", FITBIT_DAY, "{\"summary\":{\"steps\":-5}}",
      "out_of_range: steps", 0, 0 },
    { "fitbit", "fitbit.activities", FITBIT_DAY, "{\"summary\":{\"steps\":5,\"distances\":3}}",
      "wrong_type: distances", 0, 0 },
    { "fitbit", "fitbit.activities", FITBIT_DAY,
      "{\"summary\":{\"steps\":5,\"distances\":[{\"activity\":3}]}}",
      "wrong_type: activity", 0, 0 },
    /* no "total" distance: the steps stay, no distance sample */
    { "fitbit", "fitbit.activities", FITBIT_DAY,
      "{\"summary\":{\"steps\":5,\"distances\":[{\"activity\":\"tracker\",\"distance\":1}]}}",
      NULL, 1, 0 },
    { "fitbit", "fitbit.sleep", "/x",
      "{\"sleep\":[{\"logId\":1,\"startTime\":3,\"endTime\":\"2026-11-20T06:00:00.000\"}]}",
      "wrong_type: startTime", 0, 0 },
    { "fitbit", "fitbit.sleep", "/x", FITBIT_SLEEP "\"minutesAsleep\":\"x\"}]}",
      "wrong_type: minutesAsleep", 0, 0 },
    { "fitbit", "fitbit.sleep", "/x", FITBIT_SLEEP "\"minutesAsleep\":-5}]}",
      "out_of_range: sleep_duration_total", 0, 0 },
    /* polar: exercises, continuous heart rate, sleep */
    { "polar", "polar.exercise", "/x",
      "{\"id\":\"e1\",\"start_time\":\"yesterday\",\"duration\":\"PT1H\"}",
      "bad_time: start_time", 0, 0 },
    { "polar", "polar.exercise", "/x",
      "{\"id\":\"e1\",\"start_time\":\"1800-01-01T00:00:00Z\",\"duration\":\"PT1H\"}",
      "out_of_range: start_time", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"1H\"}", "out_of_range: duration", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PTxM\"}", "out_of_range: duration", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT-5M\"}", "out_of_range: duration", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT5X\"}", "out_of_range: duration", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT\"}", "out_of_range: duration", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT200H\"}", "out_of_range: duration", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT1H\",\"start_time_utc_offset\":2000}",
      "out_of_range: start_time_utc_offset", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT1H\",\"start_time_utc_offset\":\"x\"}",
      "wrong_type: start_time_utc_offset", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT1H\",\"calories\":\"x\"}",
      "wrong_type: calories", 0, 0 },
    { "polar", "polar.exercise", "/x", POLAR_EX "\"PT1H\",\"calories\":-5}",
      "out_of_range: active_energy", 0, 0 },
    { "polar", "polar.continuous_heart_rate", "/x", "{\"date\":\"2026-11-20\"}", NULL, 0, 0 },
    { "polar", "polar.continuous_heart_rate", "/x",
      "{\"date\":\"2026-13-20\",\"heart_rate_samples\":[]}", "bad_time: date", 0, 0 },
    { "polar", "polar.continuous_heart_rate", "/x", POLAR_CHR "{\"heart_rate\":60}]}",
      "missing_field: sample_time", 0, 0 },
    { "polar", "polar.continuous_heart_rate", "/x",
      POLAR_CHR "{\"heart_rate\":60,\"sample_time\":\"25:00:00\"}]}",
      "bad_time: sample_time", 0, 0 },
    { "polar", "polar.continuous_heart_rate", "/x",
      POLAR_CHR "{\"heart_rate\":900,\"sample_time\":\"01:00:00\"}]}",
      "out_of_range: heart_rate", 0, 0 },
    { "polar", "polar.sleep", "/x", POLAR_SLEEP "\"light_sleep\":\"x\"}",
      "wrong_type: light_sleep", 0, 0 },
    { "polar", "polar.sleep", "/x", POLAR_SLEEP "\"light_sleep\":100,\"deep_sleep\":\"x\"}",
      "wrong_type: deep_sleep", 0, 0 },
    /* a stage missing: no total, the stage that is there stays */
    { "polar", "polar.sleep", "/x", POLAR_SLEEP "\"light_sleep\":100}", NULL, 1, 0 },
    /* withings: measure groups */
    { "withings", "withings.weight", "/x",
      "{\"body\":{\"measuregrps\":[{\"date\":1795158000,\"measures\":[]}]}}",
      "missing_field: grpid", 0, 0 },
    { "withings", "withings.weight", "/x",
      "{\"body\":{\"measuregrps\":[{\"grpid\":1,\"date\":\"x\",\"measures\":[]}]}}",
      "wrong_type: date", 0, 0 },
    { "withings", "withings.weight", "/x",
      "{\"body\":{\"measuregrps\":[{\"grpid\":1,\"measures\":[]}]}}", "bad_time: date", 0, 0 },
    { "withings", "withings.weight", "/x", WITHINGS_GRP "\"category\":\"x\",\"measures\":[]}]}}",
      "wrong_type: category", 0, 0 },
    /* category 2 is a user objective: skipped without looking at it */
    { "withings", "withings.weight", "/x",
      WITHINGS_GRP "\"category\":2,\"measures\":[{\"type\":1}]}]}}", NULL, 0, 0 },
    { "withings", "withings.weight", "/x", WITHINGS_GRP "\"measures\":3}]}}",
      "wrong_type: measures", 0, 0 },
    { "withings", "withings.weight", "/x",
      WITHINGS_GRP "\"measures\":[{\"type\":\"x\",\"unit\":0,\"value\":1}]}]}}",
      "wrong_type: type", 0, 0 },
    { "withings", "withings.weight", "/x",
      WITHINGS_GRP "\"measures\":[{\"type\":1,\"unit\":20,\"value\":1}]}]}}",
      "out_of_range: measures", 0, 0 },
    { "withings", "withings.weight", "/x",
      WITHINGS_GRP "\"measures\":[{\"type\":1,\"unit\":3,\"value\":90000}]}]}}",
      "out_of_range: body_weight", 0, 0 },
    { "withings", "withings.weight", "/x", "{\"body\":{\"measuregrps\":3}}",
      "wrong_type: measuregrps", 0, 0 },
    { "withings", "withings.sleep", "/x",
      "{\"body\":{\"series\":[{\"id\":1,\"startdate\":-5,\"enddate\":1}]}}",
      "bad_time: startdate", 0, 0 },
    /* strava: elapsed_time gives the end */
    { "strava", "strava.activity", "/x",
      "{\"id\":1,\"start_date\":\"2026-11-20T00:00:00Z\",\"elapsed_time\":\"x\"}",
      "wrong_type: elapsed_time", 0, 0 },
    { "strava", "strava.activity", "/x",
      "{\"id\":1,\"start_date\":\"2026-11-20T00:00:00Z\",\"elapsed_time\":-5}",
      "out_of_range: elapsed_time", 0, 0 },
    /* whoop: a sleep whose stages are not all scored has no total */
    { "whoop", "whoop.sleep", "/x", WHOOP_SLEEP "\"x\"}}}",
      "wrong_type: total_light_sleep_time_milli", 0, 0 },
    { "whoop", "whoop.sleep", "/x", WHOOP_SLEEP "1000}}}", NULL, 1, 0 },
    /* google_health: data points */
    { "google_health", NULL, "/w", "{\"type\":3}", "wrong_type: type", 0, 0 },
    { "google_health", "google_health.daily_resting_heart_rate", "/x",
      "{\"dataPoints\":[{\"dailyRestingHeartRate\":{\"beatsPerMinute\":\"58\",\"date\":3}}]}",
      "wrong_type: date", 0, 0 },
    { "google_health", "google_health.daily_resting_heart_rate", "/x",
      "{\"dataPoints\":[{\"dailyRestingHeartRate\":{\"beatsPerMinute\":\"58\","
      "\"date\":{\"year\":\"x\"}}}]}",
      "wrong_type: year", 0, 0 },
    { "google_health", "google_health.heart_rate", "/x", GH_HR(",\"sampleTime\":3"),
      "wrong_type: sampleTime", 0, 0 },
    { "google_health", "google_health.heart_rate", "/x", GH_HR(""),
      "missing_field: sampleTime", 0, 0 },
    { "google_health", "google_health.steps", "/x",
      "{\"dataPoints\":[{\"steps\":{\"count\":\"5\",\"interval\":{\"startTime\":3}}}]}",
      "wrong_type: startTime", 0, 0 },
    { "google_health", "google_health.sleep", "/x",
      "{\"dataPoints\":[{\"sleep\":{" GH_INTERVAL ",\"stages\":3}}]}", "wrong_type: stages", 0, 0 },
    { "google_health", "google_health.sleep", "/x",
      "{\"dataPoints\":[{\"sleep\":{" GH_INTERVAL
      ",\"stages\":[{\"startTime\":\"2026-11-23T00:00:00Z\"}]}}]}",
      "missing_field: type", 0, 0 },
    { "google_health", "google_health.sleep", "/x",
      "{\"dataPoints\":[{\"sleep\":{" GH_INTERVAL ",\"summary\":{\"minutesAsleep\":[]}}}]}",
      "wrong_type: minutesAsleep", 0, 0 },
    { "google_health", "google_health.exercise", "/x",
      "{\"dataPoints\":[{\"exercise\":{" GH_INTERVAL ",\"activeDuration\":3}}]}",
      "wrong_type: activeDuration", 0, 0 },
    { "google_health", "google_health.exercise", "/x",
      "{\"dataPoints\":[{\"exercise\":{" GH_INTERVAL ",\"activeDuration\":\"99999999s\"}}]}",
      "out_of_range: exercise_duration", 0, 0 },
    { "google_health", "google_health.heart_rate", "/x", "{\"dataPoints\":[3]}",
      "wrong_type: dataPoint", 0, 0 },
    { "google_health", "google_health.heart_rate", "/x", "{\"dataPoints\":[{\"heartRate\":3}]}",
      "wrong_type: heartRate", 0, 0 },
    { "google_health", "google_health.heart_rate", "/x",
      "{\"dataPoints\":[{\"name\":\"bad name|x\",\"heartRate\":{\"beatsPerMinute\":61,"
      "\"sampleTime\":{\"physicalTime\":\"2026-11-23T08:00:00Z\"}}}]}",
      "out_of_range: name", 0, 0 },
    /* garmin: sleeps and permission changes */
    { "garmin", NULL, "/w", GARMIN_SLEEP "\"awakeDurationInSeconds\":\"x\"}]}",
      "wrong_type: awakeDurationInSeconds", 0, 0 },
    { "garmin", NULL, "/w", GARMIN_SLEEP "\"overallSleepScore\":{\"value\":\"x\"}}]}",
      "wrong_type: value", 0, 0 },
    { "garmin", NULL, "/w",
      "{\"userPermissionsChange\":[{\"userId\":\"g1\",\"permissions\":\"x\"}]}",
      "wrong_type: permissions", 0, 0 },
    /* a change that leaves a permission keeps the connection; none left ends it */
    { "garmin", NULL, "/w",
      "{\"userPermissionsChange\":[{\"userId\":\"g1\",\"permissions\":[\"HEALTH_EXPORT\"]}]}",
      NULL, 0, 0 },
    { "garmin", NULL, "/w", "{\"userPermissionsChange\":[{\"userId\":\"g1\",\"permissions\":[]}]}",
      NULL, 0, 1 },
    /* terra: data items */
    { "terra", NULL, "/w", TERRA("body") "3]}", "wrong_type: data", 0, 0 },
    { "terra", NULL, "/w", TERRA("body") "{\"metadata\":3}]}", "wrong_type: metadata", 0, 0 },
    { "terra", NULL, "/w", TERRA("body") TERRA_META "},\"heart_rate_data\":3}]}",
      "wrong_type: heart_rate_data", 0, 0 },
    { "terra", NULL, "/w", TERRA("body") TERRA_META "},\"heart_data\":{\"heart_rate_data\":3}}]}",
      "wrong_type: heart_rate_data", 0, 0 },
    { "terra", NULL, "/w", TERRA("body") TERRA_META "},\"heart_rate_data\":{\"summary\":3}}]}",
      "wrong_type: summary", 0, 0 },
    { "terra", NULL, "/w",
      TERRA("body") TERRA_META "},\"heart_rate_data\":{\"detailed\":{\"hr_samples\":[3]}}}]}",
      "wrong_type: hr_samples", 0, 0 },
    { "terra", NULL, "/w",
      TERRA("body") TERRA_META
      "},\"heart_rate_data\":{\"detailed\":{\"hr_samples\":[{\"bpm\":\"x\"}]}}}]}",
      "wrong_type: bpm", 0, 0 },
    { "terra", NULL, "/w",
      TERRA("body") TERRA_META
      "},\"oxygen_data\":{\"saturation_samples\":[{\"percentage\":97,\"type\":\"x\"}]}}]}",
      "wrong_type: type", 0, 0 },
    { "terra", NULL, "/w",
      TERRA("sleep") TERRA_META "},\"sleep_durations_data\":{\"asleep\":3}}]}",
      "wrong_type: asleep", 0, 0 },
    { "terra", NULL, "/w",
      TERRA("body") TERRA_META "},\"measurements_data\":{\"measurements\":[3]}}]}",
      "wrong_type: measurements", 0, 0 },
    { "terra", NULL, "/w",
      TERRA("body") TERRA_META ",\"summary_id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"},"
      "\"measurements_data\":{\"measurements\":[{\"measurement_time\":"
      "\"2026-11-20T01:00:00Z\",\"weight_kg\":70}]}}]}",
      "out_of_range: summary_id", 0, 0 },
    { "terra", NULL, "/w",
      TERRA("activity") TERRA_META "},\"active_durations_data\":{\"activity_seconds\":\"x\"}}]}",
      "wrong_type: activity_seconds", 0, 0 },
    { "terra", NULL, "/w", TERRA("activity") TERRA_META "},\"active_durations_data\":3}]}",
      "wrong_type: active_durations_data", 0, 0 },
    /* app */
    { "app", NULL, "/w",
      "{\"schema\":\"auren.app.v1\",\"user_id\":\"u\",\"device\":3,\"samples\":[]}",
      "wrong_type: device", 0, 0 },
    { "app", NULL, "/w", APP_DEVICE "[3]}", "wrong_type: samples", 0, 0 },
};

static enum cm_rc run(const char *vendor, const char *record_type, const char *path,
                      const char *body, size_t len, struct proc_out *out, struct cm_err *err)
{
    struct cm_raw_webhook raw = proc_test_raw(vendor, body, len);

    raw.path = (char *)path;
    raw.content_type = (char *)"application/json";
    if (record_type != NULL) {
        raw.kind = CM_RAW_API_RECORD;
        raw.record_type = (char *)record_type;
        raw.vendor_user_id = (char *)"U1";
    }
    proc_out_reset(out);
    return proc_normalize(&raw, out, err);
}

START_TEST(test_malformed_records)
{
    const struct reject_case *c = &cases[_i];
    struct proc_out out;
    struct cm_err err = { .msg = "" };
    enum cm_rc rc;

    proc_out_init(&out);
    rc = run(c->vendor, c->record_type, c->path, c->body, strlen(c->body), &out, &err);
    if (c->err != NULL) {
        ck_assert_msg(rc == CM_INVALID, "case %d (%s) accepted", _i, c->vendor);
        ck_assert_str_eq(err.msg, c->err);
        ck_assert_uint_eq(out.n_samples + out.n_fetches + out.n_lifecycle, 0);
    } else {
        ck_assert_msg(rc == CM_OK, "case %d (%s): %s", _i, c->vendor, err.msg);
        ck_assert_uint_eq(out.n_samples, c->n_samples);
        ck_assert_uint_eq(out.n_lifecycle, c->n_lifecycle);
    }
    proc_out_fini(&out);
}
END_TEST

/* `head` + (PROC_NORM_MAX_ITEMS + 1) copies of `item` joined by commas + `tail`. */
static char *too_many(const char *head, const char *item, const char *tail, size_t *len)
{
    struct cm_buf b;

    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_buf_append_str(&b, head), CM_OK);
    for (size_t i = 0; i <= PROC_NORM_MAX_ITEMS; i++) {
        ck_assert_int_eq(cm_buf_append_str(&b, i == 0 ? "" : ","), CM_OK);
        ck_assert_int_eq(cm_buf_append_str(&b, item), CM_OK);
    }
    ck_assert_int_eq(cm_buf_append_str(&b, tail), CM_OK);
    *len = b.len;
    ck_assert_int_eq(cm_buf_append(&b, "", 1), CM_OK);
    return (char *)b.data;
}

/* One item too many, in each container that bounds them. */
START_TEST(test_too_many_items)
{
    static const struct {
        const char *vendor, *record_type, *head, *item, *tail;
    } big[] = {
        { "terra", NULL, TERRA("body"), "{}", "]}" },
        { "app", NULL, APP_DEVICE "[", "{}", "]}" },
        { "garmin", NULL, "{\"deregistrations\":[", "{\"userId\":\"g1\"}", "]}" },
        { "fitbit", NULL, "[", "{}", "]" },
        { "fitbit", "fitbit.body", "{\"weight\":[", "{}", "]}" },
    };
    struct proc_out out;
    struct cm_err err;

    proc_out_init(&out);
    for (size_t i = 0; i < CM_ARRAY_LEN(big); i++) {
        size_t len;
        char *body = too_many(big[i].head, big[i].item, big[i].tail, &len);

        ck_assert_int_eq(run(big[i].vendor, big[i].record_type, "/x", body, len, &out, &err),
                         CM_INVALID);
        ck_assert_str_eq(err.msg, "too_many_items");
        ck_assert_uint_eq(out.n_samples + out.n_lifecycle, 0);
        free(body);
    }
    proc_out_fini(&out);
}
END_TEST

/* An API record must name its record type and its user; a Withings form has the same size bound
 * as a JSON body. */
START_TEST(test_api_record_envelope)
{
    static const char body[] = "{\"weight\":[]}";
    struct cm_raw_webhook raw = proc_test_raw("fitbit", body, sizeof(body) - 1);
    struct proc_out out;
    struct cm_err err;

    proc_out_init(&out);
    raw.kind = CM_RAW_API_RECORD;
    raw.vendor_user_id = (char *)"U1";
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "missing_field: record_type");
    raw.record_type = (char *)"fitbit.body";
    raw.vendor_user_id = NULL;
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "missing_field: vendor_user_id");
    raw.vendor_user_id = (char *)"U1";
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_OK);

    raw = proc_test_raw("withings", "userid=1", 8);
    raw.content_type = (char *)"application/x-www-form-urlencoded";
    raw.body_len = PROC_NORM_MAX_BODY + 1; /* rejected before a byte is read */
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "too_large");
    proc_out_fini(&out);
}
END_TEST

Suite *proc_api_rejects_suite(void)
{
    Suite *s = suite_create("proc_api_rejects");
    TCase *tc = tcase_create("rejects");

    tcase_add_loop_test(tc, test_malformed_records, 0, (int)CM_ARRAY_LEN(cases));
    tcase_add_test(tc, test_too_many_items);
    tcase_add_test(tc, test_api_record_envelope);
    suite_add_tcase(s, tc);
    return s;
}
