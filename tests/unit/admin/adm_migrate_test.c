/* adm_migrate: file names, directory scanning, and (with AUREN_TEST_DATABASE_URL) applying the
 * real schemas/sql files: once only, one transaction per file, safe against a concurrent run. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adm.h"
#include "adm_test_db.h"
#include "../check_run.h"

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void tmp_setup(void)
{
    cm_strlcpy(tmpdir, "/tmp/adm_migrate_XXXXXX", sizeof(tmpdir));
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    /* NOLINTNEXTLINE(cert-env33-c): removes this test's own mkdtemp() directory */
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- names ---- */

START_TEST(test_parse_accepts_versioned_names)
{
    char name[32];
    int v = 0;

    ck_assert(adm_migrate_parse_name("001_init.sql", &v, name, sizeof(name)));
    ck_assert_int_eq(v, 1);
    ck_assert_str_eq(name, "init");
    ck_assert(adm_migrate_parse_name("0012_add-index_2.sql", &v, name, sizeof(name)));
    ck_assert_int_eq(v, 12);
    ck_assert_str_eq(name, "add-index_2");
    ck_assert(adm_migrate_parse_name("999999999_x.sql", &v, name, sizeof(name)));
    ck_assert_int_eq(v, 999999999);
}
END_TEST

START_TEST(test_parse_rejects_other_names)
{
    static const char *const bad[] = {
        "init.sql", "001init.sql", "000_zero.sql", "001_.sql", "001_x.SQL", "001_a b.sql",
        "1234567890_ten_digits.sql", "001_x.sql.bak", "_x.sql", "001_x", "001_ä.sql",
    };
    char name[32];
    int v;

    for (size_t i = 0; i < CM_ARRAY_LEN(bad); i++) {
        ck_assert_msg(!adm_migrate_parse_name(bad[i], &v, name, sizeof(name)), "%s", bad[i]);
    }
}
END_TEST

START_TEST(test_parse_rejects_name_longer_than_buffer)
{
    char name[5];
    int v;

    ck_assert(adm_migrate_parse_name("001_abcd.sql", &v, name, sizeof(name)));
    ck_assert(!adm_migrate_parse_name("001_abcde.sql", &v, name, sizeof(name)));
}
END_TEST

/* ---- scanning ---- */

START_TEST(test_scan_sorts_by_version_and_ignores_other_files)
{
    struct adm_migrate_set set;
    struct cm_err err = { { 0 } };

    write_file("010_later.sql", "SELECT 1;");
    write_file("002_first.sql", "SELECT 1;");
    write_file("README.md", "not a migration");
    ck_assert_int_eq(adm_migrate_scan(tmpdir, &set, &err), CM_OK);
    ck_assert_uint_eq(set.n, 2);
    ck_assert_int_eq(set.v[0].version, 2);
    ck_assert_str_eq(set.v[0].name, "first");
    ck_assert_int_eq(set.v[1].version, 10);
    ck_assert_ptr_nonnull(strstr(set.v[1].path, "/010_later.sql"));
    adm_migrate_set_fini(&set);
    ck_assert_uint_eq(set.n, 0);
}
END_TEST

START_TEST(test_scan_rejects_duplicate_versions)
{
    struct adm_migrate_set set;
    struct cm_err err = { { 0 } };

    write_file("001_a.sql", "SELECT 1;");
    write_file("1_b.sql", "SELECT 1;");
    ck_assert_int_eq(adm_migrate_scan(tmpdir, &set, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "share version 1"));
    ck_assert_uint_eq(set.n, 0);
}
END_TEST

START_TEST(test_scan_rejects_badly_named_sql)
{
    struct adm_migrate_set set;
    struct cm_err err = { { 0 } };

    write_file("001_ok.sql", "SELECT 1;");
    write_file("fix.sql", "SELECT 1;");
    ck_assert_int_eq(adm_migrate_scan(tmpdir, &set, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "fix.sql"));
}
END_TEST

