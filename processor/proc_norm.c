/* The normalization layer's core: the proc_out container, the deterministic event id, the vendor
 * dispatch table, and the JSON / time helpers every vendor module shares (proc_vendors.h).
 * Nothing here does I/O or keeps state; the only clock read is the "not in the future" bound of
 * proc_out_add_sample(). Every rejection is CM_INVALID with a reason that names a field, a type
 * or a metric, never a value. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "proc_norm.h"
#include "proc_vendors.h"

#define MAX_UTC_OFFSET_S (18 * 3600)

/* ---- proc_out ---- */

void proc_out_init(struct proc_out *o)
{
    memset(o, 0, sizeof(*o));
}

void proc_out_reset(struct proc_out *o)
{
    o->n_samples = 0;
    o->n_fetches = 0;
    o->n_lifecycle = 0;
    o->is_handshake = false;
}

void proc_out_fini(struct proc_out *o)
{
    if (o == NULL) {
        return;
    }
    free(o->samples);
    free(o->fetches);
    free(o->lifecycle);
    memset(o, 0, sizeof(*o));
}

/* Make room for one more element of size `sz` in *arr (n used of *cap). */
static void *grow_array(void *arr, size_t n, size_t *cap, size_t sz)
{
    if (n < *cap) {
        return arr;
    }
    size_t ncap = *cap == 0 ? 16 : *cap * 2;
    arr = cm_xrealloc(arr, ncap * sz);
    *cap = ncap;
    return arr;
}

struct proc_fetch *proc_out_add_fetch(struct proc_out *o)
{
    o->fetches = grow_array(o->fetches, o->n_fetches, &o->cap_fetches, sizeof(*o->fetches));
    struct proc_fetch *f = &o->fetches[o->n_fetches++];
    memset(f, 0, sizeof(*f));
    return f;
}

struct proc_lifecycle *proc_out_add_lifecycle(struct proc_out *o)
{
    o->lifecycle =
        grow_array(o->lifecycle, o->n_lifecycle, &o->cap_lifecycle, sizeof(*o->lifecycle));
    struct proc_lifecycle *l = &o->lifecycle[o->n_lifecycle++];
    memset(l, 0, sizeof(*l));
    return l;
}

/* ---- event id ---- */

/* SHA-256 fetched once: EVP_sha256() makes every EVP_Digest() look the algorithm up in the
 * provider store again, which cost more instructions than the hash itself (bench/normbench.c
 * under callgrind). The fetched EVP_MD is immutable and shared by all threads. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    cm_assert(sha256_md != NULL);
}

static size_t put_part(char *dst, const char *s, size_t n)
{
    memcpy(dst, s, n);
    dst[n] = '|';
    return n + 1;
}

/* snprintf's format machinery cost as much as the rest of the event id's message. */
size_t proc_put_int64(char *dst, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    size_t o = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        dst[o++] = '-';
    }
    while (n > 0) {
        dst[o++] = tmp[--n];
    }
    return o;
}

void proc_digest_id(const void *msg, size_t n, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    pthread_once(&sha256_once, fetch_sha256);
    cm_assert(EVP_Digest(msg, n, md, &mdlen, sha256_md, NULL) == 1 && mdlen >= 16);
    cm_hex_encode(md, 16, out);
}

void proc_event_id(const char *vendor, const char *vendor_user_id, const char *source_record_id,
                   const char *metric, int64_t start_us, char out[33])
{
    const char *parts[] = { "v1", vendor, vendor_user_id, source_record_id, metric };
    size_t lens[CM_ARRAY_LEN(parts)];
    size_t len = 21; /* the decimal start time (sign and 19 digits) */
    char stack[512];
    char *msg = stack;
    size_t n = 0;

    for (size_t i = 0; i < CM_ARRAY_LEN(parts); i++) {
        lens[i] = strlen(parts[i]);
        len += lens[i] + 1;
    }
    if (len > sizeof(stack)) {
        msg = cm_xmalloc(len);
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(parts); i++) {
        n += put_part(msg + n, parts[i], lens[i]);
    }
    n += proc_put_int64(msg + n, start_us);
    proc_digest_id(msg, n, out);
    if (msg != stack) {
        free(msg);
    }
}

/* ---- samples ---- */

