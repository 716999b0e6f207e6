/* pers_loop's batch bookkeeping: offsets to commit per partition (highest consumed + 1), ownership
 * of added events, and dropping revoked partitions. */
#include <stdlib.h>
#include <string.h>

#include "pers_loop.h"
#include "persister_suites.h"

#define TOPIC "biometric.normalized.v1"

static void add_event(struct pers_batch *b, int32_t partition, int64_t offset)
{
    struct cm_biometric_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.event_id = cm_xstrdup("e");
    ev.user_id = cm_xstrdup("u");
    pers_batch_add(b, &ev, TOPIC, partition, offset, "k", 1, "\xc3\x01", 2, 1000);
    ck_assert_ptr_null(ev.event_id); /* ownership moved */
    ck_assert_ptr_null(ev.user_id);
}

static int64_t offset_of(const rd_kafka_topic_partition_list_t *l, const char *topic,
                         int32_t partition)
{
    for (int i = 0; i < l->cnt; i++) {
        if (l->elems[i].partition == partition && strcmp(l->elems[i].topic, topic) == 0) {
            return l->elems[i].offset;
        }
    }
    return -1000;
}

START_TEST(test_batch_empty_has_no_offsets)
{
    struct pers_batch b;

    pers_batch_init(&b);
    ck_assert(pers_batch_empty(&b));
    ck_assert_ptr_null(pers_batch_offsets(&b));
    pers_batch_fini(&b);
}
END_TEST

START_TEST(test_batch_offsets_max_plus_one)
{
    struct pers_batch b;
    rd_kafka_topic_partition_list_t *l;

    pers_batch_init(&b);
    add_event(&b, 0, 5);
    add_event(&b, 0, 7);
    add_event(&b, 1, 3);
    add_event(&b, 0, 6); /* out of order: the max still wins */
    pers_batch_note(&b, TOPIC, 2, 41, 2000); /* dead-lettered: offset only */
    pers_batch_note(&b, "other.topic", 0, 9, 2000);
    ck_assert_uint_eq(b.n_rows, 4);
    ck_assert_uint_eq(b.n_msgs, 6);
    ck_assert_int_eq(b.first_us, 1000);
    l = pers_batch_offsets(&b);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(l->cnt, 4);
    ck_assert_int_eq(offset_of(l, TOPIC, 0), 8);
    ck_assert_int_eq(offset_of(l, TOPIC, 1), 4);
    ck_assert_int_eq(offset_of(l, TOPIC, 2), 42);
    ck_assert_int_eq(offset_of(l, "other.topic", 0), 10);
    rd_kafka_topic_partition_list_destroy(l);
    pers_batch_fini(&b);
}
END_TEST

START_TEST(test_batch_keeps_source_bytes)
{
    struct pers_batch b;

    pers_batch_init(&b);
    add_event(&b, 3, 11);
    ck_assert_int_eq(b.rows[0].partition, 3);
    ck_assert_int_eq(b.rows[0].offset, 11);
    ck_assert_str_eq(b.rows[0].topic, TOPIC);
    ck_assert_uint_eq(b.rows[0].key_len, 1);
    ck_assert_mem_eq(b.rows[0].key, "k", 1);
    ck_assert_uint_eq(b.rows[0].value_len, 2);
    ck_assert_mem_eq(b.rows[0].value, "\xc3\x01", 2);
    ck_assert(!b.rows[0].done);
    pers_batch_fini(&b);
}
END_TEST

START_TEST(test_batch_reset_starts_over)
{
    struct pers_batch b;
    rd_kafka_topic_partition_list_t *l;

    pers_batch_init(&b);
    for (int i = 0; i < 200; i++) {
        add_event(&b, i % 3, i);
    }
    pers_batch_reset(&b);
    ck_assert(pers_batch_empty(&b));
    ck_assert_uint_eq(b.n_rows, 0);
    ck_assert_ptr_null(pers_batch_offsets(&b));
    add_event(&b, 1, 500);
    ck_assert_int_eq(b.first_us, 1000);
    l = pers_batch_offsets(&b);
    ck_assert_int_eq(l->cnt, 1);
    ck_assert_int_eq(offset_of(l, TOPIC, 1), 501);
    rd_kafka_topic_partition_list_destroy(l);
    pers_batch_fini(&b);
}
END_TEST

