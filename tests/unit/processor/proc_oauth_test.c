/* proc_oauth against real parts under fault: the tokens of each connection state, PostgreSQL
 * unreachable, a wrong password, a missing table, a failing or skipped UPDATE of a rotated token
 * (triggers), the token endpoint of the fake vendor answering 5xx, garbage, no access_token,
 * invalid_grant (Withings' own form too) or nothing at all, a refresh lock held by another
 * replica, and a Redis that refuses, answers errors or goes away. Needs AUREN_TEST_DATABASE_URL
 * (and AUREN_TEST_REDIS_URL or a private redis-server, proc_fetch_fx.h). */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/log.h"
#include "cm/vault.h"
#include "proc_fetch_fx.h"
#include "proc_oauth.h"
#include "proc_redis.h"

static bool enabled;
static struct proc_cfg cfg;
static struct cm_vault *vault;
static struct proc_oauth *oauth;
static int port;
static const char *db_url;

static void setup(void)
{
    struct cm_err err = { { 0 } };

    if (!enabled) {
        return;
    }
    port = proc_fx_fake_start();
    db_url = proc_fx_db_setup();
    proc_fx_cfg(&cfg, port, db_url);
    vault = cm_vault_new(FX_KEYS, &err);
    ck_assert_ptr_nonnull(vault);
    oauth = proc_oauth_new(&cfg, vault, &err);
    ck_assert_ptr_nonnull(oauth);
}

static void teardown(void)
{
    if (!enabled) {
        return;
    }
    proc_oauth_free(oauth);
    oauth = NULL;
    cm_vault_free(vault);
    vault = NULL;
    proc_fx_db_teardown();
    proc_fx_fake_stop();
    proc_fx_redis_stop();
}

/* A fresh vendor user id, so runs against one Redis never share a lock or a bucket. */
static const char *vuid(char out[40], const char *tag)
{
    char id[33];

    cm_random_id(id);
    snprintf(out, 40, "%s-%.12s", tag, id);
    return out;
}

static void load_ok(const char *vendor, const char *u, struct proc_tokens *t)
{
    struct cm_err err = { { 0 } };

    ck_assert_int_eq(proc_oauth_load(oauth, vendor, u, t, &err), CM_OK);
    ck_assert_int_eq(t->state, PROC_TOKEN_OK);
}

static void row(const char *vendor, const char *u, const char *col, char *out, size_t outsz)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT %s FROM connections WHERE vendor = '%s' AND "
             "vendor_user_id = '%s'", col, vendor, u);
    proc_fx_db_value(sql, out, outsz);
}

