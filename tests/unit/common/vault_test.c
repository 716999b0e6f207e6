/* The token vault: key list parsing, seal/open round trip, binding to the row and column, key
 * rotation (an old key still opens, the active one seals), tampering. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cm/vault.h"
#include "../check_run.h"

#define KEY_A "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define KEY_B "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

static const struct cm_vault_aad aad = { "whoop", "10001", "user-1", "access" };

static void seal(const struct cm_vault *v, const char *plain, struct cm_buf *out)
{
    struct cm_err err = { { 0 } };

    cm_buf_init(out, 0);
    ck_assert_int_eq(cm_vault_seal(v, &aad, plain, strlen(plain), out, &err), CM_OK);
}

START_TEST(test_parse_keys)
{
    struct cm_err err = { { 0 } };
    struct cm_vault *v = cm_vault_new("k2:" KEY_B ",k1:" KEY_A, &err);

    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(cm_vault_active_kid(v), "k2");
    ck_assert(cm_vault_has_kid(v, "k1"));
    ck_assert(!cm_vault_has_kid(v, "k3"));
    cm_vault_free(v);

    ck_assert_ptr_null(cm_vault_new("", &err));
    ck_assert_ptr_null(cm_vault_new("k1", &err));
    ck_assert_ptr_null(cm_vault_new("k1:c2hvcnQ=", &err)); /* 5 bytes */
    ck_assert_ptr_null(strstr(err.msg, "c2hvcnQ"));
    ck_assert_ptr_null(cm_vault_new("k1:" KEY_A ",k1:" KEY_B, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "entry 2"));
    ck_assert_ptr_null(cm_vault_new("bad kid:" KEY_A, &err));
    cm_vault_free(NULL);
}
END_TEST

START_TEST(test_round_trip_and_binding)
{
    struct cm_err err = { { 0 } };
    struct cm_vault *v = cm_vault_new("k1:" KEY_A, &err);
    struct cm_buf ct, pt, ct2;
    struct cm_vault_aad other = aad;

    seal(v, "secret-access-token", &ct);
    ck_assert_uint_eq(ct.len, 19 + CM_VAULT_NONCE_LEN + CM_VAULT_TAG_LEN);
    for (size_t i = 0; i + 6 <= ct.len; i++) {
        ck_assert(memcmp(ct.data + i, "secret", 6) != 0);
    }
    seal(v, "secret-access-token", &ct2);
    ck_assert(ct.len == ct2.len && memcmp(ct.data, ct2.data, ct.len) != 0); /* fresh nonce */

    cm_buf_init(&pt, 0);
    ck_assert_int_eq(cm_vault_open(v, "k1", &aad, ct.data, ct.len, &pt, &err), CM_OK);
    ck_assert_str_eq((const char *)pt.data, "secret-access-token");

    other.field = "refresh";
    cm_buf_reset(&pt);
    ck_assert_int_eq(cm_vault_open(v, "k1", &other, ct.data, ct.len, &pt, &err), CM_INVALID);
    other = aad;
    other.user_id = "user-2";
    ck_assert_int_eq(cm_vault_open(v, "k1", &other, ct.data, ct.len, &pt, &err), CM_INVALID);
    ck_assert_int_eq(cm_vault_open(v, "k9", &aad, ct.data, ct.len, &pt, &err), CM_INVALID);
    ct.data[CM_VAULT_NONCE_LEN] ^= 1;
    ck_assert_int_eq(cm_vault_open(v, "k1", &aad, ct.data, ct.len, &pt, &err), CM_INVALID);
    ck_assert_int_eq(cm_vault_open(v, "k1", &aad, ct.data, 10, &pt, &err), CM_INVALID);
    ck_assert_ptr_null(strstr(err.msg, "secret"));

    cm_buf_fini(&ct);
    cm_buf_fini(&ct2);
    cm_buf_fini(&pt);
    cm_vault_free(v);
}
END_TEST

START_TEST(test_rotation_old_key_opens)
{
    struct cm_err err = { { 0 } };
    struct cm_vault *old = cm_vault_new("k1:" KEY_A, &err);
    struct cm_vault *rotated = cm_vault_new("k2:" KEY_B ",k1:" KEY_A, &err);
    struct cm_vault *dropped = cm_vault_new("k2:" KEY_B, &err);
    struct cm_buf ct, pt;

    seal(old, "rt", &ct);
    cm_buf_init(&pt, 0);
    ck_assert_int_eq(cm_vault_open(rotated, "k1", &aad, ct.data, ct.len, &pt, &err), CM_OK);
    ck_assert_str_eq((const char *)pt.data, "rt");
    ck_assert_int_eq(cm_vault_open(dropped, "k1", &aad, ct.data, ct.len, &pt, &err), CM_INVALID);
    cm_buf_fini(&ct);
    seal(rotated, "", &ct); /* empty plaintext still authenticates */
    cm_buf_reset(&pt);
    ck_assert_int_eq(cm_vault_open(dropped, "k2", &aad, ct.data, ct.len, &pt, &err), CM_OK);
    ck_assert_uint_eq(pt.len, 0);
    cm_buf_fini(&ct);
    cm_buf_fini(&pt);
    cm_vault_free(old);
    cm_vault_free(rotated);
    cm_vault_free(dropped);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vault");
    TCase *tc = tcase_create("vault");

    tcase_add_test(tc, test_parse_keys);
    tcase_add_test(tc, test_round_trip_and_binding);
    tcase_add_test(tc, test_rotation_old_key_opens);
    suite_add_tcase(s, tc);
    return check_run(s);
}
