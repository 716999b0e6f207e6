/* Normalization: one raw vendor record in, normalized samples and fetch requests out.
 * Pure functions (no I/O): the processor loop (proc_loop.c) resolves users, encodes, produces and
 * writes Redis. One vendor = one module proc_vendor_<vendor>.c exposing proc_<vendor>_parse(), all
 * with the same shape, dispatched from the table in proc_norm.c.
 *
 * Ownership: proc_out is caller storage (proc_out_init/proc_out_fini); everything appended to it
 * is owned by it. Thread: any (no shared state).
 * Errors: CM_INVALID with err->msg = a short reason code first ("malformed_json", "missing_field",
 * "unsupported_record", "out_of_range", ...) optionally followed by ": <field name>" — never values. */
#ifndef PROC_NORM_H
#define PROC_NORM_H

#include "cm/common.h"
#include "cm/records.h"

struct proc_sample {
    char vendor_user_id[128];
    char metric[64];          /* taxonomy name, or score.<vendor>.<name> */
    const char *unit;         /* UCUM, static (from the taxonomy table) */
    const char *loinc;        /* static or NULL */
    double value;
    int64_t start_us, end_us; /* UTC; equal for a point sample */
    bool has_utc_offset;
    int32_t utc_offset_s;
    char source_record_id[160];
    bool deleted;
    char event_id[33];        /* filled by proc_out_add_sample() via proc_event_id() */
};

struct proc_fetch {
    char vendor_user_id[128];
    char resource[48];        /* vendor data type: "sleep", "recovery", "daily_readiness", "body", ... */
    char event_type[48];      /* "" when the vendor gives none */
    char object_id[128];      /* "" when none */
    char url[512];            /* "" when none (Polar gives a URL) */
    bool has_start, has_end;
    int64_t start_us, end_us;
};

/* Account lifecycle notices carried by webhooks (deauthorization). */
struct proc_lifecycle {
    char vendor_user_id[128];
    char action[24];          /* "revoked" */
};

struct proc_out {
    struct proc_sample *samples;
    size_t n_samples, cap_samples;
    struct proc_fetch *fetches;
    size_t n_fetches, cap_fetches;
    struct proc_lifecycle *lifecycle;
    size_t n_lifecycle, cap_lifecycle;
    bool is_handshake;        /* a vendor ping/verification that carries nothing */
};

void proc_out_init(struct proc_out *o);
void proc_out_reset(struct proc_out *o);
void proc_out_fini(struct proc_out *o);

/* Append a sample; looks up unit/LOINC from the taxonomy (metric must exist there, or be
 * score.<vendor>.<name> -> unit "{score}"), computes the event id. CM_INVALID for an unknown metric
 * name (programmer error in a normalizer, reported as "unknown_metric"), or a non-finite value
 * ("out_of_range"). */
enum cm_rc proc_out_add_sample(struct proc_out *o, const char *vendor, const char *vendor_user_id,
                               const char *metric, double value, int64_t start_us, int64_t end_us,
                               const int32_t *utc_offset_s, const char *source_record_id,
                               bool deleted, struct cm_err *err);
struct proc_fetch *proc_out_add_fetch(struct proc_out *o);
struct proc_lifecycle *proc_out_add_lifecycle(struct proc_out *o);

/* Decimal of v at dst (room for 20 digits and a sign, no NUL); returns the length. */
size_t proc_put_int64(char *dst, int64_t v);

/* Deterministic event id: first 16 bytes of SHA-256("v1|vendor|vendor_user_id|source_record_id|
 * metric|start_us"), lower-case hex. Same vendor record -> same id, whatever user it maps to. */
void proc_event_id(const char *vendor, const char *vendor_user_id, const char *source_record_id,
                   const char *metric, int64_t start_us, char out[33]);
/* The id scheme under every derived id (events, fetch jobs, fetched records): the first 16 bytes
 * of SHA-256(msg[0..n)) as lower-case hex. */
void proc_digest_id(const void *msg, size_t n, char out[33]);

/* The metric taxonomy: one table (proc_taxonomy.c), mirrored in the README. */
struct proc_metric_def {
    const char *name;
    const char *unit;   /* UCUM */
    const char *loinc;  /* NULL when none */
    const char *doc;
};
const struct proc_metric_def *proc_taxonomy_find(const char *name);
const struct proc_metric_def *proc_taxonomy_all(size_t *n);

/* Dispatch on raw->vendor (and raw->kind / raw->record_type). Fills `out`. */
enum cm_rc proc_normalize(const struct cm_raw_webhook *raw, struct proc_out *out, struct cm_err *err);

/* Is this vendor notify-only (its webhooks become fetch jobs rather than samples)? */
bool proc_vendor_is_notify_only(const char *vendor);

#endif
