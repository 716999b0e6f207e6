/* The gateway over HTTP: the real server (gw_server_new) on port 0 against librdkafka's mock
 * cluster, driven with libcurl. Checks that 2xx comes only after the broker acknowledged the
 * record, what the record holds (no path token, no signature headers), the error answers
 * (401/404/405/413/415), the in-flight cap (503 + Retry-After), a broker that is down (503 after
 * DELIVERY_TIMEOUT_MS), handshakes over HTTP, the ops routes and a graceful shutdown. */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cm/buf.h"
#include "cm/kafka.h"
#include "cm/metrics.h"
#include "cm/log.h"
#include "cm/records.h"
#include "gw_cfg.h"
#include "gw_server.h"
#include "../check_run.h"

#define WHOOP_SECRET "whoop-http-secret"
#define GARMIN_TOKEN "garmin-path-token-0123456789"
#define WITHINGS_TOKEN "withings-path-token-0123456789"
#define GOOGLE_AUTH "Bearer google-http-secret"

static struct gw_cfg cfg;
static struct gw_server *srv;
static char base[64];

static void cfg_defaults(void)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.brokers = "127.0.0.1:1"; /* replaced by the mock cluster */
    cfg.http_port = 0;
    cfg.max_body = 4096;
    cfg.max_in_flight = 40;
    cfg.tolerance_s = 300;
    cfg.delivery_timeout_ms = 3000;
    cfg.http_max_connections = 1024;
    cfg.http_connection_timeout_s = 10;
    cfg.http_max_header_bytes = (size_t)32 * 1024;
    cfg.secret_whoop = WHOOP_SECRET;
    cfg.secret_polar = "polar-http-secret";
    cfg.secret_fitbit = "fitbit-http-secret";
    cfg.token_garmin = GARMIN_TOKEN;
    cfg.garmin_client_id = "garmin-client";
    cfg.token_withings = WITHINGS_TOKEN;
    cfg.oura_verification_token = "oura-token";
    cfg.google_health_authorization = GOOGLE_AUTH;
}

struct resp {
    long status;
    char body[512];
    size_t len;
    char retry_after[16];
    char allow[64];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t len = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;
    size_t take = len < room ? len : room;

    memcpy(r->body + r->len, p, take);
    r->len += take;
    r->body[r->len] = '\0';
    return len;
}

static void copy_header_value(char *dst, size_t cap, const char *line, size_t n, size_t skip)
{
    size_t len = n - skip;

    while (len > 0 && (line[skip + len - 1] == '\r' || line[skip + len - 1] == '\n')) {
        len--;
    }
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(dst, line + skip, len);
    dst[len] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t len = size * n;

    if (len > 13 && strncasecmp(p, "Retry-After: ", 13) == 0) {
        copy_header_value(r->retry_after, sizeof(r->retry_after), p, len, 13);
    } else if (len > 7 && strncasecmp(p, "Allow: ", 7) == 0) {
        copy_header_value(r->allow, sizeof(r->allow), p, len, 7);
    }
    return len;
}

/* Build (not perform) a request; headers is a NULL-terminated list of "Name: value". */
static void prepare_request(CURL *c, const char *method, const char *path,
                            const char *const *headers, const char *body, struct resp *r,
                            struct curl_slist **hl)
{
    char url[512];

    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "%s%s", base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    *hl = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        *hl = curl_slist_append(*hl, headers[i]);
    }
    *hl = curl_slist_append(*hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hl);
}

static CURL *make_request(const char *method, const char *path, const char *const *headers,
                          const char *body, struct resp *r, struct curl_slist **hl)
{
    CURL *c = curl_easy_init();

    prepare_request(c, method, path, headers, body, r, hl);
    return c;
}

