/* bench-norm: the processor's CPU path without I/O, for instruction counts (valgrind
 * --tool=callgrind) and quick A/B timing of the normalizers. For each body file given, it builds
 * the RawWebhook the gateway would produce; then, ITER times per file: decode the raw record,
 * normalize it (proc_normalize), encode every BiometricEvent as the processor does. Prints
 * events, wall time and ns per event (one thread).
 *   bench-norm ITER VENDOR:FILE [VENDOR:FILE ...] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm/buf.h"
#include "cm/common.h"
#include "cm/records.h"
#include "proc_norm.h"

struct nb_input {
    char vendor[32];
    struct cm_buf raw;
};

static void read_file(const char *path, struct cm_buf *out)
{
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "bench-norm: cannot open %s\n", path);
        exit(2);
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        cm_assert(cm_buf_append(out, chunk, n) == CM_OK);
    }
    fclose(f);
}

static void make_input(struct nb_input *in, const char *spec)
{
    const char *colon = strchr(spec, ':');
    struct cm_buf body;
    struct cm_raw_webhook r;
    struct cm_err err = {{0}};
    char path[64];

    if (colon == NULL || (size_t)(colon - spec) >= sizeof(in->vendor)) {
        fprintf(stderr, "bench-norm: expected VENDOR:FILE, got %s\n", spec);
        exit(2);
    }
    memcpy(in->vendor, spec, (size_t)(colon - spec));
    in->vendor[colon - spec] = '\0';
    cm_buf_init(&body, 0);
    read_file(colon + 1, &body);
    snprintf(path, sizeof(path), "/webhooks/%s", in->vendor);
    memset(&r, 0, sizeof(r));
    r.event_id = "0123456789abcdef0123456789abcdef";
    r.vendor = in->vendor;
    r.kind = CM_RAW_WEBHOOK;
    r.received_at_us = cm_now_us();
    r.method = "POST";
    r.path = path;
    r.content_type = "application/json";
    r.body = (uint8_t *)body.data;
    r.body_len = body.len;
    cm_buf_init(&in->raw, 0);
    if (cm_raw_webhook_encode(&r, &in->raw, &err) != CM_OK) {
        fprintf(stderr, "bench-norm: encode: %s\n", err.msg);
        exit(2);
    }
    cm_buf_fini(&body);
}

static size_t run_one(const struct nb_input *in, struct proc_out *out, struct cm_buf *enc)
{
    struct cm_raw_webhook raw;
    struct cm_err err = {{0}};
    size_t n;

    if (cm_raw_webhook_decode(in->raw.data, in->raw.len, &raw, &err) != CM_OK) {
        fprintf(stderr, "bench-norm: decode: %s\n", err.msg);
        exit(2);
    }
    proc_out_reset(out);
    if (proc_normalize(&raw, out, &err) != CM_OK) {
        fprintf(stderr, "bench-norm: %s: %s\n", in->vendor, err.msg);
        exit(2);
    }
    for (size_t i = 0; i < out->n_samples; i++) {
        const struct proc_sample *s = &out->samples[i];
        struct cm_biometric_event e = {
            .event_id = (char *)s->event_id,
            .user_id = "bench-user",
            .vendor = raw.vendor,
            .metric = (char *)s->metric,
            .value = s->value,
            .unit = (char *)s->unit,
            .loinc = (char *)s->loinc,
            .start_time_us = s->start_us,
            .end_time_us = s->end_us,
            .has_utc_offset = s->has_utc_offset,
            .utc_offset_seconds = s->utc_offset_s,
            .source_record_id = (char *)s->source_record_id,
            .raw_event_id = raw.event_id,
            .ingested_at_us = raw.received_at_us,
            .received_at_us = raw.received_at_us,
            .deleted = s->deleted,
        };
        cm_buf_reset(enc);
        cm_assert(cm_biometric_event_encode(&e, enc, &err) == CM_OK);
    }
    n = out->n_samples;
    cm_raw_webhook_fini(&raw);
    return n;
}

int main(int argc, char **argv)
{
    struct nb_input *in;
    struct proc_out out;
    struct cm_buf enc;
    struct timespec t0, t1;
    size_t events = 0;
    long iters;
    double ns;

    if (argc < 3 || (iters = strtol(argv[1], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: bench-norm ITER VENDOR:FILE [VENDOR:FILE ...]\n");
        return 2;
    }
    cm_records_init();
    in = calloc((size_t)(argc - 2), sizeof(*in));
    cm_assert(in != NULL);
    for (int i = 2; i < argc; i++) {
        make_input(&in[i - 2], argv[i]);
    }
    proc_out_init(&out);
    cm_buf_init(&enc, 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < iters; k++) {
        for (int i = 0; i < argc - 2; i++) {
            events += run_one(&in[i], &out, &enc);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("{\"events\":%zu,\"seconds\":%.3f,\"ns_per_event\":%.0f,\"events_per_s\":%.0f}\n",
           events, ns / 1e9, events ? ns / (double)events : 0.0,
           ns > 0 ? (double)events * 1e9 / ns : 0.0);
    proc_out_fini(&out);
    cm_buf_fini(&enc);
    for (int i = 0; i < argc - 2; i++) {
        cm_buf_fini(&in[i].raw);
    }
    free(in);
    return 0;
}
