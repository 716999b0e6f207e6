/* Shared by the libFuzzer targets in tests/fuzz: the entry point's prototype, a check that
 * aborts (so libFuzzer and the replay runner both report it as a crash), and a tiny parser for
 * "name: value" header blocks that several targets take as input.
 * Inputs are attacker-shaped bytes: every helper bounds its copies. Thread: single. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant the code under test must keep: on violation print what broke and abort. */
#define FUZZ_CHECK(cond, what)                                                               \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "fuzz invariant violated (%s:%d): %s\n", __FILE__, __LINE__,    \
                    (what));                                                                 \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define FUZZ_MAX_HEADERS 16

struct fuzz_headers {
    size_t n;
    char *name[FUZZ_MAX_HEADERS];
    char *value[FUZZ_MAX_HEADERS];
    char *text; /* NUL-separated storage owned by the struct */
};

/* Parse "name: value\n" lines of text[0..len) (CR stripped, lines without ':' skipped, at most
 * FUZZ_MAX_HEADERS kept). NUL bytes end a value early, as they would in C strings. */
static inline void fuzz_headers_parse(struct fuzz_headers *h, const char *text, size_t len)
{
    size_t i = 0;

    memset(h, 0, sizeof(*h));
    h->text = malloc(len + 1);
    if (h->text == NULL) {
        abort();
    }
    memcpy(h->text, text, len);
    h->text[len] = '\0';
    while (i < len && h->n < FUZZ_MAX_HEADERS) {
        char *line = h->text + i;
        char *nl = memchr(line, '\n', len - i);
        size_t llen = nl != NULL ? (size_t)(nl - line) : len - i;
        char *colon;

        i += llen + 1;
        line[llen] = '\0';
        if (llen > 0 && line[llen - 1] == '\r') {
            line[llen - 1] = '\0';
        }
        colon = strchr(line, ':');
        if (colon == NULL) {
            continue;
        }
        *colon = '\0';
        colon++;
        while (*colon == ' ') {
            colon++;
        }
        h->name[h->n] = line;
        h->value[h->n] = colon;
        h->n++;
    }
}

static inline void fuzz_headers_fini(struct fuzz_headers *h)
{
    free(h->text);
    memset(h, 0, sizeof(*h));
}

/* Case-insensitive lookup, first match wins (as libmicrohttpd's lookup does). */
static inline const char *fuzz_headers_get(void *arg, const char *name)
{
    const struct fuzz_headers *h = arg;

    for (size_t i = 0; i < h->n; i++) {
        if (strcasecmp(h->name[i], name) == 0) {
            return h->value[i];
        }
    }
    return NULL;
}

/* Split data at the first "\n\n": head = before, body = after (no separator: all head). */
static inline void fuzz_split(const uint8_t *data, size_t size, size_t *head_len,
                              const uint8_t **body, size_t *body_len)
{
    for (size_t i = 0; i + 1 < size; i++) {
        if (data[i] == '\n' && data[i + 1] == '\n') {
            *head_len = i;
            *body = data + i + 2;
            *body_len = size - i - 2;
            return;
        }
    }
    *head_len = size;
    *body = data + size;
    *body_len = 0;
}

#endif
