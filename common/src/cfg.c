/* Table-driven configuration from the environment (see cm/cfg.h). NAME_FILE is read when NAME is
 * unset, so Kubernetes secret mounts work unchanged. Every failure names the variable and never
 * echoes a secret's value. */
#include "cm/cfg.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG_FILE_MAX (64 * 1024)

char *cm_cfg_getenv(const char *name, struct cm_err *err)
{
    char fname[160];
    const char *v = getenv(name);
    const char *path;
    FILE *f;
    char *buf;
    size_t n;

    if (v != NULL) {
        return cm_xstrdup(v);
    }
    snprintf(fname, sizeof(fname), "%s_FILE", name);
    path = getenv(fname);
    if (path == NULL) {
        return NULL;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        cm_err_set(err, CM_INVALID, "%s: cannot read file (%s)", fname, strerror(errno));
        return NULL;
    }
    buf = cm_xmalloc(CFG_FILE_MAX + 1);
    n = fread(buf, 1, CFG_FILE_MAX + 1, f);
    fclose(f);
    if (n > CFG_FILE_MAX) {
        free(buf);
        cm_err_set(err, CM_INVALID, "%s: file larger than %d bytes", fname, CFG_FILE_MAX);
        return NULL;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    buf[n] = '\0';
    return buf;
}

static enum cm_rc parse_long(const char *s, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return CM_INVALID;
    }
    *out = v;
    return CM_OK;
}

static enum cm_rc parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    unsigned long long mul = 1;

    if (*s == '-') {
        return CM_INVALID;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s) {
        return CM_INVALID;
    }
    if (*end != '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            mul = 1024ULL;
            break;
        case 'm':
        case 'M':
            mul = 1024ULL * 1024;
            break;
        case 'g':
        case 'G':
            mul = 1024ULL * 1024 * 1024;
            break;
        default:
            return CM_INVALID;
        }
        if (end[1] != '\0' && !((end[1] == 'b' || end[1] == 'B') && end[2] == '\0')) {
            return CM_INVALID;
        }
    }
    if (v > SIZE_MAX / mul) {
        return CM_INVALID;
    }
    *out = (size_t)(v * mul);
    return CM_OK;
}

static enum cm_rc parse_bool(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcasecmp(s, "yes") == 0) {
        *out = true;
    } else if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcasecmp(s, "no") == 0) {
        *out = false;
    } else {
        return CM_INVALID;
    }
    return CM_OK;
}

static enum cm_rc load_field(const struct cm_cfg_field *f, void *cfg, struct cm_err *err)
{
    char *base = (char *)cfg + f->off;
    struct cm_err ferr = {{0}};
    char *val = cm_cfg_getenv(f->env, &ferr);
    const char *text;
    enum cm_rc rc = CM_OK;

    if (val == NULL && ferr.msg[0] != '\0') {
        return cm_err_set(err, CM_INVALID, "%s", ferr.msg);
    }
    if (val != NULL && val[0] == '\0' && f->type != CM_CFG_STR) {
        free(val);
        val = NULL;
    }
    if (val == NULL && (f->flags & CM_CFG_REQUIRED)) {
        return cm_err_set(err, CM_INVALID, "%s is required (%s)", f->env, f->doc ? f->doc : "");
    }
    text = val != NULL ? val : (f->def != NULL ? f->def : "");

