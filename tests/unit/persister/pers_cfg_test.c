/* pers_cfg: the defaults of the contract and the rejection of bad values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pers_cfg.h"
#include "persister_suites.h"

static const char *const vars[] = { "KAFKA_BROKERS", "DATABASE_URL", "HTTP_PORT",
                                    "PERSISTER_BATCH_MAX", "PERSISTER_BATCH_MS",
                                    "PERSISTER_GROUP_ID" };

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        char name[64];
        unsetenv(vars[i]);
        snprintf(name, sizeof(name), "%s_FILE", vars[i]);
        unsetenv(name);
    }
}

START_TEST(test_cfg_defaults)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};

    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(cm_cfg_load(pers_cfg_fields, &cfg, &err), CM_OK);
    ck_assert_str_eq(cfg.brokers, "127.0.0.1:9092");
    ck_assert_str_eq(cfg.database_url, "postgresql://auren:auren@127.0.0.1:5432/auren");
    ck_assert_int_eq(cfg.http_port, 9102);
    ck_assert_int_eq(cfg.batch_max, 2000);
    ck_assert_int_eq(cfg.batch_ms, 100);
    ck_assert_str_eq(cfg.group_id, "auren-persister");
    ck_assert_int_eq(pers_cfg_check(&cfg, &err), CM_OK);
    pers_cfg_fini(&cfg);
}
END_TEST

START_TEST(test_cfg_overrides)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};

    setenv("PERSISTER_BATCH_MAX", "500", 1);
    setenv("PERSISTER_BATCH_MS", "250", 1);
    setenv("PERSISTER_GROUP_ID", "g2", 1);
    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(cm_cfg_load(pers_cfg_fields, &cfg, &err), CM_OK);
    ck_assert_int_eq(cfg.batch_max, 500);
    ck_assert_int_eq(cfg.batch_ms, 250);
    ck_assert_str_eq(cfg.group_id, "g2");
    pers_cfg_fini(&cfg);
}
END_TEST

START_TEST(test_cfg_rejects_zero_batch)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};

    setenv("PERSISTER_BATCH_MAX", "0", 1);
    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(cm_cfg_load(pers_cfg_fields, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "PERSISTER_BATCH_MAX"));
    pers_cfg_fini(&cfg);
}
END_TEST

START_TEST(test_cfg_rejects_bad_port)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};

    setenv("HTTP_PORT", "70000", 1);
    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(cm_cfg_load(pers_cfg_fields, &cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "HTTP_PORT"));
    pers_cfg_fini(&cfg);
}
END_TEST

START_TEST(test_cfg_rejects_empty_group)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};

    setenv("PERSISTER_GROUP_ID", "", 1);
    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(cm_cfg_load(pers_cfg_fields, &cfg, &err), CM_OK);
    ck_assert_int_eq(pers_cfg_check(&cfg, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "PERSISTER_GROUP_ID"));
    pers_cfg_fini(&cfg);
    pers_cfg_fini(NULL); /* NULL-safe */
}
END_TEST

START_TEST(test_cfg_database_url_is_secret)
{
    struct pers_cfg cfg;
    struct cm_err err = {{0}};
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    setenv("DATABASE_URL", "postgresql://u:hunter2@db/x", 1);
    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(cm_cfg_load(pers_cfg_fields, &cfg, &err), CM_OK);
    f = open_memstream(&text, &len);
    cm_cfg_print(pers_cfg_fields, &cfg, f);
    fclose(f);
    ck_assert_ptr_null(strstr(text, "hunter2"));
    ck_assert_ptr_nonnull(strstr(text, "DATABASE_URL=***"));
    free(text);
    pers_cfg_fini(&cfg);
}
END_TEST

Suite *pers_cfg_suite(void)
{
    Suite *s = suite_create("pers_cfg");
    TCase *tc = tcase_create("load");

    tcase_add_checked_fixture(tc, clear_env, clear_env);
    tcase_add_test(tc, test_cfg_defaults);
    tcase_add_test(tc, test_cfg_overrides);
    tcase_add_test(tc, test_cfg_rejects_zero_batch);
    tcase_add_test(tc, test_cfg_rejects_bad_port);
    tcase_add_test(tc, test_cfg_rejects_empty_group);
    tcase_add_test(tc, test_cfg_database_url_is_secret);
    suite_add_tcase(s, tc);
    return s;
}
