/* Google Health API webhooks (Fitbit's successor; notification only) -> fetch jobs. Body: a JSON
 * array (a single object is accepted too) of
 *   {"data":{"healthUserId":"...","operation":"UPSERT|DELETE","dataType":"steps",
 *            "intervals":[{"physicalTimeInterval":{"startTime":"...","endTime":"..."}}],
 *            "clientProvidedSubscriptionName":"...","version":"..."}}
 * and the verification POST {"type":"verification"} -> handshake.
 *
 *   field          fetch job
 *   healthUserId   vendor_user_id
 *   dataType       resource (as given: [A-Za-z0-9_.-], < 48 chars)
 *   operation      event_type "upsert" / "delete"
 *   intervals      start = earliest startTime, end = latest endTime (when any)
 * The fetcher reads the data type over that window (rollUp / list). */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static enum cm_rc parse_intervals(const json_t *data, struct proc_fetch *f, struct cm_err *err)
{
    const json_t *arr, *iv;
    size_t i;
    enum cm_rc rc = proc_norm_get_arr(data, "intervals", &arr, err);

    if (rc != CM_OK || arr == NULL) {
        return rc;
    }
    json_array_foreach(arr, i, iv) {
        const json_t *pti;
        bool present, has_off;
        int32_t off;
        int64_t start, end;

        if ((rc = proc_norm_get_obj(iv, "physicalTimeInterval", &pti, err)) != CM_OK) {
            return rc;
        }
        if (pti == NULL) {
            return cm_err_set(err, CM_INVALID, "missing_field: physicalTimeInterval");
        }
        if ((rc = proc_norm_get_time(pti, "startTime", true, &present, &start, &has_off, &off,
                                     err)) != CM_OK ||
            (rc = proc_norm_get_time(pti, "endTime", true, &present, &end, &has_off, &off, err)) !=
                CM_OK) {
            return rc;
        }
        if (end < start) {
            return cm_err_set(err, CM_INVALID, "out_of_range: endTime");
        }
        if (!f->has_start || start < f->start_us) {
            f->start_us = start;
        }
        if (!f->has_end || end > f->end_us) {
            f->end_us = end;
        }
        f->has_start = f->has_end = true;
    }
    return CM_OK;
}

static enum cm_rc parse_one(const json_t *n, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const json_t *data;
    const char *op, *type;
    enum cm_rc rc;

    if (!json_is_object(n)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: notification");
    }
    if ((rc = proc_norm_get_obj(n, "data", &data, err)) != CM_OK) {
        return rc;
    }
    if (data == NULL) {
        return cm_err_set(err, CM_INVALID, "missing_field: data");
    }
    if ((rc = proc_norm_get_id(data, "healthUserId", true, f.vendor_user_id,
                               sizeof(f.vendor_user_id), err)) != CM_OK ||
        (rc = proc_norm_get_str(data, "operation", true, &op, err)) != CM_OK ||
        (rc = proc_norm_get_str(data, "dataType", true, &type, err)) != CM_OK) {
        return rc;
    }
    if (strcmp(op, "UPSERT") == 0) {
        cm_strlcpy(f.event_type, "upsert", sizeof(f.event_type));
    } else if (strcmp(op, "DELETE") == 0) {
        cm_strlcpy(f.event_type, "delete", sizeof(f.event_type));
    } else {
        return cm_err_set(err, CM_INVALID, "out_of_range: operation");
    }
    if (strcmp(proc_norm_safe_name(type), "?") == 0 ||
        !cm_strlcpy(f.resource, type, sizeof(f.resource))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: dataType");
    }
    if ((rc = parse_intervals(data, &f, err)) != CM_OK) {
        return rc;
    }
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    enum cm_rc rc;

    if (json_is_object(root)) {
        const char *type;
        if ((rc = proc_norm_get_str(root, "type", false, &type, err)) != CM_OK) {
            return rc;
        }
        if (type != NULL && strcmp(type, "verification") == 0) {
            out->is_handshake = true;
            return CM_OK;
        }
        return parse_one(root, out, err);
    }
    return proc_norm_each(root, parse_one, out, err);
}

/* Fetched Google Health records are not normalized yet (the REST record shapes are not in our
 * vendor notes): an api_record of this vendor is "unsupported_record". */
enum cm_rc proc_google_health_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                                    struct cm_err *err)
{
    return proc_norm_entry(raw, parse_root, NULL, 0, out, err);
}
