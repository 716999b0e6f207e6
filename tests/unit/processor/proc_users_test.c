/* Unit tests of the connection cache (positive / negative TTLs driven by an explicit clock,
 * replacement, invalidation, the memory bound) and of the resolver's behaviour when PostgreSQL is
 * unreachable (RETRY, never a dead letter). With AUREN_TEST_DATABASE_URL, against a scratch
 * database: every status, a vendor revocation, a missing table, a session the server kills. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/common.h"
#include "cm/metrics.h"
#include "proc_test_pg.h"
#include "proc_users.h"
#include "../check_run.h"

#define S 1000000LL /* one second in microseconds */

static struct proc_conn_cache *cache;

static void setup(void)
{
    cache = proc_conn_cache_new(60 * S, PROC_CONN_NEGATIVE_TTL_S * S, 1000);
}

static void teardown(void)
{
    proc_conn_cache_free(cache);
    cache = NULL;
}

START_TEST(test_miss_when_empty)
{
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];

    ck_assert(!proc_conn_cache_get(cache, "oura", "v1", 0, &st, uid));
    ck_assert_uint_eq(proc_conn_cache_count(cache), 0);
}
END_TEST

START_TEST(test_active_lives_positive_ttl)
{
    enum proc_conn_state st = PROC_CONN_UNKNOWN;
    char uid[PROC_USER_ID_MAX];
    int64_t t0 = 1000 * S;

    proc_conn_cache_put(cache, "oura", "v1", PROC_CONN_ACTIVE, "user-1", t0);
    ck_assert(proc_conn_cache_get(cache, "oura", "v1", t0 + 59 * S, &st, uid));
    ck_assert_int_eq(st, PROC_CONN_ACTIVE);
    ck_assert_str_eq(uid, "user-1");
    ck_assert(!proc_conn_cache_get(cache, "oura", "v1", t0 + 60 * S, &st, uid));
    ck_assert_uint_eq(proc_conn_cache_count(cache), 0); /* expired entry dropped on lookup */
}
END_TEST

START_TEST(test_unknown_lives_negative_ttl)
{
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX] = "garbage";
    int64_t t0 = 1000 * S;

    proc_conn_cache_put(cache, "whoop", "42", PROC_CONN_UNKNOWN, NULL, t0);
    ck_assert(proc_conn_cache_get(cache, "whoop", "42", t0 + 4 * S, &st, uid));
    ck_assert_int_eq(st, PROC_CONN_UNKNOWN);
    ck_assert_str_eq(uid, "");
    /* a connection registered after the webhook is looked up again on the replay */
    ck_assert(!proc_conn_cache_get(cache, "whoop", "42", t0 + PROC_CONN_NEGATIVE_TTL_S * S, &st,
                                   uid));
}
END_TEST

START_TEST(test_revoked_lives_negative_ttl)
{
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];

    proc_conn_cache_put(cache, "polar", "7", PROC_CONN_REVOKED, "ignored", 0);
    ck_assert(proc_conn_cache_get(cache, "polar", "7", 1 * S, &st, uid));
    ck_assert_int_eq(st, PROC_CONN_REVOKED);
    ck_assert_str_eq(uid, "");
    ck_assert(!proc_conn_cache_get(cache, "polar", "7", 6 * S, &st, uid));
}
END_TEST

START_TEST(test_put_replaces_and_invalidate_removes)
{
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];

    proc_conn_cache_put(cache, "oura", "v1", PROC_CONN_UNKNOWN, NULL, 0);
    proc_conn_cache_put(cache, "oura", "v1", PROC_CONN_ACTIVE, "user-9", 1 * S);
    ck_assert_uint_eq(proc_conn_cache_count(cache), 1);
    ck_assert(proc_conn_cache_get(cache, "oura", "v1", 30 * S, &st, uid));
    ck_assert_int_eq(st, PROC_CONN_ACTIVE);
    ck_assert_str_eq(uid, "user-9");
    proc_conn_cache_invalidate(cache, "oura", "v1");
    proc_conn_cache_invalidate(cache, "oura", "absent");
    ck_assert(!proc_conn_cache_get(cache, "oura", "v1", 30 * S, &st, uid));
    ck_assert_uint_eq(proc_conn_cache_count(cache), 0);
}
END_TEST

