/* The vendor modules: malformed and hostile input is rejected with the right reason (and never
 * crashes), reasons carry no values, results are deterministic, fetched Garmin records match the
 * pushed ones. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_suites.h"
#include "proc_vendors.h"

struct bad_case {
    const char *vendor;
    const char *body;
    const char *reason;
};

#define G_OK "\"userId\":\"garmin-user-1\",\"summaryId\":\"s1\",\"startTimeInSeconds\":1795156200"
#define TERRA_META "\"metadata\":{\"start_time\":\"2026-11-20T00:00:00+01:00\"," \
                   "\"end_time\":\"2026-11-21T00:00:00+01:00\"}"
#define TERRA_USER "\"user\":{\"user_id\":\"terra-user-1\"}"
#define APP_HEAD "{\"schema\":\"auren.app.v1\",\"user_id\":\"app-user-1\",\"device\":" \
                 "{\"platform\":\"ios\",\"source\":\"healthkit\"},\"samples\":"
#define APP_S(extra) APP_HEAD "[{\"id\":\"s1\",\"start\":\"2026-11-20T06:30:00Z\"," extra "}]}"

static const struct bad_case bad_cases[] = {
    /* garmin */
    { "garmin", "", "malformed_json" },
    { "garmin", "not json", "malformed_json" },
    { "garmin", "{\"dailies\":[{" G_OK "}]", "malformed_json" },
    { "garmin", "[]", "wrong_type: body" },
    { "garmin", "{\"dailies\":{}}", "wrong_type: dailies" },
    { "garmin", "{\"dailies\":[7]}", "wrong_type: dailies" },
    { "garmin", "{\"dailies\":[{\"summaryId\":\"s\",\"startTimeInSeconds\":1795156200}]}",
      "missing_field: userId" },
    { "garmin", "{\"dailies\":[{\"userId\":\"u\",\"startTimeInSeconds\":1795156200}]}",
      "missing_field: summaryId" },
    { "garmin", "{\"dailies\":[{\"userId\":\"u\",\"summaryId\":\"s\"}]}",
      "missing_field: startTimeInSeconds" },
    { "garmin", "{\"dailies\":[{" G_OK ",\"steps\":\"many\"}]}", "wrong_type: steps" },
    { "garmin", "{\"dailies\":[{" G_OK ",\"steps\":-5}]}", "out_of_range: steps" },
    { "garmin", "{\"dailies\":[{" G_OK ",\"steps\":1e400}]}", "malformed_json" },
    { "garmin", "{\"dailies\":[{" G_OK ",\"restingHeartRateInBeatsPerMinute\":0}]}",
      "out_of_range: resting_heart_rate" },
    { "garmin", "{\"dailies\":[{" G_OK ",\"steps\":1,\"steps\":2}]}", "malformed_json" },
    { "garmin", "{\"dailies\":[{" G_OK ",\"durationInSeconds\":-1}]}",
      "out_of_range: durationInSeconds" },
    { "garmin", "{\"dailies\":[{" G_OK ",\"startTimeOffsetInSeconds\":90000}]}",
      "out_of_range: startTimeOffsetInSeconds" },
    { "garmin", "{\"dailies\":[{\"userId\":\"u\",\"summaryId\":\"s\",\"startTimeInSeconds\":100,"
                "\"steps\":1}]}",
      "out_of_range: start_time" },
    { "garmin", "{\"dailies\":[{\"userId\":\"u\",\"summaryId\":\"s\",\"startTimeInSeconds\":"
                "4102444800,\"steps\":1}]}",
      "out_of_range: end_time" },
    { "garmin", "{\"dailies\":[{\"userId\":\"u\",\"summaryId\":\"s\",\"startTimeInSeconds\":1.5}]}",
      "wrong_type: startTimeInSeconds" },
    { "garmin", "{\"hrv\":[{" G_OK ",\"hrvValues\":{\"abc\":40}}]}", "out_of_range: hrvValues" },
    { "garmin", "{\"hrv\":[{" G_OK ",\"hrvValues\":{\"60\":\"x\"}}]}", "wrong_type: hrvValues" },
    { "garmin", "{\"hrv\":[{" G_OK ",\"hrvValues\":[1,2]}]}", "wrong_type: hrvValues" },
    { "garmin", "{\"sleeps\":[{" G_OK ",\"durationInSeconds\":60,\"awakeDurationInSeconds\":120}]}",
      "out_of_range: awakeDurationInSeconds" },
    { "garmin", "{\"stressDetails\":[]}", "unsupported_record: stressDetails" },
    { "garmin", "{\"dailies\":[{\"userId\":\"u\",\"callbackURL\":\"https://evil.example/x\"}]}",
      "out_of_range: callbackURL" },
    { "garmin",
      "{\"dailies\":[{\"userId\":\"u\",\"callbackURL\":\"https://apis.garmin.com.evil/\"}]}",
      "out_of_range: callbackURL" },
    { "garmin", "{\"dailies\":[{\"userId\":\"a|b\",\"summaryId\":\"s\"}]}",
      "out_of_range: userId" },
    { "garmin", "{\"deregistrations\":[{}]}", "missing_field: userId" },
    /* terra */
    { "terra", "{}", "missing_field: type" },
    { "terra", "{\"type\":\"nutrition\"," TERRA_USER ",\"data\":[]}",
      "unsupported_record: nutrition" },
    { "terra", "{\"type\":\"daily\",\"data\":[]}", "missing_field: user" },
    { "terra", "{\"type\":\"daily\",\"user\":{},\"data\":[]}", "missing_field: user_id" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER "}", "missing_field: data" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER ",\"data\":{}}", "wrong_type: data" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER ",\"data\":[{}]}", "missing_field: metadata" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER ",\"data\":[{\"metadata\":{\"start_time\":"
               "\"yesterday\",\"end_time\":\"2026-11-21T00:00:00Z\"}}]}",
      "bad_time: start_time" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER ",\"data\":[{" TERRA_META ",\"heart_rate_data\":"
               "{\"detailed\":{\"hr_samples\":[{\"timestamp\":\"2026-11-20T10:00:00Z\","
               "\"bpm\":900}]}}}]}",
      "out_of_range: heart_rate" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER ",\"data\":[{" TERRA_META ",\"heart_rate_data\":"
               "{\"detailed\":{\"hr_samples\":[{\"bpm\":60}]}}}]}",
      "missing_field: timestamp" },
    { "terra", "{\"type\":\"sleep\"," TERRA_USER ",\"data\":[{" TERRA_META ",\"sleep_durations_data"
               "\":{\"asleep\":{\"duration_deep_sleep_state_seconds\":-60}}}]}",
      "out_of_range: sleep_deep_duration" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER ",\"data\":[{" TERRA_META ",\"distance_data\":"
               "[]}]}",
      "wrong_type: distance_data" },
    { "terra", "{\"type\":\"daily\"," TERRA_USER ",\"data\":[{\"metadata\":{\"start_time\":"
               "\"2026-11-21T00:00:00Z\",\"end_time\":\"2026-11-20T00:00:00Z\"},\"distance_data\":"
               "{\"steps\":5}}]}",
      "out_of_range: end_time" },
    /* app */
    { "app", "{\"schema\":\"auren.app.v2\"}", "unsupported_record: schema" },
    { "app", "{\"schema\":\"auren.app.v1\",\"user_id\":\"u\",\"samples\":[]}",
      "missing_field: device" },
    { "app", "{\"schema\":\"auren.app.v1\",\"user_id\":\"u\",\"device\":{\"platform\":\"ios\","
             "\"source\":\"health_connect\"},\"samples\":[]}",
      "out_of_range: source" },
    { "app", APP_HEAD "{}}", "wrong_type: samples" },
    { "app", APP_S("\"type\":\"mood\",\"value\":1,\"unit\":\"1\""), "unsupported_metric: type" },
    { "app", APP_S("\"type\":\"score.app.x\",\"value\":1,\"unit\":\"{score}\""),
      "unsupported_metric: type" },
    { "app", APP_S("\"type\":\"heart_rate\",\"value\":60,\"unit\":\"Hz\""),
      "unsupported_unit: unit" },
    { "app", APP_S("\"type\":\"heart_rate\",\"unit\":\"/min\""), "missing_field: value" },
    { "app", APP_S("\"type\":\"heart_rate\",\"value\":\"60\",\"unit\":\"/min\""),
      "wrong_type: value" },
    { "app", APP_S("\"type\":\"heart_rate\",\"value\":60,\"unit\":\"/min\",\"deleted\":\"no\""),
      "wrong_type: deleted" },
    { "app", APP_HEAD "[{\"id\":\"s1\",\"type\":\"steps\",\"value\":1,\"unit\":\"count\","
                      "\"start\":\"2026-11-20T06:30:00\"}]}",
      "bad_time: start" },
    { "app",
      APP_S("\"type\":\"steps\",\"value\":1,\"unit\":\"count\",\"end\":\"2026-11-20T06:00:00Z\""),
      "out_of_range: end_time" },
    { "app", APP_S("\"type\":\"body_weight\",\"value\":9000,\"unit\":\"lb\""),
      "out_of_range: body_weight" },
    /* whoop */
    { "whoop", "{\"id\":\"x\",\"type\":\"sleep.updated\"}", "missing_field: user_id" },
    { "whoop", "{\"user_id\":10001,\"id\":{},\"type\":\"sleep.updated\"}", "wrong_type: id" },
    { "whoop", "{\"user_id\":10001,\"id\":\"x\",\"type\":\"cycle.updated\"}",
      "unsupported_record: cycle.updated" },
    { "whoop", "{\"user_id\":10001,\"id\":\"x\",\"type\":\"sleep.created\"}",
      "unsupported_record: sleep.created" },
    { "whoop", "{\"user_id\":-4,\"id\":\"x\",\"type\":\"sleep.updated\"}",
      "out_of_range: user_id" },
    /* oura */
    { "oura", "{\"event_type\":\"create\",\"data_type\":\"sleep\",\"user_id\":\"o\"}",
      "missing_field: object_id" },
    { "oura", "{\"event_type\":\"create\",\"data_type\":\"mood\",\"object_id\":\"x\",\"user_id\":"
              "\"o\"}",
      "unsupported_record: mood" },
    { "oura", "{\"event_type\":\"patch\",\"data_type\":\"sleep\",\"object_id\":\"x\",\"user_id\":"
              "\"o\"}",
      "out_of_range: event_type" },
    /* polar */
    { "polar", "{\"event\":\"EXERCISE\",\"user_id\":20001,\"entity_id\":\"e\",\"url\":"
               "\"http://www.polaraccesslink.com/v3/exercises/e\"}",
      "out_of_range: url" },
    { "polar", "{\"event\":\"EXERCISE\",\"user_id\":20001,\"entity_id\":\"e\"}",
      "missing_field: url" },
    { "polar", "{\"event\":\"STEPS\",\"user_id\":20001}", "unsupported_record: STEPS" },
    { "polar", "{\"event\":\"SLEEP\",\"user_id\":20001,\"date\":\"2026-02-30\",\"url\":"
               "\"https://www.polaraccesslink.com/v3/users/sleep/2026-02-30\"}",
      "bad_time: date" },
    /* fitbit */
    { "fitbit", "{\"collectionType\":\"sleep\"}", "wrong_type: body" },
    { "fitbit", "[{\"collectionType\":\"heart\",\"ownerId\":\"FITBIT1\"}]",
      "unsupported_record: heart" },
    { "fitbit", "[{\"collectionType\":\"sleep\",\"ownerId\":\"FITBIT1\",\"ownerType\":\"group\"}]",
      "out_of_range: ownerType" },
    { "fitbit", "[{\"collectionType\":\"sleep\"}]", "missing_field: ownerId" },
    { "fitbit", "[3]", "wrong_type: notification" },
    /* google_health */
    { "google_health", "[{}]", "missing_field: data" },
    { "google_health", "[{\"data\":{\"healthUserId\":\"g\",\"operation\":\"MERGE\",\"dataType\":"
                       "\"steps\"}}]",
      "out_of_range: operation" },
    { "google_health", "[{\"data\":{\"healthUserId\":\"g\",\"operation\":\"UPSERT\",\"dataType\":"
                       "\"steps\",\"intervals\":[{\"physicalTimeInterval\":{\"startTime\":"
                       "\"2026-11-20T10:00:00Z\",\"endTime\":\"2026-11-20T09:00:00Z\"}}]}}]",
      "out_of_range: endTime" },
    { "google_health", "[{\"data\":{\"healthUserId\":\"g\",\"operation\":\"UPSERT\",\"dataType\":"
                       "\"st eps\"}}]",
      "out_of_range: dataType" },
    { "google_health", "[{\"data\":{\"healthUserId\":\"g\",\"operation\":\"DELETE\",\"dataType\":"
                       "\"steps\"}}]",
      "missing_field: intervals" },
    { "google_health", "[{\"data\":{\"healthUserId\":\"g\",\"operation\":\"DELETE\",\"dataType\":"
                       "\"steps\",\"intervals\":[]}}]",
      "missing_field: intervals" },
    /* withings */
    { "withings", "appli=1&startdate=1", "missing_field: userid" },
    { "withings", "userid=30001", "missing_field: appli" },
    { "withings", "userid=30001&appli=999", "unsupported_record: appli" },
    { "withings", "userid=abc&appli=1", "out_of_range: userid" },
    { "withings", "userid=030001&appli=1", "out_of_range: userid" }, /* fuzz: norm_withings */
    { "withings", "userid=99999999999999999999&appli=1", "out_of_range: userid" },
    { "withings", "userid=30001&appli=1&startdate=-5", "out_of_range: startdate" },
    { "withings", "userid=30001&appli=1&startdate=20&enddate=10", "out_of_range: enddate" },
    { "withings", "userid=30001&appli=1&userid=30002", "duplicate_field: userid" },
    { "withings", "userid=3%G1&appli=1", "out_of_range: userid" },
    { "withings", "user%zid=3&appli=1", "malformed_form" },
    { "withings", "userid=30001&appli=1&date=someday", "bad_time: date" },
    /* strava */
    { "strava", "{\"object_type\":\"club\",\"aspect_type\":\"create\",\"owner_id\":1,"
                "\"object_id\":2}",
      "unsupported_record: club" },
    { "strava", "{\"object_type\":\"activity\",\"aspect_type\":\"rename\",\"owner_id\":1,"
                "\"object_id\":2}",
      "out_of_range: aspect_type" },
    { "strava", "{\"object_type\":\"activity\",\"aspect_type\":\"create\",\"object_id\":2}",
      "missing_field: owner_id" },
    { "strava", "{\"object_type\":\"athlete\",\"aspect_type\":\"update\",\"owner_id\":1,"
                "\"object_id\":1,\"updates\":[]}",
      "wrong_type: updates" },
};

