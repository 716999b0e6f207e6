/* Unit tests of the Avro record codec (common/src/records.c, common/src/avro_canonical.c):
 * round trips of every record type with and without optional fields, hostile input (every
 * truncation, bad magic, unknown fingerprint, negative lengths, oversized counts, bad unions,
 * mutated bytes), encoder input checks, Parsing Canonical Form and CRC-64-AVRO against the
 * specification's test vectors, and the embedded schemas against the files in schemas/. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/common.h"
#include "cm/records.h"
#include "../check_run.h"

#ifndef CM_TEST_SCHEMA_DIR
#error "CM_TEST_SCHEMA_DIR must point at schemas/"
#endif

static struct cm_header sample_headers[] = {
    { "content-type", "application/json" },
    { "user-agent", "Whoop-Webhook/1.0 \xc3\xa9t\xc3\xa9" }, /* non-ASCII UTF-8 */
    { "x-empty", "" },
};

static const uint8_t sample_body[] = { '{', '"', 'a', '"', ':', 0x00, 0xff, 0x80, '}' };

static struct cm_raw_webhook full_raw(void)
{
    struct cm_raw_webhook r = {
        .event_id = "0123456789abcdef0123456789abcdef",
        .vendor = "whoop",
        .kind = CM_RAW_API_RECORD,
        .received_at_us = 1764160000123456,
        .method = "POST",
        .path = "/webhooks/whoop",
        .query = "a=1&b=2",
        .content_type = "application/json",
        .headers = sample_headers,
        .n_headers = CM_ARRAY_LEN(sample_headers),
        .body = (uint8_t *)sample_body,
        .body_len = sizeof(sample_body),
        .vendor_user_id = "u-42",
        .record_type = "oura.daily_readiness",
    };
    return r;
}

static struct cm_raw_webhook minimal_raw(void)
{
    struct cm_raw_webhook r = {
        .event_id = "e",
        .vendor = "app",
        .kind = CM_RAW_WEBHOOK,
        .received_at_us = 0,
        .method = "POST",
        .path = "",
    };
    return r;
}

static struct cm_biometric_event sample_event(void)
{
    struct cm_biometric_event e = {
        .event_id = "fedcba9876543210fedcba9876543210",
        .user_id = "user-1",
        .vendor = "oura",
        .metric = "heart_rate",
        .value = 61.25,
        .unit = "/min",
        .loinc = "8867-4",
        .start_time_us = -1, /* before the epoch: negative zig-zag path */
        .end_time_us = INT64_MAX,
        .has_utc_offset = true,
        .utc_offset_seconds = -18000,
        .source_record_id = "rec-9",
        .raw_event_id = "0123456789abcdef0123456789abcdef",
        .ingested_at_us = INT64_MIN,
        .received_at_us = 1764160000000000,
        .deleted = true,
    };
    return e;
}

static struct cm_fetch_job sample_job(void)
{
    struct cm_fetch_job j = {
        .job_id = "job-1",
        .vendor = "polar",
        .vendor_user_id = "p-7",
        .user_id = NULL,
        .resource = "sleep",
        .event_type = "sleep.updated",
        .object_id = NULL,
        .url = "https://www.polaraccesslink.com/v3/x",
        .has_start = true,
        .start_time_us = 1700000000000000,
        .has_end = false,
        .end_time_us = 0,
        .raw_event_id = "raw-1",
        .attempt = INT32_MAX,
        .not_before_us = 1,
        .created_at_us = 2,
    };
    return j;
}

static struct cm_dead_letter sample_dlq(void)
{
    static const uint8_t key[] = "whoop:u-42";
    static const uint8_t value[] = { 0xc3, 0x01, 0x00, 0x11 };
    struct cm_dead_letter d = {
        .stage = "processor",
        .reason = "malformed_json",
        .detail = "field=body",
        .source_topic = "biometric.raw.v1",
        .source_partition = 3,
        .source_offset = 1234567890123,
        .key = (uint8_t *)key,
        .key_len = sizeof(key) - 1,
        .value = (uint8_t *)value,
        .value_len = sizeof(value),
        .failed_at_us = 1764160000999999,
        .attempts = INT32_MIN,
    };
    return d;
}

static void assert_opt_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        ck_assert_ptr_eq(a, b);
    } else {
        ck_assert_str_eq(a, b);
    }
}

static void assert_bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    ck_assert_uint_eq(alen, blen);
    if (alen > 0) {
        ck_assert_int_eq(memcmp(a, b, alen), 0);
    }
}

static void assert_raw_eq(const struct cm_raw_webhook *a, const struct cm_raw_webhook *b)
{
    ck_assert_str_eq(a->event_id, b->event_id);
    ck_assert_str_eq(a->vendor, b->vendor);
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert_int_eq(a->received_at_us, b->received_at_us);
    ck_assert_str_eq(a->method, b->method);
    ck_assert_str_eq(a->path, b->path);
    assert_opt_str_eq(a->query, b->query);
    assert_opt_str_eq(a->content_type, b->content_type);
    ck_assert_uint_eq(a->n_headers, b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        ck_assert_str_eq(a->headers[i].name, b->headers[i].name);
        ck_assert_str_eq(a->headers[i].value, b->headers[i].value);
    }
    assert_bytes_eq(a->body, a->body_len, b->body, b->body_len);
    assert_opt_str_eq(a->vendor_user_id, b->vendor_user_id);
    assert_opt_str_eq(a->record_type, b->record_type);
}

