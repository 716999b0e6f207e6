/* adm_conn: argument checks, and (with AUREN_TEST_DATABASE_URL) add / list / revoke against the
 * migrated schema: upsert keeps one row, list never shows tokens, revoke drops them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adm.h"
#include "adm_test_db.h"
#include "../check_run.h"

START_TEST(test_vendor_names)
{
    static const char *const good[] = { "whoop", "oura", "polar", "fitbit", "google_health",
                                        "withings", "garmin", "strava", "terra", "app" };

    for (size_t i = 0; i < CM_ARRAY_LEN(good); i++) {
        ck_assert_msg(adm_conn_vendor_valid(good[i]), "%s", good[i]);
    }
    ck_assert(!adm_conn_vendor_valid(""));
    ck_assert(!adm_conn_vendor_valid("Whoop"));
    ck_assert(!adm_conn_vendor_valid("fitbit2"));
    ck_assert(!adm_conn_vendor_valid("google"));
}
END_TEST

START_TEST(test_id_limits)
{
    char id[258];

    memset(id, 'a', sizeof(id));
    id[256] = '\0';
    ck_assert(adm_conn_id_valid(id));
    id[256] = 'a';
    id[257] = '\0';
    ck_assert(!adm_conn_id_valid(id));
    ck_assert(adm_conn_id_valid("x"));
    ck_assert(!adm_conn_id_valid(""));
    ck_assert(!adm_conn_id_valid("a b"));
    ck_assert(!adm_conn_id_valid("a\tb"));
    ck_assert(!adm_conn_id_valid("caf\xc3\xa9"));
}
END_TEST

/* The list as text, for assertions. */
static char *list_text(const char *vendor, size_t *rows)
{
    struct cm_err err = { { 0 } };
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    ck_assert_msg(adm_conn_list(test_pg, vendor, out, rows, &err) == CM_OK, "%s", err.msg);
    fclose(out);
    return text;
}

static void migrated_setup(void)
{
    struct adm_migrate_set set;
    struct cm_err err = { { 0 } };
    FILE *devnull = fopen("/dev/null", "w");

    adm_test_db_setup();
    ck_assert_int_eq(adm_migrate_scan(AUREN_SOURCE_DIR "/schemas/sql", &set, &err), CM_OK);
    ck_assert_msg(adm_migrate_apply(test_pg, &set, devnull, &err) == CM_OK, "%s", err.msg);
    adm_migrate_set_fini(&set);
    fclose(devnull);
}

START_TEST(test_add_is_an_upsert)
{
    struct cm_err err = { { 0 } };
    size_t rows = 0;
    char *text;

    ck_assert_int_eq(adm_conn_add(test_pg, "oura", "ou-1", "user-a", &err), CM_OK);
    ck_assert_int_eq(adm_conn_add(test_pg, "oura", "ou-1", "user-b", &err), CM_OK);
    text = list_text(NULL, &rows);
    ck_assert_uint_eq(rows, 1);
    ck_assert_ptr_nonnull(strstr(text, "vendor\tvendor_user_id\tuser_id\tstatus\texpires_at"
                                       "\thas_tokens\n"));
    ck_assert_ptr_nonnull(strstr(text, "oura\tou-1\tuser-b\tactive\t-\tno\n"));
    free(text);
}
END_TEST

START_TEST(test_list_filters_and_hides_tokens)
{
    struct cm_err err = { { 0 } };
    size_t rows = 0;
    char *text;

    ck_assert_int_eq(adm_conn_add(test_pg, "oura", "ou-1", "user-a", &err), CM_OK);
    ck_assert_int_eq(adm_conn_add(test_pg, "whoop", "wh-1", "user-a", &err), CM_OK);
    ck_assert_int_eq(adm_pg_exec(test_pg,
        "UPDATE connections SET access_token_ct = convert_to('SECRETTOKEN', 'UTF8'),"
        " key_id = 'k1', expires_at = '2030-01-02T03:04:05Z' WHERE vendor = 'whoop'",
        "tokens", &err), CM_OK);
    text = list_text("whoop", &rows);
    ck_assert_uint_eq(rows, 1);
    ck_assert_ptr_nonnull(strstr(text, "whoop\twh-1\tuser-a\tactive\t2030-01-02T03:04:05Z\tyes\n"));
    ck_assert_ptr_null(strstr(text, "oura"));
    ck_assert_ptr_null(strstr(text, "SECRETTOKEN"));
    ck_assert_ptr_null(strstr(text, "k1"));
    free(text);
    text = list_text(NULL, &rows);
    ck_assert_uint_eq(rows, 2);
    free(text);
}
END_TEST

