/* Oura API v2 webhooks (notification only) -> fetch jobs. Body:
 *   {"event_type":"create|update|delete","data_type":"sleep","object_id":"<id>",
 *    "event_time":"<ISO 8601>","user_id":"<oura user id>"}
 * resource = data_type (one of Oura's documented webhook data types, below), event_type as
 * given, object_id = object_id; the fetcher reads GET /v2/usercollection/{data_type}/{object_id}.
 * Oura sends no deauthorization webhook. Unknown data_type -> "unsupported_record: <data_type>". */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static const char *const data_types[] = {
    "tag", "enhanced_tag", "workout", "session", "sleep", "daily_sleep", "daily_readiness",
    "daily_activity", "daily_spo2", "sleep_time", "rest_mode_period", "ring_configuration",
    "daily_stress", "daily_cycle_phases", "activation_status", "daily_cardiovascular_age",
    "daily_resilience", "vo2_max", "period_start", "pregnancy", "fertile_window",
    "ovulation_confirmed", "blood_glucose",
};

static const char *const event_types[] = { "create", "update", "delete" };

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *data_type, *event_type;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_id(root, "user_id", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "data_type", true, &data_type, err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "event_type", true, &event_type, err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "object_id", true, f.object_id, sizeof(f.object_id), err)) !=
            CM_OK) {
        return rc;
    }
    if (!in_list(data_type, data_types, CM_ARRAY_LEN(data_types))) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s",
                          proc_norm_safe_name(data_type));
    }
    if (!in_list(event_type, event_types, CM_ARRAY_LEN(event_types))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: event_type");
    }
    cm_strlcpy(f.resource, data_type, sizeof(f.resource));
    cm_strlcpy(f.event_type, event_type, sizeof(f.event_type));
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

enum cm_rc proc_oura_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                           struct cm_err *err)
{
    json_t *root;
    enum cm_rc rc;

    if (raw->kind == CM_RAW_API_RECORD) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s",
                          proc_norm_safe_name(raw->record_type));
    }
    if ((rc = proc_norm_json_load(raw, &root, err)) != CM_OK) {
        return rc;
    }
    rc = parse_root(root, out, err);
    json_decref(root);
    return rc;
}