static void assert_event_eq(const struct cm_biometric_event *a, const struct cm_biometric_event *b)
{
    ck_assert_str_eq(a->event_id, b->event_id);
    ck_assert_str_eq(a->user_id, b->user_id);
    ck_assert_str_eq(a->vendor, b->vendor);
    ck_assert_str_eq(a->metric, b->metric);
    /* Comparing the bytes is the point: the round trip keeps -0.0 and NaN payloads. */
    /* NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c) */
    ck_assert_int_eq(memcmp(&a->value, &b->value, sizeof(a->value)), 0); /* bit-exact */
    ck_assert_str_eq(a->unit, b->unit);
    assert_opt_str_eq(a->loinc, b->loinc);
    ck_assert_int_eq(a->start_time_us, b->start_time_us);
    ck_assert_int_eq(a->end_time_us, b->end_time_us);
    ck_assert_int_eq(a->has_utc_offset, b->has_utc_offset);
    if (a->has_utc_offset) {
        ck_assert_int_eq(a->utc_offset_seconds, b->utc_offset_seconds);
    }
    ck_assert_str_eq(a->source_record_id, b->source_record_id);
    ck_assert_str_eq(a->raw_event_id, b->raw_event_id);
    ck_assert_int_eq(a->ingested_at_us, b->ingested_at_us);
    ck_assert_int_eq(a->received_at_us, b->received_at_us);
    ck_assert_int_eq(a->deleted, b->deleted);
}

static void assert_job_eq(const struct cm_fetch_job *a, const struct cm_fetch_job *b)
{
    ck_assert_str_eq(a->job_id, b->job_id);
    ck_assert_str_eq(a->vendor, b->vendor);
    ck_assert_str_eq(a->vendor_user_id, b->vendor_user_id);
    assert_opt_str_eq(a->user_id, b->user_id);
    ck_assert_str_eq(a->resource, b->resource);
    assert_opt_str_eq(a->event_type, b->event_type);
    assert_opt_str_eq(a->object_id, b->object_id);
    assert_opt_str_eq(a->url, b->url);
    ck_assert_int_eq(a->has_start, b->has_start);
    if (a->has_start) {
        ck_assert_int_eq(a->start_time_us, b->start_time_us);
    }
    ck_assert_int_eq(a->has_end, b->has_end);
    if (a->has_end) {
        ck_assert_int_eq(a->end_time_us, b->end_time_us);
    }
    ck_assert_str_eq(a->raw_event_id, b->raw_event_id);
    ck_assert_int_eq(a->attempt, b->attempt);
    ck_assert_int_eq(a->not_before_us, b->not_before_us);
    ck_assert_int_eq(a->created_at_us, b->created_at_us);
}

static void assert_dlq_eq(const struct cm_dead_letter *a, const struct cm_dead_letter *b)
{
    ck_assert_str_eq(a->stage, b->stage);
    ck_assert_str_eq(a->reason, b->reason);
    ck_assert_str_eq(a->detail, b->detail);
    ck_assert_str_eq(a->source_topic, b->source_topic);
    ck_assert_int_eq(a->source_partition, b->source_partition);
    ck_assert_int_eq(a->source_offset, b->source_offset);
    ck_assert_int_eq(a->key == NULL, b->key == NULL);
    if (a->key != NULL) {
        assert_bytes_eq(a->key, a->key_len, b->key, b->key_len);
    }
    assert_bytes_eq(a->value, a->value_len, b->value, b->value_len);
    ck_assert_int_eq(a->failed_at_us, b->failed_at_us);
    ck_assert_int_eq(a->attempts, b->attempts);
}

static void encode_raw(const struct cm_raw_webhook *r, struct cm_buf *out)
{
    struct cm_err err;

    cm_buf_init(out, 0);
    ck_assert_int_eq(cm_raw_webhook_encode(r, out, &err), CM_OK);
}

/* ---- round trips ---- */

START_TEST(test_raw_webhook_roundtrip_full)
{
    struct cm_raw_webhook in = full_raw();
    struct cm_raw_webhook out;
    struct cm_buf b;
    struct cm_err err;

    encode_raw(&in, &b);
    ck_assert_int_eq(cm_raw_webhook_decode(b.data, b.len, &out, &err), CM_OK);
    assert_raw_eq(&in, &out);
    ck_assert_uint_eq(out.body[out.body_len], 0); /* decoded bytes are NUL-terminated */
    cm_raw_webhook_fini(&out);
    ck_assert_ptr_null(out.event_id);
    cm_raw_webhook_fini(&out); /* twice is harmless */
    cm_raw_webhook_fini(NULL);
    cm_buf_fini(&b);
}
END_TEST

