/* Golden fixtures: every file in tests/fixtures/<vendor>/ (except *.expected and README.md) is
 * normalized as a webhook of that vendor and the output, one line per item, sorted, must equal
 * <file>.expected exactly:
 *   metric|unit|start_iso_utc|end_iso_utc|value|source_record_id|event_id
 *   fetch|vendor_user_id|resource|event_type|object_id|url|start_iso_utc|end_iso_utc
 *   lifecycle|vendor_user_id|action
 *   handshake
 * The same fixtures are posted by the end-to-end tests and `make run`, so every fixture of a
 * vendor also carries that vendor's agreed test user id (checked here).
 * Files named api_<resource>.json are vendor API responses: they are normalized as kind
 * api_record with record_type "<vendor>.<resource>", the fixture user as vendor_user_id and the
 * request path "/fixture/2026-11-20.json" (Fitbit reads the day from the path).
 * PROC_FIXTURES_UPDATE=1 rewrites the .expected files (review the diff before committing). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_suites.h"
#include "proc_vendors.h"

static const struct {
    const char *vendor;
    const char *user;
    bool data_bearing;
} fixture_vendors[] = {
    { "garmin", "garmin-user-1", true },   { "terra", "terra-user-1", true },
    { "app", "app-user-1", true },         { "whoop", "10001", false },
    { "oura", "oura-user-1", false },      { "polar", "20001", false },
    { "fitbit", "FITBIT1", false },        { "google_health", "gh-user-1", false },
    { "withings", "30001", false },        { "strava", "40001", false },
};

struct lines {
    char **v;
    size_t n, cap;
};

static void lines_add(struct lines *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 64 : l->cap * 2;
        l->v = cm_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = cm_xstrdup(s);
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Integers as such, anything else as the shortest "%.*g" that reads back as the same double. */
static void format_value(double v, char out[40])
{
    if (v == (double)(int64_t)v && v > -1e15 && v < 1e15) {
        snprintf(out, 40, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            return;
        }
    }
}

static void format_opt_time(bool has, int64_t us, char out[40])
{
    if (has) {
        proc_norm_format_time(us, out);
    } else {
        out[0] = '\0';
    }
}

