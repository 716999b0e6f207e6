/* `auren-admin keys rotate`: re-seal every connection's tokens under the active key of
 * TOKEN_ENCRYPTION_KEYS. Rows are read in pages and each one is updated by its own statement,
 * guarded by (key_id, token_generation): a processor that refreshed the row meanwhile already
 * sealed it under the active key (or a newer generation), and the guard makes us re-read instead
 * of overwriting it. The processors keep running throughout; an old key may be dropped from
 * TOKEN_ENCRYPTION_KEYS once this reports no row left under it. Tokens are never printed. */
#include "adm.h"

#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/vault.h"

#define PAGE 500
#define MAX_PASSES 5

/* Open one bytea column (text format) into `plain`; false when NULL in the row. */
static enum cm_rc open_col(const struct cm_vault *v, PGresult *res, int row, int col,
                           const char *kid, const struct cm_vault_aad *aad, struct cm_buf *plain,
                           bool *present, struct cm_err *err)
{
    size_t n = 0;
    unsigned char *ct;
    enum cm_rc rc;

    cm_buf_reset(plain);
    *present = !PQgetisnull(res, row, col);
    if (!*present) {
        return CM_OK;
    }
    ct = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col), &n);
    if (ct == NULL) {
        return cm_err_set(err, CM_INVALID, "keys rotate: bad bytea");
    }
    rc = cm_vault_open(v, kid, aad, ct, n, plain, err);
    PQfreemem(ct);
    return rc;
}

/* Re-seal one row; *done is false when the guard did not match (raced with a refresh). */
static enum cm_rc rotate_row(PGconn *pg, const struct cm_vault *v, PGresult *res, int row,
                             bool *done, struct cm_err *err)
{
    static const char sql[] =
        "UPDATE connections SET access_token_ct = $1, refresh_token_ct = $2, key_id = $3,"
        " updated_at = now() WHERE vendor = $4 AND vendor_user_id = $5 AND key_id = $6"
        " AND token_generation = $7";
    const char *vendor = PQgetvalue(res, row, 0), *vuid = PQgetvalue(res, row, 1);
    const char *kid = PQgetvalue(res, row, 3), *gen = PQgetvalue(res, row, 6);
    struct cm_vault_aad aad = { vendor, vuid, PQgetvalue(res, row, 2), "access" };
    struct cm_buf plain, at, rt;
    bool has_at = false, has_rt = false;
    enum cm_rc rc;

    cm_buf_init(&plain, 0);
    cm_buf_init(&at, 0);
    cm_buf_init(&rt, 0);
    rc = open_col(v, res, row, 4, kid, &aad, &plain, &has_at, err);
    if (rc == CM_OK && has_at) {
        rc = cm_vault_seal(v, &aad, plain.data, plain.len, &at, err);
    }
    aad.field = "refresh";
    if (rc == CM_OK) {
        rc = open_col(v, res, row, 5, kid, &aad, &plain, &has_rt, err);
    }
    if (rc == CM_OK && has_rt) {
        rc = cm_vault_seal(v, &aad, plain.data, plain.len, &rt, err);
    }
    if (plain.data != NULL) {
        memset(plain.data, 0, plain.cap);
    }
    if (rc == CM_OK) {
        const char *params[7] = { has_at ? (const char *)at.data : NULL,
                                  has_rt ? (const char *)rt.data : NULL, cm_vault_active_kid(v),
                                  vendor, vuid, kid, gen };
        int lens[7] = { (int)at.len, (int)rt.len, 0, 0, 0, 0, 0 };
        int fmts[7] = { 1, 1, 0, 0, 0, 0, 0 };
        PGresult *up = PQexecParams(pg, sql, 7, NULL, params, lens, fmts, 0);

        if (PQresultStatus(up) != PGRES_COMMAND_OK) {
            rc = adm_pg_fail(pg, up, "keys rotate", err);
        } else {
            *done = strcmp(PQcmdTuples(up), "1") == 0;
        }
        PQclear(up);
    }
    cm_buf_fini(&plain);
    cm_buf_fini(&at);
    cm_buf_fini(&rt);
    return rc;
}

enum cm_rc adm_keys_rotate(PGconn *pg, const struct cm_vault *v, size_t *rotated, size_t *missing,
                           struct cm_err *err)
{
    static const char sql[] =
        "SELECT vendor, vendor_user_id, user_id, key_id, access_token_ct, refresh_token_ct,"
        " token_generation FROM connections WHERE key_id IS NOT NULL AND key_id <> $1"
        " AND (vendor, vendor_user_id) > ($2, $3) ORDER BY vendor, vendor_user_id LIMIT 500";
    enum cm_rc rc = CM_OK;
    size_t raced = 1;

    *rotated = 0;
    *missing = 0;
    for (int pass = 0; pass < MAX_PASSES && raced > 0 && rc == CM_OK; pass++) {
        char last_vendor[64] = "", last_vuid[300] = "";
        int n = PAGE;

        raced = 0;
        *missing = 0;
        while (n == PAGE && rc == CM_OK) {
            const char *params[3] = { cm_vault_active_kid(v), last_vendor, last_vuid };
            PGresult *res = PQexecParams(pg, sql, 3, NULL, params, NULL, NULL, 0);

            if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                rc = adm_pg_fail(pg, res, "keys rotate", err);
                PQclear(res);
                break;
            }
            n = PQntuples(res);
            for (int i = 0; i < n && rc == CM_OK; i++) {
                bool done = false;

                if (!cm_vault_has_kid(v, PQgetvalue(res, i, 3))) {
                    (*missing)++;
                    continue;
                }
                rc = rotate_row(pg, v, res, i, &done, err);
                if (rc == CM_OK && done) {
                    (*rotated)++;
                } else if (rc == CM_OK) {
                    raced++;
                }
            }
            if (n > 0) {
                cm_strlcpy(last_vendor, PQgetvalue(res, n - 1, 0), sizeof(last_vendor));
                cm_strlcpy(last_vuid, PQgetvalue(res, n - 1, 1), sizeof(last_vuid));
            }
            PQclear(res);
        }
    }
    if (rc == CM_OK && raced > 0) {
        rc = cm_err_set(err, CM_RETRY, "keys rotate: %zu rows kept changing; run it again", raced);
    }
    return rc;
}