START_TEST(test_revoke_drops_tokens)
{
    struct cm_err err = { { 0 } };

    ck_assert_int_eq(adm_conn_add(test_pg, "polar", "p-1", "user-a", &err), CM_OK);
    ck_assert_int_eq(adm_pg_exec(test_pg,
        "UPDATE connections SET access_token_ct = '\\x01', refresh_token_ct = '\\x02',"
        " key_id = 'k1', expires_at = now()", "tokens", &err), CM_OK);
    ck_assert_int_eq(adm_conn_revoke(test_pg, "polar", "p-1", &err), CM_OK);
    ADM_TEST_EXPECT_DB("SELECT status || ',' || (access_token_ct IS NULL)::text || ','"
                       " || (refresh_token_ct IS NULL)::text || ',' || (key_id IS NULL)::text"
                       " FROM connections", "revoked,true,true,true");
    /* Adding it again reactivates the account; it has no tokens until the user consents. */
    ck_assert_int_eq(adm_conn_add(test_pg, "polar", "p-1", "user-a", &err), CM_OK);
    ADM_TEST_EXPECT_DB("SELECT status FROM connections", "active");
}
END_TEST

START_TEST(test_revoke_unknown_connection_fails)
{
    struct cm_err err = { { 0 } };

    ck_assert_int_eq(adm_conn_add(test_pg, "polar", "p-1", "user-a", &err), CM_OK);
    ck_assert_int_eq(adm_conn_revoke(test_pg, "polar", "p-2", &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "connections revoke: no such connection");
    ck_assert_int_eq(adm_conn_revoke(test_pg, "oura", "p-1", &err), CM_INVALID);
}
END_TEST

START_TEST(test_errors_carry_no_values)
{
    struct cm_err err = { { 0 } };

    /* Without the table the error names the statement and the SQLSTATE, not the arguments. */
    ck_assert_int_eq(adm_pg_exec(test_pg, "DROP TABLE connections", "drop", &err), CM_OK);
    ck_assert_int_eq(adm_conn_add(test_pg, "oura", "secret-vendor-id", "secret-user", &err),
                     CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "connections add: SQLSTATE 42P01"));
    ck_assert_ptr_null(strstr(err.msg, "secret"));
}
END_TEST

/* The server ends the session (an operator's pg_terminate_backend): the next statement reports
 * a lost connection, retryable, without the arguments. */
START_TEST(test_lost_connection_is_retry)
{
    struct cm_err err = { { 0 } };
    char sql[128];

    ck_assert_int_eq(adm_conn_add(test_pg, "oura", "ou-lost", "user-a", &err), CM_OK);
    adm_pg_exec(test_pg, "SELECT pg_terminate_backend(pg_backend_pid())", "terminate", &err);
    ck_assert_int_eq(adm_conn_revoke(test_pg, "oura", "ou-lost", &err), CM_RETRY);
    ck_assert_msg(strstr(err.msg, "connections revoke: connection lost") != NULL, "%s", err.msg);
    ck_assert_ptr_null(strstr(err.msg, "ou-lost"));
    /* A new session for the fixture's cleanup. */
    PQfinish(test_pg);
    test_pg = adm_pg_connect(getenv("AUREN_TEST_DATABASE_URL"), &err);
    ck_assert_msg(test_pg != NULL, "%s", err.msg);
    snprintf(sql, sizeof(sql), "SET search_path TO %s", test_schema);
    ck_assert_int_eq(adm_pg_exec(test_pg, sql, "fixture", &err), CM_OK);
}
END_TEST

static Suite *adm_conn_suite(void)
{
    Suite *s = suite_create("adm_conn");
    TCase *tc = tcase_create("arguments");

    tcase_add_test(tc, test_vendor_names);
    tcase_add_test(tc, test_id_limits);
    suite_add_tcase(s, tc);

    if (adm_test_db_enabled()) {
        tc = tcase_create("database");
        tcase_add_checked_fixture(tc, migrated_setup, adm_test_db_teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_add_is_an_upsert);
        tcase_add_test(tc, test_list_filters_and_hides_tokens);
        tcase_add_test(tc, test_revoke_drops_tokens);
        tcase_add_test(tc, test_revoke_unknown_connection_fails);
        tcase_add_test(tc, test_errors_carry_no_values);
        tcase_add_test(tc, test_lost_connection_is_retry);
        suite_add_tcase(s, tc);
    } else {
        fprintf(stderr, "adm_conn: AUREN_TEST_DATABASE_URL unset, database cases skipped\n");
    }
    return s;
}

int main(void)
{
    return check_run(adm_conn_suite());
}
