/* The OAuth token vault: AES-256-GCM sealing of vendor tokens for the `connections` table.
 * Keys come from TOKEN_ENCRYPTION_KEYS = "kid:base64key,kid:base64key,..." (32-byte keys, the first
 * one active: it seals; every listed key can open). The key id is stored beside each ciphertext
 * (connections.key_id), so keys rotate without downtime: add a new key in front, restart, run
 * `auren-admin keys rotate`, then drop the old key.
 * A sealed token is 12-byte random nonce || ciphertext || 16-byte tag. The associated data binds it
 * to its row and column: (vendor, vendor_user_id, user_id, field), each length-prefixed, so a
 * ciphertext copied to another row or swapped between the access and refresh columns fails to open.
 * Errors never carry key material or plaintext.
 * Ownership: cm_vault_new() returns new, cm_vault_free() (NULL-safe) wipes the keys.
 * Thread: any after construction (read-only). */
#ifndef CM_VAULT_H
#define CM_VAULT_H

#include "cm/buf.h"
#include "cm/common.h"

#define CM_VAULT_KID_MAX 32
#define CM_VAULT_KEY_LEN 32
#define CM_VAULT_NONCE_LEN 12
#define CM_VAULT_TAG_LEN 16
#define CM_VAULT_MAX_KEYS 16

struct cm_vault;

/* What a sealed token is bound to. field: "access" or "refresh". */
struct cm_vault_aad {
    const char *vendor;
    const char *vendor_user_id;
    const char *user_id;
    const char *field;
};

/* Parse a TOKEN_ENCRYPTION_KEYS value. kid: 1..32 chars of [A-Za-z0-9_.-], unique; key: standard
 * base64 of exactly 32 bytes. CM_INVALID with a reason naming the entry number, never the key. */
struct cm_vault *cm_vault_new(const char *spec, struct cm_err *err);
void cm_vault_free(struct cm_vault *v);

/* Id of the key that seals. */
const char *cm_vault_active_kid(const struct cm_vault *v);
/* Is a key with this id loaded? */
bool cm_vault_has_kid(const struct cm_vault *v, const char *kid);

/* Seal `plain` under the active key; appends nonce||ct||tag to `out` (reset first by the caller
 * when needed). CM_OK, or CM_FATAL when OpenSSL fails. */
enum cm_rc cm_vault_seal(const struct cm_vault *v, const struct cm_vault_aad *aad,
                         const void *plain, size_t len, struct cm_buf *out, struct cm_err *err);
/* Open a sealed token with key `kid`; appends the plaintext to `out` and NUL-terminates it.
 * CM_INVALID for an unknown key id, a short or tampered ciphertext, or a wrong binding. */
enum cm_rc cm_vault_open(const struct cm_vault *v, const char *kid,
                         const struct cm_vault_aad *aad, const void *sealed, size_t len,
                         struct cm_buf *out, struct cm_err *err);

#endif
