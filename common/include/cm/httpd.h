/* The small operations server of the processor and persister: GET /healthz, /readyz, /metrics.
 * The gateway serves the same routes from its own daemon and reuses cm_httpd_answer_ops().
 * Thread: cm_httpd_start/stop from main; `ready` is called from the server's thread. */
#ifndef CM_HTTPD_H
#define CM_HTTPD_H

#include <microhttpd.h>

#include "cm/common.h"

struct cm_httpd;

/* ready(arg) returns true when the binary can do its job; reason (may be NULL) names the missing
 * dependency in a few words. */
typedef bool (*cm_ready_fn)(void *arg, const char **reason);

/* port 0 picks a free port (see cm_httpd_port). Returns new, or NULL with err. */
struct cm_httpd *cm_httpd_start(uint16_t port, cm_ready_fn ready, void *arg, struct cm_err *err);
uint16_t cm_httpd_port(const struct cm_httpd *h);
void cm_httpd_stop(struct cm_httpd *h); /* NULL-safe */

/* If url is one of /healthz, /readyz, /metrics, queue the answer and return true. */
bool cm_httpd_answer_ops(struct MHD_Connection *conn, const char *method, const char *url,
                         cm_ready_fn ready, void *arg, enum MHD_Result *result);

/* Queue a small text response with the given status and optional Retry-After seconds (0 = none). */
enum MHD_Result cm_httpd_reply_text(struct MHD_Connection *conn, unsigned status, const char *ctype,
                                    const char *body, unsigned retry_after);

#endif
