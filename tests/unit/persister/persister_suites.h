/* The Check suites of the persister's unit tests, one per module. */
#ifndef PERSISTER_SUITES_H
#define PERSISTER_SUITES_H

#include <check.h>

Suite *pers_cfg_suite(void);
Suite *pers_pg_suite(void);
Suite *pers_loop_suite(void);

#endif
