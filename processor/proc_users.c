/* Vendor user -> Auren user resolution: a bounded TTL cache in front of the `connections` table.
 * The cache is a chained hash table keyed by (vendor, vendor_user_id); it never holds more than
 * max_entries (expired entries are swept first, then the whole table is dropped: the cache is only
 * an optimisation and PostgreSQL answers again). Every database failure is CM_RETRY and marks the
 * database unreachable for /readyz; the caller backs off and replays its batch. SQL text carries
 * only parameters, and nothing here logs an identifier or a bound value. */
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cm/log.h"
#include "cm/metrics.h"
#include "proc_users.h"

#define CHECK_INTERVAL_US (5 * 1000000LL)

struct conn_entry {
    struct conn_entry *next;
    uint64_t hash;
    char *vendor;
    char *vendor_user_id;
    enum proc_conn_state state;
    char user_id[PROC_USER_ID_MAX];
    int64_t expires_us;
};

struct proc_conn_cache {
    struct conn_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    size_t max_entries;
    int64_t positive_ttl_us;
    int64_t negative_ttl_us;
};

struct proc_users {
    char *database_url;
    PGconn *pg;
    struct proc_conn_cache *cache;
    struct cm_metric *pg_errors; /* borrowed, may be NULL */
    atomic_bool reachable;
    int64_t last_contact_us;     /* monotonic; last successful or failed round trip */
};

const char *proc_conn_state_str(enum proc_conn_state s)
{
    switch (s) {
    case PROC_CONN_ACTIVE:
        return "active";
    case PROC_CONN_REVOKED:
        return "revoked";
    case PROC_CONN_UNKNOWN:
        break;
    }
    return "unknown";
}

static uint64_t hash_key(const char *vendor, const char *vendor_user_id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (const char *p = vendor; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    }
    h = (h ^ 0x1fU) * 1099511628211ULL; /* separator: ("ab","c") != ("a","bc") */
    for (const char *p = vendor_user_id; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    }
    return h;
}

struct proc_conn_cache *proc_conn_cache_new(int64_t positive_ttl_us, int64_t negative_ttl_us,
                                            size_t max_entries)
{
    struct proc_conn_cache *c = cm_xcalloc(1, sizeof(*c));
    size_t n = 64;

    while (n < max_entries / 2 && n < ((size_t)1 << 20)) {
        n <<= 1;
    }
    c->nbuckets = n;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers, size is right */
    c->buckets = cm_xcalloc(n, sizeof(*c->buckets));
    c->max_entries = max_entries == 0 ? 1 : max_entries;
    c->positive_ttl_us = positive_ttl_us;
    c->negative_ttl_us = negative_ttl_us;
    return c;
}

static void entry_free(struct conn_entry *e)
{
    free(e->vendor);
    free(e->vendor_user_id);
    free(e);
}

static void cache_clear(struct proc_conn_cache *c)
{
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct conn_entry *e = c->buckets[i];

        while (e != NULL) {
            struct conn_entry *next = e->next;

            entry_free(e);
            e = next;
        }
        c->buckets[i] = NULL;
    }
    c->count = 0;
}

void proc_conn_cache_free(struct proc_conn_cache *c)
{
    if (c == NULL) {
        return;
    }
    cache_clear(c);
    free(c->buckets);
    free(c);
}

size_t proc_conn_cache_count(const struct proc_conn_cache *c)
{
    return c->count;
}

/* Returns the link that points at the entry for the key (or at the NULL ending its chain). */
static struct conn_entry **find_link(struct proc_conn_cache *c, uint64_t h, const char *vendor,
                                     const char *vendor_user_id)
{
    struct conn_entry **link = &c->buckets[h & (c->nbuckets - 1)];

    while (*link != NULL) {
        struct conn_entry *e = *link;

        if (e->hash == h && strcmp(e->vendor, vendor) == 0 &&
            strcmp(e->vendor_user_id, vendor_user_id) == 0) {
            return link;
        }
        link = &e->next;
    }
    return link;
}

static void sweep_expired(struct proc_conn_cache *c, int64_t now_us)
{
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct conn_entry **link = &c->buckets[i];

        while (*link != NULL) {
            struct conn_entry *e = *link;

            if (e->expires_us <= now_us) {
                *link = e->next;
                entry_free(e);
                c->count--;
            } else {
                link = &e->next;
            }
        }
    }
}

bool proc_conn_cache_get(struct proc_conn_cache *c, const char *vendor, const char *vendor_user_id,
                         int64_t now_us, enum proc_conn_state *state,
                         char user_id[PROC_USER_ID_MAX])
{
    uint64_t h = hash_key(vendor, vendor_user_id);
    struct conn_entry **link = find_link(c, h, vendor, vendor_user_id);
    struct conn_entry *e = *link;

    if (e == NULL) {
        return false;
    }
    if (e->expires_us <= now_us) {
        *link = e->next;
        entry_free(e);
        c->count--;
        return false;
    }
    *state = e->state;
    if (e->state == PROC_CONN_ACTIVE) {
        cm_strlcpy(user_id, e->user_id, PROC_USER_ID_MAX);
    } else {
        user_id[0] = '\0';
    }
    return true;
}

