/* The gateway's Prometheus metrics (landscape.md section 13 naming). Created once by
 * gw_metrics_init() before any thread starts (idempotent), updated from any thread afterwards.
 * Labels come from bounded sets only: vendor names from the table (or "unknown"), HTTP status,
 * short reason codes. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include "cm/metrics.h"

struct gw_metrics {
    struct cm_metric *requests;           /* auren_gateway_requests_total{vendor,status} */
    struct cm_metric *signature_failures; /* auren_gateway_signature_failures_total{vendor} */
    struct cm_metric *duration;           /* auren_gateway_request_duration_seconds{vendor} */
    struct cm_metric *body_bytes;         /* auren_gateway_request_body_bytes{vendor} */
    struct cm_metric *produce_errors;     /* auren_gateway_kafka_produce_errors_total{reason} */
    struct cm_metric *rejected;           /* auren_gateway_rejected_total{vendor,reason} */
    struct cm_metric *in_flight_limit;    /* auren_gateway_in_flight_limit (MAX_CONCURRENT_WEBHOOKS) */
    struct cm_metric *spool_bytes;        /* auren_gateway_spool_bytes */
    struct cm_metric *spool_records;      /* auren_gateway_spool_records */
    struct cm_metric *spool_appends;      /* auren_gateway_spool_appends_total{outcome} */
    struct cm_metric *spool_replayed;     /* auren_gateway_spool_replayed_total */
    struct cm_metric *spool_torn;         /* auren_gateway_spool_torn_tails_total */
    struct cm_metric *spool_damaged;      /* auren_gateway_spool_damaged_segments_total */
    struct cm_metric *delivery_status;    /* auren_gateway_delivery_failures_total{status} */
    struct cm_metric *spool_max_bytes;    /* auren_gateway_spool_max_bytes (0: no spool) */
    struct cm_metric *kafka_brokers_up;   /* auren_gateway_kafka_brokers_up */
};

extern struct gw_metrics gw_metrics;

void gw_metrics_init(void);
/* auren_gateway_in_flight (process-wide, read at scrape time). */
void gw_metrics_in_flight_add(long delta);

#endif
