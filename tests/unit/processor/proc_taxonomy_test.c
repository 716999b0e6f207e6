/* proc_taxonomy.c: the metric table is well-formed and holds the metrics the normalizers and the
 * README promise. */
#include <ctype.h>
#include <string.h>

#include "proc_norm.h"
#include "proc_suites.h"
#include "proc_vendors.h"

START_TEST(test_taxonomy_rows_are_well_formed)
{
    size_t n;
    const struct proc_metric_def *all = proc_taxonomy_all(&n);

    ck_assert_uint_ge(n, 28);
    for (size_t i = 0; i < n; i++) {
        const char *name = all[i].name;
        double min, max;

        ck_assert_msg(name != NULL && name[0] != '\0', "row %zu", i);
        ck_assert_msg(strlen(name) < 64, "%s too long", name);
        for (const char *p = name; *p != '\0'; p++) {
            ck_assert_msg(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_',
                          "%s: bad character", name);
        }
        ck_assert_msg(strncmp(name, "score.", 6) != 0, "%s: scores are not taxonomy rows", name);
        ck_assert_msg(all[i].unit != NULL && all[i].unit[0] != '\0', "%s: unit", name);
        ck_assert_msg(all[i].doc != NULL && all[i].doc[0] != '\0', "%s: doc", name);
        if (all[i].loinc != NULL) {
            /* LOINC codes are digits, a dash and one check digit. */
            const char *dash = strchr(all[i].loinc, '-');
            ck_assert_msg(dash != NULL && dash[1] != '\0' && dash[2] == '\0', "%s: loinc", name);
        }
        proc_taxonomy_range(&all[i], &min, &max);
        ck_assert_msg(min < max, "%s: range", name);
        for (size_t j = i + 1; j < n; j++) {
            ck_assert_msg(strcmp(name, all[j].name) != 0, "%s listed twice", name);
        }
        ck_assert_ptr_eq(proc_taxonomy_find(name), &all[i]);
    }
}
END_TEST

START_TEST(test_taxonomy_has_promised_metrics)
{
    static const char *const rows[][3] = {
        { "heart_rate", "/min", "8867-4" },
        { "resting_heart_rate", "/min", "40443-4" },
        { "hrv_rmssd", "ms", NULL },
        { "hrv_sdnn", "ms", NULL },
        { "spo2", "%", "59408-5" },
        { "respiratory_rate", "/min", "9279-1" },
        { "body_temperature", "Cel", "8310-5" },
        { "skin_temperature", "Cel", NULL },
        { "skin_temperature_deviation", "Cel", NULL },
        { "blood_pressure_systolic", "mm[Hg]", "8480-6" },
        { "blood_pressure_diastolic", "mm[Hg]", "8462-4" },
        { "steps", "{steps}", "55423-8" },
        { "distance", "m", NULL },
        { "active_energy", "kcal", "41981-2" },
        { "basal_energy", "kcal", NULL },
        { "floors_climbed", "{floors}", NULL },
        { "exercise_duration", "min", "55411-3" },
        { "sleep_duration_total", "min", NULL },
        { "sleep_deep_duration", "min", "93831-6" },
        { "sleep_light_duration", "min", NULL },
        { "sleep_rem_duration", "min", NULL },
        { "sleep_awake_duration", "min", NULL },
        { "sleep_efficiency", "%", NULL },
        { "body_weight", "kg", "29463-7" },
        { "body_fat_percentage", "%", "41982-0" },
        { "bmi", "kg/m2", "39156-5" },
        { "vo2_max", "mL/(kg.min)", NULL },
    };

    for (size_t i = 0; i < CM_ARRAY_LEN(rows); i++) {
        const struct proc_metric_def *d = proc_taxonomy_find(rows[i][0]);
        ck_assert_msg(d != NULL, "%s missing", rows[i][0]);
        ck_assert_str_eq(d->unit, rows[i][1]);
        if (rows[i][2] == NULL) {
            ck_assert_ptr_null(d->loinc);
        } else {
            ck_assert_str_eq(d->loinc, rows[i][2]);
        }
    }
    ck_assert_ptr_null(proc_taxonomy_find("score.garmin.stress_level"));
    ck_assert_ptr_null(proc_taxonomy_find("Heart_Rate"));
    ck_assert_ptr_null(proc_taxonomy_find(""));
    ck_assert_ptr_null(proc_taxonomy_find(NULL));
}
END_TEST

Suite *proc_taxonomy_suite(void)
{
    Suite *s = suite_create("proc_taxonomy");
    TCase *tc = tcase_create("table");

    tcase_add_test(tc, test_taxonomy_rows_are_well_formed);
    tcase_add_test(tc, test_taxonomy_has_promised_metrics);
    suite_add_tcase(s, tc);
    return s;
}
