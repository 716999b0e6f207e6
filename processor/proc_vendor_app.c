/* Our phone companion app (Apple HealthKit / Android Health Connect relay) -> samples.
 * The format "auren.app.v1" is ours and specified in processor/APP_FORMAT.md:
 *   {"schema":"auren.app.v1","user_id":"...","device":{"platform":"ios|android",
 *    "source":"healthkit|health_connect"},"samples":[{"id","type","value","unit","start","end",
 *    "deleted"}]}
 * `type` is a taxonomy metric name (vendor scores are not accepted); `unit` is the taxonomy unit
 * or one of the conversions in unit_conversions[]; `start`/`end` are RFC 3339 with an offset.
 * source_record_id = the sample id (the HealthKit / Health Connect UUID). A message is accepted
 * or rejected whole: one bad sample sends the entire record to the DLQ with the reason. */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

#define VENDOR "app"
#define APP_SCHEMA "auren.app.v1"

/* value_in_taxonomy_unit = value * scale + offset. `metric` NULL = any metric with that unit. */
struct unit_conversion {
    const char *metric;
    const char *from;
    const char *to;
    double scale, offset;
};

static const struct unit_conversion unit_conversions[] = {
    /* A temperature difference converts without the 32-degree shift. */
    { "skin_temperature_deviation", "[degF]", "Cel", 5.0 / 9.0, 0 },
    { "skin_temperature_deviation", "degF", "Cel", 5.0 / 9.0, 0 },
    { NULL, "[degF]", "Cel", 5.0 / 9.0, -160.0 / 9.0 },
    { NULL, "degF", "Cel", 5.0 / 9.0, -160.0 / 9.0 },
    { NULL, "degC", "Cel", 1, 0 },
    { NULL, "[lb_av]", "kg", 0.45359237, 0 },
    { NULL, "lb", "kg", 0.45359237, 0 },
    { NULL, "g", "kg", 0.001, 0 },
    { NULL, "count/min", "/min", 1, 0 },
    { NULL, "{beats}/min", "/min", 1, 0 },
    { NULL, "{breaths}/min", "/min", 1, 0 },
    { NULL, "1/min", "/min", 1, 0 },
    { NULL, "count", "{steps}", 1, 0 },
    { NULL, "{count}", "{steps}", 1, 0 },
    { NULL, "count", "{floors}", 1, 0 },
    { NULL, "{count}", "{floors}", 1, 0 },
    { NULL, "km", "m", 1000, 0 },
    { NULL, "[mi_i]", "m", 1609.344, 0 },
    { NULL, "mi", "m", 1609.344, 0 },
    { NULL, "s", "ms", 1000, 0 },
    { NULL, "s", "min", 1.0 / 60, 0 },
    { NULL, "h", "min", 60, 0 },
    { NULL, "kJ", "kcal", 1 / 4.184, 0 },
    { NULL, "Cal", "kcal", 1, 0 },
    { NULL, "mmHg", "mm[Hg]", 1, 0 },
    { NULL, "mmol/L", "mg/dL", 18.0156, 0 },
    /* HealthKit's percent unit is a fraction (0.97 = 97 %). */
    { NULL, "1", "%", 100, 0 },
    { NULL, "m", "cm", 100, 0 },
    { NULL, "[in_i]", "cm", 2.54, 0 },
    { NULL, "in", "cm", 2.54, 0 },
    { NULL, "kg/m^2", "kg/m2", 1, 0 },
    { NULL, "ml/(kg.min)", "mL/(kg.min)", 1, 0 },
    { NULL, "mL/kg/min", "mL/(kg.min)", 1, 0 },
};

static bool convert(const struct proc_metric_def *def, const char *unit, double *scale,
                    double *offset)
{
    *scale = 1;
    *offset = 0;
    if (strcmp(unit, def->unit) == 0) {
        return true;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(unit_conversions); i++) {
        const struct unit_conversion *c = &unit_conversions[i];
        bool metric_ok = c->metric == NULL || strcmp(c->metric, def->name) == 0;
        if (metric_ok && strcmp(c->from, unit) == 0 && strcmp(c->to, def->unit) == 0) {
            *scale = c->scale;
            *offset = c->offset;
            return true;
        }
    }
    return false;
}

static enum cm_rc check_device(const json_t *root, struct cm_err *err)
{
    const json_t *dev;
    const char *platform, *source;
    enum cm_rc rc;

