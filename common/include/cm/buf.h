/* A growable byte buffer with a ceiling (curl's dynbuf idea): appends beyond `max` fail instead of
 * growing without bound, which is how request bodies are capped.
 * Ownership: the struct lives in caller storage; cm_buf_fini() releases the bytes. Thread: one owner. */
#ifndef CM_BUF_H
#define CM_BUF_H

#include "cm/common.h"

struct cm_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = unbounded */
};

void cm_buf_init(struct cm_buf *b, size_t max);
void cm_buf_fini(struct cm_buf *b);
void cm_buf_reset(struct cm_buf *b);
/* CM_INVALID when the append would exceed max; the buffer is unchanged then. */
enum cm_rc cm_buf_append(struct cm_buf *b, const void *p, size_t n);
enum cm_rc cm_buf_append_str(struct cm_buf *b, const char *s);
enum cm_rc cm_buf_printf(struct cm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Make sure data is NUL-terminated (not counted in len). */
enum cm_rc cm_buf_terminate(struct cm_buf *b);

#endif
