/* Structured JSON logs, one object per line on stderr, one write(2) per line so lines from
 * several threads never interleave. Messages are short key=value texts built by our own code;
 * they are JSON-escaped here. The PHI rules are in cm/log.h. */
#include "cm/log.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cm/common.h"

int cm_log_level = CM_LOG_INFO;
static char log_component[32] = "auren";
static uint8_t pseudonym_key[64];
static size_t pseudonym_key_len;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void cm_log_init(const char *component)
{
    const char *lvl = getenv("LOG_LEVEL");
    const char *key = getenv("LOG_PSEUDONYM_KEY");

    cm_strlcpy(log_component, component, sizeof(log_component));
    if (lvl != NULL) {
        for (int i = 0; i < (int)CM_ARRAY_LEN(level_names); i++) {
            if (strcasecmp(lvl, level_names[i]) == 0) {
                cm_log_level = i;
            }
        }
    }
    if (key != NULL && key[0] != '\0') {
        pseudonym_key_len = strlen(key) < sizeof(pseudonym_key) ? strlen(key) : sizeof(pseudonym_key);
        memcpy(pseudonym_key, key, pseudonym_key_len);
    } else {
        /* Without a configured key pseudonyms are only stable within this process. */
        pseudonym_key_len = 32;
        cm_random_bytes(pseudonym_key, pseudonym_key_len);
    }
}

static size_t json_escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && o + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

void cm_log_emit(enum cm_log_level lvl, const char *event, const char *fmt, ...)
{
    char msg[768];
    char esc[1600];
    char ev[128];
    char line[2048];
    char ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;
    int n;

    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start()ed; clang 14 FP */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_escape(esc, sizeof(esc), msg);
    json_escape(ev, sizeof(ev), event);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line),
                 "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":\"%s\",\"event\":\"%s\","
                 "\"msg\":\"%s\"}\n",
                 ts, now.tv_nsec / 1000000, level_names[lvl], log_component, ev, esc);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void cm_log_pseudonym(const char *id, char out[17])
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    HMAC(EVP_sha256(), pseudonym_key, (int)pseudonym_key_len, (const uint8_t *)id, strlen(id), mac,
         &maclen);
    cm_hex_encode(mac, 8, out);
}
