/* Shared fixture of the auren-admin database tests: a connection to AUREN_TEST_DATABASE_URL with
 * a fresh schema of its own on the search_path, dropped again at the end, so tests can run side
 * by side and against a database that other suites use. */
#ifndef ADM_TEST_DB_H
#define ADM_TEST_DB_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "adm.h"

static PGconn *test_pg;
static char test_schema[32];

static inline bool adm_test_db_enabled(void)
{
    const char *url = getenv("AUREN_TEST_DATABASE_URL");

    return url != NULL && url[0] != '\0';
}

static inline void adm_test_db_setup(void)
{
    struct cm_err err = { { 0 } };
    char id[33];
    char sql[128];

    test_pg = adm_pg_connect(getenv("AUREN_TEST_DATABASE_URL"), &err);
    ck_assert_msg(test_pg != NULL, "%s", err.msg);
    cm_random_id(id);
    snprintf(test_schema, sizeof(test_schema), "adm_test_%.16s", id);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s; SET search_path TO %s", test_schema,
             test_schema);
    ck_assert_int_eq(adm_pg_exec(test_pg, sql, "fixture", &err), CM_OK);
}

static inline void adm_test_db_teardown(void)
{
    struct cm_err err = { { 0 } };
    char sql[128];

    if (test_pg == NULL) {
        return;
    }
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", test_schema);
    adm_pg_exec(test_pg, sql, "fixture", &err);
    PQfinish(test_pg);
    test_pg = NULL;
}

/* The single value of a one-row, one-column query, as a new string. */
static inline char *adm_test_db_value(const char *sql)
{
    PGresult *res = PQexec(test_pg, sql);
    char *v;

    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    ck_assert_int_eq(PQntuples(res), 1);
    v = cm_xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

/* Assert the single value of a one-row, one-column query (a macro: a failure names the caller's
 * line). */
#define ADM_TEST_EXPECT_DB(sql, want)                                                            \
    do {                                                                                         \
        char *adm_v_ = adm_test_db_value(sql);                                                   \
        ck_assert_str_eq(adm_v_, want);                                                          \
        free(adm_v_);                                                                            \
    } while (0)

#endif
