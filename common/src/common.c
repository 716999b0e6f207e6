/* Basics shared by every binary: result-code names, payload-free error text, allocation that
 * aborts on OOM (Redis/h2o style: a daemon that cannot allocate cannot keep its promises),
 * clocks, constant-time comparison and random ids. */
#include "cm/common.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <errno.h>

const char *cm_rc_str(enum cm_rc rc)
{
    switch (rc) {
    case CM_OK:
        return "ok";
    case CM_INVALID:
        return "invalid";
    case CM_RETRY:
        return "retry";
    case CM_FATAL:
        return "fatal";
    }
    return "unknown";
}

/* Parenthesized: common.h makes cm_err_set a macro for the analyzer. */
enum cm_rc (cm_err_set)(struct cm_err *err, enum cm_rc rc, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start()ed; clang 14 FP */
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void oom(size_t n)
{
    fprintf(stderr, "{\"level\":\"error\",\"event\":\"oom\",\"msg\":\"bytes=%zu\"}\n", n);
    abort();
}

void *cm_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        oom(n);
    }
    return p;
}

void *cm_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        oom(n * size);
    }
    return p;
}

void *cm_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        oom(n);
    }
    return q;
}

char *cm_xstrdup(const char *s)
{
    return cm_xstrndup(s, strlen(s));
}

char *cm_xstrndup(const char *s, size_t n)
{
    char *p = cm_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

bool cm_strlcpy(char *dst, const char *src, size_t dstsz)
{
    size_t n = strlen(src);

    if (dstsz == 0) {
        return n == 0;
    }
    if (n >= dstsz) {
        memcpy(dst, src, dstsz - 1);
        dst[dstsz - 1] = '\0';
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cm_now_us(void)
{
    return clock_us(CLOCK_REALTIME);
}

int64_t cm_now_ms(void)
{
    return clock_us(CLOCK_REALTIME) / 1000;
}

int64_t cm_mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

int cm_hex_digit(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool cm_pct_decode(const char *s, size_t n, bool form, char *out, size_t outsz)
{
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = s[i];

        if (ch == '%') {
            int hi = i + 2 < n ? cm_hex_digit((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? cm_hex_digit((unsigned char)s[i + 2]) : -1;

            if (hi < 0 || lo < 0) {
                return false;
            }
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (form && ch == '+') {
            ch = ' ';
        }
        if (ch == '\0' || j + 1 >= outsz) {
            return false;
        }
        out[j++] = ch;
    }
    if (outsz == 0) {
        return false;
    }
    out[j] = '\0';
    return true;
}

bool cm_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile uint8_t *pa = a;
    const volatile uint8_t *pb = b;
    size_t n = alen > blen ? alen : blen;
    uint8_t diff = (uint8_t)(alen != blen);

    /* Walk the longer length so the time does not reveal where the first difference is; bytes
     * past the end of the shorter input compare against zero. */
    for (size_t i = 0; i < n; i++) {
        uint8_t x = i < alen ? pa[i] : 0;
        uint8_t y = i < blen ? pb[i] : 0;
        diff |= (uint8_t)(x ^ y);
    }
    return diff == 0;
}

void cm_random_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;

    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}

void cm_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

void cm_random_id(char out[33])
{
    uint8_t b[16];

    cm_random_bytes(b, sizeof(b));
    cm_hex_encode(b, sizeof(b), out);
}

void cm_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "{\"level\":\"error\",\"event\":\"assert\",\"msg\":\"%s at %s:%d\"}\n", expr, file,
            line);
    abort();
}

void cm_signals_install(void (*on_stop)(int sig))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}
