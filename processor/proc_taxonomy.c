/* The metric taxonomy: every measured metric a normalizer may emit, with its canonical UCUM unit,
 * its LOINC code where a vendor-neutral reference (HL7 IG) confirms one, and the plausible value
 * range used to quarantine absurd values. Vendor scores are not listed here: they are named
 * score.<vendor>.<name>, carry the unit "{score}" and no LOINC (proc_out_add_sample()).
 * The README mirrors this table; change both together. Values are converted to the unit below by
 * the vendor modules (seconds -> min for durations, g -> kg, ...). */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static const struct proc_metric_def metric_defs[] = {
    { "heart_rate", "/min", "8867-4", "Heart rate, point sample or short interval" },
    { "resting_heart_rate", "/min", "40443-4", "Resting heart rate computed by the vendor" },
    { "heart_rate_max_24h", "/min", "8873-2", "Maximum heart rate over the day" },
    { "hrv_rmssd", "ms", NULL, "Heart rate variability, RMSSD method" },
    { "hrv_sdnn", "ms", NULL, "Heart rate variability, SDNN method" },
    { "rr_interval", "ms", NULL, "Interval between two heart beats" },
    { "spo2", "%", "59408-5", "Oxygen saturation by pulse oximetry" },
    { "respiratory_rate", "/min", "9279-1", "Breaths per minute" },
    { "body_temperature", "Cel", "8310-5", "Body (core) temperature" },
    { "skin_temperature", "Cel", NULL, "Absolute skin temperature" },
    { "skin_temperature_deviation", "Cel", NULL, "Skin temperature delta from the baseline" },
    { "blood_pressure_systolic", "mm[Hg]", "8480-6", "Systolic blood pressure" },
    { "blood_pressure_diastolic", "mm[Hg]", "8462-4", "Diastolic blood pressure" },
    { "glucose_interstitial", "mg/dL", "99504-3", "Glucose in interstitial fluid (CGM)" },
    { "glucose_blood", "mg/dL", NULL, "Glucose in capillary blood (fingerstick)" },
    { "steps", "{steps}", "55423-8", "Steps over the interval" },
    { "distance", "m", NULL, "Distance covered over the interval" },
    { "active_energy", "kcal", "41981-2", "Active energy burned over the interval" },
    { "basal_energy", "kcal", NULL, "Basal (resting) energy burned over the interval" },
    { "floors_climbed", "{floors}", NULL, "Floors climbed over the interval" },
    { "exercise_duration", "min", "55411-3", "Duration of a workout" },
    { "sleep_duration_total", "min", NULL, "Total sleep time of a session (awake time excluded)" },
    { "sleep_deep_duration", "min", "93831-6", "Deep sleep time of a session" },
    { "sleep_light_duration", "min", NULL, "Light sleep time of a session" },
    { "sleep_rem_duration", "min", NULL, "REM sleep time of a session" },
    { "sleep_awake_duration", "min", NULL, "Awake time within a sleep session" },
    { "sleep_efficiency", "%", NULL, "Time asleep / time in bed" },
    { "body_weight", "kg", "29463-7", "Body weight" },
    { "body_fat_percentage", "%", "41982-0", "Body fat percentage" },
    { "bmi", "kg/m2", "39156-5", "Body mass index" },
    { "body_height", "cm", "8302-2", "Body height" },
    { "vo2_max", "mL/(kg.min)", NULL, "Maximal oxygen uptake (vendor estimate)" },
};

/* Same order as metric_defs[]. */
static const double metric_ranges[][2] = {
    { 20, 300 },     /* heart_rate */
    { 20, 250 },     /* resting_heart_rate */
    { 20, 300 },     /* heart_rate_max_24h */
    { 0, 3000 },     /* hrv_rmssd */
    { 0, 3000 },     /* hrv_sdnn */
    { 100, 3000 },   /* rr_interval */
    { 0, 100 },      /* spo2 */
    { 0, 100 },      /* respiratory_rate */
    { 25, 45 },      /* body_temperature */
    { 0, 50 },       /* skin_temperature */
    { -10, 10 },     /* skin_temperature_deviation */
    { 30, 300 },     /* blood_pressure_systolic */
    { 10, 250 },     /* blood_pressure_diastolic */
    { 0, 1500 },     /* glucose_interstitial */
    { 0, 1500 },     /* glucose_blood */
    { 0, 250000 },   /* steps */
    { 0, 1000000 },  /* distance */
    { 0, 50000 },    /* active_energy */
    { 0, 20000 },    /* basal_energy */
    { 0, 10000 },    /* floors_climbed */
    { 0, 2880 },     /* exercise_duration: two days */
    { 0, 1440 },     /* sleep_duration_total */
    { 0, 1440 },     /* sleep_deep_duration */
    { 0, 1440 },     /* sleep_light_duration */
    { 0, 1440 },     /* sleep_rem_duration */
    { 0, 1440 },     /* sleep_awake_duration */
    { 0, 100 },      /* sleep_efficiency */
    { 0.5, 700 },    /* body_weight */
    { 0, 100 },      /* body_fat_percentage */
    { 5, 200 },      /* bmi */
    { 20, 300 },     /* body_height */
    { 0, 120 },      /* vo2_max */
};

_Static_assert(CM_ARRAY_LEN(metric_defs) == CM_ARRAY_LEN(metric_ranges),
               "every taxonomy metric needs a range");

const struct proc_metric_def *proc_taxonomy_find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(metric_defs); i++) {
        if (strcmp(metric_defs[i].name, name) == 0) {
            return &metric_defs[i];
        }
    }
    return NULL;
}

const struct proc_metric_def *proc_taxonomy_all(size_t *n)
{
    *n = CM_ARRAY_LEN(metric_defs);
    return metric_defs;
}

void proc_taxonomy_range(const struct proc_metric_def *def, double *min, double *max)
{
    size_t i = (size_t)(def - metric_defs);

    cm_assert(i < CM_ARRAY_LEN(metric_defs));
    *min = metric_ranges[i][0];
    *max = metric_ranges[i][1];
}
