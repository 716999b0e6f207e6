/* Unit tests of the common basics: config loading (defaults, _FILE, errors naming the variable,
 * secrets masked), bounded buffers, metrics exposition, constant-time compare, Kafka property
 * passthrough. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm/buf.h"
#include "cm/cfg.h"
#include "cm/common.h"
#include "cm/kafka.h"
#include "cm/metrics.h"
#include "../check_run.h"

struct test_cfg {
    char *name;
    char *secret;
    long port;
    size_t max_body;
    bool flag;
};

static const struct cm_cfg_field test_fields[] = {
    {.env = "T_NAME", .type = CM_CFG_STR, .def = "dflt", .off = offsetof(struct test_cfg, name),
     .doc = "a name"},
    {.env = "T_SECRET", .type = CM_CFG_STR, .flags = CM_CFG_SECRET,
     .off = offsetof(struct test_cfg, secret), .doc = "a secret"},
    {.env = "T_PORT", .type = CM_CFG_INT, .def = "8080", .min = 0, .max = 65535,
     .off = offsetof(struct test_cfg, port), .doc = "a port"},
    {.env = "T_MAX_BODY", .type = CM_CFG_SIZE, .def = "64k", .min = 1, .max = 1 << 20,
     .off = offsetof(struct test_cfg, max_body), .doc = "a size"},
    {.env = "T_FLAG", .type = CM_CFG_BOOL, .def = "false", .off = offsetof(struct test_cfg, flag),
     .doc = "a flag"},
    {0},
};

static void clear_env(void)
{
    const char *names[] = {"T_NAME", "T_SECRET", "T_PORT", "T_MAX_BODY", "T_FLAG",
                           "T_NAME_FILE", "T_SECRET_FILE", "T_REQ"};
    for (size_t i = 0; i < CM_ARRAY_LEN(names); i++) {
        unsetenv(names[i]);
    }
}

START_TEST(test_cfg_defaults)
{
    struct test_cfg cfg = {0};
    struct cm_err err = {{0}};

    clear_env();
    ck_assert_int_eq(cm_cfg_load(test_fields, &cfg, &err), CM_OK);
    ck_assert_str_eq(cfg.name, "dflt");
    ck_assert_str_eq(cfg.secret, "");
    ck_assert_int_eq(cfg.port, 8080);
    ck_assert_uint_eq(cfg.max_body, 64 * 1024);
    ck_assert(!cfg.flag);
    cm_cfg_free(test_fields, &cfg);
}
END_TEST

START_TEST(test_cfg_values_and_file)
{
    struct test_cfg cfg = {0};
    struct cm_err err = {{0}};
    char path[] = "/tmp/auren-cfg-XXXXXX";
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "s3cret\n", 7), 7);
    close(fd);
    clear_env();
    setenv("T_SECRET_FILE", path, 1);
    setenv("T_PORT", "9101", 1);
    setenv("T_MAX_BODY", "1m", 1);
    setenv("T_FLAG", "yes", 1);
    ck_assert_int_eq(cm_cfg_load(test_fields, &cfg, &err), CM_OK);
    ck_assert_str_eq(cfg.secret, "s3cret");
    ck_assert_int_eq(cfg.port, 9101);
    ck_assert_uint_eq(cfg.max_body, 1024 * 1024);
    ck_assert(cfg.flag);

    char out[512] = {0};
    FILE *f = fmemopen(out, sizeof(out) - 1, "w");
    cm_cfg_print(test_fields, &cfg, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(out, "T_SECRET=***"));
    ck_assert_ptr_null(strstr(out, "s3cret"));
    cm_cfg_free(test_fields, &cfg);
    unlink(path);
}
END_TEST

START_TEST(test_cfg_errors_name_the_variable)
{
    struct test_cfg cfg = {0};
    struct cm_err err = {{0}};

    clear_env();
    setenv("T_PORT", "80a", 1);
    ck_assert_int_eq(cm_cfg_load(test_fields, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "T_PORT"));
    cm_cfg_free(test_fields, &cfg);

    clear_env();
    setenv("T_PORT", "70000", 1);
    ck_assert_int_eq(cm_cfg_load(test_fields, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "T_PORT"));
    cm_cfg_free(test_fields, &cfg);

    clear_env();
    setenv("T_MAX_BODY", "2m", 1);
    ck_assert_int_eq(cm_cfg_load(test_fields, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "T_MAX_BODY"));
    cm_cfg_free(test_fields, &cfg);

    clear_env();
    setenv("T_FLAG", "maybe", 1);
    ck_assert_int_eq(cm_cfg_load(test_fields, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "T_FLAG"));
    cm_cfg_free(test_fields, &cfg);

    clear_env();
    setenv("T_SECRET_FILE", "/nonexistent/auren/secret", 1);
    ck_assert_int_eq(cm_cfg_load(test_fields, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "T_SECRET_FILE"));
    cm_cfg_free(test_fields, &cfg);
    clear_env();
}
END_TEST

START_TEST(test_cfg_required)
{
    static const struct cm_cfg_field req[] = {
        {.env = "T_REQ", .type = CM_CFG_STR, .flags = CM_CFG_REQUIRED, .off = 0, .doc = "needed"},
        {0},
    };
    struct {
        char *req;
    } cfg = {0};
    struct cm_err err = {{0}};

    clear_env();
    ck_assert_int_eq(cm_cfg_load(req, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "T_REQ"));
    setenv("T_REQ", "x", 1);
    ck_assert_int_eq(cm_cfg_load(req, &cfg, &err), CM_OK);
    ck_assert_str_eq(cfg.req, "x");
    cm_cfg_free(req, &cfg);
    clear_env();
}
END_TEST

START_TEST(test_buf_ceiling)
{
    struct cm_buf b;

    cm_buf_init(&b, 8);
    ck_assert_int_eq(cm_buf_append(&b, "12345678", 8), CM_OK);
    ck_assert_int_eq(cm_buf_append(&b, "9", 1), CM_INVALID);
    ck_assert_uint_eq(b.len, 8);
    ck_assert_int_eq(cm_buf_terminate(&b), CM_OK);
    ck_assert_str_eq((char *)b.data, "12345678");
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_buf_printf(&b, "%d-%s", 42, "ab"), CM_OK);
    ck_assert_int_eq(cm_buf_terminate(&b), CM_OK);
    ck_assert_str_eq((char *)b.data, "42-ab");
    ck_assert_int_eq(cm_buf_printf(&b, "%s", "too long text"), CM_INVALID);
    cm_buf_fini(&b);
    cm_buf_fini(&b); /* idempotent */
}
END_TEST