START_TEST(test_keys_do_not_collide)
{
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];

    proc_conn_cache_put(cache, "ab", "c", PROC_CONN_ACTIVE, "u-abc", 0);
    ck_assert(!proc_conn_cache_get(cache, "a", "bc", 1, &st, uid));
    ck_assert(!proc_conn_cache_get(cache, "oura", "c", 1, &st, uid));
    ck_assert(proc_conn_cache_get(cache, "ab", "c", 1, &st, uid));
    ck_assert_str_eq(uid, "u-abc");
}
END_TEST

START_TEST(test_zero_positive_ttl_stores_nothing)
{
    struct proc_conn_cache *c = proc_conn_cache_new(0, 5 * S, 10);
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];

    proc_conn_cache_put(c, "oura", "v1", PROC_CONN_ACTIVE, "u", 0);
    ck_assert(!proc_conn_cache_get(c, "oura", "v1", 0, &st, uid));
    proc_conn_cache_put(c, "oura", "v2", PROC_CONN_UNKNOWN, NULL, 0);
    ck_assert(proc_conn_cache_get(c, "oura", "v2", 0, &st, uid));
    proc_conn_cache_free(c);
}
END_TEST

START_TEST(test_bound_sweeps_expired_first)
{
    struct proc_conn_cache *c = proc_conn_cache_new(60 * S, 5 * S, 3);
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];

    proc_conn_cache_put(c, "v", "a", PROC_CONN_UNKNOWN, NULL, 0);    /* expires at 5 s */
    proc_conn_cache_put(c, "v", "b", PROC_CONN_ACTIVE, "ub", 0);     /* expires at 60 s */
    proc_conn_cache_put(c, "v", "c", PROC_CONN_UNKNOWN, NULL, 0);    /* expires at 5 s */
    ck_assert_uint_eq(proc_conn_cache_count(c), 3);
    proc_conn_cache_put(c, "v", "d", PROC_CONN_ACTIVE, "ud", 10 * S); /* full: sweep a and c */
    ck_assert_uint_eq(proc_conn_cache_count(c), 2);
    ck_assert(proc_conn_cache_get(c, "v", "b", 10 * S, &st, uid));
    ck_assert(proc_conn_cache_get(c, "v", "d", 10 * S, &st, uid));
    proc_conn_cache_free(c);
}
END_TEST

START_TEST(test_bound_clears_when_all_live)
{
    struct proc_conn_cache *c = proc_conn_cache_new(60 * S, 5 * S, 2);
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];

    proc_conn_cache_put(c, "v", "a", PROC_CONN_ACTIVE, "ua", 0);
    proc_conn_cache_put(c, "v", "b", PROC_CONN_ACTIVE, "ub", 0);
    proc_conn_cache_put(c, "v", "c", PROC_CONN_ACTIVE, "uc", 1);
    ck_assert_uint_le(proc_conn_cache_count(c), 2);
    ck_assert(proc_conn_cache_get(c, "v", "c", 2, &st, uid));
    ck_assert_str_eq(uid, "uc");
    /* updating an existing key never evicts */
    proc_conn_cache_put(c, "v", "c", PROC_CONN_ACTIVE, "uc2", 3);
    ck_assert(proc_conn_cache_get(c, "v", "c", 4, &st, uid));
    ck_assert_str_eq(uid, "uc2");
    proc_conn_cache_free(c);
}
END_TEST

START_TEST(test_many_entries)
{
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX], vuid[32], want[32];

    for (int i = 0; i < 900; i++) {
        snprintf(vuid, sizeof(vuid), "vu%d", i);
        snprintf(want, sizeof(want), "user%d", i);
        proc_conn_cache_put(cache, "garmin", vuid, PROC_CONN_ACTIVE, want, 0);
    }
    ck_assert_uint_eq(proc_conn_cache_count(cache), 900);
    for (int i = 0; i < 900; i++) {
        snprintf(vuid, sizeof(vuid), "vu%d", i);
        snprintf(want, sizeof(want), "user%d", i);
        ck_assert(proc_conn_cache_get(cache, "garmin", vuid, 1, &st, uid));
        ck_assert_str_eq(uid, want);
    }
}
END_TEST

