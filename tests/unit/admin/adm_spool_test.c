/* adm_spool on a segment built with the gateway's own encoder and then damaged the way a failing
 * disk would: `spool scan` lists the records before and after the damaged range, the record that
 * is not a raw webhook and the torn tail, with no byte of any key or body in its output; `spool
 * replay` sends exactly the chosen records (key and value unchanged) to librdkafka's mock
 * cluster, refuses offsets that do not start a raw webhook record before sending anything, and
 * reports records a broker never acknowledged. */
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adm.h"
#include "cm/buf.h"
#include "cm/kafka.h"
#include "cm/records.h"
#include "gw_spool.h"
#include "../check_run.h"
#include "adm_test_kafka.h"

#define BODY_SECRET "hr-of-user-73"
#define KEY_SECRET "vendor-user-9481"

static char path[64];
static size_t at[5];   /* the offset of each record in the file */
static size_t file_len;

/* A raw webhook record as the gateway spools it: key and encoded value. */
static size_t put_webhook(uint8_t *out, const char *event_id, int64_t received_at_us)
{
    struct cm_raw_webhook raw;
    struct cm_buf b;
    struct cm_err err = { { 0 } };
    size_t n;

    memset(&raw, 0, sizeof(raw));
    raw.event_id = (char *)event_id;
    raw.vendor = (char *)"whoop";
    raw.kind = CM_RAW_WEBHOOK;
    raw.received_at_us = received_at_us;
    raw.method = (char *)"POST";
    raw.path = (char *)"/webhooks/whoop";
    raw.body = (uint8_t *)"{\"v\":\"" BODY_SECRET "\"}";
    raw.body_len = strlen((const char *)raw.body);
    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_raw_webhook_encode(&raw, &b, &err), CM_OK);
    gw_spool_encode(out, KEY_SECRET, strlen(KEY_SECRET), b.data, b.len);
    n = GW_SPOOL_RECORD_OVERHEAD + strlen(KEY_SECRET) + b.len;
    cm_buf_fini(&b);
    return n;
}

/* rec0, rec1, rec2 (its checksum damaged), rec3, a record that is not a raw webhook, a torn
 * tail (half of a record). */
static void setup(void)
{
    uint8_t buf[4096];
    size_t off = 0;
    uint8_t tail[512];
    FILE *fp;

    cm_records_init();
    snprintf(path, sizeof(path), "/tmp/adm-spool-test-%ld.spool", (long)getpid());
    at[0] = off;
    off += put_webhook(buf + off, "00000000000000000000000000000a00", 1795000000000000);
    at[1] = off;
    off += put_webhook(buf + off, "00000000000000000000000000000a01", 1795000001000000);
    at[2] = off;
    off += put_webhook(buf + off, "00000000000000000000000000000a02", 1795000002000000);
    buf[at[2] + 9] ^= 0x40; /* a bit of rec2's CRC flips on disk */
    at[3] = off;
    off += put_webhook(buf + off, "00000000000000000000000000000a03", 1795000003000000);
    at[4] = off;
    gw_spool_encode(buf + off, "k", 1, "not avro", 8);
    off += GW_SPOOL_RECORD_OVERHEAD + 1 + 8;
    size_t n = put_webhook(tail, "00000000000000000000000000000a05", 1795000005000000);
    memcpy(buf + off, tail, n / 2);
    off += n / 2;
    file_len = off;
    fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(buf, 1, off, fp), off);
    ck_assert_int_eq(fclose(fp), 0);
}

static void teardown(void)
{
    unlink(path);
}

static char *scan_output(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    struct cm_err err = { { 0 } };

    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(adm_spool_scan(path, out, &err), CM_OK);
    fclose(out);
    return text;
}