    switch (f->type) {
    case CM_CFG_STR: {
        char **dst = (char **)(void *)base;
        free(*dst);
        *dst = cm_xstrdup(text);
        break;
    }
    case CM_CFG_INT: {
        long v = 0;
        if (parse_long(text, &v) != CM_OK) {
            rc = cm_err_set(err, CM_INVALID, "%s must be an integer", f->env);
        } else if ((f->min != 0 || f->max != 0) && (v < f->min || v > f->max)) {
            rc = cm_err_set(err, CM_INVALID, "%s must be between %ld and %ld", f->env, f->min,
                            f->max);
        } else {
            *(long *)(void *)base = v;
        }
        break;
    }
    case CM_CFG_SIZE: {
        size_t v = 0;
        if (parse_size(text, &v) != CM_OK) {
            rc = cm_err_set(err, CM_INVALID, "%s must be a size like 64k or 1m", f->env);
        } else if ((f->min != 0 || f->max != 0) &&
                   (v < (size_t)f->min || v > (size_t)f->max)) {
            rc = cm_err_set(err, CM_INVALID, "%s must be between %ld and %ld bytes", f->env, f->min,
                            f->max);
        } else {
            *(size_t *)(void *)base = v;
        }
        break;
    }
    case CM_CFG_BOOL: {
        bool v = false;
        if (parse_bool(text, &v) != CM_OK) {
            rc = cm_err_set(err, CM_INVALID, "%s must be true or false", f->env);
        } else {
            *(bool *)(void *)base = v;
        }
        break;
    }
    }
    free(val);
    return rc;
}

enum cm_rc cm_cfg_load(const struct cm_cfg_field *fields, void *cfg, struct cm_err *err)
{
    for (const struct cm_cfg_field *f = fields; f->env != NULL; f++) {
        enum cm_rc rc = load_field(f, cfg, err);
        if (rc != CM_OK) {
            return rc;
        }
    }
    return CM_OK;
}

void cm_cfg_free(const struct cm_cfg_field *fields, void *cfg)
{
    for (const struct cm_cfg_field *f = fields; f->env != NULL; f++) {
        if (f->type == CM_CFG_STR) {
            char **p = (char **)(void *)((char *)cfg + f->off);
            free(*p);
            *p = NULL;
        }
    }
}

void cm_cfg_print(const struct cm_cfg_field *fields, const void *cfg, FILE *out)
{
    for (const struct cm_cfg_field *f = fields; f->env != NULL; f++) {
        const char *base = (const char *)cfg + f->off;

        switch (f->type) {
        case CM_CFG_STR: {
            const char *s = *(char *const *)(const void *)base;
            if (f->flags & CM_CFG_SECRET) {
                fprintf(out, "%s=%s\n", f->env, (s != NULL && s[0] != '\0') ? "***" : "");
            } else {
                fprintf(out, "%s=%s\n", f->env, s != NULL ? s : "");
            }
            break;
        }
        case CM_CFG_INT:
            fprintf(out, "%s=%ld\n", f->env, *(const long *)(const void *)base);
            break;
        case CM_CFG_SIZE:
            fprintf(out, "%s=%zu\n", f->env, *(const size_t *)(const void *)base);
            break;
        case CM_CFG_BOOL:
            fprintf(out, "%s=%s\n", f->env, *(const bool *)(const void *)base ? "true" : "false");
            break;
        }
    }
}

void cm_cfg_help(const struct cm_cfg_field *fields, FILE *out)
{
    fprintf(out, "Configuration (environment; NAME_FILE reads the value from a file):\n");
    for (const struct cm_cfg_field *f = fields; f->env != NULL; f++) {
        fprintf(out, "  %-40s %s%s%s%s\n", f->env, f->doc ? f->doc : "",
                f->def && f->def[0] ? " [default: " : "", f->def && f->def[0] ? f->def : "",
                f->def && f->def[0] ? "]" : "");
    }
}

void cm_cfg_load_or_exit(const char *component, const struct cm_cfg_field *fields, void *cfg,
                         int argc, char **argv)
{
    struct cm_err err = {{0}};
    bool print = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fprintf(stdout, "usage: auren-%s [--help] [--print-config]\n", component);
            cm_cfg_help(fields, stdout);
            exit(0);
        } else if (strcmp(argv[i], "--print-config") == 0) {
            print = true;
        } else {
            fprintf(stderr, "auren-%s: unknown argument %s (try --help)\n", component, argv[i]);
            exit(2);
        }
    }
    if (cm_cfg_load(fields, cfg, &err) != CM_OK) {
        fprintf(stderr, "auren-%s: config: %s\n", component, err.msg);
        exit(2);
    }
    if (print) {
        cm_cfg_print(fields, cfg, stdout);
        exit(0);
    }
}
