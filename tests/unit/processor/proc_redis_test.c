/* Unit tests of the Redis writer's pure parts: member and value formatting (every value reads
 * back as the same double, in the shortest of %.15g / %.17g), series keys, scores, and REDIS_URL
 * parsing; and its behaviour when Redis is unreachable (writes skipped, never blocking). With
 * AUREN_TEST_REDIS_URL (a real Redis; `make unit-tests` passes database 15 of the local stack's)
 * the upsert semantics: replay, correction, tombstone, neighbours at the same score, trim, TTL,
 * and the replies read after the next batch was sent. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm/buf.h"
#include "cm/metrics.h"
#include "proc_redis.h"
#include "../check_run.h"

/* The writer's failure counters, registered once per process; read back from the rendered
 * metrics. */
#define ERRORS "\nauren_test_redis_errors_total "
#define SKIPPED "\nauren_test_redis_skipped_total "

static struct cm_metric *redis_errors(void)
{
    static struct cm_metric *m;

    if (m == NULL) {
        m = cm_metric_counter("auren_test_redis_errors_total", "test", 0);
    }
    return m;
}

static struct cm_metric *redis_skipped(void)
{
    static struct cm_metric *m;

    if (m == NULL) {
        m = cm_metric_counter("auren_test_redis_skipped_total", "test", 0);
    }
    return m;
}

static double counter_value(const char *series_prefix)
{
    struct cm_buf out;
    const char *p;
    double v = 0;

    (void)redis_errors();
    (void)redis_skipped();
    cm_buf_init(&out, 0);
    cm_metrics_render(&out);
    ck_assert_int_eq(cm_buf_append(&out, "", 1), CM_OK);
    p = strstr((const char *)out.data, series_prefix);
    if (p != NULL) {
        v = strtod(p + strlen(series_prefix), NULL);
    }
    cm_buf_fini(&out);
    return v;
}

static double read_back(const char *member)
{
    const char *bar = strchr(member, '|');

    ck_assert_ptr_nonnull(bar);
    return strtod(bar + 1, NULL);
}

START_TEST(test_member_format_simple_values)
{
    char m[80];

    ck_assert_uint_eq(proc_redis_member("0123456789abcdef0123456789abcdef", 72.0, m, sizeof(m)),
                      strlen("0123456789abcdef0123456789abcdef|72"));
    ck_assert_str_eq(m, "0123456789abcdef0123456789abcdef|72");
    proc_redis_member("e1", 0.1, m, sizeof(m));
    ck_assert_str_eq(m, "e1|0.1");
    proc_redis_member("e1", -3.5, m, sizeof(m));
    ck_assert_str_eq(m, "e1|-3.5");
    proc_redis_member("e1", 1e21, m, sizeof(m));
    ck_assert_str_eq(m, "e1|1e+21");
}
END_TEST

START_TEST(test_value_needs_17_digits)
{
    char v[32];
    double third = 1.0 / 3.0;

    proc_redis_format_value(third, v, sizeof(v));
    ck_assert_str_eq(v, "0.33333333333333331"); /* %.15g would lose the last bits */
    ck_assert(strtod(v, NULL) == third);
    proc_redis_format_value(0.1 + 0.2, v, sizeof(v));
    ck_assert_str_eq(v, "0.30000000000000004");
}
END_TEST

START_TEST(test_value_round_trips)
{
    const double values[] = { 0.0, -0.0, 1.0, 98.6, 1e-300, DBL_MIN, DBL_MAX, -DBL_MAX,
                              5e-324, 123456789.123456789, 2.0 / 3.0, 59.999999999999993,
                              1e15 + 0.3, 36.6 };
    char m[80];

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        proc_redis_member("abc", values[i], m, sizeof(m));
        ck_assert_msg(read_back(m) == values[i], "value %zu did not round-trip: %s", i, m);
        ck_assert_msg(strlen(strchr(m, '|') + 1) <= 24, "value %zu too long: %s", i, m);
    }
}
END_TEST