/* score.<vendor>.<name>, name = [a-z0-9_]+, for the vendor that emits it. */
static bool is_score_metric(const char *metric, const char *vendor)
{
    size_t vlen = strlen(vendor);

    if (strncmp(metric, "score.", 6) != 0 || strncmp(metric + 6, vendor, vlen) != 0 ||
        metric[6 + vlen] != '.') {
        return false;
    }
    const char *name = metric + 6 + vlen + 1;
    if (*name == '\0') {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            return false;
        }
    }
    return true;
}

enum cm_rc proc_out_add_sample(struct proc_out *o, const char *vendor, const char *vendor_user_id,
                               const char *metric, double value, int64_t start_us, int64_t end_us,
                               const int32_t *utc_offset_s, const char *source_record_id,
                               bool deleted, struct cm_err *err)
{
    const struct proc_metric_def *def = proc_taxonomy_find(metric);
    const char *unit = "{score}";
    const char *loinc = NULL;

    if (def != NULL) {
        unit = def->unit;
        loinc = def->loinc;
    } else if (!is_score_metric(metric, vendor) || strlen(metric) >= sizeof(o->samples->metric)) {
        return cm_err_set(err, CM_INVALID, "unknown_metric: %s", proc_norm_safe_name(metric));
    }
    if (!isfinite(value)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: %s", metric);
    }
    if (def != NULL && !deleted) {
        double min, max;
        proc_taxonomy_range(def, &min, &max);
        if (value < min || value > max) {
            return cm_err_set(err, CM_INVALID, "out_of_range: %s", metric);
        }
    }
    if (start_us < PROC_NORM_MIN_TIME_US) {
        return cm_err_set(err, CM_INVALID, "out_of_range: start_time");
    }
    if (end_us < start_us || end_us > cm_now_us() + PROC_NORM_FUTURE_SLACK_US) {
        return cm_err_set(err, CM_INVALID, "out_of_range: end_time");
    }
    if (utc_offset_s != NULL &&
        (*utc_offset_s > MAX_UTC_OFFSET_S || *utc_offset_s < -MAX_UTC_OFFSET_S)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: utc_offset");
    }
    if (vendor_user_id[0] == '\0' || strlen(vendor_user_id) >= sizeof(o->samples->vendor_user_id)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: vendor_user_id");
    }
    if (!proc_norm_record_id_ok(source_record_id)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: source_record_id");
    }
    if (o->n_samples >= PROC_NORM_MAX_SAMPLES) {
        return cm_err_set(err, CM_INVALID, "too_many_samples");
    }

    o->samples = grow_array(o->samples, o->n_samples, &o->cap_samples, sizeof(*o->samples));
    struct proc_sample *s = &o->samples[o->n_samples++];
    memset(s, 0, sizeof(*s));
    cm_strlcpy(s->vendor_user_id, vendor_user_id, sizeof(s->vendor_user_id));
    cm_strlcpy(s->metric, metric, sizeof(s->metric));
    s->unit = unit;
    s->loinc = loinc;
    s->value = value;
    s->start_us = start_us;
    s->end_us = end_us;
    s->has_utc_offset = utc_offset_s != NULL;
    s->utc_offset_s = utc_offset_s != NULL ? *utc_offset_s : 0;
    cm_strlcpy(s->source_record_id, source_record_id, sizeof(s->source_record_id));
    s->deleted = deleted;
    proc_event_id(vendor, vendor_user_id, source_record_id, metric, start_us, s->event_id);
    return CM_OK;
}

enum cm_rc proc_norm_emit(const struct proc_emit *em, const char *metric, double value,
                          int64_t start_us, int64_t end_us, const char *source_record_id,
                          struct cm_err *err)
{
    return proc_out_add_sample(em->out, em->vendor, em->vendor_user_id, metric, value, start_us,
                               end_us, em->has_off ? &em->off_s : NULL, source_record_id,
                               em->deleted, err);
}

/* ---- dispatch ---- */

struct vendor_entry {
    const char *name;
    bool notify_only;
    enum cm_rc (*parse)(const struct cm_raw_webhook *raw, struct proc_out *out, struct cm_err *err);
};