START_TEST(test_raw_webhook_roundtrip_minimal)
{
    struct cm_raw_webhook in = minimal_raw();
    struct cm_raw_webhook out;
    struct cm_buf b;
    struct cm_err err;

    encode_raw(&in, &b);
    /* header + 11 fields; the optional ones are one null-branch byte each */
    ck_assert_int_eq(cm_raw_webhook_decode(b.data, b.len, &out, &err), CM_OK);
    assert_raw_eq(&in, &out);
    ck_assert_ptr_null(out.query);
    ck_assert_ptr_null(out.content_type);
    ck_assert_ptr_null(out.vendor_user_id);
    ck_assert_ptr_null(out.record_type);
    ck_assert_ptr_null(out.headers);
    ck_assert_uint_eq(out.n_headers, 0);
    ck_assert_uint_eq(out.body_len, 0);
    cm_raw_webhook_fini(&out);
    cm_buf_fini(&b);
}
END_TEST

START_TEST(test_raw_webhook_roundtrip_large_body)
{
    struct cm_raw_webhook in = full_raw();
    struct cm_raw_webhook out;
    struct cm_buf b;
    struct cm_err err;
    size_t n = 4u << 20;
    uint8_t *body = malloc(n);

    ck_assert_ptr_nonnull(body);
    for (size_t i = 0; i < n; i++) {
        body[i] = (uint8_t)(i * 131u + (i >> 9));
    }
    in.body = body;
    in.body_len = n;
    encode_raw(&in, &b);
    ck_assert_uint_gt(b.len, n);
    ck_assert_int_eq(cm_raw_webhook_decode(b.data, b.len, &out, &err), CM_OK);
    assert_raw_eq(&in, &out);
    cm_raw_webhook_fini(&out);
    cm_buf_fini(&b);
    free(body);
}
END_TEST

START_TEST(test_biometric_event_roundtrip)
{
    struct cm_biometric_event in = sample_event();
    struct cm_biometric_event out;
    struct cm_buf b;
    struct cm_err err;

    for (int variant = 0; variant < 3; variant++) {
        if (variant == 1) {
            in.loinc = NULL;
            in.has_utc_offset = false;
            in.deleted = false;
            in.value = -0.0;
        } else if (variant == 2) {
            in.value = INFINITY;
            in.has_utc_offset = true;
            in.utc_offset_seconds = INT32_MIN;
        }
        cm_buf_init(&b, 0);
        ck_assert_int_eq(cm_biometric_event_encode(&in, &b, &err), CM_OK);
        ck_assert_int_eq(cm_biometric_event_decode(b.data, b.len, &out, &err), CM_OK);
        assert_event_eq(&in, &out);
        cm_biometric_event_fini(&out);
        cm_buf_fini(&b);
    }
}
END_TEST

START_TEST(test_fetch_job_roundtrip)
{
    struct cm_fetch_job in = sample_job();
    struct cm_fetch_job out;
    struct cm_buf b;
    struct cm_err err;

    for (int variant = 0; variant < 2; variant++) {
        if (variant == 1) {
            in.user_id = "user-1";
            in.object_id = "obj";
            in.event_type = NULL;
            in.url = NULL;
            in.has_start = false;
            in.has_end = true;
            in.end_time_us = -5;
            in.attempt = 0;
        }
        cm_buf_init(&b, 0);
        ck_assert_int_eq(cm_fetch_job_encode(&in, &b, &err), CM_OK);
        ck_assert_int_eq(cm_fetch_job_decode(b.data, b.len, &out, &err), CM_OK);
        assert_job_eq(&in, &out);
        cm_fetch_job_fini(&out);
        cm_buf_fini(&b);
    }
}
END_TEST

START_TEST(test_dead_letter_roundtrip)
{
    struct cm_dead_letter in = sample_dlq();
    struct cm_dead_letter out;
    struct cm_buf b;
    struct cm_err err;
    static const uint8_t empty[1];

    for (int variant = 0; variant < 3; variant++) {
        if (variant == 1) {
            in.key = NULL; /* null key */
            in.key_len = 0;
            in.value_len = 0;
        } else if (variant == 2) {
            in.key = (uint8_t *)empty; /* present but empty: not the same as null */
            in.key_len = 0;
        }
        cm_buf_init(&b, 0);
        ck_assert_int_eq(cm_dead_letter_encode(&in, &b, &err), CM_OK);
        ck_assert_int_eq(cm_dead_letter_decode(b.data, b.len, &out, &err), CM_OK);
        assert_dlq_eq(&in, &out);
        cm_dead_letter_fini(&out);
        cm_buf_fini(&b);
    }
}
END_TEST