START_TEST(test_load_reports_each_connection_state)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    char u[6][40], sql[256];

    if (!enabled) {
        return;
    }
    proc_fx_add_conn(FX_KEYS, "oura", vuid(u[0], "ok"), "user-a", "acc-1", "ref-1", 3600);
    proc_fx_add_conn(FX_KEYS, "oura", vuid(u[1], "rv"), "user-b", "acc-2", "ref-2", 3600);
    proc_fx_add_conn(FX_KEYS, "oura", vuid(u[2], "rc"), "user-c", "acc-3", "ref-3", 3600);
    proc_fx_add_conn(FX_OTHER_KEYS, "oura", vuid(u[3], "key"), "user-d", "acc-4", "ref-4", 3600);
    proc_fx_add_conn(FX_KEYS, "oura", vuid(u[4], "acc"), "user-e", "acc-5", NULL, 0);
    snprintf(sql, sizeof(sql), "UPDATE connections SET status = 'revoked' WHERE vendor_user_id "
             "= '%s'; UPDATE connections SET status = 'reconsent_required' WHERE vendor_user_id "
             "= '%s'", u[1], u[2]);
    proc_fx_db_exec(sql);
    snprintf(sql, sizeof(sql), "INSERT INTO connections (vendor, vendor_user_id, user_id) VALUES"
             " ('oura', '%s', 'user-f')", vuid(u[5], "none"));
    proc_fx_db_exec(sql);

    load_ok("oura", u[0], &t);
    ck_assert_str_eq(t.access, "acc-1");
    ck_assert_str_eq(t.refresh, "ref-1");
    ck_assert_str_eq(t.user_id, "user-a");
    ck_assert_int_gt(t.expires_at_us, cm_now_us());
    ck_assert_int_eq(proc_oauth_load(oauth, "oura", u[1], &t, &err), CM_OK);
    ck_assert_int_eq(t.state, PROC_TOKEN_REVOKED);
    ck_assert_int_eq(proc_oauth_load(oauth, "oura", u[2], &t, &err), CM_OK);
    ck_assert_int_eq(t.state, PROC_TOKEN_RECONSENT);
    /* sealed under a key this process does not hold: unreadable, nothing left in t */
    ck_assert_int_eq(proc_oauth_load(oauth, "oura", u[3], &t, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "token_unreadable");
    ck_assert_ptr_null(t.access);
    load_ok("oura", u[4], &t);
    ck_assert_str_eq(t.access, "acc-5");
    ck_assert_ptr_null(t.refresh);
    ck_assert_int_eq(t.expires_at_us, 0);
    ck_assert_int_eq(proc_oauth_load(oauth, "oura", u[5], &t, &err), CM_OK);
    ck_assert_int_eq(t.state, PROC_TOKEN_MISSING);
    ck_assert_int_eq(proc_oauth_load(oauth, "oura", "nobody", &t, &err), CM_OK);
    ck_assert_int_eq(t.state, PROC_TOKEN_NO_ROW);
    proc_tokens_fini(&t);
    proc_tokens_fini(NULL);
}
END_TEST

/* PostgreSQL at a closed port, with a wrong password, and without the tables: CM_RETRY with a
 * payload-free reason, for every query the fetcher makes. */
START_TEST(test_postgresql_faults_are_retryable)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    struct cm_buf out;
    size_t n = 7;
    struct proc_cfg c2;
    struct proc_oauth *o2;
    const char *const bad[] = {
        "postgresql://auren:auren@127.0.0.1:1/auren_test?connect_timeout=2",
        "postgresql://auren:wrong-password@127.0.0.1:5432/auren_test?connect_timeout=2",
    };

    if (!enabled) {
        return;
    }
    cm_buf_init(&out, 0);
    for (size_t i = 0; i < 2; i++) {
        c2 = cfg;
        c2.database_url = (char *)bad[i];
        o2 = proc_oauth_new(&c2, vault, &err);
        ck_assert_ptr_nonnull(o2);
        ck_assert_int_eq(proc_oauth_load(o2, "oura", "u", &t, &err), CM_RETRY);
        ck_assert_str_eq(err.msg, "postgresql unreachable");
        ck_assert_int_eq(proc_oauth_object_events(o2, "oura", "user", "obj", &out, &n, &err),
                         CM_RETRY);
        ck_assert_uint_eq(n, 0);
        proc_oauth_free(o2);
    }
    /* reachable, but the tables are gone */
    proc_fx_db_exec("DROP TABLE connections, biometric_events");
    c2 = cfg;
    o2 = proc_oauth_new(&c2, vault, &err);
    ck_assert_int_eq(proc_oauth_load(o2, "oura", "u", &t, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "connections read: sqlstate 42P01");
    ck_assert_int_eq(proc_oauth_object_events(o2, "oura", "user", "obj", &out, &n, &err),
                     CM_RETRY);
    ck_assert_str_eq(err.msg, "events of a deleted object: sqlstate 42P01");
    ck_assert_int_eq(proc_oauth_window_events(o2, "google_health", "user", "a%", "b%", 0, 1, &out,
                                              &n, &err), CM_RETRY);
    ck_assert_uint_eq(out.len, 0);
    proc_oauth_free(o2);
    cm_buf_fini(&out);
}
END_TEST