START_TEST(test_unreachable_database_is_retry)
{
    /* nothing listens on port 1: the connection is refused at once */
    struct proc_users *u = proc_users_new("postgresql://auren@127.0.0.1:1/auren", 60, NULL);

    proc_conn_cache_free(NULL);
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];
    struct cm_err err;

    ck_assert_ptr_nonnull(u);
    ck_assert(!proc_users_reachable(u));
    ck_assert_int_eq(proc_users_resolve(u, "oura", "v1", &st, uid, &err), CM_RETRY);
    ck_assert_ptr_nonnull(strstr(err.msg, "pg_"));
    ck_assert_int_eq(proc_users_revoke(u, "oura", "v1", &err), CM_RETRY);
    ck_assert(!proc_users_reachable(u));
    proc_users_free(u);
    proc_users_free(NULL);
}
END_TEST

START_TEST(test_state_names)
{
    ck_assert_str_eq(proc_conn_state_str(PROC_CONN_ACTIVE), "active");
    ck_assert_str_eq(proc_conn_state_str(PROC_CONN_REVOKED), "revoked");
    ck_assert_str_eq(proc_conn_state_str(PROC_CONN_UNKNOWN), "unknown");
}
END_TEST

/* ---- against a real PostgreSQL (AUREN_TEST_DATABASE_URL; a scratch database) ---- */

static struct cm_metric *pg_errors_metric(void)
{
    static struct cm_metric *m;

    if (m == NULL) {
        m = cm_metric_counter("auren_test_pg_errors_total", "test", 0);
    }
    return m;
}

/* Before the migrations ran (no connections table) the statements cannot be prepared: every
 * lookup is a RETRY with the SQLSTATE, the resolver reports the database unreachable and counts
 * the failure; once the table exists the next lookup connects and prepares. */
