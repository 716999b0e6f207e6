/* The fetcher: the processor's second thread. It consumes FetchJobs (consumer group
 * FETCHER_GROUP_ID, default auren-fetcher) from biometric.fetch.v1 and the retry topic
 * biometric.fetch.retry.v1, calls the vendor API with the user's OAuth token (libcurl multi: a
 * round's requests run in parallel), and publishes each answer as a RawWebhook of kind api_record
 * (record_type "<vendor>.<resource>", vendor_user_id set) to biometric.raw.v1, where the
 * processor loop normalizes it like any webhook.
 *
 * Per job: the plan (proc_fetch_plan.h) names the endpoint(s); the connection's tokens come from
 * PostgreSQL (proc_oauth.h), refreshed before expiry at a jittered moment or after a 401, single
 * flight across replicas; each request takes from the shared Redis rate budgets and passes the
 * vendor's circuit breaker. Outcomes:
 *   published     the answers are on biometric.raw.v1
 *   deleted       the vendor deleted the object: a "<vendor>.deleted" record listing our stored
 *                 events of that object goes to biometric.raw.v1 and becomes tombstones
 *   skipped       nothing we normalize (e.g. Fitbit foods)
 *   deferred      no budget now / breaker open / database or Redis down: the job goes to the
 *                 retry topic with not_before, attempt unchanged
 *   retried       429, 5xx, timeout, transport error, 401 after a refresh: retry topic with
 *                 attempt + 1 and not_before = now + max(backoff with jitter, vendor's reset)
 *   dead-lettered unknown / revoked / re-consent connection, missing tokens, 403, 404, other 4xx,
 *                 or the last attempt failed: biometric.dlq.v1, stage "fetcher", with the reason
 * A retry-topic job whose not_before lies ahead pauses its partition (seek back to it) until
 * then. Offsets are committed after every output of the round was acknowledged; a failed
 * delivery rewinds the round (outputs are idempotent: deterministic raw event ids).
 * Ownership: proc_fetcher_new() borrows cfg (outlives it); proc_fetcher_free() (NULL-safe) stops
 * and joins the thread first. Thread: new/start/stop/free from main. */
#ifndef PROC_FETCH_H
#define PROC_FETCH_H

#include "cm/common.h"
#include "proc_cfg.h"

struct proc_fetcher;

/* Registers the metrics, opens the vault, creates the Kafka clients (subscribed). */
struct proc_fetcher *proc_fetcher_new(const struct proc_cfg *cfg, struct cm_err *err);
enum cm_rc proc_fetcher_start(struct proc_fetcher *f, struct cm_err *err);
/* Ask the thread to finish its round, close the consumer, flush, and join it. */
void proc_fetcher_stop(struct proc_fetcher *f);
void proc_fetcher_free(struct proc_fetcher *f);

/* Deterministic event id of the api_record published for request `index` of job `job_id`:
 * first 32 hex characters of SHA-256("api|<job_id>|<index>"). */
void proc_fetch_raw_event_id(const char *job_id, size_t index, char out[33]);

#endif
