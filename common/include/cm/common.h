/* Shared basics for every Auren binary: result codes, error text that never carries payload data,
 * allocation that aborts on OOM, time helpers and assertions.
 * Thread: everything here is thread-safe. */
#ifndef CM_COMMON_H
#define CM_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* INVALID: bad input, never retry (4xx, dead-letter). RETRY: a dependency is down, back off.
 * FATAL: the process must exit. */
enum cm_rc { CM_OK = 0, CM_INVALID = -1, CM_RETRY = -2, CM_FATAL = -3 };

/* Set on failure; holds a short payload-free reason (field names, codes, counts; never values). */
struct cm_err {
    char msg[160];
};

const char *cm_rc_str(enum cm_rc rc);

/* printf into err->msg and return rc, so callers can `return cm_err_set(err, CM_INVALID, ...)`.
 * NULL err is allowed. */
enum cm_rc cm_err_set(struct cm_err *err, enum cm_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#ifdef __clang_analyzer__
/* The analyzer sees no other translation unit: spell out that the result is rc, or it follows
 * "failed" paths as successes (garbage values, NULL out-parameters). Not compiled into binaries. */
static inline enum cm_rc cm_err_rc_(enum cm_rc rc, enum cm_rc set)
{
    (void)set;
    return rc;
}
#define cm_err_set(err, rc, ...) cm_err_rc_((rc), cm_err_set((err), (rc), __VA_ARGS__))
#endif

void *cm_xmalloc(size_t n);
void *cm_xcalloc(size_t n, size_t size);
void *cm_xrealloc(void *p, size_t n);
char *cm_xstrdup(const char *s);
char *cm_xstrndup(const char *s, size_t n);

/* Bounded copy that always terminates; returns false when truncated. */
bool cm_strlcpy(char *dst, const char *src, size_t dstsz);

/* Wall clock in microseconds / milliseconds since the epoch; monotonic clock in microseconds. */
int64_t cm_now_us(void);
int64_t cm_now_ms(void);
int64_t cm_mono_us(void);

/* Constant-time comparison of two byte strings; lengths are compared without early exit on content. */
bool cm_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Fill buf with n random bytes from the OS (getrandom). Aborts if the OS cannot supply them. */
void cm_random_bytes(void *buf, size_t n);

/* The value of one hexadecimal digit (either case), or -1. */
int cm_hex_digit(int c);

/* Percent-decode s[0..n) into out, NUL-terminated. With form set, '+' stands for a space
 * (application/x-www-form-urlencoded); without it (URL userinfo, paths) '+' is itself. False on a
 * truncated or non-hex escape, a decoded NUL, or when out (outsz bytes) has no room. */
bool cm_pct_decode(const char *s, size_t n, bool form, char *out, size_t outsz);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void cm_hex_encode(const uint8_t *in, size_t n, char *out);

/* A new random 128-bit id as 32 lower-case hex characters (out must hold 33 bytes). */
void cm_random_id(char out[33]);

/* A daemon's signals: `on_stop` runs on SIGTERM and SIGINT (calls are not restarted, so a
 * blocking poll returns early), and SIGPIPE is ignored (a Redis, PostgreSQL or HTTP peer closing
 * its end must not kill the process; the write reports EPIPE instead). */
void cm_signals_install(void (*on_stop)(int sig));

#define CM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void cm_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define cm_assert(e) ((e) ? (void)0 : cm_assert_fail(#e, __FILE__, __LINE__))

#endif
