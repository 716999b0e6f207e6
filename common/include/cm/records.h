/* The records that travel between the stages, and their Avro single-object codec
 * (C3 01, 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form,
 * then the binary datum). The schemas live in schemas/<name>.avsc; the codec embeds the same text.
 *
 * Ownership: every `char *` / `uint8_t *` field of a decoded record is heap memory owned by the
 * record and released by its _fini(). Encoders borrow the record and append to `out`.
 * Thread: any; the codec keeps no mutable global state after cm_records_init().
 * Returns: CM_OK, or CM_INVALID with a payload-free reason (wrong magic, unknown fingerprint,
 * truncated datum, field name) in `err`. */
#ifndef CM_RECORDS_H
#define CM_RECORDS_H

#include "cm/buf.h"
#include "cm/common.h"

enum cm_raw_kind { CM_RAW_WEBHOOK = 0, CM_RAW_API_RECORD = 1 };

struct cm_header {
    char *name;  /* lower-case */
    char *value;
};

/* biometric.raw.v1 value. */
struct cm_raw_webhook {
    char *event_id;         /* gateway-assigned unique id (32 hex) or the fetch job's derived id */
    char *vendor;           /* whoop, oura, ..., app */
    enum cm_raw_kind kind;
    int64_t received_at_us; /* when the gateway (or fetcher) received it */
    char *method;           /* "POST" */
    char *path;             /* request path without the secret path token, e.g. /webhooks/garmin */
    char *query;            /* nullable: the query string */
    char *content_type;     /* nullable */
    struct cm_header *headers; /* allow-listed non-secret headers */
    size_t n_headers;
    uint8_t *body;
    size_t body_len;
    char *vendor_user_id;   /* nullable: known for api_record */
    char *record_type;      /* nullable: api_record type, e.g. "oura.daily_readiness" */
};

/* biometric.normalized.v1 value. */
struct cm_biometric_event {
    char *event_id;           /* deterministic, 32 hex */
    char *user_id;
    char *vendor;
    char *metric;
    double value;
    char *unit;               /* UCUM */
    char *loinc;              /* nullable */
    int64_t start_time_us;
    int64_t end_time_us;
    bool has_utc_offset;
    int32_t utc_offset_seconds;
    char *source_record_id;
    char *raw_event_id;
    int64_t ingested_at_us;
    int64_t received_at_us;   /* when the raw webhook reached the gateway (end-to-end latency) */
    bool deleted;
};

/* biometric.fetch.v1 value. */
struct cm_fetch_job {
    char *job_id;             /* deterministic from raw_event_id + index */
    char *vendor;
    char *vendor_user_id;
    char *user_id;            /* nullable */
    char *resource;           /* vendor data type, e.g. "sleep", "daily_readiness", "body" */
    char *event_type;         /* nullable: vendor event, e.g. "sleep.updated", "create", "delete" */
    char *object_id;          /* nullable */
    char *url;                /* nullable: vendor-supplied fetch URL (Polar) */
    bool has_start;
    int64_t start_time_us;
    bool has_end;
    int64_t end_time_us;
    char *raw_event_id;
    int32_t attempt;
    int64_t not_before_us;
    int64_t created_at_us;
};

/* biometric.dlq.v1 value. */
struct cm_dead_letter {
    char *stage;              /* gateway | processor | fetcher | persister */
    char *reason;             /* short code: malformed_json, unknown_connection, ... */
    char *detail;             /* payload-free detail (field names, codes) */
    char *source_topic;
    int32_t source_partition;
    int64_t source_offset;
    uint8_t *key;             /* nullable */
    size_t key_len;
    uint8_t *value;           /* the failed record as it was on the source topic */
    size_t value_len;
    int64_t failed_at_us;
    int32_t attempts;
};

enum cm_record_type { CM_REC_RAW_WEBHOOK, CM_REC_BIOMETRIC_EVENT, CM_REC_FETCH_JOB, CM_REC_DEAD_LETTER };

/* Parse the embedded schemas and compute their fingerprints. Call once from main() (idempotent,
 * thread-safe via pthread_once). Aborts on a broken embedded schema (programmer error). */
void cm_records_init(void);

/* CRC-64-AVRO fingerprint of the Parsing Canonical Form of the record's schema. */
uint64_t cm_records_fingerprint(enum cm_record_type t);
/* The schema JSON text as embedded (same as schemas/<name>.avsc). */
const char *cm_records_schema_json(enum cm_record_type t);
/* The Parsing Canonical Form of the schema, computed per the Avro specification. */
const char *cm_records_canonical_form(enum cm_record_type t);

/* Parsing Canonical Form of an arbitrary schema JSON text (returns new string) and its
 * CRC-64-AVRO fingerprint. Exposed for tests and the admin tool. */
char *cm_avro_canonical_form(const char *schema_json, struct cm_err *err);
uint64_t cm_avro_crc64(const void *data, size_t len);

/* true when s[0..n) is strict UTF-8 (what an Avro string field accepts). */
bool cm_utf8_valid(const void *s, size_t n);

enum cm_rc cm_raw_webhook_encode(const struct cm_raw_webhook *r, struct cm_buf *out, struct cm_err *err);
enum cm_rc cm_raw_webhook_decode(const void *data, size_t len, struct cm_raw_webhook *r, struct cm_err *err);
void cm_raw_webhook_fini(struct cm_raw_webhook *r);

enum cm_rc cm_biometric_event_encode(const struct cm_biometric_event *e, struct cm_buf *out, struct cm_err *err);
enum cm_rc cm_biometric_event_decode(const void *data, size_t len, struct cm_biometric_event *e, struct cm_err *err);
void cm_biometric_event_fini(struct cm_biometric_event *e);

enum cm_rc cm_fetch_job_encode(const struct cm_fetch_job *j, struct cm_buf *out, struct cm_err *err);
enum cm_rc cm_fetch_job_decode(const void *data, size_t len, struct cm_fetch_job *j, struct cm_err *err);
void cm_fetch_job_fini(struct cm_fetch_job *j);

enum cm_rc cm_dead_letter_encode(const struct cm_dead_letter *d, struct cm_buf *out, struct cm_err *err);
enum cm_rc cm_dead_letter_decode(const void *data, size_t len, struct cm_dead_letter *d, struct cm_err *err);
void cm_dead_letter_fini(struct cm_dead_letter *d);

/* Which record type a single-object-encoded value carries (by fingerprint), or CM_INVALID. */
enum cm_rc cm_records_peek_type(const void *data, size_t len, enum cm_record_type *t, struct cm_err *err);

#endif
