/* The Check suites of the normalization layer's unit tests. */
#ifndef PROC_SUITES_H
#define PROC_SUITES_H

#include <check.h>

#include "cm/records.h"

Suite *proc_norm_suite(void);
Suite *proc_taxonomy_suite(void);
Suite *proc_vendors_suite(void);
Suite *proc_fixtures_suite(void);
Suite *proc_api_rejects_suite(void);

/* A webhook raw record around `body` (borrowed) as the gateway would enqueue it. */
struct cm_raw_webhook proc_test_raw(const char *vendor, const char *body, size_t len);

#endif
