/* Runs the normalization layer's Check suites (CK_RUN_SUITE picks one, as ctest does). */
#include <stdlib.h>
#include <string.h>

#include "proc_suites.h"
#include "../check_run.h"

struct cm_raw_webhook proc_test_raw(const char *vendor, const char *body, size_t len)
{
    struct cm_raw_webhook raw;

    memset(&raw, 0, sizeof(raw));
    raw.event_id = (char *)"00000000000000000000000000000000";
    raw.vendor = (char *)vendor;
    raw.kind = CM_RAW_WEBHOOK;
    raw.method = (char *)"POST";
    raw.path = (char *)"/webhooks/test";
    raw.body = (uint8_t *)body;
    raw.body_len = len;
    return raw;
}

int main(void)
{
    SRunner *sr = srunner_create(proc_norm_suite());

    srunner_add_suite(sr, proc_taxonomy_suite());
    srunner_add_suite(sr, proc_vendors_suite());
    srunner_add_suite(sr, proc_fixtures_suite());
    srunner_add_suite(sr, proc_api_rejects_suite());
    return check_run_runner(sr);
}
