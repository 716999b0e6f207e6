/* Registration of the gateway's metrics. The in-flight gauge is read from the server's atomic
 * counter at scrape time, so the request path never updates it twice. */
#include "gw_metrics.h"

#include <stdatomic.h>
#include <stdbool.h>

struct gw_metrics gw_metrics;

static const double body_buckets[] = {256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304};

static atomic_long in_flight;

void gw_metrics_in_flight_add(long delta)
{
    atomic_fetch_add(&in_flight, delta);
}

static double read_in_flight(void *arg)
{
    (void)arg;
    return (double)atomic_load(&in_flight);
}

void gw_metrics_init(void)
{
    static bool done;

    if (done) {
        return;
    }
    done = true;
    gw_metrics.requests = cm_metric_counter("auren_gateway_requests_total",
                                            "Webhook requests answered, by vendor and HTTP status",
                                            2, "vendor", "status");
    gw_metrics.signature_failures =
        cm_metric_counter("auren_gateway_signature_failures_total",
                          "Webhooks rejected with 401 (signature, secret, timestamp)", 1, "vendor");
    gw_metrics.duration = cm_metric_histogram(
        "auren_gateway_request_duration_seconds", "Time from request line to answer",
        cm_metric_latency_buckets, cm_metric_latency_nbuckets, 1, "vendor");
    gw_metrics.body_bytes = cm_metric_histogram("auren_gateway_request_body_bytes",
                                                "Webhook body sizes", body_buckets,
                                                sizeof(body_buckets) / sizeof(body_buckets[0]), 1,
                                                "vendor");
    gw_metrics.produce_errors =
        cm_metric_counter("auren_gateway_kafka_produce_errors_total",
                          "Records not made durable: queue full, produce or delivery failure",
                          1, "reason");
    gw_metrics.rejected = cm_metric_counter("auren_gateway_rejected_total",
                                            "Webhooks answered with an error, by reason", 2,
                                            "vendor", "reason");
    gw_metrics.spool_bytes = cm_metric_gauge("auren_gateway_spool_bytes",
                                             "Bytes in the spool (queued and on disk)", 0);
    gw_metrics.spool_records = cm_metric_gauge("auren_gateway_spool_records",
                                               "Records in the spool not yet replayed to Kafka", 0);
    gw_metrics.spool_appends = cm_metric_counter(
        "auren_gateway_spool_appends_total",
        "Records offered to the spool: written (fsync'ed), failed, full, closed, refused", 1,
        "outcome");
    gw_metrics.spool_replayed = cm_metric_counter("auren_gateway_spool_replayed_total",
                                                  "Spooled records delivered to Kafka", 0);
    gw_metrics.spool_torn = cm_metric_counter("auren_gateway_spool_torn_tails_total",
                                              "Torn segment tails cut at start-up", 0);
    gw_metrics.spool_damaged = cm_metric_counter(
        "auren_gateway_spool_damaged_segments_total",
        "Spool segments with damaged bytes before intact records, set aside as damaged-<seq>.spool",
        0);
    gw_metrics.delivery_status = cm_metric_counter(
        "auren_gateway_delivery_failures_total",
        "Failed deliveries by rd_kafka_message_status (not_persisted, possibly_persisted)", 1,
        "status");
    gw_metrics.spool_max_bytes = cm_metric_gauge("auren_gateway_spool_max_bytes",
                                                 "Spool bound, SPOOL_MAX_BYTES (0: no spool)", 0);
    gw_metrics.kafka_brokers_up = cm_metric_gauge("auren_gateway_kafka_brokers_up",
                                                  "Kafka brokers in state UP for the producer", 0);
    cm_metric_gauge_fn("auren_gateway_in_flight", "Webhook requests being handled", read_in_flight,
                       NULL);
    gw_metrics.in_flight_limit =
        cm_metric_gauge("auren_gateway_in_flight_limit",
                        "Webhooks in flight before 503 (MAX_CONCURRENT_WEBHOOKS)", 0);
}