START_TEST(test_ct_equal)
{
    ck_assert(cm_ct_equal("abc", 3, "abc", 3));
    ck_assert(!cm_ct_equal("abc", 3, "abd", 3));
    ck_assert(!cm_ct_equal("abc", 3, "abc\0", 4));
    ck_assert(!cm_ct_equal("", 0, "a", 1));
    ck_assert(cm_ct_equal("", 0, "", 0));
}
END_TEST

START_TEST(test_hex_and_pct_decode)
{
    char out[8];

    ck_assert_int_eq(cm_hex_digit('0'), 0);
    ck_assert_int_eq(cm_hex_digit('f'), 15);
    ck_assert_int_eq(cm_hex_digit('A'), 10);
    ck_assert_int_eq(cm_hex_digit('g'), -1);
    ck_assert_int_eq(cm_hex_digit(0xC3), -1);

    ck_assert(cm_pct_decode("a%2Bb+c", 7, true, out, sizeof(out)));
    ck_assert_str_eq(out, "a+b c");
    ck_assert(cm_pct_decode("a%2Bb+c", 7, false, out, sizeof(out)));
    ck_assert_str_eq(out, "a+b+c");
    ck_assert(cm_pct_decode("", 0, false, out, sizeof(out)));
    ck_assert_str_eq(out, "");
    ck_assert(cm_pct_decode("%41", 3, false, out, sizeof(out)));
    ck_assert_str_eq(out, "A");
    /* truncated and non-hex escapes, a decoded NUL, no room (7 characters + NUL fit in 8) */
    ck_assert(!cm_pct_decode("%4", 2, false, out, sizeof(out)));
    ck_assert(!cm_pct_decode("%", 1, false, out, sizeof(out)));
    ck_assert(!cm_pct_decode("%zz", 3, false, out, sizeof(out)));
    ck_assert(!cm_pct_decode("a%00b", 5, true, out, sizeof(out)));
    ck_assert(cm_pct_decode("1234567", 7, false, out, sizeof(out)));
    ck_assert(!cm_pct_decode("12345678", 8, false, out, sizeof(out)));
    ck_assert(!cm_pct_decode("a", 1, false, out, 0));
}
END_TEST