/* The server ends the session (a restart, a failover): the query fails with CM_RETRY and the
 * next one connects again. */
START_TEST(test_postgresql_session_lost)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    struct proc_cfg c2 = cfg;
    struct proc_oauth *o2;
    char id[33], url[700], sql[160], u[40];

    if (!enabled) {
        return;
    }
    cm_random_id(id);
    snprintf(url, sizeof(url), "%s&application_name=fx_%.16s", db_url, id);
    c2.database_url = url;
    o2 = proc_oauth_new(&c2, vault, &err);
    proc_fx_add_conn(FX_KEYS, "oura", vuid(u, "lost"), "user-l", "acc", "ref", 3600);
    ck_assert_int_eq(proc_oauth_load(o2, "oura", u, &t, &err), CM_OK);
    snprintf(sql, sizeof(sql), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE application_name = 'fx_%.16s'", id);
    proc_fx_db_value(sql, id, sizeof(id));
    ck_assert_str_eq(id, "1");
    ck_assert_int_eq(proc_oauth_load(o2, "oura", u, &t, &err), CM_RETRY);
    ck_assert_ptr_nonnull(strstr(err.msg, "connections read: sqlstate"));
    ck_assert_int_eq(proc_oauth_load(o2, "oura", u, &t, &err), CM_OK);
    ck_assert_str_eq(t.access, "acc");
    proc_oauth_free(o2);
    proc_tokens_fini(&t);
}
END_TEST

static enum proc_refresh_result refresh(const char *vendor, const char *u, bool force,
                                        struct proc_tokens *t, enum cm_rc want_rc,
                                        struct cm_err *err)
{
    enum proc_refresh_result res = PROC_REFRESH_DONE;
    enum proc_api_vendor v = proc_api_vendor_find(vendor);

    ck_assert_int_eq(proc_oauth_refresh(oauth, v, vendor, u, force, t, &res, err), want_rc);
    return res;
}

START_TEST(test_refresh_rotates_and_commits)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    char u[2][40], v[64];
    const char *vendors[2] = { "whoop", "polar" }; /* form-body and HTTP Basic client auth */

    if (!enabled) {
        return;
    }
    /* a notice from the server on the way (a trigger) must not disturb the connection */
    proc_fx_db_exec("CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE NOTICE 'rotated'; RETURN NEW; END $$;"
                    "CREATE TRIGGER note BEFORE UPDATE ON connections FOR EACH ROW "
                    "EXECUTE FUNCTION note()");
    for (int i = 0; i < 2; i++) {
        vuid(u[i], vendors[i]);
        proc_fx_add_conn(FX_KEYS, vendors[i], u[i], "user-r", "old-acc", "old-ref", -10);
        proc_fx_grant(vendors[i], u[i], "old-acc", "old-ref", 3600);
        load_ok(vendors[i], u[i], &t);
        ck_assert(proc_oauth_due(&t, cm_now_us(), cfg.refresh_margin_s, 0));
        ck_assert_int_eq(refresh(vendors[i], u[i], false, &t, CM_OK, &err), PROC_REFRESH_DONE);
        ck_assert_int_eq(t.state, PROC_TOKEN_OK);
        ck_assert_str_ne(t.access, "old-acc");
        ck_assert_str_ne(t.refresh, "old-ref");
        ck_assert_int_eq(t.generation, 2);
        ck_assert_int_gt(t.expires_at_us, cm_now_us() + INT64_C(3000) * 1000000);
        ck_assert_int_eq(proc_fx_refreshes(vendors[i], u[i]), 1);
        row(vendors[i], u[i], "token_generation", v, sizeof(v));
        ck_assert_str_eq(v, "2");
        /* not due any more, not forced: nothing is asked of the vendor */
        ck_assert_int_eq(refresh(vendors[i], u[i], false, &t, CM_OK, &err), PROC_REFRESH_DONE);
        ck_assert_int_eq(proc_fx_refreshes(vendors[i], u[i]), 1);
    }
    ck_assert_uint_ge(proc_oauth_refresh_count(oauth), 2);
    proc_tokens_fini(&t);
}
END_TEST