START_TEST(test_value_random_round_trips)
{
    unsigned seed = 12345;
    char v[32];

    for (int i = 0; i < 100000; i++) {
        uint64_t bits = 0;
        double d;

        for (int k = 0; k < 4; k++) {
            bits = (bits << 16) ^ (uint64_t)(rand_r(&seed) & 0xffff);
        }
        memcpy(&d, &bits, sizeof(d));
        if (!isfinite(d)) {
            continue;
        }
        proc_redis_format_value(d, v, sizeof(v));
        ck_assert_msg(strtod(v, NULL) == d, "did not round-trip: %s", v);
    }
}
END_TEST

/* Integral values take a path without snprintf: the text must stay what "%.15g" gives (members
 * written before must keep matching). */
START_TEST(test_value_integral_same_as_printf)
{
    const double values[] = { 0.0, -0.0, 1.0, -1.0, 72.0, 10000.0, 123456789.0, 1e14,
                              999999999999999.0, -999999999999999.0, 1e15, -1e15, 1e16, 4096.5 };
    char v[32];
    char want[32];

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        snprintf(want, sizeof(want), "%.15g", values[i]);
        ck_assert_uint_eq(proc_redis_format_value(values[i], v, sizeof(v)), strlen(want));
        ck_assert_str_eq(v, want);
    }
}
END_TEST

START_TEST(test_key_and_score)
{
    char key[32];

    ck_assert(proc_redis_key("u1", "heart_rate", key, sizeof(key)));
    ck_assert_str_eq(key, "ts:u1:heart_rate");
    ck_assert(!proc_redis_key("a-rather-long-user-id", "heart_rate", key, sizeof(key)));
    ck_assert_int_eq(proc_redis_score_ms(1700000000123456LL), 1700000000123LL);
    ck_assert_int_eq(proc_redis_score_ms(0), 0);
    ck_assert_int_eq(proc_redis_score_ms(-1), -1); /* floor, not truncation */
    ck_assert_int_eq(proc_redis_score_ms(-1000), -1);
    ck_assert_int_eq(proc_redis_score_ms(-1001), -2);
}
END_TEST

START_TEST(test_url_defaults_and_db)
{
    struct proc_redis_url u;
    struct cm_err err;

    ck_assert_int_eq(proc_redis_url_parse("redis://127.0.0.1:6379/0", &u, &err), CM_OK);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    ck_assert_str_eq(u.password, "");
    ck_assert_int_eq(proc_redis_url_parse("redis://cache.local", &u, &err), CM_OK);
    ck_assert_str_eq(u.host, "cache.local");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(proc_redis_url_parse("redis://h:16379/3", &u, &err), CM_OK);
    ck_assert_int_eq(u.port, 16379);
    ck_assert_int_eq(u.db, 3);
    ck_assert_int_eq(proc_redis_url_parse("redis://[::1]:7000/2", &u, &err), CM_OK);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_int_eq(u.db, 2);
}
END_TEST

START_TEST(test_url_credentials)
{
    struct proc_redis_url u;
    struct cm_err err;

    ck_assert_int_eq(proc_redis_url_parse("redis://:s3cret@h:1/0", &u, &err), CM_OK);
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "s3cret");
    ck_assert_str_eq(u.host, "h");
    ck_assert_int_eq(proc_redis_url_parse("redis://app:p%40ss%3A@h", &u, &err), CM_OK);
    ck_assert_str_eq(u.user, "app");
    ck_assert_str_eq(u.password, "p@ss:");
    ck_assert_int_eq(proc_redis_url_parse("redis://app:a@b@h", &u, &err), CM_OK);
    ck_assert_str_eq(u.password, "a@b");
    ck_assert_str_eq(u.host, "h");
}
END_TEST