START_TEST(test_strlcpy_and_ids)
{
    char small[4];
    char id1[33];
    char id2[33];

    ck_assert(!cm_strlcpy(small, "abcdef", sizeof(small)));
    ck_assert_str_eq(small, "abc");
    ck_assert(cm_strlcpy(small, "ab", sizeof(small)));
    cm_random_id(id1);
    cm_random_id(id2);
    ck_assert_uint_eq(strlen(id1), 32);
    ck_assert_str_ne(id1, id2);
    ck_assert_uint_eq(strspn(id1, "0123456789abcdef"), 32);
}
END_TEST

static double seven(void *arg)
{
    (void)arg;
    return 7;
}

START_TEST(test_metrics_exposition)
{
    struct cm_buf b;
    struct cm_metric *c = cm_metric_counter("auren_test_requests_total", "Requests \"seen\"", 2,
                                            "vendor", "status");
    struct cm_metric *g = cm_metric_gauge("auren_test_in_flight", "In flight", 0);
    struct cm_metric *h = cm_metric_histogram("auren_test_duration_seconds", "Durations",
                                              cm_metric_latency_buckets,
                                              cm_metric_latency_nbuckets, 1, "vendor");
    cm_metric_gauge_fn("auren_test_depth", "Depth", seven, NULL);

    cm_metric_inc(c, "whoop", "200");
    cm_metric_inc(c, "whoop", "200");
    cm_metric_add(c, 3, "oura", "401");
    cm_metric_set(g, 5);
    cm_metric_observe(h, 0.003, "whoop");
    cm_metric_observe(h, 20.0, "whoop");
    cm_buf_init(&b, 0);
    cm_metrics_render(&b);
    cm_buf_terminate(&b);
    const char *t = (const char *)b.data;
    ck_assert_ptr_nonnull(strstr(t, "# TYPE auren_test_requests_total counter\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_requests_total{vendor=\"whoop\",status=\"200\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_requests_total{vendor=\"oura\",status=\"401\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_in_flight 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_duration_seconds_bucket{vendor=\"whoop\",le=\"0.0025\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_duration_seconds_bucket{vendor=\"whoop\",le=\"0.005\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_duration_seconds_bucket{vendor=\"whoop\",le=\"+Inf\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_duration_seconds_count{vendor=\"whoop\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "auren_test_depth 7\n"));
    ck_assert_ptr_nonnull(strstr(t, "# HELP auren_test_requests_total Requests \"seen\"\n"));
    cm_buf_fini(&b);
    cm_metrics_reset();
}
END_TEST

START_TEST(test_kafka_env_passthrough)
{
    struct cm_err err = {{0}};
    rd_kafka_conf_t *conf;
    char val[64];
    char before[64];
    size_t n = sizeof(val);

    setenv("KAFKA_LINGER_MS", "7", 1);
    setenv("KAFKA_TRANSACTIONAL_ID", "auren-processor-x", 1);
    conf = cm_kafka_conf_new("127.0.0.1:1", &err);
    ck_assert_ptr_nonnull(conf);
    ck_assert_int_eq(rd_kafka_conf_get(conf, "linger.ms", val, &n), RD_KAFKA_CONF_OK);
    ck_assert_str_eq(val, "7");
    /* The per-instance transactional id is for the processor's own producer only. */
    n = sizeof(val);
    ck_assert(rd_kafka_conf_get(conf, "transactional.id", val, &n) != RD_KAFKA_CONF_OK ||
              val[0] == '\0');
    unsetenv("KAFKA_TRANSACTIONAL_ID");
    /* A binary's tunable default yields to the operator's KAFKA_* value, and applies without it. */
    ck_assert_int_eq(cm_kafka_set_default(conf, "linger.ms", "50", &err), CM_OK);
    n = sizeof(val);
    ck_assert_int_eq(rd_kafka_conf_get(conf, "linger.ms", val, &n), RD_KAFKA_CONF_OK);
    ck_assert_str_eq(val, "7");
    ck_assert_int_eq(cm_kafka_set_default(conf, "retry.backoff.ms", "10", &err), CM_OK);
    n = sizeof(val);
    ck_assert_int_eq(rd_kafka_conf_get(conf, "retry.backoff.ms", val, &n), RD_KAFKA_CONF_OK);
    ck_assert_str_eq(val, "10");
    /* with the variable set (one that cm_kafka_conf_new did not see), the default
     * leaves the property as it was */
    setenv("KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "none", 1);
    n = sizeof(before);
    ck_assert_int_eq(rd_kafka_conf_get(conf, "ssl.endpoint.identification.algorithm", before, &n),
                     RD_KAFKA_CONF_OK);
    ck_assert_int_eq(cm_kafka_set_default(conf, "ssl.endpoint.identification.algorithm",
                                          strcmp(before, "https") == 0 ? "none" : "https", &err),
                     CM_OK);
    n = sizeof(val);
    ck_assert_int_eq(rd_kafka_conf_get(conf, "ssl.endpoint.identification.algorithm", val, &n),
                     RD_KAFKA_CONF_OK);
    ck_assert_str_eq(val, before);
    unsetenv("KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM");
    ck_assert_int_eq(cm_kafka_set_default(conf, "no.such.property", "1", &err), CM_INVALID);
    rd_kafka_conf_destroy(conf);

    setenv("KAFKA_NO_SUCH_PROPERTY", "1", 1);
    conf = cm_kafka_conf_new("127.0.0.1:1", &err);
    ck_assert_ptr_null(conf);
    ck_assert_ptr_nonnull(strstr(err.msg, "KAFKA_NO_SUCH_PROPERTY"));
    unsetenv("KAFKA_NO_SUCH_PROPERTY");
    unsetenv("KAFKA_LINGER_MS");
    ck_assert_int_eq(cm_kafka_classify(RD_KAFKA_RESP_ERR__QUEUE_FULL), CM_RETRY);
    ck_assert_int_eq(cm_kafka_classify(RD_KAFKA_RESP_ERR__FATAL), CM_FATAL);
    ck_assert_int_eq(cm_kafka_classify(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), CM_INVALID);
}
END_TEST

START_TEST(test_kafka_stats_brokers_up)
{
    static const char up_and_down[] =
        "{\"brokers\":{\"GroupCoordinator\":{\"state\":\"UP\",\"source\":\"logical\"},"
        "\"a:9092/1\":{\"state\":\"UP\",\"source\":\"learned\"},"
        "\"b:9092/2\":{\"state\":\"DOWN\",\"source\":\"learned\"},"
        "\"c:9092/bootstrap\":{\"state\":\"CONNECT\",\"source\":\"configured\"}}}";
    static const char all_down[] =
        "{\"brokers\":{\"a:9092/1\":{\"state\":\"TRY_CONNECT\",\"source\":\"learned\"}}}";

    ck_assert_int_eq(cm_kafka_stats_brokers_up(up_and_down, strlen(up_and_down)), 1);
    ck_assert_int_eq(cm_kafka_stats_brokers_up(all_down, strlen(all_down)), 0);
    ck_assert_int_eq(cm_kafka_stats_brokers_up("{}", 2), -1);
    ck_assert_int_eq(cm_kafka_stats_brokers_up("{", 1), -1);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *cfg = tcase_create("cfg");
    TCase *basics = tcase_create("basics");
    TCase *metrics = tcase_create("metrics");
    TCase *kafka = tcase_create("kafka");

    tcase_add_test(cfg, test_cfg_defaults);
    tcase_add_test(cfg, test_cfg_values_and_file);
    tcase_add_test(cfg, test_cfg_errors_name_the_variable);
    tcase_add_test(cfg, test_cfg_required);
    tcase_add_test(basics, test_buf_ceiling);
    tcase_add_test(basics, test_ct_equal);
    tcase_add_test(basics, test_hex_and_pct_decode);
    tcase_add_test(basics, test_strlcpy_and_ids);
    tcase_add_test(metrics, test_metrics_exposition);
    tcase_add_test(kafka, test_kafka_env_passthrough);
    tcase_add_test(kafka, test_kafka_stats_brokers_up);
    suite_add_tcase(s, cfg);
    suite_add_tcase(s, basics);
    suite_add_tcase(s, metrics);
    suite_add_tcase(s, kafka);
    return s;
}

int main(void)
{
    return check_run(common_suite());
}
