/* The processor's configuration: one table (proc_cfg_fields) read from the environment at start-up
 * by main() through cm_cfg_load_or_exit(); immutable afterwards.
 * Ownership: the STR fields are heap strings released by cm_cfg_free(proc_cfg_fields, cfg).
 * Thread: read-only after load, so any. */
#ifndef PROC_CFG_H
#define PROC_CFG_H

#include "cm/cfg.h"

struct proc_cfg {
    char *kafka_brokers;
    char *redis_url;
    char *database_url;
    char *group_id;
    long redis_ttl_s;
    long max_timeseries_entries;
    long http_port;
    long batch_max;
    long batch_ms;
    long conn_cache_ttl_s;
};

extern const struct cm_cfg_field proc_cfg_fields[];

#endif