START_TEST(test_bad_input_is_rejected_with_reason)
{
    const struct bad_case *c = &bad_cases[_i];
    struct proc_out out;
    struct cm_err err = { { 0 } };
    struct cm_raw_webhook raw = proc_test_raw(c->vendor, c->body, strlen(c->body));

    proc_out_init(&out);
    enum cm_rc rc = proc_normalize(&raw, &out, &err);
    ck_assert_msg(rc == CM_INVALID, "%s case %d accepted", c->vendor, _i);
    ck_assert_msg(strcmp(err.msg, c->reason) == 0, "%s case %d: got '%s', want '%s'", c->vendor, _i,
                  err.msg, c->reason);
    ck_assert_uint_eq(out.n_samples + out.n_fetches + out.n_lifecycle, 0);
    ck_assert(!out.is_handshake);
    proc_out_fini(&out);
}
END_TEST

/* Unknown type names are echoed only when they look like names ([A-Za-z0-9_.-], short). */
START_TEST(test_reasons_never_carry_values)
{
    static const struct bad_case leaky[] = {
        { "garmin", "{\"dailies\":[{\"userId\":\"SECRETUSER\",\"summaryId\":\"SECRETREC\","
                    "\"startTimeInSeconds\":1795156200,\"steps\":-98765}]}",
          NULL },
        { "garmin", "{\"SECRET<script>\":[]}", NULL },
        { "terra", "{\"type\":\"SECRET john@example.org\"}", NULL },
        { "app", APP_S("\"type\":\"SECRET-METRIC\",\"value\":1,\"unit\":\"SECRET-UNIT\""), NULL },
        { "whoop", "{\"user_id\":1,\"id\":\"x\",\"type\":\"SECRET TYPE\"}", NULL },
    };
    static const char *const secrets[] = { "SECRET", "98765", "<script>" };

    for (size_t i = 0; i < CM_ARRAY_LEN(leaky); i++) {
        struct proc_out out;
        struct cm_err err = { { 0 } };
        struct cm_raw_webhook raw = proc_test_raw(leaky[i].vendor, leaky[i].body,
                                                  strlen(leaky[i].body));
        proc_out_init(&out);
        ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
        for (size_t s = 0; s < CM_ARRAY_LEN(secrets); s++) {
            ck_assert_msg(strstr(err.msg, secrets[s]) == NULL, "case %zu leaks: %s", i, err.msg);
        }
        proc_out_fini(&out);
    }
}
END_TEST

