/* A one-broker librdkafka mock cluster for the admin tests (owned by a quiet producer handle). */
#ifndef ADM_TEST_KAFKA_H
#define ADM_TEST_KAFKA_H

#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static inline void adm_test_mock_new(rd_kafka_t **owner, rd_kafka_mock_cluster_t **mc,
                                     const char **boot)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];

    ck_assert_int_eq(rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_ptr_nonnull(*owner);
    *mc = rd_kafka_mock_cluster_new(*owner, 1);
    ck_assert_ptr_nonnull(*mc);
    *boot = rd_kafka_mock_cluster_bootstraps(*mc);
}

static inline void adm_test_mock_free(rd_kafka_t *owner, rd_kafka_mock_cluster_t *mc)
{
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
}

#endif