/* The vendor rejects the refresh token (400 invalid_grant, Withings' 200 + status 503): the row
 * becomes reconsent_required; a connection with no refresh token at all goes the same way. */
START_TEST(test_invalid_grant_marks_reconsent)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    char u[3][40], v[64];
    const char *vendors[3] = { "oura", "withings", "strava" };

    if (!enabled) {
        return;
    }
    for (int i = 0; i < 3; i++) {
        vuid(u[i], vendors[i]);
        proc_fx_add_conn(FX_KEYS, vendors[i], u[i], "user-i", "acc", i < 2 ? "unknown" : NULL,
                         -10);
        load_ok(vendors[i], u[i], &t);
        ck_assert_int_eq(refresh(vendors[i], u[i], true, &t, CM_OK, &err),
                         PROC_REFRESH_RECONSENT);
        row(vendors[i], u[i], "status || '/' || coalesce(status_reason, '-')", v, sizeof(v));
        ck_assert_str_eq(v, "reconsent_required/invalid_grant");
        /* loaded again by another job: not refreshed twice */
        ck_assert_int_eq(proc_oauth_load(oauth, vendors[i], u[i], &t, &err), CM_OK);
        ck_assert_int_eq(t.state, PROC_TOKEN_RECONSENT);
    }
    ck_assert_int_eq(proc_fx_refreshes("strava", u[2]), 0);
    proc_tokens_fini(&t);
}
END_TEST

