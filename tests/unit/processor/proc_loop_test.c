/* Tests of the processor loop: the pure helpers (dead-letter reason extraction, fetch job ids and
 * keys, consumer lag from librdkafka statistics) and the loop itself against librdkafka's mock
 * cluster: undecodable and unnormalizable records are dead-lettered with the original bytes in a
 * committed transaction, and a failed delivery aborts the transaction and rewinds the batch (the
 * record is dead-lettered on the retry, nothing is skipped). PostgreSQL and
 * Redis are unreachable on purpose: these records must not need them. */
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm/kafka.h"
#include "cm/log.h"
#include "cm/metrics.h"
#include "cm/buf.h"
#include "cm/records.h"
#include "proc_loop.h"
#include "proc_test_pg.h"
#include "../check_run.h"

/* ---- pure helpers ---- */

START_TEST(test_dlq_reason_extraction)
{
    char r[64];

    proc_dlq_reason("missing_field: data.score", r, sizeof(r));
    ck_assert_str_eq(r, "missing_field");
    proc_dlq_reason("malformed_json", r, sizeof(r));
    ck_assert_str_eq(r, "malformed_json");
    proc_dlq_reason("  out_of_range :value", r, sizeof(r));
    ck_assert_str_eq(r, "out_of_range");
    proc_dlq_reason("", r, sizeof(r));
    ck_assert_str_eq(r, "invalid");
    proc_dlq_reason(": x", r, sizeof(r));
    ck_assert_str_eq(r, "invalid");
    proc_dlq_reason("unsupported_record: a: b", r, sizeof(r));
    ck_assert_str_eq(r, "unsupported_record");
    proc_dlq_reason("a_very_long_reason_code_indeed", r, 8);
    ck_assert_str_eq(r, "a_very_");
}
END_TEST

START_TEST(test_fetch_job_id_is_deterministic)
{
    char a[33], b[33], c[33];

    proc_fetch_job_id("0123456789abcdef0123456789abcdef", 0, a);
    proc_fetch_job_id("0123456789abcdef0123456789abcdef", 0, b);
    proc_fetch_job_id("0123456789abcdef0123456789abcdef", 1, c);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);
    /* SHA-256("<raw_event_id>:<index>"), first 32 hex */
    ck_assert_str_eq(a, "ca6f1a8710df6d0d4232f2ea641de69c");
    ck_assert_str_eq(c, "c356cbaed2f99a897958a23567ebe5bc");
    ck_assert_uint_eq(strlen(a), 32);
}
END_TEST

START_TEST(test_fetch_key)
{
    char k[16];

    ck_assert(proc_fetch_key("oura", "u1", k, sizeof(k)));
    ck_assert_str_eq(k, "oura:u1");
    ck_assert(!proc_fetch_key("google_health", "12345", k, sizeof(k)));
}
END_TEST

START_TEST(test_stats_lag_sums_known_partitions)
{
    const char *json =
        "{\"name\":\"c\",\"topics\":{"
        "\"biometric.raw.v1\":{\"partitions\":{"
        "\"0\":{\"partition\":0,\"consumer_lag\":5},"
        "\"1\":{\"partition\":1,\"consumer_lag\":-1},"
        "\"2\":{\"partition\":2,\"consumer_lag\":7},"
        "\"-1\":{\"partition\":-1,\"consumer_lag\":100}}},"
        "\"other\":{\"partitions\":{\"0\":{\"consumer_lag\":1}}},"
        "\"odd\":{\"partitions\":3}}}";
    int64_t lag = -5;

    ck_assert_int_eq(proc_stats_consumer_lag(json, strlen(json), &lag), CM_OK);
    ck_assert_int_eq(lag, 13);
}
END_TEST

START_TEST(test_stats_lag_rejects_garbage)
{
    int64_t lag = 0;

    ck_assert_int_eq(proc_stats_consumer_lag("{", 1, &lag), CM_INVALID);
    ck_assert_int_eq(proc_stats_consumer_lag("{\"topics\":3}", 12, &lag), CM_INVALID);
    ck_assert_int_eq(proc_stats_consumer_lag("{\"topics\":{}}", 13, &lag), CM_OK);
    ck_assert_int_eq(lag, 0);
}
END_TEST

/* API vendor slugs <-> indexes (the fetcher's tables): unknown slugs and indexes are refused. */
START_TEST(test_api_vendor_names)
{
    ck_assert_int_eq(proc_api_vendor_find("whoop"), 0);
    ck_assert_int_eq(proc_api_vendor_find("garmin"), PROC_API_N - 1);
    ck_assert_int_eq(proc_api_vendor_find("terra"), PROC_API_N); /* push only: no API */
    ck_assert_int_eq(proc_api_vendor_find(NULL), PROC_API_N);
    for (int i = 0; i < PROC_API_N; i++) {
        ck_assert_int_eq(proc_api_vendor_find(proc_api_vendor_name((enum proc_api_vendor)i)), i);
    }
    ck_assert_str_eq(proc_api_vendor_name(PROC_API_N), "?");
}
END_TEST

/* ---- the loop against the mock cluster ---- */

static rd_kafka_t *mock_owner;
static rd_kafka_mock_cluster_t *mcluster;
static char brokers[256];
static struct proc_cfg cfg;
static volatile sig_atomic_t stop_flag;

struct run_arg {
    struct proc_loop *loop;
    enum cm_rc rc;
    struct cm_err err;
};

static void *run_loop(void *p)
{
    struct run_arg *a = p;

    a->rc = proc_loop_run(a->loop, &stop_flag, &a->err);
    return NULL;
}

