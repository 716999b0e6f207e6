/* The common library's failure paths. This binary is linked with -Wl,--wrap for malloc, calloc,
 * realloc, getrandom, gethostname and MHD_create_response_from_buffer: each __wrap_ fails the call
 * when a test armed it and otherwise calls the real one. Out-of-memory, a failing kernel random
 * source and a failed assertion abort the process: those cases run in Check's forked child (they
 * are left out when CK_FORK=no), whose SIGABRT handler exits with ABORTED so that the coverage
 * counters are written and the abort is asserted as the exit status. The rest covers the edges a
 * caller can reach without faults: rc names, escapes, label overflow, vault limits, canonical
 * schema refusals, KAFKA_* passthrough errors. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cm/buf.h"
#include "cm/cfg.h"
#include "cm/common.h"
#include "cm/httpd.h"
#include "cm/kafka.h"
#include "cm/log.h"
#include "cm/metrics.h"
#include "cm/records.h"
#include "cm/vault.h"
#include "../check_run.h"

#define ABORTED 42

/* ---- fault injection ---- */

static int fail_malloc, fail_calloc, fail_realloc, fail_hostname, fail_response;
static int getrandom_errno[4];
static int getrandom_faults;

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
ssize_t __real_getrandom(void *buf, size_t n, unsigned int flags);
ssize_t __wrap_getrandom(void *buf, size_t n, unsigned int flags);
int __real_gethostname(char *name, size_t len);
int __wrap_gethostname(char *name, size_t len);
struct MHD_Response *__real_MHD_create_response_from_buffer(size_t size, void *buffer,
                                                            enum MHD_ResponseMemoryMode mode);
struct MHD_Response *__wrap_MHD_create_response_from_buffer(size_t size, void *buffer,
                                                            enum MHD_ResponseMemoryMode mode);

void *__wrap_malloc(size_t n)
{
    if (fail_malloc > 0) {
        fail_malloc--;
        return NULL;
    }
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_calloc > 0) {
        fail_calloc--;
        return NULL;
    }
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_realloc > 0) {
        fail_realloc--;
        return NULL;
    }
    return __real_realloc(p, n);
}

ssize_t __wrap_getrandom(void *buf, size_t n, unsigned int flags)
{
    if (getrandom_faults > 0) {
        errno = getrandom_errno[--getrandom_faults];
        return -1;
    }
    return __real_getrandom(buf, n, flags);
}

int __wrap_gethostname(char *name, size_t len)
{
    if (fail_hostname > 0) {
        fail_hostname--;
        errno = ENAMETOOLONG;
        return -1;
    }
    return __real_gethostname(name, len);
}

struct MHD_Response *__wrap_MHD_create_response_from_buffer(size_t size, void *buffer,
                                                            enum MHD_ResponseMemoryMode mode)
{
    if (__atomic_load_n(&fail_response, __ATOMIC_SEQ_CST) > 0) {
        __atomic_fetch_sub(&fail_response, 1, __ATOMIC_SEQ_CST);
        return NULL;
    }
    return __real_MHD_create_response_from_buffer(size, buffer, mode);
}

static void on_abort(int sig)
{
    (void)sig;
    /* Not async-signal-safe, on purpose: the forked test child ends here, and exit() (unlike
     * _exit) writes its coverage counters. */
    /* NOLINTNEXTLINE(bugprone-signal-handler,cert-sig30-c): intended, see above */
    exit(ABORTED);
}

static void setup(void)
{
    cm_log_init("common-fault-test");
    signal(SIGABRT, on_abort);
}

static void teardown(void)
{
    signal(SIGABRT, SIG_DFL);
    fail_malloc = fail_calloc = fail_realloc = fail_hostname = fail_response = 0;
    getrandom_faults = 0;
}

/* ---- aborts (forked only) ---- */

START_TEST(test_malloc_failure_aborts)
{
    fail_malloc = 1;
    free(cm_xmalloc(16));
}
END_TEST

START_TEST(test_calloc_failure_aborts)
{
    fail_calloc = 1;
    free(cm_xcalloc(2, 8));
}
END_TEST

START_TEST(test_realloc_failure_aborts)
{
    void *p = cm_xmalloc(8);

    fail_realloc = 1;
    p = cm_xrealloc(p, 64);
    free(p);
}
END_TEST

START_TEST(test_random_source_failure_aborts)
{
    uint8_t b[8];

    getrandom_errno[0] = ENOSYS;
    getrandom_faults = 1;
    cm_random_bytes(b, sizeof(b));
}
END_TEST

