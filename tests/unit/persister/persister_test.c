/* Runs the persister's unit suites (configuration, COPY encoding, batch bookkeeping). */
#include <stdlib.h>

#include "persister_suites.h"

int main(void)
{
    SRunner *sr = srunner_create(pers_cfg_suite());
    int failed;

    srunner_add_suite(sr, pers_pg_suite());
    srunner_add_suite(sr, pers_loop_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
