/* Fuzz target: one vendor's payload normalizer, reached through proc_normalize() as the
 * processor calls it. Built once per vendor with -DFUZZ_VENDOR="<vendor>" (norm_<vendor>_fuzz).
 * Input: the request body as the gateway stored it (a webhook); an input starting with
 * "#api:<record_type>\n" is instead a fetched API record of that type (kind api_record).
 * Invariants: success yields only well-formed output (finite values inside the taxonomy, known
 * metrics with their units, start <= end, ids that pass proc_norm_id_ok (record ids
 * proc_norm_record_id_ok, the rule proc_out_add_sample() enforces), event ids equal to
 * proc_event_id() of the sample); failure yields an empty result and a payload-free reason
 * ("code" or "code: name" with a name of [A-Za-z0-9_.?-]); the result is deterministic. */
#include <math.h>

#include "fuzz_util.h"
#include "proc_norm.h"
#include "proc_vendors.h"

#ifndef FUZZ_VENDOR
#error "build with -DFUZZ_VENDOR=\"<vendor>\""
#endif

#define API_PREFIX "#api:"

static void check_reason(const char *msg)
{
    size_t code = strspn(msg, "abcdefghijklmnopqrstuvwxyz_");

    FUZZ_CHECK(code > 0, "empty reason code");
    if (msg[code] == '\0') {
        return;
    }
    FUZZ_CHECK(msg[code] == ':' && msg[code + 1] == ' ', "reason is not 'code: name'");
    FUZZ_CHECK(strspn(msg + code + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789_.?-") == strlen(msg + code + 2) &&
                   msg[code + 2] != '\0',
               "reason carries something other than a field name");
}

static void check_sample(const struct proc_sample *s)
{
    char id[33];
    char score_prefix[64];
    const struct proc_metric_def *def = proc_taxonomy_find(s->metric);

    snprintf(score_prefix, sizeof(score_prefix), "score.%s.", FUZZ_VENDOR);
    FUZZ_CHECK(isfinite(s->value), "non-finite value");
    FUZZ_CHECK(def != NULL || strncmp(s->metric, score_prefix, strlen(score_prefix)) == 0,
               "metric outside the taxonomy");
    FUZZ_CHECK(s->unit != NULL && (def == NULL || strcmp(s->unit, def->unit) == 0),
               "unit differs from the taxonomy");
    FUZZ_CHECK(s->start_us <= s->end_us, "sample ends before it starts");
    FUZZ_CHECK(proc_norm_id_ok(s->vendor_user_id), "bad vendor user id");
    FUZZ_CHECK(proc_norm_record_id_ok(s->source_record_id), "bad source record id");
    proc_event_id(FUZZ_VENDOR, s->vendor_user_id, s->source_record_id, s->metric, s->start_us,
                  id);
    FUZZ_CHECK(strcmp(id, s->event_id) == 0, "event id is not the derived one");
}

static void check_out(const struct proc_out *o)
{
    for (size_t i = 0; i < o->n_samples; i++) {
        check_sample(&o->samples[i]);
    }
    for (size_t i = 0; i < o->n_fetches; i++) {
        FUZZ_CHECK(proc_norm_id_ok(o->fetches[i].vendor_user_id), "fetch: bad vendor user id");
        FUZZ_CHECK(o->fetches[i].resource[0] != '\0', "fetch: no resource");
        FUZZ_CHECK(!o->fetches[i].has_start || !o->fetches[i].has_end ||
                       o->fetches[i].start_us <= o->fetches[i].end_us,
                   "fetch: window ends before it starts");
    }
    for (size_t i = 0; i < o->n_lifecycle; i++) {
        FUZZ_CHECK(proc_norm_id_ok(o->lifecycle[i].vendor_user_id),
                   "lifecycle: bad vendor user id");
    }
}

static bool same_out(const struct proc_out *a, const struct proc_out *b)
{
    if (a->n_samples != b->n_samples || a->n_fetches != b->n_fetches ||
        a->n_lifecycle != b->n_lifecycle || a->is_handshake != b->is_handshake) {
        return false;
    }
    for (size_t i = 0; i < a->n_samples; i++) {
        if (strcmp(a->samples[i].event_id, b->samples[i].event_id) != 0 ||
            a->samples[i].value != b->samples[i].value) {
            return false;
        }
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_raw_webhook raw;
    struct proc_out a, b;
    struct cm_err err = {{0}};
    struct cm_err err2 = {{0}};
    char record_type[64] = "";
    enum cm_rc rc;

    memset(&raw, 0, sizeof(raw));
    raw.vendor = FUZZ_VENDOR;
    raw.kind = CM_RAW_WEBHOOK;
    raw.event_id = "00000000000000000000000000000000";
    raw.received_at_us = INT64_C(1790000000000000);
    raw.method = "POST";
    raw.path = "/webhooks/" FUZZ_VENDOR;
    raw.content_type = strcmp(FUZZ_VENDOR, "withings") == 0
                           ? "application/x-www-form-urlencoded"
                           : "application/json";
    if (size > strlen(API_PREFIX) && memcmp(data, API_PREFIX, strlen(API_PREFIX)) == 0) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t n = nl != NULL ? (size_t)(nl - data) - strlen(API_PREFIX) : 0;
        if (nl == NULL || n >= sizeof(record_type)) {
            return 0;
        }
        memcpy(record_type, data + strlen(API_PREFIX), n);
        record_type[n] = '\0';
        raw.kind = CM_RAW_API_RECORD;
        raw.record_type = record_type;
        raw.vendor_user_id = "fuzz-user-1";
        size -= (size_t)(nl + 1 - data);
        data = nl + 1;
    }
    /* A heap copy of exactly `size` bytes, so reads past the body are caught. */
    raw.body = malloc(size > 0 ? size : 1);
    memcpy(raw.body, data, size);
    raw.body_len = size;

    proc_out_init(&a);
    proc_out_init(&b);
    rc = proc_normalize(&raw, &a, &err);
    if (rc == CM_OK) {
        check_out(&a);
    } else {
        FUZZ_CHECK(rc == CM_INVALID, "failure other than CM_INVALID");
        FUZZ_CHECK(a.n_samples == 0 && a.n_fetches == 0 && a.n_lifecycle == 0,
                   "partial result left after a failure");
        check_reason(err.msg);
    }
    FUZZ_CHECK(proc_normalize(&raw, &b, &err2) == rc && same_out(&a, &b),
               "normalization is not deterministic");
    FUZZ_CHECK(rc == CM_OK || strcmp(err.msg, err2.msg) == 0, "reason is not deterministic");
    proc_out_fini(&a);
    proc_out_fini(&b);
    free(raw.body);
    return 0;
}