START_TEST(test_url_rejects)
{
    const char *bad[] = { "http://h:1", "rediss://h", "redis://", "redis://h:0", "redis://h:70000",
                          "redis://h:12x", "redis://h/abc", "redis://user@h", "redis://:p%4@h",
                          "redis://[::1", "redis://[::1]x/0", "redis://h:/0",
                          "redis://h:12345678901234567890/0",
                          "redis://[0123456789012345678901234567890123456789012345678901234567890"
                          "1234567890123456789012345678901234567890123456789012345678901234567890"
                          "1234567890123456789012345678901234567890123456789012345678901234567890"
                          "1234567890123456789012345678901234567890123456789012345678901234567890"
                          "123456789012345678901234567890123456789]:1",
                          "redis://0123456789012345678901234567890123456789012345678901234567890"
                          "1234567890123456789012345678901234567890123456789012345678901234567890"
                          "1234567890123456789012345678901234567890123456789012345678901234567890"
                          "1234567890123456789012345678901234567890123456789012345678901234567890"
                          "123456789012345678901234567890123456789:1" };
    struct proc_redis_url u;
    struct cm_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(proc_redis_url_parse(bad[i], &u, &err) == CM_INVALID, "accepted %s", bad[i]);
        ck_assert_ptr_nonnull(strstr(err.msg, "REDIS_URL"));
        ck_assert_ptr_null(strstr(err.msg, "p%4")); /* never echoes the secret */
    }
}
END_TEST

START_TEST(test_unreachable_redis_skips_and_discards)
{
    struct cm_err err;
    /* port 1 on loopback: connection refused at once */
    struct proc_redis *r = proc_redis_new("redis://127.0.0.1:1/0", 300, 10, NULL, NULL, &err);

    ck_assert_ptr_nonnull(r);
    proc_redis_add(r, "u1", "heart_rate", "e1", 60.0, 1000, false);
    proc_redis_add(r, "u1", "heart_rate", "e2", 61.0, 2000, false);
    ck_assert_uint_eq(proc_redis_pending(r), 2);
    ck_assert_uint_eq(proc_redis_flush(r), 0);
    ck_assert_uint_eq(proc_redis_pending(r), 0);
    ck_assert(!proc_redis_connected(r));
    proc_redis_add(r, "u1", "heart_rate", "e3", 62.0, 3000, false);
    proc_redis_discard(r);
    ck_assert_uint_eq(proc_redis_pending(r), 0);
    proc_redis_free(r);
    proc_redis_free(NULL);
    ck_assert_ptr_null(proc_redis_new("nope://", 300, 10, NULL, NULL, &err));
}
END_TEST

/* ---- against a real Redis (AUREN_TEST_REDIS_URL) ---- */

#define EV_A "0123456789abcdef0123456789abcdef"
#define EV_B "0123456789abcdef0123456789abcdee" /* sorts right before EV_A */
#define EV_C "0123456789abcdef0123456789abcdf0" /* sorts right after EV_A */
#define KEY "ts:redis-test-user:heart_rate"

static redisContext *peek_connect(const struct proc_redis_url *u)
{
    redisContext *c = redisConnect(u->host, u->port);
    redisReply *rep;

    ck_assert(c != NULL && c->err == 0);
    rep = redisCommand(c, "SELECT %d", u->db);
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
    return c;
}

/* The series as "member@score,member@score,..." in rank order. */
static void series(redisContext *c, char *out, size_t outsz)
{
    redisReply *rep = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", KEY);
    size_t o = 0;

    ck_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY);
    out[0] = '\0';
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        int n = snprintf(out + o, outsz - o, "%s%s@%s", o > 0 ? "," : "", rep->element[i]->str,
                         rep->element[i + 1]->str);

        ck_assert(n > 0 && (size_t)n < outsz - o);
        o += (size_t)n;
    }
    freeReplyObject(rep);
}