START_TEST(test_scan_missing_dir_fails)
{
    struct adm_migrate_set set;
    struct cm_err err = { { 0 } };

    ck_assert_int_eq(adm_migrate_scan("/nonexistent/adm", &set, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot open"));
}
END_TEST

START_TEST(test_scan_repository_migrations)
{
    struct adm_migrate_set set;
    struct cm_err err = { { 0 } };

    ck_assert_int_eq(adm_migrate_scan(AUREN_SOURCE_DIR "/schemas/sql", &set, &err), CM_OK);
    ck_assert_uint_ge(set.n, 1);
    ck_assert_int_eq(set.v[0].version, 1);
    ck_assert_str_eq(set.v[0].name, "init");
    adm_migrate_set_fini(&set);
}
END_TEST

/* ---- applying (database) ---- */

static enum cm_rc apply_dir(PGconn *pg, const char *dir, char **out_text, struct cm_err *err)
{
    struct adm_migrate_set set;
    size_t len = 0;
    FILE *out = open_memstream(out_text, &len);
    enum cm_rc rc;

    ck_assert_int_eq(adm_migrate_scan(dir, &set, err), CM_OK);
    rc = adm_migrate_apply(pg, &set, out, err);
    fclose(out);
    adm_migrate_set_fini(&set);
    return rc;
}

START_TEST(test_apply_repository_schema_once)
{
    struct cm_err err = { { 0 } };
    char *out = NULL;

    ck_assert_msg(apply_dir(test_pg, AUREN_SOURCE_DIR "/schemas/sql", &out, &err) == CM_OK, "%s",
                  err.msg);
    ck_assert_ptr_nonnull(strstr(out, "applied 001_init\n"));
    free(out);
    ADM_TEST_EXPECT_DB("SELECT count(*) FROM information_schema.columns"
                       " WHERE table_schema = current_schema()"
                       " AND table_name = 'biometric_events'", "16");
    ADM_TEST_EXPECT_DB("SELECT to_regclass('connections') IS NOT NULL"
                       " AND to_regclass('biometric_events_user_metric_time_idx') IS NOT NULL", "t");

    /* A second run applies nothing and changes nothing. */
    ck_assert_int_eq(apply_dir(test_pg, AUREN_SOURCE_DIR "/schemas/sql", &out, &err), CM_OK);
    ck_assert_ptr_null(strstr(out, "applied 0"));
    ck_assert_ptr_nonnull(strstr(out, "migrations: 0 applied"));
    free(out);
    ADM_TEST_EXPECT_DB("SELECT count(*) FROM schema_migrations WHERE version = 1", "1");
}
END_TEST

START_TEST(test_applied_schema_keeps_the_contract)
{
    struct cm_err err = { { 0 } };
    char *out = NULL;
    PGresult *res;

    ck_assert_int_eq(apply_dir(test_pg, AUREN_SOURCE_DIR "/schemas/sql", &out, &err), CM_OK);
    free(out);
    ck_assert_int_eq(adm_pg_exec(test_pg,
        "INSERT INTO biometric_events (event_id, user_id, vendor, metric, value, unit,"
        " start_time, end_time, source_record_id, raw_event_id, ingested_at, received_at)"
        " VALUES ('e1', 'u1', 'oura', 'heart_rate', 61, '/min', now(), now(), 's1', 'r1',"
        " now(), now())", "insert", &err), CM_OK);
    /* event_id is the idempotency key: a second row with it is refused. */
    res = PQexec(test_pg,
        "INSERT INTO biometric_events (event_id, user_id, vendor, metric, value, unit,"
        " start_time, end_time, source_record_id, raw_event_id, ingested_at, received_at)"
        " VALUES ('e1', 'u1', 'oura', 'heart_rate', 62, '/min', now(), now(), 's1', 'r1',"
        " now(), now())");
    ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23505");
    PQclear(res);
    /* connections.status only takes the three states. */
    res = PQexec(test_pg, "INSERT INTO connections (vendor, vendor_user_id, user_id, status)"
                          " VALUES ('oura', 'x', 'u', 'paused')");
    ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23514");
    PQclear(res);
}
END_TEST

START_TEST(test_failed_migration_rolls_back_alone)
{
    struct cm_err err = { { 0 } };
    char *out = NULL;

    write_file("001_ok.sql", "CREATE TABLE t1 (x integer);");
    write_file("002_bad.sql", "CREATE TABLE t2 (x integer);\nSELECT no_such_column FROM t1;");
    ck_assert_int_eq(apply_dir(test_pg, tmpdir, &out, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "migration 2_bad"));
    ck_assert_ptr_nonnull(strstr(err.msg, "SQLSTATE 42703"));
    ck_assert_ptr_nonnull(strstr(out, "applied 001_ok"));
    free(out);
    ADM_TEST_EXPECT_DB("SELECT string_agg(version::text, ',' ORDER BY version)"
                       " FROM schema_migrations", "1");
    ADM_TEST_EXPECT_DB("SELECT to_regclass('t2') IS NULL", "t");

    /* Fixed, the next run applies just that file. */
    write_file("002_bad.sql", "CREATE TABLE t2 (x integer);\nSELECT x FROM t1;");
    ck_assert_msg(apply_dir(test_pg, tmpdir, &out, &err) == CM_OK, "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(out, "migrations: 1 applied, 1 already present"));
    free(out);
}
END_TEST

START_TEST(test_concurrent_runs_apply_each_file_once)
{
    struct cm_err err = { { 0 } };
    char *out = NULL;
    int status = -1;
    pid_t child;

    /* Slow enough that both runs overlap; without the lock the second CREATE TABLE fails. */
    write_file("001_slow.sql", "SELECT pg_sleep(0.5);\nCREATE TABLE slow_t (x integer);");
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        struct cm_err cerr = { { 0 } };
        char sql[128];
        char *cout = NULL;
        PGconn *pg = adm_pg_connect(getenv("AUREN_TEST_DATABASE_URL"), &cerr);

        snprintf(sql, sizeof(sql), "SET search_path TO %s", test_schema);
        if (pg == NULL || adm_pg_exec(pg, sql, "child", &cerr) != CM_OK) {
            _exit(2);
        }
        _exit(apply_dir(pg, tmpdir, &cout, &cerr) == CM_OK ? 0 : 1);
    }
    ck_assert_msg(apply_dir(test_pg, tmpdir, &out, &err) == CM_OK, "%s", err.msg);
    free(out);
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ADM_TEST_EXPECT_DB("SELECT count(*) FROM schema_migrations", "1");
}
END_TEST

/* A file that vanished after the scan, and a file that is not text: the run stops before that
 * migration with the reason; a recorded migration missing from the directory is warned about. */
START_TEST(test_unreadable_files_and_unknown_recorded)
{
    struct cm_err err = { { 0 } };
    struct adm_migrate_set set;
    char *out = NULL;
    size_t len = 0;
    char path[256];
    FILE *f;

    write_file("001_first.sql", "CREATE TABLE f1 (x integer);");
    ck_assert_msg(apply_dir(test_pg, tmpdir, &out, &err) == CM_OK, "%s", err.msg);
    free(out);

    snprintf(path, sizeof(path), "%s/001_first.sql", tmpdir);
    ck_assert_int_eq(unlink(path), 0);
    write_file("002_gone.sql", "CREATE TABLE f2 (x integer);");
    ck_assert_int_eq(adm_migrate_scan(tmpdir, &set, &err), CM_OK);
    snprintf(path, sizeof(path), "%s/002_gone.sql", tmpdir);
    ck_assert_int_eq(unlink(path), 0);
    f = open_memstream(&out, &len);
    ck_assert_int_eq(adm_migrate_apply(test_pg, &set, f, &err), CM_INVALID);
    fclose(f);
    free(out);
    adm_migrate_set_fini(&set);
    adm_migrate_set_fini(NULL); /* NULL-safe */
    ck_assert_msg(strstr(err.msg, "migration 2_gone: cannot read") != NULL, "%s", err.msg);

    snprintf(path, sizeof(path), "%s/003_binary.sql", tmpdir);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite("SELECT 1;\0\1", 1, 12, f), 12);
    fclose(f);
    ck_assert_int_eq(apply_dir(test_pg, tmpdir, &out, &err), CM_INVALID);
    free(out);
    ck_assert_msg(strstr(err.msg, "migration 3_binary: unreadable, too large or binary") != NULL,
                  "%s", err.msg);
    ck_assert_int_eq(unlink(path), 0);

    /* Only 004 on disk: 1 is recorded but not among the files (a warning), 4 is applied. */
    write_file("004_last.sql", "CREATE TABLE f4 (x integer);");
    ck_assert_msg(apply_dir(test_pg, tmpdir, &out, &err) == CM_OK, "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(out, "migrations: 1 applied, 0 already present"));
    free(out);
    ADM_TEST_EXPECT_DB("SELECT string_agg(version::text, ',' ORDER BY version)"
                       " FROM schema_migrations", "1,4");
}
END_TEST

/* A schema_migrations table of another tool (no name column) cannot be read: nothing applied. */
START_TEST(test_foreign_schema_migrations_table)
{
    struct cm_err err = { { 0 } };
    char *out = NULL;

    ck_assert_int_eq(adm_pg_exec(test_pg, "CREATE TABLE schema_migrations (version bigint "
                                 "PRIMARY KEY, dirty boolean NOT NULL)", "fixture", &err), CM_OK);
    write_file("001_a.sql", "CREATE TABLE a1 (x integer);");
    ck_assert_int_eq(apply_dir(test_pg, tmpdir, &out, &err), CM_INVALID);
    free(out);
    ck_assert_msg(strstr(err.msg, "read schema_migrations") != NULL, "%s", err.msg);
    ADM_TEST_EXPECT_DB("SELECT to_regclass('a1') IS NULL", "t");
}
END_TEST

/* A migration that removes the bookkeeping table cannot be recorded: it rolls back whole. */
START_TEST(test_migration_that_cannot_be_recorded_rolls_back)
{
    struct cm_err err = { { 0 } };
    char *out = NULL;

    write_file("001_rogue.sql", "CREATE TABLE r1 (x integer);\nDROP TABLE schema_migrations;");
    ck_assert_int_eq(apply_dir(test_pg, tmpdir, &out, &err), CM_INVALID);
    free(out);
    ck_assert_msg(strstr(err.msg, "migration 1_rogue") != NULL, "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "42P01") != NULL, "%s", err.msg);
    ADM_TEST_EXPECT_DB("SELECT to_regclass('r1') IS NULL AND "
                       "to_regclass('schema_migrations') IS NOT NULL", "t");
}
END_TEST

static void db_setup(void)
{
    tmp_setup();
    adm_test_db_setup();
}

static void db_teardown(void)
{
    adm_test_db_teardown();
    tmp_teardown();
}

static Suite *adm_migrate_suite(void)
{
    Suite *s = suite_create("adm_migrate");
    TCase *tc = tcase_create("names");

    tcase_add_test(tc, test_parse_accepts_versioned_names);
    tcase_add_test(tc, test_parse_rejects_other_names);
    tcase_add_test(tc, test_parse_rejects_name_longer_than_buffer);
    suite_add_tcase(s, tc);

    tc = tcase_create("scan");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_scan_sorts_by_version_and_ignores_other_files);
    tcase_add_test(tc, test_scan_rejects_duplicate_versions);
    tcase_add_test(tc, test_scan_rejects_badly_named_sql);
    tcase_add_test(tc, test_scan_missing_dir_fails);
    tcase_add_test(tc, test_scan_repository_migrations);
    suite_add_tcase(s, tc);

    if (adm_test_db_enabled()) {
        tc = tcase_create("apply");
        tcase_add_checked_fixture(tc, db_setup, db_teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_apply_repository_schema_once);
        tcase_add_test(tc, test_applied_schema_keeps_the_contract);
        tcase_add_test(tc, test_failed_migration_rolls_back_alone);
        tcase_add_test(tc, test_concurrent_runs_apply_each_file_once);
        tcase_add_test(tc, test_unreadable_files_and_unknown_recorded);
        tcase_add_test(tc, test_foreign_schema_migrations_table);
        tcase_add_test(tc, test_migration_that_cannot_be_recorded_rolls_back);
        suite_add_tcase(s, tc);
    } else {
        fprintf(stderr, "adm_migrate: AUREN_TEST_DATABASE_URL unset, database cases skipped\n");
    }
    return s;
}

int main(void)
{
    return check_run(adm_migrate_suite());
}
