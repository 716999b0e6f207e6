/* adm_topics: failures are classified (no broker -> CM_RETRY within the timeout, a refused topic
 * spec -> CM_INVALID), and (with AUREN_TEST_KAFKA_BROKERS, a real broker) creating the topics
 * twice succeeds both times, the second run finding them. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "adm.h"
#include "../check_run.h"

START_TEST(test_unreachable_broker_is_retry)
{
    struct adm_topics_opts o = { .brokers = "127.0.0.1:1", .partitions = 1, .replication = 1,
                                 .timeout_ms = 1500 };
    struct cm_err err = { { 0 } };
    int64_t t0 = cm_mono_us();

    ck_assert_int_eq(adm_topics_create(&o, stdout, &err), CM_RETRY);
    ck_assert_ptr_nonnull(strstr(err.msg, "topics:"));
    ck_assert_int_lt(cm_mono_us() - t0, 10 * 1000 * 1000);
}
END_TEST

START_TEST(test_bad_partition_count_is_invalid)
{
    struct adm_topics_opts o = { .brokers = "127.0.0.1:1", .partitions = -2, .replication = 1,
                                 .timeout_ms = 1500 };
    struct cm_err err = { { 0 } };

    ck_assert_int_eq(adm_topics_create(&o, stdout, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "biometric.raw.v1"));
}
END_TEST

START_TEST(test_create_twice_on_real_broker)
{
    struct adm_topics_opts o = { .brokers = getenv("AUREN_TEST_KAFKA_BROKERS"), .partitions = 6,
                                 .replication = 1, .timeout_ms = 20000 };
    struct cm_err err = { { 0 } };
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    ck_assert_msg(adm_topics_create(&o, stdout, &err) == CM_OK, "%s", err.msg);
    out = open_memstream(&text, &len);
    ck_assert_msg(adm_topics_create(&o, out, &err) == CM_OK, "%s", err.msg);
    fclose(out);
    ck_assert_ptr_nonnull(strstr(text, "exists  biometric.raw.v1 ("));
    ck_assert_ptr_nonnull(strstr(text, "exists  biometric.normalized.v1 ("));
    ck_assert_ptr_nonnull(strstr(text, "exists  biometric.fetch.v1 ("));
    ck_assert_ptr_nonnull(strstr(text, "exists  biometric.dlq.v1 ("));
    ck_assert_ptr_null(strstr(text, "(-1 partitions)"));
    free(text);
}
END_TEST

static char *create_into_text(const struct adm_topics_opts *o, enum cm_rc want,
                              struct cm_err *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    memset(err, 0, sizeof(*err));
    ck_assert_msg(adm_topics_create(o, out, err) == want, "%s", err->msg);
    fclose(out);
    return text;
}

/* Settings refused before anything is sent: a timeout the admin API does not take, a client
 * librdkafka will not create, a property it does not know. */
START_TEST(test_refused_settings_are_invalid)
{
    struct adm_topics_opts o = { .brokers = "127.0.0.1:1", .partitions = 1, .replication = 1,
                                 .timeout_ms = -5 };
    struct cm_err err;
    char *text;

    text = create_into_text(&o, CM_INVALID, &err);
    ck_assert_msg(strstr(err.msg, "topics: timeout:") != NULL, "%s", err.msg);
    free(text);

    o.timeout_ms = 1500;
    ck_assert_int_eq(setenv("KAFKA_ENABLE_IDEMPOTENCE", "true", 1), 0);
    ck_assert_int_eq(setenv("KAFKA_ACKS", "1", 1), 0);
    text = create_into_text(&o, CM_INVALID, &err);
    unsetenv("KAFKA_ENABLE_IDEMPOTENCE");
    unsetenv("KAFKA_ACKS");
    ck_assert_msg(strstr(err.msg, "topics: cannot create client:") != NULL, "%s", err.msg);
    free(text);

    ck_assert_int_eq(setenv("KAFKA_NO_SUCH_PROPERTY", "1", 1), 0);
    text = create_into_text(&o, CM_INVALID, &err);
    unsetenv("KAFKA_NO_SUCH_PROPERTY");
    ck_assert_msg(strstr(err.msg, "KAFKA_NO_SUCH_PROPERTY") != NULL, "%s", err.msg);
    free(text);
}
END_TEST

static Suite *adm_topics_suite(void)
{
    Suite *s = suite_create("adm_topics");
    TCase *tc = tcase_create("failures");
    const char *brokers = getenv("AUREN_TEST_KAFKA_BROKERS");

    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_unreachable_broker_is_retry);
    tcase_add_test(tc, test_bad_partition_count_is_invalid);
    tcase_add_test(tc, test_refused_settings_are_invalid);
    suite_add_tcase(s, tc);
    if (brokers != NULL && brokers[0] != '\0') {
        tc = tcase_create("broker");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_create_twice_on_real_broker);
        suite_add_tcase(s, tc);
    } else {
        fprintf(stderr, "adm_topics: AUREN_TEST_KAFKA_BROKERS unset, broker case skipped\n");
    }
    return s;
}

int main(void)
{
    return check_run(adm_topics_suite());
}