static const struct vendor_entry vendors[] = {
    { "garmin", false, proc_garmin_parse },
    { "terra", false, proc_terra_parse },
    { "app", false, proc_app_parse },
    { "whoop", true, proc_whoop_parse },
    { "oura", true, proc_oura_parse },
    { "polar", true, proc_polar_parse },
    { "fitbit", true, proc_fitbit_parse },
    { "google_health", true, proc_google_health_parse },
    { "withings", true, proc_withings_parse },
    { "strava", true, proc_strava_parse },
};

static const struct vendor_entry *find_vendor(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(vendors); i++) {
        if (strcmp(vendors[i].name, name) == 0) {
            return &vendors[i];
        }
    }
    return NULL;
}

enum cm_rc proc_normalize(const struct cm_raw_webhook *raw, struct proc_out *out,
                          struct cm_err *err)
{
    proc_out_reset(out);
    if (raw == NULL || raw->vendor == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: vendor");
    }
    const struct vendor_entry *v = find_vendor(raw->vendor);
    if (v == NULL) {
        return cm_err_set(err, CM_INVALID, "unsupported_vendor");
    }
    if (raw->body_len > PROC_NORM_MAX_BODY) {
        return cm_err_set(err, CM_INVALID, "too_large");
    }
    enum cm_rc rc = v->parse(raw, out, err);
    if (rc != CM_OK) {
        proc_out_reset(out);
    }
    return rc;
}

bool proc_vendor_is_notify_only(const char *vendor)
{
    const struct vendor_entry *v = find_vendor(vendor);
    return v != NULL && v->notify_only;
}

/* ---- JSON helpers ---- */

/* Nesting depth of a JSON text, counted outside strings; stops early past the limit so a hostile
 * body never reaches the recursive parser and destructor. */
static bool depth_ok(const uint8_t *p, size_t n)
{
    int depth = 0;
    bool in_str = false;

    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > PROC_NORM_MAX_DEPTH) {
                return false;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

enum cm_rc proc_norm_json_load(const struct cm_raw_webhook *raw, json_t **root, struct cm_err *err)
{
    json_error_t jerr;

    *root = NULL;
    if (raw->body == NULL || raw->body_len == 0) {
        return cm_err_set(err, CM_INVALID, "malformed_json");
    }
    if (raw->body_len > PROC_NORM_MAX_BODY) {
        return cm_err_set(err, CM_INVALID, "too_large");
    }
    if (!depth_ok(raw->body, raw->body_len)) {
        return cm_err_set(err, CM_INVALID, "too_deep");
    }
    /* Duplicate keys make a record ambiguous (which value did the vendor mean?): reject. */
    *root = json_loadb((const char *)raw->body, raw->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (*root == NULL) {
        return cm_err_set(err, CM_INVALID, "malformed_json");
    }
    return CM_OK;
}

static const json_t *get_member(const json_t *obj, const char *key)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

enum cm_rc proc_norm_get_num(const json_t *obj, const char *key, bool *present, double *out,
                             struct cm_err *err)
{
    const json_t *v = get_member(obj, key);

    *present = false;
    if (v == NULL) {
        return CM_OK;
    }
    if (!json_is_number(v)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
    }
    double d = json_number_value(v);
    if (!isfinite(d)) {
        return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
    }
    *out = d;
    *present = true;
    return CM_OK;
}

enum cm_rc proc_norm_get_int(const json_t *obj, const char *key, bool *present, int64_t *out,
                             struct cm_err *err)
{
    const json_t *v = get_member(obj, key);

    *present = false;
    if (v == NULL) {
        return CM_OK;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        /* Some senders write integral values as 1.7e9 or 60.0: accept exact integers only. */
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0) {
            return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
        }
        *out = (int64_t)d;
    } else {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
    }
    *present = true;
    return CM_OK;
}

enum cm_rc proc_norm_get_str(const json_t *obj, const char *key, bool required, const char **out,
                             struct cm_err *err)
{
    const json_t *v = get_member(obj, key);

    *out = NULL;
    if (v == NULL) {
        return required ? cm_err_set(err, CM_INVALID, "missing_field: %s", key) : CM_OK;
    }
    if (!json_is_string(v)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
    }
    *out = json_string_value(v);
    return CM_OK;
}

enum cm_rc proc_norm_get_id(const json_t *obj, const char *key, bool required, char *out,
                            size_t outsz, struct cm_err *err)
{
    const json_t *v = get_member(obj, key);

    out[0] = '\0';
    if (v == NULL) {
        return required ? cm_err_set(err, CM_INVALID, "missing_field: %s", key) : CM_OK;
    }
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0) {
            return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
        }
        snprintf(out, outsz, "%" JSON_INTEGER_FORMAT, i);
        return CM_OK;
    }
    if (!json_is_string(v)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
    }
    const char *s = json_string_value(v);
    if (!proc_norm_id_ok(s) || !cm_strlcpy(out, s, outsz)) {
        out[0] = '\0';
        return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
    }
    return CM_OK;
}