START_TEST(test_deep_and_large_input)
{
    size_t n = 100000;
    char *body = cm_xmalloc(2 * n + 1);
    struct proc_out out;
    struct cm_err err;

    for (size_t i = 0; i < n; i++) {
        body[i] = '[';
        body[n + i] = ']';
    }
    body[2 * n] = '\0';
    proc_out_init(&out);
    for (size_t v = 0; v < 3; v++) {
        static const char *const vendors[] = { "garmin", "terra", "fitbit" };
        struct cm_raw_webhook raw = proc_test_raw(vendors[v], body, 2 * n);
        ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
        ck_assert_str_eq(err.msg, "too_deep");
    }
    /* Brackets inside strings do not count. */
    const char *quoted = "{\"type\":\"healthcheck\",\"x\":"
                         "\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"{{{{\"}";
    struct cm_raw_webhook raw = proc_test_raw("terra", quoted, strlen(quoted));
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_OK);
    raw.body_len = PROC_NORM_MAX_BODY + 1;
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "too_large");
    proc_out_fini(&out);
    free(body);
}
END_TEST

/* Every prefix of every fixture either parses or is rejected cleanly (run under ASan in CI). */
START_TEST(test_truncated_fixtures_never_crash)
{
    static const char *const vendors[] = { "garmin", "terra", "app", "whoop", "oura", "polar",
                                           "fitbit", "google_health", "withings", "strava" };
    struct proc_out out;
    size_t checked = 0;

    proc_out_init(&out);
    for (size_t v = 0; v < CM_ARRAY_LEN(vendors); v++) {
        char dir[512];
        struct dirent *de;
        snprintf(dir, sizeof(dir), "%s/%s", AUREN_FIXTURES_DIR, vendors[v]);
        DIR *d = opendir(dir);
        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)) != NULL) {
            char path[1024];
            if (de->d_name[0] == '.' || strstr(de->d_name, ".expected") != NULL ||
                strcmp(de->d_name, "README.md") == 0) {
                continue;
            }
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            FILE *fp = fopen(path, "rb");
            ck_assert_ptr_nonnull(fp);
            char *buf = cm_xmalloc(65536);
            size_t len = fread(buf, 1, 65536, fp);
            fclose(fp);
            for (size_t cut = 0; cut < len; cut++) {
                struct cm_err err;
                /* A heap copy of exactly `cut` bytes, so ASan sees any over-read. */
                char *copy = cm_xmalloc(cut + 1);
                memcpy(copy, buf, cut);
                struct cm_raw_webhook raw = proc_test_raw(vendors[v], copy, cut);
                enum cm_rc rc = proc_normalize(&raw, &out, &err);
                ck_assert(rc == CM_OK || rc == CM_INVALID);
                if (rc == CM_INVALID) {
                    ck_assert_uint_eq(out.n_samples + out.n_fetches + out.n_lifecycle, 0);
                }
                free(copy);
                checked++;
            }
            free(buf);
        }
        closedir(d);
    }
    ck_assert_uint_gt(checked, 1000);
    proc_out_fini(&out);
}
END_TEST

