/* Structured logging: one JSON object per line on stderr:
 *   {"ts":"2026-11-26T13:00:00.123Z","level":"warn","component":"gateway","event":"x","msg":"k=v ..."}
 * PHI rule: callers may log request ids, topic/partition/offset, counts, sizes, durations, rc,
 * field *names*, SQLSTATE and HTTP status. Never bodies, header values, tokens, metric values or
 * user ids (use cm_log_pseudonym() when a user must be correlated).
 * The level is checked before arguments are evaluated. Thread: any (one write(2) per line). */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stddef.h>

enum cm_log_level { CM_LOG_ERROR = 0, CM_LOG_WARN = 1, CM_LOG_INFO = 2, CM_LOG_DEBUG = 3 };

extern int cm_log_level;

/* component: "gateway", "processor", ... Level from LOG_LEVEL (error|warn|info|debug), default info. */
void cm_log_init(const char *component);
void cm_log_emit(enum cm_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keyed pseudonym of an identifier: first 16 hex chars of HMAC-SHA256(LOG_PSEUDONYM_KEY, id).
 * out must hold 17 bytes. */
void cm_log_pseudonym(const char *id, char out[17]);

#define cm_log_error(event, ...) \
    do { if (cm_log_level >= CM_LOG_ERROR) cm_log_emit(CM_LOG_ERROR, (event), __VA_ARGS__); } while (0)
#define cm_log_warn(event, ...) \
    do { if (cm_log_level >= CM_LOG_WARN) cm_log_emit(CM_LOG_WARN, (event), __VA_ARGS__); } while (0)
#define cm_log_info(event, ...) \
    do { if (cm_log_level >= CM_LOG_INFO) cm_log_emit(CM_LOG_INFO, (event), __VA_ARGS__); } while (0)
#define cm_log_debug(event, ...) \
    do { if (cm_log_level >= CM_LOG_DEBUG) cm_log_emit(CM_LOG_DEBUG, (event), __VA_ARGS__); } while (0)

#endif
