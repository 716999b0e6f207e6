/* Growable byte buffer with a ceiling. Growth doubles; an append past `max` fails and leaves the
 * buffer untouched, which is how body limits become 413s rather than memory growth. */
#include "cm/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_buf_init(struct cm_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void cm_buf_fini(struct cm_buf *b)
{
    if (b == NULL) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void cm_buf_reset(struct cm_buf *b)
{
    b->len = 0;
}

static enum cm_rc reserve(struct cm_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1; /* room for a terminator */
    size_t cap = b->cap ? b->cap : 256;

    if (extra > SIZE_MAX / 2 - b->len) {
        return CM_INVALID;
    }
    if (b->max != 0 && b->len + extra > b->max) {
        return CM_INVALID;
    }
    if (need <= b->cap) {
        return CM_OK;
    }
    while (cap < need) {
        cap *= 2;
    }
    b->data = cm_xrealloc(b->data, cap);
    b->cap = cap;
    return CM_OK;
}

enum cm_rc cm_buf_append(struct cm_buf *b, const void *p, size_t n)
{
    if (reserve(b, n) != CM_OK) {
        return CM_INVALID;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    return CM_OK;
}

enum cm_rc cm_buf_append_str(struct cm_buf *b, const char *s)
{
    return cm_buf_append(b, s, strlen(s));
}

enum cm_rc cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start()ed; clang 14 FP */
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != CM_OK) {
        return CM_INVALID;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CM_OK;
}

enum cm_rc cm_buf_terminate(struct cm_buf *b)
{
    if (reserve(b, 0) != CM_OK) {
        return CM_INVALID;
    }
    b->data[b->len] = '\0';
    return CM_OK;
}
