/* pers_pg without a server: byte-exact binary COPY encoding, the timestamp conversion, and the
 * SQLSTATE classification. */
#include <string.h>

#include "pers_pg.h"
#include "persister_suites.h"

#define PG0 INT64_C(946684800000000) /* 2000-01-01T00:00:00Z in Unix microseconds */

static struct cm_biometric_event known_event(void)
{
    struct cm_biometric_event e;

    memset(&e, 0, sizeof(e));
    e.event_id = (char *)"ev1";
    e.user_id = (char *)"u1";
    e.vendor = (char *)"oura";
    e.metric = (char *)"heart_rate";
    e.value = 61.5;
    e.unit = (char *)"/min";
    e.loinc = (char *)"8867-4";
    e.start_time_us = PG0 + 1;
    e.end_time_us = PG0 + 256;
    e.has_utc_offset = true;
    e.utc_offset_seconds = -3600;
    e.source_record_id = (char *)"s";
    e.raw_event_id = (char *)"r";
    e.ingested_at_us = PG0 - 1;
    e.received_at_us = PG0;
    e.deleted = true;
    return e;
}

START_TEST(test_copy_header_and_trailer)
{
    static const uint8_t want_head[] = { 'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0,
                                         0,   0,   0,   0,   0,   0,   0,    0 };
    struct cm_buf b;

    cm_buf_init(&b, 0);
    pers_copy_begin(&b);
    ck_assert_uint_eq(b.len, sizeof(want_head));
    ck_assert_mem_eq(b.data, want_head, sizeof(want_head));
    cm_buf_reset(&b);
    pers_copy_end(&b);
    ck_assert_uint_eq(b.len, 2);
    ck_assert_mem_eq(b.data, "\xff\xff", 2);
    cm_buf_fini(&b);
}
END_TEST

START_TEST(test_copy_row_known_bytes)
{
    static const uint8_t want[] = {
        0x00, 0x0f,                                                 /* 15 fields */
        0, 0, 0, 3, 'e', 'v', '1',                                  /* event_id */
        0, 0, 0, 2, 'u', '1',                                       /* user_id */
        0, 0, 0, 4, 'o', 'u', 'r', 'a',                             /* vendor */
        0, 0, 0, 10, 'h', 'e', 'a', 'r', 't', '_', 'r', 'a', 't', 'e', /* metric */
        0, 0, 0, 8, 0x40, 0x4e, 0xc0, 0, 0, 0, 0, 0,                /* value 61.5 */
        0, 0, 0, 4, '/', 'm', 'i', 'n',                             /* unit */
        0, 0, 0, 6, '8', '8', '6', '7', '-', '4',                   /* loinc */
        0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,                         /* start_time */
        0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 0,                         /* end_time */
        0, 0, 0, 4, 0xff, 0xff, 0xf1, 0xf0,                         /* utc_offset -3600 */
        0, 0, 0, 1, 's',                                            /* source_record_id */
        0, 0, 0, 1, 'r',                                            /* raw_event_id */
        0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* ingested_at -1 */
        0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0,                         /* received_at 0 */
        0, 0, 0, 1, 1,                                              /* deleted */
    };
    struct cm_biometric_event e = known_event();
    struct cm_buf b;

    cm_buf_init(&b, 0);
    pers_copy_row(&b, &e);
    ck_assert_uint_eq(b.len, sizeof(want));
    ck_assert_mem_eq(b.data, want, sizeof(want));
    cm_buf_fini(&b);
}
END_TEST

START_TEST(test_copy_row_nulls)
{
    static const uint8_t null_len[] = { 0xff, 0xff, 0xff, 0xff };
    struct cm_biometric_event e = known_event();
    struct cm_buf full;
    struct cm_buf b;
    size_t loinc_at = 2 + 7 + 6 + 8 + 14 + 12 + 8; /* offset of the loinc field */

    e.loinc = NULL;
    e.has_utc_offset = false;
    e.deleted = false;
    cm_buf_init(&b, 0);
    cm_buf_init(&full, 0);
    pers_copy_row(&b, &e);
    e = known_event();
    pers_copy_row(&full, &e);
    /* loinc "8867-4" (4 + 6 bytes) becomes -1, the offset (4 + 4) becomes -1. */
    ck_assert_uint_eq(b.len, full.len - 6 - 4);
    ck_assert_mem_eq(b.data + loinc_at, null_len, 4);
    ck_assert_mem_eq(b.data + loinc_at + 4 + 24, null_len, 4);
    ck_assert_uint_eq(b.data[b.len - 1], 0);
    cm_buf_fini(&b);
    cm_buf_fini(&full);
}
END_TEST

