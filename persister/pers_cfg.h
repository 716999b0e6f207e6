/* The persister's configuration: one table of environment variables (cm/cfg.h), loaded once in
 * main() and read-only afterwards.
 * Ownership: the string fields are heap memory released by pers_cfg_fini(). Thread: any, once
 * loaded. */
#ifndef PERS_CFG_H
#define PERS_CFG_H

#include "cm/cfg.h"

struct pers_cfg {
    char *brokers;      /* KAFKA_BROKERS */
    char *database_url; /* DATABASE_URL (secret: carries the password) */
    long http_port;     /* HTTP_PORT */
    long batch_max;     /* PERSISTER_BATCH_MAX: rows per database transaction */
    long batch_ms;      /* PERSISTER_BATCH_MS: longest wait after a batch's first record */
    char *group_id;     /* PERSISTER_GROUP_ID */
};

extern const struct cm_cfg_field pers_cfg_fields[];

/* Checks the table cannot express: the strings must not be empty. CM_INVALID names the variable. */
enum cm_rc pers_cfg_check(const struct pers_cfg *cfg, struct cm_err *err);

/* Release the string fields; `cfg` may be zeroed or half-loaded. */
void pers_cfg_fini(struct pers_cfg *cfg);

#endif