START_TEST(test_missing_table_is_retry_until_migrated)
{
    struct proc_test_pg t;
    struct proc_users *u;
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];
    struct cm_err err = { .msg = "" };

    if (!proc_test_pg_create(&t, false)) {
        return;
    }
    u = proc_users_new(t.url, 60, pg_errors_metric());
    ck_assert(!proc_users_reachable(u));
    ck_assert_int_eq(proc_users_resolve(u, "oura", "v1", &st, uid, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "pg_prepare_failed: sqlstate=42P01");
    ck_assert_int_eq(proc_users_revoke(u, "oura", "v1", &err), CM_RETRY);
    ck_assert(!proc_users_reachable(u));

    proc_test_pg_exec(t.db, "CREATE TABLE connections (vendor text, vendor_user_id text, "
                            "user_id text, status text, access_token_ct bytea, "
                            "refresh_token_ct bytea, key_id text, expires_at timestamptz, "
                            "updated_at timestamptz)");
    ck_assert_int_eq(proc_users_resolve(u, "oura", "v1", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_UNKNOWN);
    ck_assert(proc_users_reachable(u));
    proc_users_free(u);
    proc_test_pg_drop(&t);
}
END_TEST

/* Each status maps to a state: active and reconsent_required resolve to the user, revoked is
 * revoked, anything else (or an empty user id) is unknown; a vendor revocation updates the row
 * and drops the cached answer; a server-side NOTICE is consumed, not printed. */
START_TEST(test_states_and_revocation_on_real_database)
{
    struct proc_test_pg t;
    struct proc_users *u;
    enum proc_conn_state st;
    char uid[PROC_USER_ID_MAX];
    struct cm_err err = { .msg = "" };
    PGresult *res;

    if (!proc_test_pg_create(&t, true)) {
        return;
    }
    proc_test_pg_exec(t.db, "INSERT INTO connections (vendor, vendor_user_id, user_id, status) "
                            "VALUES ('oura', 'a', 'user-a', 'active'), "
                            "('oura', 'r', 'user-r', 'revoked'), "
                            "('oura', 'c', 'user-c', 'reconsent_required'), "
                            "('oura', 'e', '', 'active'), "
                            "('oura', 'x', 'user-x', 'paused')");
    proc_test_pg_exec(t.db, "CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS "
                            "$$BEGIN RAISE NOTICE 'row %', NEW.vendor_user_id; RETURN NEW; END$$");
    proc_test_pg_exec(t.db, "CREATE TRIGGER note BEFORE UPDATE ON connections FOR EACH ROW "
                            "EXECUTE FUNCTION note()");
    u = proc_users_new(t.url, 60, pg_errors_metric());
    ck_assert(proc_users_reachable(u));

    ck_assert_int_eq(proc_users_resolve(u, "oura", "a", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_ACTIVE);
    ck_assert_str_eq(uid, "user-a");
    ck_assert_int_eq(proc_users_resolve(u, "oura", "c", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_ACTIVE);
    ck_assert_str_eq(uid, "user-c");
    ck_assert_int_eq(proc_users_resolve(u, "oura", "r", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_REVOKED);
    ck_assert_str_eq(uid, "");
    ck_assert_int_eq(proc_users_resolve(u, "oura", "e", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_UNKNOWN);
    ck_assert_int_eq(proc_users_resolve(u, "oura", "x", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_UNKNOWN);
    ck_assert_str_eq(uid, "");
    ck_assert_int_eq(proc_users_resolve(u, "whoop", "a", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_UNKNOWN);

    ck_assert_int_eq(proc_users_revoke(u, "oura", "a", &err), CM_OK);
    ck_assert_int_eq(proc_users_resolve(u, "oura", "a", &st, uid, &err), CM_OK);
    ck_assert_int_eq(st, PROC_CONN_REVOKED); /* not the cached "active" */
    res = PQexec(t.db, "SELECT status FROM connections WHERE vendor = 'oura' AND "
                       "vendor_user_id = 'a'");
    ck_assert_int_eq(PQntuples(res), 1);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "revoked");
    PQclear(res);

    /* the table goes away under a live connection: lookups and revocations are RETRY */
    proc_test_pg_exec(t.db, "DROP TABLE connections");
    ck_assert_int_eq(proc_users_resolve(u, "oura", "new", &st, uid, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "pg_lookup_failed: sqlstate=42P01");
    ck_assert_int_eq(proc_users_revoke(u, "oura", "r", &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "pg_revoke_failed: sqlstate=42P01");
    proc_users_free(u);
    proc_test_pg_drop(&t);
}
END_TEST

/* The idle probe (every 5 s) notices a connection the server closed and reports the database
 * unreachable; the next probe reconnects and reports it reachable again. */
START_TEST(test_probe_follows_a_killed_session)
{
    struct proc_test_pg t;
    struct proc_users *u;
    char sql[256];
    int64_t until;

    if (!proc_test_pg_create(&t, true)) {
        return;
    }
    u = proc_users_new(t.url, 60, pg_errors_metric());
    ck_assert(proc_users_reachable(u));
    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' AND "
             "application_name = 'auren-processor'",
             t.name);
    proc_test_pg_exec(t.admin, sql);
    until = cm_mono_us() + 30 * S;
    while (proc_users_reachable(u) && cm_mono_us() < until) {
        proc_users_check(u);
        usleep(50 * 1000);
    }
    ck_assert(!proc_users_reachable(u));
    while (!proc_users_reachable(u) && cm_mono_us() < until) {
        proc_users_check(u);
        usleep(50 * 1000);
    }
    ck_assert(proc_users_reachable(u));
    proc_users_free(u);
    proc_test_pg_drop(&t);
}
END_TEST

static Suite *proc_users_suite(void)
{
    Suite *s = suite_create("proc_users");
    TCase *ttl = tcase_create("cache_ttl");
    TCase *bound = tcase_create("cache_bound");
    TCase *pg = tcase_create("database");

    tcase_add_checked_fixture(ttl, setup, teardown);
    tcase_add_test(ttl, test_miss_when_empty);
    tcase_add_test(ttl, test_active_lives_positive_ttl);
    tcase_add_test(ttl, test_unknown_lives_negative_ttl);
    tcase_add_test(ttl, test_revoked_lives_negative_ttl);
    tcase_add_test(ttl, test_put_replaces_and_invalidate_removes);
    tcase_add_test(ttl, test_keys_do_not_collide);
    tcase_add_test(ttl, test_zero_positive_ttl_stores_nothing);
    suite_add_tcase(s, ttl);
    tcase_add_checked_fixture(bound, setup, teardown);
    tcase_add_test(bound, test_bound_sweeps_expired_first);
    tcase_add_test(bound, test_bound_clears_when_all_live);
    tcase_add_test(bound, test_many_entries);
    suite_add_tcase(s, bound);
    tcase_add_test(pg, test_unreachable_database_is_retry);
    tcase_add_test(pg, test_state_names);
    tcase_add_test(pg, test_missing_table_is_retry_until_migrated);
    tcase_add_test(pg, test_states_and_revocation_on_real_database);
    tcase_add_test(pg, test_probe_follows_a_killed_session);
    tcase_set_timeout(pg, 60);
    suite_add_tcase(s, pg);
    return s;
}

int main(void)
{
    return check_run(proc_users_suite());
}
