/* The gateway's Kafka side under injected faults, on librdkafka's mock cluster: configuration the
 * producer refuses, a produce queue that is full, a record Kafka refuses for good, deliveries that
 * time out (answered from the spool instead), a spool that is full too, a fatal producer error,
 * replays whose delivery fails, and the shutdown purge. Each case checks the answer the request
 * would get (return code + reason, or its delivery report) and the metric an operator sees. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "cm/buf.h"
#include "cm/log.h"
#include "cm/metrics.h"
#include "gw_cfg.h"
#include "gw_ingest.h"
#include "gw_metrics.h"
#include "gw_spool.h"
#include "gw_test_dir.h"
#include "../check_run.h"

#define DEADLINE_MS 20000
#define API_PRODUCE 0 /* the Kafka protocol ApiKey of Produce */

static struct gw_cfg cfg;
static char spool[64];

/* ---- delivery reports ---- */

static pthread_mutex_t rlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rcond = PTHREAD_COND_INITIALIZER;
static int n_ok;
static int n_failed;
static rd_kafka_resp_err_t last_err;

static void on_delivery(void *opaque, rd_kafka_resp_err_t err)
{
    (void)opaque;
    pthread_mutex_lock(&rlock);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        n_ok++;
    } else {
        n_failed++;
        last_err = err;
    }
    pthread_cond_broadcast(&rcond);
    pthread_mutex_unlock(&rlock);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Wait (bounded) until `ok` successful and `failed` failed reports have arrived. */
static void wait_reports(int ok, int failed)
{
    int64_t until = now_ms() + DEADLINE_MS;

    pthread_mutex_lock(&rlock);
    while ((n_ok < ok || n_failed < failed) && now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&rcond, &rlock, &ts);
    }
    ck_assert_int_eq(n_ok, ok);
    ck_assert_int_eq(n_failed, failed);
    pthread_mutex_unlock(&rlock);
}

/* The value of one exposition series ("name{labels}"), 0 when absent. */
static double metric(const char *series)
{
    struct cm_buf b;
    const char *p;
    double v = 0;
    size_t n = strlen(series);

    cm_buf_init(&b, 0);
    cm_metrics_render(&b);
    ck_assert_int_eq(cm_buf_append(&b, "", 1), CM_OK);
    for (p = (const char *)b.data; p != NULL; p = strchr(p, '\n')) {
        if (*p == '\n') {
            p++;
        }
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    }
    cm_buf_fini(&b);
    return v;
}

#define PRODUCE_ERR(r) "auren_gateway_kafka_produce_errors_total{reason=\"" r "\"}"

/* ---- fixtures ---- */

static void setup(void)
{
    cm_log_init("gw-ingest-test");
    gw_metrics_init();
    memset(&cfg, 0, sizeof(cfg));
    cfg.brokers = "127.0.0.1:1"; /* replaced by the mock cluster */
    cfg.max_body = 4096;
    cfg.delivery_timeout_ms = 3000;
    cfg.spool_dir = "";
    cfg.spool_max_bytes = (size_t)1 << 20;
    spool[0] = '\0';
    pthread_mutex_lock(&rlock);
    n_ok = n_failed = 0;
    last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    pthread_mutex_unlock(&rlock);
}

static void rm_spool(void)
{
    if (spool[0] != '\0') {
        gw_test_rmdir(spool);
        spool[0] = '\0';
    }
}

static void teardown(void)
{
    rm_spool();
}

static void use_spool(size_t max_bytes)
{
    gw_test_mkdtemp(spool, sizeof(spool), "/tmp/gw_ingest_test.XXXXXX");
    cfg.spool_dir = spool;
    cfg.spool_max_bytes = max_bytes;
}

/* A producer on a one-broker mock cluster plus `extra` name/value pairs (NULL-terminated). */
static struct gw_ingest *start(const char *const *extra)
{
    const char *props[32] = {"test.mock.num.brokers", "1"};
    size_t n = 2;
    struct cm_err err = {{0}};
    struct gw_ingest *ing;

    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        props[n++] = extra[i];
    }
    props[n] = NULL;
    ing = gw_ingest_new(&cfg, props, on_delivery, NULL, NULL, &err);
    ck_assert_msg(ing != NULL, "gw_ingest_new: %s", err.msg);
    return ing;
}