    if ((rc = proc_norm_get_obj(root, "device", &dev, err)) != CM_OK) {
        return rc;
    }
    if (dev == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: device");
    }
    if ((rc = proc_norm_get_str(dev, "platform", true, &platform, err)) != CM_OK ||
        (rc = proc_norm_get_str(dev, "source", true, &source, err)) != CM_OK) {
        return rc;
    }
    bool ios = strcmp(platform, "ios") == 0, android = strcmp(platform, "android") == 0;
    if (!ios && !android) {
        return cm_err_set(err, CM_INVALID, "out_of_range: platform");
    }
    if (strcmp(source, ios ? "healthkit" : "health_connect") != 0) {
        return cm_err_set(err, CM_INVALID, "out_of_range: source");
    }
    return CM_OK;
}

static enum cm_rc parse_sample(const json_t *s, const char *user, struct proc_out *out,
                               struct cm_err *err)
{
    char id[PROC_NORM_ID_MAX + 1];
    const char *type, *unit;
    bool has_value = false, has_start, has_end, end_off;
    double value = 0, scale, offset;
    int64_t start, end;
    int32_t end_off_s;
    struct proc_emit em = { .out = out, .vendor = VENDOR, .vendor_user_id = user };
    enum cm_rc rc;

    if (!json_is_object(s)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: samples");
    }
    if ((rc = proc_norm_get_id(s, "id", true, id, sizeof(id), err)) != CM_OK ||
        (rc = proc_norm_get_str(s, "type", true, &type, err)) != CM_OK ||
        (rc = proc_norm_get_str(s, "unit", true, &unit, err)) != CM_OK) {
        return rc;
    }
    const json_t *del = json_object_get(s, "deleted");
    if (del != NULL && !json_is_null(del) && !json_is_boolean(del)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: deleted");
    }
    em.deleted = json_is_true(del);
    const struct proc_metric_def *def = proc_taxonomy_find(type);
    if (def == NULL) {
        return cm_err_set(err, CM_INVALID, "unsupported_metric: type");
    }
    if (!convert(def, unit, &scale, &offset)) {
        return cm_err_set(err, CM_INVALID, "unsupported_unit: unit");
    }
    if ((rc = proc_norm_get_num(s, "value", &has_value, &value, err)) != CM_OK) {
        return rc;
    }
    /* A tombstone may omit the value: only id, type and start identify the event. */
    if (!has_value && !em.deleted) {
        return cm_err_set(err, CM_INVALID, "missing_field: value");
    }
    if ((rc = proc_norm_get_time(s, "start", true, &has_start, &start, &em.has_off, &em.off_s,
                                 err)) != CM_OK ||
        (rc = proc_norm_get_time(s, "end", false, &has_end, &end, &end_off, &end_off_s, err)) !=
            CM_OK) {
        return rc;
    }
    /* RFC 3339 requires the offset; a floating time would be a guess. */
    if (!em.has_off) {
        return cm_err_set(err, CM_INVALID, "bad_time: start");
    }
    if (has_end && !end_off) {
        return cm_err_set(err, CM_INVALID, "bad_time: end");
    }
    return proc_norm_emit(&em, def->name, value * scale + offset, start, has_end ? end : start, id,
                          err);
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    const char *schema;
    char user[128];
    const json_t *samples, *s;
    size_t i;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_str(root, "schema", true, &schema, err)) != CM_OK) {
        return rc;
    }
    if (strcmp(schema, APP_SCHEMA) != 0) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: schema");
    }
    if ((rc = proc_norm_get_id(root, "user_id", true, user, sizeof(user), err)) != CM_OK ||
        (rc = check_device(root, err)) != CM_OK ||
        (rc = proc_norm_get_arr(root, "samples", &samples, err)) != CM_OK) {
        return rc;
    }
    if (samples == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: samples");
    }
    if (json_array_size(samples) > PROC_NORM_MAX_ITEMS) {
        return cm_err_set(err, CM_INVALID, "too_many_items");
    }
    json_array_foreach(samples, i, s) {
        if ((rc = parse_sample(s, user, out, err)) != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

enum cm_rc proc_app_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                          struct cm_err *err)
{
    json_t *root;
    enum cm_rc rc = proc_norm_json_load(raw, &root, err);

    if (rc != CM_OK) {
        return rc;
    }
    rc = parse_root(root, out, err);
    json_decref(root);
    return rc;
}
