/* proc_norm.c: event ids, proc_out / sample validation, time helpers, vendor dispatch. */
#include <math.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_suites.h"
#include "proc_vendors.h"

#define T_2026_11_20_0630 INT64_C(1795156200000000)

/* ---- event id ---- */

START_TEST(test_event_id_matches_reference_vector)
{
    char id[33];

    /* Reference computed independently: sha256(text)[:16] in hex (Python hashlib). */
    proc_event_id("garmin", "garmin-user-1", "sum-1", "steps", INT64_C(1795000000000000), id);
    ck_assert_str_eq(id, "e585d1e1baa32b8cec4ccacfcf3aa58f");
    proc_event_id("app", "u", "r", "score.app.x", 0, id);
    ck_assert_str_eq(id, "12e14fcd41f8d50c9595355606bf60f6");
}
END_TEST

START_TEST(test_event_id_changes_with_every_input)
{
    char base[33], other[33];

    proc_event_id("garmin", "u1", "r1", "steps", 1, base);
    proc_event_id("terra", "u1", "r1", "steps", 1, other);
    ck_assert_str_ne(base, other);
    proc_event_id("garmin", "u2", "r1", "steps", 1, other);
    ck_assert_str_ne(base, other);
    proc_event_id("garmin", "u1", "r2", "steps", 1, other);
    ck_assert_str_ne(base, other);
    proc_event_id("garmin", "u1", "r1", "distance", 1, other);
    ck_assert_str_ne(base, other);
    proc_event_id("garmin", "u1", "r1", "steps", 2, other);
    ck_assert_str_ne(base, other);
    proc_event_id("garmin", "u1", "r1", "steps", 1, other);
    ck_assert_str_eq(base, other);
    ck_assert_uint_eq(strlen(base), 32);
}
END_TEST

/* ---- samples ---- */

static enum cm_rc add(struct proc_out *o, const char *metric, double v, int64_t s, int64_t e,
                      struct cm_err *err)
{
    int32_t off = 3600;
    return proc_out_add_sample(o, "garmin", "garmin-user-1", metric, v, s, e, &off, "rec-1", false,
                               err);
}

START_TEST(test_add_sample_fills_unit_loinc_and_id)
{
    struct proc_out o;
    struct cm_err err;
    char id[33];

    proc_out_init(&o);
    ck_assert_int_eq(add(&o, "heart_rate", 61, T_2026_11_20_0630, T_2026_11_20_0630, &err), CM_OK);
    ck_assert_uint_eq(o.n_samples, 1);
    ck_assert_str_eq(o.samples[0].unit, "/min");
    ck_assert_str_eq(o.samples[0].loinc, "8867-4");
    ck_assert(o.samples[0].has_utc_offset);
    ck_assert_int_eq(o.samples[0].utc_offset_s, 3600);
    proc_event_id("garmin", "garmin-user-1", "rec-1", "heart_rate", T_2026_11_20_0630, id);
    ck_assert_str_eq(o.samples[0].event_id, id);

    ck_assert_int_eq(proc_out_add_sample(&o, "garmin", "garmin-user-1", "hrv_rmssd", 40,
                                         T_2026_11_20_0630, T_2026_11_20_0630, NULL, "rec-1", true,
                                         &err),
                     CM_OK);
    ck_assert_ptr_null(o.samples[1].loinc);
    ck_assert(!o.samples[1].has_utc_offset);
    ck_assert(o.samples[1].deleted);
    proc_out_fini(&o);
}
END_TEST

