/* Helper for tests/interop/avro_interop.py: the C side of the interoperability test.
 *
 *   avro_dump write DIR   writes, for each sample record, DIR/<sample>.bin (our single-object
 *                         encoding) and DIR/<sample>.json (the record's field values, taken from
 *                         the struct, not from the encoder), plus DIR/<type>.pcf and
 *                         DIR/<type>.fp (canonical form, fingerprint as 16 hex digits).
 *   avro_dump read TYPE FILE   decodes FILE with our decoder and prints the record as JSON.
 *
 * TYPE is raw_webhook, biometric_event, fetch_job or dead_letter. Bytes are hex in the JSON,
 * timestamps are integer microseconds, a null optional is JSON null. Sample data is synthetic. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/common.h"
#include "cm/records.h"

static const char *const type_names[] = {
    [CM_REC_RAW_WEBHOOK] = "raw_webhook",
    [CM_REC_BIOMETRIC_EVENT] = "biometric_event",
    [CM_REC_FETCH_JOB] = "fetch_job",
    [CM_REC_DEAD_LETTER] = "dead_letter",
};

static json_t *opt_str(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *hex(const uint8_t *p, size_t n)
{
    char *h = cm_xmalloc(2 * n + 1);
    cm_hex_encode(p, n, h);
    json_t *j = json_string(h);
    free(h);
    return j;
}

static json_t *raw_json(const struct cm_raw_webhook *r)
{
    json_t *hdrs = json_array();
    for (size_t i = 0; i < r->n_headers; i++) {
        json_array_append_new(hdrs, json_pack("{s:s,s:s}", "name", r->headers[i].name, "value",
                                              r->headers[i].value));
    }
    return json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "event_id", r->event_id,
                     "vendor", r->vendor, "kind",
                     r->kind == CM_RAW_WEBHOOK ? "webhook" : "api_record", "received_at",
                     (json_int_t)r->received_at_us, "method", r->method, "path", r->path, "query",
                     opt_str(r->query), "content_type", opt_str(r->content_type), "headers", hdrs,
                     "body", hex(r->body, r->body_len), "vendor_user_id",
                     opt_str(r->vendor_user_id), "record_type", opt_str(r->record_type));
}

static json_t *event_json(const struct cm_biometric_event *e)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:f,s:s,s:o,s:I,s:I,s:o,s:s,s:s,s:I,s:I,s:b}", "event_id",
                     e->event_id, "user_id", e->user_id, "vendor", e->vendor, "metric", e->metric,
                     "value", e->value, "unit", e->unit, "loinc", opt_str(e->loinc), "start_time",
                     (json_int_t)e->start_time_us, "end_time", (json_int_t)e->end_time_us,
                     "utc_offset_seconds",
                     e->has_utc_offset ? json_integer(e->utc_offset_seconds) : json_null(),
                     "source_record_id", e->source_record_id, "raw_event_id", e->raw_event_id,
                     "ingested_at", (json_int_t)e->ingested_at_us, "received_at",
                     (json_int_t)e->received_at_us, "deleted", (int)e->deleted);
}

static json_t *job_json(const struct cm_fetch_job *j)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:s,s:i,s:I,s:I}", "job_id",
                     j->job_id, "vendor", j->vendor, "vendor_user_id", j->vendor_user_id,
                     "user_id", opt_str(j->user_id), "resource", j->resource, "event_type",
                     opt_str(j->event_type), "object_id", opt_str(j->object_id), "url",
                     opt_str(j->url), "start_time",
                     j->has_start ? json_integer(j->start_time_us) : json_null(), "end_time",
                     j->has_end ? json_integer(j->end_time_us) : json_null(), "raw_event_id",
                     j->raw_event_id, "attempt", (int)j->attempt, "not_before",
                     (json_int_t)j->not_before_us, "created_at", (json_int_t)j->created_at_us);
}

static json_t *dlq_json(const struct cm_dead_letter *d)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:I,s:o,s:o,s:I,s:i}", "stage", d->stage, "reason",
                     d->reason, "detail", d->detail, "source_topic", d->source_topic,
                     "source_partition", (int)d->source_partition, "source_offset",
                     (json_int_t)d->source_offset, "key",
                     d->key != NULL ? hex(d->key, d->key_len) : json_null(), "value",
                     hex(d->value, d->value_len), "failed_at", (json_int_t)d->failed_at_us,
                     "attempts", (int)d->attempts);
}

static int write_file(const char *dir, const char *name, const char *ext, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n) {
        if (f != NULL) {
            fclose(f);
        }
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int write_sample(const char *dir, const char *name, const struct cm_buf *b, json_t *j)
{
    char *text = json_dumps(j, JSON_SORT_KEYS);
    int rc = text != NULL && write_file(dir, name, "bin", b->data, b->len) == 0 &&
                     write_file(dir, name, "json", text, strlen(text)) == 0
                 ? 0
                 : -1;
    free(text);
    json_decref(j);
    return rc;
}

static int write_samples(const char *dir)
{
    struct cm_header hdrs[] = {
        { "content-type", "application/json; charset=utf-8" },
        { "x-vendor-note", "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x92\x93" },
        { "x-empty", "" },
    };
    size_t big_len = 300000;
    uint8_t *big = cm_xmalloc(big_len);
    for (size_t i = 0; i < big_len; i++) {
        big[i] = (uint8_t)(i * 7u + (i >> 8));
    }
    static const uint8_t small[] = { 0x00, 0x7b, 0xff, 0x80, 0x0a };
    struct cm_raw_webhook raws[] = {
        { .event_id = "0123456789abcdef0123456789abcdef", .vendor = "whoop",
          .kind = CM_RAW_WEBHOOK, .received_at_us = 1764160000123456, .method = "POST",
          .path = "/webhooks/whoop", .query = "x=1", .content_type = "application/json",
          .headers = hdrs, .n_headers = CM_ARRAY_LEN(hdrs), .body = big, .body_len = big_len },
        { .event_id = "e2", .vendor = "oura", .kind = CM_RAW_API_RECORD, .received_at_us = -1,
          .method = "GET", .path = "", .body = (uint8_t *)small, .body_len = sizeof(small),
          .vendor_user_id = "ou-1", .record_type = "oura.daily_readiness" },
    };
    struct cm_biometric_event events[] = {
        { .event_id = "fedcba9876543210fedcba9876543210", .user_id = "user-1", .vendor = "oura",
          .metric = "heart_rate", .value = 61.25, .unit = "/min", .loinc = "8867-4",
          .start_time_us = 1764160000000000, .end_time_us = 1764160060000000,
          .has_utc_offset = true, .utc_offset_seconds = -18000, .source_record_id = "r1",
          .raw_event_id = "raw1", .ingested_at_us = 1764160061000000,
          .received_at_us = 1764160060500000, .deleted = false },
        { .event_id = "e", .user_id = "u", .vendor = "app", .metric = "score.whoop.recovery",
          .value = -1.0e-300, .unit = "%", .start_time_us = -62135596800000000,
          .end_time_us = 253402300799999999, .source_record_id = "", .raw_event_id = "",
          .ingested_at_us = 0, .received_at_us = 0, .deleted = true },
    };
    struct cm_fetch_job jobs[] = {
        { .job_id = "j1", .vendor = "polar", .vendor_user_id = "p1", .user_id = "user-1",
          .resource = "exercise", .event_type = "EXERCISE", .object_id = "obj-1",
          .url = "https://example.invalid/v3/exercises/1", .has_start = true,
          .start_time_us = 1764100000000000, .has_end = true, .end_time_us = 1764160000000000,
          .raw_event_id = "raw", .attempt = 3, .not_before_us = 1764160001000000,
          .created_at_us = 1764160000000001 },
        { .job_id = "j2", .vendor = "garmin", .vendor_user_id = "g", .resource = "dailies",
          .raw_event_id = "raw2", .attempt = 0, .not_before_us = 0, .created_at_us = 1 },
    };
    static const uint8_t key[] = { 'w', ':', 'u' };
    struct cm_dead_letter dlqs[] = {
        { .stage = "processor", .reason = "malformed_json", .detail = "field=data",
          .source_topic = "biometric.raw.v1", .source_partition = 7,
          .source_offset = 9007199254740993, .key = (uint8_t *)key, .key_len = sizeof(key),
          .value = (uint8_t *)small, .value_len = sizeof(small),
          .failed_at_us = 1764160000000000, .attempts = 5 },
        { .stage = "persister", .reason = "x", .detail = "", .source_topic = "t",
          .source_partition = -1, .source_offset = -2, .value = (uint8_t *)small, .value_len = 0,
          .failed_at_us = 0, .attempts = 0 },
    };
    struct cm_buf b;
    struct cm_err err;
    int rc = 0;
    char name[64];

    cm_buf_init(&b, 0);
    for (size_t i = 0; i < CM_ARRAY_LEN(raws) && rc == 0; i++) {
        cm_buf_reset(&b);
        snprintf(name, sizeof(name), "raw_webhook.%zu", i);
        rc = cm_raw_webhook_encode(&raws[i], &b, &err) == CM_OK
                 ? write_sample(dir, name, &b, raw_json(&raws[i]))
                 : -1;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(events) && rc == 0; i++) {
        cm_buf_reset(&b);
        snprintf(name, sizeof(name), "biometric_event.%zu", i);
        rc = cm_biometric_event_encode(&events[i], &b, &err) == CM_OK
                 ? write_sample(dir, name, &b, event_json(&events[i]))
                 : -1;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(jobs) && rc == 0; i++) {
        cm_buf_reset(&b);
        snprintf(name, sizeof(name), "fetch_job.%zu", i);
        rc = cm_fetch_job_encode(&jobs[i], &b, &err) == CM_OK
                 ? write_sample(dir, name, &b, job_json(&jobs[i]))
                 : -1;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(dlqs) && rc == 0; i++) {
        cm_buf_reset(&b);
        snprintf(name, sizeof(name), "dead_letter.%zu", i);
        rc = cm_dead_letter_encode(&dlqs[i], &b, &err) == CM_OK
                 ? write_sample(dir, name, &b, dlq_json(&dlqs[i]))
                 : -1;
    }
    for (size_t t = 0; t < CM_ARRAY_LEN(type_names) && rc == 0; t++) {
        const char *pcf = cm_records_canonical_form((enum cm_record_type)t);
        char fp[17];
        snprintf(fp, sizeof(fp), "%016llx",
                 (unsigned long long)cm_records_fingerprint((enum cm_record_type)t));
        rc = write_file(dir, type_names[t], "pcf", pcf, strlen(pcf)) == 0 &&
                     write_file(dir, type_names[t], "fp", fp, 16) == 0
                 ? 0
                 : -1;
    }
    cm_buf_fini(&b);
    free(big);
    return rc;
}

static int read_record(const char *type, const char *path)
{
    struct cm_buf b;
    struct cm_err err = { { 0 } };
    uint8_t chunk[65536];
    size_t n;
    json_t *j = NULL;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        return 2;
    }
    cm_buf_init(&b, 0);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        (void)cm_buf_append(&b, chunk, n);
    }
    fclose(f);

    if (strcmp(type, "raw_webhook") == 0) {
        struct cm_raw_webhook r;
        if (cm_raw_webhook_decode(b.data, b.len, &r, &err) == CM_OK) {
            j = raw_json(&r);
            cm_raw_webhook_fini(&r);
        }
    } else if (strcmp(type, "biometric_event") == 0) {
        struct cm_biometric_event e;
        if (cm_biometric_event_decode(b.data, b.len, &e, &err) == CM_OK) {
            j = event_json(&e);
            cm_biometric_event_fini(&e);
        }
    } else if (strcmp(type, "fetch_job") == 0) {
        struct cm_fetch_job jb;
        if (cm_fetch_job_decode(b.data, b.len, &jb, &err) == CM_OK) {
            j = job_json(&jb);
            cm_fetch_job_fini(&jb);
        }
    } else if (strcmp(type, "dead_letter") == 0) {
        struct cm_dead_letter d;
        if (cm_dead_letter_decode(b.data, b.len, &d, &err) == CM_OK) {
            j = dlq_json(&d);
            cm_dead_letter_fini(&d);
        }
    } else {
        cm_err_set(&err, CM_INVALID, "unknown record type");
    }
    cm_buf_fini(&b);
    if (j == NULL) {
        fputs(err.msg, stderr);
        fputc('\n', stderr);
        return 1;
    }
    json_dumpf(j, stdout, JSON_SORT_KEYS);
    fputc('\n', stdout);
    json_decref(j);
    return 0;
}

int main(int argc, char **argv)
{
    cm_records_init();
    if (argc == 3 && strcmp(argv[1], "write") == 0) {
        return write_samples(argv[2]) == 0 ? 0 : 1;
    }
    if (argc == 4 && strcmp(argv[1], "read") == 0) {
        return read_record(argv[2], argv[3]);
    }
    fputs("usage: avro_dump write DIR | avro_dump read TYPE FILE\n", stderr);
    return 2;
}