enum cm_rc proc_norm_get_obj(const json_t *obj, const char *key, const json_t **out,
                             struct cm_err *err)
{
    const json_t *v = get_member(obj, key);

    *out = NULL;
    if (v == NULL) {
        return CM_OK;
    }
    if (!json_is_object(v)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
    }
    *out = v;
    return CM_OK;
}

enum cm_rc proc_norm_get_arr(const json_t *obj, const char *key, const json_t **out,
                             struct cm_err *err)
{
    const json_t *v = get_member(obj, key);

    *out = NULL;
    if (v == NULL) {
        return CM_OK;
    }
    if (!json_is_array(v)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
    }
    if (json_array_size(v) > PROC_NORM_MAX_SAMPLES) {
        return cm_err_set(err, CM_INVALID, "out_of_range: %s", key);
    }
    *out = v;
    return CM_OK;
}

enum cm_rc proc_norm_get_time(const json_t *obj, const char *key, bool required, bool *present,
                              int64_t *us, bool *has_off, int32_t *off_s, struct cm_err *err)
{
    const char *s;
    enum cm_rc rc = proc_norm_get_str(obj, key, required, &s, err);

    *present = false;
    if (rc != CM_OK || s == NULL) {
        return rc;
    }
    if (!proc_norm_parse_time(s, us, has_off, off_s)) {
        return cm_err_set(err, CM_INVALID, "bad_time: %s", key);
    }
    *present = true;
    return CM_OK;
}

static bool id_within(const char *s, size_t max)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c < 0x21 || c > 0x7e || c == '|' || n >= max) {
            return false;
        }
    }
    return n > 0;
}

bool proc_norm_id_ok(const char *s)
{
    return id_within(s, PROC_NORM_ID_MAX);
}

_Static_assert(sizeof(((struct proc_sample *)0)->source_record_id) == PROC_NORM_RECORD_ID_MAX + 1,
               "source_record_id holds PROC_NORM_RECORD_ID_MAX bytes");

bool proc_norm_record_id_ok(const char *s)
{
    return id_within(s, PROC_NORM_RECORD_ID_MAX);
}

const char *proc_norm_safe_name(const char *s)
{
    size_t n = 0;

    if (s == NULL) {
        return "?";
    }
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok || n >= 48) {
            return "?";
        }
    }
    return n > 0 ? s : "?";
}