START_TEST(test_add_sample_scores_are_namespaced_per_vendor)
{
    struct proc_out o;
    struct cm_err err;

    proc_out_init(&o);
    ck_assert_int_eq(add(&o, "score.garmin.body_battery_charged", 64, T_2026_11_20_0630,
                         T_2026_11_20_0630, &err),
                     CM_OK);
    ck_assert_str_eq(o.samples[0].unit, "{score}");
    ck_assert_ptr_null(o.samples[0].loinc);
    ck_assert_int_eq(
        add(&o, "score.whoop.recovery", 64, T_2026_11_20_0630, T_2026_11_20_0630, &err),
        CM_INVALID);
    ck_assert_str_eq(err.msg, "unknown_metric: score.whoop.recovery");
    ck_assert_int_eq(add(&o, "score.garmin.", 1, T_2026_11_20_0630, T_2026_11_20_0630, &err),
                     CM_INVALID);
    ck_assert_int_eq(
        add(&o, "score.garmin.Bad Name", 1, T_2026_11_20_0630, T_2026_11_20_0630, &err),
        CM_INVALID);
    ck_assert_int_eq(add(&o, "stress", 1, T_2026_11_20_0630, T_2026_11_20_0630, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "unknown_metric: stress");
    ck_assert_uint_eq(o.n_samples, 1);
    proc_out_fini(&o);
}
END_TEST

START_TEST(test_add_sample_rejects_out_of_range)
{
    struct proc_out o;
    struct cm_err err;
    const int64_t t = T_2026_11_20_0630;

    proc_out_init(&o);
    ck_assert_int_eq(add(&o, "heart_rate", NAN, t, t, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: heart_rate");
    ck_assert_int_eq(add(&o, "heart_rate", INFINITY, t, t, &err), CM_INVALID);
    ck_assert_int_eq(add(&o, "heart_rate", 301, t, t, &err), CM_INVALID);
    ck_assert_int_eq(add(&o, "heart_rate", 300, t, t, &err), CM_OK);
    ck_assert_int_eq(add(&o, "steps", -1, t, t, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: steps");
    ck_assert_int_eq(add(&o, "sleep_deep_duration", -0.5, t, t, &err), CM_INVALID);
    ck_assert_int_eq(add(&o, "steps", 0, INT64_C(946684799999999), INT64_C(946684799999999), &err),
                     CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: start_time");
    ck_assert_int_eq(add(&o, "steps", 0, INT64_C(946684800000000), INT64_C(946684800000000), &err),
                     CM_OK);
    ck_assert_int_eq(add(&o, "steps", 0, t, t - 1, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: end_time");
    int64_t future = cm_now_us() + INT64_C(2) * 86400 * 1000000;
    ck_assert_int_eq(add(&o, "steps", 0, future, future, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: end_time");

    int32_t off = 19 * 3600;
    ck_assert_int_eq(proc_out_add_sample(&o, "garmin", "u", "steps", 1, t, t, &off, "r", false,
                                         &err),
                     CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: utc_offset");
    ck_assert_int_eq(
        proc_out_add_sample(&o, "garmin", "", "steps", 1, t, t, NULL, "r", false, &err),
        CM_INVALID);
    ck_assert_int_eq(
        proc_out_add_sample(&o, "garmin", "u", "steps", 1, t, t, NULL, "", false, &err),
        CM_INVALID);
    /* Record ids: up to PROC_NORM_RECORD_ID_MAX printable bytes (a composed "<id>#<time>" may
     * exceed a vendor id's 100), never a '|' (the event id's separator) or a control byte. */
    char rid[PROC_NORM_RECORD_ID_MAX + 2];
    memset(rid, 'r', sizeof(rid) - 1);
    rid[sizeof(rid) - 1] = '\0';
    ck_assert_int_eq(
        proc_out_add_sample(&o, "garmin", "u", "steps", 1, t, t, NULL, rid, false, &err),
        CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: source_record_id");
    rid[PROC_NORM_RECORD_ID_MAX] = '\0';
    ck_assert_int_eq(
        proc_out_add_sample(&o, "garmin", "u", "steps", 1, t, t, NULL, rid, false, &err),
        CM_OK);
    ck_assert_str_eq(o.samples[o.n_samples - 1].source_record_id, rid);
    ck_assert_int_eq(
        proc_out_add_sample(&o, "garmin", "u", "steps", 1, t, t, NULL, "a|b", false, &err),
        CM_INVALID);
    ck_assert_int_eq(
        proc_out_add_sample(&o, "garmin", "u", "steps", 1, t, t, NULL, "a\tb", false, &err),
        CM_INVALID);
    /* A tombstone's value is not range-checked (it may carry none). */
    ck_assert_int_eq(proc_out_add_sample(&o, "garmin", "u", "heart_rate", 0, t, t, NULL, "r", true,
                                         &err),
                     CM_OK);
    ck_assert_uint_eq(o.n_samples, 4);
    proc_out_fini(&o);
}
END_TEST

START_TEST(test_out_grows_and_resets)
{
    struct proc_out o;

    proc_out_init(&o);
    for (int i = 0; i < 1000; i++) {
        struct proc_fetch *f = proc_out_add_fetch(&o);
        ck_assert_str_eq(f->resource, "");
        snprintf(f->resource, sizeof(f->resource), "r%d", i);
        proc_out_add_lifecycle(&o);
    }
    ck_assert_uint_eq(o.n_fetches, 1000);
    ck_assert_str_eq(o.fetches[999].resource, "r999");
    ck_assert_uint_eq(o.n_lifecycle, 1000);
    o.is_handshake = true;
    proc_out_reset(&o);
    ck_assert_uint_eq(o.n_fetches, 0);
    ck_assert_uint_eq(o.n_lifecycle, 0);
    ck_assert(!o.is_handshake);
    proc_out_fini(&o);
    proc_out_fini(&o); /* idempotent */
    proc_out_fini(NULL);
}
END_TEST

/* ---- time ---- */

START_TEST(test_parse_time_accepts_rfc3339_forms)
{
    int64_t us;
    bool has_off;
    int32_t off;

    ck_assert(proc_norm_parse_time("2026-11-20T06:30:00Z", &us, &has_off, &off));
    ck_assert_int_eq(us, T_2026_11_20_0630);
    ck_assert(has_off);
    ck_assert_int_eq(off, 0);
    ck_assert(proc_norm_parse_time("2026-11-20T07:30:00+01:00", &us, &has_off, &off));
    ck_assert_int_eq(us, T_2026_11_20_0630);
    ck_assert_int_eq(off, 3600);
    ck_assert(proc_norm_parse_time("2026-11-20T01:00:00.250000-05:30", &us, &has_off, &off));
    ck_assert_int_eq(us, T_2026_11_20_0630 + 250000);
    ck_assert_int_eq(off, -19800);
    ck_assert(proc_norm_parse_time("2026-11-20t07:30:00.1234567+0100", &us, &has_off, &off));
    ck_assert_int_eq(us, T_2026_11_20_0630 + 123456);
    ck_assert(proc_norm_parse_time("2026-11-20 06:30:00", &us, &has_off, &off));
    ck_assert_int_eq(us, T_2026_11_20_0630);
    ck_assert(!has_off);
    ck_assert(proc_norm_parse_time("2024-02-29T00:00:00Z", &us, &has_off, &off));
}
END_TEST

START_TEST(test_parse_time_rejects_garbage)
{
    static const char *const bad[] = {
        "", "garbage", "2026-11-20", "2026-11-20T06:30Z", "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-20T24:00:00Z",
        "2026-11-20T06:60:00Z", "2026-11-20T06:30:60Z", "2026-11-20T06:30:00+19:00",
        "2026-11-20T06:30:00Zjunk", "2026-11-20T06:30:00.Z", "2026-11-20T06:30:00.1234567890Z",
        "2026-11-20T06:30:00+1", "+2026-11-20T06:30:00Z", "2026-1-20T06:30:00Z",
    };
    int64_t us;
    bool has_off;
    int32_t off;

    for (size_t i = 0; i < CM_ARRAY_LEN(bad); i++) {
        ck_assert_msg(!proc_norm_parse_time(bad[i], &us, &has_off, &off), "accepted '%s'", bad[i]);
    }
}
END_TEST

START_TEST(test_format_time_and_dates)
{
    char buf[40];
    int64_t us;

    proc_norm_format_time(T_2026_11_20_0630, buf);
    ck_assert_str_eq(buf, "2026-11-20T06:30:00Z");
    proc_norm_format_time(T_2026_11_20_0630 + 5, buf);
    ck_assert_str_eq(buf, "2026-11-20T06:30:00.000005Z");
    proc_norm_format_time(0, buf);
    ck_assert_str_eq(buf, "1970-01-01T00:00:00Z");
    proc_norm_format_time(-1, buf);
    ck_assert_str_eq(buf, "1969-12-31T23:59:59.999999Z");
    ck_assert(proc_norm_parse_date("2026-11-20", &us));
    ck_assert_int_eq(us, T_2026_11_20_0630 - INT64_C(6) * 3600 * 1000000 - INT64_C(1800000000));
    ck_assert(!proc_norm_parse_date("2026-11-20T00:00:00Z", &us));
    ck_assert(!proc_norm_parse_date("2026-11-32", &us));
}
END_TEST

/* ---- dispatch ---- */

START_TEST(test_dispatch_by_vendor)
{
    struct proc_out o;
    struct cm_err err;
    const char *body = "{\"event\":\"PING\"}";
    struct cm_raw_webhook raw = proc_test_raw("polar", body, strlen(body));

    proc_out_init(&o);
    ck_assert_int_eq(proc_normalize(&raw, &o, &err), CM_OK);
    ck_assert(o.is_handshake);
    raw.vendor = (char *)"dexcom";
    ck_assert_int_eq(proc_normalize(&raw, &o, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "unsupported_vendor");
    ck_assert(!o.is_handshake);
    raw.vendor = NULL;
    ck_assert_int_eq(proc_normalize(&raw, &o, &err), CM_INVALID);
    ck_assert_int_eq(proc_normalize(NULL, &o, &err), CM_INVALID);
    proc_out_fini(&o);
}
END_TEST

START_TEST(test_notify_only_vendors)
{
    static const char *const notify[] = { "whoop", "oura", "polar", "fitbit", "google_health",
                                          "withings", "strava" };
    static const char *const data[] = { "garmin", "terra", "app", "unknown", "" };

    for (size_t i = 0; i < CM_ARRAY_LEN(notify); i++) {
        ck_assert_msg(proc_vendor_is_notify_only(notify[i]), "%s", notify[i]);
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(data); i++) {
        ck_assert_msg(!proc_vendor_is_notify_only(data[i]), "%s", data[i]);
    }
    ck_assert(!proc_vendor_is_notify_only(NULL));
}
END_TEST

START_TEST(test_failed_normalize_leaves_output_empty)
{
    struct proc_out o;
    struct cm_err err;
    /* The first summary is valid, the second is not: nothing of the record may leak out. */
    const char *body = "{\"epochs\":[{\"userId\":\"u\",\"summaryId\":\"a\",\"startTimeInSeconds\":"
                       "1795156200,\"durationInSeconds\":900,\"steps\":10},{\"userId\":\"u\","
                       "\"summaryId\":\"b\",\"startTimeInSeconds\":1795157100,\"steps\":-3}]}";
    struct cm_raw_webhook raw = proc_test_raw("garmin", body, strlen(body));

    proc_out_init(&o);
    ck_assert_int_eq(proc_normalize(&raw, &o, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "out_of_range: steps");
    ck_assert_uint_eq(o.n_samples, 0);
    proc_out_fini(&o);
}
END_TEST

Suite *proc_norm_suite(void)
{
    Suite *s = suite_create("proc_norm");
    TCase *tc;

    tc = tcase_create("event_id");
    tcase_add_test(tc, test_event_id_matches_reference_vector);
    tcase_add_test(tc, test_event_id_changes_with_every_input);
    suite_add_tcase(s, tc);

    tc = tcase_create("samples");
    tcase_add_test(tc, test_add_sample_fills_unit_loinc_and_id);
    tcase_add_test(tc, test_add_sample_scores_are_namespaced_per_vendor);
    tcase_add_test(tc, test_add_sample_rejects_out_of_range);
    tcase_add_test(tc, test_out_grows_and_resets);
    suite_add_tcase(s, tc);

    tc = tcase_create("time");
    tcase_add_test(tc, test_parse_time_accepts_rfc3339_forms);
    tcase_add_test(tc, test_parse_time_rejects_garbage);
    tcase_add_test(tc, test_format_time_and_dates);
    suite_add_tcase(s, tc);

    tc = tcase_create("dispatch");
    tcase_add_test(tc, test_dispatch_by_vendor);
    tcase_add_test(tc, test_notify_only_vendors);
    tcase_add_test(tc, test_failed_normalize_leaves_output_empty);
    suite_add_tcase(s, tc);
    return s;
}