void proc_conn_cache_put(struct proc_conn_cache *c, const char *vendor, const char *vendor_user_id,
                         enum proc_conn_state state, const char *user_id, int64_t now_us)
{
    int64_t ttl = state == PROC_CONN_ACTIVE ? c->positive_ttl_us : c->negative_ttl_us;
    uint64_t h = hash_key(vendor, vendor_user_id);
    struct conn_entry **link;
    struct conn_entry *e;

    if (ttl <= 0) {
        proc_conn_cache_invalidate(c, vendor, vendor_user_id);
        return;
    }
    link = find_link(c, h, vendor, vendor_user_id);
    e = *link;
    if (e == NULL) {
        if (c->count >= c->max_entries) {
            sweep_expired(c, now_us);
            if (c->count >= c->max_entries) {
                cache_clear(c);
            }
            link = find_link(c, h, vendor, vendor_user_id);
        }
        e = cm_xcalloc(1, sizeof(*e));
        e->hash = h;
        e->vendor = cm_xstrdup(vendor);
        e->vendor_user_id = cm_xstrdup(vendor_user_id);
        *link = e;
        c->count++;
    }
    e->state = state;
    if (state == PROC_CONN_ACTIVE && user_id != NULL) {
        cm_strlcpy(e->user_id, user_id, sizeof(e->user_id));
    } else {
        e->user_id[0] = '\0';
    }
    e->expires_us = now_us + ttl;
}

void proc_conn_cache_invalidate(struct proc_conn_cache *c, const char *vendor,
                                const char *vendor_user_id)
{
    uint64_t h = hash_key(vendor, vendor_user_id);
    struct conn_entry **link = find_link(c, h, vendor, vendor_user_id);
    struct conn_entry *e = *link;

    if (e != NULL) {
        *link = e->next;
        entry_free(e);
        c->count--;
    }
}

/* ---- PostgreSQL ---- */

static const char SQL_LOOKUP[] =
    "SELECT user_id::text, status::text FROM connections "
    "WHERE vendor = $1 AND vendor_user_id = $2 "
    "LIMIT 1"; /* (vendor, vendor_user_id) is the primary key */
static const char SQL_REVOKE[] =
    /* The vendor told us the user withdrew consent: the tokens are dead and are PHI-adjacent
     * secrets, so they go too (as with `auren-admin connections revoke`). */
    "UPDATE connections SET status = 'revoked', access_token_ct = NULL, refresh_token_ct = NULL,"
    " key_id = NULL, expires_at = NULL, updated_at = now() "
    "WHERE vendor = $1 AND vendor_user_id = $2";

static void on_pg_notice(void *arg, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    cm_log_debug("pg.notice", "sqlstate=%s", state != NULL ? state : "-");
}

static void pg_failed(struct proc_users *u, const char *what, const PGresult *res,
                      struct cm_err *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    atomic_store(&u->reachable, false);
    if (u->pg_errors != NULL) {
        cm_metric_inc(u->pg_errors);
    }
    cm_err_set(err, CM_RETRY, "pg_%s_failed: sqlstate=%s", what, state != NULL ? state : "-");
    /* A broken link is rebuilt on the next call; a statement error keeps the session. */
    if (u->pg != NULL && PQstatus(u->pg) != CONNECTION_OK) {
        PQfinish(u->pg);
        u->pg = NULL;
    }
}

static enum cm_rc pg_connect(struct proc_users *u, struct cm_err *err)
{
    /* expand_dbname: the URL supplies everything; the later keywords bound connect and
     * statement time so a hung database cannot stall the consumer past max.poll.interval.ms. */
    const char *keys[] = { "dbname", "connect_timeout", "options", "application_name", NULL };
    const char *vals[] = { u->database_url, "5", "-c statement_timeout=10000",
                           "auren-processor", NULL };
    static const struct {
        const char *name;
        const char *sql;
    } statements[] = {
        { "proc_conn_lookup", SQL_LOOKUP },
        { "proc_conn_revoke", SQL_REVOKE },
    };
    PGresult *res;

    if (u->pg != NULL) {
        return CM_OK;
    }
    u->last_contact_us = cm_mono_us();
    u->pg = PQconnectdbParams(keys, vals, 1);
    if (u->pg == NULL || PQstatus(u->pg) != CONNECTION_OK) {
        atomic_store(&u->reachable, false);
        if (u->pg_errors != NULL) {
            cm_metric_inc(u->pg_errors);
        }
        PQfinish(u->pg);
        u->pg = NULL;
        return cm_err_set(err, CM_RETRY, "pg_connect_failed");
    }
    PQsetNoticeReceiver(u->pg, on_pg_notice, NULL);
    for (size_t i = 0; i < CM_ARRAY_LEN(statements); i++) {
        res = PQprepare(u->pg, statements[i].name, statements[i].sql, 2, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* e.g. 42P01 before the migrations ran: start over on the next call */
            pg_failed(u, "prepare", res, err);
            PQclear(res);
            PQfinish(u->pg);
            u->pg = NULL;
            return CM_RETRY;
        }
        PQclear(res);
    }
    atomic_store(&u->reachable, true);
    cm_log_info("pg.connected", "statements=2");
    return CM_OK;
}