/* Vendor or network trouble at the token endpoint: FAILED (try later), the row untouched. */
START_TEST(test_token_endpoint_faults_leave_the_row)
{
    static const struct {
        const char *vendor, *fault, *reason;
    } cases[] = {
        { "whoop", "{\"vendor\":\"whoop\",\"mode\":\"status\",\"status\":500,\"count\":1}",
          "token endpoint: http 500, error other" },
        { "oura", "{\"vendor\":\"oura\",\"mode\":\"body\",\"body\":\"<html>oops\",\"count\":1}",
          "token endpoint: http 200, no JSON" },
        { "fitbit", "{\"vendor\":\"fitbit\",\"mode\":\"body\",\"body\":\"{\\\"token_type\\\":"
                    "\\\"Bearer\\\"}\",\"count\":1}",
          "token endpoint: http 200 without access_token" },
        { "withings", "{\"vendor\":\"withings\",\"mode\":\"status\",\"status\":342,\"count\":1}",
          "token endpoint: withings status 342" },
        { "google_health", "{\"vendor\":\"google_health\",\"mode\":\"close\",\"count\":2}",
          "token endpoint: " },
    };
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    char u[40], v[64];

    if (!enabled) {
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vuid(u, cases[i].vendor);
        proc_fx_add_conn(FX_KEYS, cases[i].vendor, u, "user-t", "acc", "ref", -10);
        proc_fx_grant(cases[i].vendor, u, "acc", "ref", 3600);
        proc_fx_control("token_fault", cases[i].fault);
        load_ok(cases[i].vendor, u, &t);
        ck_assert_msg(refresh(cases[i].vendor, u, false, &t, CM_OK, &err) == PROC_REFRESH_FAILED,
                      "%s: not failed", cases[i].vendor);
        ck_assert_msg(strncmp(err.msg, cases[i].reason, strlen(cases[i].reason)) == 0,
                      "%s: %s", cases[i].vendor, err.msg);
        row(cases[i].vendor, u, "status || '/' || token_generation", v, sizeof(v));
        ck_assert_str_eq(v, "active/1");
        /* the fault is gone (libcurl retries a dropped reused connection once: 2 drops) */
        snprintf(v, sizeof(v), "{\"vendor\":\"%s\",\"count\":0}", cases[i].vendor);
        proc_fx_control("token_fault", v);
        ck_assert_int_eq(refresh(cases[i].vendor, u, false, &t, CM_OK, &err),
                         PROC_REFRESH_DONE);
        ck_assert_int_eq(t.generation, 2);
    }
    /* no token endpoint at all (closed port) */
    cfg.api[PROC_API_STRAVA].token_url = (char *)"http://127.0.0.1:1/token";
    vuid(u, "strava");
    proc_fx_add_conn(FX_KEYS, "strava", u, "user-t", "acc", "ref", -10);
    load_ok("strava", u, &t);
    ck_assert_int_eq(refresh("strava", u, false, &t, CM_OK, &err), PROC_REFRESH_FAILED);
    ck_assert_ptr_nonnull(strstr(err.msg, "token endpoint: "));
    /* a refresh token that cannot fit in the request */
    char big[9000];
    memset(big, 'r', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    vuid(u, "whoop");
    proc_fx_add_conn(FX_KEYS, "whoop", u, "user-t", "acc", big, -10);
    load_ok("whoop", u, &t);
    ck_assert_int_eq(refresh("whoop", u, false, &t, CM_OK, &err), PROC_REFRESH_FAILED);
    ck_assert_int_eq(proc_fx_refreshes("whoop", u), 0);
    proc_tokens_fini(&t);
}
END_TEST

/* The row moves under the refresh: revoked / re-consented before the lock was taken, or its
 * UPDATE matching nothing (a trigger skips it, as a concurrent change would) or failing. */
START_TEST(test_refresh_meets_a_changed_row)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    char u[40], sql[256], v[64];

    if (!enabled) {
        return;
    }
    vuid(u, "rv");
    proc_fx_add_conn(FX_KEYS, "whoop", u, "user-c", "acc", "ref", -10);
    proc_fx_grant("whoop", u, "acc", "ref", 3600);
    load_ok("whoop", u, &t);
    snprintf(sql, sizeof(sql), "UPDATE connections SET status = 'revoked' WHERE "
             "vendor_user_id = '%s'", u);
    proc_fx_db_exec(sql);
    ck_assert_int_eq(refresh("whoop", u, true, &t, CM_OK, &err), PROC_REFRESH_FAILED);
    ck_assert_str_eq(err.msg, "connection no longer active");
    snprintf(sql, sizeof(sql), "UPDATE connections SET status = 'reconsent_required' WHERE "
             "vendor_user_id = '%s'", u);
    proc_fx_db_exec(sql);
    t.state = PROC_TOKEN_OK;
    ck_assert_int_eq(refresh("whoop", u, true, &t, CM_OK, &err), PROC_REFRESH_RECONSENT);
    ck_assert_int_eq(proc_fx_refreshes("whoop", u), 0);

    /* the UPDATE of the new pair matches no row */
    vuid(u, "skip");
    proc_fx_add_conn(FX_KEYS, "whoop", u, "user-c", "acc", "ref", -10);
    proc_fx_grant("whoop", u, "acc", "ref", 3600);
    load_ok("whoop", u, &t);
    proc_fx_db_exec("CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RETURN NULL; END $$;"
                    "CREATE TRIGGER skip_row BEFORE UPDATE ON connections FOR EACH ROW "
                    "EXECUTE FUNCTION skip_row()");
    ck_assert_int_eq(refresh("whoop", u, false, &t, CM_OK, &err), PROC_REFRESH_FAILED);
    ck_assert_str_eq(err.msg, "connection changed during the refresh");
    ck_assert_int_eq(proc_fx_refreshes("whoop", u), 1);

    /* the UPDATE fails: the new pair is not used, CM_RETRY; marking re-consent fails too */
    proc_fx_db_exec("DROP TRIGGER skip_row ON connections;"
                    "CREATE FUNCTION fail_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'disk full'; END $$;"
                    "CREATE TRIGGER fail_row BEFORE UPDATE ON connections FOR EACH ROW "
                    "EXECUTE FUNCTION fail_row()");
    vuid(u, "fail");
    proc_fx_add_conn(FX_KEYS, "whoop", u, "user-c", "acc", "ref", -10);
    proc_fx_grant("whoop", u, "acc", "ref", 3600);
    load_ok("whoop", u, &t);
    refresh("whoop", u, false, &t, CM_RETRY, &err);
    ck_assert_str_eq(err.msg, "connections refresh: sqlstate P0001");
    vuid(u, "failig");
    proc_fx_add_conn(FX_KEYS, "whoop", u, "user-c", "acc", "not-granted", -10);
    load_ok("whoop", u, &t);
    refresh("whoop", u, false, &t, CM_RETRY, &err);
    ck_assert_str_eq(err.msg, "connections mark: sqlstate P0001");
    row("whoop", u, "status", v, sizeof(v));
    ck_assert_str_eq(v, "active");
    proc_tokens_fini(&t);
}
END_TEST

