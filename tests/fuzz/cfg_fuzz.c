/* Fuzz target: the configuration parser (cm_cfg_load through gw_cfg_load, the largest table,
 * with the derived Standard Webhooks key). Input: "NAME=VALUE" lines; names of the gateway's
 * table are set in the environment (everything else, and every NAME_FILE, is left unset, so the
 * harness never reads files), then the table is loaded.
 * Invariants: on success every number lies inside its declared range, every string equals its
 * variable (or default) and the app key is derived exactly when the app secret is set; on
 * failure the message names a variable of the table and never echoes a value (values with a
 * character that no message template contains must not appear in it). */
#include "fuzz_util.h"
#include "gw_cfg.h"

#define MAX_LINES 32

static const struct cm_cfg_field *find_field(const char *name)
{
    for (const struct cm_cfg_field *f = gw_cfg_fields; f->env != NULL; f++) {
        if (strcmp(f->env, name) == 0) {
            return f;
        }
    }
    return NULL;
}

/* Characters that can appear in a configuration error message built from our templates. */
static bool could_be_template_text(const char *v)
{
    return strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_ ,()-") ==
           strlen(v);
}

static void check_loaded(const struct gw_cfg *cfg)
{
    for (const struct cm_cfg_field *f = gw_cfg_fields; f->env != NULL; f++) {
        const char *base = (const char *)cfg + f->off;
        const char *env = getenv(f->env);
        bool bounded = f->min != 0 || f->max != 0;

        switch (f->type) {
        case CM_CFG_INT: {
            long v = *(const long *)(const void *)base;
            FUZZ_CHECK(!bounded || (v >= f->min && v <= f->max), "integer outside its range");
            break;
        }
        case CM_CFG_SIZE: {
            size_t v = *(const size_t *)(const void *)base;
            FUZZ_CHECK(!bounded || (v >= (size_t)f->min && v <= (size_t)f->max),
                       "size outside its range");
            break;
        }
        case CM_CFG_STR: {
            const char *v = *(char *const *)(const void *)base;
            const char *want = env != NULL ? env : (f->def != NULL ? f->def : "");
            FUZZ_CHECK(v != NULL && strcmp(v, want) == 0, "string differs from its variable");
            break;
        }
        case CM_CFG_BOOL:
            break;
        }
    }
    FUZZ_CHECK((cfg->app_key_len > 0) == gw_cfg_is_set(cfg->secret_app),
               "app key derived inconsistently with WEBHOOK_SECRET_APP");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char *values[MAX_LINES];
    size_t nvalues = 0;
    struct gw_cfg cfg;
    struct cm_err err = {{0}};
    char *line = text;

    memcpy(text, data, size);
    text[size] = '\0';
    for (const struct cm_cfg_field *f = gw_cfg_fields; f->env != NULL; f++) {
        char name[160];
        unsetenv(f->env);
        snprintf(name, sizeof(name), "%s_FILE", f->env);
        unsetenv(name);
    }
    while (line != NULL && nvalues < MAX_LINES) {
        char *nl = strchr(line, '\n');
        char *eq;
        if (nl != NULL) {
            *nl = '\0';
        }
        eq = strchr(line, '=');
        if (eq != NULL) {
            *eq = '\0';
            if (find_field(line) != NULL && setenv(line, eq + 1, 1) == 0) {
                values[nvalues++] = eq + 1;
            }
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (gw_cfg_load(&cfg, &err) == CM_OK) {
        check_loaded(&cfg);
    } else {
        size_t n = strspn(err.msg, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
        char name[128];
        FUZZ_CHECK(n > 0 && n < sizeof(name), "message does not start with a variable name");
        memcpy(name, err.msg, n);
        name[n] = '\0';
        FUZZ_CHECK(find_field(name) != NULL, "message names no variable of the table");
        for (size_t i = 0; i < nvalues; i++) {
            FUZZ_CHECK(values[i][0] == '\0' || could_be_template_text(values[i]) ||
                           strstr(err.msg, values[i]) == NULL,
                       "configuration message echoes a value");
        }
    }
    gw_cfg_fini(&cfg);
    free(text);
    return 0;
}