START_TEST(test_batch_drop_revoked_partition)
{
    struct pers_batch b;
    rd_kafka_topic_partition_list_t *revoked = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_t *l;

    pers_batch_init(&b);
    add_event(&b, 0, 1);
    add_event(&b, 1, 1);
    add_event(&b, 0, 2);
    pers_batch_note(&b, TOPIC, 0, 3, 1000); /* a dead-lettered message of the revoked partition */
    add_event(&b, 1, 2);
    rd_kafka_topic_partition_list_add(revoked, TOPIC, 0);
    ck_assert_uint_eq(pers_batch_drop(&b, revoked), 3);
    ck_assert_uint_eq(b.n_msgs, 2);
    ck_assert_uint_eq(b.n_rows, 2);
    for (size_t i = 0; i < b.n_rows; i++) {
        ck_assert_int_eq(b.rows[i].partition, 1);
    }
    l = pers_batch_offsets(&b);
    ck_assert_int_eq(l->cnt, 1);
    ck_assert_int_eq(offset_of(l, TOPIC, 1), 3);
    rd_kafka_topic_partition_list_destroy(l);

    /* Revoking the rest (eager rebalance) empties the batch. */
    rd_kafka_topic_partition_list_add(revoked, TOPIC, 1);
    ck_assert_uint_eq(pers_batch_drop(&b, revoked), 2);
    ck_assert(pers_batch_empty(&b));
    ck_assert_ptr_null(pers_batch_offsets(&b));
    rd_kafka_topic_partition_list_destroy(revoked);
    pers_batch_fini(&b);
}
END_TEST

START_TEST(test_batch_drop_other_topic_untouched)
{
    struct pers_batch b;
    rd_kafka_topic_partition_list_t *revoked = rd_kafka_topic_partition_list_new(1);

    pers_batch_init(&b);
    add_event(&b, 0, 1);
    rd_kafka_topic_partition_list_add(revoked, "other.topic", 0);
    ck_assert_uint_eq(pers_batch_drop(&b, revoked), 0);
    ck_assert_uint_eq(b.n_rows, 1);
    ck_assert_uint_eq(b.n_msgs, 1);
    rd_kafka_topic_partition_list_destroy(revoked);
    pers_batch_fini(&b);
    pers_batch_fini(NULL);
}
END_TEST

/* Kafka settings from KAFKA_* that librdkafka refuses when it creates the client: the loop is
 * not created and the error names the client (no broker is contacted). */
static void expect_new_fails(const char *var, const char *value, const char *client)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};

    memset(&cfg, 0, sizeof(cfg));
    cfg.brokers = (char *)"127.0.0.1:1";
    cfg.database_url = (char *)"host=127.0.0.1 port=1";
    cfg.group_id = (char *)"pers-unit";
    cfg.batch_max = 10;
    cfg.batch_ms = 10;
    ck_assert_int_eq(setenv(var, value, 1), 0);
    ck_assert_ptr_null(pers_loop_new(&cfg, &err));
    unsetenv(var);
    ck_assert_msg(strstr(err.msg, client) != NULL, "%s", err.msg);
}

START_TEST(test_loop_new_rejects_bad_kafka_settings)
{
    /* The DLQ producer is idempotent: acks must be all. */
    expect_new_fails("KAFKA_ACKS", "1", "kafka producer:");
    /* A consumer cannot fetch less than one message. */
    expect_new_fails("KAFKA_FETCH_MAX_BYTES", "1000", "kafka consumer:");
    /* Not a librdkafka property at all. */
    expect_new_fails("KAFKA_NO_SUCH_PROPERTY", "1", "KAFKA_NO_SUCH_PROPERTY");
    pers_loop_free(NULL); /* NULL-safe */
}
END_TEST

Suite *pers_loop_suite(void)
{
    Suite *s = suite_create("pers_loop");
    TCase *off = tcase_create("offsets");
    TCase *reb = tcase_create("rebalance");

    tcase_add_test(off, test_batch_empty_has_no_offsets);
    tcase_add_test(off, test_batch_offsets_max_plus_one);
    tcase_add_test(off, test_batch_keeps_source_bytes);
    tcase_add_test(off, test_batch_reset_starts_over);
    tcase_add_test(reb, test_batch_drop_revoked_partition);
    tcase_add_test(reb, test_batch_drop_other_topic_untouched);
    tcase_add_test(off, test_loop_new_rejects_bad_kafka_settings);
    suite_add_tcase(s, off);
    suite_add_tcase(s, reb);
    return s;
}
