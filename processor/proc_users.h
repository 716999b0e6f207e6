/* Vendor user -> Auren user resolution through the PostgreSQL table `connections`
 * (vendor, vendor_user_id, user_id, status), with an in-memory cache in front of it.
 *
 * Status 'active' (and 'reconsent_required': the OAuth token needs renewing but consent stands,
 * so pushed data is still the user's) resolves to the user id; 'revoked' is reported as revoked;
 * a missing row or any other status is unknown. Resolved answers are cached for
 * CONNECTION_CACHE_TTL_SECONDS, unknown and revoked ones for PROC_CONN_NEGATIVE_TTL_S only, so a
 * connection registered after a webhook arrived is found when its dead letter is replayed a few
 * seconds later. Each replica has its own cache: a revocation made elsewhere reaches it within
 * the positive TTL.
 *
 * The cache (proc_conn_cache_*) is pure: every call takes the current time, which is how the tests
 * drive its clock. struct proc_users owns one libpq connection and one cache.
 * Ownership: proc_users_new() returns new, release with proc_users_free() (NULL-safe).
 * Thread: the processor loop thread only, except proc_users_reachable() (any thread). */
#ifndef PROC_USERS_H
#define PROC_USERS_H

#include "cm/common.h"

#define PROC_USER_ID_MAX 128
#define PROC_CONN_NEGATIVE_TTL_S 5
#define PROC_CONN_CACHE_MAX_ENTRIES 100000

enum proc_conn_state { PROC_CONN_ACTIVE, PROC_CONN_UNKNOWN, PROC_CONN_REVOKED };

const char *proc_conn_state_str(enum proc_conn_state s);

struct proc_conn_cache;

/* TTLs in microseconds; max_entries bounds the memory (expired entries are dropped first, then
 * everything when still full). Returns new. */
struct proc_conn_cache *proc_conn_cache_new(int64_t positive_ttl_us, int64_t negative_ttl_us,
                                            size_t max_entries);
void proc_conn_cache_free(struct proc_conn_cache *c);
/* True when a live entry exists at now_us; fills state and, when active, user_id. */
bool proc_conn_cache_get(struct proc_conn_cache *c, const char *vendor, const char *vendor_user_id,
                         int64_t now_us, enum proc_conn_state *state,
                         char user_id[PROC_USER_ID_MAX]);
/* Insert or replace; user_id is read only when state is active. A zero TTL stores nothing. */
void proc_conn_cache_put(struct proc_conn_cache *c, const char *vendor, const char *vendor_user_id,
                         enum proc_conn_state state, const char *user_id, int64_t now_us);
void proc_conn_cache_invalidate(struct proc_conn_cache *c, const char *vendor,
                                const char *vendor_user_id);
size_t proc_conn_cache_count(const struct proc_conn_cache *c);

struct proc_users;
struct cm_metric;

/* pg_errors (borrowed, may be NULL) counts failed database round trips.
 * Connects lazily: a database that is down at start-up only makes lookups return CM_RETRY. */
struct proc_users *proc_users_new(const char *database_url, long positive_ttl_s,
                                  struct cm_metric *pg_errors);
void proc_users_free(struct proc_users *u);

/* CM_OK with state (and user_id when active), or CM_RETRY when PostgreSQL cannot answer; every
 * database failure is RETRY, so records are never dead-lettered because the database is down. */
enum cm_rc proc_users_resolve(struct proc_users *u, const char *vendor, const char *vendor_user_id,
                              enum proc_conn_state *state, char user_id[PROC_USER_ID_MAX],
                              struct cm_err *err);
/* Mark the connection revoked (vendor deauthorization) and forget its cache entry.
 * CM_OK (also when no row matched), or CM_RETRY. */
enum cm_rc proc_users_revoke(struct proc_users *u, const char *vendor, const char *vendor_user_id,
                             struct cm_err *err);
/* Probe the database when nothing has talked to it for a few seconds; keeps reachability fresh
 * for /readyz while the topic is idle. */
void proc_users_check(struct proc_users *u);
/* Did the last contact with PostgreSQL succeed? Thread: any. */
bool proc_users_reachable(const struct proc_users *u);

#endif