static redisContext *test_redis(void)
{
    struct proc_redis_url ru;
    struct cm_err err = { { 0 } };
    redisContext *c;

    ck_assert_int_eq(proc_redis_url_parse(cfg.redis_url, &ru, &err), CM_OK);
    c = redisConnect(ru.host, ru.port);
    ck_assert(c != NULL && c->err == 0);
    freeReplyObject(redisCommand(c, "SELECT %d", ru.db));
    return c;
}

/* Another replica holds the refresh lock: wait for it, then read what it stored; a lock that
 * never goes gives up after a few rounds (FAILED, nothing refreshed twice). */
START_TEST(test_refresh_lock_held_elsewhere)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    redisContext *rc;
    char u[40], sql[256];
    int64_t t0;

    if (!enabled) {
        return;
    }
    rc = test_redis();
    cfg.refresh_lock_ms = 300;
    /* held for good: three rounds of waiting, then "busy" */
    vuid(u, "busy");
    proc_fx_add_conn(FX_KEYS, "oura", u, "user-l", "acc", "ref", -10);
    proc_fx_grant("oura", u, "acc", "ref", 3600);
    freeReplyObject(redisCommand(rc, "SET lock:refresh:oura:%s other PX 60000", u));
    load_ok("oura", u, &t);
    t0 = cm_mono_us();
    ck_assert_int_eq(refresh("oura", u, false, &t, CM_OK, &err), PROC_REFRESH_FAILED);
    ck_assert_str_eq(err.msg, "refresh lock stayed busy");
    ck_assert_int_ge(cm_mono_us() - t0, 3 * 800 * 1000);
    ck_assert_int_eq(proc_fx_refreshes("oura", u), 0);

    /* the holder re-consented / revoked the connection meanwhile */
    const char *status[2] = { "reconsent_required", "revoked" };
    for (int i = 0; i < 2; i++) {
        vuid(u, "held");
        proc_fx_add_conn(FX_KEYS, "oura", u, "user-l", "acc", "ref", -10);
        load_ok("oura", u, &t);
        freeReplyObject(redisCommand(rc, "SET lock:refresh:oura:%s other PX 200", u));
        snprintf(sql, sizeof(sql), "UPDATE connections SET status = '%s' WHERE "
                 "vendor_user_id = '%s'", status[i], u);
        proc_fx_db_exec(sql);
        ck_assert_int_eq(refresh("oura", u, false, &t, CM_OK, &err),
                         i == 0 ? PROC_REFRESH_RECONSENT : PROC_REFRESH_FAILED);
        ck_assert_int_eq(t.state, i == 0 ? PROC_TOKEN_RECONSENT : PROC_TOKEN_REVOKED);
    }
    /* the holder stored a new pair: taken as is */
    vuid(u, "done");
    proc_fx_add_conn(FX_KEYS, "oura", u, "user-l", "acc", "ref", -10);
    load_ok("oura", u, &t);
    freeReplyObject(redisCommand(rc, "SET lock:refresh:oura:%s other PX 200", u));
    proc_fx_add_conn(FX_KEYS, "oura", u, "user-l", "acc-new", "ref-new", 3600);
    ck_assert_int_eq(refresh("oura", u, false, &t, CM_OK, &err), PROC_REFRESH_DONE);
    ck_assert_str_eq(t.access, "acc-new");
    ck_assert_int_eq(proc_fx_refreshes("oura", u), 0);
    redisFree(rc);
    proc_tokens_fini(&t);
}
END_TEST

