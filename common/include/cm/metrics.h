/* Prometheus metrics: a process-wide registry rendered in the text exposition format.
 * Every name must start with "auren_" (asserted). Label values must come from bounded sets
 * (vendor, status, metric, reason, topic) - never ids.
 * Usage: create metrics once at start-up (not thread-safe), then update from any thread.
 *   static struct cm_metric *m_req;
 *   m_req = cm_metric_counter("auren_gateway_requests_total", "Webhook requests", 2, "vendor", "status");
 *   cm_metric_inc(m_req, "whoop", "200");
 * The number of label values passed must equal the number of label names. */
#ifndef CM_METRICS_H
#define CM_METRICS_H

#include "cm/buf.h"

struct cm_metric;

struct cm_metric *cm_metric_counter(const char *name, const char *help, int nlabels, ...);
struct cm_metric *cm_metric_gauge(const char *name, const char *help, int nlabels, ...);
/* buckets: ascending upper bounds (seconds or bytes); +Inf is implicit. */
struct cm_metric *cm_metric_histogram(const char *name, const char *help, const double *buckets,
                                      size_t nbuckets, int nlabels, ...);
/* A gauge whose value is read at scrape time. */
struct cm_metric *cm_metric_gauge_fn(const char *name, const char *help, double (*fn)(void *), void *arg);

void cm_metric_inc(struct cm_metric *m, ...);            /* counter += 1 */
void cm_metric_add(struct cm_metric *m, double v, ...);  /* counter/gauge += v */
void cm_metric_set(struct cm_metric *m, double v, ...);  /* gauge = v */
void cm_metric_observe(struct cm_metric *m, double v, ...); /* histogram */

/* Default latency buckets in seconds (0.5 ms .. 10 s). */
extern const double cm_metric_latency_buckets[];
extern const size_t cm_metric_latency_nbuckets;

/* Append the text exposition of every registered metric. Thread: any. */
void cm_metrics_render(struct cm_buf *out);
/* Free the registry (tests, shutdown). */
void cm_metrics_reset(void);

#endif