START_TEST(test_encode_appends_single_object_header)
{
    struct cm_biometric_event in = sample_event();
    struct cm_buf b;
    struct cm_err err;
    uint64_t fp = cm_records_fingerprint(CM_REC_BIOMETRIC_EVENT);
    enum cm_record_type t;

    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_buf_append(&b, "xy", 2), CM_OK); /* encoders append */
    ck_assert_int_eq(cm_biometric_event_encode(&in, &b, &err), CM_OK);
    ck_assert_int_eq(memcmp(b.data, "xy", 2), 0);
    ck_assert_uint_eq(b.data[2], 0xc3);
    ck_assert_uint_eq(b.data[3], 0x01);
    for (int i = 0; i < 8; i++) {
        ck_assert_uint_eq(b.data[4 + i], (uint8_t)(fp >> (8 * i)));
    }
    ck_assert_int_eq(cm_records_peek_type(b.data + 2, b.len - 2, &t, &err), CM_OK);
    ck_assert_int_eq(t, CM_REC_BIOMETRIC_EVENT);
    cm_buf_fini(&b);
}
END_TEST

/* ---- hostile input ---- */

/* Every proper prefix of a valid record must be rejected cleanly. */
static void check_all_prefixes(const struct cm_buf *b, enum cm_record_type t)
{
    struct cm_err err;

    for (size_t n = 0; n < b->len; n++) {
        uint8_t *copy = malloc(n > 0 ? n : 1); /* exact size, so ASan sees any over-read */
        memcpy(copy, b->data, n);
        enum cm_rc rc = CM_OK;
        switch (t) {
        case CM_REC_RAW_WEBHOOK: {
            struct cm_raw_webhook r;
            rc = cm_raw_webhook_decode(copy, n, &r, &err);
            ck_assert_ptr_null(r.event_id);
            break;
        }
        case CM_REC_BIOMETRIC_EVENT: {
            struct cm_biometric_event e;
            rc = cm_biometric_event_decode(copy, n, &e, &err);
            ck_assert_ptr_null(e.event_id);
            break;
        }
        case CM_REC_FETCH_JOB: {
            struct cm_fetch_job j;
            rc = cm_fetch_job_decode(copy, n, &j, &err);
            ck_assert_ptr_null(j.job_id);
            break;
        }
        case CM_REC_DEAD_LETTER: {
            struct cm_dead_letter d;
            rc = cm_dead_letter_decode(copy, n, &d, &err);
            ck_assert_ptr_null(d.stage);
            break;
        }
        }
        ck_assert_msg(rc == CM_INVALID, "prefix of %zu/%zu bytes accepted", n, b->len);
        ck_assert_uint_gt(strlen(err.msg), 0);
        free(copy);
    }
}

START_TEST(test_truncated_input_rejected)
{
    struct cm_raw_webhook r = full_raw();
    struct cm_biometric_event e = sample_event();
    struct cm_fetch_job j = sample_job();
    struct cm_dead_letter d = sample_dlq();
    struct cm_buf b;
    struct cm_err err;

    encode_raw(&r, &b);
    check_all_prefixes(&b, CM_REC_RAW_WEBHOOK);
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_biometric_event_encode(&e, &b, &err), CM_OK);
    check_all_prefixes(&b, CM_REC_BIOMETRIC_EVENT);
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_fetch_job_encode(&j, &b, &err), CM_OK);
    check_all_prefixes(&b, CM_REC_FETCH_JOB);
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_dead_letter_encode(&d, &b, &err), CM_OK);
    check_all_prefixes(&b, CM_REC_DEAD_LETTER);
    cm_buf_fini(&b);
}
END_TEST

START_TEST(test_bad_magic_and_fingerprint_rejected)
{
    struct cm_biometric_event e = sample_event();
    struct cm_biometric_event out;
    struct cm_raw_webhook raw;
    struct cm_buf b;
    struct cm_err err;
    enum cm_record_type t;

    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_biometric_event_encode(&e, &b, &err), CM_OK);

    b.data[0] = 0xc2;
    ck_assert_int_eq(cm_biometric_event_decode(b.data, b.len, &out, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "magic"));
    b.data[0] = 0xc3;
    b.data[1] = 0x02;
    ck_assert_int_eq(cm_biometric_event_decode(b.data, b.len, &out, &err), CM_INVALID);
    b.data[1] = 0x01;

    b.data[9] ^= 0x40; /* flip one fingerprint bit */
    ck_assert_int_eq(cm_biometric_event_decode(b.data, b.len, &out, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "fingerprint"));
    ck_assert_int_eq(cm_records_peek_type(b.data, b.len, &t, &err), CM_INVALID);
    b.data[9] ^= 0x40;

    /* A valid record of another type is refused by name. */
    ck_assert_int_eq(cm_raw_webhook_decode(b.data, b.len, &raw, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "BiometricEvent"));
    ck_assert_ptr_null(raw.event_id);

    /* Trailing garbage after the datum. */
    ck_assert_int_eq(cm_buf_append(&b, "\0", 1), CM_OK);
    ck_assert_int_eq(cm_biometric_event_decode(b.data, b.len, &out, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "trailing"));

    ck_assert_int_eq(cm_biometric_event_decode(NULL, 0, &out, &err), CM_INVALID);
    cm_buf_fini(&b);
}
END_TEST