static const char garmin_push[] =
    "{\"dailies\":[{\"userId\":\"garmin-user-1\",\"summaryId\":\"d-1\",\"startTimeInSeconds\":"
    "1795129200,\"startTimeOffsetInSeconds\":3600,\"durationInSeconds\":86400,\"steps\":4200,"
    "\"timeOffsetHeartRateSamples\":{\"0\":60,\"15\":62}}]}";
static const char garmin_fetched[] =
    "[{\"userId\":\"garmin-user-1\",\"summaryId\":\"d-1\",\"startTimeInSeconds\":"
    "1795129200,\"startTimeOffsetInSeconds\":3600,\"durationInSeconds\":86400,\"steps\":4200,"
    "\"timeOffsetHeartRateSamples\":{\"0\":60,\"15\":62}}]";

START_TEST(test_same_input_same_event_ids)
{
    struct proc_out a, b;
    struct cm_err err;
    struct cm_raw_webhook raw = proc_test_raw("garmin", garmin_push, strlen(garmin_push));

    proc_out_init(&a);
    proc_out_init(&b);
    ck_assert_int_eq(proc_normalize(&raw, &a, &err), CM_OK);
    ck_assert_int_eq(proc_normalize(&raw, &b, &err), CM_OK);
    ck_assert_uint_eq(a.n_samples, 3);
    ck_assert_uint_eq(a.n_samples, b.n_samples);
    for (size_t i = 0; i < a.n_samples; i++) {
        ck_assert_str_eq(a.samples[i].event_id, b.samples[i].event_id);
        for (size_t j = i + 1; j < a.n_samples; j++) {
            ck_assert_str_ne(a.samples[i].event_id, a.samples[j].event_id);
        }
    }
    /* The raw event id (gateway-assigned, different on redelivery) does not enter the id. */
    raw.event_id = (char *)"ffffffffffffffffffffffffffffffff";
    ck_assert_int_eq(proc_normalize(&raw, &b, &err), CM_OK);
    ck_assert_str_eq(a.samples[0].event_id, b.samples[0].event_id);
    proc_out_fini(&a);
    proc_out_fini(&b);
}
END_TEST

