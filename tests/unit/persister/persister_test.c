/* Runs the persister's unit suites (configuration, COPY encoding, batch bookkeeping). */
#include <stdlib.h>

#include "persister_suites.h"
#include "../check_run.h"

int main(void)
{
    SRunner *sr = srunner_create(pers_cfg_suite());

    srunner_add_suite(sr, pers_pg_suite());
    srunner_add_suite(sr, pers_loop_suite());
    return check_run_runner(sr);
}