START_TEST(test_scan_lists_both_sides_of_the_damage)
{
    char *text = scan_output();
    char want[256];

    snprintf(want, sizeof(want),
             "record offset=%zu bytes=%zu after_damage=no raw_webhook=yes"
             " event_id=00000000000000000000000000000a00 vendor=whoop kind=webhook"
             " received_at=2026-11-18T11:06:40.000Z body_bytes=%zu\n",
             at[0], at[1] - at[0], strlen("{\"v\":\"" BODY_SECRET "\"}"));
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    snprintf(want, sizeof(want), "record offset=%zu bytes=%zu after_damage=no raw_webhook=yes"
             " event_id=00000000000000000000000000000a01", at[1], at[2] - at[1]);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    snprintf(want, sizeof(want), "unreadable offset=%zu bytes=%zu\n", at[2], at[3] - at[2]);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    snprintf(want, sizeof(want), "record offset=%zu bytes=%zu after_damage=yes raw_webhook=yes"
             " event_id=00000000000000000000000000000a03", at[3], at[4] - at[3]);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    snprintf(want, sizeof(want), "record offset=%zu bytes=%d after_damage=yes raw_webhook=no\n",
             at[4], GW_SPOOL_RECORD_OVERHEAD + 1 + 8);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    snprintf(want, sizeof(want), "unreadable offset=%zu bytes=%zu (to the end of the file)\n",
             at[4] + GW_SPOOL_RECORD_OVERHEAD + 9, file_len - at[4] - GW_SPOOL_RECORD_OVERHEAD - 9);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    snprintf(want, sizeof(want),
             "spool scan: %zu bytes, 4 records (3 decode as raw webhooks, 2 after a damaged"
             " range), 2 unreadable ranges (%zu bytes)\n",
             file_len, at[3] - at[2] + file_len - at[4] - GW_SPOOL_RECORD_OVERHEAD - 9);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    /* PHI: neither the body nor the key (a vendor user id) is ever printed */
    ck_assert_ptr_null(strstr(text, BODY_SECRET));
    ck_assert_ptr_null(strstr(text, KEY_SECRET));
    free(text);
}
END_TEST

