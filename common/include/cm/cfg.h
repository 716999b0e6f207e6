/* Configuration from the environment, one table per binary (Redis/nginx style).
 * Every variable NAME may instead be given as NAME_FILE, a path whose contents (trailing newline
 * stripped) are the value, as Kubernetes mounts secrets. Bad configuration is reported as one
 * line naming the variable, and the binary exits 2.
 * Thread: load once at start-up in main(), read-only afterwards. */
#ifndef CM_CFG_H
#define CM_CFG_H

#include <stdio.h>

#include "cm/common.h"

enum cm_cfg_type {
    CM_CFG_STR,  /* char *, heap-allocated (free with cm_cfg_free) */
    CM_CFG_INT,  /* long; min/max inclusive */
    CM_CFG_SIZE, /* size_t; accepts k/m/g suffixes (1024-based) */
    CM_CFG_BOOL, /* bool; true/false/1/0/yes/no */
};

enum { CM_CFG_REQUIRED = 1 << 0, CM_CFG_SECRET = 1 << 1 };

struct cm_cfg_field {
    const char *env;
    enum cm_cfg_type type;
    const char *def; /* default as text; NULL = no default (empty string for STR) */
    long min, max;   /* for INT/SIZE; both 0 = unchecked */
    size_t off;      /* offsetof in the config struct */
    int flags;
    const char *doc;
};

/* Fill `cfg` from the environment according to `fields` (terminated by {0}).
 * `cfg` must start zeroed (STR fields are freed before being replaced). */
enum cm_rc cm_cfg_load(const struct cm_cfg_field *fields, void *cfg, struct cm_err *err);
/* Free the STR fields. */
void cm_cfg_free(const struct cm_cfg_field *fields, void *cfg);
/* Print "NAME=value" lines, secrets as ***. */
void cm_cfg_print(const struct cm_cfg_field *fields, const void *cfg, FILE *out);
/* Print the table as help text. */
void cm_cfg_help(const struct cm_cfg_field *fields, FILE *out);
/* Read NAME or NAME_FILE; returns a new string or NULL when unset. CM_INVALID (in err) when
 * NAME_FILE cannot be read. */
char *cm_cfg_getenv(const char *name, struct cm_err *err);

/* Common main() helper: handles --help / --print-config and loads; on failure prints
 * "auren-<component>: config: <msg>" to stderr and exits 2. */
void cm_cfg_load_or_exit(const char *component, const struct cm_cfg_field *fields, void *cfg,
                         int argc, char **argv);

#endif
