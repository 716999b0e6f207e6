/* Per-vendor webhook authentication (vendors.md sections 0-10, 8d). Every verifier works on the
 * raw body bytes exactly as received, compares MACs with cm_ct_equal(), and checks signed
 * timestamps against the replay window in both directions. Verifiers never log: the caller picks
 * the reaction (401) and records the reason code from gw_verdict_str(). */
#include "gw_verify.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "gw_cfg.h"

#define MAC_MAX 64         /* SHA-512 size; we use SHA-256 and SHA-1 */
#define SIG_TEXT_MAX 256   /* longest signature header part we decode */
#define TS_DIGITS_MAX 18   /* decimal digits of a timestamp (ms fit in 13) */
#define TS_MS_THRESHOLD 100000000000LL /* >= this: milliseconds (year 1973 in ms, 5138 in s) */

static EVP_MAC *hmac_impl;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void fetch_hmac(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

const char *gw_verdict_str(enum gw_verdict v)
{
    switch (v) {
    case GW_VERIFY_OK:
        return "ok";
    case GW_VERIFY_UNCONFIGURED:
        return "vendor_not_configured";
    case GW_VERIFY_MISSING:
        return "missing_signature";
    case GW_VERIFY_MALFORMED:
        return "malformed_signature";
    case GW_VERIFY_STALE:
        return "stale_timestamp";
    case GW_VERIFY_MISMATCH:
        return "bad_signature";
    }
    return "bad_signature";
}

bool gw_verify_hmac(const char *digest, const void *key, size_t keylen, const void *const *parts,
                    const size_t *lens, size_t nparts, uint8_t *out, size_t *outlen)
{
    EVP_MAC_CTX *ctx;
    OSSL_PARAM params[2];
    bool ok = false;

    pthread_once(&hmac_once, fetch_hmac);
    if (hmac_impl == NULL || keylen == 0) {
        return false;
    }
    ctx = EVP_MAC_CTX_new(hmac_impl);
    if (ctx == NULL) {
        return false;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key, keylen, params) != 1) {
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        if (lens[i] > 0 && EVP_MAC_update(ctx, parts[i], lens[i]) != 1) {
            goto out;
        }
    }
    ok = EVP_MAC_final(ctx, out, outlen, MAC_MAX) == 1;
out:
    EVP_MAC_CTX_free(ctx);
    return ok;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

bool gw_verify_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    size_t pad = 0;

    while (n > 0 && in[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) {
                return false;
            }
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be zero padding, or the text was not canonical base64. */
    if ((acc & ((1u << bits) - 1)) != 0) {
        return false;
    }
    *outlen = o;
    return true;
}

bool gw_verify_hex_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    if (n % 2 != 0 || n / 2 > cap) {
        return false;
    }
    for (size_t i = 0; i < n; i += 2) {
        int hi = cm_hex_digit((unsigned char)in[i]);
        int lo = cm_hex_digit((unsigned char)in[i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i / 2] = (uint8_t)((hi << 4) | lo);
    }
    *outlen = n / 2;
    return true;
}

/* Digits only, no sign, no spaces. */
static bool parse_timestamp(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;

    if (n == 0 || n > TS_DIGITS_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool within_window(int64_t ts_ms, const struct gw_verify_req *r)
{
    int64_t skew = r->now_ms - ts_ms;
    int64_t tol_ms = (int64_t)r->tolerance_s * 1000;

    return skew <= tol_ms && skew >= -tol_ms;
}

/* The same for a timestamp in seconds; one too large to convert is outside any window. */
static bool within_window_s(int64_t ts_s, const struct gw_verify_req *r)
{
    return ts_s <= INT64_MAX / 1000 && within_window(ts_s * 1000, r);
}

/* Compare a MAC against base64 text: encode ours, compare the texts in constant time. */
static bool b64_matches(const uint8_t *mac, size_t maclen, const char *text, size_t textlen)
{
    unsigned char enc[2 * MAC_MAX];
    int n = EVP_EncodeBlock(enc, mac, (int)maclen);

    return n > 0 && cm_ct_equal(enc, (size_t)n, text, textlen);
}

/* Compare a MAC against hex text of either case. */
static bool hex_matches(const uint8_t *mac, size_t maclen, const char *text, size_t textlen)
{
    uint8_t got[MAC_MAX];
    size_t gotlen = 0;

    if (!gw_verify_hex_decode(text, textlen, got, sizeof(got), &gotlen)) {
        return false;
    }
    return cm_ct_equal(mac, maclen, got, gotlen);
}

static size_t trimmed(const char **s, size_t n)
{
    while (n > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)(*s)[n - 1])) {
        n--;
    }
    return n;
}

/* Shared shape of WHOOP and Oura: MAC(secret, ts || body), encoded as base64 or hex. */
static enum gw_verdict verify_ts_concat(const char *secret, const char *sig_header,
                                        const char *ts_header, bool ts_is_ms, bool hex,
                                        const struct gw_verify_req *r)
{
    const char *sig = r->header(r->header_arg, sig_header);
    const char *ts = r->header(r->header_arg, ts_header);
    const void *parts[2];
    size_t lens[2];
    uint8_t mac[MAC_MAX];
    size_t maclen = 0;
    int64_t ts_val = 0;
    size_t siglen;

    if (!gw_cfg_is_set(secret)) {
        return GW_VERIFY_UNCONFIGURED;
    }
    if (sig == NULL || ts == NULL) {
        return GW_VERIFY_MISSING;
    }
    siglen = trimmed(&sig, strlen(sig));
    if (!parse_timestamp(ts, strlen(ts), &ts_val) || siglen == 0 || siglen > SIG_TEXT_MAX) {
        return GW_VERIFY_MALFORMED;
    }
    if (!ts_is_ms && ts_val < TS_MS_THRESHOLD) {
        ts_val *= 1000;
    }
    if (!within_window(ts_val, r)) {
        return GW_VERIFY_STALE;
    }
    parts[0] = ts;
    lens[0] = strlen(ts);
    parts[1] = r->body;
    lens[1] = r->body_len;
    if (!gw_verify_hmac("SHA256", secret, strlen(secret), parts, lens, 2, mac, &maclen)) {
        return GW_VERIFY_MISMATCH;
    }
    if (hex ? hex_matches(mac, maclen, sig, siglen) : b64_matches(mac, maclen, sig, siglen)) {
        return GW_VERIFY_OK;
    }
    return GW_VERIFY_MISMATCH;
}

enum gw_verdict gw_verify_whoop(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    return verify_ts_concat(cfg->secret_whoop, "X-WHOOP-Signature", "X-WHOOP-Signature-Timestamp",
                            true, false, r);
}

enum gw_verdict gw_verify_oura(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    /* ts_is_ms=false: read as seconds unless large enough to be milliseconds. */
    return verify_ts_concat(cfg->secret_oura, "x-oura-signature", "x-oura-timestamp", false, true,
                            r);
}

/* Shared shape of Polar and Fitbit: MAC(key, body) with no timestamp. */
static enum gw_verdict verify_body_only(const char *digest, const char *secret, bool amp_key,
                                        const char *sig_header, bool hex,
                                        const struct gw_verify_req *r)
{
    const char *sig = r->header(r->header_arg, sig_header);
    const void *parts[1] = {r->body};
    size_t lens[1] = {r->body_len};
    uint8_t mac[MAC_MAX];
    size_t maclen = 0;
    size_t siglen;
    char *key;
    size_t keylen;
    bool ok;

    if (!gw_cfg_is_set(secret)) {
        return GW_VERIFY_UNCONFIGURED;
    }
    if (sig == NULL) {
        return GW_VERIFY_MISSING;
    }
    siglen = trimmed(&sig, strlen(sig));
    if (siglen == 0 || siglen > SIG_TEXT_MAX) {
        return GW_VERIFY_MALFORMED;
    }
    keylen = strlen(secret) + (amp_key ? 1 : 0);
    key = cm_xmalloc(keylen + 1);
    memcpy(key, secret, strlen(secret) + 1); /* with its NUL; the buffer has keylen + 1 */
    if (amp_key) {
        key[keylen - 1] = '&'; /* Fitbit keys the MAC with client_secret + "&" */
    }
    ok = gw_verify_hmac(digest, key, keylen, parts, lens, 1, mac, &maclen);
    memset(key, 0, keylen);
    free(key);
    if (!ok) {
        return GW_VERIFY_MISMATCH;
    }
    if (hex ? hex_matches(mac, maclen, sig, siglen) : b64_matches(mac, maclen, sig, siglen)) {
        return GW_VERIFY_OK;
    }
    return GW_VERIFY_MISMATCH;
}

enum gw_verdict gw_verify_polar(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    return verify_body_only("SHA256", cfg->secret_polar, false, "Polar-Webhook-Signature", true, r);
}

enum gw_verdict gw_verify_fitbit(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    return verify_body_only("SHA1", cfg->secret_fitbit, true, "X-Fitbit-Signature", false, r);
}

enum gw_verdict gw_verify_terra(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    const char *hdr = r->header(r->header_arg, "terra-signature");
    const char *t = NULL;
    size_t tlen = 0;
    const char *v1[8];
    size_t v1len[8];
    size_t nv1 = 0;
    int64_t ts = 0;
    uint8_t mac[MAC_MAX];
    size_t maclen = 0;
    const void *parts[3];
    size_t lens[3];
    bool match = false;

    if (!gw_cfg_is_set(cfg->secret_terra)) {
        return GW_VERIFY_UNCONFIGURED;
    }
    if (hdr == NULL) {
        return GW_VERIFY_MISSING;
    }
    /* "t=1723808700,v1=<hex>, v0=<hex>": split on ',', then on the first '='. */
    for (const char *p = hdr; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *item = p;
        size_t len = trimmed(&item, n);
        const char *eq = memchr(item, '=', len);

        if (eq != NULL) {
            size_t klen = (size_t)(eq - item);
            if (klen == 1 && item[0] == 't') {
                t = eq + 1;
                tlen = len - 2;
            } else if (klen == 2 && item[0] == 'v' && item[1] == '1' && nv1 < CM_ARRAY_LEN(v1)) {
                v1[nv1] = eq + 1;
                v1len[nv1++] = len - 3;
            }
        }
        p = end != NULL ? end + 1 : p + n;
    }
    if (t == NULL || nv1 == 0) {
        return GW_VERIFY_MALFORMED;
    }
    if (!parse_timestamp(t, tlen, &ts)) {
        return GW_VERIFY_MALFORMED;
    }
    if (!within_window_s(ts, r)) {
        return GW_VERIFY_STALE;
    }
    parts[0] = t;
    lens[0] = tlen;
    parts[1] = ".";
    lens[1] = 1;
    parts[2] = r->body;
    lens[2] = r->body_len;
    if (!gw_verify_hmac("SHA256", cfg->secret_terra, strlen(cfg->secret_terra), parts, lens, 3, mac,
                        &maclen)) {
        return GW_VERIFY_MISMATCH;
    }
    for (size_t i = 0; i < nv1; i++) {
        match |= hex_matches(mac, maclen, v1[i], v1len[i]);
    }
    return match ? GW_VERIFY_OK : GW_VERIFY_MISMATCH;
}

enum gw_verdict gw_verify_app(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    const char *id = r->header(r->header_arg, "webhook-id");
    const char *ts = r->header(r->header_arg, "webhook-timestamp");
    const char *sigs = r->header(r->header_arg, "webhook-signature");
    int64_t ts_val = 0;
    uint8_t mac[MAC_MAX];
    size_t maclen = 0;
    const void *parts[5];
    size_t lens[5];
    bool match = false;
    bool any_v1 = false;

    if (cfg->app_key_len == 0) {
        return GW_VERIFY_UNCONFIGURED;
    }
    if (id == NULL || ts == NULL || sigs == NULL) {
        return GW_VERIFY_MISSING;
    }
    if (id[0] == '\0' || strlen(id) > SIG_TEXT_MAX || !parse_timestamp(ts, strlen(ts), &ts_val)) {
        return GW_VERIFY_MALFORMED;
    }
    if (!within_window_s(ts_val, r)) {
        return GW_VERIFY_STALE;
    }
    parts[0] = id;
    lens[0] = strlen(id);
    parts[1] = ".";
    lens[1] = 1;
    parts[2] = ts;
    lens[2] = strlen(ts);
    parts[3] = ".";
    lens[3] = 1;
    parts[4] = r->body;
    lens[4] = r->body_len;
    if (!gw_verify_hmac("SHA256", cfg->app_key, cfg->app_key_len, parts, lens, 5, mac, &maclen)) {
        return GW_VERIFY_MISMATCH;
    }
    /* "v1,<b64> v1,<b64> v1a,<...>": any v1 entry may match; other versions are ignored. */
    for (const char *p = sigs; *p != '\0';) {
        size_t n = strcspn(p, " ");
        if (n > 3 && p[0] == 'v' && p[1] == '1' && p[2] == ',') {
            any_v1 = true;
            match |= b64_matches(mac, maclen, p + 3, n - 3);
        }
        p += n;
        while (*p == ' ') {
            p++;
        }
    }
    if (!any_v1) {
        return GW_VERIFY_MALFORMED;
    }
    return match ? GW_VERIFY_OK : GW_VERIFY_MISMATCH;
}

/* A header that must equal a configured value exactly. */
static enum gw_verdict verify_shared_value(const char *expected, const char *header,
                                           const struct gw_verify_req *r)
{
    const char *got = r->header(r->header_arg, header);

    if (!gw_cfg_is_set(expected)) {
        return GW_VERIFY_UNCONFIGURED;
    }
    if (got == NULL) {
        return GW_VERIFY_MISSING;
    }
    return cm_ct_equal(got, strlen(got), expected, strlen(expected)) ? GW_VERIFY_OK
                                                                     : GW_VERIFY_MISMATCH;
}

enum gw_verdict gw_verify_google_health(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    return verify_shared_value(cfg->google_health_authorization, "Authorization", r);
}

enum gw_verdict gw_verify_garmin(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    return verify_shared_value(cfg->garmin_client_id, "garmin-client-id", r);
}

enum gw_verdict gw_verify_path_only(const struct gw_cfg *cfg, const struct gw_verify_req *r)
{
    (void)cfg;
    (void)r;
    return GW_VERIFY_OK;
}
