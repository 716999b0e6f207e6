/* Per-vendor normalizers and the helpers they share. Internal to the normalization layer: the
 * processor loop uses proc_norm.h only; proc_normalize() dispatches to the functions below.
 *
 * Every proc_<vendor>_parse() has the same contract: borrows `raw`, appends to `out` (which the
 * caller has reset), returns CM_OK or CM_INVALID with a payload-free reason in `err` (a code, then
 * optionally ": <field or type name>"). On CM_INVALID `out` may hold a partial result that the
 * caller must discard. Thread: any (no shared state). */
#ifndef PROC_VENDORS_H
#define PROC_VENDORS_H

#include <jansson.h>

#include "proc_norm.h"

/* Input limits: anything beyond them is rejected, never truncated. */
#define PROC_NORM_MAX_BODY (16u * 1024u * 1024u)
#define PROC_NORM_MAX_DEPTH 32        /* nesting of JSON arrays/objects */
#define PROC_NORM_MAX_SAMPLES 200000  /* samples produced by one raw record */
#define PROC_NORM_MAX_ITEMS 10000     /* notifications / summaries in one raw record */
#define PROC_NORM_ID_MAX 100          /* longest vendor user or record id accepted */

/* Plausible time window of a sample: not before 2000-01-01, not after now + 1 day. */
#define PROC_NORM_MIN_TIME_US INT64_C(946684800000000)
#define PROC_NORM_FUTURE_SLACK_US INT64_C(86400000000)

enum cm_rc proc_garmin_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                             struct cm_err *err);
enum cm_rc proc_terra_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                            struct cm_err *err);
enum cm_rc proc_app_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                          struct cm_err *err);
enum cm_rc proc_whoop_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                            struct cm_err *err);
enum cm_rc proc_oura_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                           struct cm_err *err);
enum cm_rc proc_polar_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                            struct cm_err *err);
enum cm_rc proc_fitbit_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                             struct cm_err *err);
enum cm_rc proc_google_health_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                                    struct cm_err *err);
enum cm_rc proc_withings_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                               struct cm_err *err);
enum cm_rc proc_strava_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                             struct cm_err *err);

/* The Google Health data types the bridge reads (proc_vendor_google_health.c), shared by the
 * normalizer and the fetch plan: the API's name (kebab case, in paths and notifications), the
 * record type suffix (snake case, also the name in list filters), the DataPoint union member,
 * and which field the list filter selects a window on (https://developers.google.com/health/
 * filters). */
enum proc_gh_filter {
    PROC_GH_INTERVAL, /* {type}.interval.start_time, RFC 3339 */
    PROC_GH_SAMPLE,   /* {type}.sample_time.physical_time, RFC 3339 */
    PROC_GH_DAILY,    /* {type}.date, YYYY-MM-DD */
    PROC_GH_SLEEP,    /* sleep.interval.end_time, RFC 3339 */
    PROC_GH_EXERCISE, /* exercise.interval.civil_start_time, local date-time without offset */
};

struct proc_gh_type {
    const char *data_type, *resource, *member;
    enum proc_gh_filter filter;
};

/* The type named `name` (its data_type or its resource), or NULL. */
const struct proc_gh_type *proc_google_health_type(const char *name);

/* Plausible value range of a taxonomy metric (proc_taxonomy.c). */
void proc_taxonomy_range(const struct proc_metric_def *def, double *min, double *max);

/* ---- helpers shared by the vendor modules (proc_norm.c) ---- */

/* Parse raw->body as one JSON document: duplicate keys rejected, nesting limited to
 * PROC_NORM_MAX_DEPTH. Returns a new reference in *root ("malformed_json", "too_deep",
 * "too_large"). */
enum cm_rc proc_norm_json_load(const struct cm_raw_webhook *raw, json_t **root, struct cm_err *err);

/* Member lookups on an object. Absent and JSON null both mean "not present". Numbers may be JSON
 * integers or reals. Errors: "missing_field: <key>" (required and absent), "wrong_type: <key>",
 * "out_of_range: <key>" (non-finite, or an id that is empty, too long or has characters outside
 * printable ASCII / contains '|'). */
enum cm_rc proc_norm_get_num(const json_t *obj, const char *key, bool *present, double *out,
                             struct cm_err *err);
enum cm_rc proc_norm_get_int(const json_t *obj, const char *key, bool *present, int64_t *out,
                             struct cm_err *err);
enum cm_rc proc_norm_get_str(const json_t *obj, const char *key, bool required, const char **out,
                             struct cm_err *err);
/* An identifier given as a JSON string or integer, as text (integers in decimal). */
enum cm_rc proc_norm_get_id(const json_t *obj, const char *key, bool required, char *out,
                            size_t outsz, struct cm_err *err);
/* *out is NULL when absent. */
enum cm_rc proc_norm_get_obj(const json_t *obj, const char *key, const json_t **out,
                             struct cm_err *err);
enum cm_rc proc_norm_get_arr(const json_t *obj, const char *key, const json_t **out,
                             struct cm_err *err);
/* A time given as an RFC 3339 string, converted to UTC micros (+ offset when it carries one). */
enum cm_rc proc_norm_get_time(const json_t *obj, const char *key, bool required, bool *present,
                              int64_t *us, bool *has_off, int32_t *off_s, struct cm_err *err);

/* Is s usable as an id: 1..PROC_NORM_ID_MAX bytes of printable ASCII other than '|'? */
bool proc_norm_id_ok(const char *s);
/* The same rule for a sample's source_record_id, which may compose a vendor id with a time
 * ("<summary_id>#<time>"): 1..PROC_NORM_RECORD_ID_MAX bytes. '|' separates the event id's parts. */
