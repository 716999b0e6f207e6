/* Fuzz target: every webhook signature verifier of gateway/gw_verify.h.
 * Input: byte 0 picks the verifier (whoop, oura, polar, fitbit, terra, app, google_health,
 * garmin, path_only), byte 1 the mode, bytes 2-3 a time offset; then "name: value" header lines,
 * an empty line and the body.
 *   mode 0: the headers as given;
 *   mode 1: the harness signs the body itself (HMAC computed here with OpenSSL, independently
 *           of gw_verify_hmac) with a timestamp inside the replay window;
 *   mode 2: the same with a timestamp outside the window.
 * Invariants: the verdict is a defined value with a short reason code and is deterministic;
 * mode 0 never accepts a signature that does not bind the body (a body one byte longer must be
 * rejected) nor a shared value that is absent; mode 1 accepts, and rejects the same headers over
 * a changed body as a mismatch; mode 2 answers "stale" for every vendor that signs a time. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz_util.h"
#include "gw_cfg.h"
#include "gw_verify.h"

#define NOW_MS INT64_C(1790000000000)
#define TOLERANCE_S 300
#define APP_KEY_B64 "ZnV6ei1hcHAta2V5LTAxMjM0NTY3ODlhYmNkZWY=" /* "fuzz-app-key-0123456789abcdef" */

enum vendor { V_WHOOP, V_OURA, V_POLAR, V_FITBIT, V_TERRA, V_APP, V_GOOGLE, V_GARMIN, V_PATH, V_N };

typedef enum gw_verdict (*verify_fn)(const struct gw_cfg *, const struct gw_verify_req *);

static const verify_fn verifiers[V_N] = {
    gw_verify_whoop, gw_verify_oura,          gw_verify_polar,  gw_verify_fitbit,
    gw_verify_terra, gw_verify_app,           gw_verify_google_health, gw_verify_garmin,
    gw_verify_path_only,
};

static struct gw_cfg cfg;
static bool cfg_ready;

static void setup(void)
{
    struct cm_err err = {{0}};

    if (cfg_ready) {
        return;
    }
    cfg.secret_whoop = "fuzz-whoop-secret";
    cfg.secret_oura = "fuzz-oura-secret";
    cfg.secret_polar = "fuzz-polar-secret";
    cfg.secret_fitbit = "fuzz-fitbit-secret";
    cfg.secret_terra = "fuzz-terra-secret";
    cfg.secret_app = "whsec_" APP_KEY_B64;
    cfg.google_health_authorization = "Bearer fuzz-google-secret";
    cfg.garmin_client_id = "fuzz-garmin-client";
    cfg.token_garmin = "fuzz-garmin-token";
    cfg.tolerance_s = TOLERANCE_S;
    if (gw_cfg_derive(&cfg, &err) != CM_OK) {
        abort();
    }
    cfg_ready = true;
}