START_TEST(test_assert_failure_aborts)
{
    cm_assert_fail("1 == 2", "common_fault_test.c", 1);
}
END_TEST

/* ---- without faults, or with faults that do not abort ---- */

START_TEST(test_rc_names_and_string_edges)
{
    char out[4];

    ck_assert_str_eq(cm_rc_str(CM_OK), "ok");
    ck_assert_str_eq(cm_rc_str(CM_INVALID), "invalid");
    ck_assert_str_eq(cm_rc_str(CM_RETRY), "retry");
    ck_assert_str_eq(cm_rc_str(CM_FATAL), "fatal");
    ck_assert_str_eq(cm_rc_str((enum cm_rc)99), "unknown");
    ck_assert(cm_strlcpy(out, "", 0));
    ck_assert(!cm_strlcpy(out, "a", 0));
    ck_assert(!cm_pct_decode("", 0, false, out, 0));
}
END_TEST

/* An interrupted getrandom is retried, not an abort. */
START_TEST(test_random_eintr_retried)
{
    uint8_t b[32] = {0};
    uint8_t zero[32] = {0};

    getrandom_errno[0] = EINTR;
    getrandom_errno[1] = EINTR;
    getrandom_faults = 2;
    cm_random_bytes(b, sizeof(b));
    ck_assert_int_eq(getrandom_faults, 0);
    ck_assert(memcmp(b, zero, sizeof(b)) != 0);
}
END_TEST

