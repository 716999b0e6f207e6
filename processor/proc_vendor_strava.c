/* Strava webhook events (notification only) -> fetch jobs and lifecycle notices. Body:
 *   {"aspect_type":"create|update|delete","event_time":1516126040,"object_id":1360128428,
 *    "object_type":"activity|athlete","owner_id":134815,"subscription_id":120475,
 *    "updates":{"title":"Messy"}}
 *
 *   object_type  aspect / updates            output
 *   activity     create, update, delete      fetch resource "activity", object_id, event_type
 *   athlete      updates.authorized "false"  lifecycle "revoked"
 *   athlete      anything else               nothing (profile changes carry no health data)
 * vendor_user_id = owner_id. Other object types -> "unsupported_record: <object_type>". */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *object_type, *aspect;
    const json_t *updates;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_str(root, "object_type", true, &object_type, err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "aspect_type", true, &aspect, err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "owner_id", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "object_id", true, f.object_id, sizeof(f.object_id), err)) !=
            CM_OK ||
        (rc = proc_norm_get_obj(root, "updates", &updates, err)) != CM_OK) {
        return rc;
    }
    if (strcmp(aspect, "create") != 0 && strcmp(aspect, "update") != 0 &&
        strcmp(aspect, "delete") != 0) {
        return cm_err_set(err, CM_INVALID, "out_of_range: aspect_type");
    }
    if (strcmp(object_type, "athlete") == 0) {
        const char *authorized;
        if ((rc = proc_norm_get_str(updates, "authorized", false, &authorized, err)) != CM_OK) {
            return rc;
        }
        if (authorized != NULL && strcmp(authorized, "false") == 0) {
            struct proc_lifecycle *l = proc_out_add_lifecycle(out);
            cm_strlcpy(l->vendor_user_id, f.vendor_user_id, sizeof(l->vendor_user_id));
            cm_strlcpy(l->action, "revoked", sizeof(l->action));
        }
        return CM_OK;
    }
    if (strcmp(object_type, "activity") != 0) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s",
                          proc_norm_safe_name(object_type));
    }
    cm_strlcpy(f.resource, "activity", sizeof(f.resource));
    cm_strlcpy(f.event_type, aspect, sizeof(f.event_type));
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

/* ---- fetched records (GET https://www.strava.com/api/v3/activities/{id}) ----
 *   strava.activity   start_date .. + elapsed_time: moving_time -> exercise_duration (min),
 *                     distance (m), average_heartrate -> heart_rate, calories -> active_energy */
static const struct proc_api_metric activity_metrics[] = {
    { "moving_time", "exercise_duration", 1.0 / 60.0 },
    { "distance", "distance", 1 },
    { "average_heartrate", "heart_rate", 1 },
    { "calories", "active_energy", 1 },
};

static const struct proc_api_spec api_specs[] = {
    { .resource = "activity", .id = "id", .start = "start_date", .time = PROC_API_T_RFC3339,
      .duration_s = "elapsed_time", .metrics = activity_metrics,
      .n_metrics = CM_ARRAY_LEN(activity_metrics) },
};

enum cm_rc proc_strava_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                             struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, api_specs, CM_ARRAY_LEN(api_specs), out, err);
}
