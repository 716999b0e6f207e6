/* Fitbit (legacy Web API) subscription notifications (notification only) -> fetch jobs and
 * lifecycle notices. Body: a JSON array, possibly batching several notifications:
 *   [{"collectionType":"sleep","date":"2026-11-20","ownerId":"FITBIT1","ownerType":"user",
 *     "subscriptionId":"1"}]
 *
 *   collectionType     output
 *   activities         fetch resource "activities"
 *   body               fetch resource "body"
 *   foods              fetch resource "foods"
 *   sleep              fetch resource "sleep"
 *   userRevokedAccess  lifecycle "revoked"
 * A date gives object_id = the date and start/end = [date 00:00 UTC, next day 00:00 UTC) (the
 * Fitbit date is the user's local day: the fetcher uses the date text, not the instant).
 * Other collection types -> "unsupported_record: <collectionType>". */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static const char *const collections[] = { "activities", "body", "foods", "sleep" };

static enum cm_rc parse_one(const json_t *n, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *type, *owner_type, *date;
    enum cm_rc rc;

    if (!json_is_object(n)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: notification");
    }
    if ((rc = proc_norm_get_str(n, "collectionType", true, &type, err)) != CM_OK ||
        (rc = proc_norm_get_id(n, "ownerId", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_str(n, "ownerType", false, &owner_type, err)) != CM_OK ||
        (rc = proc_norm_get_str(n, "date", false, &date, err)) != CM_OK) {
        return rc;
    }
    if (owner_type != NULL && strcmp(owner_type, "user") != 0) {
        return cm_err_set(err, CM_INVALID, "out_of_range: ownerType");
    }
    if (strcmp(type, "userRevokedAccess") == 0) {
        struct proc_lifecycle *l = proc_out_add_lifecycle(out);
        cm_strlcpy(l->vendor_user_id, f.vendor_user_id, sizeof(l->vendor_user_id));
        cm_strlcpy(l->action, "revoked", sizeof(l->action));
        return CM_OK;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(collections); i++) {
        if (strcmp(collections[i], type) != 0) {
            continue;
        }
        cm_strlcpy(f.resource, type, sizeof(f.resource));
        if (date != NULL) {
            if (!proc_norm_parse_date(date, &f.start_us)) {
                return cm_err_set(err, CM_INVALID, "bad_time: date");
            }
            f.end_us = f.start_us + INT64_C(86400000000);
            f.has_start = f.has_end = true;
            cm_strlcpy(f.object_id, date, sizeof(f.object_id));
        }
        *proc_out_add_fetch(out) = f;
        return CM_OK;
    }
    return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(type));
}

enum cm_rc proc_fitbit_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
                             struct cm_err *err)
{
    json_t *root;
    enum cm_rc rc;
    size_t i;
    const json_t *n;

    if (raw->kind == CM_RAW_API_RECORD) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s",
                          proc_norm_safe_name(raw->record_type));
    }
    if ((rc = proc_norm_json_load(raw, &root, err)) != CM_OK) {
        return rc;
    }
    if (!json_is_array(root)) {
        rc = cm_err_set(err, CM_INVALID, "wrong_type: body");
    } else if (json_array_size(root) > PROC_NORM_MAX_ITEMS) {
        rc = cm_err_set(err, CM_INVALID, "too_many_items");
    } else {
        json_array_foreach(root, i, n) {
            if ((rc = parse_one(n, out, err)) != CM_OK) {
                break;
            }
        }
    }
    json_decref(root);
    return rc;
}
