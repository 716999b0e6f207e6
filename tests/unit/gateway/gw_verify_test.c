/* Per-vendor webhook authentication: the vendors.md section 14 vectors (Svix published, the rest
 * self-computed with Python's hmac), then tampered body, wrong secret, stale and future timestamps,
 * missing and malformed headers for every vendor. */
#include <check.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_cfg.h"
#include "gw_verify.h"
#include "../check_run.h"

struct hdr {
    const char *name;
    const char *value;
};

/* Header lookup over a NULL-terminated array, case-insensitive like HTTP. */
static const char *lookup(void *arg, const char *name)
{
    for (const struct hdr *h = arg; h->name != NULL; h++) {
        if (strcasecmp(h->name, name) == 0) {
            return h->value;
        }
    }
    return NULL;
}

static struct gw_cfg cfg;

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.secret_whoop = "whoop_test_client_secret";
    cfg.secret_oura = "oura_test_client_secret";
    cfg.secret_polar = "abe1f3ae-fd33-11e8-8eb2-f2801f1b9fd1";
    cfg.secret_fitbit = "fitbit_test_client_secret";
    cfg.secret_terra = "terra_test_signing_secret";
    cfg.secret_app = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    cfg.google_health_authorization = "Bearer google-test-secret";
    cfg.garmin_client_id = "garmin-test-client";
    ck_assert_int_eq(gw_cfg_derive(&cfg, NULL), CM_OK);
}

typedef enum gw_verdict (*verify_fn)(const struct gw_cfg *, const struct gw_verify_req *);

static enum gw_verdict run(verify_fn fn, const struct hdr *h, const char *body, int64_t now_ms)
{
    struct gw_verify_req r = {
        .header = lookup,
        .header_arg = (void *)h,
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .now_ms = now_ms,
        .tolerance_s = 300,
    };
    return fn(&cfg, &r);
}

/* ---- WHOOP ---- */
#define WHOOP_BODY                                                                                 \
    "{\"user_id\":456,\"id\":\"550e8400-e29b-41d4-a716-446655440000\",\"type\":\"sleep.updated\"," \
    "\"trace_id\":\"e369c784-5100-49e8-8098-75d35c47b31b\"}"
#define WHOOP_TS "1748241241000"
#define WHOOP_TS_MS 1748241241000LL
#define WHOOP_SIG "XG2kqpMPyVHZIJkfKYu42jnMb+P7Q19fXxb9qzBLCKQ="

static const struct hdr whoop_ok[] = {
    {"X-WHOOP-Signature", WHOOP_SIG}, {"X-WHOOP-Signature-Timestamp", WHOOP_TS}, {NULL, NULL}};

START_TEST(test_whoop_vector)
{
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_OK);
    /* Header names are case-insensitive. */
    static const struct hdr lower[] = {{"x-whoop-signature", WHOOP_SIG},
                                       {"x-whoop-signature-timestamp", WHOOP_TS},
                                       {NULL, NULL}};
    ck_assert_int_eq(run(gw_verify_whoop, lower, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_OK);
}
END_TEST

START_TEST(test_whoop_tampered_and_wrong_secret)
{
    char body[] = WHOOP_BODY;

    body[12] = '7'; /* 456 -> 476 */
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, body, WHOOP_TS_MS), GW_VERIFY_MISMATCH);
    cfg.secret_whoop = "whoop_test_client_secreT";
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_MISMATCH);
}
END_TEST

START_TEST(test_whoop_replay_window)
{
    /* Edge of the window passes, one second past it fails, in both directions. */
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS + 300000),
                     GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS - 300000),
                     GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS + 301000),
                     GW_VERIFY_STALE);
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS - 301000),
                     GW_VERIFY_STALE);
}
END_TEST