static rd_kafka_mock_cluster_t *mock(struct gw_ingest *ing)
{
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(gw_ingest_handle(ing));

    ck_assert_ptr_nonnull(mc);
    return mc;
}

static void wait_ready(struct gw_ingest *ing, bool want)
{
    const char *reason = "";
    int64_t until = now_ms() + DEADLINE_MS;

    while (gw_ingest_ready(ing, &reason) != want && now_ms() < until) {
        sleep_ms(50);
    }
    ck_assert_msg(gw_ingest_ready(ing, &reason) == want, "ready: %s", reason);
}

/* start(extra), wait until a broker is up, then give the broker a round-trip time of rtt_ms. */
static struct gw_ingest *start_slow(const char *const *extra, int rtt_ms)
{
    struct gw_ingest *ing = start(extra);

    wait_ready(ing, true);
    rd_kafka_mock_broker_set_rtt(mock(ing), 1, rtt_ms);
    return ing;
}

static double brokers_up(void)
{
    return metric("auren_gateway_kafka_brokers_up");
}

static void wait_brokers_up(double want)
{
    int64_t until = now_ms() + DEADLINE_MS;

    while (brokers_up() != want && now_ms() < until) {
        sleep_ms(50);
    }
    ck_assert(brokers_up() == want);
}

static uint64_t spooled_records(const char *dirpath)
{
    struct cm_err err = {{0}};
    struct gw_spool_stats st;
    struct gw_spool *sp = gw_spool_open(dirpath, (size_t)1 << 20, &err);

    ck_assert_msg(sp != NULL, "%s", err.msg);
    gw_spool_stats(sp, &st);
    gw_spool_close(sp);
    return st.records;
}

/* ---- configuration the producer refuses ---- */

START_TEST(test_new_refuses_bad_configuration)
{
    static const char *const bad_prop[] = {"test.mock.num.brokers", "1", "no.such.property", "x",
                                           NULL};
    static const char *const bad_acks[] = {"test.mock.num.brokers", "1", "acks", "1", NULL};
    struct cm_err err = {{0}};
    char file[] = "/tmp/gw_ingest_file.XXXXXX";
    int fd;

    /* An unknown property from the caller. */
    ck_assert_ptr_null(gw_ingest_new(&cfg, bad_prop, on_delivery, NULL, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "no.such.property"));

    /* acks=1 contradicts the idempotent producer: rd_kafka_new refuses. */
    memset(&err, 0, sizeof(err));
    ck_assert_ptr_null(gw_ingest_new(&cfg, bad_acks, on_delivery, NULL, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "kafka producer"));

    /* A body limit whose message.max.bytes librdkafka cannot take (over 1e9). */
    memset(&err, 0, sizeof(err));
    cfg.max_body = (size_t)2000000000;
    ck_assert_ptr_null(gw_ingest_new(&cfg, NULL, on_delivery, NULL, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "message.max.bytes"));
    cfg.max_body = 4096;

    /* A KAFKA_* variable librdkafka does not know. */
    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(setenv("KAFKA_NO_SUCH_THING", "1", 1), 0);
    ck_assert_ptr_null(gw_ingest_new(&cfg, NULL, on_delivery, NULL, NULL, &err));
    unsetenv("KAFKA_NO_SUCH_THING");
    ck_assert_ptr_nonnull(strstr(err.msg, "KAFKA_NO_SUCH_THING"));

    /* SPOOL_DIR naming a regular file. */
    memset(&err, 0, sizeof(err));
    fd = mkstemp(file);
    ck_assert_int_ge(fd, 0);
    close(fd);
    cfg.spool_dir = file;
    ck_assert_ptr_null(gw_ingest_new(&cfg, NULL, on_delivery, NULL, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "SPOOL_DIR"));
    unlink(file);
    gw_ingest_free(NULL);
}
END_TEST

