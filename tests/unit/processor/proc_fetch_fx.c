/* The fetcher tests' fixture (proc_fetch_fx.h): the fake vendor as a child process, a private
 * PostgreSQL schema, sealed connections, and a configuration pointing at both. */
#include <check.h>
#include <curl/curl.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm/buf.h"
#include "cm/log.h"
#include "cm/vault.h"
#include "proc_fetch_fx.h"
#include "../check_run.h"

extern char **environ;

static pid_t fake_pid, redis_pid, own_redis_pid;
static int redis_port;
static int fake_port;
static PGconn *fx_pg;
static char fx_schema[40];
static char fx_url[512];

static int redis_start(pid_t *pid);
static void stop_child(pid_t *pid);

int proc_fx_run(Suite *s)
{
    int rc = check_run(s);

    stop_child(&own_redis_pid);
    curl_global_cleanup();
    return rc;
}

bool proc_fx_enabled(const char *suite)
{
    const char *db = getenv("AUREN_TEST_DATABASE_URL");
    const char *redis = getenv("AUREN_TEST_REDIS_URL");

    cm_log_init(suite);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (db == NULL || db[0] == '\0') {
        fprintf(stderr, "%s: AUREN_TEST_DATABASE_URL unset, integration cases skipped\n", suite);
        return false;
    }
    if (redis == NULL || redis[0] == '\0') {
        /* no stack Redis named: a private one for this run */
        char url[64];
        int p = redis_start(&own_redis_pid);
        if (p < 0) {
            fprintf(stderr, "%s: cannot start a private redis-server\n", suite);
            exit(EXIT_FAILURE);
        }
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", p);
        setenv("AUREN_TEST_REDIS_URL", url, 1);
    }
    return true;
}

static void stop_child(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGTERM);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

int proc_fx_fake_start(void)
{
    char *argv[] = { (char *)"/usr/bin/python3",
                     (char *)AUREN_SOURCE_DIR "/tests/fakevendor/server.py",
                     (char *)"--port", (char *)"0", NULL };
    posix_spawn_file_actions_t fa;
    int fds[2];
    char line[32] = "";
    FILE *in;

    ck_assert_int_eq(pipe(fds), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", 1, 0); /* O_WRONLY */
    ck_assert_int_eq(posix_spawn(&fake_pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    in = fdopen(fds[0], "r");
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), in));
    fclose(in);
    fake_port = (int)strtol(line, NULL, 10);
    ck_assert_int_gt(fake_port, 0);
    return fake_port;
}

void proc_fx_fake_stop(void)
{
    stop_child(&fake_pid);
}

/* -1 when it does not come up; no Check assertions here (also called outside a test). */
static int redis_start(pid_t *pid)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    char port[16];
    char *argv[] = { (char *)"/usr/bin/redis-server", (char *)"--port", port,
                     (char *)"--bind", (char *)"127.0.0.1", (char *)"--save", (char *)"",
                     (char *)"--appendonly", (char *)"no", NULL };
    posix_spawn_file_actions_t fa;
    int rc;

    /* a port nobody listens on now (the kernel's pick), then the server on it */
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &alen) != 0) {
        if (s >= 0) {
            close(s);
        }
        return -1;
    }
    close(s);
    redis_port = ntohs(a.sin_port);
    snprintf(port, sizeof(port), "%d", redis_port);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", 1, 0);
    rc = posix_spawn(pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; rc == 0 && i < 200; i++) { /* up to 10 s for the server to listen */
        redisContext *c = redisConnect("127.0.0.1", redis_port);
        bool up = c != NULL && c->err == 0;
        redisFree(c);
        if (up) {
            return redis_port;
        }
        usleep(50000);
    }
    stop_child(pid);
    return -1;
}

int proc_fx_redis_start(void)
{
    int p = redis_start(&redis_pid);

    ck_assert_msg(p > 0, "private redis-server did not start");
    return p;
}

void proc_fx_redis_stop(void)
{
    stop_child(&redis_pid);
}

static size_t collect_body(char *p, size_t size, size_t n, void *arg)
{
    return cm_buf_append(arg, p, size * n) == CM_OK ? size * n : 0;
}