/* Redis: shared budgets and blocks; an error reply, a password it does not need, a server that
 * goes away, and one that is not there. */
START_TEST(test_rate_budgets_and_redis_faults)
{
    struct proc_tokens t = { 0 };
    struct cm_err err = { { 0 } };
    enum proc_refresh_result res;
    redisContext *rc;
    int64_t wait = -1;
    char u[40], url[128];
    struct proc_cfg c2 = cfg;
    struct proc_oauth *o2;

    if (!enabled) {
        return;
    }
    rc = test_redis();
    vuid(u, "rl");
    ck_assert_int_eq(proc_oauth_rate_take(oauth, PROC_API_STRAVA, u, &wait, &err), CM_OK);
    ck_assert_int_eq(wait, 0);
    /* Fitbit's block is the user's: another user goes on; elsewhere the app is blocked */
    proc_oauth_rate_block(oauth, PROC_API_FITBIT, u, 5000);
    ck_assert_int_eq(proc_oauth_rate_take(oauth, PROC_API_FITBIT, u, &wait, &err), CM_OK);
    ck_assert_int_gt(wait, 4000);
    ck_assert_int_eq(proc_oauth_rate_take(oauth, PROC_API_FITBIT, "someone-else", &wait, &err),
                     CM_OK);
    ck_assert_int_eq(wait, 0);
    proc_oauth_rate_block(oauth, PROC_API_GARMIN, u, 0); /* nothing to block */
    ck_assert_int_eq(proc_oauth_rate_take(oauth, PROC_API_GARMIN, u, &wait, &err), CM_OK);
    ck_assert_int_eq(wait, 0);
    proc_oauth_rate_block(oauth, PROC_API_GARMIN, u, 3000);
    ck_assert_int_eq(proc_oauth_rate_take(oauth, PROC_API_GARMIN, "someone-else", &wait, &err),
                     CM_OK);
    ck_assert_int_gt(wait, 2000);
    freeReplyObject(redisCommand(rc, "DEL rl:garmin:app:block"));

    /* a bucket key of the wrong type: the script fails, CM_RETRY */
    freeReplyObject(redisCommand(rc, "SET rl:polar:user:%s not-a-hash", u));
    ck_assert_int_eq(proc_oauth_rate_take(oauth, PROC_API_POLAR, u, &wait, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "redis error reply");
    freeReplyObject(redisCommand(rc, "DEL rl:polar:user:%s", u));
    redisFree(rc);

    /* a private Redis, reached with a password and a user it does not need, then stopped */
    int rport = proc_fx_redis_start();
    snprintf(url, sizeof(url), "redis://:unneeded@127.0.0.1:%d/3", rport);
    c2.redis_url = url;
    o2 = proc_oauth_new(&c2, vault, &err);
    ck_assert_ptr_nonnull(o2);
    ck_assert_int_eq(proc_oauth_rate_take(o2, PROC_API_OURA, u, &wait, &err), CM_OK);
    ck_assert_int_eq(wait, 0);
    proc_oauth_free(o2);
    snprintf(url, sizeof(url), "redis://someone:unneeded@127.0.0.1:%d/0", rport);
    o2 = proc_oauth_new(&c2, vault, &err);
    ck_assert_int_eq(proc_oauth_rate_take(o2, PROC_API_OURA, u, &wait, &err), CM_OK);
    proc_fx_redis_stop();
    ck_assert_int_eq(proc_oauth_rate_take(o2, PROC_API_OURA, u, &wait, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "redis round trip failed");
    ck_assert_int_eq(proc_oauth_rate_take(o2, PROC_API_OURA, u, &wait, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "redis unreachable");
    proc_oauth_rate_block(o2, PROC_API_OURA, u, 1000); /* best effort: no crash, no error */
    proc_fx_add_conn(FX_KEYS, "oura", u, "user-x", "acc", "ref", -10);
    ck_assert_int_eq(proc_oauth_load(o2, "oura", u, &t, &err), CM_OK);
    ck_assert_int_eq(proc_oauth_refresh(o2, PROC_API_OURA, "oura", u, false, &t, &res, &err),
                     CM_RETRY);
    ck_assert_int_eq(res, PROC_REFRESH_FAILED);
    proc_oauth_free(o2);
    proc_oauth_free(NULL);

    /* a Redis URL that does not parse */
    c2.redis_url = (char *)"http://nope";
    ck_assert_ptr_null(proc_oauth_new(&c2, vault, &err));
    proc_tokens_fini(&t);
}
END_TEST

/* Stored events of a deleted object: the object id's own LIKE wildcards are matched literally. */
START_TEST(test_object_events_escape_wildcards)
{
    struct cm_err err = { { 0 } };
    struct cm_buf out;
    size_t n = 0;

    if (!enabled) {
        return;
    }
    proc_fx_db_exec(
        "INSERT INTO biometric_events (event_id, user_id, vendor, metric, value, unit, start_time,"
        " end_time, source_record_id, raw_event_id, ingested_at, received_at) VALUES"
        " ('e1', 'user-o', 'whoop', 'heart_rate', 60, '/min', '2026-11-23T08:00:00Z',"
        "  '2026-11-23T08:00:00Z', 'a%b_c', 'r', now(), now()),"
        " ('e2', 'user-o', 'whoop', 'heart_rate', 61, '/min', '2026-11-23T08:01:00Z',"
        "  '2026-11-23T08:01:00Z', 'a%b_c#1', 'r', now(), now()),"
        " ('e3', 'user-o', 'whoop', 'heart_rate', 62, '/min', '2026-11-23T08:02:00Z',"
        "  '2026-11-23T08:02:00Z', 'aXbYc', 'r', now(), now()),"
        " ('e4', 'user-o', 'whoop', 'heart_rate', 63, '/min', '2026-11-23T08:03:00Z',"
        "  '2026-11-23T08:03:00Z', 'aXbYc#1', 'r', now(), now())");
    cm_buf_init(&out, 0);
    ck_assert_int_eq(proc_oauth_object_events(oauth, "whoop", "user-o", "a%b_c", &out, &n,
                                              &err), CM_OK);
    ck_assert_uint_eq(n, 2);
    cm_buf_terminate(&out);
    ck_assert_ptr_nonnull(strstr((const char *)out.data, "\"a%b_c#1\""));
    ck_assert_ptr_null(strstr((const char *)out.data, "aXbYc"));
    cm_buf_fini(&out);
}
END_TEST

static Suite *oauth_suite(void)
{
    Suite *s = suite_create("proc_oauth");
    TCase *tc = tcase_create("real_parts");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_load_reports_each_connection_state);
    tcase_add_test(tc, test_postgresql_faults_are_retryable);
    tcase_add_test(tc, test_postgresql_session_lost);
    tcase_add_test(tc, test_refresh_rotates_and_commits);
    tcase_add_test(tc, test_invalid_grant_marks_reconsent);
    tcase_add_test(tc, test_token_endpoint_faults_leave_the_row);
    tcase_add_test(tc, test_refresh_meets_a_changed_row);
    tcase_add_test(tc, test_refresh_lock_held_elsewhere);
    tcase_add_test(tc, test_rate_budgets_and_redis_faults);
    tcase_add_test(tc, test_object_events_escape_wildcards);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    enabled = proc_fx_enabled("proc_oauth");
    return proc_fx_run(oauth_suite());
}