/* Read what `fn` writes to stderr (the log's destination), through a temporary file. */
static void capture_stderr(void (*fn)(void), char *out, size_t cap)
{
    char path[] = "/tmp/common_fault_log.XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    ssize_t n;
    size_t got = 0;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(saved, 0);
    unlink(path);
    dup2(fd, STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    while (got + 1 < cap && (n = read(fd, out + got, cap - 1 - got)) > 0) {
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
}

static void log_escapes(void)
{
    setenv("LOG_LEVEL", "DEBUG", 1);
    cm_log_init("common-fault-test");
    unsetenv("LOG_LEVEL");
    cm_log_debug("test.escape", "q=\" b=\\ c=\x01 d=\x7f");
}

/* LOG_LEVEL is matched without case; quotes, backslashes and control bytes are escaped. */
START_TEST(test_log_level_and_escapes)
{
    char out[4096];

    capture_stderr(log_escapes, out, sizeof(out));
    ck_assert_ptr_nonnull(strstr(out, "\"level\":\"debug\""));
    ck_assert_ptr_nonnull(strstr(out, "q=\\\" b=\\\\ c=\\u0001 d=\\u007f"));
    cm_log_level = CM_LOG_INFO;
}
END_TEST

static void kafka_logs(void)
{
    struct cm_err err = {{0}};
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    char errstr[256];

    setenv("LOG_LEVEL", "debug", 1);
    cm_log_init("common-fault-test");
    unsetenv("LOG_LEVEL");
    conf = cm_kafka_conf_new("127.0.0.1:1", &err);
    ck_assert_ptr_nonnull(conf);
    /* A consumer property on a producer: librdkafka warns (level 4) at creation; "debug" makes
     * it log at level 7. */
    ck_assert_int_eq(cm_kafka_set(conf, "fetch.wait.max.ms", "100", &err), CM_OK);
    ck_assert_int_eq(cm_kafka_set(conf, "debug", "generic", &err), CM_OK);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(rk);
    rd_kafka_destroy(rk);
    cm_log_level = CM_LOG_INFO;
}

/* librdkafka's log levels map onto ours. */
START_TEST(test_kafka_log_levels)
{
    static char out[1 << 16];

    capture_stderr(kafka_logs, out, sizeof(out));
    ck_assert_ptr_nonnull(strstr(out, "\"level\":\"warn\",\"component\":\"common-fault-test\","
                                      "\"event\":\"kafka.log\",\"msg\":\"fac=CONFWARN"));
    ck_assert_ptr_nonnull(strstr(out, "\"level\":\"debug\",\"component\":\"common-fault-test\","
                                      "\"event\":\"kafka.log\""));
}
END_TEST

/* KAFKA_FOO__BAR names foo_bar (no such property: refused, naming the variable); an overlong
 * variable name is ignored; the instance id falls back to "localhost" without a hostname. */
START_TEST(test_kafka_env_and_instance_id)
{
    struct cm_err err = {{0}};
    rd_kafka_conf_t *conf;
    char longname[200];
    char id[128];

    ck_assert_int_eq(cm_kafka_classify(RD_KAFKA_RESP_ERR_NO_ERROR), CM_OK);
    setenv("KAFKA_NO__SUCH", "1", 1);
    ck_assert_ptr_null(cm_kafka_conf_new("127.0.0.1:1", &err));
    unsetenv("KAFKA_NO__SUCH");
    ck_assert_ptr_nonnull(strstr(err.msg, "KAFKA_NO__SUCH"));
    ck_assert_ptr_nonnull(strstr(err.msg, "(no_such)"));

    memset(longname, 'X', sizeof(longname) - 1);
    memcpy(longname, "KAFKA_", 6);
    longname[sizeof(longname) - 1] = '\0';
    setenv(longname, "1", 1);
    conf = cm_kafka_conf_new("127.0.0.1:1", &err);
    unsetenv(longname);
    ck_assert_ptr_nonnull(conf);
    rd_kafka_conf_destroy(conf);

    unsetenv("CM_FAULT_TEST_INSTANCE");
    fail_hostname = 1;
    cm_kafka_instance_id("CM_FAULT_TEST_INSTANCE", "auren", "grp", id, sizeof(id));
    ck_assert_str_eq(id, "auren-grp-localhost");
}
END_TEST

/* A NULL label value is the empty label; past 2048 series new label sets share "other" (or,
 * without one, the last series); label values and help text are escaped; infinities and NaN use
 * Prometheus' spelling. */
START_TEST(test_metrics_edges)
{
    struct cm_metric *c = cm_metric_counter("auren_fault_test_total", "Help with \\ and\nnewline",
                                            1, "reason");
    struct cm_metric *c2 = cm_metric_counter("auren_fault_test2_total", "h", 1, "reason");
    struct cm_metric *g = cm_metric_gauge("auren_fault_test_gauge", "g", 1, "kind");
    struct cm_buf b;
    char label[32];

    cm_metric_inc(c, "other");
    cm_metric_inc(c, (const char *)NULL);
    cm_metric_inc(c, "a\"b\\c\nd");
    for (int i = 0; i <= 2100; i++) { /* l0..l2044 fill the 2048 series */
        snprintf(label, sizeof(label), "l%d", i);
        cm_metric_inc(c, label);
    }
    for (int i = 0; i <= 2048; i++) { /* l2048 goes to the last series, l2047 */
        snprintf(label, sizeof(label), "l%d", i);
        cm_metric_inc(c2, label);
    }
    cm_metric_set(g, INFINITY, "pinf");
    cm_metric_set(g, -INFINITY, "ninf");
    cm_metric_set(g, NAN, "nan");
    cm_buf_init(&b, 0);
    cm_metrics_render(&b);
    ck_assert_int_eq(cm_buf_terminate(&b), CM_OK);
    ck_assert_ptr_nonnull(strstr((char *)b.data, "auren_fault_test_total{reason=\"\"} 1\n"));
    ck_assert_ptr_nonnull(strstr((char *)b.data,
                                 "auren_fault_test_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
    ck_assert_ptr_nonnull(strstr((char *)b.data, "Help with \\\\ and\\nnewline"));
    ck_assert_ptr_nonnull(strstr((char *)b.data, "auren_fault_test_total{reason=\"l2044\"} 1\n"));
    ck_assert_ptr_null(strstr((char *)b.data, "auren_fault_test_total{reason=\"l2045\"}"));
    ck_assert_ptr_nonnull(strstr((char *)b.data, "auren_fault_test_total{reason=\"other\"} 57\n"));
    ck_assert_ptr_nonnull(strstr((char *)b.data, "auren_fault_test2_total{reason=\"l2047\"} 2\n"));
    ck_assert_ptr_null(strstr((char *)b.data, "auren_fault_test2_total{reason=\"l2048\"}"));
    ck_assert_ptr_nonnull(strstr((char *)b.data, "auren_fault_test_gauge{kind=\"pinf\"} +Inf\n"));
    ck_assert_ptr_nonnull(strstr((char *)b.data, "auren_fault_test_gauge{kind=\"ninf\"} -Inf\n"));
    ck_assert_ptr_nonnull(strstr((char *)b.data, "auren_fault_test_gauge{kind=\"nan\"} NaN\n"));
    cm_buf_fini(&b);
    cm_buf_fini(NULL);
    cm_metrics_reset();
}
END_TEST

/* Vault limits: key ids, key encoding, key count, and an output buffer that is too small. */
START_TEST(test_vault_limits)
{
    static const char *const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    struct cm_err err = {{0}};
    struct cm_vault *v;
    struct cm_buf out, sealed;
    struct cm_vault_aad aad = {"whoop", "vu", "u", "access_token"};
    char spec[4096];
    size_t o = 0;

    snprintf(spec, sizeof(spec), "%s:%s", "k0123456789012345678901234567890123", key);
    ck_assert_ptr_null(cm_vault_new(spec, &err)); /* kid longer than 32 */
    ck_assert_ptr_nonnull(strstr(err.msg, "expected kid:base64key"));
    ck_assert_ptr_null(cm_vault_new("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNk*WY=", &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "base64 of 32 bytes"));
    ck_assert_ptr_null(cm_vault_new("", &err));
    ck_assert_str_eq(err.msg, "no keys given");
    for (int i = 0; i <= CM_VAULT_MAX_KEYS; i++) {
        o += (size_t)snprintf(spec + o, sizeof(spec) - o, "%sk%d:%s", i ? "," : "", i, key);
    }
    ck_assert_ptr_null(cm_vault_new(spec, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "more than"));

    snprintf(spec, sizeof(spec), "k1:%s", key);
    v = cm_vault_new(spec, &err);
    ck_assert_msg(v != NULL, "%s", err.msg);
    cm_buf_init(&out, 16); /* smaller than nonce + tag */
    ck_assert_int_eq(cm_vault_seal(v, &aad, "secret-token", 12, &out, &err), CM_INVALID);
    ck_assert_str_eq(err.msg, "vault: output too large");
    cm_buf_fini(&out);
    cm_buf_init(&sealed, 0);
    ck_assert_int_eq(cm_vault_seal(v, &aad, "secret-token", 12, &sealed, &err), CM_OK);
    cm_buf_init(&out, 4);
    ck_assert_int_eq(cm_vault_open(v, "k1", &aad, sealed.data, sealed.len, &out, &err),
                     CM_INVALID);
    ck_assert_str_eq(err.msg, "vault: output too large");
    cm_buf_fini(&out);
    cm_buf_fini(&sealed);
    cm_vault_free(v);
}
END_TEST

/* Schemas the canonical form refuses, each with its reason. */
START_TEST(test_canonical_form_refusals)
{
    static const struct {
        const char *schema;
        const char *reason;
    } bad[] = {
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"1x\",\"type\":\"int\"}]}",
         "invalid name"},
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"nosuch\"}]}",
         "undefined type name"},
        {"{\"type\":\"enum\",\"name\":\"E\"}", "without a symbols array"},
        {"{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"ok\",\"1x\"]}", "symbol 1 is invalid"},
        {"{\"type\":\"fixed\",\"name\":\"F\",\"size\":\"12x\"}", "without a valid size"},
        {"{\"type\":\"record\",\"fields\":[]}", "record without a name"},
        {"{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a..b\",\"fields\":[]}",
         "invalid namespace"},
    };
    struct cm_err err = {{0}};
    char *canon;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        ck_assert_ptr_null(cm_avro_canonical_form(bad[i].schema, &err));
        ck_assert_msg(strstr(err.msg, bad[i].reason) != NULL, "%s: %s", bad[i].schema, err.msg);
    }
    /* The empty namespace is the null namespace; a primitive named by reference stays short. */
    canon = cm_avro_canonical_form("{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"\","
                                   "\"fields\":[{\"name\":\"a\",\"type\":{\"type\":\"array\","
                                   "\"items\":\"long\"}}]}",
                                   &err);
    ck_assert_msg(canon != NULL, "%s", err.msg);
    ck_assert_str_eq(canon, "{\"name\":\"R\",\"type\":\"record\",\"fields\":[{\"name\":\"a\","
                            "\"type\":{\"type\":\"array\",\"items\":\"long\"}}]}");
    free(canon);
    /* Inside namespace "ns" a short name defined in the null namespace still resolves. */
    canon = cm_avro_canonical_form(
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
        "{\"name\":\"a\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}},"
        "{\"name\":\"b\",\"type\":{\"type\":\"record\",\"name\":\"S\",\"namespace\":\"ns\","
        "\"fields\":[{\"name\":\"c\",\"type\":\"E\"}]}}]}",
        &err);
    ck_assert_msg(canon != NULL, "%s", err.msg);
    ck_assert_str_eq(canon, "{\"name\":\"R\",\"type\":\"record\",\"fields\":["
                            "{\"name\":\"a\",\"type\":{\"name\":\"E\",\"type\":\"enum\","
                            "\"symbols\":[\"X\"]}},{\"name\":\"b\",\"type\":{\"name\":\"ns.S\","
                            "\"type\":\"record\",\"fields\":[{\"name\":\"c\",\"type\":\"E\"}]}}]}");
    free(canon);
}
END_TEST

/* The ops server when MHD cannot build a response: the connection is closed, no answer. */
START_TEST(test_httpd_response_failure)
{
    struct cm_err err = {{0}};
    struct cm_httpd *h = cm_httpd_start(0, NULL, NULL, &err);
    static const char *const paths[] = {"/healthz", "/metrics"};

    ck_assert_msg(h != NULL, "%s", err.msg);
    ck_assert_uint_gt(cm_httpd_port(h), 0);
    for (size_t i = 0; i < 2; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(cm_httpd_port(h)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        char req[128];
        char buf[256];
        int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        __atomic_store_n(&fail_response, 1, __ATOMIC_SEQ_CST);
        ck_assert_int_eq(write(fd, req, (size_t)len), len);
        ck_assert_int_le(read(fd, buf, sizeof(buf)), 0); /* closed without a response */
        close(fd);
    }
    cm_httpd_stop(h);
    cm_httpd_stop(NULL);
}
END_TEST

/* A NAME_FILE over 64 KiB is refused (naming the variable), and a size whose suffix overflows
 * size_t is invalid rather than wrapped. */
START_TEST(test_cfg_limits)
{
    struct tcfg {
        size_t size;
    } c = {0};
    static const struct cm_cfg_field fields[] = {
        {.env = "CM_FAULT_SIZE", .type = CM_CFG_SIZE, .def = "1",
         .off = offsetof(struct tcfg, size)},
        {0},
    };
    struct cm_err err = {{0}};
    char path[] = "/tmp/common_fault_cfg.XXXXXX";
    int fd = mkstemp(path);
    static char big[70 * 1024];

    ck_assert_int_ge(fd, 0);
    memset(big, 'x', sizeof(big));
    ck_assert_int_eq(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
    close(fd);
    setenv("CM_FAULT_SECRET_FILE", path, 1);
    ck_assert_ptr_null(cm_cfg_getenv("CM_FAULT_SECRET", &err));
    unsetenv("CM_FAULT_SECRET_FILE");
    unlink(path);
    ck_assert_ptr_nonnull(strstr(err.msg, "CM_FAULT_SECRET_FILE: file larger than"));

    setenv("CM_FAULT_SIZE", "17179869184g", 1);
    ck_assert_int_eq(cm_cfg_load(fields, &c, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "CM_FAULT_SIZE"));
    setenv("CM_FAULT_SIZE", "2g", 1);
    ck_assert_int_eq(cm_cfg_load(fields, &c, &err), CM_OK);
    unsetenv("CM_FAULT_SIZE");
    ck_assert_uint_eq(c.size, (size_t)2 << 30);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("common_fault");
    TCase *edges = tcase_create("edges");
    SRunner *sr = srunner_create(s);

    tcase_add_checked_fixture(edges, setup, teardown);
    /* Aborting cases need Check's fork (CK_FORK=no runs them all in one process). */
    if (srunner_fork_status(sr) != CK_NOFORK) {
        TCase *aborts = tcase_create("aborts");
        tcase_add_checked_fixture(aborts, setup, teardown);
        tcase_add_exit_test(aborts, test_malloc_failure_aborts, ABORTED);
        tcase_add_exit_test(aborts, test_calloc_failure_aborts, ABORTED);
        tcase_add_exit_test(aborts, test_realloc_failure_aborts, ABORTED);
        tcase_add_exit_test(aborts, test_random_source_failure_aborts, ABORTED);
        tcase_add_exit_test(aborts, test_assert_failure_aborts, ABORTED);
        suite_add_tcase(s, aborts);
    }
    tcase_add_test(edges, test_rc_names_and_string_edges);
    tcase_add_test(edges, test_random_eintr_retried);
    tcase_add_test(edges, test_log_level_and_escapes);
    tcase_add_test(edges, test_kafka_log_levels);
    tcase_add_test(edges, test_kafka_env_and_instance_id);
    tcase_add_test(edges, test_metrics_edges);
    tcase_add_test(edges, test_vault_limits);
    tcase_add_test(edges, test_canonical_form_refusals);
    tcase_add_test(edges, test_httpd_response_failure);
    tcase_add_test(edges, test_cfg_limits);
    suite_add_tcase(s, edges);
    return check_run_runner(sr);
}