static size_t mac(const EVP_MD *md, const void *key, size_t keylen, const char *prefix,
                  const uint8_t *body, size_t body_len, uint8_t out[EVP_MAX_MD_SIZE])
{
    size_t plen = strlen(prefix);
    uint8_t *msg = malloc(plen + body_len + 1);
    unsigned int n = 0;

    if (msg == NULL) {
        abort();
    }
    memcpy(msg, prefix, plen + 1);
    memcpy(msg + plen, body, body_len);
    if (HMAC(md, key, (int)keylen, msg, plen + body_len, out, &n) == NULL) {
        abort();
    }
    free(msg);
    return n;
}

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void b64(const uint8_t *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Storage for the headers the harness signs itself; they shadow the fuzzed ones. */
struct signed_headers {
    struct fuzz_headers *fuzzed;
    const char *name[3];
    char value[3][256];
    size_t n;
};

static const char *lookup_signed(void *arg, const char *name)
{
    struct signed_headers *s = arg;

    for (size_t i = 0; i < s->n; i++) {
        if (strcasecmp(s->name[i], name) == 0) {
            return s->value[i];
        }
    }
    return fuzz_headers_get(s->fuzzed, name);
}

static void put(struct signed_headers *s, const char *name, const char *value)
{
    s->name[s->n] = name;
    snprintf(s->value[s->n], sizeof(s->value[0]), "%s", value);
    s->n++;
}

/* Sign body as vendor v would at unix time ts_s. */
static void sign(enum vendor v, int64_t ts_s, const uint8_t *body, size_t len,
                 struct signed_headers *s)
{
    uint8_t m[EVP_MAX_MD_SIZE];
    char enc[2 * EVP_MAX_MD_SIZE + 1];
    char ts[32];
    char prefix[96];
    char text[200];
    size_t n;

    snprintf(ts, sizeof(ts), "%lld", (long long)ts_s);
    switch (v) {
    case V_WHOOP:
        snprintf(ts, sizeof(ts), "%lld", (long long)ts_s * 1000);
        n = mac(EVP_sha256(), cfg.secret_whoop, strlen(cfg.secret_whoop), ts, body, len, m);
        b64(m, n, enc);
        put(s, "X-WHOOP-Signature-Timestamp", ts);
        put(s, "X-WHOOP-Signature", enc);
        break;
    case V_OURA:
        n = mac(EVP_sha256(), cfg.secret_oura, strlen(cfg.secret_oura), ts, body, len, m);
        hex(m, n, enc);
        put(s, "x-oura-timestamp", ts);
        put(s, "x-oura-signature", enc);
        break;
    case V_POLAR:
        n = mac(EVP_sha256(), cfg.secret_polar, strlen(cfg.secret_polar), "", body, len, m);
        hex(m, n, enc);
        put(s, "Polar-Webhook-Signature", enc);
        break;
    case V_FITBIT:
        snprintf(prefix, sizeof(prefix), "%s&", cfg.secret_fitbit);
        n = mac(EVP_sha1(), prefix, strlen(prefix), "", body, len, m);
        b64(m, n, enc);
        put(s, "X-Fitbit-Signature", enc);
        break;
    case V_TERRA:
        snprintf(prefix, sizeof(prefix), "%s.", ts);
        n = mac(EVP_sha256(), cfg.secret_terra, strlen(cfg.secret_terra), prefix, body, len, m);
        hex(m, n, enc);
        snprintf(text, sizeof(text), "t=%s,v1=%s", ts, enc);
        put(s, "terra-signature", text);
        break;
    case V_APP:
        snprintf(prefix, sizeof(prefix), "msg_fuzz.%s.", ts);
        n = mac(EVP_sha256(), cfg.app_key, cfg.app_key_len, prefix, body, len, m);
        b64(m, n, enc);
        snprintf(text, sizeof(text), "v1,%s", enc);
        put(s, "webhook-id", "msg_fuzz");
        put(s, "webhook-timestamp", ts);
        put(s, "webhook-signature", text);
        break;
    case V_GOOGLE:
        put(s, "Authorization", cfg.google_health_authorization);
        break;
    case V_GARMIN:
        put(s, "garmin-client-id", cfg.garmin_client_id);
        break;
    case V_PATH:
    case V_N:
        break;
    }
}

static bool signs_time(enum vendor v)
{
    return v == V_WHOOP || v == V_OURA || v == V_TERRA || v == V_APP;
}

static bool binds_body(enum vendor v)
{
    return v <= V_APP;
}

static enum gw_verdict run(enum vendor v, gw_lookup_fn fn, void *arg, const uint8_t *body,
                           size_t len)
{
    struct gw_verify_req r = {.header = fn, .header_arg = arg, .body = body, .body_len = len,
                              .now_ms = NOW_MS, .tolerance_s = TOLERANCE_S};
    enum gw_verdict a = verifiers[v](&cfg, &r);
    enum gw_verdict b = verifiers[v](&cfg, &r);
    const char *reason = gw_verdict_str(a);

    FUZZ_CHECK(a == b, "verdict is not deterministic");
    FUZZ_CHECK(a >= GW_VERIFY_OK && a <= GW_VERIFY_MISMATCH, "verdict out of range");
    FUZZ_CHECK(reason != NULL && reason[0] != '\0' && strspn(reason, "abcdefghijklmnopqrstuvwxyz_")
                                                          == strlen(reason),
               "reason is not a short code");
    return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_headers h;
    struct signed_headers s = {0};
    const uint8_t *body;
    size_t head_len, body_len;
    enum vendor v;
    unsigned mode;
    int off;
    uint8_t *longer;
    enum gw_verdict verdict;

    if (size < 4) {
        return 0;
    }
    setup();
    v = (enum vendor)(data[0] % V_N);
    mode = data[1] % 3;
    off = (int16_t)(uint16_t)(data[2] | (data[3] << 8));
    fuzz_split(data + 4, size - 4, &head_len, &body, &body_len);
    fuzz_headers_parse(&h, (const char *)data + 4, head_len);
    s.fuzzed = &h;

    if (mode == 0) {
        verdict = run(v, fuzz_headers_get, &h, body, body_len);
        if (verdict == GW_VERIFY_OK && binds_body(v)) {
            longer = malloc(body_len + 1);
            memcpy(longer, body, body_len);
            longer[body_len] = 'x';
            FUZZ_CHECK(run(v, fuzz_headers_get, &h, longer, body_len + 1) != GW_VERIFY_OK,
                       "signature accepted for a different body");
            free(longer);
        }
        if (verdict == GW_VERIFY_OK && v == V_GOOGLE) {
            FUZZ_CHECK(fuzz_headers_get(&h, "Authorization") != NULL, "accepted without header");
        }
        if (verdict == GW_VERIFY_OK && v == V_GARMIN) {
            FUZZ_CHECK(fuzz_headers_get(&h, "garmin-client-id") != NULL,
                       "accepted without header");
        }
    } else {
        int64_t ts = NOW_MS / 1000;
        if (mode == 1) {
            ts += off % (TOLERANCE_S + 1);
        } else {
            ts += (int64_t)(off < 0 ? -1 : 1) * (TOLERANCE_S + 1 + (off < 0 ? -(off + 1) : off));
        }
        sign(v, ts, body, body_len, &s);
        verdict = run(v, lookup_signed, &s, body, body_len);
        if (mode == 2 && signs_time(v)) {
            FUZZ_CHECK(verdict == GW_VERIFY_STALE, "timestamp outside the window not stale");
        } else {
            FUZZ_CHECK(verdict == GW_VERIFY_OK, "correct signature rejected");
            if (binds_body(v) && body_len > 0) {
                longer = malloc(body_len);
                memcpy(longer, body, body_len);
                longer[body_len / 2] ^= 0x01;
                FUZZ_CHECK(run(v, lookup_signed, &s, longer, body_len) == GW_VERIFY_MISMATCH,
                           "changed body not a mismatch");
                free(longer);
            }
        }
    }
    fuzz_headers_fini(&h);
    return 0;
}