START_TEST(test_copy_row_float_bits)
{
    struct cm_biometric_event e = known_event();
    struct cm_buf b;
    size_t value_at = 2 + 7 + 6 + 8 + 14 + 4;

    e.value = -2.0; /* 0xC000000000000000 */
    cm_buf_init(&b, 0);
    pers_copy_row(&b, &e);
    ck_assert_mem_eq(b.data + value_at, "\xc0\x00\x00\x00\x00\x00\x00\x00", 8);
    cm_buf_fini(&b);
}
END_TEST

START_TEST(test_timestamp_conversion)
{
    ck_assert_int_eq(pers_pg_timestamp(PG0), 0);
    ck_assert_int_eq(pers_pg_timestamp(0), -PG0);
    ck_assert_int_eq(pers_pg_timestamp(INT64_C(1764162000000000)), INT64_C(1764162000000000) - PG0);
    /* Would overflow or land on -infinity (INT64_MIN): must become an out-of-range value. */
    ck_assert_int_eq(pers_pg_timestamp(INT64_MIN), INT64_MIN + 1);
    ck_assert_int_eq(pers_pg_timestamp(INT64_MIN + PG0), INT64_MIN + 1);
    ck_assert_int_eq(pers_pg_timestamp(INT64_MIN + PG0 + 1), INT64_MIN + 1);
    ck_assert_int_eq(pers_pg_timestamp(INT64_MAX), INT64_MAX - PG0);
}
END_TEST

START_TEST(test_classify_sqlstate)
{
    char cls[3];

    ck_assert_int_eq(pers_pg_classify("22021"), CM_INVALID);
    ck_assert_int_eq(pers_pg_classify("23502"), CM_INVALID);
    ck_assert_int_eq(pers_pg_classify("22008"), CM_INVALID);
    ck_assert_int_eq(pers_pg_classify("08006"), CM_RETRY);
    ck_assert_int_eq(pers_pg_classify("57P01"), CM_RETRY);
    ck_assert_int_eq(pers_pg_classify("40P01"), CM_RETRY);
    ck_assert_int_eq(pers_pg_classify("53300"), CM_RETRY);
    ck_assert_int_eq(pers_pg_classify("42P01"), CM_RETRY);
    ck_assert_int_eq(pers_pg_classify("42601"), CM_FATAL);
    ck_assert_int_eq(pers_pg_classify("0A000"), CM_FATAL); /* feature not supported */
    ck_assert_int_eq(pers_pg_classify(NULL), CM_RETRY);
    ck_assert_int_eq(pers_pg_classify(""), CM_RETRY);
    ck_assert_str_eq(pers_pg_error_class("23505", cls), "23");
    ck_assert_str_eq(pers_pg_error_class(NULL, cls), "connection");
    ck_assert_str_eq(pers_pg_error_class("", cls), "connection");
}
END_TEST

START_TEST(test_store_without_server_is_retry)
{
    struct pers_pg *pg =
        pers_pg_new("postgresql://auren:auren@127.0.0.1:1/auren?connect_timeout=2");
    struct cm_biometric_event e = known_event();
    const struct cm_biometric_event *ev[1] = { &e };
    struct pers_pg_outcome out;
    struct cm_err err = {{0}};

    ck_assert_int_eq(pers_pg_store(pg, ev, 1, NULL, &out, &err), CM_RETRY);
    ck_assert(!pers_pg_connected(pg));
    ck_assert_str_eq(out.sqlstate, "");
    ck_assert_str_eq(out.step, "connect");
    /* The error names no credentials. */
    ck_assert_ptr_null(strstr(err.msg, "auren:auren"));
    pers_pg_free(pg);
    pers_pg_free(NULL);
}
END_TEST

Suite *pers_pg_suite(void)
{
    Suite *s = suite_create("pers_pg");
    TCase *enc = tcase_create("copy_encoding");
    TCase *cls = tcase_create("errors");

    tcase_add_test(enc, test_copy_header_and_trailer);
    tcase_add_test(enc, test_copy_row_known_bytes);
    tcase_add_test(enc, test_copy_row_nulls);
    tcase_add_test(enc, test_copy_row_float_bits);
    tcase_add_test(enc, test_timestamp_conversion);
    tcase_add_test(cls, test_classify_sqlstate);
    tcase_add_test(cls, test_store_without_server_is_retry);
    suite_add_tcase(s, enc);
    suite_add_tcase(s, cls);
    return s;
}