struct proc_users *proc_users_new(const char *database_url, long positive_ttl_s,
                                  struct cm_metric *pg_errors)
{
    struct proc_users *u = cm_xcalloc(1, sizeof(*u));
    struct cm_err err;

    u->database_url = cm_xstrdup(database_url);
    u->cache = proc_conn_cache_new((int64_t)positive_ttl_s * 1000000,
                                   (int64_t)PROC_CONN_NEGATIVE_TTL_S * 1000000,
                                   PROC_CONN_CACHE_MAX_ENTRIES);
    u->pg_errors = pg_errors;
    atomic_init(&u->reachable, false);
    if (pg_connect(u, &err) != CM_OK) {
        cm_log_warn("pg.unreachable", "reason=%s", err.msg);
    }
    return u;
}

void proc_users_free(struct proc_users *u)
{
    if (u == NULL) {
        return;
    }
    PQfinish(u->pg);
    proc_conn_cache_free(u->cache);
    free(u->database_url);
    free(u);
}

enum cm_rc proc_users_resolve(struct proc_users *u, const char *vendor, const char *vendor_user_id,
                              enum proc_conn_state *state, char user_id[PROC_USER_ID_MAX],
                              struct cm_err *err)
{
    const char *params[2] = { vendor, vendor_user_id };
    int64_t now = cm_mono_us();
    PGresult *res;

    if (proc_conn_cache_get(u->cache, vendor, vendor_user_id, now, state, user_id)) {
        return CM_OK;
    }
    if (pg_connect(u, err) != CM_OK) {
        return CM_RETRY;
    }
    u->last_contact_us = now;
    res = PQexecPrepared(u->pg, "proc_conn_lookup", 2, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_failed(u, "lookup", res, err);
        PQclear(res);
        return CM_RETRY;
    }
    atomic_store(&u->reachable, true);
    *state = PROC_CONN_UNKNOWN;
    user_id[0] = '\0';
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) && !PQgetisnull(res, 0, 1)) {
        const char *status = PQgetvalue(res, 0, 1);

        /* reconsent_required: the token needs renewing, but consent stands and the data is
         * still this user's; only a revocation stops the flow */
        if ((strcmp(status, "active") == 0 || strcmp(status, "reconsent_required") == 0) &&
            cm_strlcpy(user_id, PQgetvalue(res, 0, 0), PROC_USER_ID_MAX) && user_id[0] != '\0') {
            *state = PROC_CONN_ACTIVE;
        } else if (strcmp(status, "revoked") == 0) {
            *state = PROC_CONN_REVOKED;
        }
        if (*state != PROC_CONN_ACTIVE) {
            user_id[0] = '\0';
        }
    }
    PQclear(res);
    proc_conn_cache_put(u->cache, vendor, vendor_user_id, *state, user_id, now);
    return CM_OK;
}

enum cm_rc proc_users_revoke(struct proc_users *u, const char *vendor, const char *vendor_user_id,
                             struct cm_err *err)
{
    const char *params[2] = { vendor, vendor_user_id };
    PGresult *res;

    proc_conn_cache_invalidate(u->cache, vendor, vendor_user_id);
    if (pg_connect(u, err) != CM_OK) {
        return CM_RETRY;
    }
    u->last_contact_us = cm_mono_us();
    res = PQexecPrepared(u->pg, "proc_conn_revoke", 2, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_failed(u, "revoke", res, err);
        PQclear(res);
        return CM_RETRY;
    }
    atomic_store(&u->reachable, true);
    PQclear(res);
    return CM_OK;
}

void proc_users_check(struct proc_users *u)
{
    int64_t now = cm_mono_us();
    struct cm_err err = { .msg = "" };
    bool was = atomic_load(&u->reachable);
    PGresult *res;

    if (now - u->last_contact_us < CHECK_INTERVAL_US) {
        return;
    }
    if (pg_connect(u, &err) == CM_OK) {
        u->last_contact_us = now;
        res = PQexec(u->pg, "SELECT 1");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            pg_failed(u, "probe", res, &err);
        } else {
            atomic_store(&u->reachable, true);
        }
        PQclear(res);
    }
    /* log transitions only: an idle processor probes every few seconds */
    if (was && !atomic_load(&u->reachable)) {
        cm_log_warn("pg.unreachable", "reason=%s", err.msg);
    } else if (!was && atomic_load(&u->reachable)) {
        cm_log_info("pg.reachable", "probe=ok");
    }
}

bool proc_users_reachable(const struct proc_users *u)
{
    return atomic_load(&((struct proc_users *)u)->reachable);
}