static long http(const char *method, const char *path, const char *const *headers,
                 const char *body, struct resp *r)
{
    struct curl_slist *hl;
    CURL *c = make_request(method, path, headers, body, r, &hl);
    CURLcode rc = curl_easy_perform(c);

    ck_assert_msg(rc == CURLE_OK, "curl: %s", curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return r->status;
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

/* The server on a one-broker mock cluster, plus `extra` Kafka name/value pairs (NULL-ended). */
static void start_server_with(const char *const *extra)
{
    const char *props[16] = {"test.mock.num.brokers", "1"};
    size_t np = 2;
    struct cm_err err = {{0}};
    struct resp r;
    int64_t until;

    for (size_t i = 0; extra != NULL && extra[i] != NULL && np < 15; i++) {
        props[np++] = extra[i];
    }
    props[np] = NULL;
    srv = gw_server_new(&cfg, props, &err);
    ck_assert_msg(srv != NULL, "gw_server_new: %s", err.msg);
    snprintf(base, sizeof(base), "http://127.0.0.1:%u", (unsigned)gw_server_port(srv));
    /* Ready once the producer has a broker connection (statistics every second). */
    until = now_ms() + 15000;
    while (http("GET", "/readyz", NULL, NULL, &r) != 200 && now_ms() < until) {
        sleep_ms(100);
    }
    ck_assert_int_eq(r.status, 200);
}

static void start_server(void)
{
    start_server_with(NULL);
}

static rd_kafka_mock_cluster_t *mock(void)
{
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(gw_server_kafka(srv));

    ck_assert_ptr_nonnull(mc);
    return mc;
}

static void setup(void)
{
    cm_log_init("gateway-test");
    cm_records_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cfg_defaults();
    srv = NULL;
}

static void teardown(void)
{
    gw_server_free(srv);
    srv = NULL;
    curl_global_cleanup();
}

/* WHOOP headers for `body` signed now (or shifted by skew_s). */
static void whoop_headers(const char *body, long skew_s, char sig[128], char ts[64],
                          const char *hdrs[5])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned char enc[64];
    char msg[4096];
    struct timespec wall;
    long long ms;

    clock_gettime(CLOCK_REALTIME, &wall);
    ms = (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000 + (long long)skew_s * 1000;
    snprintf(msg, sizeof(msg), "%lld%s", ms, body);
    HMAC(EVP_sha256(), WHOOP_SECRET, (int)strlen(WHOOP_SECRET), (const unsigned char *)msg,
         strlen(msg), mac, &maclen);
    EVP_EncodeBlock(enc, mac, (int)maclen);
    snprintf(sig, 128, "X-WHOOP-Signature: %s", enc);
    snprintf(ts, 64, "X-WHOOP-Signature-Timestamp: %lld", ms);
    hdrs[0] = sig;
    hdrs[1] = ts;
    hdrs[2] = "Content-Type: application/json";
    hdrs[3] = "User-Agent: whoop-test";
    hdrs[4] = NULL;
}

/* Consume the next record of biometric.raw.v1 from the mock cluster. */
static bool consume_one(struct cm_raw_webhook *out, char *key, size_t keycap)
{
    rd_kafka_mock_cluster_t *mc = mock();
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    bool got = false;
    int64_t until = now_ms() + 15000;

    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "gw-test", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(rk);
    rd_kafka_poll_set_consumer(rk);
    /* Every partition of the auto-created topic (4 on the mock), from the start; no group join. */
    for (int p = 0; p < 4; p++) {
        rd_kafka_topic_partition_list_add(topics, CM_TOPIC_RAW, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    ck_assert_int_eq(rd_kafka_assign(rk, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);
    while (!got && now_ms() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            struct cm_err err = {{0}};
            ck_assert_msg(cm_raw_webhook_decode(m->payload, m->len, out, &err) == CM_OK,
                          "decode: %s", err.msg);
            snprintf(key, keycap, "%.*s", (int)m->key_len, (const char *)m->key);
            got = true;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

static const char *find_header(const struct cm_raw_webhook *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

/* ---- durability ---- */
START_TEST(test_whoop_2xx_only_after_ack)
{
    const char *body =
        "{\"user_id\":456,\"id\":\"a\",\"type\":\"sleep.updated\",\"trace_id\":\"t\"}";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;
    struct cm_raw_webhook rec;
    char key[64];
    int64_t t0;

    start_server();
    /* Every broker answer now takes 400 ms: the 200 cannot come before the ack. */
    rd_kafka_mock_broker_set_rtt(mock(), 1, 400);
    whoop_headers(body, 0, sig, ts, hdrs);
    t0 = now_ms();
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 200);
    ck_assert_int_ge(now_ms() - t0, 400);
    ck_assert_ptr_null(strstr(r.body, "user_id"));

    memset(&rec, 0, sizeof(rec));
    ck_assert(consume_one(&rec, key, sizeof(key)));
    ck_assert_str_eq(key, "whoop");
    ck_assert_str_eq(rec.vendor, "whoop");
    ck_assert_int_eq(rec.kind, CM_RAW_WEBHOOK);
    ck_assert_str_eq(rec.method, "POST");
    ck_assert_str_eq(rec.path, "/webhooks/whoop");
    ck_assert_uint_eq(strlen(rec.event_id), 32);
    ck_assert_uint_eq(rec.body_len, strlen(body));
    ck_assert_int_eq(memcmp(rec.body, body, rec.body_len), 0);
    ck_assert_str_eq(find_header(&rec, "user-agent"), "whoop-test");
    ck_assert_ptr_nonnull(find_header(&rec, "x-whoop-signature-timestamp"));
    ck_assert_ptr_null(find_header(&rec, "x-whoop-signature"));
    cm_raw_webhook_fini(&rec);
}
END_TEST

START_TEST(test_garmin_path_token_not_recorded)
{
    const char *ok[] = {"Content-Type: application/json", "garmin-client-id: garmin-client", NULL};
    const char *wrong_id[] = {"Content-Type: application/json", "garmin-client-id: other", NULL};
    struct resp r;
    struct cm_raw_webhook rec;
    char key[64];

    start_server();
    ck_assert_int_eq(http("POST", "/webhooks/garmin/" GARMIN_TOKEN, ok, "{\"dailies\":[]}", &r),
                     200);
    ck_assert_int_eq(http("POST", "/webhooks/garmin/wrong-token", ok, "{}", &r), 404);
    ck_assert_int_eq(http("POST", "/webhooks/garmin", ok, "{}", &r), 404);
    ck_assert_int_eq(http("POST", "/webhooks/garmin/" GARMIN_TOKEN "/x", ok, "{}", &r), 404);
    ck_assert_int_eq(http("POST", "/webhooks/garmin/" GARMIN_TOKEN, wrong_id, "{}", &r), 401);

    memset(&rec, 0, sizeof(rec));
    ck_assert(consume_one(&rec, key, sizeof(key)));
    ck_assert_str_eq(rec.path, "/webhooks/garmin");
    ck_assert_ptr_null(strstr(rec.path, GARMIN_TOKEN));
    ck_assert_str_eq(find_header(&rec, "garmin-client-id"), "garmin-client");
    cm_raw_webhook_fini(&rec);
}
END_TEST

START_TEST(test_fitbit_204_and_polar_ping)
{
    const char *body = "[{\"collectionType\":\"sleep\",\"ownerId\":\"X\"}]";
    const char *ping = "{\"event\":\"PING\",\"timestamp\":\"2018-05-15T14:22:24Z\"}";
    const char *ping_hdrs[] = {"Content-Type: application/json", NULL};
    const char *hdrs[3];
    char sig[128];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned char enc[64];
    struct resp r;
    struct cm_raw_webhook rec;
    char key[64];

    start_server();
    HMAC(EVP_sha1(), "fitbit-http-secret&", 19, (const unsigned char *)body, strlen(body), mac,
         &maclen);
    EVP_EncodeBlock(enc, mac, (int)maclen);
    snprintf(sig, sizeof(sig), "X-Fitbit-Signature: %s", enc);
    hdrs[0] = sig;
    hdrs[1] = "Content-Type: application/json";
    hdrs[2] = NULL;
    /* An unsigned Polar PING is answered but never enqueued. */
    ck_assert_int_eq(http("POST", "/webhooks/polar", ping_hdrs, ping, &r), 200);
    ck_assert_int_eq(http("POST", "/webhooks/fitbit", hdrs, body, &r), 204);
    ck_assert_uint_eq(r.len, 0);
    memset(&rec, 0, sizeof(rec));
    ck_assert(consume_one(&rec, key, sizeof(key)));
    ck_assert_str_eq(rec.vendor, "fitbit"); /* the first record: the PING was not produced */
    cm_raw_webhook_fini(&rec);
}
END_TEST

/* ---- error answers ---- */
START_TEST(test_error_answers)
{
    const char *body = "{\"user_id\":1}";
    const char *hdrs[5];
    const char *plain[5];
    char sig[128], ts[64];
    char big[8192];
    struct resp r;

    start_server();
    whoop_headers(body, 0, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, "{\"user_id\":2}", &r), 401);
    ck_assert_str_eq(r.body, "{\"error\":\"bad_signature\"}");
    ck_assert_int_eq(http("POST", "/webhooks/whoop", NULL, body, &r), 401);
    ck_assert_int_eq(http("POST", "/webhooks/nope", hdrs, body, &r), 404);
    ck_assert_int_eq(http("POST", "/other", hdrs, body, &r), 404);
    ck_assert_int_eq(http("POST", "/webhooks/terra", hdrs, body, &r), 404); /* not configured */
    ck_assert_str_eq(r.body, "{\"error\":\"vendor_not_configured\"}");
    ck_assert_int_eq(http("GET", "/webhooks/whoop", NULL, NULL, &r), 405);
    ck_assert_str_eq(r.allow, "POST");
    ck_assert_int_eq(http("DELETE", "/webhooks/oura", NULL, NULL, &r), 405);
    ck_assert_str_eq(r.allow, "GET, HEAD, POST");
    memcpy(plain, hdrs, sizeof(plain));
    plain[2] = "Content-Type: text/plain";
    ck_assert_int_eq(http("POST", "/webhooks/whoop", plain, body, &r), 415);
    whoop_headers(body, -400, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 401);
    ck_assert_str_eq(r.body, "{\"error\":\"stale_timestamp\"}");
    whoop_headers(body, 400, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 401);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, big, &r), 413);
}
END_TEST

struct chunk_src {
    size_t left;
};

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct chunk_src *s = arg;
    size_t len = size * n < s->left ? size * n : s->left;

    memset(buf, 'b', len);
    s->left -= len;
    return len;
}

START_TEST(test_chunked_body_over_limit)
{
    struct chunk_src src = {.left = 6000};
    struct curl_slist *hl;
    struct resp r;
    const char *hdrs[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    CURL *c;

    start_server();
    c = make_request("POST", "/webhooks/whoop", hdrs, NULL, &r, &hl);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    ck_assert_int_eq(r.status, 413);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}
END_TEST

/* ---- capacity and Kafka failures ---- */
START_TEST(test_in_flight_cap)
{
    const char *body = "{\"user_id\":3}";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r[2];
    struct curl_slist *hl[2];
    CURL *c[2];
    CURLM *m = curl_multi_init();
    int running = 0;
    long s0, s1;

    cfg.max_in_flight = 1;
    start_server();
    rd_kafka_mock_broker_set_rtt(mock(), 1, 1000);
    whoop_headers(body, 0, sig, ts, hdrs);
    for (int i = 0; i < 2; i++) {
        c[i] = make_request("POST", "/webhooks/whoop", hdrs, body, &r[i], &hl[i]);
        curl_multi_add_handle(m, c[i]);
        if (i == 0) {
            /* Let the first one get admitted before the second arrives. */
            int64_t until = now_ms() + 300;
            while (now_ms() < until) {
                curl_multi_perform(m, &running);
                curl_multi_poll(m, NULL, 0, 20, NULL);
            }
        }
    }
    do {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 50, NULL);
    } while (running > 0);
    curl_easy_getinfo(c[0], CURLINFO_RESPONSE_CODE, &s0);
    curl_easy_getinfo(c[1], CURLINFO_RESPONSE_CODE, &s1);
    ck_assert_int_eq(s0, 200);
    ck_assert_int_eq(s1, 503);
    ck_assert_str_eq(r[1].retry_after, "1");
    ck_assert_str_eq(r[1].body, "{\"error\":\"at_capacity\"}");
    for (int i = 0; i < 2; i++) {
        curl_multi_remove_handle(m, c[i]);
        curl_easy_cleanup(c[i]);
        curl_slist_free_all(hl[i]);
    }
    curl_multi_cleanup(m);
}
END_TEST

START_TEST(test_broker_down_503_after_timeout)
{
    const char *body = "{\"user_id\":4}";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;
    int64_t t0, took;

    cfg.delivery_timeout_ms = 800;
    start_server();
    rd_kafka_mock_broker_set_down(mock(), 1);
    whoop_headers(body, 0, sig, ts, hdrs);
    t0 = now_ms();
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 503);
    took = now_ms() - t0;
    ck_assert_int_ge(took, 800);
    ck_assert_int_lt(took, 2500);
    ck_assert_str_eq(r.retry_after, "5");
    ck_assert_ptr_null(strstr(r.body, "user_id"));
    rd_kafka_mock_broker_set_up(mock(), 1);
}
END_TEST

/* The gateway's own gauge (this process is the gateway): no broker in state UP. */
static bool no_broker_up(void)
{
    struct cm_buf b;
    bool down;

    cm_buf_init(&b, 0);
    cm_metrics_render(&b);
    ck_assert_int_eq(cm_buf_append(&b, "", 1), CM_OK);
    down = strstr((const char *)b.data, "\nauren_gateway_kafka_brokers_up 0\n") != NULL;
    cm_buf_fini(&b);
    return down;
}

/* With a spool, a broker that is down costs nothing: the webhook is answered 200 from the
 * spool's fsync, and the replayer hands the record to Kafka once the broker is back. */
START_TEST(test_broker_down_spooled_then_replayed)
{
    const char *body = "{\"user_id\":5,\"id\":\"spooled\"}";
    char spool[] = "/tmp/gw_server_spool.XXXXXX";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;
    struct cm_raw_webhook rec;
    char key[64];
    DIR *d;
    struct dirent *e;
    char path[512];
    int64_t until;

    ck_assert_ptr_nonnull(mkdtemp(spool));
    cfg.spool_dir = spool;
    cfg.spool_max_bytes = (size_t)1 << 20;
    cfg.delivery_timeout_ms = 2500;
    start_server();
    rd_kafka_mock_broker_set_down(mock(), 1);
    /* Once the statistics show no broker up, the spool takes records without trying Kafka
     * (waiting for that keeps a loaded machine's slow delivery timeout out of the test). */
    until = now_ms() + 15000;
    while (!no_broker_up() && now_ms() < until) {
        sleep_ms(200);
    }
    ck_assert(no_broker_up());
    whoop_headers(body, 0, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 200);
    /* Still ready: the spool accepts while no broker is up. */
    ck_assert_int_eq(http("GET", "/readyz", NULL, NULL, &r), 200);
    rd_kafka_mock_broker_set_up(mock(), 1);
    ck_assert(consume_one(&rec, key, sizeof(key)));
    ck_assert_str_eq(key, "whoop");
    ck_assert_uint_eq(rec.body_len, strlen(body));
    ck_assert_int_eq(memcmp(rec.body, body, rec.body_len), 0);
    cm_raw_webhook_fini(&rec);
    gw_server_free(srv);
    srv = NULL;
    d = opendir(spool);
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", spool, e->d_name);
            unlink(path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(spool);
}
END_TEST

/* ---- handshakes and ops routes over HTTP ---- */
START_TEST(test_handshakes_over_http)
{
    const char *verify[] = {"Content-Type: application/json", "Authorization: " GOOGLE_AUTH, NULL};
    const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    struct resp r;

    start_server();
    ck_assert_int_eq(http("GET", "/webhooks/oura?verification_token=oura-token&challenge=c%22x",
                          NULL, NULL, &r),
                     200);
    ck_assert_str_eq(r.body, "{\"challenge\":\"c\\\"x\"}");
    ck_assert_int_eq(
        http("GET", "/webhooks/oura?verification_token=bad&challenge=c", NULL, NULL, &r), 401);
    ck_assert_int_eq(http("HEAD", "/webhooks/withings/" WITHINGS_TOKEN, NULL, NULL, &r), 200);
    ck_assert_int_eq(http("HEAD", "/webhooks/withings/bad", NULL, NULL, &r), 404);
    ck_assert_int_eq(http("POST", "/webhooks/withings/" WITHINGS_TOKEN, form,
                          "userid=12345&appli=1&startdate=1530576000&enddate=1530698753", &r),
                     200);
    ck_assert_int_eq(http("POST", "/webhooks/google_health", verify,
                          "{\"type\":\"verification\"}", &r),
                     201);
    ck_assert_int_eq(http("POST", "/webhooks/google_health", form, "{\"type\":\"verification\"}",
                          &r),
                     401);
}
END_TEST

static size_t on_metrics(char *p, size_t size, size_t n, void *arg)
{
    cm_buf_append(arg, p, size * n);
    return size * n;
}

/* GET /metrics and return the value of the series `series` (name plus labels), 0 if absent.
 * Deltas keep the test valid when all tests share one process (CK_FORK=no). */
static double metric_value(const char *series)
{
    struct resp r;
    struct curl_slist *hl;
    struct cm_buf out;
    CURL *c = make_request("GET", "/metrics", NULL, NULL, &r, &hl);
    double v = 0;
    char want[256];
    const char *at;

    cm_buf_init(&out, 0);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_metrics);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    ck_assert_int_eq(r.status, 200);
    cm_buf_terminate(&out);
    snprintf(want, sizeof(want), "\n%s ", series);
    at = out.len > 0 ? strstr((const char *)out.data, want) : NULL;
    if (at != NULL) {
        v = strtod(at + strlen(want), NULL);
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    cm_buf_fini(&out);
    return v;
}

#define OK_SERIES "auren_gateway_requests_total{vendor=\"whoop\",status=\"200\"}"
#define BAD_SERIES "auren_gateway_requests_total{vendor=\"whoop\",status=\"401\"}"
#define SIG_SERIES "auren_gateway_signature_failures_total{vendor=\"whoop\"}"
#define DUR_SERIES "auren_gateway_request_duration_seconds_count{vendor=\"whoop\"}"

START_TEST(test_ops_routes)
{
    const char *body = "{\"user_id\":6}";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;
    int64_t until;
    double ok0, bad0, sig0, dur0;

    start_server();
    ok0 = metric_value(OK_SERIES);
    bad0 = metric_value(BAD_SERIES);
    sig0 = metric_value(SIG_SERIES);
    dur0 = metric_value(DUR_SERIES);
    whoop_headers(body, 0, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 200);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", NULL, body, &r), 401);
    ck_assert_int_eq(http("GET", "/healthz", NULL, NULL, &r), 200);
    ck_assert_str_eq(r.body, "ok\n");
    ck_assert_int_eq(http("GET", "/readyz", NULL, NULL, &r), 200);
    /* Counted when MHD reports the request complete, just after the client has its answer; the
     * in-flight gauge drops last in that callback (after the duration and the log line). */
    until = now_ms() + 2000;
    while ((metric_value(DUR_SERIES) < dur0 + 2 || metric_value("auren_gateway_in_flight") != 0) &&
           now_ms() < until) {
        sleep_ms(20);
    }
    ck_assert(metric_value(OK_SERIES) == ok0 + 1);
    ck_assert(metric_value(BAD_SERIES) == bad0 + 1);
    ck_assert(metric_value(SIG_SERIES) == sig0 + 1);
    ck_assert(metric_value(DUR_SERIES) == dur0 + 2);
    ck_assert(metric_value("auren_gateway_in_flight") == 0);
}
END_TEST

/* ---- shutdown ---- */
struct bg {
    const char *const *hdrs;
    const char *body;
    struct resp r;
};

static void *post_in_background(void *arg)
{
    struct bg *b = arg;
    struct curl_slist *hl;
    CURL *c = make_request("POST", "/webhooks/whoop", b->hdrs, b->body, &b->r, &hl);

    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &b->r.status);
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return NULL;
}

START_TEST(test_shutdown_answers_in_flight)
{
    const char *hdrs[5];
    char sig[128], ts[64];
    struct bg b;
    pthread_t t;
    struct resp r;

    start_server();
    rd_kafka_mock_broker_set_rtt(mock(), 1, 600);
    b.body = "{\"user_id\":7}";
    whoop_headers(b.body, 0, sig, ts, hdrs);
    b.hdrs = hdrs;
    pthread_create(&t, NULL, post_in_background, &b);
    sleep_ms(200); /* the request is waiting for its acknowledgement */
    gw_server_shutdown(srv);
    pthread_join(t, NULL);
    ck_assert_int_eq(b.r.status, 200); /* drained, not dropped */
    /* After shutdown nothing listens. */
    {
        struct curl_slist *hl;
        CURL *c = make_request("GET", "/healthz", NULL, NULL, &r, &hl);
        ck_assert_int_ne(curl_easy_perform(c), CURLE_OK);
        curl_slist_free_all(hl);
        curl_easy_cleanup(c);
    }
}
END_TEST

/* ---- hostile clients and Kafka refusals ---- */

/* Wait (bounded) until the gateway's in-flight gauge shows `n` requests. */
static void wait_in_flight_gauge(double n)
{
    int64_t until = now_ms() + 20000;

    while (metric_value("auren_gateway_in_flight") != n && now_ms() < until) {
        sleep_ms(20);
    }
    ck_assert(metric_value("auren_gateway_in_flight") == n);
}

/* An unknown method is refused with Allow; a body streamed without end past the discard budget
 * (4 x MAX_BODY_BYTES) gets the connection closed instead of being read forever. */
START_TEST(test_hostile_method_and_endless_body)
{
    struct chunk_src src = {.left = (size_t)4096 * 6};
    struct curl_slist *hl;
    struct resp r;
    const char *hdrs[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    CURL *c;
    CURLcode rc;

    start_server();
    ck_assert_int_eq(http("BREW", "/webhooks/whoop", NULL, NULL, &r), 405);
    ck_assert_str_eq(r.allow, "POST");
    c = make_request("POST", "/webhooks/whoop", hdrs, NULL, &r, &hl);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    ck_assert_msg(rc != CURLE_OK && r.status == 0, "curl %d status %ld", (int)rc, r.status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    ck_assert_int_eq(http("GET", "/healthz", NULL, NULL, &r), 200);
}
END_TEST

/* The produce queue refuses the second of two concurrent webhooks (one message allowed): that
 * request is answered 503 at once, the first one 200 once acknowledged. */
START_TEST(test_produce_refused_503)
{
    static const char *const one[] = {"queue.buffering.max.messages", "1", NULL};
    const char *hdrs[5];
    char sig[128], ts[64];
    struct bg b;
    pthread_t t;
    struct resp r;

    start_server_with(one);
    rd_kafka_mock_broker_set_rtt(mock(), 1, 1500);
    b.body = "{\"user_id\":8}";
    whoop_headers(b.body, 0, sig, ts, hdrs);
    b.hdrs = hdrs;
    pthread_create(&t, NULL, post_in_background, &b);
    wait_in_flight_gauge(1);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, b.body, &r), 503);
    ck_assert_str_eq(r.body, "{\"error\":\"kafka_unavailable\"}");
    ck_assert_str_eq(r.retry_after, "5");
    pthread_join(t, NULL);
    ck_assert_int_eq(b.r.status, 200);
}
END_TEST

/* A delivery refused by the broker (not authorized) is a 503, not a 2xx. */
START_TEST(test_delivery_refused_503)
{
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;

    start_server();
    rd_kafka_mock_push_request_errors(mock(), 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    whoop_headers("{\"user_id\":9}", 0, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, "{\"user_id\":9}", &r), 503);
    ck_assert_str_eq(r.body, "{\"error\":\"kafka_unavailable\"}");
}
END_TEST

/* Two requests waiting for their acknowledgements at once are each answered. */
START_TEST(test_concurrent_waits_each_answered)
{
    const char *hdrs[5];
    char sig[128], ts[64];
    struct bg b[2];
    pthread_t t[2];

    start_server();
    whoop_headers("{\"user_id\":9}", 0, sig, ts, hdrs);
    rd_kafka_mock_broker_set_rtt(mock(), 1, 1500); /* within DELIVERY_TIMEOUT_MS (3 s) */
    for (int i = 0; i < 2; i++) {
        b[i].body = "{\"user_id\":9}";
        b[i].hdrs = hdrs;
        pthread_create(&t[i], NULL, post_in_background, &b[i]);
        wait_in_flight_gauge(i + 1);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(b[i].r.status, 200);
    }
}
END_TEST

/* Answered 503 at the gateway's deadline, acknowledged by Kafka later (message.timeout.ms longer
 * than DELIVERY_TIMEOUT_MS): the record is in Kafka, the vendor's retry will be a duplicate. */
START_TEST(test_late_delivery_after_deadline)
{
    static const char *const slow[] = {"message.timeout.ms", "20000", NULL};
    const char *body = "{\"user_id\":10,\"id\":\"late\"}";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;
    struct cm_raw_webhook rec;
    char key[64];

    cfg.delivery_timeout_ms = 800;
    start_server_with(slow);
    rd_kafka_mock_broker_set_rtt(mock(), 1, 2500);
    whoop_headers(body, 0, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 503);
    ck_assert_str_eq(r.body, "{\"error\":\"delivery_timeout\"}");
    rd_kafka_mock_broker_set_rtt(mock(), 1, 0);
    ck_assert(consume_one(&rec, key, sizeof(key)));
    ck_assert_uint_eq(rec.body_len, strlen(body));
    ck_assert_int_eq(memcmp(rec.body, body, rec.body_len), 0);
    cm_raw_webhook_fini(&rec);
}
END_TEST

static void *shutdown_in_background(void *arg)
{
    gw_server_shutdown(arg);
    return NULL;
}

/* While draining, a client on an open keep-alive connection gets its new webhook refused with
 * 503 before the body is read, and /readyz fails (the in-flight one still completes). The probe
 * is signed for another body: 401 until the drain starts, then 503. */
START_TEST(test_draining_refuses_new_webhooks)
{
    const char *hdrs[5];
    char sig[128], ts[64];
    struct bg b;
    pthread_t t, st;
    struct resp r;
    struct curl_slist *hl;
    CURL *c = curl_easy_init();
    CURL *c2 = curl_easy_init();
    int64_t until;

    cfg.delivery_timeout_ms = 8000; /* the in-flight one holds the drain open for 4 s */
    start_server();
    rd_kafka_mock_broker_set_rtt(mock(), 1, 4000);
    b.body = "{\"user_id\":11}";
    whoop_headers(b.body, 0, sig, ts, hdrs);
    b.hdrs = hdrs;
    for (int i = 0; i < 2; i++) { /* open two keep-alive connections */
        CURL *h = i == 0 ? c : c2;
        prepare_request(h, "POST", "/webhooks/whoop", hdrs, "{\"user_id\":12}", &r, &hl);
        ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(hl);
        ck_assert_int_eq(r.status, 401);
    }
    /* The gauge drops in the completion callback, after curl has the answer: wait until the two
     * refused requests are out of it, or a 1 read now could be the second of them. */
    wait_in_flight_gauge(0);
    pthread_create(&t, NULL, post_in_background, &b);
    wait_in_flight_gauge(1);
    pthread_create(&st, NULL, shutdown_in_background, srv);
    until = now_ms() + 20000;
    do {
        curl_easy_reset(c);
        prepare_request(c, "POST", "/webhooks/whoop", hdrs, "{\"user_id\":12}", &r, &hl);
        ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(hl);
    } while (r.status == 401 && now_ms() < until);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "{\"error\":\"shutting_down\"}");
    ck_assert_str_eq(r.retry_after, "1");
    /* That answer closed its connection (the body was not read); the second one asks /readyz. */
    curl_easy_reset(c2);
    prepare_request(c2, "GET", "/readyz", NULL, NULL, &r, &hl);
    ck_assert_int_eq(curl_easy_perform(c2), CURLE_OK);
    curl_easy_getinfo(c2, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hl);
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(strstr(r.body, "shutting down"));
    curl_easy_cleanup(c);
    curl_easy_cleanup(c2);
    pthread_join(t, NULL);
    ck_assert_int_eq(b.r.status, 200);
    pthread_join(st, NULL);
}
END_TEST

/* A kept header whose value is not UTF-8 (obs-text a proxy may pass on) is left out of the record;
 * the signed webhook is still accepted (it was answered 500 encode_failed, and every retry of the
 * vendor failed the same way). */
START_TEST(test_non_utf8_header_left_out)
{
    const char *body = "{\"user_id\":13}";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;
    struct cm_raw_webhook rec;
    char key[64];

    start_server();
    whoop_headers(body, 0, sig, ts, hdrs);
    hdrs[3] = "User-Agent: proxy\xff\xfe";
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 200);
    memset(&rec, 0, sizeof(rec));
    ck_assert(consume_one(&rec, key, sizeof(key)));
    ck_assert_uint_eq(rec.body_len, strlen(body));
    ck_assert_ptr_null(find_header(&rec, "user-agent"));
    ck_assert_str_eq(find_header(&rec, "content-type"), "application/json");
    cm_raw_webhook_fini(&rec);
}
END_TEST

