/* Shared fixture of the fetcher's integration tests (proc_oauth_test.c, proc_fetcher_test.c):
 * - the fake vendor (tests/fakevendor/server.py) started on a free port, with its fault controls;
 * - a PostgreSQL schema of its own (AUREN_TEST_DATABASE_URL) with the migrations applied, so the
 *   tests run beside other suites, and connections sealed like `auren-admin connections add`;
 * - a processor configuration pointing every vendor at the fake (as config/local.env does).
 * The cases need AUREN_TEST_DATABASE_URL (the local stack; `make unit-tests` sets it when it
 * answers) and skip, saying so, without it. Redis is AUREN_TEST_REDIS_URL when set, else a private
 * redis-server started for the run. */
#ifndef PROC_FETCH_FX_H
#define PROC_FETCH_FX_H

#include <check.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "proc_cfg.h"

#define FX_KEYS "dev1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define FX_OTHER_KEYS "other:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

/* Starts logging and libcurl (and the private Redis when AUREN_TEST_REDIS_URL is unset); true
 * when AUREN_TEST_DATABASE_URL is set (else the cases skip, and this says so on stderr). */
bool proc_fx_enabled(const char *suite);
/* Runs the suite (Check's fork mode), stops the private Redis, ends libcurl; the exit status
 * of main(). */
int proc_fx_run(Suite *s);

/* The fake vendor: start (port), control POST (JSON body), stop. */
int proc_fx_fake_start(void);
void proc_fx_control(const char *what, const char *json);
/* Token refreshes the fake served for vendor:vuid (GET /_control/stats). */
long proc_fx_refreshes(const char *vendor, const char *vuid);
void proc_fx_fake_stop(void);

/* A private redis-server on a free port (a Redis the tests may stop), and its stop. */
int proc_fx_redis_start(void);
void proc_fx_redis_stop(void);

/* A schema with the migrations; returns the DATABASE_URL that selects it (static storage). */
const char *proc_fx_db_setup(void);
void proc_fx_db_exec(const char *sql);
/* The single value of a one-row query, copied into out. */
void proc_fx_db_value(const char *sql, char *out, size_t outsz);
void proc_fx_db_teardown(void);

/* A connection with these tokens sealed under `keys` (refresh may be NULL); expires_in_s 0 =
 * unknown expiry, negative = already expired. */
void proc_fx_add_conn(const char *keys, const char *vendor, const char *vuid, const char *user,
                      const char *access, const char *refresh, long expires_in_s);
/* The same tokens granted at the fake (refresh may be NULL). */
void proc_fx_grant(const char *vendor, const char *vuid, const char *access, const char *refresh,
                   long expires_in_s);

/* cfg with every vendor at the fake on `port`, the database and Redis of the tests. Strings are
 * static storage; tests adjust the numbers. */
void proc_fx_cfg(struct proc_cfg *cfg, int port, const char *database_url);

#endif