/* An operator's KAFKA_LINGER_MS wins over the gateway's default of 1. */
START_TEST(test_operator_kafka_setting_kept)
{
    struct gw_ingest *ing;
    rd_kafka_conf_t *c;
    char v[32];
    size_t vl = sizeof(v);

    ck_assert_int_eq(setenv("KAFKA_LINGER_MS", "7", 1), 0);
    ing = start(NULL);
    unsetenv("KAFKA_LINGER_MS");
    c = (rd_kafka_conf_t *)rd_kafka_conf(gw_ingest_handle(ing));
    ck_assert_int_eq(rd_kafka_conf_get(c, "linger.ms", v, &vl), RD_KAFKA_CONF_OK);
    ck_assert_str_eq(v, "7");
    gw_ingest_free(ing);
}
END_TEST

/* ---- produce errors ---- */

/* Without a spool a full produce queue is a retry for the client; with one the record goes to the
 * spool, and a spool that is full as well refuses it. */
START_TEST(test_queue_full)
{
    static const char *const one[] = {"queue.buffering.max.messages", "1", NULL};
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    double q0 = metric(PRODUCE_ERR("queue_full"));

    ing = start_slow(one, 3000);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "a", 1, NULL, &err), CM_OK);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "b", 1, NULL, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "queue_full");
    ck_assert(metric(PRODUCE_ERR("queue_full")) == q0 + 1);
    rd_kafka_mock_broker_set_rtt(mock(ing), 1, 0);
    wait_reports(1, 0);
    /* Shutdown with nothing outstanding: purge has nothing to report. */
    gw_ingest_stop_poller(ing);
    gw_ingest_stop_poller(NULL);
    gw_ingest_purge(ing);
    ck_assert_int_eq(gw_ingest_flush(ing, 10), 0);
    wait_reports(1, 0);
    gw_ingest_free(ing);
}
END_TEST

START_TEST(test_queue_full_goes_to_spool)
{
    static const char *const one[] = {"queue.buffering.max.messages", "1", NULL};
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    double q0 = metric(PRODUCE_ERR("queue_full"));
    double replayed0 = metric("auren_gateway_spool_replayed_total");

    use_spool((size_t)1 << 20);
    ing = start_slow(one, 1500);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "a", 1, NULL, &err), CM_OK);
    /* Refused by the queue, taken by the spool: its fsync answers the request. */
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "b", 1, NULL, &err), CM_OK);
    ck_assert(metric(PRODUCE_ERR("queue_full")) == q0 + 1);
    /* Queued behind the spooled one (order kept), even though Kafka could take it later. */
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "c", 1, NULL, &err), CM_OK);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "d", 1, NULL, &err), CM_OK);
    wait_reports(4, 0);
    /* The replayer drains the spool through the one-message queue (it waits out QUEUE_FULL). */
    rd_kafka_mock_broker_set_rtt(mock(ing), 1, 200);
    {
        int64_t until = now_ms() + DEADLINE_MS;
        while (metric("auren_gateway_spool_replayed_total") < replayed0 + 3 && now_ms() < until) {
            sleep_ms(50);
        }
    }
    ck_assert(metric("auren_gateway_spool_replayed_total") == replayed0 + 3);
    ck_assert(metric("auren_gateway_spool_records") == 0);
    gw_ingest_free(ing);
}
END_TEST

START_TEST(test_queue_full_and_spool_full)
{
    static const char *const one[] = {"queue.buffering.max.messages", "1", NULL};
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    double full0 = metric("auren_gateway_spool_appends_total{outcome=\"full\"}");

    use_spool(8); /* smaller than any record */
    ing = start_slow(one, 3000);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "a", 1, NULL, &err), CM_OK);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "b", 1, NULL, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "spool_full");
    ck_assert(metric("auren_gateway_spool_appends_total{outcome=\"full\"}") == full0 + 1);
    rd_kafka_mock_broker_set_rtt(mock(ing), 1, 0);
    wait_reports(1, 0);
    gw_ingest_free(ing);
}
END_TEST

/* A record over message.max.bytes is refused for good: the spool would not help. */
START_TEST(test_record_too_large_is_not_spooled)
{
    static const char *const small[] = {"message.max.bytes", "1000", NULL};
    static char big[4000];
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    double f0 = metric(PRODUCE_ERR("produce_failed"));

    use_spool((size_t)1 << 20);
    ing = start(small);
    wait_ready(ing, true);
    memset(big, 'x', sizeof(big));
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", big, sizeof(big), NULL, &err), CM_RETRY);
    ck_assert_str_eq(err.msg, "produce_failed");
    ck_assert(metric(PRODUCE_ERR("produce_failed")) == f0 + 1);
    ck_assert(!gw_ingest_failed(ing));
    gw_ingest_free(ing);
    ck_assert_uint_eq(spooled_records(spool), 0);
}
END_TEST