static void mock_setup(void)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *topics[] = { CM_TOPIC_RAW, CM_TOPIC_NORMALIZED, CM_TOPIC_FETCH, CM_TOPIC_DLQ };

    cm_log_init("test");
    cm_records_init();
    mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(mock_owner);
    mcluster = rd_kafka_mock_cluster_new(mock_owner, 1);
    ck_assert_ptr_nonnull(mcluster);
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        ck_assert_int_eq(rd_kafka_mock_topic_create(mcluster, topics[i], 1, 1),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    snprintf(brokers, sizeof(brokers), "%s", rd_kafka_mock_cluster_bootstraps(mcluster));
    cfg = (struct proc_cfg){
        .kafka_brokers = brokers,
        .redis_url = (char *)"redis://127.0.0.1:1/0",
        .database_url = (char *)"postgresql://auren@127.0.0.1:1/auren",
        .group_id = (char *)"proc-loop-test",
        .redis_ttl_s = 300,
        .max_timeseries_entries = 5000,
        .http_port = 0,
        .batch_max = 10,
        .batch_ms = 20,
        .conn_cache_ttl_s = 60,
    };
    stop_flag = 0;
}

static void mock_teardown(void)
{
    rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(mock_owner);
}

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *group)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    if (group != NULL) {
        ck_assert_int_eq(rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)),
                         RD_KAFKA_CONF_OK);
        ck_assert_int_eq(
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)),
            RD_KAFKA_CONF_OK);
    }
    rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(rk);
    return rk;
}

