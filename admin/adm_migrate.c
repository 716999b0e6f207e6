/* Versioned SQL migrations: schemas/sql/NNN_name.sql applied in version order, each once.
 * Invariants: schema_migrations holds exactly the versions whose file committed (the file and
 * its version row share one transaction); every run holds a session advisory lock from before
 * it reads schema_migrations until it is done, so two runs never apply the same file. A file
 * must not contain transaction control of its own (and so no CREATE INDEX CONCURRENTLY). */
#include "adm.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATION_MAX_BYTES (16 * 1024 * 1024)
/* "auren.migrate" as one advisory-lock key; any constant works if every run uses the same. */
#define MIGRATE_LOCK_KEY "6171372389543716454"

static const char bootstrap_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

bool adm_migrate_parse_name(const char *file, int *version, char *name, size_t namesz)
{
    size_t len = strlen(file);
    size_t digits = 0;
    size_t name_len;
    long v = 0;

    while (isdigit((unsigned char)file[digits])) {
        v = v * 10 + (file[digits] - '0');
        digits++;
        if (digits > 9) {
            return false;
        }
    }
    if (digits == 0 || v == 0 || file[digits] != '_' || len < digits + 1 + 4 ||
        strcmp(file + len - 4, ".sql") != 0) {
        return false;
    }
    name_len = len - 4 - (digits + 1);
    if (name_len == 0 || name_len >= namesz) {
        return false;
    }
    for (size_t i = digits + 1; i < len - 4; i++) {
        unsigned char c = (unsigned char)file[i];

        if (!isalnum(c) && c != '_' && c != '-') {
            return false;
        }
    }
    memcpy(name, file + digits + 1, name_len);
    name[name_len] = '\0';
    *version = (int)v;
    return true;
}

static int by_version(const void *a, const void *b)
{
    const struct adm_migration *x = a;
    const struct adm_migration *y = b;

    return (x->version > y->version) - (x->version < y->version);
}

void adm_migrate_set_fini(struct adm_migrate_set *set)
{
    if (set == NULL) {
        return;
    }
    for (size_t i = 0; i < set->n; i++) {
        free(set->v[i].name);
        free(set->v[i].path);
    }
    free(set->v);
    set->v = NULL;
    set->n = 0;
}

static bool ends_with_sql(const char *s)
{
    size_t n = strlen(s);

    return n >= 4 && strcmp(s + n - 4, ".sql") == 0;
}

enum cm_rc adm_migrate_scan(const char *dir, struct adm_migrate_set *set, struct cm_err *err)
{
    enum cm_rc rc = CM_OK;
    size_t cap = 0;
    struct dirent *de;
    DIR *d = opendir(dir);

    set->v = NULL;
    set->n = 0;
    if (d == NULL) {
        return cm_err_set(err, CM_INVALID, "migrations dir: cannot open (%s)", strerror(errno));
    }
    while ((de = readdir(d)) != NULL) {
        char name[128];
        char path[PATH_MAX];
        int version;

        if (!ends_with_sql(de->d_name)) {
            continue;
        }
        if (!adm_migrate_parse_name(de->d_name, &version, name, sizeof(name))) {
            rc = cm_err_set(err, CM_INVALID, "migration file %.60s: name is not NNN_name.sql",
                            de->d_name);
            goto out;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path)) {
            rc = cm_err_set(err, CM_INVALID, "migration file %.60s: path too long", de->d_name);
            goto out;
        }
        if (set->n == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            set->v = cm_xrealloc(set->v, cap * sizeof(*set->v));
        }
        set->v[set->n].version = version;
        set->v[set->n].name = cm_xstrdup(name);
        set->v[set->n].path = cm_xstrdup(path);
        set->n++;
    }
    if (set->n > 1) { /* set->v is NULL for an empty directory; qsort() wants a pointer */
        qsort(set->v, set->n, sizeof(*set->v), by_version);
    }
    for (size_t i = 1; i < set->n; i++) {
        if (set->v[i].version == set->v[i - 1].version) {
            rc = cm_err_set(err, CM_INVALID, "migrations %s and %s share version %d",
                            set->v[i - 1].name, set->v[i].name, set->v[i].version);
            goto out;
        }
    }
out:
    closedir(d);
    if (rc != CM_OK) {
        adm_migrate_set_fini(set);
    }
    return rc;
}