/* false (and a note) when AUREN_TEST_REDIS_URL is unset; else its parsed form in u. */
static bool live_redis(const char *url, struct proc_redis_url *u)
{
    struct cm_err err;

    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, "proc_redis: AUREN_TEST_REDIS_URL unset, real-Redis cases skipped\n");
        return false;
    }
    ck_assert_int_eq(proc_redis_url_parse(url, u, &err), CM_OK);
    return true;
}

START_TEST(test_upsert_semantics_on_real_redis)
{
    const char *url = getenv("AUREN_TEST_REDIS_URL");
    struct proc_redis_url u;
    struct cm_err err;
    struct proc_redis *r;
    redisContext *c;
    redisReply *rep;
    char got[2048];

    if (!live_redis(url, &u)) {
        return;
    }
    c = peek_connect(&u);
    freeReplyObject(redisCommand(c, "DEL %s", KEY));
    r = proc_redis_new(url, 300, 4, NULL, NULL, &err);
    ck_assert_ptr_nonnull(r);

    /* neighbours at the same score (and one at another score) must survive every step */
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_B, 50.0, 1000000, false);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_C, 52.0, 1000000, false);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 60.0, 1000000, false);
    ck_assert_uint_eq(proc_redis_flush(r), 3);
    ck_assert_uint_eq(proc_redis_in_flight(r), 3);
    ck_assert_uint_eq(proc_redis_wait(r), 3);
    ck_assert_uint_eq(proc_redis_in_flight(r), 0);
    series(c, got, sizeof(got));
    ck_assert_str_eq(got, EV_B "|50@1000," EV_A "|60@1000," EV_C "|52@1000");

    /* a replay changes nothing; a correction replaces the value (one member per event) */
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 60.0, 1000000, false);
    ck_assert_uint_eq(proc_redis_flush(r), 1);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 61.5, 1000000, false);
    ck_assert_uint_eq(proc_redis_flush(r), 1); /* reads the previous batch's replies first */
    ck_assert_uint_eq(proc_redis_in_flight(r), 1);
    ck_assert_uint_eq(proc_redis_wait(r), 1);
    series(c, got, sizeof(got));
    ck_assert_str_eq(got, EV_B "|50@1000," EV_A "|61.5@1000," EV_C "|52@1000");

    /* stale members of the event (two values left by an older writer) all go */
    freeReplyObject(redisCommand(c, "ZADD %s 1000 %s|70 1000 %s|71", KEY, EV_A, EV_A));
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 62.0, 1000000, false);
    proc_redis_flush(r);
    proc_redis_wait(r);
    series(c, got, sizeof(got));
    ck_assert_str_eq(got, EV_B "|50@1000," EV_A "|62@1000," EV_C "|52@1000");

    /* a tombstone removes the event's member only, twice is harmless */
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 0.0, 1000000, true);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 0.0, 1000000, true);
    ck_assert_uint_eq(proc_redis_flush(r), 2);
    ck_assert_uint_eq(proc_redis_wait(r), 2);
    series(c, got, sizeof(got));
    ck_assert_str_eq(got, EV_B "|50@1000," EV_C "|52@1000");

    /* trim to the newest 4 (MAX_TIMESERIES_ENTRIES) and a TTL on the key */
    for (int i = 0; i < 5; i++) {
        char ev[33];

        snprintf(ev, sizeof(ev), "%031d%d", 0, i);
        proc_redis_add(r, "redis-test-user", "heart_rate", ev, 70.0 + i, 2000000 + i * 1000,
                       false);
    }
    proc_redis_flush(r);
    proc_redis_free(r); /* waits for the replies in flight */
    series(c, got, sizeof(got));
    ck_assert_str_eq(got, "00000000000000000000000000000001|71@2001,"
                          "00000000000000000000000000000002|72@2002,"
                          "00000000000000000000000000000003|73@2003,"
                          "00000000000000000000000000000004|74@2004");
    rep = redisCommand(c, "TTL %s", KEY);
    ck_assert(rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 &&
              rep->integer <= 300);
    freeReplyObject(rep);
    freeReplyObject(redisCommand(c, "DEL %s", KEY));
    redisFree(c);
}
END_TEST