/* ---- time ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's civil calendar algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Read exactly n decimal digits. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool parse_ymd(const char **p, int *y, int *m, int *d)
{
    if (!digits(p, 4, y) || **p != '-') {
        return false;
    }
    (*p)++;
    if (!digits(p, 2, m) || **p != '-') {
        return false;
    }
    (*p)++;
    if (!digits(p, 2, d)) {
        return false;
    }
    return *m >= 1 && *m <= 12 && *d >= 1 && *d <= days_in_month(*y, *m);
}

bool proc_norm_parse_date(const char *s, int64_t *us)
{
    int y, m, d;
    const char *p = s;

    if (!parse_ymd(&p, &y, &m, &d) || *p != '\0') {
        return false;
    }
    *us = days_from_civil(y, m, d) * INT64_C(86400000000);
    return true;
}

bool proc_norm_parse_time(const char *s, int64_t *us, bool *has_off, int32_t *off_s)
{
    int y, mo, d, h, mi, sec, frac_us = 0, off = 0;
    const char *p = s;

    if (!parse_ymd(&p, &y, &mo, &d) || (*p != 'T' && *p != 't' && *p != ' ')) {
        return false;
    }
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &sec) || h > 23 || mi > 59 || sec > 59) {
        return false;
    }
    if (*p == '.') {
        int nd = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nd < 6) {
                frac_us = frac_us * 10 + (*p - '0');
            } else if (nd >= 9) {
                return false;
            }
            nd++;
            p++;
        }
        if (nd == 0) {
            return false;
        }
        for (int i = nd; i < 6; i++) {
            frac_us *= 10;
        }
    }
    *has_off = false;
    if (*p == 'Z' || *p == 'z') {
        *has_off = true;
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (!digits(&p, 2, &oh)) {
            return false;
        }
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &om)) {
                return false;
            }
        } else if (*p >= '0' && *p <= '9' && !digits(&p, 2, &om)) {
            return false;
        }
        if (oh > 18 || om > 59) {
            return false;
        }
        off = sign * (oh * 3600 + om * 60);
        *has_off = true;
    }
    if (*p != '\0') {
        return false;
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    *us = secs * INT64_C(1000000) + frac_us;
    *off_s = off;
    return true;
}

void proc_norm_format_time(int64_t us, char out[40])
{
    int64_t secs = us / 1000000, rem = us % 1000000;
    if (rem < 0) {
        rem += 1000000;
        secs--;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int h = (int)(sod / 3600), mi = (int)(sod % 3600 / 60), s = (int)(sod % 60);
    /* The year is clamped so the compiler can prove the text fits (times are range-checked to
     * 2000 .. now + 1 day long before they are formatted). */
    int yy = y < 0 ? 0 : (y > 9999 ? 9999 : (int)y);
    int r = (int)rem;
    m = m < 1 || m > 12 ? 1 : m;
    d = d < 1 || d > 31 ? 1 : d;
    if (r == 0) {
        snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02dZ", yy, m, d, h, mi, s);
    } else {
        snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", yy, m, d, h, mi, s, r);
    }
}

/* ---- fetched records (api_record) ---- */

const json_t *proc_norm_path(const json_t *obj, const char *path)
{
    char key[64];
    const char *p = path;

    while (obj != NULL && *p != '\0') {
        const char *dot = strchr(p, '.');
        size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);

        if (n >= sizeof(key)) {
            return NULL;
        }
        memcpy(key, p, n);
        key[n] = '\0';
        obj = get_member(obj, key);
        p += n + (dot != NULL ? 1 : 0);
    }
    return obj;
}

static const char *last_key(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot != NULL ? dot + 1 : path;
}

enum cm_rc proc_norm_path_num(const json_t *obj, const char *path, bool *present, double *out,
                              struct cm_err *err)
{
    const json_t *v = proc_norm_path(obj, path);

    *present = false;
    if (v == NULL) {
        return CM_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", proc_norm_safe_name(last_key(path)));
    }
    *out = json_number_value(v);
    *present = true;
    return CM_OK;
}

/* A time field of a spec'd record; has_off and off_s are set from an RFC 3339 offset. */
static enum cm_rc read_time(const json_t *rec, const char *path, enum proc_api_time t, int64_t *us,
                            bool *has_off, int32_t *off_s, struct cm_err *err)
{
    const json_t *v = proc_norm_path(rec, path);
    const char *key = proc_norm_safe_name(last_key(path));

    if (v == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", key);
    }
    if (t == PROC_API_T_EPOCH_S) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT64_C(100000000000)) {
            return cm_err_set(err, CM_INVALID, "bad_time: %s", key);
        }
        *us = (int64_t)json_integer_value(v) * INT64_C(1000000);
        return CM_OK;
    }
    if (!json_is_string(v)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: %s", key);
    }
    bool ok = t == PROC_API_T_DATE
                  ? proc_norm_parse_date(json_string_value(v), us)
                  : proc_norm_parse_time(json_string_value(v), us, has_off, off_s);
    return ok ? CM_OK : cm_err_set(err, CM_INVALID, "bad_time: %s", key);
}

static enum cm_rc walk_record(const struct proc_api_spec *spec, const json_t *rec,
                              struct proc_api_rec *r, struct cm_err *err)
{
    bool has_off = false, present;
    int32_t off = 0;
    enum cm_rc rc;
    const json_t *idv = proc_norm_path(rec, spec->id);