/* Returns the file's text (NUL-terminated, new) or NULL with a reason. */
static char *read_sql(const struct adm_migration *m, struct cm_err *err)
{
    FILE *f = fopen(m->path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        cm_err_set(err, CM_INVALID, "migration %d_%s: cannot read (%s)", m->version, m->name,
                   strerror(errno));
        return NULL;
    }
    buf = cm_xmalloc(MIGRATION_MAX_BYTES + 1);
    n = fread(buf, 1, MIGRATION_MAX_BYTES + 1, f);
    if (ferror(f) || n > MIGRATION_MAX_BYTES || memchr(buf, '\0', n) != NULL) {
        cm_err_set(err, CM_INVALID, "migration %d_%s: unreadable, too large or binary",
                   m->version, m->name);
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The versions already applied, sorted, with their names (for a mismatch warning). */
static PGresult *load_applied(PGconn *pg, struct cm_err *err)
{
    PGresult *res = PQexec(pg, "SELECT version, name FROM schema_migrations ORDER BY version");

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        adm_pg_fail(pg, res, "read schema_migrations", err);
        PQclear(res);
        return NULL;
    }
    return res;
}

static const char *applied_name(const PGresult *applied, int version)
{
    for (int i = 0; i < PQntuples(applied); i++) {
        if (strtol(PQgetvalue(applied, i, 0), NULL, 10) == version) {
            return PQgetvalue(applied, i, 1);
        }
    }
    return NULL;
}

static bool in_set(const struct adm_migrate_set *set, int version)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].version == version) {
            return true;
        }
    }
    return false;
}

static enum cm_rc apply_one(PGconn *pg, const struct adm_migration *m, struct cm_err *err)
{
    char what[160];
    char version[16];
    const char *params[2];
    PGresult *res;
    enum cm_rc rc;
    char *sql = read_sql(m, err);

    if (sql == NULL) {
        return CM_INVALID;
    }
    snprintf(what, sizeof(what), "migration %d_%s", m->version, m->name);
    snprintf(version, sizeof(version), "%d", m->version);
    rc = adm_pg_exec(pg, "BEGIN", what, err);
    if (rc == CM_OK) {
        rc = adm_pg_exec(pg, sql, what, err);
    }
    if (rc == CM_OK) {
        params[0] = version;
        params[1] = m->name;
        res = PQexecParams(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                           2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = adm_pg_fail(pg, res, what, err);
        }
        PQclear(res);
    }
    if (rc == CM_OK) {
        rc = adm_pg_exec(pg, "COMMIT", what, err);
    } else if (PQstatus(pg) == CONNECTION_OK) {
        /* Keep the first reason; the rollback's own outcome adds nothing. */
        PQclear(PQexec(pg, "ROLLBACK"));
    }
    free(sql);
    return rc;
}

enum cm_rc adm_migrate_apply(PGconn *pg, const struct adm_migrate_set *set, FILE *out,
                             struct cm_err *err)
{
    enum cm_rc rc;
    PGresult *applied = NULL;
    size_t done = 0;
    size_t already = 0;

    rc = adm_pg_exec(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "advisory lock", err);
    if (rc != CM_OK) {
        return rc;
    }
    rc = adm_pg_exec(pg, bootstrap_sql, "create schema_migrations", err);
    if (rc != CM_OK) {
        goto out;
    }
    applied = load_applied(pg, err);
    if (applied == NULL) {
        rc = CM_INVALID;
        goto out;
    }
    for (size_t i = 0; i < set->n; i++) {
        const struct adm_migration *m = &set->v[i];
        const char *name = applied_name(applied, m->version);

        if (name != NULL) {
            if (strcmp(name, m->name) != 0) {
                fprintf(stderr, "auren-admin: warning: migration %d is recorded as '%s' but the "
                        "file is named '%s'\n", m->version, name, m->name);
            }
            already++;
            continue;
        }
        rc = apply_one(pg, m, err);
        if (rc != CM_OK) {
            goto out;
        }
        fprintf(out, "applied %03d_%s\n", m->version, m->name);
        done++;
    }
    for (int i = 0; i < PQntuples(applied); i++) {
        int v = (int)strtol(PQgetvalue(applied, i, 0), NULL, 10);

        if (!in_set(set, v)) {
            fprintf(stderr, "auren-admin: warning: the database has migration %d (%s) that is "
                    "not among the files\n", v, PQgetvalue(applied, i, 1));
        }
    }
    fprintf(out, "migrations: %zu applied, %zu already present\n", done, already);
out:
    PQclear(applied);
    if (PQstatus(pg) == CONNECTION_OK) {
        PQclear(PQexec(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    }
    return rc;
}