START_TEST(test_scan_refuses_what_is_not_a_file)
{
    struct cm_err err = { { 0 } };

    ck_assert_int_eq(adm_spool_scan("/nonexistent/x.spool", stdout, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_int_eq(adm_spool_scan("/tmp", stdout, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
}
END_TEST

struct cluster {
    rd_kafka_t *owner;
    rd_kafka_mock_cluster_t *mc;
    const char *boot;
};

static void cluster_init(struct cluster *c)
{
    adm_test_mock_new(&c->owner, &c->mc, &c->boot);
    ck_assert_int_eq(rd_kafka_mock_topic_create(c->mc, CM_TOPIC_RAW, 1, 1), 0);
}

static void cluster_fini(struct cluster *c)
{
    adm_test_mock_free(c->owner, c->mc);
}

/* Read up to `cap` records of the raw topic; each value's event id into ids. */
static size_t read_raw(const char *boot, char ids[][33], size_t cap)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(1);
    char errstr[256];
    rd_kafka_t *c;
    size_t n = 0;

    ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", boot, errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    ck_assert_int_eq(rd_kafka_conf_set(conf, "group.id", "adm-spool-test", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(c);
    rd_kafka_topic_partition_list_add(assign, CM_TOPIC_RAW, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(c, assign), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(assign);
    for (int i = 0; i < 30 && n < cap; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m != NULL && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            struct cm_raw_webhook raw;
            struct cm_err err = { { 0 } };

            ck_assert_uint_eq(m->key_len, strlen(KEY_SECRET));
            ck_assert_int_eq(memcmp(m->key, KEY_SECRET, m->key_len), 0);
            memset(&raw, 0, sizeof(raw));
            ck_assert_int_eq(cm_raw_webhook_decode(m->payload, m->len, &raw, &err), CM_OK);
            ck_assert_uint_eq(raw.body_len, strlen("{\"v\":\"" BODY_SECRET "\"}"));
            memcpy(ids[n], raw.event_id, 33);
            cm_raw_webhook_fini(&raw);
            n++;
        }
        if (m != NULL) {
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_destroy(c);
    return n;
}

START_TEST(test_replay_sends_the_chosen_records)
{
    struct cluster c;
    struct cm_err err = { { 0 } };
    size_t chosen[2] = { at[3], at[1] };
    char ids[4][33];
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    cluster_init(&c);
    ck_assert_int_eq(adm_spool_replay(c.boot, path, chosen, 2, out, &err), CM_OK);
    fclose(out);
    ck_assert_str_eq(text, "spool replay: 2 records delivered to " CM_TOPIC_RAW "\n");
    free(text);
    ck_assert_uint_eq(read_raw(c.boot, ids, 4), 2);
    ck_assert_str_eq(ids[0], "00000000000000000000000000000a03");
    ck_assert_str_eq(ids[1], "00000000000000000000000000000a01");
    cluster_fini(&c);
}
END_TEST

/* Offsets that do not start a raw webhook record are refused before anything is sent. */
START_TEST(test_replay_refuses_bad_offsets)
{
    struct cluster c;
    struct cm_err err = { { 0 } };
    char ids[1][33];
    size_t inside[2] = { at[0], at[2] };   /* the damaged record */
    size_t junk[1] = { at[4] };            /* intact, not a raw webhook */
    size_t past[1] = { 1u << 20 };

    cluster_init(&c);
    ck_assert_int_eq(adm_spool_replay(c.boot, path, inside, 2, stdout, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "does not start an intact record"));
    ck_assert_int_eq(adm_spool_replay(c.boot, path, junk, 1, stdout, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a raw webhook"));
    ck_assert_int_eq(adm_spool_replay(c.boot, path, past, 1, stdout, &err), CM_INVALID);
    ck_assert_int_eq(adm_spool_replay(c.boot, "/nonexistent/x.spool", junk, 1, stdout, &err),
                     CM_INVALID);
    ck_assert_uint_eq(read_raw(c.boot, ids, 1), 0);
    cluster_fini(&c);
}
END_TEST

/* No broker answers: the record times out (KAFKA_MESSAGE_TIMEOUT_MS passes through) and the
 * replay says so instead of claiming delivery. A setting librdkafka refuses is a config error. */
START_TEST(test_replay_reports_undelivered)
{
    struct cm_err err = { { 0 } };
    size_t one[1] = { at[0] };

    ck_assert_int_eq(setenv("KAFKA_MESSAGE_TIMEOUT_MS", "1500", 1), 0);
    ck_assert_int_eq(adm_spool_replay("127.0.0.1:1", path, one, 1, stdout, &err), CM_RETRY);
    unsetenv("KAFKA_MESSAGE_TIMEOUT_MS");
    ck_assert_ptr_nonnull(strstr(err.msg, "1 of 1 records not delivered (1 failed"));
    ck_assert_int_eq(setenv("KAFKA_ACKS", "sometimes", 1), 0);
    ck_assert_int_eq(adm_spool_replay("127.0.0.1:1", path, one, 1, stdout, &err), CM_INVALID);
    unsetenv("KAFKA_ACKS");
}
END_TEST

static Suite *adm_spool_suite(void)
{
    Suite *s = suite_create("adm_spool");
    TCase *scan = tcase_create("scan");
    TCase *replay = tcase_create("replay");
    TCase *all[] = { scan, replay };

    check_add_cases(s, all, sizeof(all) / sizeof(all[0]), setup, teardown, 60);
    tcase_add_test(scan, test_scan_lists_both_sides_of_the_damage);
    tcase_add_test(scan, test_scan_refuses_what_is_not_a_file);
    tcase_add_test(replay, test_replay_sends_the_chosen_records);
    tcase_add_test(replay, test_replay_refuses_bad_offsets);
    tcase_add_test(replay, test_replay_reports_undelivered);
    return s;
}

int main(void)
{
    return check_run(adm_spool_suite());
}