START_TEST(test_whoop_missing_and_malformed)
{
    static const struct hdr no_sig[] = {{"X-WHOOP-Signature-Timestamp", WHOOP_TS}, {NULL, NULL}};
    static const struct hdr no_ts[] = {{"X-WHOOP-Signature", WHOOP_SIG}, {NULL, NULL}};
    static const struct hdr bad_ts[] = {{"X-WHOOP-Signature", WHOOP_SIG},
                                        {"X-WHOOP-Signature-Timestamp", "17482412x1000"},
                                        {NULL, NULL}};
    static const struct hdr neg_ts[] = {{"X-WHOOP-Signature", WHOOP_SIG},
                                        {"X-WHOOP-Signature-Timestamp", "-1748241241000"},
                                        {NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_whoop, no_sig, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_MISSING);
    ck_assert_int_eq(run(gw_verify_whoop, no_ts, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_MISSING);
    ck_assert_int_eq(run(gw_verify_whoop, bad_ts, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_MALFORMED);
    ck_assert_int_eq(run(gw_verify_whoop, neg_ts, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_MALFORMED);
    cfg.secret_whoop = "";
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS),
                     GW_VERIFY_UNCONFIGURED);
}
END_TEST

/* ---- Oura ---- */
#define OURA_BODY                                                                                 \
    "{\"event_type\":\"create\",\"data_type\":\"sleep\",\"object_id\":\"8f9a5221-639e-4a6e-8e4b-" \
    "1b4f1a2b3c4d\",\"event_time\":\"2024-01-01T08:00:00+00:00\",\"user_id\":\"abc123\"}"
#define OURA_TS "1704096000"
#define OURA_NOW_MS 1704096000000LL
#define OURA_SIG "7EF58E49B3B3629E453D83E4282E7B3E9024CFB488642A5B8D8D15B8ACC4DC1F"

static const struct hdr oura_ok[] = {
    {"x-oura-signature", OURA_SIG}, {"x-oura-timestamp", OURA_TS}, {NULL, NULL}};

START_TEST(test_oura_vector_any_case)
{
    static const struct hdr lower[] = {
        {"x-oura-signature", "7ef58e49b3b3629e453d83e4282e7b3e9024cfb488642a5b8d8d15b8acc4dc1f"},
        {"x-oura-timestamp", OURA_TS},
        {NULL, NULL}};
    /* Same algorithm over a millisecond timestamp (unit undocumented; both accepted). */
    static const struct hdr ms[] = {
        {"x-oura-signature", "AA616DAFD1914BC9325F6AE2DEEEC0EBD9FC1C5A1868E56756B7DAFD853984B9"},
        {"x-oura-timestamp", "1704096000000"},
        {NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_oura, oura_ok, OURA_BODY, OURA_NOW_MS), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_oura, lower, OURA_BODY, OURA_NOW_MS), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_oura, ms, OURA_BODY, OURA_NOW_MS), GW_VERIFY_OK);
}
END_TEST

START_TEST(test_oura_failures)
{
    char body[] = OURA_BODY;
    static const struct hdr no_ts[] = {{"x-oura-signature", OURA_SIG}, {NULL, NULL}};
    static const struct hdr odd_hex[] = {
        {"x-oura-signature", OURA_SIG "A"}, {"x-oura-timestamp", OURA_TS}, {NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_oura, oura_ok, OURA_BODY, OURA_NOW_MS + 301000),
                     GW_VERIFY_STALE);
    ck_assert_int_eq(run(gw_verify_oura, oura_ok, OURA_BODY, OURA_NOW_MS - 301000),
                     GW_VERIFY_STALE);
    ck_assert_int_eq(run(gw_verify_oura, no_ts, OURA_BODY, OURA_NOW_MS), GW_VERIFY_MISSING);
    ck_assert_int_eq(run(gw_verify_oura, odd_hex, OURA_BODY, OURA_NOW_MS), GW_VERIFY_MISMATCH);
    body[strlen(body) - 3] = 'X';
    ck_assert_int_eq(run(gw_verify_oura, oura_ok, body, OURA_NOW_MS), GW_VERIFY_MISMATCH);
    cfg.secret_oura = "oura_test_client_secreT";
    ck_assert_int_eq(run(gw_verify_oura, oura_ok, OURA_BODY, OURA_NOW_MS), GW_VERIFY_MISMATCH);
}
END_TEST

/* ---- Polar ---- */
#define POLAR_BODY                                                                             \
    "{\"event\":\"EXERCISE\",\"user_id\":475,\"entity_id\":\"aQlC83\",\"timestamp\":\"2018-05-" \
    "15T14:22:24Z\",\"url\":\"https://www.polaraccesslink.com/v3/exercises/aQlC83\"}"
#define POLAR_SIG "443ec69698c1de6d326902d7d942be1e83f0395f685b8c040cee609660d006d6"