/* Builds header + hand-written datum bytes for a DeadLetter and decodes it. */
static enum cm_rc decode_dlq_datum(const uint8_t *datum, size_t n, struct cm_err *err)
{
    struct cm_buf b;
    struct cm_dead_letter d;
    uint64_t fp = cm_records_fingerprint(CM_REC_DEAD_LETTER);
    uint8_t hdr[10] = { 0xc3, 0x01 };

    for (int i = 0; i < 8; i++) {
        hdr[2 + i] = (uint8_t)(fp >> (8 * i));
    }
    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_buf_append(&b, hdr, sizeof(hdr)), CM_OK);
    ck_assert_int_eq(cm_buf_append(&b, datum, n), CM_OK);
    enum cm_rc rc = cm_dead_letter_decode(b.data, b.len, &d, err);
    cm_dead_letter_fini(&d);
    cm_buf_fini(&b);
    return rc;
}

START_TEST(test_hostile_datums_rejected)
{
    struct cm_err err;
    /* stage="a" reason="b" detail="c" topic="t" partition=1 offset=2 key=null value="" failed=3
     * attempts=1: the valid baseline the mutations below start from. */
    static const uint8_t ok[] = { 2, 'a', 2, 'b', 2, 'c', 2, 't', 2, 4, 0, 0, 6, 2 };
    static const uint8_t neg_len[] = { 1, 'a' };                  /* length -1 */
    static const uint8_t huge_len[] = { 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0x01 };                    /* INT64_MAX */
    static const uint8_t overlong[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0x01 };              /* 11-byte varint */
    static const uint8_t bad_union[] = { 2, 'a', 2, 'b', 2, 'c', 2, 't', 2, 4, 4, 0, 6, 2 };
    static const uint8_t big_int[] = { 2, 'a', 2, 'b', 2, 'c', 2, 't', 0x80, 0x80, 0x80, 0x80,
                                       0x10, 4, 0, 0, 6, 2 };      /* partition 2^31 */
    static const uint8_t nul_str[] = { 2, 0, 2, 'b', 2, 'c', 2, 't', 2, 4, 0, 0, 6, 2 };
    static const uint8_t bad_utf8[] = { 4, 0xc0, 0xaf, 2, 'b', 2, 'c', 2, 't', 2, 4, 0, 0, 6,
                                        2 };                       /* overlong '/' */

    ck_assert_int_eq(decode_dlq_datum(ok, sizeof(ok), &err), CM_OK);
    ck_assert_int_eq(decode_dlq_datum(neg_len, sizeof(neg_len), &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "negative length at field stage"));
    ck_assert_int_eq(decode_dlq_datum(huge_len, sizeof(huge_len), &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    ck_assert_int_eq(decode_dlq_datum(overlong, sizeof(overlong), &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "varint"));
    ck_assert_int_eq(decode_dlq_datum(bad_union, sizeof(bad_union), &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "union branch at field key"));
    ck_assert_int_eq(decode_dlq_datum(big_int, sizeof(big_int), &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "source_partition"));
    ck_assert_int_eq(decode_dlq_datum(nul_str, sizeof(nul_str), &err), CM_INVALID);
    ck_assert_int_eq(decode_dlq_datum(bad_utf8, sizeof(bad_utf8), &err), CM_INVALID);
}
END_TEST

/* RawWebhook with everything minimal up to the headers, then `tail` (headers, body, ...). */
static enum cm_rc decode_raw_with_tail(const uint8_t *tail, size_t n, struct cm_raw_webhook *r,
                                       struct cm_err *err)
{
    struct cm_raw_webhook in = minimal_raw();
    struct cm_buf b;

    encode_raw(&in, &b);
    /* The minimal encoding ends with headers(0) body(0) vendor_user_id(0) record_type(0). */
    b.len -= 4;
    ck_assert_int_eq(cm_buf_append(&b, tail, n), CM_OK);
    enum cm_rc rc = cm_raw_webhook_decode(b.data, b.len, r, err);
    cm_buf_fini(&b);
    return rc;
}

START_TEST(test_header_array_blocks)
{
    struct cm_raw_webhook r;
    struct cm_err err;
    /* Two blocks: a negative count (-1, with byte size 4) and a positive one, then the end. */
    static const uint8_t blocks[] = { 1, 8, 2, 'a', 2, 'b', 2, 2, 'c', 0, 0, 0, 0, 0 };
    static const uint8_t neg_min[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0x01, 0, 0, 0, 0 };        /* count INT64_MIN */
    static const uint8_t bad_size[] = { 1, 0x7f, 2, 'a', 2, 'b', 0, 0, 0, 0 };
    static const uint8_t too_many[] = { 0x80, 0x40, 0, 0, 0, 0 };  /* 4096 items, 4 bytes */
    static const uint8_t half_item[] = { 2, 2, 'a', 0xff };        /* value length runs off */

    ck_assert_int_eq(decode_raw_with_tail(blocks, sizeof(blocks), &r, &err), CM_OK);
    ck_assert_uint_eq(r.n_headers, 2);
    ck_assert_str_eq(r.headers[0].name, "a");
    ck_assert_str_eq(r.headers[0].value, "b");
    ck_assert_str_eq(r.headers[1].name, "c");
    ck_assert_str_eq(r.headers[1].value, "");
    cm_raw_webhook_fini(&r);

    ck_assert_int_eq(decode_raw_with_tail(neg_min, sizeof(neg_min), &r, &err), CM_INVALID);
    ck_assert_int_eq(decode_raw_with_tail(bad_size, sizeof(bad_size), &r, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "block size"));
    ck_assert_int_eq(decode_raw_with_tail(too_many, sizeof(too_many), &r, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "count too large"));
    ck_assert_int_eq(decode_raw_with_tail(half_item, sizeof(half_item), &r, &err), CM_INVALID);
    ck_assert_ptr_null(r.headers); /* the partial header was freed */
}
END_TEST

/* Deterministic mutations of valid records: decoding may succeed or fail, but never crash or
 * leak (run under ASan), and what decodes must survive another round trip unchanged. */
START_TEST(test_mutated_input_never_crashes)
{
    struct cm_raw_webhook in = full_raw();
    struct cm_buf b;
    struct cm_buf again;
    struct cm_err err;
    uint32_t seed = 12345;

    encode_raw(&in, &b);
    cm_buf_init(&again, 0);
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *copy = malloc(b.len);
        memcpy(copy, b.data, b.len);
        for (int k = 0; k < 1 + iter % 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = 10 + (seed >> 8) % (b.len - 10);
            seed = seed * 1103515245u + 12345u;
            copy[pos] = (uint8_t)(seed >> 16);
        }
        struct cm_raw_webhook r;
        if (cm_raw_webhook_decode(copy, b.len, &r, &err) == CM_OK) {
            cm_buf_reset(&again);
            ck_assert_int_eq(cm_raw_webhook_encode(&r, &again, &err), CM_OK);
            struct cm_raw_webhook r2;
            ck_assert_int_eq(cm_raw_webhook_decode(again.data, again.len, &r2, &err), CM_OK);
            assert_raw_eq(&r, &r2);
            cm_raw_webhook_fini(&r2);
            cm_raw_webhook_fini(&r);
        }
        free(copy);
    }
    cm_buf_fini(&again);
    cm_buf_fini(&b);
}
END_TEST

/* ---- encoder input checks ---- */

START_TEST(test_encode_rejects_bad_records)
{
    struct cm_raw_webhook r = full_raw();
    struct cm_header bad_hdr[] = { { "x-ok", "fine" }, { "x-bad", "\xff\xfe" } };
    struct cm_buf b;
    struct cm_err err;

    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_buf_append(&b, "keep", 4), CM_OK);

    r.vendor = NULL;
    ck_assert_int_eq(cm_raw_webhook_encode(&r, &b, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "vendor"));
    ck_assert_uint_eq(b.len, 4); /* buffer left as it was */

    r = full_raw();
    r.headers = bad_hdr;
    r.n_headers = 2;
    ck_assert_int_eq(cm_raw_webhook_encode(&r, &b, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "UTF-8"));
    ck_assert_ptr_null(strstr(err.msg, "\xff"));
    ck_assert_uint_eq(b.len, 4);

    r = full_raw();
    r.kind = (enum cm_raw_kind)7;
    ck_assert_int_eq(cm_raw_webhook_encode(&r, &b, &err), CM_INVALID);

    r = full_raw();
    r.body = NULL;
    ck_assert_int_eq(cm_raw_webhook_encode(&r, &b, &err), CM_INVALID);
    ck_assert_uint_eq(b.len, 4);
    cm_buf_fini(&b);

    /* A bounded buffer that cannot hold the record. */
    r = full_raw();
    cm_buf_init(&b, 32);
    ck_assert_int_eq(cm_raw_webhook_encode(&r, &b, &err), CM_INVALID);
    ck_assert_uint_eq(b.len, 0);
    cm_buf_fini(&b);
}
END_TEST

