/* The fetcher thread end to end under fault: librdkafka's mock cluster as Kafka, the fake vendor
 * (per-user answers: 403, 404, 418, 503, Withings' status codes, slow, dropped, garbage, a WHOOP
 * sleep that is not scored), a private PostgreSQL schema and Redis. Each job's outcome is read
 * from the topics: raw records, retry-topic jobs (attempt, not_before) and dead letters (reason,
 * detail). Also: the second pass after a 401 (refresh ok, refused, failing), a rate block, a
 * database that cannot answer, failed deliveries (the round is replayed, nothing lost), and the
 * start-up errors of proc_fetcher_new(). Needs AUREN_TEST_DATABASE_URL (and AUREN_TEST_REDIS_URL
 * or a private redis-server, proc_fetch_fx.h). */
#include <check.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/buf.h"
#include "cm/kafka.h"
#include "cm/log.h"
#include "cm/metrics.h"
#include "cm/records.h"
#include "proc_fetch.h"
#include "proc_fetch_fx.h"
#include "proc_redis.h"

#define DEADLINE_MS 60000
#define MAX_RECS 4096
#define KAFKA_API_PRODUCE 0 /* ApiKey of Produce in the Kafka protocol */

static bool enabled;
static struct proc_cfg cfg;
static rd_kafka_t *mock_owner, *prod, *tail;
static rd_kafka_mock_cluster_t *mc;
static char brokers[256];
static int port;
static const char *db_url;

struct rec {
    char topic[48];
    char key[160];
    uint8_t *value;
    size_t len;
};
static struct rec recs[MAX_RECS];
static size_t n_recs;

