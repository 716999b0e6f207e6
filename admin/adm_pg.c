/* libpq plumbing for auren-admin: connecting with our defaults, running scripts, and turning a
 * failed result into a payload-free reason. Errors carry the SQLSTATE and the server's primary
 * message only: DETAIL lines can quote row values (e.g. a duplicate key), so they are dropped.
 * Server notices ("relation already exists, skipping") go to the debug log. */
#include "adm.h"

#include <string.h>

#include "cm/log.h"

static void on_notice(void *arg, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    (void)arg;
    cm_log_debug("pg.notice", "sqlstate=%s", state != NULL ? state : "-");
}

/* Copy libpq's message as one line: inner line breaks and tabs become spaces, trailing ones go. */
static void trim_copy(char *dst, size_t dstsz, const char *src)
{
    size_t n;

    cm_strlcpy(dst, src != NULL ? src : "", dstsz);
    for (char *p = dst; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t') {
            *p = ' ';
        }
    }
    n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == '\r' || dst[n - 1] == ' ')) {
        dst[--n] = '\0';
    }
}

PGconn *adm_pg_connect(const char *url, struct cm_err *err)
{
    /* With expand_dbname, settings in `url` override the entries before it. */
    const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *const vals[] = { "10", "auren-admin", url, NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    char msg[120];

    if (pg == NULL) {
        cm_err_set(err, CM_RETRY, "database: out of memory");
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        trim_copy(msg, sizeof(msg), PQerrorMessage(pg));
        cm_err_set(err, CM_RETRY, "database: cannot connect: %s", msg);
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeReceiver(pg, on_notice, NULL);
    return pg;
}

enum cm_rc adm_pg_fail(PGconn *pg, const PGresult *res, const char *what, struct cm_err *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char msg[120];

    if (PQstatus(pg) != CONNECTION_OK) {
        trim_copy(msg, sizeof(msg), PQerrorMessage(pg));
        return cm_err_set(err, CM_RETRY, "%s: connection lost: %s", what, msg);
    }
    if (primary != NULL) {
        trim_copy(msg, sizeof(msg), primary);
    } else {
        trim_copy(msg, sizeof(msg), PQerrorMessage(pg));
    }
    return cm_err_set(err, CM_INVALID, "%s: SQLSTATE %s: %s", what, state != NULL ? state : "-",
                      msg);
}

enum cm_rc adm_pg_exec(PGconn *pg, const char *sql, const char *what, struct cm_err *err)
{
    enum cm_rc rc = CM_OK;
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        rc = adm_pg_fail(pg, res, what, err);
    }
    PQclear(res);
    return rc;
}
