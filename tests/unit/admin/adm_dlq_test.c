/* adm_dlq against librdkafka's mock cluster: `dlq list` groups what it reads by stage and reason
 * (ages in s/m/h/d, records that are not DeadLetters counted apart), `dlq replay` sends the
 * replayable records back in transactions of at most 500 (the cursor itself is checked against
 * the real broker in tests/e2e/test_admin.py), and Kafka failures (refused producer id, settings librdkafka refuses) are classified. */
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adm.h"
#include "cm/kafka.h"
#include "cm/records.h"
#include "../check_run.h"
#include "adm_test_kafka.h"

/* Kafka protocol API key (librdkafka keeps its names private). */
enum { API_INIT_PRODUCER_ID = 22 };

struct cluster {
    rd_kafka_t *owner;
    rd_kafka_mock_cluster_t *mc;
    const char *boot;
    rd_kafka_t *p;
};

static void cluster_init(struct cluster *c)
{
    rd_kafka_conf_t *conf;
    char errstr[256];

    adm_test_mock_new(&c->owner, &c->mc, &c->boot);
    ck_assert_int_eq(rd_kafka_mock_topic_create(c->mc, CM_TOPIC_DLQ, 2, 1), 0);
    ck_assert_int_eq(rd_kafka_mock_topic_create(c->mc, CM_TOPIC_RAW, 1, 1), 0);
    conf = rd_kafka_conf_new();
    ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", c->boot, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    c->p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(c->p);
}

static void cluster_fini(struct cluster *c)
{
    rd_kafka_destroy(c->p);
    adm_test_mock_free(c->owner, c->mc);
}