/* ---- canonical form and fingerprints ---- */

static void assert_canonical(const char *schema, const char *expected)
{
    struct cm_err err = { { 0 } };
    char *pcf = cm_avro_canonical_form(schema, &err);

    ck_assert_msg(pcf != NULL, "canonical form failed: %s", err.msg);
    ck_assert_str_eq(pcf, expected);
    free(pcf);
}

/* Java prints the fingerprint as a signed long; compare on that representation. */
static void assert_fingerprint(const char *schema, int64_t expected)
{
    struct cm_err err;
    char *pcf = cm_avro_canonical_form(schema, &err);

    ck_assert_ptr_nonnull(pcf);
    ck_assert_int_eq((int64_t)cm_avro_crc64(pcf, strlen(pcf)), expected);
    free(pcf);
}

START_TEST(test_canonical_form_spec_vectors)
{
    assert_canonical("\"int\"", "\"int\"");
    assert_canonical("{\"type\":\"int\"}", "\"int\"");
    assert_canonical("[ \"int\" , {\"type\":\"boolean\"} ]", "[\"int\",\"boolean\"]");
    assert_canonical("[  ]", "[]");
    assert_canonical("{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful\","
                     " \"aliases\":[\"foo\",\"bar\"]}",
                     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}");
    assert_canonical("{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
                     "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}");
    assert_canonical("{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\","
                     " \"namespace\":\"x.y\"}",
                     "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}");
    assert_canonical("{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\","
                     " \"default\":\"true\"}, {\"order\":\"descending\",\"name\":\"f2\","
                     "\"doc\":\"Hello\",\"type\":\"int\"}], \"type\":\"record\", \"name\":\"foo\"}",
                     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\","
                     "\"type\":\"boolean\"},{\"name\":\"f2\",\"type\":\"int\"}]}");
    assert_canonical("{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"d\","
                     " \"symbols\":[\"A1\", \"A2\"]}",
                     "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}");
    assert_canonical("{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"size\":32}",
                     "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}");
    assert_canonical("{\"type\":\"fixed\", \"name\":\"foo\", \"size\":\"015\"}", /* [INTEGERS] */
                     "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}");
    assert_canonical("{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
                     "{\"type\":\"array\",\"items\":\"null\"}");
    assert_canonical("{ \"values\":\"string\", \"type\":\"map\"}",
                     "{\"type\":\"map\",\"values\":\"string\"}");
    /* A record referring to itself, and logicalType stripped down to the primitive. */
    assert_canonical("{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\","
                     " \"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
                     "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\","
                     "\"type\":[\"null\",\"int\",\"long\",\"PigValue\"]}]}");
    assert_canonical("{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}", "\"long\"");
    /* A second use of a named type is its fullname, resolved in the enclosing namespace. */
    assert_canonical("{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n\",\"fields\":["
                     "{\"name\":\"a\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}},"
                     "{\"name\":\"b\",\"type\":\"E\"},{\"name\":\"c\",\"type\":{\"type\":\"n.E\"}}]}",
                     "{\"name\":\"n.R\",\"type\":\"record\",\"fields\":[{\"name\":\"a\",\"type\":"
                     "{\"name\":\"n.E\",\"type\":\"enum\",\"symbols\":[\"X\"]}},{\"name\":\"b\","
                     "\"type\":\"n.E\"},{\"name\":\"c\",\"type\":\"n.E\"}]}");
    /* [STRINGS]: escapes in the input are written as plain characters. */
    assert_canonical("{\"type\":\"enum\",\"name\":\"\\u0066oo\",\"symbols\":[\"\\u0041\"]}",
                     "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A\"]}");
}
END_TEST