START_TEST(test_garmin_fetched_record_matches_push)
{
    struct proc_out push, fetched;
    struct cm_err err;
    struct cm_raw_webhook raw = proc_test_raw("garmin", garmin_push, strlen(garmin_push));

    proc_out_init(&push);
    proc_out_init(&fetched);
    ck_assert_int_eq(proc_normalize(&raw, &push, &err), CM_OK);
    raw = proc_test_raw("garmin", garmin_fetched, strlen(garmin_fetched));
    raw.kind = CM_RAW_API_RECORD;
    raw.vendor_user_id = (char *)"garmin-user-1";
    ck_assert_int_eq(proc_normalize(&raw, &fetched, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "missing_field: record_type");
    raw.record_type = (char *)"garmin.dailies";
    ck_assert_int_eq(proc_normalize(&raw, &fetched, &err), CM_OK);
    ck_assert_uint_eq(fetched.n_samples, push.n_samples);
    for (size_t i = 0; i < push.n_samples; i++) {
        ck_assert_str_eq(fetched.samples[i].event_id, push.samples[i].event_id);
    }
    raw.record_type = (char *)"garmin.moveIQActivities";
    ck_assert_int_eq(proc_normalize(&raw, &fetched, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "unsupported_record: moveIQActivities");
    proc_out_fini(&push);
    proc_out_fini(&fetched);
}
END_TEST

START_TEST(test_notify_only_api_records_are_not_parsed_yet)
{
    static const char *const vendors[] = { "whoop", "oura", "polar", "fitbit", "google_health",
                                           "withings", "strava" };
    struct proc_out out;
    struct cm_err err;

    proc_out_init(&out);
    for (size_t i = 0; i < CM_ARRAY_LEN(vendors); i++) {
        struct cm_raw_webhook raw = proc_test_raw(vendors[i], "{}", 2);
        raw.kind = CM_RAW_API_RECORD;
        raw.record_type = (char *)"x.sleep";
        ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
        ck_assert_str_eq(err.msg, "unsupported_record: x.sleep");
    }
    proc_out_fini(&out);
}
END_TEST

START_TEST(test_google_health_data_points)
{
    static const struct {
        const char *record_type, *body, *err; /* err NULL: CM_OK */
        size_t n;
    } cases[] = {
        { "google_health.steps", "{}", NULL, 0 },
        { "google_health.heart_rate",
          "{\"dataPoints\":[{\"heartRate\":{\"beatsPerMinute\":61,\"sampleTime\":"
          "{\"physicalTime\":\"2026-11-23T08:00:00Z\"}}}]}", NULL, 1 },
        { "google_health.heart_rate",
          "{\"dataPoints\":[{\"heartRate\":{\"beatsPerMinute\":\"6x\",\"sampleTime\":"
          "{\"physicalTime\":\"2026-11-23T08:00:00Z\"}}}]}", "out_of_range: beatsPerMinute", 0 },
        { "google_health.weight",
          "{\"dataPoints\":[{\"heartRate\":{\"beatsPerMinute\":61,\"sampleTime\":"
          "{\"physicalTime\":\"2026-11-23T08:00:00Z\"}}}]}", "missing_field: weight", 0 },
        { "google_health.steps",
          "{\"dataPoints\":[{\"steps\":{\"count\":\"5\",\"interval\":{\"startTime\":"
          "\"2026-11-23T09:00:00Z\",\"endTime\":\"2026-11-23T08:00:00Z\"}}}]}",
          "out_of_range: endTime", 0 },
        { "google_health.body_fat", "{}", "unsupported_record: google_health.body_fat", 0 },
        { "google_health.heart-rate", "{}", "unsupported_record: google_health.heart-rate", 0 },
        { "google_health.sleep",
          "{\"dataPoints\":[{\"sleep\":{\"interval\":{\"startTime\":\"2026-11-23T00:00:00Z\","
          "\"endTime\":\"2026-11-23T06:00:00Z\"}}}]}", NULL, 0 },
        { "google_health.sleep",
          "{\"dataPoints\":[{\"sleep\":{\"interval\":{\"startTime\":\"2026-11-23T00:00:00Z\","
          "\"endTime\":\"2026-11-23T06:00:00Z\"},\"summary\":{\"minutesAsleep\":\"300\","
          "\"minutesInSleepPeriod\":\"0\",\"stagesSummary\":[{\"type\":\"DEEP\"}]}}}]}",
          "missing_field: minutes", 0 },
        { "google_health.sleep",
          "{\"dataPoints\":[{\"sleep\":{\"interval\":{\"startTime\":\"2026-11-23T00:00:00Z\","
          "\"endTime\":\"2026-11-23T06:00:00Z\"},\"stages\":[{\"type\":\"REM\",\"startTime\":"
          "\"2026-11-23T01:00:00Z\",\"endTime\":\"2026-11-23T00:30:00Z\"}]}}]}",
          "out_of_range: endTime", 0 },
        { "google_health.exercise",
          "{\"dataPoints\":[{\"exercise\":{\"interval\":{\"startTime\":"
          "\"2026-11-23T07:00:00Z\",\"endTime\":\"2026-11-23T07:30:00Z\"},"
          "\"activeDuration\":\"20 min\"}}]}", "out_of_range: activeDuration", 0 },
        { "google_health.exercise",
          "{\"dataPoints\":[{\"exercise\":{\"interval\":{\"startTime\":"
          "\"2026-11-23T07:00:00Z\",\"endTime\":\"2026-11-23T07:30:00Z\"},"
          "\"activeDuration\":\"1200.5s\"}}]}", NULL, 1 },
        { "google_health.daily_resting_heart_rate",
          "{\"dataPoints\":[{\"dailyRestingHeartRate\":{\"beatsPerMinute\":\"58\"}}]}",
          "missing_field: date", 0 },
        { "google_health.daily_resting_heart_rate",
          "{\"dataPoints\":[{\"dailyRestingHeartRate\":{\"beatsPerMinute\":\"58\",\"date\":"
          "{\"year\":2026,\"month\":2,\"day\":30}}}]}", "out_of_range: date", 0 },
        { "google_health.daily_resting_heart_rate",
          "{\"dataPoints\":[{\"dailyRestingHeartRate\":{\"date\":"
          "{\"year\":2026,\"month\":2,\"day\":3}}}]}", "missing_field: beatsPerMinute", 0 },
        { "google_health.heart_rate_variability",
          "{\"dataPoints\":[{\"heartRateVariability\":{\"sampleTime\":"
          "{\"physicalTime\":\"2026-11-23T08:00:00Z\"}}}]}", NULL, 0 },
        { "google_health.respiratory_rate_sleep_summary",
          "{\"dataPoints\":[{\"respiratoryRateSleepSummary\":{\"sampleTime\":"
          "{\"physicalTime\":\"2026-11-23T08:00:00Z\"},\"fullSleepStats\":{}}}]}",
          "missing_field: breathsPerMinute", 0 },
    };
    struct proc_out out;
    struct cm_err err;

    proc_out_init(&out);
    for (size_t i = 0; i < CM_ARRAY_LEN(cases); i++) {
        struct cm_raw_webhook raw = proc_test_raw("google_health", cases[i].body,
                                                  strlen(cases[i].body));
        raw.kind = CM_RAW_API_RECORD;
        raw.vendor_user_id = (char *)"gh-user-1";
        raw.record_type = (char *)cases[i].record_type;
        proc_out_reset(&out);
        if (cases[i].err == NULL) {
            ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_OK);
            ck_assert_uint_eq(out.n_samples, cases[i].n);
        } else {
            ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_INVALID);
            ck_assert_str_eq(err.msg, cases[i].err);
        }
    }
    proc_out_fini(&out);
}
END_TEST