/* Bytes that are not UTF-8 where the record needs a string: in the query (raw bytes are not
 * legal in a URL) 400, in the Content-Type parameters 415; never a 500 the vendor retries. */
START_TEST(test_non_utf8_query_and_content_type)
{
    const char *body = "{\"user_id\":14}";
    const char *hdrs[5];
    char sig[128], ts[64];
    struct resp r;

    start_server();
    whoop_headers(body, 0, sig, ts, hdrs);
    ck_assert_int_eq(http("POST", "/webhooks/whoop?x=\xff\xfe", hdrs, body, &r), 400);
    ck_assert_str_eq(r.body, "{\"error\":\"bad_query\"}");
    hdrs[2] = "Content-Type: application/json; charset=\xff";
    ck_assert_int_eq(http("POST", "/webhooks/whoop", hdrs, body, &r), 415);
    hdrs[2] = "Content-Type: application/json";
    ck_assert_int_eq(http("POST", "/webhooks/whoop?x=%ff", hdrs, body, &r), 200);
}
END_TEST

static Suite *gw_server_suite(void)
{
    Suite *s = suite_create("gw_server");
    TCase *durable = tcase_create("durable_ack");
    TCase *errors = tcase_create("error_answers");
    TCase *pressure = tcase_create("capacity_and_kafka_failures");
    TCase *misc = tcase_create("handshakes_ops_shutdown");
    TCase *all[] = {durable, errors, pressure, misc};

    check_add_cases(s, all, sizeof(all) / sizeof(all[0]), setup, teardown, 60);
    tcase_add_test(durable, test_whoop_2xx_only_after_ack);
    tcase_add_test(durable, test_garmin_path_token_not_recorded);
    tcase_add_test(durable, test_fitbit_204_and_polar_ping);
    tcase_add_test(errors, test_error_answers);
    tcase_add_test(errors, test_chunked_body_over_limit);
    tcase_add_test(pressure, test_in_flight_cap);
    tcase_add_test(pressure, test_broker_down_503_after_timeout);
    tcase_add_test(pressure, test_broker_down_spooled_then_replayed);
    tcase_add_test(misc, test_handshakes_over_http);
    tcase_add_test(misc, test_ops_routes);
    tcase_add_test(misc, test_shutdown_answers_in_flight);
    tcase_add_test(errors, test_hostile_method_and_endless_body);
    tcase_add_test(errors, test_non_utf8_header_left_out);
    tcase_add_test(errors, test_non_utf8_query_and_content_type);
    tcase_add_test(pressure, test_produce_refused_503);
    tcase_add_test(pressure, test_delivery_refused_503);
    tcase_add_test(pressure, test_concurrent_waits_each_answered);
    tcase_add_test(pressure, test_late_delivery_after_deadline);
    tcase_add_test(misc, test_draining_refuses_new_webhooks);
    return s;
}

int main(void)
{
    return check_run(gw_server_suite());
}
