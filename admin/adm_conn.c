/* Vendor connections for operators: which vendor account belongs to which of our users, and
 * whether it is active. `connections add` with tokens seals them (cm/vault.h, AES-256-GCM) before
 * they reach the database; this tool never prints them back, it only reports whether any are
 * stored, and revoking drops them. The processor's fetcher refreshes them afterwards.
 * Ids are printed on stdout on purpose: this is the operator's terminal, not a log. */
#include "adm.h"

#include <stdio.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/vault.h"

static const char *const vendors[] = { "whoop",    "oura",     "polar",  "fitbit",
                                       "google_health", "withings", "garmin", "strava",
                                       "terra",    "app" };

#define ID_MAX 256

bool adm_conn_vendor_valid(const char *vendor)
{
    for (size_t i = 0; i < CM_ARRAY_LEN(vendors); i++) {
        if (strcmp(vendor, vendors[i]) == 0) {
            return true;
        }
    }
    return false;
}

bool adm_conn_id_valid(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];

        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

enum cm_rc adm_conn_add(PGconn *pg, const char *vendor, const char *vendor_user_id,
                        const char *user_id, struct cm_err *err)
{
    static const char sql[] =
        "INSERT INTO connections (vendor, vendor_user_id, user_id, status)"
        " VALUES ($1, $2, $3, 'active')"
        " ON CONFLICT (vendor, vendor_user_id) DO UPDATE"
        " SET user_id = EXCLUDED.user_id, status = 'active', updated_at = now()";
    const char *params[3] = { vendor, vendor_user_id, user_id };
    enum cm_rc rc = CM_OK;
    PGresult *res = PQexecParams(pg, sql, 3, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = adm_pg_fail(pg, res, "connections add", err);
    }
    PQclear(res);
    return rc;
}

enum cm_rc adm_conn_list(PGconn *pg, const char *vendor, FILE *out, size_t *rows,
                         struct cm_err *err)
{
    static const char sql[] =
        "SELECT vendor, vendor_user_id, user_id, status,"
        " COALESCE(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '-'),"
        " CASE WHEN access_token_ct IS NOT NULL OR refresh_token_ct IS NOT NULL"
        " THEN 'yes' ELSE 'no' END"
        " FROM connections WHERE $1::text IS NULL OR vendor = $1"
        " ORDER BY vendor, vendor_user_id";
    const char *params[1] = { vendor };
    enum cm_rc rc = CM_OK;
    PGresult *res = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = adm_pg_fail(pg, res, "connections list", err);
        PQclear(res);
        return rc;
    }
    fprintf(out, "vendor\tvendor_user_id\tuser_id\tstatus\texpires_at\thas_tokens\n");
    for (int i = 0; i < PQntuples(res); i++) {
        fprintf(out, "%s\t%s\t%s\t%s\t%s\t%s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4),
                PQgetvalue(res, i, 5));
    }
    if (rows != NULL) {
        *rows = (size_t)PQntuples(res);
    }
    PQclear(res);
    return rc;
}

enum cm_rc adm_conn_revoke(PGconn *pg, const char *vendor, const char *vendor_user_id,
                           struct cm_err *err)
{
    static const char sql[] =
        "UPDATE connections SET status = 'revoked', access_token_ct = NULL,"
        " refresh_token_ct = NULL, key_id = NULL, expires_at = NULL, updated_at = now()"
        " WHERE vendor = $1 AND vendor_user_id = $2";
    const char *params[2] = { vendor, vendor_user_id };
    enum cm_rc rc = CM_OK;
    PGresult *res = PQexecParams(pg, sql, 2, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = adm_pg_fail(pg, res, "connections revoke", err);
    } else if (strcmp(PQcmdTuples(res), "0") == 0) {
        rc = cm_err_set(err, CM_INVALID, "connections revoke: no such connection");
    }
    PQclear(res);
    return rc;
}

/* One sealed token as a bytea parameter (binary format); *out stays empty for NULL. */
static enum cm_rc seal_token(const struct cm_vault *v, const struct cm_vault_aad *aad,
                             const char *token, struct cm_buf *out, struct cm_err *err)
{
    cm_buf_reset(out);
    if (token == NULL) {
        return CM_OK;
    }
    return cm_vault_seal(v, aad, token, strlen(token), out, err);
}

enum cm_rc adm_conn_set_tokens(PGconn *pg, const struct cm_vault *v, const char *vendor,
                               const char *vendor_user_id, const char *user_id,
                               const struct adm_conn_tokens *t, struct cm_err *err)
{
    static const char sql[] =
        "INSERT INTO connections (vendor, vendor_user_id, user_id, status, access_token_ct,"
        " refresh_token_ct, key_id, expires_at, scopes, token_generation)"
        " VALUES ($1, $2, $3, 'active', $4, $5, $6,"
        " CASE WHEN $7::bigint = 0 THEN NULL ELSE to_timestamp($7::bigint) END, $8, 1)"
        " ON CONFLICT (vendor, vendor_user_id) DO UPDATE SET user_id = EXCLUDED.user_id,"
        " status = 'active', status_reason = NULL, access_token_ct = EXCLUDED.access_token_ct,"
        " refresh_token_ct = EXCLUDED.refresh_token_ct, key_id = EXCLUDED.key_id,"
        " expires_at = EXCLUDED.expires_at, scopes = EXCLUDED.scopes,"
        " token_generation = connections.token_generation + 1, updated_at = now()";
    struct cm_vault_aad aad = { vendor, vendor_user_id, user_id, "access" };
    struct cm_buf at, rt;
    char expires[24];
    enum cm_rc rc;

    if (t->access_token == NULL || t->access_token[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "connections add: empty access token");
    }
    cm_buf_init(&at, 0);
    cm_buf_init(&rt, 0);
    snprintf(expires, sizeof(expires), "%lld", t->expires_at_s);
    rc = seal_token(v, &aad, t->access_token, &at, err);
    aad.field = "refresh";
    if (rc == CM_OK) {
        rc = seal_token(v, &aad, t->refresh_token, &rt, err);
    }
    if (rc == CM_OK) {
        const char *params[8] = { vendor, vendor_user_id, user_id, (const char *)at.data,
                                  t->refresh_token != NULL ? (const char *)rt.data : NULL,
                                  cm_vault_active_kid(v), expires, t->scopes };
        int lens[8] = { 0, 0, 0, (int)at.len, (int)rt.len, 0, 0, 0 };
        int fmts[8] = { 0, 0, 0, 1, 1, 0, 0, 0 };
        PGresult *res = PQexecParams(pg, sql, 8, NULL, params, lens, fmts, 0);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = adm_pg_fail(pg, res, "connections add", err);
        }
        PQclear(res);
    }
    cm_buf_fini(&at);
    cm_buf_fini(&rt);
    return rc;
}