    if (!json_is_object(rec)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: record");
    }
    if (idv == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: %s", last_key(spec->id));
    }
    if (json_is_integer(idv) && json_integer_value(idv) >= 0) {
        snprintf(r->id, sizeof(r->id), "%" JSON_INTEGER_FORMAT, json_integer_value(idv));
    } else if (!json_is_string(idv) || !proc_norm_id_ok(json_string_value(idv)) ||
               !cm_strlcpy(r->id, json_string_value(idv), sizeof(r->id))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: %s", last_key(spec->id));
    }
    if ((rc = read_time(rec, spec->start, spec->time, &r->start_us, &has_off, &off, err)) !=
        CM_OK) {
        return rc;
    }
    r->end_us = r->start_us;
    if (spec->end != NULL) {
        bool h2 = false;
        int32_t o2 = 0;
        if ((rc = read_time(rec, spec->end, spec->time, &r->end_us, &h2, &o2, err)) != CM_OK) {
            return rc;
        }
    } else if (spec->duration_s != NULL) {
        double d;
        if ((rc = proc_norm_path_num(rec, spec->duration_s, &present, &d, err)) != CM_OK) {
            return rc;
        }
        if (!present || d < 0 || d > 86400.0 * 31) {
            return cm_err_set(err, CM_INVALID, "out_of_range: %s", last_key(spec->duration_s));
        }
        r->end_us = r->start_us + (int64_t)(d * 1e6);
    }
    if (spec->time == PROC_API_T_DATE) {
        r->end_us = r->start_us + INT64_C(86400000000);
    }
    if (spec->tz_offset != NULL) {
        const json_t *tz = proc_norm_path(rec, spec->tz_offset);
        char probe[40];
        int64_t ignored;
        bool tz_has = false;
        int32_t tz_off = 0;

        if (json_is_string(tz) && strlen(json_string_value(tz)) < 8) {
            snprintf(probe, sizeof(probe), "2000-01-01T00:00:00%s", json_string_value(tz));
            if (proc_norm_parse_time(probe, &ignored, &tz_has, &tz_off) && tz_has) {
                has_off = true;
                off = tz_off;
            }
        }
    }
    r->em.has_off = has_off;
    r->em.off_s = off;
    for (size_t i = 0; i < spec->n_metrics; i++) {
        const struct proc_api_metric *m = &spec->metrics[i];
        double v;
        if ((rc = proc_norm_path_num(rec, m->path, &present, &v, err)) != CM_OK) {
            return rc;
        }
        if (present && (rc = proc_norm_emit(&r->em, m->metric, v * m->scale, r->start_us,
                                            r->end_us, r->id, err)) != CM_OK) {
            return rc;
        }
    }
    return spec->extra != NULL ? spec->extra(rec, r, err) : CM_OK;
}

/* "<vendor>.deleted" (written by the fetcher for a vendor delete): tombstones of our stored
 * events of that object, {"deleted":[{"source_record_id","metric","start_time"}]}. The event id
 * only depends on vendor, vendor user, record id, metric and start, so each tombstone hits its
 * row; the value is not part of it (0). */
static enum cm_rc parse_deleted(const struct cm_raw_webhook *raw, struct proc_out *out,
                                struct cm_err *err)
{
    json_t *root;
    const json_t *arr, *e;
    size_t i;
    enum cm_rc rc = proc_norm_json_load(raw, &root, err);

    if (rc != CM_OK) {
        return rc;
    }
    if ((rc = proc_norm_get_arr(root, "deleted", &arr, err)) == CM_OK && arr == NULL) {
        rc = cm_err_set(err, CM_INVALID, "missing_field: deleted");
    }
    json_array_foreach(arr, i, e) {
        const char *srid, *metric;
        bool present, has_off;
        int64_t us = 0;
        int32_t off;

        if (rc != CM_OK) {
            break;
        }
        if ((rc = proc_norm_get_str(e, "source_record_id", true, &srid, err)) != CM_OK ||
            (rc = proc_norm_get_str(e, "metric", true, &metric, err)) != CM_OK ||
            (rc = proc_norm_get_time(e, "start_time", true, &present, &us, &has_off, &off, err)) !=
                CM_OK) {
            break;
        }
        rc = proc_out_add_sample(out, raw->vendor, raw->vendor_user_id, metric, 0, us, us, NULL,
                                 srid, true, err);
    }
    json_decref(root);
    return rc;
}