START_TEST(test_polar)
{
    static const struct hdr ok[] = {{"Polar-Webhook-Signature", POLAR_SIG}, {NULL, NULL}};
    static const struct hdr upper[] = {
        {"polar-webhook-signature",
         "443EC69698C1DE6D326902D7D942BE1E83F0395F685B8C040CEE609660D006D6"},
        {NULL, NULL}};
    static const struct hdr none[] = {{NULL, NULL}};
    char body[] = POLAR_BODY;

    /* No timestamp is signed: the same delivery verifies at any clock (no replay window). */
    ck_assert_int_eq(run(gw_verify_polar, ok, POLAR_BODY, 0), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_polar, upper, POLAR_BODY, 0), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_polar, none, POLAR_BODY, 0), GW_VERIFY_MISSING);
    body[30] = '6';
    ck_assert_int_eq(run(gw_verify_polar, ok, body, 0), GW_VERIFY_MISMATCH);
    cfg.secret_polar = "abe1f3ae-fd33-11e8-8eb2-f2801f1b9fd2";
    ck_assert_int_eq(run(gw_verify_polar, ok, POLAR_BODY, 0), GW_VERIFY_MISMATCH);
}
END_TEST

/* ---- Fitbit ---- */
#define FITBIT_BODY                                                                         \
    "[{\"collectionType\":\"foods\",\"date\":\"2010-03-01\",\"ownerId\":\"228S74\",\"ownerType" \
    "\":\"user\",\"subscriptionId\":\"1234\"}]"
#define FITBIT_SIG "MOZ+ikjIpVt8rCDgVLKp61yszq4="

START_TEST(test_fitbit)
{
    static const struct hdr ok[] = {{"X-Fitbit-Signature", FITBIT_SIG}, {NULL, NULL}};
    static const struct hdr none[] = {{NULL, NULL}};
    static const struct hdr empty[] = {{"X-Fitbit-Signature", ""}, {NULL, NULL}};
    char body[] = FITBIT_BODY;

    /* The key is the configured secret plus "&". */
    ck_assert_int_eq(run(gw_verify_fitbit, ok, FITBIT_BODY, 0), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_fitbit, none, FITBIT_BODY, 0), GW_VERIFY_MISSING);
    ck_assert_int_eq(run(gw_verify_fitbit, empty, FITBIT_BODY, 0), GW_VERIFY_MALFORMED);
    body[3] = 'C';
    ck_assert_int_eq(run(gw_verify_fitbit, ok, body, 0), GW_VERIFY_MISMATCH);
    cfg.secret_fitbit = "fitbit_test_client_secret&"; /* "&&" key: must not match */
    ck_assert_int_eq(run(gw_verify_fitbit, ok, FITBIT_BODY, 0), GW_VERIFY_MISMATCH);
}
END_TEST

/* ---- Terra ---- */
#define TERRA_BODY                                                                              \
    "{\"type\":\"auth\",\"user\":{\"user_id\":\"23dc2540-7139-44c6-8158-f81196e2cf2e\",\"provid" \
    "er\":\"GARMIN\"},\"status\":\"success\",\"reference_id\":\"user-1\"}"
#define TERRA_HEX "baf235030dd4e143e8f0a3227cc867a6efee598d4981bb04d235efee8e7db52a"
#define TERRA_NOW_MS 1723808700000LL

