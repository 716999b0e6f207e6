/* Polar AccessLink webhooks (notification only) -> fetch jobs. Body:
 *   {"event":"EXERCISE","user_id":475,"entity_id":"aQlC83","timestamp":"...","url":"https://..."}
 *   {"event":"SLEEP","user_id":475,"date":"2019-12-31","timestamp":"...","url":"https://..."}
 *   {"event":"PING","timestamp":"..."}                         -> handshake
 *
 *   event                          resource
 *   EXERCISE                       exercise
 *   SLEEP                          sleep
 *   CONTINUOUS_HEART_RATE          continuous_heart_rate
 *   SLEEP_WISE_CIRCADIAN_BEDTIME   sleep_wise_circadian_bedtime
 *   SLEEP_WISE_ALERTNESS           sleep_wise_alertness
 *   ACTIVITY_SUMMARY               activity_summary
 *   PHYSICAL_INFORMATION           physical_information
 * object_id = entity_id, else the date; a date also gives [date 00:00 UTC, next day 00:00 UTC)
 * as start/end. url is Polar's link to the resource; it must be https://www.polaraccesslink.com/
 * (the fetcher sends the user's token there, so nothing else is accepted). */
#include <string.h>

#include "proc_norm.h"
#include "proc_vendors.h"

#define URL_PREFIX "https://www.polaraccesslink.com/"

static const char *const events[][2] = {
    { "EXERCISE", "exercise" },
    { "SLEEP", "sleep" },
    { "CONTINUOUS_HEART_RATE", "continuous_heart_rate" },
    { "SLEEP_WISE_CIRCADIAN_BEDTIME", "sleep_wise_circadian_bedtime" },
    { "SLEEP_WISE_ALERTNESS", "sleep_wise_alertness" },
    { "ACTIVITY_SUMMARY", "activity_summary" },
    { "PHYSICAL_INFORMATION", "physical_information" },
};

static bool url_ok(const char *url)
{
    if (strncmp(url, URL_PREFIX, strlen(URL_PREFIX)) != 0) {
        return false;
    }
    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            return false;
        }
    }
    return true;
}

static enum cm_rc parse_root(const json_t *root, struct proc_out *out, struct cm_err *err)
{
    struct proc_fetch f = { 0 };
    const char *event, *url, *date;
    const char *resource = NULL;
    enum cm_rc rc;

    if (!json_is_object(root)) {
        return cm_err_set(err, CM_INVALID, "wrong_type: body");
    }
    if ((rc = proc_norm_get_str(root, "event", true, &event, err)) != CM_OK) {
        return rc;
    }
    if (strcmp(event, "PING") == 0) {
        out->is_handshake = true;
        return CM_OK;
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(events); i++) {
        if (strcmp(events[i][0], event) == 0) {
            resource = events[i][1];
        }
    }
    if (resource == NULL) {
        return cm_err_set(err, CM_INVALID, "unsupported_record: %s", proc_norm_safe_name(event));
    }
    if ((rc = proc_norm_get_id(root, "user_id", true, f.vendor_user_id, sizeof(f.vendor_user_id),
                               err)) != CM_OK ||
        (rc = proc_norm_get_id(root, "entity_id", false, f.object_id, sizeof(f.object_id), err)) !=
            CM_OK ||
        (rc = proc_norm_get_str(root, "date", false, &date, err)) != CM_OK ||
        (rc = proc_norm_get_str(root, "url", true, &url, err)) != CM_OK) {
        return rc;
    }
    if (!url_ok(url) || !cm_strlcpy(f.url, url, sizeof(f.url))) {
        return cm_err_set(err, CM_INVALID, "out_of_range: url");
    }
    if (date != NULL) {
        if (!proc_norm_parse_date(date, &f.start_us)) {
            return cm_err_set(err, CM_INVALID, "bad_time: date");
        }
        f.end_us = f.start_us + INT64_C(86400000000);
        f.has_start = f.has_end = true;
        if (f.object_id[0] == '\0') {
            cm_strlcpy(f.object_id, date, sizeof(f.object_id));
        }
    }
    cm_strlcpy(f.resource, resource, sizeof(f.resource));
    *proc_out_add_fetch(out) = f;
    return CM_OK;
}

enum cm_rc proc_polar_parse(const struct cm_raw_webhook *raw, struct proc_out *out,
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