/* ---- delivery failures ---- */

/* A delivery that times out (possibly persisted) is answered from the spool, then replayed. */
START_TEST(test_delivery_timeout_goes_to_spool)
{
    static const char *const fast[] = {"message.timeout.ms", "300", NULL};
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    double t0 = metric(PRODUCE_ERR("delivery_timeout"));
    double st0 = metric("auren_gateway_delivery_failures_total{status=\"possibly_persisted\"}") +
                 metric("auren_gateway_delivery_failures_total{status=\"not_persisted\"}");

    use_spool((size_t)1 << 20);
    ing = start_slow(fast, 2000);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "late", 4, NULL, &err), CM_OK);
    wait_reports(1, 0); /* durable: from the spool */
    ck_assert(metric(PRODUCE_ERR("delivery_timeout")) == t0 + 1);
    ck_assert(metric("auren_gateway_delivery_failures_total{status=\"possibly_persisted\"}") +
                  metric("auren_gateway_delivery_failures_total{status=\"not_persisted\"}") ==
              st0 + 1);
    gw_ingest_stop_poller(ing);
    gw_ingest_free(ing);
    ck_assert_uint_eq(spooled_records(spool), 1);
}
END_TEST

/* The same timeout with a full spool: the request gets the Kafka error. */
START_TEST(test_delivery_timeout_spool_full)
{
    static const char *const fast[] = {"message.timeout.ms", "300", NULL};
    struct cm_err err = {{0}};
    struct gw_ingest *ing;

    use_spool(8);
    ing = start_slow(fast, 2000);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "late", 4, NULL, &err), CM_OK);
    wait_reports(0, 1);
    ck_assert_int_eq(last_err, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    gw_ingest_free(ing);
}
END_TEST

/* A broker refusal that is permanent (not authorized) goes to the client, not to the spool. */
START_TEST(test_permanent_delivery_error_not_spooled)
{
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    double f0 = metric(PRODUCE_ERR("delivery_failed"));

    use_spool((size_t)1 << 20);
    ing = start(NULL);
    wait_ready(ing, true);
    rd_kafka_mock_push_request_errors(mock(ing), API_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "denied", 6, NULL, &err), CM_OK);
    wait_reports(0, 1);
    ck_assert_int_eq(last_err, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    ck_assert(metric(PRODUCE_ERR("delivery_failed")) == f0 + 1);
    gw_ingest_free(ing);
    ck_assert_uint_eq(spooled_records(spool), 0);
}
END_TEST

/* A replayed record whose delivery fails stays spooled and is replayed again. */
START_TEST(test_replay_failure_retried)
{
    static const char *const fast[] = {"message.timeout.ms", "500", NULL};
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    double rf0 = metric(PRODUCE_ERR("replay_failed"));
    double replayed0 = metric("auren_gateway_spool_replayed_total");
    int64_t until;

    use_spool((size_t)1 << 20);
    ing = start(fast);
    wait_ready(ing, true);
    rd_kafka_mock_broker_set_down(mock(ing), 1);
    wait_brokers_up(0);
    /* No broker: straight to the spool, and still ready (the spool accepts). */
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "kept", 4, NULL, &err), CM_OK);
    wait_reports(1, 0);
    wait_ready(ing, true);
    rd_kafka_mock_broker_set_rtt(mock(ing), 1, 2000);
    rd_kafka_mock_broker_set_up(mock(ing), 1);
    until = now_ms() + DEADLINE_MS;
    while (metric(PRODUCE_ERR("replay_failed")) < rf0 + 1 && now_ms() < until) {
        sleep_ms(50);
    }
    ck_assert(metric(PRODUCE_ERR("replay_failed")) >= rf0 + 1);
    ck_assert(metric("auren_gateway_spool_replayed_total") == replayed0);
    rd_kafka_mock_broker_set_rtt(mock(ing), 1, 0);
    until = now_ms() + DEADLINE_MS;
    while (metric("auren_gateway_spool_replayed_total") < replayed0 + 1 && now_ms() < until) {
        sleep_ms(50);
    }
    ck_assert(metric("auren_gateway_spool_replayed_total") == replayed0 + 1);
    gw_ingest_free(ing);
    ck_assert_uint_eq(spooled_records(spool), 0);
}
END_TEST

