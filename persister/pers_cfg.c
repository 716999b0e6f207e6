/* Configuration table of auren-persister. Names and defaults are part of the outside contract
 * (docs/DESIGN.md); --help and --print-config are generated from this table by cm_cfg. */
#include "pers_cfg.h"

#include <stddef.h>

const struct cm_cfg_field pers_cfg_fields[] = {
    { .env = "KAFKA_BROKERS", .type = CM_CFG_STR, .def = "127.0.0.1:9092",
      .off = offsetof(struct pers_cfg, brokers), .doc = "Kafka bootstrap servers (host:port,...)" },
    { .env = "DATABASE_URL", .type = CM_CFG_STR,
      .def = "postgresql://auren:auren@127.0.0.1:5432/auren", .flags = CM_CFG_SECRET,
      .off = offsetof(struct pers_cfg, database_url), .doc = "PostgreSQL connection URI" },
    { .env = "HTTP_PORT", .type = CM_CFG_INT, .def = "9102", .min = 1, .max = 65535,
      .off = offsetof(struct pers_cfg, http_port), .doc = "Port of /healthz, /readyz, /metrics" },
    { .env = "PERSISTER_BATCH_MAX", .type = CM_CFG_INT, .def = "2000", .min = 1, .max = 100000,
      .off = offsetof(struct pers_cfg, batch_max), .doc = "Most events per database transaction" },
    { .env = "PERSISTER_BATCH_MS", .type = CM_CFG_INT, .def = "100", .min = 1, .max = 60000,
      .off = offsetof(struct pers_cfg, batch_ms),
      .doc = "Longest wait (ms) after a batch's first event before it is written" },
    { .env = "PERSISTER_GROUP_ID", .type = CM_CFG_STR, .def = "auren-persister",
      .off = offsetof(struct pers_cfg, group_id), .doc = "Kafka consumer group" },
    { 0 },
};

enum cm_rc pers_cfg_check(const struct pers_cfg *cfg, struct cm_err *err)
{
    if (cfg->brokers == NULL || cfg->brokers[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "KAFKA_BROKERS must not be empty");
    }
    if (cfg->database_url == NULL || cfg->database_url[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "DATABASE_URL must not be empty");
    }
    if (cfg->group_id == NULL || cfg->group_id[0] == '\0') {
        return cm_err_set(err, CM_INVALID, "PERSISTER_GROUP_ID must not be empty");
    }
    return CM_OK;
}

void pers_cfg_fini(struct pers_cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    cm_cfg_free(pers_cfg_fields, cfg);
}