/* One request to the fake's control API; the answer body in out (may be NULL). */
static void control_call(const char *what, const char *json, struct cm_buf *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char url[128];
    long status = 0;
    struct cm_buf sink;

    cm_buf_init(&sink, 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/_control/%s", fake_port, what);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out != NULL ? out : &sink);
    if (json != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    }
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    ck_assert_int_eq(status, 200);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cm_buf_fini(&sink);
}

void proc_fx_control(const char *what, const char *json)
{
    control_call(what, json, NULL);
}

long proc_fx_refreshes(const char *vendor, const char *vuid)
{
    struct cm_buf b;
    char key[256];
    json_t *root, *n;
    long v;

    cm_buf_init(&b, 0);
    control_call("stats", NULL, &b);
    root = json_loadb((const char *)b.data, b.len, 0, NULL);
    ck_assert_ptr_nonnull(root);
    snprintf(key, sizeof(key), "%s:%s", vendor, vuid);
    n = json_object_get(json_object_get(root, "refreshes"), key);
    v = json_is_integer(n) ? (long)json_integer_value(n) : 0;
    json_decref(root);
    cm_buf_fini(&b);
    return v;
}

void proc_fx_db_exec(const char *sql)
{
    PGresult *res = PQexec(fx_pg, sql);
    ExecStatusType st = PQresultStatus(res);

    ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    PQclear(res);
}

void proc_fx_db_value(const char *sql, char *out, size_t outsz)
{
    PGresult *res = PQexec(fx_pg, sql);

    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    ck_assert_int_eq(PQntuples(res), 1);
    cm_strlcpy(out, PQgetvalue(res, 0, 0), outsz);
    PQclear(res);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int sql_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 4 && strcmp(d->d_name + n - 4, ".sql") == 0;
}

const char *proc_fx_db_setup(void)
{
    const char *base = getenv("AUREN_TEST_DATABASE_URL");
    char id[33], sql[160];
    struct dirent **files;
    int n;

    ck_assert_ptr_nonnull(base);
    fx_pg = PQconnectdb(base);
    ck_assert_msg(PQstatus(fx_pg) == CONNECTION_OK, "%s", PQerrorMessage(fx_pg));
    cm_random_id(id);
    snprintf(fx_schema, sizeof(fx_schema), "fetch_test_%.16s", id);
    snprintf(sql, sizeof(sql), "SET client_min_messages = warning; CREATE SCHEMA %s;"
             " SET search_path TO %s", fx_schema, fx_schema);
    proc_fx_db_exec(sql);
    n = scandir(AUREN_SOURCE_DIR "/schemas/sql", &files, sql_file, by_name);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++) {
        char path[512];
        FILE *fp;
        struct cm_buf text;
        char chunk[4096];
        size_t got;

        snprintf(path, sizeof(path), "%s/schemas/sql/%s", AUREN_SOURCE_DIR, files[i]->d_name);
        fp = fopen(path, "r");
        ck_assert_ptr_nonnull(fp);
        cm_buf_init(&text, 0);
        while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
            cm_buf_append(&text, chunk, got);
        }
        fclose(fp);
        cm_buf_terminate(&text);
        proc_fx_db_exec((const char *)text.data);
        cm_buf_fini(&text);
        free(files[i]);
    }
    free(files);
    snprintf(fx_url, sizeof(fx_url), "%s%soptions=-csearch_path%%3D%s", base,
             strchr(base, '?') != NULL ? "&" : "?", fx_schema);
    return fx_url;
}

void proc_fx_db_teardown(void)
{
    char sql[96];

    if (fx_pg == NULL) {
        return;
    }
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", fx_schema);
    PQclear(PQexec(fx_pg, sql));
    PQfinish(fx_pg);
    fx_pg = NULL;
}