static void kafka_setup(void)
{
    char errstr[256];
    const char *topics[] = { CM_TOPIC_RAW, CM_TOPIC_FETCH, CM_TOPIC_FETCH_RETRY, CM_TOPIC_DLQ };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(3);

    mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(mock_owner);
    mc = rd_kafka_mock_cluster_new(mock_owner, 1);
    ck_assert_ptr_nonnull(mc);
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(rd_kafka_mock_topic_create(mc, topics[i], 1, 1),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    snprintf(brokers, sizeof(brokers), "%s", rd_kafka_mock_cluster_bootstraps(mc));
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr));
    prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(prod);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "fetcher-test-tail", errstr, sizeof(errstr));
    tail = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(tail);
    rd_kafka_poll_set_consumer(tail);
    rd_kafka_topic_partition_list_add(l, CM_TOPIC_RAW, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_topic_partition_list_add(l, CM_TOPIC_FETCH_RETRY, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_topic_partition_list_add(l, CM_TOPIC_DLQ, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(tail, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
}

static void setup(void)
{
    cm_records_init();
    if (!enabled) {
        return;
    }
    port = proc_fx_fake_start();
    db_url = proc_fx_db_setup();
    proc_fx_cfg(&cfg, port, db_url);
    kafka_setup();
    cfg.kafka_brokers = brokers;
    n_recs = 0;
}

static void teardown(void)
{
    if (!enabled) {
        return;
    }
    for (size_t i = 0; i < n_recs; i++) {
        free(recs[i].value);
    }
    n_recs = 0;
    rd_kafka_consumer_close(tail);
    rd_kafka_destroy(tail);
    rd_kafka_flush(prod, 5000);
    rd_kafka_destroy(prod);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mock_owner);
    proc_fx_db_teardown();
    proc_fx_fake_stop();
}

/* ---- jobs in, records out ---- */

static void produce_raw(const char *key, const void *value, size_t len)
{
    ck_assert_int_eq(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(CM_TOPIC_FETCH),
                                       RD_KAFKA_V_KEY(key, strlen(key)),
                                       RD_KAFKA_V_VALUE((void *)value, len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    ck_assert_int_eq(rd_kafka_flush(prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void job(const char *vendor, const char *vuid, const char *resource, const char *object_id,
                const char *event_type, const char *url)
{
    struct cm_fetch_job j;
    struct cm_buf b;
    struct cm_err err = { { 0 } };
    char id[33], raw[33], key[160];

    memset(&j, 0, sizeof(j));
    cm_random_id(id);
    cm_random_id(raw);
    j.job_id = id;
    j.vendor = (char *)vendor;
    j.vendor_user_id = (char *)vuid;
    j.resource = (char *)resource;
    j.object_id = (char *)object_id;
    j.event_type = (char *)event_type;
    j.url = (char *)url;
    j.raw_event_id = raw;
    j.created_at_us = j.not_before_us = cm_now_us();
    cm_buf_init(&b, 0);
    ck_assert_int_eq(cm_fetch_job_encode(&j, &b, &err), CM_OK);
    snprintf(key, sizeof(key), "%s:%s", vendor, vuid);
    produce_raw(key, b.data, b.len);
    cm_buf_fini(&b);
}

static void pump(int ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(tail, ms);

    while (m != NULL) {
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && n_recs < MAX_RECS) {
            struct rec *r = &recs[n_recs++];
            cm_strlcpy(r->topic, rd_kafka_topic_name(m->rkt), sizeof(r->topic));
            snprintf(r->key, sizeof(r->key), "%.*s", (int)m->key_len, (const char *)m->key);
            r->value = cm_xmalloc(m->len + 1);
            memcpy(r->value, m->payload, m->len);
            r->len = m->len;
        }
        rd_kafka_message_destroy(m);
        m = rd_kafka_consumer_poll(tail, 0);
    }
}

/* Wait for the dead letter of key (stage fetcher) and check its reason and detail (unless NULL). */
static void wait_dlq(const char *key, const char *reason, const char *detail)
{
    int64_t end = cm_mono_us() + DEADLINE_MS * INT64_C(1000);

    for (size_t seen = 0;; pump(100)) {
        for (; seen < n_recs; seen++) {
            struct cm_dead_letter d;
            struct cm_err err = { { 0 } };
            if (strcmp(recs[seen].topic, CM_TOPIC_DLQ) != 0 || strcmp(recs[seen].key, key) != 0) {
                continue;
            }
            ck_assert_int_eq(cm_dead_letter_decode(recs[seen].value, recs[seen].len, &d, &err),
                             CM_OK);
            ck_assert_str_eq(d.stage, "fetcher");
            ck_assert_msg(strcmp(d.reason, reason) == 0, "%s: dead letter %s (%s), want %s", key,
                          d.reason, d.detail, reason);
            ck_assert_msg(detail == NULL || strcmp(d.detail, detail) == 0, "%s: detail %s, want %s",
                          key, d.detail, detail != NULL ? detail : "-");
            cm_dead_letter_fini(&d);
            return;
        }
        ck_assert_msg(cm_mono_us() < end, "%s: no dead letter %s", key, reason);
    }
}

/* How many records of key a topic holds now (after a pump). */
static size_t count(const char *topic, const char *key)
{
    size_t n = 0;

    pump(100);
    for (size_t i = 0; i < n_recs; i++) {
        n += strcmp(recs[i].topic, topic) == 0 && strcmp(recs[i].key, key) == 0;
    }
    return n;
}

/* Wait for the n-th retry-topic job of key; returns it decoded (caller finis). */
static void wait_retry(const char *key, size_t nth, struct cm_fetch_job *j)
{
    int64_t end = cm_mono_us() + DEADLINE_MS * INT64_C(1000);
    struct cm_err err = { { 0 } };

    for (;;) {
        size_t k = 0;
        pump(100);
        for (size_t i = 0; i < n_recs; i++) {
            if (strcmp(recs[i].topic, CM_TOPIC_FETCH_RETRY) == 0 &&
                strcmp(recs[i].key, key) == 0 && ++k == nth) {
                ck_assert_int_eq(cm_fetch_job_decode(recs[i].value, recs[i].len, j, &err), CM_OK);
                return;
            }
        }
        ck_assert_msg(cm_mono_us() < end, "%s: no retry job %zu", key, nth);
    }
}

/* Wait for n raw records of key; the record type of the last. */
static void wait_raw(const char *key, size_t n, char *record_type, size_t rtsz)
{
    int64_t end = cm_mono_us() + DEADLINE_MS * INT64_C(1000);

    while (count(CM_TOPIC_RAW, key) < n) {
        ck_assert_msg(cm_mono_us() < end, "%s: %zu of %zu raw records", key,
                      count(CM_TOPIC_RAW, key), n);
    }
    for (size_t i = n_recs; i-- > 0;) {
        if (strcmp(recs[i].topic, CM_TOPIC_RAW) == 0 && strcmp(recs[i].key, key) == 0) {
            struct cm_raw_webhook r;
            struct cm_err err = { { 0 } };
            ck_assert_int_eq(cm_raw_webhook_decode(recs[i].value, recs[i].len, &r, &err), CM_OK);
            ck_assert_int_eq(r.kind, CM_RAW_API_RECORD);
            cm_strlcpy(record_type, r.record_type, rtsz);
            cm_raw_webhook_fini(&r);
            return;
        }
    }
}

static double metric(const char *needle)
{
    struct cm_buf b;
    const char *p;
    double v = 0;

    cm_buf_init(&b, 0);
    cm_metrics_render(&b);
    cm_buf_terminate(&b);
    p = strstr((const char *)b.data, needle);
    if (p != NULL) {
        v = strtod(p + strlen(needle), NULL);
    }
    cm_buf_fini(&b);
    return v;
}

/* A connected user of vendor with tokens granted at the fake; out = "<vendor>:<vuid>". */
static const char *user(const char *vendor, const char *tag, char vuid[48], char key[96])
{
    char id[33], access[48], refresh[48];

    cm_random_id(id);
    snprintf(vuid, 48, "%s-%.10s", tag, id);
    snprintf(access, sizeof(access), "acc-%s", vuid);
    snprintf(refresh, sizeof(refresh), "ref-%s", vuid);
    proc_fx_add_conn(FX_KEYS, vendor, vuid, "user-f", access, refresh, 3600);
    proc_fx_grant(vendor, vuid, access, refresh, 3600);
    snprintf(key, 96, "%s:%s", vendor, vuid);
    return vuid;
}

static void fault(const char *vendor, const char *vuid, const char *rest)
{
    char json[512];

    snprintf(json, sizeof(json), "{\"vendor\":\"%s\",\"vendor_user_id\":\"%s\",%s}", vendor,
             vuid, rest);
    proc_fx_control("fault", json);
}

/* Vendor answers that are final (dead letters) or cost an attempt until the last one. */
START_TEST(test_vendor_answers_under_fault)
{
    struct cm_err err = { { 0 } };
    struct proc_fetcher *f;
    struct cm_fetch_job rj;
    char v[16][48], k[16][96], rt[64];

    if (!enabled) {
        return;
    }
    cfg.fetch_http_timeout_ms = 2000;
    cfg.refresh_lock_ms = 900;
    f = proc_fetcher_new(&cfg, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(proc_fetcher_start(f, &err), CM_OK);

    fault("oura", user("oura", "403", v[0], k[0]), "\"mode\":\"status\",\"status\":403");
    job("oura", v[0], "daily_activity", "o1", "create", NULL);
    fault("oura", user("oura", "404", v[10], k[10]), "\"mode\":\"status\",\"status\":404");
    job("oura", v[10], "daily_activity", "o2", "create", NULL);
    fault("strava", user("strava", "418", v[2], k[2]), "\"mode\":\"status\",\"status\":418");
    job("strava", v[2], "activity", "1360128428", "create", NULL);
    fault("fitbit", user("fitbit", "503", v[3], k[3]), "\"mode\":\"status\",\"status\":503");
    job("fitbit", v[3], "sleep", "2026-11-20", NULL, NULL);
    fault("strava", user("strava", "slow", v[4], k[4]), "\"mode\":\"slow\",\"seconds\":4");
    job("strava", v[4], "activity", "1360128428", "create", NULL);
    fault("oura", user("oura", "drop", v[5], k[5]), "\"mode\":\"close\"");
    job("oura", v[5], "workout", "o3", "create", NULL);
    fault("withings", user("withings", "601", v[6], k[6]), "\"mode\":\"status\",\"status\":601");
    job("withings", v[6], "weight", NULL, NULL, NULL);
    fault("withings", user("withings", "342", v[7], k[7]), "\"mode\":\"status\",\"status\":342");
    job("withings", v[7], "sleep", NULL, NULL, NULL);
    fault("whoop", user("whoop", "unscored", v[8], k[8]),
          "\"mode\":\"body\",\"body\":\"{\\\"id\\\":\\\"s1\\\"}\"");
    job("whoop", v[8], "recovery", "s1", "recovery.updated", NULL);
    fault("google_health", user("google_health", "garbage", v[9], k[9]),
          "\"mode\":\"body\",\"body\":\"{\\\"dataPoints\\\":[\"");
    job("google_health", v[9], "steps", NULL, "UPSERT", NULL);
    user("whoop", "recovery", v[12], k[12]);
    job("whoop", v[12], "recovery", "s2", "recovery.updated", NULL);
    fault("strava", user("strava", "429", v[13], k[13]),
          "\"mode\":\"status\",\"status\":429,\"count\":1,\"headers\":{\"Retry-After\":"
          "\"1    (seconds; a value longer than the fetcher keeps)\"}");
    job("strava", v[13], "activity", "1360128428", "create", NULL);
    fault("withings", user("withings", "401", v[14], k[14]), "\"mode\":\"status\",\"status\":401");
    job("withings", v[14], "temperature", NULL, NULL, NULL);
    fault("withings", user("withings", "nostatus", v[15], k[15]),
          "\"mode\":\"body\",\"body\":\"{\\\"body\\\":{\\\"measuregrps\\\":[]}}\"");
    job("withings", v[15], "weight", NULL, NULL, NULL);
    user("polar", "sleep", v[11], k[11]);
    job("polar", v[11], "sleep", "2026-11-20", NULL,
        "https://www.polaraccesslink.com/v3/users/sleep/2026-11-20");

    wait_dlq(k[0], "forbidden", "http_403");
    wait_dlq(k[10], "not_found", "http_404");
    wait_dlq(k[2], "vendor_rejected", "http_418");
    wait_dlq(k[7], "vendor_rejected", "http_400");
    wait_dlq(k[8], "not_scored", "missing_field: cycle_id");
    wait_dlq(k[9], "vendor_rejected", "malformed_json");
    /* the sleep, then its cycle's recovery; a Polar night and its nightly recharge */
    wait_raw(k[12], 1, rt, sizeof(rt));
    ck_assert_str_eq(rt, "whoop.recovery");
    wait_raw(k[11], 2, rt, sizeof(rt));
    ck_assert_str_eq(rt, "polar.nightly_recharge");
    /* Withings: its 401 in a 200 answer is a 401 (refreshed once, then an attempt lost); an
     * answer without a status is data */
    wait_dlq(k[14], "fetch_failed", "attempts=3 last=http_401");
    ck_assert_int_ge(proc_fx_refreshes("withings", v[14]), 1);
    wait_raw(k[15], 1, rt, sizeof(rt));
    ck_assert_str_eq(rt, "withings.weight");
    /* a 429 (its Retry-After longer than the fetcher keeps, still read): retried, then fetched */
    wait_raw(k[13], 1, rt, sizeof(rt));
    ck_assert_str_eq(rt, "strava.activity");
    wait_retry(k[13], 1, &rj);
    ck_assert_int_eq(rj.attempt, 1);
    ck_assert_int_ge(rj.not_before_us, rj.created_at_us + 900000);
    cm_fetch_job_fini(&rj);

    /* retried with attempt + 1 and a later not_before, then dead-lettered with the last cause */
    wait_retry(k[3], 1, &rj);
    ck_assert_int_eq(rj.attempt, 1);
    ck_assert_int_gt(rj.not_before_us, rj.created_at_us);
    cm_fetch_job_fini(&rj);
    wait_dlq(k[3], "fetch_failed", "attempts=3 last=http_503");
    ck_assert_uint_eq(count(CM_TOPIC_FETCH_RETRY, k[3]), 2);
    wait_dlq(k[4], "fetch_failed", "attempts=3 last=timeout");
    wait_dlq(k[5], "fetch_failed", "attempts=3 last=transport");
    wait_dlq(k[6], "fetch_failed", "attempts=3 last=http_429");
    ck_assert_uint_eq(count(CM_TOPIC_RAW, k[3]) + count(CM_TOPIC_RAW, k[4]), 0);
    ck_assert_double_ge(metric("auren_fetcher_requests_total{vendor=\"strava\",status=\"error\"} "),
                        3);
    proc_fetcher_free(f);
}
END_TEST

/* A 401 asks for one forced refresh and a second pass: the new token is used; a refused
 * refresh token dead-letters re-consent; a token endpoint in trouble costs an attempt; a 401
 * after a successful refresh too. Jobs that need nothing, cannot be planned or cannot be read. */
START_TEST(test_second_pass_and_triage)
{
    struct cm_err err = { { 0 } };
    struct proc_fetcher *f;
    char v[10][48], k[10][96], rt[64], sql[640];
    redisContext *rc;
    struct proc_redis_url ru;
    struct cm_fetch_job rj;

    if (!enabled) {
        return;
    }
    f = proc_fetcher_new(&cfg, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(proc_fetcher_start(f, &err), CM_OK);

    /* one 401 (a token the vendor dropped): refreshed, and the second pass succeeds */
    user("whoop", "stale", v[0], k[0]);
    fault("whoop", v[0], "\"mode\":\"status\",\"status\":401,\"count\":1");
    job("whoop", v[0], "sleep", "s1", "sleep.updated", NULL);
    /* 401 and the refresh token unknown at the vendor */
    proc_fx_add_conn(FX_KEYS, "oura", "ig-1", "user-f", "acc-x", "ref-x", 3600);
    proc_fx_grant("oura", "ig-1", "acc-x", NULL, 3600);
    fault("oura", "ig-1", "\"mode\":\"status\",\"status\":401");
    job("oura", "ig-1", "daily_activity", "o1", "create", NULL);
    /* 401, and the token endpoint answers 500 */
    user("strava", "te500", v[2], k[2]);
    fault("strava", v[2], "\"mode\":\"status\",\"status\":401");
    proc_fx_control("token_fault", "{\"vendor\":\"strava\",\"mode\":\"status\",\"status\":500}");
    job("strava", v[2], "activity", "1360128428", "create", NULL);
    /* 401 even with the refreshed token */
    user("fitbit", "401", v[3], k[3]);
    fault("fitbit", v[3], "\"mode\":\"status\",\"status\":401");
    job("fitbit", v[3], "body", "2026-11-20", NULL, NULL);
    /* triage: no fetcher, no plan, nothing to fetch, unreadable tokens, re-consent */
    job("terra", "t1", "activity", "x", NULL, NULL);
    job("whoop", "no-object", "sleep", NULL, "sleep.updated", NULL);
    user("fitbit", "foods", v[4], k[4]);
    job("fitbit", v[4], "foods", "2026-11-20", NULL, NULL);
    proc_fx_add_conn(FX_OTHER_KEYS, "oura", "sealed-elsewhere", "user-f", "a", "r", 3600);
    job("oura", "sealed-elsewhere", "daily_activity", "o1", "create", NULL);
    user("oura", "rc", v[5], k[5]);
    snprintf(sql, sizeof(sql), "UPDATE connections SET status = 'reconsent_required'"
             " WHERE vendor_user_id = '%s'", v[5]);
    proc_fx_db_exec(sql);
    job("oura", v[5], "daily_activity", "o1", "create", NULL);
    produce_raw("oura:garbage", "not avro", 8);
    /* an expired token whose refresh cannot be stored (the UPDATE fails) */
    user("google_health", "store", v[6], k[6]);
    snprintf(sql, sizeof(sql), "UPDATE connections SET expires_at = now() - interval '1 minute'"
             " WHERE vendor_user_id = '%s';"
             "CREATE FUNCTION fail_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "RAISE EXCEPTION 'disk full'; END $$;"
             "CREATE TRIGGER fail_row BEFORE UPDATE ON connections FOR EACH ROW "
             "WHEN (OLD.vendor_user_id = '%s') EXECUTE FUNCTION fail_row()", v[6], v[6]);
    proc_fx_db_exec(sql);
    job("google_health", v[6], "steps", NULL, "UPSERT", NULL);
    /* rate-blocked user: deferred, attempt unchanged */
    user("fitbit", "blocked", v[7], k[7]);
    ck_assert_int_eq(proc_redis_url_parse(cfg.redis_url, &ru, &err), CM_OK);
    rc = redisConnect(ru.host, ru.port);
    ck_assert(rc != NULL && rc->err == 0);
    freeReplyObject(redisCommand(rc, "SELECT %d", ru.db));
    freeReplyObject(redisCommand(rc, "SET rl:fitbit:user:%s:block 1 PX 4000", v[7]));
    redisFree(rc);
    job("fitbit", v[7], "sleep", "2026-11-20", NULL, NULL);

    wait_raw(k[0], 1, rt, sizeof(rt));
    ck_assert_str_eq(rt, "whoop.sleep");
    ck_assert_int_eq(proc_fx_refreshes("whoop", v[0]), 1);
    wait_dlq("oura:ig-1", "reconsent_required", NULL);
    wait_dlq(k[2], "fetch_failed", "attempts=3 last=refresh_failed");
    wait_dlq(k[3], "fetch_failed", "attempts=3 last=http_401");
    wait_dlq("terra:t1", "unsupported_fetch", NULL);
    wait_dlq("whoop:no-object", "missing_field", "missing_field: object_id");
    wait_dlq("oura:sealed-elsewhere", "token_unreadable", NULL);
    wait_dlq(k[5], "reconsent_required", NULL);
    wait_dlq("oura:garbage", "undecodable", NULL);
    wait_dlq(k[6], "fetch_failed", "attempts=3 last=refresh_failed");
    wait_retry(k[7], 1, &rj);
    ck_assert_int_eq(rj.attempt, 0);
    ck_assert_int_ge(rj.not_before_us, rj.created_at_us + 3000000);
    cm_fetch_job_fini(&rj);
    wait_raw(k[7], 1, rt, sizeof(rt));
    ck_assert_str_eq(rt, "fitbit.sleep");
    ck_assert_double_ge(metric("auren_fetcher_jobs_total{vendor=\"fitbit\",outcome=\"skipped\"} "),
                        1);
    ck_assert_uint_eq(count(CM_TOPIC_DLQ, k[4]) + count(CM_TOPIC_RAW, k[4]), 0);
    proc_fetcher_free(f);
}
END_TEST

/* PostgreSQL that cannot answer (the connection read, the stored events of a deleted object):
 * jobs wait in the retry topic with their attempt unchanged; failed deliveries replay the round
 * and lose nothing. */
START_TEST(test_database_and_delivery_faults)
{
    struct cm_err err = { { 0 } };
    struct proc_fetcher *f;
    struct proc_cfg down = cfg;
    struct cm_fetch_job rj;
    char v[2][48], k[2][96], rt[64], sql[512];

    if (!enabled) {
        return;
    }
    down.database_url = (char *)"postgresql://auren:auren@127.0.0.1:1/auren_test";
    f = proc_fetcher_new(&down, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(proc_fetcher_start(f, &err), CM_OK);
    job("oura", "pg-down", "daily_activity", "o1", "create", NULL);
    wait_retry("oura:pg-down", 1, &rj);
    ck_assert_int_eq(rj.attempt, 0);
    ck_assert_int_gt(rj.not_before_us, rj.created_at_us); /* a backoff from when it failed */
    cm_fetch_job_fini(&rj);
    proc_fetcher_free(f);

    /* no Redis: no budget can be taken, the job waits (attempt unchanged) */
    down = cfg;
    down.redis_url = (char *)"redis://127.0.0.1:1/0";
    f = proc_fetcher_new(&down, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(proc_fetcher_start(f, &err), CM_OK);
    user("oura", "redis-down", v[1], k[1]);
    job("oura", v[1], "daily_activity", "o1", "create", NULL);
    wait_retry(k[1], 1, &rj);
    ck_assert_int_eq(rj.attempt, 0);
    cm_fetch_job_fini(&rj);
    ck_assert_uint_eq(count(CM_TOPIC_RAW, k[1]), 0);
    proc_fetcher_free(f);

    f = proc_fetcher_new(&cfg, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(proc_fetcher_start(f, &err), CM_OK);
    /* the events table is away while the delete is handled, then back */
    user("whoop", "del", v[0], k[0]);
    snprintf(sql, sizeof(sql),
             "INSERT INTO biometric_events (event_id, user_id, vendor, metric, value, unit,"
             " start_time, end_time, source_record_id, raw_event_id, ingested_at, received_at)"
             " VALUES ('d1', 'user-f', 'whoop', 'sleep_duration_total', 400, 'min', now(), now(),"
             " 'sleep-9', 'r', now(), now()); ALTER TABLE biometric_events RENAME TO be_away");
    proc_fx_db_exec(sql);
    job("whoop", v[0], "sleep", "sleep-9", "sleep.deleted", NULL);
    wait_retry(k[0], 1, &rj);
    ck_assert_int_eq(rj.attempt, 0);
    cm_fetch_job_fini(&rj);
    proc_fx_db_exec("ALTER TABLE be_away RENAME TO biometric_events");
    wait_raw(k[0], 1, rt, sizeof(rt));
    ck_assert_str_eq(rt, "whoop.deleted");

    proc_fetcher_free(f);

    /* the broker refuses the fetcher's first produce request: the round is replayed and the
     * dead letter arrives anyway (the job was read before the fetcher started) */
    job("terra", "after-refusal", "activity", "x", NULL, NULL);
    rd_kafka_mock_push_request_errors(mc, KAFKA_API_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    f = proc_fetcher_new(&cfg, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    ck_assert_int_eq(proc_fetcher_start(f, &err), CM_OK);
    wait_dlq("terra:after-refusal", "unsupported_fetch", NULL);
    user("oura", "after", v[1], k[1]);
    job("oura", v[1], "daily_activity", "o9", "create", NULL);
    wait_raw(k[1], 1, rt, sizeof(rt));
    ck_assert_str_eq(rt, "oura.daily_activity");
    proc_fetcher_free(f);
}
END_TEST

/* proc_fetcher_new() names what is wrong and leaves nothing behind. */
START_TEST(test_new_rejects_bad_settings)
{
    struct cm_err err = { { 0 } };
    struct proc_cfg c = cfg;
    struct proc_fetcher *f;

    if (!enabled) {
        return;
    }
    c.token_encryption_keys = (char *)"k1:short";
    ck_assert_ptr_null(proc_fetcher_new(&c, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "TOKEN_ENCRYPTION_KEYS"));
    c = cfg;
    c.redis_url = (char *)"mysql://x";
    ck_assert_ptr_null(proc_fetcher_new(&c, &err));
    setenv("KAFKA_NO_SUCH_PROPERTY", "1", 1);
    ck_assert_ptr_null(proc_fetcher_new(&cfg, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "KAFKA_NO_SUCH_PROPERTY"));
    unsetenv("KAFKA_NO_SUCH_PROPERTY");
    setenv("KAFKA_MAX_IN_FLIGHT", "10", 1); /* a valid property the idempotent producer refuses */
    ck_assert_ptr_null(proc_fetcher_new(&cfg, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "kafka: "));
    unsetenv("KAFKA_MAX_IN_FLIGHT");
    f = proc_fetcher_new(&cfg, &err); /* never started: stop and free only */
    ck_assert_ptr_nonnull(f);
    proc_fetcher_stop(f);
    proc_fetcher_free(f);
    proc_fetcher_stop(NULL);
    proc_fetcher_free(NULL);
}
END_TEST

static Suite *fetcher_suite(void)
{
    Suite *s = suite_create("proc_fetcher");
    TCase *tc = tcase_create("mock_cluster");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_vendor_answers_under_fault);
    tcase_add_test(tc, test_second_pass_and_triage);
    tcase_add_test(tc, test_database_and_delivery_faults);
    tcase_add_test(tc, test_new_rejects_bad_settings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* The tests start several fetchers in one consumer group, one after the other: a short
     * session lets the next one take over the partitions soon (the mock cluster waits for the
     * previous member's session to end). Read by cm_kafka_conf_new() like any KAFKA_ variable. */
    setenv("KAFKA_SESSION_TIMEOUT_MS", "6000", 1);
    enabled = proc_fx_enabled("proc_fetcher");
    return proc_fx_run(fetcher_suite());
}