/* ---- fatal error ---- */

START_TEST(test_fatal_error_stops_accepting)
{
    struct cm_err err = {{0}};
    struct gw_ingest *ing;
    const char *reason = "";
    double fatal0 = metric(PRODUCE_ERR("producer_fatal"));
    int64_t until;

    ing = start(NULL);
    wait_ready(ing, true);
    ck_assert_int_eq(rd_kafka_test_fatal_error(gw_ingest_handle(ing),
                                               RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                               "injected by gw_ingest_test"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    until = now_ms() + DEADLINE_MS;
    while (!gw_ingest_failed(ing) && now_ms() < until) {
        sleep_ms(20);
    }
    ck_assert(gw_ingest_failed(ing));
    ck_assert(!gw_ingest_ready(ing, &reason));
    ck_assert_str_eq(reason, "kafka producer failed");
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "x", 1, NULL, &err), CM_FATAL);
    ck_assert_str_eq(err.msg, "producer_fatal");
    ck_assert(metric(PRODUCE_ERR("producer_fatal")) == fatal0 + 1);
    gw_ingest_free(ing);
}
END_TEST

/* ---- shutdown ---- */

/* Records still in flight at shutdown: without a spool each gets a purge error report. */
START_TEST(test_purge_reports_each_once)
{
    struct cm_err err = {{0}};
    struct gw_ingest *ing;

    ing = start_slow(NULL, 5000);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "a", 1, NULL, &err), CM_OK);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "b", 1, NULL, &err), CM_OK);
    gw_ingest_stop_poller(ing);
    gw_ingest_stop_poller(ing); /* twice: no effect */
    ck_assert_int_eq(gw_ingest_flush(ing, 10), 2);
    gw_ingest_purge(ing);
    wait_reports(0, 2);
    ck_assert(last_err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
              last_err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
    gw_ingest_free(ing);
}
END_TEST

/* With a spool the purged records are spooled and answered durable. */
START_TEST(test_purge_into_spool)
{
    struct cm_err err = {{0}};
    struct gw_ingest *ing;

    use_spool((size_t)1 << 20);
    ing = start_slow(NULL, 5000);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "a", 1, NULL, &err), CM_OK);
    ck_assert_int_eq(gw_ingest_send(ing, "whoop", "b", 1, NULL, &err), CM_OK);
    gw_ingest_stop_poller(ing);
    gw_ingest_purge(ing);
    wait_reports(2, 0);
    gw_ingest_free(ing);
    ck_assert_uint_eq(spooled_records(spool), 2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gw_ingest");
    TCase *cfgc = tcase_create("config");
    TCase *produce = tcase_create("produce");
    TCase *delivery = tcase_create("delivery");
    TCase *shutdown = tcase_create("shutdown");
    TCase *all[] = {cfgc, produce, delivery, shutdown};

    check_add_cases(s, all, sizeof(all) / sizeof(all[0]), setup, teardown, 120);
    tcase_add_test(cfgc, test_new_refuses_bad_configuration);
    tcase_add_test(cfgc, test_operator_kafka_setting_kept);
    tcase_add_test(produce, test_queue_full);
    tcase_add_test(produce, test_queue_full_goes_to_spool);
    tcase_add_test(produce, test_queue_full_and_spool_full);
    tcase_add_test(produce, test_record_too_large_is_not_spooled);
    tcase_add_test(delivery, test_delivery_timeout_goes_to_spool);
    tcase_add_test(delivery, test_delivery_timeout_spool_full);
    tcase_add_test(delivery, test_permanent_delivery_error_not_spooled);
    tcase_add_test(delivery, test_replay_failure_retried);
    tcase_add_test(delivery, test_fatal_error_stops_accepting);
    tcase_add_test(shutdown, test_purge_reports_each_once);
    tcase_add_test(shutdown, test_purge_into_spool);
    return s;
}

int main(void)
{
    return check_run(suite());
}
