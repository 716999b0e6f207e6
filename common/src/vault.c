/* AES-256-GCM token vault (cm/vault.h) over OpenSSL's EVP interface. Keys live only in this
 * struct and are wiped (OPENSSL_cleanse) when it is freed; plaintext buffers handed back to the
 * caller are the caller's to wipe. Nothing here logs. */
#include "cm/vault.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

struct vault_key {
    char kid[CM_VAULT_KID_MAX + 1];
    uint8_t key[CM_VAULT_KEY_LEN];
};

struct cm_vault {
    struct vault_key keys[CM_VAULT_MAX_KEYS];
    size_t n;
};

static bool kid_ok(const char *s, size_t n)
{
    if (n == 0 || n > CM_VAULT_KID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-')) {
            return false;
        }
    }
    return true;
}

/* Strict base64 of exactly CM_VAULT_KEY_LEN bytes (44 characters with one '=' of padding). */
static bool decode_key(const char *s, size_t n, uint8_t out[CM_VAULT_KEY_LEN])
{
    uint8_t tmp[48];

    if (n != 44 || s[43] != '=' || s[42] == '=') {
        return false;
    }
    for (size_t i = 0; i < 43; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/')) {
            return false;
        }
    }
    if (EVP_DecodeBlock(tmp, (const unsigned char *)s, 44) != 33) {
        OPENSSL_cleanse(tmp, sizeof(tmp));
        return false;
    }
    memcpy(out, tmp, CM_VAULT_KEY_LEN);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return true;
}

struct cm_vault *cm_vault_new(const char *spec, struct cm_err *err)
{
    struct cm_vault *v;
    const char *p = spec;
    size_t entry = 0;

    if (spec == NULL || spec[0] == '\0') {
        cm_err_set(err, CM_INVALID, "no keys given");
        return NULL;
    }
    v = cm_xcalloc(1, sizeof(*v));
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));
        struct vault_key *k;

        entry++;
        if (v->n == CM_VAULT_MAX_KEYS) {
            cm_err_set(err, CM_INVALID, "more than %d keys", CM_VAULT_MAX_KEYS);
            goto fail;
        }
        k = &v->keys[v->n];
        if (colon == NULL || !kid_ok(p, (size_t)(colon - p))) {
            cm_err_set(err, CM_INVALID, "entry %zu: expected kid:base64key, kid [A-Za-z0-9_.-]{1,32}",
                       entry);
            goto fail;
        }
        memcpy(k->kid, p, (size_t)(colon - p));
        k->kid[colon - p] = '\0';
        if (cm_vault_has_kid(v, k->kid)) {
            cm_err_set(err, CM_INVALID, "entry %zu: key id used twice", entry);
            goto fail;
        }
        if (!decode_key(colon + 1, (size_t)(end - colon - 1), k->key)) {
            cm_err_set(err, CM_INVALID, "entry %zu: key must be base64 of 32 bytes", entry);
            goto fail;
        }
        v->n++;
        p = comma != NULL ? comma + 1 : end;
    }
    if (v->n == 0) {
        cm_err_set(err, CM_INVALID, "no keys given");
        goto fail;
    }
    return v;
fail:
    cm_vault_free(v);
    return NULL;
}

void cm_vault_free(struct cm_vault *v)
{
    if (v == NULL) {
        return;
    }
    OPENSSL_cleanse(v, sizeof(*v));
    free(v);
}

const char *cm_vault_active_kid(const struct cm_vault *v)
{
    return v->keys[0].kid;
}

static const struct vault_key *find_key(const struct cm_vault *v, const char *kid)
{
    for (size_t i = 0; kid != NULL && i < v->n; i++) {
        if (strcmp(v->keys[i].kid, kid) == 0) {
            return &v->keys[i];
        }
    }
    return NULL;
}

bool cm_vault_has_kid(const struct cm_vault *v, const char *kid)
{
    return find_key(v, kid) != NULL;
}