START_TEST(test_garmin_skips_gaps_and_no_data_markers)
{
    const char *body = "{\"dailies\":[{\"userId\":\"u\",\"summaryId\":\"d\",\"startTimeInSeconds\":"
                       "1795129200,\"durationInSeconds\":86400,\"averageStressLevel\":-1,"
                       "\"steps\":null,\"timeOffsetHeartRateSamples\":{\"0\":null}}]}";
    struct proc_out out;
    struct cm_err err;
    struct cm_raw_webhook raw = proc_test_raw("garmin", body, strlen(body));

    proc_out_init(&out);
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_OK);
    ck_assert_uint_eq(out.n_samples, 0);
    proc_out_fini(&out);
}
END_TEST

START_TEST(test_tombstones_are_marked_deleted)
{
    const char *terra = "{\"type\":\"activity\",\"user\":{\"user_id\":\"terra-user-1\"},\"data\":"
                        "[{\"metadata\":{\"start_time\":\"2026-11-20T10:00:00Z\",\"end_time\":"
                        "\"2026-11-20T10:30:00Z\",\"summary_id\":\"a1\",\"upload_type\":4}}]}";
    const char *app = APP_HEAD "[{\"id\":\"s1\",\"type\":\"heart_rate\",\"unit\":\"/min\","
                      "\"start\":\"2026-11-20T06:30:00Z\",\"deleted\":true},{\"id\":\"s2\","
                      "\"type\":\"heart_rate\",\"value\":61,\"unit\":\"/min\","
                      "\"start\":\"2026-11-20T06:31:00Z\",\"deleted\":false}]}";
    struct proc_out out;
    struct cm_err err;
    struct cm_raw_webhook raw = proc_test_raw("terra", terra, strlen(terra));

    proc_out_init(&out);
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_OK);
    ck_assert_uint_eq(out.n_samples, 1);
    ck_assert_str_eq(out.samples[0].metric, "exercise_duration");
    ck_assert(out.samples[0].deleted);
    ck_assert_double_eq(out.samples[0].value, 30);

    raw = proc_test_raw("app", app, strlen(app));
    ck_assert_int_eq(proc_normalize(&raw, &out, &err), CM_OK);
    ck_assert_uint_eq(out.n_samples, 2);
    ck_assert(out.samples[0].deleted);
    ck_assert(!out.samples[1].deleted);
    /* The tombstone carries the id of the event it deletes. */
    char id[33];
    proc_event_id("app", "app-user-1", "s1", "heart_rate", INT64_C(1795156200000000), id);
    ck_assert_str_eq(out.samples[0].event_id, id);
    proc_out_fini(&out);
}
END_TEST

Suite *proc_vendors_suite(void)
{
    Suite *s = suite_create("proc_vendors");
    TCase *tc;

    tc = tcase_create("malformed");
    tcase_add_loop_test(tc, test_bad_input_is_rejected_with_reason, 0,
                        (int)CM_ARRAY_LEN(bad_cases));
    tcase_add_test(tc, test_reasons_never_carry_values);
    tcase_add_test(tc, test_deep_and_large_input);
    tcase_add_test(tc, test_truncated_fixtures_never_crash);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("semantics");
    tcase_add_test(tc, test_same_input_same_event_ids);
    tcase_add_test(tc, test_garmin_fetched_record_matches_push);
    tcase_add_test(tc, test_notify_only_api_records_are_not_parsed_yet);
    tcase_add_test(tc, test_google_health_data_points);
    tcase_add_test(tc, test_garmin_skips_gaps_and_no_data_markers);
    tcase_add_test(tc, test_tombstones_are_marked_deleted);
    suite_add_tcase(s, tc);
    return s;
}