#define PROC_NORM_RECORD_ID_MAX 159
bool proc_norm_record_id_ok(const char *s);
/* s when it looks like a field or type name (short, [A-Za-z0-9_.-]), else "?"; for err->msg. */
const char *proc_norm_safe_name(const char *s);

/* RFC 3339 / ISO 8601 date-time ("2026-11-20T06:30:00.123456+01:00"; 'Z', "+hh:mm", "+hhmm" or
 * no offset) -> UTC microseconds. Without an offset the time is read as UTC and *has_off is
 * false. Returns false on any syntax or range error. */
bool proc_norm_parse_time(const char *s, int64_t *us, bool *has_off, int32_t *off_s);
/* "YYYY-MM-DD" -> midnight UTC of that day in microseconds. */
bool proc_norm_parse_date(const char *s, int64_t *us);
/* UTC microseconds -> "2026-11-20T06:30:00Z" (".ffffff" added when the micros are non-zero). */
void proc_norm_format_time(int64_t us, char out[40]);

/* What the vendor modules share while emitting the samples of one record. */
struct proc_emit {
    struct proc_out *out;
    const char *vendor;
    const char *vendor_user_id;
    bool has_off;
    int32_t off_s;
    bool deleted;
};

/* proc_out_add_sample() with the record-wide fields taken from `em`. */
enum cm_rc proc_norm_emit(const struct proc_emit *em, const char *metric, double value,
                          int64_t start_us, int64_t end_us, const char *source_record_id,
                          struct cm_err *err);

/* ---- records fetched from vendor APIs (kind api_record, record_type "<vendor>.<resource>") ----
 * A spec table per vendor says where a resource's records are in the response and which fields
 * become which metrics; proc_norm_api_parse() walks it. Values absent or JSON null are skipped (a
 * record not scored yet carries no score). */
enum proc_api_time {
    PROC_API_T_RFC3339, /* "2026-11-20T06:30:00.000Z" / "+01:00"; no offset = UTC */
    PROC_API_T_DATE,    /* "2026-11-20": the whole UTC day [00:00, next 00:00) */
    PROC_API_T_EPOCH_S, /* integer seconds */
};

struct proc_api_metric {
    const char *path;   /* dotted path inside the record, e.g. "score.resting_heart_rate" */
    const char *metric;
    double scale;       /* value = field * scale */
};

/* One record as the generic walker read it, for a spec's extra() hook. */
struct proc_api_rec {
    struct proc_emit em;
    char id[PROC_NORM_ID_MAX + 1];
    int64_t start_us, end_us;
};

struct proc_api_spec {
    const char *resource;     /* record_type suffix */
    const char *items;        /* dotted path of the array of records; NULL: the body is one */
    const char *id;           /* dotted path of the record id (string or integer) */
    const char *start, *end;  /* dotted paths; end NULL: start + duration, else a point */
    enum proc_api_time time;
    const char *duration_s;   /* dotted path of a duration in seconds (when end is NULL) */
    const char *tz_offset;    /* dotted path of a "+hh:mm" offset text (WHOOP), or NULL */
    const struct proc_api_metric *metrics;
    size_t n_metrics;
    /* Optional: more samples from the same record (derived values). */
    enum cm_rc (*extra)(const json_t *rec, const struct proc_api_rec *r, struct cm_err *err);
    /* Optional: replaces the generic walk for one record entirely. */
    enum cm_rc (*record)(const struct cm_raw_webhook *raw, const json_t *rec, struct proc_emit *em,
                         struct cm_err *err);
};

/* Normalize an api_record with the vendor's spec table: record_type must be "<vendor>.<resource>"
 * of a listed resource ("unsupported_record: <record_type>") and vendor_user_id set. */
enum cm_rc proc_norm_api_parse(const struct cm_raw_webhook *raw, const struct proc_api_spec *specs,
                               size_t n_specs, struct proc_out *out, struct cm_err *err);

/* The common entry point of the JSON vendor modules: api_record -> proc_norm_api_parse() with
 * `specs`; webhook -> load the JSON body and hand its root to parse_root. */
enum cm_rc proc_norm_entry(const struct cm_raw_webhook *raw,
                           enum cm_rc (*parse_root)(const json_t *root, struct proc_out *out,
                                                    struct cm_err *err),
                           const struct proc_api_spec *specs, size_t n_specs,
                           struct proc_out *out, struct cm_err *err);

/* Run `one` on each element of the JSON array `arr` ("wrong_type: body" when not an array,
 * "too_many_items" past PROC_NORM_MAX_ITEMS); stops at the first error. */
enum cm_rc proc_norm_each(const json_t *arr,
                          enum cm_rc (*one)(const json_t *item, struct proc_out *out,
                                            struct cm_err *err),
                          struct proc_out *out, struct cm_err *err);
/* api spec extra(): exercise_duration (min) = the record's end - start. */
enum cm_rc proc_norm_extra_duration(const json_t *rec, const struct proc_api_rec *r,
                                    struct cm_err *err);

/* The value at a dotted path ("a.b.c") of nested objects, or NULL (absent or JSON null). */
const json_t *proc_norm_path(const json_t *obj, const char *path);
/* A number at a dotted path: *present false when absent; "wrong_type: <last key>" otherwise. */
enum cm_rc proc_norm_path_num(const json_t *obj, const char *path, bool *present, double *out,
                              struct cm_err *err);

#endif