START_TEST(test_terra_vector_and_lists)
{
    static const struct hdr ok[] = {{"terra-signature", "t=1723808700,v1=" TERRA_HEX},
                                    {NULL, NULL}};
    /* Several schemes with spaces; any v1 may match. */
    static const struct hdr many[] = {
        {"terra-signature", "t=1723808700, v1=00ff, v1=" TERRA_HEX ", v0=abcd"}, {NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_terra, ok, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_terra, many, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_OK);
}
END_TEST

START_TEST(test_terra_failures)
{
    static const struct hdr ok[] = {{"terra-signature", "t=1723808700,v1=" TERRA_HEX},
                                    {NULL, NULL}};
    /* Only a non-v1 scheme carries the right MAC: ignored (downgrade protection). */
    static const struct hdr v0_only[] = {{"terra-signature", "t=1723808700,v0=" TERRA_HEX},
                                         {NULL, NULL}};
    static const struct hdr no_t[] = {{"terra-signature", "v1=" TERRA_HEX}, {NULL, NULL}};
    static const struct hdr other_t[] = {{"terra-signature", "t=1723808701,v1=" TERRA_HEX},
                                         {NULL, NULL}};
    static const struct hdr none[] = {{NULL, NULL}};
    char body[] = TERRA_BODY;

    ck_assert_int_eq(run(gw_verify_terra, v0_only, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_MALFORMED);
    ck_assert_int_eq(run(gw_verify_terra, no_t, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_MALFORMED);
    ck_assert_int_eq(run(gw_verify_terra, other_t, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_MISMATCH);
    ck_assert_int_eq(run(gw_verify_terra, none, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_MISSING);
    ck_assert_int_eq(run(gw_verify_terra, ok, TERRA_BODY, TERRA_NOW_MS + 301000), GW_VERIFY_STALE);
    ck_assert_int_eq(run(gw_verify_terra, ok, TERRA_BODY, TERRA_NOW_MS - 301000), GW_VERIFY_STALE);
    /* fuzz (verify): a timestamp too large to convert to milliseconds is stale, not overflow. */
    static const struct hdr huge_t[] = {{"terra-signature", "t=179000000190000000,v1=" TERRA_HEX},
                                        {NULL, NULL}};
    ck_assert_int_eq(run(gw_verify_terra, huge_t, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_STALE);
    body[5] = 'T';
    ck_assert_int_eq(run(gw_verify_terra, ok, body, TERRA_NOW_MS), GW_VERIFY_MISMATCH);
    cfg.secret_terra = "terra_test_signing_secreT";
    ck_assert_int_eq(run(gw_verify_terra, ok, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_MISMATCH);
}
END_TEST

/* ---- Companion app (Standard Webhooks, the published Svix vector) ---- */
#define APP_BODY "{\"test\": 2432232314}"
#define APP_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define APP_TS "1614265330"
#define APP_NOW_MS 1614265330000LL
#define APP_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static const struct hdr app_ok[] = {{"webhook-id", APP_ID},
                                    {"webhook-timestamp", APP_TS},
                                    {"webhook-signature", APP_SIG},
                                    {NULL, NULL}};

START_TEST(test_app_vector)
{
    static const struct hdr many[] = {
        {"webhook-id", APP_ID},
        {"webhook-timestamp", APP_TS},
        {"webhook-signature", "v1,Zm9vYmFy v1a,ignored " APP_SIG},
        {NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_app, app_ok, APP_BODY, APP_NOW_MS), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_app, many, APP_BODY, APP_NOW_MS), GW_VERIFY_OK);
}
END_TEST

START_TEST(test_app_failures)
{
    static const struct hdr other_id[] = {{"webhook-id", "msg_other"},
                                          {"webhook-timestamp", APP_TS},
                                          {"webhook-signature", APP_SIG},
                                          {NULL, NULL}};
    static const struct hdr no_id[] = {
        {"webhook-timestamp", APP_TS}, {"webhook-signature", APP_SIG}, {NULL, NULL}};
    static const struct hdr no_v1[] = {{"webhook-id", APP_ID},
                                       {"webhook-timestamp", APP_TS},
                                       {"webhook-signature", "v2,abc"},
                                       {NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_app, app_ok, APP_BODY, APP_NOW_MS + 301000), GW_VERIFY_STALE);
    ck_assert_int_eq(run(gw_verify_app, app_ok, APP_BODY, APP_NOW_MS - 301000), GW_VERIFY_STALE);
    ck_assert_int_eq(run(gw_verify_app, app_ok, "{\"test\": 2432232315}", APP_NOW_MS),
                     GW_VERIFY_MISMATCH);
    ck_assert_int_eq(run(gw_verify_app, other_id, APP_BODY, APP_NOW_MS), GW_VERIFY_MISMATCH);
    ck_assert_int_eq(run(gw_verify_app, no_id, APP_BODY, APP_NOW_MS), GW_VERIFY_MISSING);
    ck_assert_int_eq(run(gw_verify_app, no_v1, APP_BODY, APP_NOW_MS), GW_VERIFY_MALFORMED);
    /* A timestamp too large to convert to milliseconds is stale (found by the verify fuzzer). */
    static const struct hdr huge_ts[] = {{"webhook-id", APP_ID},
                                         {"webhook-timestamp", "999999999999999999"},
                                         {"webhook-signature", APP_SIG},
                                         {NULL, NULL}};
    ck_assert_int_eq(run(gw_verify_app, huge_ts, APP_BODY, APP_NOW_MS), GW_VERIFY_STALE);
    cfg.secret_app = "whsec_ZGV2LWFwcC1zdGFuZGFyZC13ZWJob29rcy1zZWNyZXQ=";
    ck_assert_int_eq(gw_cfg_derive(&cfg, NULL), CM_OK);
    ck_assert_int_eq(run(gw_verify_app, app_ok, APP_BODY, APP_NOW_MS), GW_VERIFY_MISMATCH);
}
END_TEST

/* ---- Shared-value vendors ---- */
START_TEST(test_google_health_authorization)
{
    static const struct hdr ok[] = {{"Authorization", "Bearer google-test-secret"}, {NULL, NULL}};
    static const struct hdr bad[] = {{"Authorization", "Bearer google-test-secreT"}, {NULL, NULL}};
    static const struct hdr prefix[] = {{"Authorization", "Bearer google-test"}, {NULL, NULL}};
    static const struct hdr none[] = {{NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_google_health, ok, "{}", 0), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_google_health, bad, "{}", 0), GW_VERIFY_MISMATCH);
    ck_assert_int_eq(run(gw_verify_google_health, prefix, "{}", 0), GW_VERIFY_MISMATCH);
    ck_assert_int_eq(run(gw_verify_google_health, none, "{}", 0), GW_VERIFY_MISSING);
    cfg.google_health_authorization = "";
    ck_assert_int_eq(run(gw_verify_google_health, ok, "{}", 0), GW_VERIFY_UNCONFIGURED);
}
END_TEST

START_TEST(test_garmin_client_id)
{
    static const struct hdr ok[] = {{"garmin-client-id", "garmin-test-client"}, {NULL, NULL}};
    static const struct hdr bad[] = {{"garmin-client-id", "someone-else"}, {NULL, NULL}};
    static const struct hdr none[] = {{NULL, NULL}};

    ck_assert_int_eq(run(gw_verify_garmin, ok, "{}", 0), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_garmin, bad, "{}", 0), GW_VERIFY_MISMATCH);
    ck_assert_int_eq(run(gw_verify_garmin, none, "{}", 0), GW_VERIFY_MISSING);
}
END_TEST

/* ---- Codecs ---- */
START_TEST(test_codecs)
{
    uint8_t out[64];
    size_t n = 0;

    ck_assert(gw_verify_b64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 32, out, sizeof(out), &n));
    ck_assert_uint_eq(n, 24);
    ck_assert_uint_eq(out[0], 0x31);
    ck_assert_uint_eq(out[23], 0xb0);
    ck_assert(gw_verify_b64_decode("Zm9vYg==", 8, out, sizeof(out), &n));
    ck_assert_uint_eq(n, 4);
    ck_assert(gw_verify_b64_decode("Zm9vYg", 6, out, sizeof(out), &n)); /* padding optional */
    ck_assert_uint_eq(n, 4);
    ck_assert(!gw_verify_b64_decode("Zm9vY", 5, out, sizeof(out), &n));
    ck_assert(!gw_verify_b64_decode("Zm9v!g==", 8, out, sizeof(out), &n));
    ck_assert(!gw_verify_b64_decode("Zm9vYh==", 8, out, sizeof(out), &n)); /* non-zero pad bits */
    ck_assert(!gw_verify_b64_decode("Zm9vYmFy", 8, out, 5, &n));           /* overflow */
    ck_assert(gw_verify_hex_decode("0aFf", 4, out, sizeof(out), &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(out[0], 0x0a);
    ck_assert_uint_eq(out[1], 0xff);
    ck_assert(!gw_verify_hex_decode("0aF", 3, out, sizeof(out), &n));
    ck_assert(!gw_verify_hex_decode("0g", 2, out, sizeof(out), &n));
}
END_TEST

/* ---- unconfigured vendors and a failing MAC implementation ---- */

/* This binary is linked with -Wl,--wrap=EVP_MAC_CTX_new: armed, the MAC context cannot be
 * created (as under memory pressure inside OpenSSL). */
static int fail_mac_ctx;

EVP_MAC_CTX *__real_EVP_MAC_CTX_new(EVP_MAC *mac);
EVP_MAC_CTX *__wrap_EVP_MAC_CTX_new(EVP_MAC *mac);

EVP_MAC_CTX *__wrap_EVP_MAC_CTX_new(EVP_MAC *mac)
{
    if (fail_mac_ctx > 0) {
        fail_mac_ctx--;
        return NULL;
    }
    return __real_EVP_MAC_CTX_new(mac);
}

/* A MAC that cannot be computed is a mismatch (a 401), never an acceptance. */
START_TEST(test_mac_failure_is_mismatch)
{
    static const struct hdr polar[] = {{"Polar-Webhook-Signature", POLAR_SIG}, {NULL, NULL}};
    static const struct hdr fitbit[] = {{"X-Fitbit-Signature", FITBIT_SIG}, {NULL, NULL}};
    static const struct hdr terra[] = {{"terra-signature", "t=1723808700,v1=" TERRA_HEX},
                                       {NULL, NULL}};
    uint8_t mac[64];
    size_t maclen = 0;
    const void *parts[] = {"x"};
    size_t lens[] = {1};

    fail_mac_ctx = 1;
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_MISMATCH);
    fail_mac_ctx = 1;
    ck_assert_int_eq(run(gw_verify_polar, polar, POLAR_BODY, 0), GW_VERIFY_MISMATCH);
    fail_mac_ctx = 1;
    ck_assert_int_eq(run(gw_verify_fitbit, fitbit, FITBIT_BODY, 0), GW_VERIFY_MISMATCH);
    fail_mac_ctx = 1;
    ck_assert_int_eq(run(gw_verify_terra, terra, TERRA_BODY, TERRA_NOW_MS), GW_VERIFY_MISMATCH);
    fail_mac_ctx = 1;
    ck_assert_int_eq(run(gw_verify_app, app_ok, APP_BODY, APP_NOW_MS), GW_VERIFY_MISMATCH);
    ck_assert_int_eq(fail_mac_ctx, 0);
    /* The same requests verify once the MAC works again. */
    ck_assert_int_eq(run(gw_verify_whoop, whoop_ok, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_OK);
    ck_assert_int_eq(run(gw_verify_app, app_ok, APP_BODY, APP_NOW_MS), GW_VERIFY_OK);
    /* An empty key or an unknown digest computes nothing. */
    ck_assert(!gw_verify_hmac("SHA256", "", 0, parts, lens, 1, mac, &maclen));
    ck_assert(!gw_verify_hmac("NO-SUCH-DIGEST", "k", 1, parts, lens, 1, mac, &maclen));
}
END_TEST

/* Every verifier answers "not configured" without its secret; every verdict has its name. */
START_TEST(test_unconfigured_and_verdict_names)
{
    static const verify_fn fns[] = {gw_verify_whoop, gw_verify_oura,  gw_verify_polar,
                                    gw_verify_fitbit, gw_verify_terra, gw_verify_app,
                                    gw_verify_google_health, gw_verify_garmin};

    memset(&cfg, 0, sizeof(cfg));
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        ck_assert_int_eq(run(fns[i], whoop_ok, WHOOP_BODY, WHOOP_TS_MS), GW_VERIFY_UNCONFIGURED);
    }
    ck_assert_str_eq(gw_verdict_str(GW_VERIFY_OK), "ok");
    ck_assert_str_eq(gw_verdict_str(GW_VERIFY_UNCONFIGURED), "vendor_not_configured");
    ck_assert_str_eq(gw_verdict_str(GW_VERIFY_MISSING), "missing_signature");
    ck_assert_str_eq(gw_verdict_str(GW_VERIFY_MALFORMED), "malformed_signature");
    ck_assert_str_eq(gw_verdict_str(GW_VERIFY_STALE), "stale_timestamp");
    ck_assert_str_eq(gw_verdict_str(GW_VERIFY_MISMATCH), "bad_signature");
    ck_assert_str_eq(gw_verdict_str((enum gw_verdict)99), "bad_signature");
}
END_TEST

static Suite *gw_verify_suite(void)
{
    Suite *s = suite_create("gw_verify");
    struct {
        const char *name;
        const TTest *tests[4];
    } cases[] = {
        {"whoop",
         {test_whoop_vector, test_whoop_tampered_and_wrong_secret, test_whoop_replay_window,
          test_whoop_missing_and_malformed}},
        {"oura", {test_oura_vector_any_case, test_oura_failures}},
        {"polar", {test_polar}},
        {"fitbit", {test_fitbit}},
        {"terra", {test_terra_vector_and_lists, test_terra_failures}},
        {"app", {test_app_vector, test_app_failures}},
        {"shared_value", {test_google_health_authorization, test_garmin_client_id}},
        {"codecs", {test_codecs}},
        {"faults", {test_mac_failure_is_mismatch, test_unconfigured_and_verdict_names}},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, NULL);
        for (size_t j = 0; j < 4 && cases[i].tests[j] != NULL; j++) {
            tcase_add_test(tc, cases[i].tests[j]);
        }
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return check_run(gw_verify_suite());
}
