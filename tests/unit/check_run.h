/* How every Check binary here runs its suites: in Check's default mode (CK_FORK, CK_RUN_SUITE,
 * CK_RUN_CASE and CK_VERBOSITY come from the environment), with an exit status for ctest. */
#ifndef AUREN_TESTS_CHECK_RUN_H
#define AUREN_TESTS_CHECK_RUN_H

#include <check.h>
#include <stddef.h>
#include <stdlib.h>

/* Run every suite added to `sr`, free it, and return EXIT_SUCCESS when no test failed. */
static inline int check_run_runner(SRunner *sr)
{
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static inline int check_run(Suite *s)
{
    return check_run_runner(srunner_create(s));
}

/* Add the test cases to `s`, each with the same checked fixture and timeout (seconds). */
static inline void check_add_cases(Suite *s, TCase *const *cases, size_t n, SFun setup,
                                   SFun teardown, double timeout)
{
    for (size_t i = 0; i < n; i++) {
        tcase_add_checked_fixture(cases[i], setup, teardown);
        tcase_set_timeout(cases[i], timeout);
        suite_add_tcase(s, cases[i]);
    }
}

#endif