void proc_fx_add_conn(const char *keys, const char *vendor, const char *vuid, const char *user,
                      const char *access, const char *refresh, long expires_in_s)
{
    static const char sql[] =
        "INSERT INTO connections (vendor, vendor_user_id, user_id, status, access_token_ct,"
        " refresh_token_ct, key_id, expires_at, token_generation)"
        " VALUES ($1, $2, $3, 'active', $4, $5, $6,"
        " CASE WHEN $7::bigint = 0 THEN NULL ELSE now() + $7::bigint * interval '1 second' END, 1)"
        " ON CONFLICT (vendor, vendor_user_id) DO UPDATE SET user_id = EXCLUDED.user_id,"
        " status = 'active', access_token_ct = EXCLUDED.access_token_ct,"
        " refresh_token_ct = EXCLUDED.refresh_token_ct, key_id = EXCLUDED.key_id,"
        " expires_at = EXCLUDED.expires_at, token_generation = connections.token_generation + 1";
    struct cm_err err = { { 0 } };
    struct cm_vault *v = cm_vault_new(keys, &err);
    struct cm_vault_aad aad = { vendor, vuid, user, "access" };
    struct cm_buf at, rt;
    char exp[24];
    PGresult *res;

    ck_assert_ptr_nonnull(v);
    cm_buf_init(&at, 0);
    cm_buf_init(&rt, 0);
    ck_assert_int_eq(cm_vault_seal(v, &aad, access, strlen(access), &at, &err), CM_OK);
    aad.field = "refresh";
    if (refresh != NULL) {
        ck_assert_int_eq(cm_vault_seal(v, &aad, refresh, strlen(refresh), &rt, &err), CM_OK);
    }
    snprintf(exp, sizeof(exp), "%ld", expires_in_s);
    const char *params[7] = { vendor, vuid, user, (const char *)at.data,
                              refresh != NULL ? (const char *)rt.data : NULL,
                              cm_vault_active_kid(v), exp };
    int lens[7] = { 0, 0, 0, (int)at.len, (int)rt.len, 0, 0 };
    int fmts[7] = { 0, 0, 0, 1, 1, 0, 0 };
    res = PQexecParams(fx_pg, sql, 7, NULL, params, lens, fmts, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
    PQclear(res);
    cm_buf_fini(&at);
    cm_buf_fini(&rt);
    cm_vault_free(v);
}

void proc_fx_grant(const char *vendor, const char *vuid, const char *access, const char *refresh,
                   long expires_in_s)
{
    char json[512];

    snprintf(json, sizeof(json),
             "{\"vendor\":\"%s\",\"vendor_user_id\":\"%s\",\"access\":\"%s\",\"refresh\":%s%s%s,"
             "\"expires_in\":%ld}", vendor, vuid, access, refresh != NULL ? "\"" : "",
             refresh != NULL ? refresh : "null", refresh != NULL ? "\"" : "", expires_in_s);
    proc_fx_control("grant", json);
}

void proc_fx_cfg(struct proc_cfg *cfg, int port, const char *database_url)
{
    static const struct {
        const char *api, *token, *auth;
    } paths[PROC_API_N] = {
        [PROC_API_WHOOP] = { "/whoop/developer", "/whoop/oauth/oauth2/token", "body" },
        [PROC_API_OURA] = { "/oura", "/oura/oauth/token", "body" },
        [PROC_API_POLAR] = { "", "/polar/v2/oauth2/token", "basic" },
        [PROC_API_FITBIT] = { "/fitbit", "/fitbit/oauth2/token", "basic" },
        [PROC_API_GOOGLE_HEALTH] = { "/google_health", "/google_health/token", "body" },
        [PROC_API_WITHINGS] = { "/withings", "/withings/v2/oauth2", "body" },
        [PROC_API_STRAVA] = { "/strava/api/v3", "/strava/oauth/token", "body" },
        [PROC_API_GARMIN] = { "", "/garmin/oauth/token", "body" },
    };
    static char strs[PROC_API_N][4][160];

    memset(cfg, 0, sizeof(*cfg));
    cfg->redis_url = getenv("AUREN_TEST_REDIS_URL");
    cfg->database_url = (char *)database_url;
    cfg->fetcher_group_id = (char *)"auren-fetcher-test";
    cfg->token_encryption_keys = (char *)FX_KEYS;
    cfg->fetch_batch_max = 64;
    cfg->fetch_http_timeout_ms = 3000;
    cfg->refresh_lock_ms = 2000;
    cfg->refresh_margin_s = 60;
    cfg->fetch_max_attempts = 3;
    cfg->fetch_max_pages = 3;
    cfg->retry_base_ms = 100;
    cfg->retry_max_ms = 400;
    cfg->breaker_min_requests = 100;
    cfg->breaker_failure_pct = 50;
    cfg->breaker_window_s = 30;
    cfg->breaker_open_ms = 1000;
    for (int i = 0; i < PROC_API_N; i++) {
        const char *v = proc_api_vendor_name((enum proc_api_vendor)i);
        snprintf(strs[i][0], sizeof(strs[i][0]), "dev-%s-client-id", v);
        snprintf(strs[i][1], sizeof(strs[i][1]), "dev-%s-client-secret", v);
        snprintf(strs[i][2], sizeof(strs[i][2]), "http://127.0.0.1:%d%s", port, paths[i].api);
        snprintf(strs[i][3], sizeof(strs[i][3]), "http://127.0.0.1:%d%s", port, paths[i].token);
        cfg->api[i] = (struct proc_api_cfg){ strs[i][0], strs[i][1], strs[i][2], strs[i][3],
                                             (char *)paths[i].auth };
    }
}
