/* The fetcher's view of a connection's OAuth state, and what it shares with other replicas:
 * - tokens: read from `connections` and opened with the vault (cm/vault.h); a refresh seals the
 *   new pair and commits it (token_generation + 1) BEFORE the new access token is used, so a
 *   rotated refresh token is never lost; invalid_grant marks the row reconsent_required;
 * - single-flight refresh across replicas: a Redis lock per connection (SET NX PX with a random
 *   value, compare-and-delete release). The token request's timeout is shorter than the lease,
 *   so a lock never expires under a refresh in flight. Waiters poll the lock and then re-read
 *   the row instead of refreshing again; the holder re-reads the row after taking the lock too
 *   (a refresh may have landed between its read and its lock);
 * - rate budgets: an atomic Redis token bucket per vendor app and per vendor user (one Lua
 *   script takes from both or from neither), plus "blocked until" keys set from the vendors'
 *   rate-limit headers.
 * Tokens live in heap memory that is wiped when released; they never reach a log, a metric
 * label, an error message or a Kafka record.
 * Ownership: proc_oauth_new() borrows cfg and vault (both outlive it), returns new;
 * proc_oauth_free() (NULL-safe). Thread: the fetcher thread only. */
#ifndef PROC_OAUTH_H
#define PROC_OAUTH_H

#include "cm/common.h"
#include "proc_cfg.h"

struct cm_buf;
struct cm_vault;
struct proc_oauth;

enum proc_token_state {
    PROC_TOKEN_OK,          /* tokens opened */
    PROC_TOKEN_NO_ROW,      /* no connection */
    PROC_TOKEN_REVOKED,
    PROC_TOKEN_RECONSENT,   /* needs the user's consent again (invalid_grant) */
    PROC_TOKEN_MISSING,     /* active, but no tokens were stored */
};

struct proc_tokens {
    enum proc_token_state state;
    char user_id[128];
    char *access;           /* heap, wiped by proc_tokens_fini() */
    char *refresh;          /* NULL when none */
    int64_t expires_at_us;  /* 0 = unknown */
    int64_t generation;
};

void proc_tokens_fini(struct proc_tokens *t);

struct proc_oauth *proc_oauth_new(const struct proc_cfg *cfg, const struct cm_vault *vault,
                                  struct cm_err *err);
void proc_oauth_free(struct proc_oauth *o);

/* Read and open a connection's tokens. CM_RETRY when PostgreSQL cannot answer; CM_INVALID when a
 * stored token does not open (wrong key / tampered row: reason "token_unreadable"). */
enum cm_rc proc_oauth_load(struct proc_oauth *o, const char *vendor, const char *vendor_user_id,
                           struct proc_tokens *t, struct cm_err *err);

/* Should a token be refreshed now? True when expired or within a random moment of the last
 * [margin, 2 x margin] before expiry (jitter spreads the refreshes of many connections). */
bool proc_oauth_due(const struct proc_tokens *t, int64_t now_us, long margin_s, uint64_t rnd);

enum proc_refresh_result {
    PROC_REFRESH_DONE,      /* t holds fresh tokens (ours or another replica's) */
    PROC_REFRESH_RECONSENT, /* invalid_grant: the row is now reconsent_required */
    PROC_REFRESH_FAILED,    /* try later (vendor or network trouble; err says why) */
};

/* Single-flight refresh of t (loaded before): lock, re-read, refresh unless someone did, commit,
 * unlock; or wait for the holder and re-read. `force` refreshes even when the token looks valid
 * (a 401) unless the generation moved since t was read. Returns the result; CM_RETRY when Redis
 * or PostgreSQL cannot answer. */
enum cm_rc proc_oauth_refresh(struct proc_oauth *o, enum proc_api_vendor v, const char *vendor,
                              const char *vendor_user_id, bool force, struct proc_tokens *t,
                              enum proc_refresh_result *result, struct cm_err *err);

/* Take one request from the vendor's app bucket and the user's bucket. *wait_ms = 0 when taken,
 * else how long until there is budget (nothing taken). Redis down: CM_RETRY. */
enum cm_rc proc_oauth_rate_take(struct proc_oauth *o, enum proc_api_vendor v,
                                const char *vendor_user_id, int64_t *wait_ms, struct cm_err *err);
/* Block the vendor (Fitbit: the user, whose budget it is) for wait_ms after a rate-limit answer. */
void proc_oauth_rate_block(struct proc_oauth *o, enum proc_api_vendor v,
                           const char *vendor_user_id, int64_t wait_ms);

/* The events we stored for one vendor object (its source_record_id, or "<id>#..." series
 * members), as the body of a "<vendor>.deleted" api_record:
 *   {"deleted":[{"source_record_id":"..","metric":"..","start_time":"<RFC 3339>"}]}
 * Appends to out; *n = how many. CM_RETRY when PostgreSQL cannot answer. */
enum cm_rc proc_oauth_object_events(struct proc_oauth *o, const char *vendor, const char *user_id,
                                    const char *object_id, struct cm_buf *out, size_t *n,
                                    struct cm_err *err);

/* Google Health DELETE: the events stored for one user of a vendor whose source_record_id matches
 * LIKE pattern like1 or like2 and whose start_time lies in [start, end) (or equals start, so a
 * point interval finds its sample), in the same body as proc_oauth_object_events(). */
enum cm_rc proc_oauth_window_events(struct proc_oauth *o, const char *vendor, const char *user_id,
                                    const char *like1, const char *like2, int64_t start_us,
                                    int64_t end_us, struct cm_buf *out, size_t *n,
                                    struct cm_err *err);

/* How many token requests were sent (tests, metrics). */
uint64_t proc_oauth_refresh_count(const struct proc_oauth *o);

/* Pure: build the refresh request of a vendor: form body (refresh token, client auth when
 * "body"), and whether HTTP Basic is used. Returns false when it does not fit. */
bool proc_oauth_refresh_form(enum proc_api_vendor v, const struct proc_api_cfg *api,
                             const char *refresh_token, char *form, size_t formsz);
/* Pure: parse a token endpoint answer. CM_OK fills access/refresh (new heap strings, refresh NULL
 * when the vendor kept the old one) and expires_in (0 when not given); *invalid_grant when the
 * vendor rejected the refresh token. */
enum cm_rc proc_oauth_parse_token(enum proc_api_vendor v, long http_status, const char *body,
                                  size_t len, char **access, char **refresh, long *expires_in,
                                  bool *invalid_grant, struct cm_err *err);

#endif