/* A series key that does not fit is counted as a skipped write and never stored. */
START_TEST(test_oversized_key_is_skipped)
{
    char user[600];
    struct cm_err err;
    struct proc_redis *r;

    memset(user, 'u', sizeof(user) - 1);
    user[sizeof(user) - 1] = '\0';
    r = proc_redis_new("redis://127.0.0.1:1/0", 300, 10, NULL, redis_skipped(), &err);
    ck_assert_ptr_nonnull(r);
    double before = counter_value(SKIPPED);
    proc_redis_add(r, user, "heart_rate", "e1", 60.0, 1000, false);
    ck_assert_uint_eq(proc_redis_pending(r), 0);
    ck_assert_double_eq(counter_value(SKIPPED), before + 1);
    proc_redis_free(r);
}
END_TEST

/* A real Redis that refuses the connection's setup: a wrong password (with and without a user
 * name: the stack's Redis has none configured, so AUTH fails either way) or a database index it
 * does not have. The writes are skipped and counted, the writer is not connected, and the error
 * is counted once per attempt. */
START_TEST(test_setup_refused_by_real_redis)
{
    const char *url = getenv("AUREN_TEST_REDIS_URL");
    struct proc_redis_url u;
    struct cm_err err;
    char bad[3][320];

    if (!live_redis(url, &u)) {
        return;
    }
    snprintf(bad[0], sizeof(bad[0]), "redis://:wrong@%s:%d/%d", u.host, u.port, u.db);
    snprintf(bad[1], sizeof(bad[1]), "redis://nobody:wrong@%s:%d/%d", u.host, u.port, u.db);
    snprintf(bad[2], sizeof(bad[2]), "redis://%s:%d/999999", u.host, u.port);
    for (int i = 0; i < 3; i++) {
        struct proc_redis *r = proc_redis_new(bad[i], 300, 10, redis_errors(), redis_skipped(),
                                              &err);
        double errors = counter_value(ERRORS), skipped = counter_value(SKIPPED);

        ck_assert_ptr_nonnull(r);
        proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 60.0, 1000000, false);
        ck_assert_msg(proc_redis_flush(r) == 0, "%s was accepted", bad[i]);
        ck_assert(!proc_redis_connected(r));
        ck_assert_double_eq(counter_value(ERRORS), errors + 1);
        ck_assert_double_eq(counter_value(SKIPPED), skipped + 1);
        proc_redis_free(r);
    }
}
END_TEST

/* SCRIPT FLUSH on the server (a failover to an empty replica does the same): the batch's
 * EVALSHA calls fail with NOSCRIPT, they are counted as skipped, and the writer reconnects,
 * loads the script again and applies the next batch. */
START_TEST(test_noscript_reloads_the_script)
{
    const char *url = getenv("AUREN_TEST_REDIS_URL");
    struct proc_redis_url u;
    struct cm_err err;
    struct proc_redis *r;
    redisContext *c;
    char got[256];

    if (!live_redis(url, &u)) {
        return;
    }
    c = peek_connect(&u);
    freeReplyObject(redisCommand(c, "DEL %s", KEY));
    r = proc_redis_new(url, 300, 10, redis_errors(), redis_skipped(), &err);
    ck_assert_ptr_nonnull(r);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_B, 50.0, 1000000, false);
    ck_assert_uint_eq(proc_redis_flush(r), 1);
    ck_assert_uint_eq(proc_redis_wait(r), 1);

    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    double errors = counter_value(ERRORS), skipped = counter_value(SKIPPED);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 60.0, 1000000, false);
    ck_assert_uint_eq(proc_redis_flush(r), 1);
    ck_assert_uint_eq(proc_redis_wait(r), 0);
    ck_assert(!proc_redis_connected(r));
    ck_assert_double_eq(counter_value(SKIPPED), skipped + 1);
    ck_assert_double_ge(counter_value(ERRORS), errors + 2); /* the reply, then the drop */

    /* the reconnect waits for its backoff (RECONNECT_MIN_US) */
    for (int i = 0; i < 200 && !proc_redis_connected(r); i++) {
        proc_redis_add(r, "redis-test-user", "heart_rate", EV_C, 52.0, 1000000, false);
        if (proc_redis_flush(r) == 0) {
            usleep(20 * 1000);
        }
    }
    ck_assert(proc_redis_connected(r));
    ck_assert_uint_eq(proc_redis_wait(r), 1);
    series(c, got, sizeof(got));
    ck_assert_str_eq(got, EV_B "|50@1000," EV_C "|52@1000");
    proc_redis_free(r);
    freeReplyObject(redisCommand(c, "DEL %s", KEY));
    redisFree(c);
}
END_TEST