static void produce_raw(const char *key, const void *value, size_t len)
{
    rd_kafka_t *p = new_client(RD_KAFKA_PRODUCER, NULL);

    ck_assert_int_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(CM_TOPIC_RAW),
                                       RD_KAFKA_V_KEY(key, strlen(key)),
                                       RD_KAFKA_V_VALUE((void *)value, len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    ck_assert_int_eq(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* Read `topic` from the beginning until `want` records or 20 s; take() gets each record. */
static size_t read_topic(const char *topic, size_t want,
                         void (*take)(const rd_kafka_message_t *m, size_t i, void *arg), void *arg)
{
    rd_kafka_t *c = new_client(RD_KAFKA_CONSUMER, "proc-loop-test-reader");
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    size_t n = 0;
    int64_t deadline = cm_mono_us() + 20 * 1000000LL;

    rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    while (n < want && cm_mono_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);

        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            take(m, n++, arg);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

static void take_dead_letter(const rd_kafka_message_t *m, size_t i, void *arg)
{
    struct cm_err err;

    ck_assert_int_eq(cm_dead_letter_decode(m->payload, m->len, &((struct cm_dead_letter *)arg)[i],
                                           &err),
                     CM_OK);
}

static void take_fetch_job(const rd_kafka_message_t *m, size_t i, void *arg)
{
    struct cm_err err;

    ck_assert_int_eq(cm_fetch_job_decode(m->payload, m->len, &((struct cm_fetch_job *)arg)[i],
                                         &err),
                     CM_OK);
}

static size_t read_dlq(struct cm_dead_letter *out, size_t want)
{
    return read_topic(CM_TOPIC_DLQ, want, take_dead_letter, out);
}

/* Value of one counter series in the rendered metrics (0 when absent). librdkafka 2.0's mock
 * cluster accepts TxnOffsetCommit without storing the offsets, so the loop's transactions are
 * observed through its own counters here; the offsets are checked on the real broker by the
 * fault suite (tests/faults). */
static double metric_value(const char *series)
{
    struct cm_buf out;
    const char *p;
    double v = 0;

    cm_buf_init(&out, 0);
    cm_metrics_render(&out);
    ck_assert_int_eq(cm_buf_append(&out, "", 1), CM_OK);
    p = strstr((const char *)out.data, series);
    if (p != NULL) {
        v = strtod(p + strlen(series), NULL);
    }
    cm_buf_fini(&out);
    return v;
}

#define TXN_COMMITS "auren_processor_transactions_total{step=\"commit\",outcome=\"ok\"}"
#define TXN_ABORTS "auren_processor_transactions_total{step=\"abort\",outcome=\"ok\"}"

static void encode_raw(const char *vendor, const char *body, struct cm_buf *out)
{
    struct cm_raw_webhook raw = {
        .event_id = (char *)"0123456789abcdef0123456789abcdef",
        .vendor = (char *)vendor,
        .kind = CM_RAW_WEBHOOK,
        .received_at_us = 1700000000000000LL,
        .method = (char *)"POST",
        .path = (char *)"/webhooks/whoop",
        .content_type = (char *)"application/json",
        .body = (uint8_t *)body,
        .body_len = strlen(body),
    };
    struct cm_err err;

    cm_buf_init(out, 0);
    ck_assert_int_eq(cm_raw_webhook_encode(&raw, out, &err), CM_OK);
}

START_TEST(test_loop_dead_letters_and_commits)
{
    static const char garbage[] = "definitely not avro";
    struct run_arg arg = { .rc = CM_FATAL };
    struct cm_dead_letter dl[2];
    struct cm_buf raw;
    struct cm_err err;
    pthread_t th;

    double commits_before = metric_value(TXN_COMMITS);

    encode_raw("whoop", "{not json", &raw);
    produce_raw("whoop:1", garbage, sizeof(garbage) - 1);
    produce_raw("whoop", raw.data, raw.len);
    arg.loop = proc_loop_new(&cfg, &err);
    ck_assert_msg(arg.loop != NULL, "proc_loop_new: %s", err.msg);
    ck_assert_int_eq(pthread_create(&th, NULL, run_loop, &arg), 0);

    ck_assert_uint_eq(read_dlq(dl, 2), 2);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);

    ck_assert_str_eq(dl[0].stage, "processor");
    ck_assert_str_eq(dl[0].reason, "undecodable");
    ck_assert_str_eq(dl[0].source_topic, CM_TOPIC_RAW);
    ck_assert_int_eq(dl[0].source_partition, 0);
    ck_assert_int_eq(dl[0].source_offset, 0);
    ck_assert_uint_eq(dl[0].value_len, sizeof(garbage) - 1);
    ck_assert_mem_eq(dl[0].value, garbage, dl[0].value_len);
    ck_assert_uint_eq(dl[0].key_len, 7);
    ck_assert_mem_eq(dl[0].key, "whoop:1", 7);

    ck_assert_int_eq(dl[1].source_offset, 1);
    ck_assert_str_ne(dl[1].reason, "undecodable");
    ck_assert_ptr_null(strchr(dl[1].reason, ':'));
    ck_assert_ptr_nonnull(dl[1].detail);
    ck_assert_uint_eq(dl[1].value_len, raw.len);
    ck_assert_mem_eq(dl[1].value, raw.data, raw.len); /* replayable as is */

    ck_assert_double_ge(metric_value(TXN_COMMITS), commits_before + 1);
    proc_loop_free(arg.loop);
    cm_dead_letter_fini(&dl[0]);
    cm_dead_letter_fini(&dl[1]);
    cm_buf_fini(&raw);
}
END_TEST

START_TEST(test_loop_rewinds_on_failed_delivery)
{
    static const char garbage[] = "\xc3\x01 broken";
    struct run_arg arg = { .rc = CM_FATAL };
    struct cm_dead_letter dl[2];
    struct cm_err err;
    pthread_t th;
    size_t n;

    double commits_before = metric_value(TXN_COMMITS);
    double aborts_before = metric_value(TXN_ABORTS);

    produce_raw("oura:9", garbage, sizeof(garbage) - 1);
    /* the loop's first produce request fails permanently: the batch must be replayed, not
     * committed */
    rd_kafka_mock_push_request_errors(mcluster, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    arg.loop = proc_loop_new(&cfg, &err);
    ck_assert_msg(arg.loop != NULL, "proc_loop_new: %s", err.msg);
    ck_assert_int_eq(pthread_create(&th, NULL, run_loop, &arg), 0);
    n = read_dlq(dl, 1);
    ck_assert_uint_eq(n, 1);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    ck_assert_str_eq(dl[0].reason, "undecodable");
    ck_assert_int_eq(dl[0].source_offset, 0);
    ck_assert_double_ge(metric_value(TXN_ABORTS), aborts_before + 1);
    ck_assert_double_ge(metric_value(TXN_COMMITS), commits_before + 1);
    proc_loop_free(arg.loop);
    cm_dead_letter_fini(&dl[0]);
}
END_TEST

/* PostgreSQL unreachable (the test config points at port 1): a notification whose connection
 * cannot be resolved is neither dead-lettered nor committed; the transaction is aborted, the
 * batch rewound and retried with backoff until the loop is stopped. */
START_TEST(test_loop_retries_while_postgres_is_down)
{
    static const char body[] =
        "{\"user_id\":456,\"id\":\"a\",\"type\":\"sleep.updated\",\"trace_id\":\"t\"}";
    struct run_arg arg = { .rc = CM_FATAL };
    struct cm_dead_letter dl[1];
    struct cm_buf raw;
    struct cm_err err;
    pthread_t th;
    int64_t until;

    double commits_before = metric_value(TXN_COMMITS);
    double aborts_before = metric_value(TXN_ABORTS);

    encode_raw("whoop", body, &raw);
    produce_raw("whoop", raw.data, raw.len);
    arg.loop = proc_loop_new(&cfg, &err);
    ck_assert_msg(arg.loop != NULL, "proc_loop_new: %s", err.msg);
    ck_assert_int_eq(pthread_create(&th, NULL, run_loop, &arg), 0);
    until = cm_mono_us() + 30 * 1000000LL;
    while (metric_value(TXN_ABORTS) < aborts_before + 2 && cm_mono_us() < until) {
        usleep(100 * 1000);
    }
    ck_assert_double_ge(metric_value(TXN_ABORTS), aborts_before + 2); /* retried, not dropped */
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    ck_assert_double_eq(metric_value(TXN_COMMITS), commits_before);
    ck_assert_uint_eq(read_dlq(dl, 1), 0);
    proc_loop_free(arg.loop);
    cm_buf_fini(&raw);
}
END_TEST

/* ---- fault injection: link-time wrappers (processor/CMakeLists.txt links this binary with
 * -Wl,--wrap=<symbol>) capture the loop's own clients and fail one librdkafka call on demand;
 * otherwise they call the real function. ---- */

rd_kafka_t *__real_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                                size_t errstr_size);
rd_kafka_t *__wrap_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                                size_t errstr_size);
rd_kafka_resp_err_t __real_rd_kafka_subscribe(rd_kafka_t *rk,
                                              const rd_kafka_topic_partition_list_t *topics);
rd_kafka_resp_err_t __wrap_rd_kafka_subscribe(rd_kafka_t *rk,
                                              const rd_kafka_topic_partition_list_t *topics);
rd_kafka_error_t *__real_rd_kafka_abort_transaction(rd_kafka_t *rk, int timeout_ms);
rd_kafka_error_t *__wrap_rd_kafka_abort_transaction(rd_kafka_t *rk, int timeout_ms);
rd_kafka_error_t *__real_rd_kafka_seek_partitions(rd_kafka_t *rk,
                                                  rd_kafka_topic_partition_list_t *parts,
                                                  int timeout_ms);
rd_kafka_error_t *__wrap_rd_kafka_seek_partitions(rd_kafka_t *rk,
                                                  rd_kafka_topic_partition_list_t *parts,
                                                  int timeout_ms);
rd_kafka_resp_err_t __real_rd_kafka_consumer_close(rd_kafka_t *rk);
rd_kafka_resp_err_t __wrap_rd_kafka_consumer_close(rd_kafka_t *rk);
rd_kafka_resp_err_t __real_rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
rd_kafka_resp_err_t __wrap_rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
void __real_cm_log_emit(enum cm_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void __wrap_cm_log_emit(enum cm_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

enum seek_fault { SEEK_OK, SEEK_ERROR, SEEK_PARTITION_ERROR };

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static rd_kafka_t *loop_producer, *loop_consumer; /* the newest of the loop's clients */
static int producers_made;
static bool fail_producer_new, fail_subscribe, fail_close;
static int fail_aborts;
static enum seek_fault seek_fault;
static int closes, flushes;
static char watched_event[64]; /* log events of this name are counted */
static int watched_count;

/* A record that is not a raw webhook: dead-lettered as undecodable. */
static void produce_garbage(const char *key)
{
    static const char garbage[] = "not a raw record";

    produce_raw(key, garbage, sizeof(garbage) - 1);
}

static void faults_reset(void)
{
    pthread_mutex_lock(&fault_mu);
    loop_producer = loop_consumer = NULL;
    producers_made = 0;
    fail_producer_new = fail_subscribe = fail_close = false;
    fail_aborts = 0;
    seek_fault = SEEK_OK;
    closes = flushes = 0;
    watched_event[0] = '\0';
    watched_count = 0;
    pthread_mutex_unlock(&fault_mu);
}

static bool is_loop_client(rd_kafka_t *rk)
{
    return strncmp(rd_kafka_name(rk), "auren-processor#", 16) == 0;
}

rd_kafka_t *__wrap_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                                size_t errstr_size)
{
    rd_kafka_t *rk;

    pthread_mutex_lock(&fault_mu);
    if (type == RD_KAFKA_PRODUCER && fail_producer_new) {
        pthread_mutex_unlock(&fault_mu);
        snprintf(errstr, errstr_size, "injected: no more producers");
        return NULL; /* like the real one, the caller keeps the conf */
    }
    pthread_mutex_unlock(&fault_mu);
    rk = __real_rd_kafka_new(type, conf, errstr, errstr_size);
    if (rk != NULL && is_loop_client(rk)) {
        pthread_mutex_lock(&fault_mu);
        if (type == RD_KAFKA_PRODUCER) {
            loop_producer = rk;
            producers_made++;
        } else {
            loop_consumer = rk;
        }
        pthread_mutex_unlock(&fault_mu);
    }
    return rk;
}

rd_kafka_resp_err_t __wrap_rd_kafka_subscribe(rd_kafka_t *rk,
                                              const rd_kafka_topic_partition_list_t *topics)
{
    if (fail_subscribe) {
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    return __real_rd_kafka_subscribe(rk, topics);
}

rd_kafka_error_t *__wrap_rd_kafka_abort_transaction(rd_kafka_t *rk, int timeout_ms)
{
    pthread_mutex_lock(&fault_mu);
    if (fail_aborts > 0) {
        fail_aborts--;
        pthread_mutex_unlock(&fault_mu);
        return rd_kafka_error_new(RD_KAFKA_RESP_ERR__STATE, "injected abort failure");
    }
    pthread_mutex_unlock(&fault_mu);
    return __real_rd_kafka_abort_transaction(rk, timeout_ms);
}

rd_kafka_error_t *__wrap_rd_kafka_seek_partitions(rd_kafka_t *rk,
                                                  rd_kafka_topic_partition_list_t *parts,
                                                  int timeout_ms)
{
    switch (seek_fault) {
    case SEEK_ERROR:
        return rd_kafka_error_new(RD_KAFKA_RESP_ERR__TIMED_OUT, "injected seek failure");
    case SEEK_PARTITION_ERROR:
        for (int i = 0; i < parts->cnt; i++) {
            parts->elems[i].err = RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
        }
        return NULL;
    case SEEK_OK:
        break;
    }
    return __real_rd_kafka_seek_partitions(rk, parts, timeout_ms);
}

rd_kafka_resp_err_t __wrap_rd_kafka_consumer_close(rd_kafka_t *rk)
{
    rd_kafka_resp_err_t e = __real_rd_kafka_consumer_close(rk);

    if (is_loop_client(rk)) {
        closes++;
        if (fail_close) {
            return RD_KAFKA_RESP_ERR__TRANSPORT;
        }
    }
    return e;
}

rd_kafka_resp_err_t __wrap_rd_kafka_flush(rd_kafka_t *rk, int timeout_ms)
{
    rd_kafka_resp_err_t e = __real_rd_kafka_flush(rk, timeout_ms);

    if (is_loop_client(rk)) {
        flushes++;
        if (fail_close) {
            return RD_KAFKA_RESP_ERR__TIMED_OUT;
        }
    }
    return e;
}

/* Logs pass through (formatted here: there is no va_list variant to forward to); the watched
 * event is counted. */
void __wrap_cm_log_emit(enum cm_log_level lvl, const char *event, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&fault_mu);
    if (strcmp(event, watched_event) == 0) {
        watched_count++;
    }
    pthread_mutex_unlock(&fault_mu);
    __real_cm_log_emit(lvl, event, "%s", msg);
}

static void watch_event(const char *event)
{
    pthread_mutex_lock(&fault_mu);
    snprintf(watched_event, sizeof(watched_event), "%s", event);
    watched_count = 0;
    pthread_mutex_unlock(&fault_mu);
}

static int watched(void)
{
    int n;

    pthread_mutex_lock(&fault_mu);
    n = watched_count;
    pthread_mutex_unlock(&fault_mu);
    return n;
}

static void wait_watched(void)
{
    int64_t until = cm_mono_us() + 30 * 1000000LL;

    while (watched() == 0 && cm_mono_us() < until) {
        usleep(20 * 1000);
    }
    ck_assert_int_ge(watched(), 1);
}

static rd_kafka_t *wait_client(rd_kafka_t **which)
{
    int64_t until = cm_mono_us() + 20 * 1000000LL;
    rd_kafka_t *rk = NULL;

    while (rk == NULL && cm_mono_us() < until) {
        pthread_mutex_lock(&fault_mu);
        rk = *which;
        pthread_mutex_unlock(&fault_mu);
        if (rk == NULL) {
            usleep(10 * 1000);
        }
    }
    ck_assert_ptr_nonnull(rk);
    return rk;
}

static void wait_metric(const char *series, double want)
{
    int64_t until = cm_mono_us() + 30 * 1000000LL;

    while (metric_value(series) < want && cm_mono_us() < until) {
        usleep(50 * 1000);
    }
    ck_assert_double_ge(metric_value(series), want);
}

static void fault_setup(void)
{
    mock_setup();
    faults_reset();
}

static void fault_teardown(void)
{
    faults_reset();
    mock_teardown();
}

static void start_loop(struct run_arg *arg, pthread_t *th)
{
    struct cm_err err;

    arg->rc = CM_FATAL;
    arg->loop = proc_loop_new(&cfg, &err);
    ck_assert_msg(arg->loop != NULL, "proc_loop_new: %s", err.msg);
    ck_assert_int_eq(pthread_create(th, NULL, run_loop, arg), 0);
}

#define TXN_ABORT_FAILED "auren_processor_transactions_total{step=\"abort\",outcome=\"failed\"}"
#define PRODUCER_RESETS "auren_processor_transactions_total{step=\"producer_reset\",outcome=\"ok\"}"

static const char whoop_notification[] =
    "{\"user_id\":456,\"id\":\"a\",\"type\":\"sleep.updated\",\"trace_id\":\"t\"}";

/* Invalid configurations fail at construction with a reason, not later in the loop: an unknown
 * KAFKA_* property (the producer is made first), a consumer-only inconsistency, a Redis URL that
 * is not one, a subscription the client refuses. */
START_TEST(test_loop_new_rejects_bad_configuration)
{
    struct proc_cfg bad;
    struct cm_err err;

    ck_assert_int_eq(setenv("KAFKA_NOT_A_PROPERTY", "1", 1), 0);
    ck_assert_ptr_null(proc_loop_new(&cfg, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "KAFKA_NOT_A_PROPERTY"));
    unsetenv("KAFKA_NOT_A_PROPERTY");

    ck_assert_int_eq(setenv("KAFKA_FETCH_MAX_BYTES", "1000", 1), 0);
    ck_assert_ptr_null(proc_loop_new(&cfg, &err));
    unsetenv("KAFKA_FETCH_MAX_BYTES");
    ck_assert_ptr_nonnull(strstr(err.msg, "fetch.max.bytes"));
    ck_assert_int_eq(producers_made, 1); /* the producer was made, then freed with the loop */

    bad = cfg;
    bad.redis_url = (char *)"http://127.0.0.1:6379/0";
    ck_assert_ptr_null(proc_loop_new(&bad, &err));

    fail_subscribe = true;
    ck_assert_ptr_null(proc_loop_new(&cfg, &err));
    proc_loop_free(NULL);
    ck_assert_str_eq(err.msg, "kafka: subscribe: _INVALID_ARG");
}
END_TEST

/* A fatal error that fences the producer (another instance took our transactional.id) stops the
 * loop with CM_FATAL and the error's name; the clients are still closed and flushed, and their
 * failures there are only logged. */
START_TEST(test_loop_stops_when_producer_is_fenced)
{
    struct run_arg arg;
    pthread_t th;

    fail_close = true;
    watch_event("kafka.flush_failed");
    start_loop(&arg, &th);
    ck_assert_int_eq(rd_kafka_test_fatal_error(wait_client(&loop_producer),
                                               RD_KAFKA_RESP_ERR_PRODUCER_FENCED, "fenced"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    ck_assert_int_eq(pthread_join(th, NULL), 0); /* no stop flag: the loop ends by itself */
    ck_assert_int_eq(arg.rc, CM_FATAL);
    ck_assert_str_eq(arg.err.msg, "kafka fatal error: PRODUCER_FENCED");
    ck_assert_int_eq(closes, 1);
    ck_assert_int_eq(flushes, 1);
    ck_assert_int_eq(watched(), 1);
    proc_loop_free(arg.loop);
}
END_TEST

/* A fatal consumer error stops the loop too (there is no recovering a consumer). */
START_TEST(test_loop_stops_on_fatal_consumer_error)
{
    struct run_arg arg;
    pthread_t th;

    start_loop(&arg, &th);
    ck_assert_int_eq(rd_kafka_test_fatal_error(wait_client(&loop_consumer),
                                               RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID, "fenced"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_FATAL);
    ck_assert_str_eq(arg.err.msg, "kafka fatal error: FENCED_INSTANCE_ID");
    proc_loop_free(arg.loop);
}
END_TEST

/* Any other fatal producer error: the producer is replaced by a new one with the same
 * transactional.id and the batch is replayed: nothing is lost, nothing is skipped. */
START_TEST(test_loop_replaces_a_broken_producer)
{
    struct cm_dead_letter dl[2];
    struct run_arg arg;
    pthread_t th;
    rd_kafka_t *first;

    double resets_before = metric_value(PRODUCER_RESETS);

    produce_garbage("k0");
    start_loop(&arg, &th);
    ck_assert_uint_eq(read_dlq(dl, 1), 1);
    cm_dead_letter_fini(&dl[0]);
    first = wait_client(&loop_producer);
    ck_assert_int_eq(
        rd_kafka_test_fatal_error(first, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "broken"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    produce_garbage("k1");
    ck_assert_uint_eq(read_dlq(dl, 2), 2);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    ck_assert_int_eq(dl[1].source_offset, 1);
    ck_assert_str_eq(dl[1].reason, "undecodable");
    ck_assert_double_ge(metric_value(PRODUCER_RESETS), resets_before + 1);
    ck_assert_int_eq(producers_made, 2);
    ck_assert_ptr_ne(loop_producer, first);
    proc_loop_free(arg.loop);
    cm_dead_letter_fini(&dl[0]);
    cm_dead_letter_fini(&dl[1]);
}
END_TEST

/* When the replacement producer cannot be made the loop stops (CM_FATAL) instead of spinning;
 * shutting down without a producer must not crash. */
START_TEST(test_loop_stops_when_producer_cannot_be_replaced)
{
    struct run_arg arg;
    pthread_t th;

    produce_garbage("k0");
    start_loop(&arg, &th);
    ck_assert_int_eq(rd_kafka_test_fatal_error(wait_client(&loop_producer),
                                               RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                               "broken"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    pthread_mutex_lock(&fault_mu);
    fail_producer_new = true;
    pthread_mutex_unlock(&fault_mu);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_FATAL);
    ck_assert_str_eq(arg.err.msg, "cannot recreate the producer");
    ck_assert_int_eq(flushes, 0); /* nothing left to flush */
    proc_loop_free(arg.loop);
}
END_TEST

/* An abort that fails leaves the producer in an unknown state: it is replaced and the batch is
 * retried with the new one (PostgreSQL is down, so the retries go on until the stop). */
START_TEST(test_loop_replaces_producer_after_failed_abort)
{
    struct run_arg arg;
    struct cm_buf raw;
    pthread_t th;

    double abort_failed_before = metric_value(TXN_ABORT_FAILED);
    double aborts_before = metric_value(TXN_ABORTS);
    double resets_before = metric_value(PRODUCER_RESETS);

    encode_raw("whoop", whoop_notification, &raw);
    produce_raw("whoop", raw.data, raw.len);
    fail_aborts = 1;
    start_loop(&arg, &th);
    wait_metric(TXN_ABORT_FAILED, abort_failed_before + 1);
    wait_metric(TXN_ABORTS, aborts_before + 1); /* the new producer aborts the retry */
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    ck_assert_double_ge(metric_value(PRODUCER_RESETS), resets_before + 1);
    ck_assert_int_ge(producers_made, 2);
    proc_loop_free(arg.loop);
    cm_buf_fini(&raw);
}
END_TEST

/* A batch that cannot be rewound must not be skipped: the loop exits (the group then resumes
 * from the committed offsets), whether the seek call or one partition's seek fails. */
static void check_rewind_failure(enum seek_fault fault, const char *vendor, const char *body)
{
    struct run_arg arg;
    struct cm_buf raw;
    pthread_t th;

    encode_raw(vendor, body, &raw);
    produce_raw(vendor, raw.data, raw.len);
    seek_fault = fault;
    start_loop(&arg, &th);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_FATAL);
    ck_assert_str_eq(arg.err.msg, "could not rewind the batch");
    proc_loop_free(arg.loop);
    cm_buf_fini(&raw);
}

START_TEST(test_loop_exits_when_seek_fails)
{
    check_rewind_failure(SEEK_ERROR, "whoop", whoop_notification);
}
END_TEST

START_TEST(test_loop_exits_when_a_partition_seek_fails)
{
    /* a vendor deregistration cannot be applied without PostgreSQL either */
    check_rewind_failure(SEEK_PARTITION_ERROR, "garmin",
                         "{\"deregistrations\":[{\"userId\":\"garmin-user-2\"}]}");
}
END_TEST

static const char *ready_reason(struct proc_loop *l)
{
    const char *why = NULL;

    (void)proc_loop_ready(l, &why);
    return why != NULL ? why : "ready";
}

static void wait_reason(struct proc_loop *l, const char *want)
{
    int64_t until = cm_mono_us() + 30 * 1000000LL;

    while (strcmp(ready_reason(l), want) != 0 && cm_mono_us() < until) {
        usleep(20 * 1000);
    }
    ck_assert_str_eq(ready_reason(l), want);
}

/* Readiness follows the parts: not joined, then (PostgreSQL at a closed port) "postgresql
 * unreachable", then "kafka brokers down" while the only broker is down. */
START_TEST(test_loop_readiness_follows_the_broker)
{
    struct run_arg arg;
    pthread_t th;

    start_loop(&arg, &th);
    wait_reason(arg.loop, "postgresql unreachable");
    rd_kafka_mock_broker_set_down(mcluster, 1);
    wait_reason(arg.loop, "kafka brokers down");
    rd_kafka_mock_broker_set_up(mcluster, 1);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    proc_loop_free(arg.loop);
}
END_TEST

/* KAFKA_* passthrough settings the loop must live with: the cooperative assignor (incremental
 * assign / unassign), a one-message producer queue (the produce call waits for room instead of
 * failing the batch) and partition EOF events (ignored). Three records, three dead letters, in
 * order. */
START_TEST(test_loop_with_cooperative_assignor_and_tiny_queue)
{
    struct cm_dead_letter dl[3];
    struct run_arg arg;
    pthread_t th;

    ck_assert_int_eq(setenv("KAFKA_PARTITION_ASSIGNMENT_STRATEGY", "cooperative-sticky", 1), 0);
    ck_assert_int_eq(setenv("KAFKA_QUEUE_BUFFERING_MAX_MESSAGES", "1", 1), 0);
    ck_assert_int_eq(setenv("KAFKA_ENABLE_PARTITION_EOF", "true", 1), 0);
    for (int i = 0; i < 3; i++) {
        produce_garbage("k");
    }
    start_loop(&arg, &th);
    unsetenv("KAFKA_PARTITION_ASSIGNMENT_STRATEGY");
    unsetenv("KAFKA_QUEUE_BUFFERING_MAX_MESSAGES");
    unsetenv("KAFKA_ENABLE_PARTITION_EOF");
    ck_assert_uint_eq(read_dlq(dl, 3), 3);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(dl[i].source_offset, i);
        ck_assert_str_eq(dl[i].reason, "undecodable");
        cm_dead_letter_fini(&dl[i]);
    }
    proc_loop_free(arg.loop);
}
END_TEST

/* The broker refuses our transactional.id: initialising transactions fails fatally and the loop
 * stops with the reason rather than retrying forever. */
START_TEST(test_loop_stops_when_transactional_id_is_refused)
{
    struct run_arg arg;
    pthread_t th;

    produce_garbage("k0");
    rd_kafka_mock_push_request_errors(mcluster, 22 /* InitProducerId */, 1,
                                      RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    start_loop(&arg, &th);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_FATAL);
    ck_assert_msg(strstr(arg.err.msg, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") != NULL, "%s",
                  arg.err.msg);
    proc_loop_free(arg.loop);
}
END_TEST

/* Any other fatal InitProducerId error: the producer is replaced and the record processed. */
START_TEST(test_loop_replaces_producer_after_fatal_init)
{
    struct cm_dead_letter dl[1];
    struct run_arg arg;
    pthread_t th;

    double resets_before = metric_value(PRODUCER_RESETS);

    produce_garbage("k0");
    rd_kafka_mock_push_request_errors(mcluster, 22 /* InitProducerId */, 1,
                                      RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT);
    start_loop(&arg, &th);
    ck_assert_uint_eq(read_dlq(dl, 1), 1);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    ck_assert_str_eq(dl[0].reason, "undecodable");
    ck_assert_double_ge(metric_value(PRODUCER_RESETS), resets_before + 1);
    ck_assert_int_ge(producers_made, 2);
    cm_dead_letter_fini(&dl[0]);
    proc_loop_free(arg.loop);
}
END_TEST

/* A coordinator slower than the commit call's timeout: the commit is retried (it resumes the
 * same commit) and succeeds; the batch is neither aborted nor replayed. */
START_TEST(test_loop_retries_a_slow_commit)
{
    struct cm_dead_letter dl[2];
    struct run_arg arg;
    pthread_t th;

    double commits_before = metric_value(TXN_COMMITS);
    double aborts_before = metric_value(TXN_ABORTS);

    produce_garbage("k0");
    ck_assert_int_eq(rd_kafka_mock_broker_push_request_error_rtts(
                         mcluster, 1, 26 /* EndTxn */, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 12000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    watch_event("kafka.commit_retry");
    start_loop(&arg, &th);
    wait_metric(TXN_COMMITS, commits_before + 1);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    ck_assert_int_ge(watched(), 1);
    ck_assert_double_eq(metric_value(TXN_ABORTS), aborts_before);
    ck_assert_uint_eq(read_dlq(dl, 2), 1); /* once */
    ck_assert_int_eq(dl[0].source_offset, 0);
    cm_dead_letter_fini(&dl[0]);
    proc_loop_free(arg.loop);
}
END_TEST

/* Started before the raw topic exists (a fresh cluster): the consumer reports the missing topic,
 * the loop keeps running, and records are processed once the topic is created. */
START_TEST(test_loop_waits_for_the_raw_topic)
{
    struct cm_dead_letter dl[1];
    struct run_arg arg;
    pthread_t th;

    rd_kafka_mock_topic_set_error(mcluster, CM_TOPIC_RAW, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    watch_event("kafka.consume_error");
    start_loop(&arg, &th);
    wait_watched();
    ck_assert_str_eq(ready_reason(arg.loop), "kafka consumer group not joined");
    rd_kafka_mock_topic_set_error(mcluster, CM_TOPIC_RAW, RD_KAFKA_RESP_ERR_NO_ERROR);
    produce_garbage("k0");
    ck_assert_uint_eq(read_dlq(dl, 1), 1);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);
    ck_assert_str_eq(dl[0].reason, "undecodable");
    cm_dead_letter_fini(&dl[0]);
    proc_loop_free(arg.loop);
}
END_TEST

/* With PostgreSQL (a scratch database, AUREN_TEST_DATABASE_URL): samples and notifications of a
 * revoked connection are dead-lettered as connection_revoked, an active user's notification
 * becomes a fetch job carrying the user id, and a vendor deregistration revokes the row. */
START_TEST(test_loop_routes_by_connection_state)
{
    static const char *const bodies[][2] = {
        { "garmin", "{\"dailies\":[{\"userId\":\"garmin-user-1\",\"summaryId\":\"d1\","
                    "\"calendarDate\":\"2026-11-20\",\"startTimeInSeconds\":1795129200,"
                    "\"durationInSeconds\":86400,\"steps\":10432}]}" },
        { "whoop", "{\"user_id\":456,\"id\":\"a\",\"type\":\"sleep.updated\",\"trace_id\":\"t\"}" },
        { "whoop", "{\"user_id\":457,\"id\":\"b\",\"type\":\"sleep.updated\",\"trace_id\":\"t\"}" },
        { "garmin", "{\"deregistrations\":[{\"userId\":\"garmin-user-2\"}]}" },
    };
    struct proc_test_pg t;
    struct cm_dead_letter dl[2];
    struct cm_fetch_job job;
    struct run_arg arg;
    pthread_t th;
    PGresult *res = NULL;
    int64_t until;

    if (!proc_test_pg_create(&t, true)) {
        return;
    }
    proc_test_pg_exec(t.db, "INSERT INTO connections (vendor, vendor_user_id, user_id, status) "
                            "VALUES ('garmin', 'garmin-user-1', 'user-g1', 'revoked'), "
                            "('garmin', 'garmin-user-2', 'user-g2', 'active'), "
                            "('whoop', '456', 'user-w1', 'revoked'), "
                            "('whoop', '457', 'user-w2', 'active')");
    for (size_t i = 0; i < CM_ARRAY_LEN(bodies); i++) {
        struct cm_buf raw;

        encode_raw(bodies[i][0], bodies[i][1], &raw);
        produce_raw(bodies[i][0], raw.data, raw.len);
        cm_buf_fini(&raw);
    }
    cfg.database_url = t.url;
    start_loop(&arg, &th);
    ck_assert_uint_eq(read_dlq(dl, 2), 2);
    ck_assert_uint_eq(read_topic(CM_TOPIC_FETCH, 1, take_fetch_job, &job), 1);
    until = cm_mono_us() + 20 * 1000000LL;
    do {
        PQclear(res);
        res = PQexec(t.db, "SELECT status FROM connections WHERE vendor_user_id = 'garmin-user-2'");
        ck_assert_int_eq(PQntuples(res), 1);
    } while (strcmp(PQgetvalue(res, 0, 0), "revoked") != 0 && cm_mono_us() < until &&
             usleep(50 * 1000) == 0);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "revoked");
    PQclear(res);
    stop_flag = 1;
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(arg.rc, CM_OK);

    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(dl[i].source_offset, i);
        ck_assert_str_eq(dl[i].reason, "connection_revoked");
        cm_dead_letter_fini(&dl[i]);
    }
    ck_assert_str_eq(job.vendor, "whoop");
    ck_assert_str_eq(job.vendor_user_id, "457");
    ck_assert_ptr_nonnull(job.user_id);
    ck_assert_str_eq(job.user_id, "user-w2");
    cm_fetch_job_fini(&job);
    proc_loop_free(arg.loop);
    proc_test_pg_drop(&t);
}
END_TEST

static Suite *proc_loop_suite(void)
{
    Suite *s = suite_create("proc_loop");
    TCase *pure = tcase_create("helpers");
    TCase *mock = tcase_create("mock_cluster");
    TCase *faults = tcase_create("faults");

    tcase_add_test(pure, test_dlq_reason_extraction);
    tcase_add_test(pure, test_fetch_job_id_is_deterministic);
    tcase_add_test(pure, test_fetch_key);
    tcase_add_test(pure, test_stats_lag_sums_known_partitions);
    tcase_add_test(pure, test_stats_lag_rejects_garbage);
    tcase_add_test(pure, test_api_vendor_names);
    suite_add_tcase(s, pure);
    tcase_add_checked_fixture(mock, mock_setup, mock_teardown);
    tcase_set_timeout(mock, 90);
    tcase_add_test(mock, test_loop_dead_letters_and_commits);
    tcase_add_test(mock, test_loop_rewinds_on_failed_delivery);
    tcase_add_test(mock, test_loop_retries_while_postgres_is_down);
    suite_add_tcase(s, mock);
    tcase_add_checked_fixture(faults, fault_setup, fault_teardown);
    tcase_set_timeout(faults, 90);
    tcase_add_test(faults, test_loop_new_rejects_bad_configuration);
    tcase_add_test(faults, test_loop_stops_when_producer_is_fenced);
    tcase_add_test(faults, test_loop_stops_on_fatal_consumer_error);
    tcase_add_test(faults, test_loop_replaces_a_broken_producer);
    tcase_add_test(faults, test_loop_stops_when_producer_cannot_be_replaced);
    tcase_add_test(faults, test_loop_replaces_producer_after_failed_abort);
    tcase_add_test(faults, test_loop_exits_when_seek_fails);
    tcase_add_test(faults, test_loop_exits_when_a_partition_seek_fails);
    tcase_add_test(faults, test_loop_readiness_follows_the_broker);
    tcase_add_test(faults, test_loop_with_cooperative_assignor_and_tiny_queue);
    tcase_add_test(faults, test_loop_routes_by_connection_state);
    tcase_add_test(faults, test_loop_stops_when_transactional_id_is_refused);
    tcase_add_test(faults, test_loop_waits_for_the_raw_topic);
    tcase_add_test(faults, test_loop_replaces_producer_after_fatal_init);
    tcase_add_test(faults, test_loop_retries_a_slow_commit);
    suite_add_tcase(s, faults);
    return s;
}

int main(void)
{
    return check_run(proc_loop_suite());
}
