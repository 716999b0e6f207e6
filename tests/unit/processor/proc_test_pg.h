/* A scratch database for the processor's PostgreSQL cases: created on the server of
 * AUREN_TEST_DATABASE_URL (the stack's auren_test, whose role may CREATE DATABASE) with a minimal
 * `connections` table, and dropped again. A database of its own rather than a schema: the
 * processor sets the connection's `options` itself, so a search_path in the URL would not hold. */
#ifndef PROC_TEST_PG_H
#define PROC_TEST_PG_H

#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct proc_test_pg {
    PGconn *admin; /* to the server's AUREN_TEST_DATABASE_URL database */
    PGconn *db;    /* to the scratch database */
    char name[64];
    char url[512];
};

static inline void proc_test_pg_exec(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);

    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
                      PQresultStatus(res) == PGRES_TUPLES_OK,
                  "%s", PQresultErrorMessage(res));
    PQclear(res);
}

/* false (and a note on stderr) when AUREN_TEST_DATABASE_URL is unset. `with_table`: create the
 * connections table (columns the processor reads or writes, as in the migrations). */
static inline bool proc_test_pg_create(struct proc_test_pg *t, bool with_table)
{
    const char *base = getenv("AUREN_TEST_DATABASE_URL");
    const char *slash;
    char sql[160];

    memset(t, 0, sizeof(*t));
    if (base == NULL || base[0] == '\0' || strchr(base, '?') != NULL ||
        (slash = strrchr(base, '/')) == NULL) {
        fprintf(stderr, "AUREN_TEST_DATABASE_URL unset (or with parameters): database cases "
                        "skipped\n");
        return false;
    }
    t->admin = PQconnectdb(base);
    ck_assert_msg(PQstatus(t->admin) == CONNECTION_OK, "%s", PQerrorMessage(t->admin));
    proc_test_pg_exec(t->admin, "SET client_min_messages = warning");
    snprintf(t->name, sizeof(t->name), "auren_proc_test_%ld", (long)getpid());
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", t->name);
    proc_test_pg_exec(t->admin, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", t->name);
    proc_test_pg_exec(t->admin, sql);
    ck_assert_int_lt(snprintf(t->url, sizeof(t->url), "%.*s/%s", (int)(slash - base), base,
                              t->name),
                     (int)sizeof(t->url));
    t->db = PQconnectdb(t->url);
    ck_assert_msg(PQstatus(t->db) == CONNECTION_OK, "%s", PQerrorMessage(t->db));
    proc_test_pg_exec(t->db, "SET client_min_messages = warning");
    if (with_table) {
        proc_test_pg_exec(t->db,
                          "CREATE TABLE connections (vendor text NOT NULL, vendor_user_id text NOT "
                          "NULL, user_id text NOT NULL, status text NOT NULL DEFAULT 'active', "
                          "access_token_ct bytea, refresh_token_ct bytea, key_id text, expires_at "
                          "timestamptz, updated_at timestamptz NOT NULL DEFAULT now(), "
                          "PRIMARY KEY (vendor, vendor_user_id))");
    }
    return true;
}

static inline void proc_test_pg_drop(struct proc_test_pg *t)
{
    char sql[160];

    if (t->admin == NULL) {
        return;
    }
    PQfinish(t->db);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", t->name);
    proc_test_pg_exec(t->admin, sql);
    PQfinish(t->admin);
    memset(t, 0, sizeof(*t));
}

#endif