START_TEST(test_canonical_form_rejects_bad_schemas)
{
    static const char *const bad[] = {
        "",
        "{",
        "42",
        "\"Undefined\"",
        "{\"type\":\"record\",\"name\":\"r\"}",
        "{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"a\"}]}",
        /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one JSON literal split over lines */
        "{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
        "{\"name\":\"a\",\"type\":\"int\"}]}",
        "[{\"type\":\"fixed\",\"name\":\"f\",\"size\":1},{\"type\":\"fixed\",\"name\":\"f\","
        "\"size\":1}]",
        "{\"type\":\"enum\",\"name\":\"1bad\",\"symbols\":[]}",
        "{\"type\":\"enum\",\"name\":\"e\",\"symbols\":[\"A\",\"A\"]}",
        "{\"type\":\"fixed\",\"name\":\"f\",\"size\":-1}",
        "{\"type\":\"fixed\",\"name\":\"int\",\"size\":1}",
        "{\"type\":\"array\"}",
        "{\"type\":\"int\",\"type\":\"long\"}",
    };
    struct cm_err err;

    for (size_t i = 0; i < CM_ARRAY_LEN(bad); i++) {
        err.msg[0] = 0;
        char *pcf = cm_avro_canonical_form(bad[i], &err);
        ck_assert_msg(pcf == NULL, "schema %zu accepted", i);
        ck_assert_uint_gt(strlen(err.msg), 0);
    }

    /* Nesting deeper than the limit is refused instead of recursing without bound. */
    char deep[256];
    memset(deep, '[', 100);
    memcpy(deep + 100, "\"int\"", 5);
    memset(deep + 105, ']', 100);
    deep[205] = 0;
    ck_assert_ptr_null(cm_avro_canonical_form(deep, &err));
}
END_TEST

START_TEST(test_crc64_avro_vectors)
{
    ck_assert_uint_eq(cm_avro_crc64("", 0), 0xc15d213aa4d7a795ULL); /* EMPTY */
    assert_fingerprint("\"null\"", 7195948357588979594LL);
    assert_fingerprint("\"int\"", 8247732601305521295LL);
    assert_fingerprint("\"string\"", -8142146995180207161LL);
    assert_fingerprint("[ \"int\" , {\"type\":\"boolean\"} ]", 5392556393470105090LL);
    assert_fingerprint("{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"x\"}",
                       -4824392279771201922LL);
    assert_fingerprint("{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\","
                       " \"symbols\":[\"A1\", \"A2\"]}",
                       -4448647247586288245LL);
    assert_fingerprint("{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\","
                       " \"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
                       -1759257747318642341LL);
}
END_TEST