enum cm_rc proc_norm_api_parse(const struct cm_raw_webhook *raw, const struct proc_api_spec *specs,
                               size_t n_specs, struct proc_out *out, struct cm_err *err)
{
    const char *rt = raw->record_type;
    size_t vlen = strlen(raw->vendor);
    const struct proc_api_spec *spec = NULL;
    json_t *root;
    enum cm_rc rc;

    if (rt == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: record_type");
    }
    if (raw->vendor_user_id != NULL && proc_norm_id_ok(raw->vendor_user_id) &&
        strncmp(rt, raw->vendor, vlen) == 0 && strcmp(rt + vlen, ".deleted") == 0) {
        return parse_deleted(raw, out, err);
    }
    for (size_t i = 0; i < n_specs && strncmp(rt, raw->vendor, vlen) == 0 && rt[vlen] == '.';
         i++) {
        if (strcmp(rt + vlen + 1, specs[i].resource) == 0) {
            spec = &specs[i];
        }
    }
    if (spec == NULL) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(rt));
    }
    if (raw->vendor_user_id == NULL || !proc_norm_id_ok(raw->vendor_user_id)) {
        return cm_err_set(err, CM_INVALID, "missing_field: vendor_user_id");
    }
    if ((rc = proc_norm_json_load(raw, &root, err)) != CM_OK) {
        return rc;
    }
    const json_t *items = spec->items != NULL ? proc_norm_path(root, spec->items) : NULL;
    size_t n = spec->items == NULL ? 1 : json_array_size(items);
    if (spec->items != NULL && items != NULL && !json_is_array(items)) {
        rc = cm_err_set(err, CM_INVALID, "wrong_type: %s", last_key(spec->items));
    } else if (n > PROC_NORM_MAX_ITEMS) {
        rc = cm_err_set(err, CM_INVALID, "too_many_items");
    }
    for (size_t i = 0; i < n && rc == CM_OK; i++) {
        const json_t *rec = spec->items == NULL ? root : json_array_get(items, i);
        struct proc_api_rec r = {
            .em = { .out = out, .vendor = raw->vendor, .vendor_user_id = raw->vendor_user_id },
        };

        if (spec->record != NULL) {
            rc = spec->record(raw, rec, &r.em, err);
        } else {
            rc = walk_record(spec, rec, &r, err);
        }
    }
    json_decref(root);
    return rc;
}

enum cm_rc proc_norm_each(const json_t *arr,
                          enum cm_rc (*one)(const json_t *item, struct proc_out *out,
                                            struct cm_err *err),
                          struct proc_out *out, struct cm_err *err)
{
    size_t i;
    const json_t *n;
    enum cm_rc rc;

    if (!json_is_array(arr)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if (json_array_size(arr) > PROC_NORM_MAX_ITEMS) {
        return cm_err_set(err, CM_INVALID, "too_many_items");
    }
    json_array_foreach(arr, i, n) {
        if ((rc = one(n, out, err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

enum cm_rc proc_norm_extra_duration(const json_t *rec, const struct proc_api_rec *r,
                                    struct cm_err *err)
{
    return proc_norm_emit(&r->em, "exercise_duration", (double)(r->end_us - r->start_us) / 60e6,
                          r->start_us, r->end_us, r->id, err);
}

enum cm_rc proc_norm_entry(const struct cm_raw_webhook *raw,
                           enum cm_rc (*parse_root)(const json_t *root, struct proc_out *out,
                                                    struct cm_err *err),
                           const struct proc_api_spec *specs, size_t n_specs,
                           struct proc_out *out, struct cm_err *err)
{
    json_t *root;
    enum cm_rc rc;

    if (raw->kind == CM_RAW_API_RECORD) {
        return proc_norm_api_parse(raw, specs, n_specs, out, err);
    }
    if ((rc = proc_norm_json_load(raw, &root, err)) != CM_OK) {
        return rc;
    }
    rc = parse_root(root, out, err);
    json_decref(root);
    return rc;
}
