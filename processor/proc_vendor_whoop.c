/* WHOOP webhooks (notification only) -> fetch jobs. Body (v2; v1 used integer ids):
 *   {"user_id":456,"id":"<uuid>","type":"sleep.updated","trace_id":"<uuid>"}
 *
 *   type                                  resource   event_type    object_id
 *   recovery.updated / recovery.deleted   recovery   the type      id (v2: the sleep's UUID)
 *   sleep.updated / sleep.deleted         sleep      the type      sleep id
 *   workout.updated / workout.deleted     workout    the type      workout id
 * Creates arrive as *.updated. WHOOP sends no deauthorization webhook (revoking the token stops
 * them), so there is no lifecycle output. Any other type -> "unsupported_record: <type>". */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

static const char *const resources[] = { "recovery", "sleep", "workout" };

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *type;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_id(root, "user_id", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "id", true, f.object_id, sizeof(f.object_id), err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "type", true, &type, err)) != CM_OK) {
        return rc;
    }
    const char *dot = strchr(type, '.');
    for (size_t i = 0; dot != NULL && i < CM_ARRAY_LEN(resources); i++) {
        size_t n = strlen(resources[i]);
        if ((size_t)(dot - type) == n && strncmp(type, resources[i], n) == 0 &&
            (strcmp(dot + 1, "updated") == 0 || strcmp(dot + 1, "deleted") == 0)) {
            cm_strlcpy(f.resource, resources[i], sizeof(f.resource));
            cm_strlcpy(f.event_type, type, sizeof(f.event_type));
            *proc_out_add_fetch(out) = f;
            return CM_OK;
        }
    }
    return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(type));
}

enum cm_rc proc_whoop_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
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