/* The associated data: "auren.token.v1" then each part as 4-byte big-endian length + bytes. */
static void build_aad(const struct cm_vault_aad *a, struct cm_buf *out)
{
    const char *parts[] = { a->vendor, a->vendor_user_id, a->user_id, a->field };

    cm_buf_append_str(out, "auren.token.v1");
    for (size_t i = 0; i < CM_ARRAY_LEN(parts); i++) {
        const char *s = parts[i] != NULL ? parts[i] : "";
        size_t n = strlen(s);
        uint8_t len[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
        cm_buf_append(out, len, sizeof(len));
        cm_buf_append(out, s, n);
    }
}

/* One GCM pass. enc: seal (tag written to `tag`), else open (tag checked). */
static bool gcm(bool enc, const uint8_t *key, const uint8_t *nonce, const struct cm_buf *aad,
                const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = ctx != NULL && len <= INT32_MAX && aad->len <= INT32_MAX;

    ok = ok && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc ? 1 : 0) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CM_VAULT_NONCE_LEN, NULL) == 1;
    ok = ok && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc ? 1 : 0) == 1;
    ok = ok && EVP_CipherUpdate(ctx, NULL, &n, aad->data, (int)aad->len) == 1;
    ok = ok && (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1);
    if (ok && !enc) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CM_VAULT_TAG_LEN, tag) == 1;
    }
    ok = ok && EVP_CipherFinal_ex(ctx, out + (len == 0 ? 0 : n), &fin) == 1;
    if (ok && enc) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CM_VAULT_TAG_LEN, tag) == 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

enum cm_rc cm_vault_seal(const struct cm_vault *v, const struct cm_vault_aad *aad,
                         const void *plain, size_t len, struct cm_buf *out, struct cm_err *err)
{
    const struct vault_key *k = &v->keys[0];
    uint8_t nonce[CM_VAULT_NONCE_LEN], tag[CM_VAULT_TAG_LEN];
    uint8_t *ct = cm_xmalloc(len + 1);
    struct cm_buf a;
    enum cm_rc rc = CM_OK;

    cm_buf_init(&a, 0);
    build_aad(aad, &a);
    cm_random_bytes(nonce, sizeof(nonce));
    if (!gcm(true, k->key, nonce, &a, plain, len, ct, tag)) {
        rc = cm_err_set(err, CM_FATAL, "vault: seal failed");
    } else if (cm_buf_append(out, nonce, sizeof(nonce)) != CM_OK ||
               cm_buf_append(out, ct, len) != CM_OK || cm_buf_append(out, tag, sizeof(tag)) != CM_OK) {
        rc = cm_err_set(err, CM_INVALID, "vault: output too large");
    }
    cm_buf_fini(&a);
    free(ct);
    return rc;
}

enum cm_rc cm_vault_open(const struct cm_vault *v, const char *kid,
                         const struct cm_vault_aad *aad, const void *sealed, size_t len,
                         struct cm_buf *out, struct cm_err *err)
{
    const struct vault_key *k = find_key(v, kid);
    const uint8_t *s = sealed;
    uint8_t tag[CM_VAULT_TAG_LEN];
    struct cm_buf a;
    uint8_t *pt;
    size_t n;
    enum cm_rc rc = CM_OK;

    if (k == NULL) {
        return cm_err_set(err, CM_INVALID, "vault: key id not loaded");
    }
    if (len < CM_VAULT_NONCE_LEN + CM_VAULT_TAG_LEN) {
        return cm_err_set(err, CM_INVALID, "vault: ciphertext too short");
    }
    n = len - CM_VAULT_NONCE_LEN - CM_VAULT_TAG_LEN;
    memcpy(tag, s + CM_VAULT_NONCE_LEN + n, sizeof(tag));
    pt = cm_xmalloc(n + 1);
    cm_buf_init(&a, 0);
    build_aad(aad, &a);
    if (!gcm(false, k->key, s, &a, s + CM_VAULT_NONCE_LEN, n, pt, tag)) {
        rc = cm_err_set(err, CM_INVALID, "vault: authentication failed");
    } else if (cm_buf_append(out, pt, n) != CM_OK || cm_buf_terminate(out) != CM_OK) {
        rc = cm_err_set(err, CM_INVALID, "vault: output too large");
    }
    OPENSSL_cleanse(pt, n + 1);
    free(pt);
    cm_buf_fini(&a);
    return rc;
}