/* The connection is killed by the server between two batches: the next batch is written into a
 * dead link, its replies never come, and it is counted as skipped (not applied), never as
 * applied. */
START_TEST(test_killed_connection_skips_the_batch)
{
    const char *url = getenv("AUREN_TEST_REDIS_URL");
    struct proc_redis_url u;
    struct cm_err err;
    struct proc_redis *r;
    redisContext *c;
    redisReply *rep;

    if (!live_redis(url, &u)) {
        return;
    }
    signal(SIGPIPE, SIG_IGN); /* the write into the dead link must fail, not kill the test */
    c = peek_connect(&u);
    r = proc_redis_new(url, 300, 10, redis_errors(), redis_skipped(), &err);
    ck_assert_ptr_nonnull(r);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_B, 50.0, 1000000, false);
    ck_assert_uint_eq(proc_redis_flush(r), 1);
    ck_assert_uint_eq(proc_redis_wait(r), 1);

    rep = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
    ck_assert(rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 1);
    freeReplyObject(rep);
    double skipped = counter_value(SKIPPED);
    proc_redis_add(r, "redis-test-user", "heart_rate", EV_A, 60.0, 1000000, false);
    size_t sent = proc_redis_flush(r);
    ck_assert_uint_eq(proc_redis_wait(r), 0);
    ck_assert_uint_le(sent, 1);
    ck_assert(!proc_redis_connected(r));
    ck_assert_double_eq(counter_value(SKIPPED), skipped + 1);
    proc_redis_free(r);
    freeReplyObject(redisCommand(c, "DEL %s", KEY));
    redisFree(c);
}
END_TEST

static Suite *proc_redis_suite(void)
{
    Suite *s = suite_create("proc_redis");
    TCase *fmt = tcase_create("member_format");
    TCase *url = tcase_create("url");
    TCase *down = tcase_create("unreachable");
    TCase *live = tcase_create("real_redis");

    tcase_add_test(fmt, test_member_format_simple_values);
    tcase_add_test(fmt, test_value_needs_17_digits);
    tcase_add_test(fmt, test_value_round_trips);
    tcase_add_test(fmt, test_value_random_round_trips);
    tcase_add_test(fmt, test_value_integral_same_as_printf);
    tcase_add_test(fmt, test_key_and_score);
    suite_add_tcase(s, fmt);
    tcase_add_test(url, test_url_defaults_and_db);
    tcase_add_test(url, test_url_credentials);
    tcase_add_test(url, test_url_rejects);
    suite_add_tcase(s, url);
    tcase_add_test(down, test_unreachable_redis_skips_and_discards);
    tcase_add_test(down, test_oversized_key_is_skipped);
    suite_add_tcase(s, down);
    tcase_add_test(live, test_upsert_semantics_on_real_redis);
    tcase_add_test(live, test_setup_refused_by_real_redis);
    tcase_add_test(live, test_noscript_reloads_the_script);
    tcase_add_test(live, test_killed_connection_skips_the_batch);
    suite_add_tcase(s, live);
    return s;
}

int main(void)
{
    return check_run(proc_redis_suite());
}