/* ---- the embedded schemas ---- */

static const char *const schema_files[] = {
    [CM_REC_RAW_WEBHOOK] = "raw_webhook.v1.avsc",
    [CM_REC_BIOMETRIC_EVENT] = "biometric_event.v1.avsc",
    [CM_REC_FETCH_JOB] = "fetch_job.v1.avsc",
    [CM_REC_DEAD_LETTER] = "dead_letter.v1.avsc",
};

static char *read_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", CM_TEST_SCHEMA_DIR, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static void assert_docs(json_t *fields)
{
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        json_t *doc = json_object_get(f, "doc");
        ck_assert_msg(json_is_string(doc) && json_string_length(doc) > 0, "field %s has no doc",
                      json_string_value(json_object_get(f, "name")));
        json_t *items = json_object_get(json_object_get(f, "type"), "items");
        assert_docs(json_object_get(items, "fields"));
    }
}

START_TEST(test_embedded_schemas_match_files)
{
    cm_records_init();
    cm_records_init(); /* idempotent */
    for (size_t t = 0; t < CM_ARRAY_LEN(schema_files); t++) {
        char *file = read_file(schema_files[t]);
        ck_assert_str_eq(cm_records_schema_json((enum cm_record_type)t), file);

        json_t *root = json_loads(file, 0, NULL);
        ck_assert_ptr_nonnull(root);
        ck_assert_str_eq(json_string_value(json_object_get(root, "namespace")),
                         "io.auren.biometric");
        assert_docs(json_object_get(root, "fields"));
        json_decref(root);

        const char *pcf = cm_records_canonical_form((enum cm_record_type)t);
        ck_assert_ptr_null(strstr(pcf, "doc"));
        ck_assert_ptr_null(strstr(pcf, "logicalType"));
        ck_assert_uint_eq(cm_records_fingerprint((enum cm_record_type)t),
                          cm_avro_crc64(pcf, strlen(pcf)));
        for (size_t u = 0; u < t; u++) {
            ck_assert_uint_ne(cm_records_fingerprint((enum cm_record_type)t),
                              cm_records_fingerprint((enum cm_record_type)u));
        }
        free(file);
    }
}
END_TEST

/* The v1 schemas are released: a change to what a reader needs must be a new v2 file. These
 * values were cross-checked with python-avro and the specification's CRC in avro_interop.py. */
START_TEST(test_released_fingerprints_unchanged)
{
    ck_assert_uint_eq(cm_records_fingerprint(CM_REC_RAW_WEBHOOK), 0x59592094c4bfcd9aULL);
    ck_assert_uint_eq(cm_records_fingerprint(CM_REC_BIOMETRIC_EVENT), 0xfa09d106d5e2c6eeULL);
    ck_assert_uint_eq(cm_records_fingerprint(CM_REC_FETCH_JOB), 0xe5bd3f67693d1255ULL);
    ck_assert_uint_eq(cm_records_fingerprint(CM_REC_DEAD_LETTER), 0x9b4df2ce34d03439ULL);
}
END_TEST

static Suite *records_suite(void)
{
    Suite *s = suite_create("records");
    TCase *tc;

    tc = tcase_create("roundtrip");
    tcase_add_test(tc, test_raw_webhook_roundtrip_full);
    tcase_add_test(tc, test_raw_webhook_roundtrip_minimal);
    tcase_add_test(tc, test_raw_webhook_roundtrip_large_body);
    tcase_add_test(tc, test_biometric_event_roundtrip);
    tcase_add_test(tc, test_fetch_job_roundtrip);
    tcase_add_test(tc, test_dead_letter_roundtrip);
    tcase_add_test(tc, test_encode_appends_single_object_header);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_truncated_input_rejected);
    tcase_add_test(tc, test_bad_magic_and_fingerprint_rejected);
    tcase_add_test(tc, test_hostile_datums_rejected);
    tcase_add_test(tc, test_header_array_blocks);
    tcase_add_test(tc, test_mutated_input_never_crashes);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode_errors");
    tcase_add_test(tc, test_encode_rejects_bad_records);
    suite_add_tcase(s, tc);

    tc = tcase_create("canonical");
    tcase_add_test(tc, test_canonical_form_spec_vectors);
    tcase_add_test(tc, test_canonical_form_rejects_bad_schemas);
    tcase_add_test(tc, test_crc64_avro_vectors);
    suite_add_tcase(s, tc);

    tc = tcase_create("schemas");
    tcase_add_test(tc, test_embedded_schemas_match_files);
    tcase_add_test(tc, test_released_fingerprints_unchanged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(records_suite());
}