static void put_raw(struct cluster *c, int32_t partition, const void *v, size_t n)
{
    ck_assert_int_eq(rd_kafka_producev(c->p, RD_KAFKA_V_TOPIC(CM_TOPIC_DLQ),
                                       RD_KAFKA_V_PARTITION(partition),
                                       RD_KAFKA_V_VALUE((void *)v, n),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* One dead letter; `value` NULL for a record without source bytes. */
static void put_dl(struct cluster *c, int32_t partition, const char *stage, const char *reason,
                   const char *topic, const char *value, int64_t failed_at_us)
{
    struct cm_dead_letter d = {
        .stage = (char *)stage,
        .reason = (char *)reason,
        .detail = (char *)"d",
        .source_topic = (char *)topic,
        .source_partition = 0,
        .source_offset = 1,
        .key = (uint8_t *)"k",
        .key_len = 1,
        .value = (uint8_t *)value,
        .value_len = value != NULL ? strlen(value) : 0,
        .failed_at_us = failed_at_us,
        .attempts = 1,
    };
    struct cm_buf b;
    struct cm_err err = { { 0 } };

    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_dead_letter_encode(&d, &b, &err), CM_OK);
    put_raw(c, partition, b.data, b.len);
    cm_buf_fini(&b);
}

static void flush(struct cluster *c)
{
    ck_assert_int_eq(rd_kafka_flush(c->p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Run list or replay into a string (free it). */
static char *run(enum cm_rc (*fn)(const char *, FILE *, struct cm_err *), const char *boot,
                 enum cm_rc want, struct cm_err *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    enum cm_rc rc;

    memset(err, 0, sizeof(*err));
    rc = fn(boot, out, err);
    fclose(out);
    ck_assert_msg(rc == want, "rc=%d %s / %s", rc, err->msg, text);
    return text;
}

static size_t count_topic(struct cluster *c, const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    char errstr[256];
    rd_kafka_t *rk;
    int64_t lo = 0, hi = 0;

    ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", c->boot, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(rk);
    ck_assert_int_eq(rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return (size_t)(hi - lo);
}

START_TEST(test_list_groups_and_ages)
{
    struct cluster c;
    struct cm_err err;
    int64_t now = cm_now_us();
    char *text;
    const char *line;
    char *end;
    long newest;

    cluster_init(&c);
    put_dl(&c, 0, "processor", "malformed_json", CM_TOPIC_RAW, "a", now - 600 * 1000000LL);
    put_dl(&c, 1, "processor", "malformed_json", CM_TOPIC_RAW, "b", now - 30 * 1000000LL);
    put_dl(&c, 0, "fetcher", "page_limit", CM_TOPIC_RAW, "c", now - 5 * 3600 * 1000000LL);
    put_dl(&c, 1, "persister", "rejected_by_database", CM_TOPIC_NORMALIZED, "d",
           now - 3 * 86400 * 1000000LL);
    put_dl(&c, 0, "gateway", "clock_ahead", CM_TOPIC_RAW, "e", now + 3600 * 1000000LL);
    put_raw(&c, 1, "not a dead letter", 17);
    flush(&c);

    text = run(adm_dlq_list, c.boot, CM_OK, &err);
    ck_assert_ptr_nonnull(strstr(text, "stage\treason\ttotal\tpending\toldest\tnewest\n"));
    /* oldest 10 minutes, newest about 30 seconds (the test's own time passes). */
    line = strstr(text, "processor\tmalformed_json\t2\t2\t10m\t");
    ck_assert_msg(line != NULL, "%s", text);
    newest = strtol(line + strlen("processor\tmalformed_json\t2\t2\t10m\t"), &end, 10);
    ck_assert_int_ge(newest, 30);
    ck_assert_int_lt(newest, 120);
    ck_assert_int_eq(*end, 's');
    ck_assert_msg(strstr(text, "fetcher\tpage_limit\t1\t1\t5h\t5h\n") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "persister\trejected_by_database\t1\t1\t3d\t3d\n") != NULL, "%s",
                  text);
    ck_assert_msg(strstr(text, "gateway\tclock_ahead\t1\t1\t0s\t0s\n") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "# 5 dead letters, 5 pending replay (some records were not "
                               "DeadLetters)\n") != NULL, "%s", text);
    free(text);
    cluster_fini(&c);
}
END_TEST

START_TEST(test_replay_sends_back_replayable)
{
    struct cluster c;
    struct cm_err err;
    char *text;

    cluster_init(&c);
    put_dl(&c, 0, "processor", "malformed_json", CM_TOPIC_RAW, "raw-body", cm_now_us());
    put_dl(&c, 1, "gateway", "spool", CM_TOPIC_RAW, NULL, cm_now_us());     /* no bytes */
    put_dl(&c, 0, "processor", "x", "some.other.topic", "v", cm_now_us()); /* not ours */
    put_raw(&c, 1, "garbage", 7);
    flush(&c);

    text = run(adm_dlq_replay, c.boot, CM_OK, &err);
    ck_assert_msg(strstr(text, "replayed 1 dead letters to their source topics (3 without a "
                               "replayable record)") != NULL, "%s", text);
    free(text);
    ck_assert_uint_eq(count_topic(&c, CM_TOPIC_RAW), 1);

    ck_assert_uint_eq(count_topic(&c, CM_TOPIC_RAW), 1);
    cluster_fini(&c);
}
END_TEST

START_TEST(test_replay_commits_in_chunks)
{
    struct cluster c;
    struct cm_err err;
    char *text;

    cluster_init(&c);
    for (int i = 0; i < 620; i++) {
        put_dl(&c, i % 2, "processor", "malformed_json", CM_TOPIC_RAW, "body", cm_now_us());
    }
    flush(&c);
    text = run(adm_dlq_replay, c.boot, CM_OK, &err);
    ck_assert_msg(strstr(text, "replayed 620 dead letters") != NULL, "%s", text);
    free(text);
    ck_assert_uint_eq(count_topic(&c, CM_TOPIC_RAW), 620);
    cluster_fini(&c);
}
END_TEST

START_TEST(test_replay_refused_producer_id_is_fatal)
{
    struct cluster c;
    struct cm_err err;
    char *text;

    cluster_init(&c);
    put_dl(&c, 0, "processor", "malformed_json", CM_TOPIC_RAW, "raw-body", cm_now_us());
    flush(&c);
    rd_kafka_mock_push_request_errors(c.mc, API_INIT_PRODUCER_ID, 1,
                                      RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    text = run(adm_dlq_replay, c.boot, CM_FATAL, &err);
    ck_assert_msg(strstr(err.msg, "transaction init:") != NULL, "%s", err.msg);
    ck_assert_str_eq(text, "");
    free(text);
    ck_assert_uint_eq(count_topic(&c, CM_TOPIC_RAW), 0);
    cluster_fini(&c);
}
END_TEST

/* Settings from KAFKA_* that librdkafka refuses when the client is created. */
START_TEST(test_refused_kafka_settings_are_invalid)
{
    struct cluster c;
    struct cm_err err;
    char *text;

    cluster_init(&c);
    /* A consumer cannot fetch less than one message: neither list nor replay starts. */
    ck_assert_int_eq(setenv("KAFKA_FETCH_MAX_BYTES", "1000", 1), 0);
    text = run(adm_dlq_list, c.boot, CM_INVALID, &err);
    unsetenv("KAFKA_FETCH_MAX_BYTES");
    ck_assert_msg(strstr(err.msg, "kafka consumer:") != NULL, "%s", err.msg);
    free(text);
    /* The replay producer is idempotent: at most 5 requests in flight. */
    ck_assert_int_eq(setenv("KAFKA_MAX_IN_FLIGHT", "10", 1), 0);
    text = run(adm_dlq_replay, c.boot, CM_INVALID, &err);
    unsetenv("KAFKA_MAX_IN_FLIGHT");
    ck_assert_msg(strstr(err.msg, "kafka producer:") != NULL, "%s", err.msg);
    free(text);
    cluster_fini(&c);
}
END_TEST

/* The DLQ topic does not exist (topics not created yet): retry later, nothing printed. */
START_TEST(test_missing_topic_is_retry)
{
    struct cluster c;
    struct cm_err err;
    char *text;

    cluster_init(&c);
    rd_kafka_mock_topic_set_error(c.mc, CM_TOPIC_DLQ, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    text = run(adm_dlq_list, c.boot, CM_RETRY, &err);
    ck_assert_msg(strstr(err.msg, "metadata unavailable") != NULL, "%s", err.msg);
    ck_assert_str_eq(text, "");
    free(text);
    cluster_fini(&c);
}
END_TEST

/* More kinds than the table holds: the overflow is folded into the last line, none is lost. */
START_TEST(test_list_folds_kinds_beyond_the_table)
{
    struct cluster c;
    struct cm_err err;
    char *text;
    size_t lines = 0;

    cluster_init(&c);
    for (int i = 0; i < 70; i++) {
        char reason[24];
        snprintf(reason, sizeof(reason), "reason_%02d", i);
        put_dl(&c, i % 2, "processor", reason, CM_TOPIC_RAW, "v", cm_now_us());
    }
    flush(&c);
    text = run(adm_dlq_list, c.boot, CM_OK, &err);
    for (const char *p = text; (p = strstr(p, "\nprocessor\t")) != NULL; p++) {
        lines++;
    }
    ck_assert_uint_eq(lines, 64);
    ck_assert_msg(strstr(text, "\t7\t7\t") != NULL, "%s", text); /* 63 and the 6 past 64 */
    ck_assert_msg(strstr(text, "# 70 dead letters, 70 pending replay\n") != NULL, "%s", text);
    free(text);
    cluster_fini(&c);
}
END_TEST

static Suite *adm_dlq_suite(void)
{
    Suite *s = suite_create("adm_dlq");
    TCase *tc = tcase_create("mock_cluster");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_list_groups_and_ages);
    tcase_add_test(tc, test_replay_sends_back_replayable);
    tcase_add_test(tc, test_replay_commits_in_chunks);
    tcase_add_test(tc, test_replay_refused_producer_id_is_fatal);
    tcase_add_test(tc, test_refused_kafka_settings_are_invalid);
    tcase_add_test(tc, test_missing_topic_is_retry);
    tcase_add_test(tc, test_list_folds_kinds_beyond_the_table);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    cm_records_init();
    return check_run(adm_dlq_suite());
}