/* Render `out` as sorted lines, each ending in '\n' (returns a new string). */
static char *render(const struct proc_out *out)
{
    struct lines l = { 0 };
    char line[2048], a[40], b[40], v[40];
    size_t total = 1;

    for (size_t i = 0; i < out->n_samples; i++) {
        const struct proc_sample *s = &out->samples[i];
        proc_norm_format_time(s->start_us, a);
        proc_norm_format_time(s->end_us, b);
        format_value(s->value, v);
        snprintf(line, sizeof(line), "%s|%s|%s|%s|%s|%s|%s", s->metric, s->unit, a, b, v,
                 s->source_record_id, s->event_id);
        lines_add(&l, line);
    }
    for (size_t i = 0; i < out->n_fetches; i++) {
        const struct proc_fetch *f = &out->fetches[i];
        format_opt_time(f->has_start, f->start_us, a);
        format_opt_time(f->has_end, f->end_us, b);
        snprintf(line, sizeof(line), "fetch|%s|%s|%s|%s|%s|%s|%s", f->vendor_user_id, f->resource,
                 f->event_type, f->object_id, f->url, a, b);
        lines_add(&l, line);
    }
    for (size_t i = 0; i < out->n_lifecycle; i++) {
        snprintf(line, sizeof(line), "lifecycle|%s|%s", out->lifecycle[i].vendor_user_id,
                 out->lifecycle[i].action);
        lines_add(&l, line);
    }
    if (out->is_handshake) {
        lines_add(&l, "handshake");
    }
    if (l.n > 1) {
        qsort(l.v, l.n, sizeof(*l.v), cmp_str);
    }
    for (size_t i = 0; i < l.n; i++) {
        total += strlen(l.v[i]) + 1;
    }
    char *text = cm_xmalloc(total);
    size_t pos = 0;
    for (size_t i = 0; i < l.n; i++) {
        size_t n = strlen(l.v[i]);
        memcpy(text + pos, l.v[i], n);
        text[pos + n] = '\n';
        pos += n + 1;
    }
    text[pos] = '\0';
    lines_free(&l);
    return text;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    if (fp == NULL) {
        return NULL;
    }
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    ck_assert_int_ge(n, 0);
    rewind(fp);
    buf = cm_xmalloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Every output item must belong to the vendor's agreed fixture user. */
static void check_users(const struct proc_out *out, const char *user, const char *file)
{
    for (size_t i = 0; i < out->n_samples; i++) {
        ck_assert_msg(strcmp(out->samples[i].vendor_user_id, user) == 0, "%s: sample user", file);
    }
    for (size_t i = 0; i < out->n_fetches; i++) {
        ck_assert_msg(strcmp(out->fetches[i].vendor_user_id, user) == 0, "%s: fetch user", file);
    }
    for (size_t i = 0; i < out->n_lifecycle; i++) {
        ck_assert_msg(strcmp(out->lifecycle[i].vendor_user_id, user) == 0, "%s: lifecycle user",
                      file);
    }
}

/* Normalize one fixture and compare with its .expected. Returns the number of samples. */
static size_t check_fixture(int idx, const char *dir, const char *name)
{
    char path[1024], exp_path[1100];
    size_t len = 0, exp_len = 0;
    struct proc_out out, again;
    struct cm_err err = { { 0 } };

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(exp_path, sizeof(exp_path), "%s.expected", path);
    char *body = read_file(path, &len);
    ck_assert_msg(body != NULL, "cannot read %s", path);

    struct cm_raw_webhook raw = proc_test_raw(fixture_vendors[idx].vendor, body, len);
    char record_type[128];
    raw.content_type = ends_with(name, ".form") ? (char *)"application/x-www-form-urlencoded"
                                                : (char *)"application/json";
    if (strncmp(name, "api_", 4) == 0) {
        snprintf(record_type, sizeof(record_type), "%s.%.*s", fixture_vendors[idx].vendor,
                 (int)(strlen(name) - 9), name + 4); /* api_<resource>.json */
        raw.kind = CM_RAW_API_RECORD;
        raw.record_type = record_type;
        raw.vendor_user_id = (char *)fixture_vendors[idx].user;
        raw.path = (char *)"/fixture/2026-11-20.json";
    }
    proc_out_init(&out);
    proc_out_init(&again);
    enum cm_rc rc = proc_normalize(&raw, &out, &err);
    ck_assert_msg(rc == CM_OK, "%s: %s", name, err.msg);
    check_users(&out, fixture_vendors[idx].user, name);
    char *got = render(&out);

    /* Determinism: a second run over the same bytes gives the same events and ids. */
    ck_assert_int_eq(proc_normalize(&raw, &again, &err), CM_OK);
    char *got_again = render(&again);
    ck_assert_str_eq(got, got_again);

    if (getenv("PROC_FIXTURES_UPDATE") != NULL) {
        FILE *fp = fopen(exp_path, "wb");
        ck_assert_ptr_nonnull(fp);
        fputs(got, fp);
        fclose(fp);
    }
    char *expected = read_file(exp_path, &exp_len);
    ck_assert_msg(expected != NULL, "missing %s", exp_path);
    ck_assert_msg(strcmp(got, expected) == 0,
                  "%s differs from its .expected:\n--- got\n%s--- expected\n%s", name, got,
                  expected);

    size_t n = out.n_samples;
    free(expected);
    free(got_again);
    free(got);
    proc_out_fini(&again);
    proc_out_fini(&out);
    free(body);
    return n;
}

START_TEST(test_fixtures_match_golden_output)
{
    char dir[512];
    struct lines names = { 0 };
    size_t samples = 0, api_samples = 0;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/%s", AUREN_FIXTURES_DIR, fixture_vendors[_i].vendor);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "no fixture directory %s", dir);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || ends_with(de->d_name, ".expected") ||
            strcmp(de->d_name, "README.md") == 0) {
            continue;
        }
        lines_add(&names, de->d_name);
    }
    closedir(d);
    ck_assert_msg(names.n > 0, "no fixtures for %s", fixture_vendors[_i].vendor);
    qsort(names.v, names.n, sizeof(*names.v), cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        size_t n = check_fixture(_i, dir, names.v[i]);
        if (strncmp(names.v[i], "api_", 4) == 0) {
            ck_assert_msg(n > 0, "%s: a fetched record gives samples", names.v[i]);
            api_samples += n;
        } else {
            samples += n;
        }
    }
    /* Data-bearing vendors' webhooks must produce samples; notify-only ones' never do. */
    if (fixture_vendors[_i].data_bearing) {
        ck_assert_uint_gt(samples, 0);
    } else {
        ck_assert_uint_eq(samples, 0);
    }
    lines_free(&names);
}
END_TEST

Suite *proc_fixtures_suite(void)
{
    Suite *s = suite_create("proc_fixtures");
    TCase *tc = tcase_create("golden");

    tcase_add_loop_test(tc, test_fixtures_match_golden_output, 0,
                        (int)CM_ARRAY_LEN(fixture_vendors));
    suite_add_tcase(s, tc);
    return s;
}
