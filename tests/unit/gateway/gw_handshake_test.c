/* Vendor handshakes (Oura, Fitbit, Strava, Withings), the vendor table (routes, enablement,
 * content types, control messages) and the configuration table. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "gw_cfg.h"
#include "gw_handshake.h"
#include "gw_vendor.h"
#include "../check_run.h"

struct arg {
    const char *name;
    const char *value;
};

static const char *lookup(void *a, const char *name)
{
    for (const struct arg *p = a; p->name != NULL; p++) {
        if (strcmp(p->name, name) == 0) {
            return p->value;
        }
    }
    return NULL;
}

static struct gw_cfg cfg;
static struct gw_reply reply;

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    memset(&reply, 0, sizeof(reply));
    cfg.oura_verification_token = "oura-token";
    cfg.fitbit_verify_code = "fitbit-code";
    cfg.strava_verify_token = "strava-token";
}

/* ---- Oura ---- */
START_TEST(test_oura_echoes_challenge)
{
    struct arg q[] = {{"verification_token", "oura-token"}, {"challenge", "abc-123"}, {NULL, NULL}};

    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, q, &reply);
    ck_assert_uint_eq(reply.status, 200);
    ck_assert_str_eq(reply.body, "{\"challenge\":\"abc-123\"}");
    ck_assert_str_eq(reply.ctype, "application/json");
}
END_TEST

START_TEST(test_oura_escapes_challenge)
{
    struct arg q[] = {{"verification_token", "oura-token"}, {"challenge", "a\"b\\c"}, {NULL, NULL}};

    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, q, &reply);
    ck_assert_uint_eq(reply.status, 200);
    ck_assert_str_eq(reply.body, "{\"challenge\":\"a\\\"b\\\\c\"}");
}
END_TEST

START_TEST(test_oura_rejects)
{
    char big[GW_CHALLENGE_MAX + 2];
    struct arg wrong[] = {{"verification_token", "oura-tokeN"}, {"challenge", "x"}, {NULL, NULL}};
    struct arg missing[] = {{"challenge", "x"}, {NULL, NULL}};
    struct arg ctl[] = {{"verification_token", "oura-token"}, {"challenge", "a\nb"}, {NULL, NULL}};
    struct arg none[] = {{"verification_token", "oura-token"}, {NULL, NULL}};
    struct arg longc[] = {{"verification_token", "oura-token"}, {"challenge", big}, {NULL, NULL}};

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, wrong, &reply);
    ck_assert_uint_eq(reply.status, 401);
    ck_assert_ptr_null(strstr(reply.body, "x\""));
    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, missing, &reply);
    ck_assert_uint_eq(reply.status, 401);
    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, ctl, &reply);
    ck_assert_uint_eq(reply.status, 400);
    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, none, &reply);
    ck_assert_uint_eq(reply.status, 400);
    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, longc, &reply);
    ck_assert_uint_eq(reply.status, 400);
    big[GW_CHALLENGE_MAX] = '\0'; /* exactly the cap is fine */
    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, longc, &reply);
    ck_assert_uint_eq(reply.status, 200);
}
END_TEST

START_TEST(test_oura_unconfigured_never_matches_empty)
{
    struct arg q[] = {{"verification_token", ""}, {"challenge", "x"}, {NULL, NULL}};

    cfg.oura_verification_token = "";
    gw_handshake_answer(GW_HANDSHAKE_OURA, &cfg, lookup, q, &reply);
    ck_assert_uint_eq(reply.status, 404);
}
END_TEST

/* ---- Fitbit: right code 204, wrong code 404 ---- */
START_TEST(test_fitbit_verify)
{
    struct arg right[] = {{"verify", "fitbit-code"}, {NULL, NULL}};
    struct arg wrong[] = {{"verify", "fitbit-codf"}, {NULL, NULL}};
    struct arg none[] = {{NULL, NULL}};
    struct arg empty[] = {{"verify", ""}, {NULL, NULL}};

    gw_handshake_answer(GW_HANDSHAKE_FITBIT, &cfg, lookup, right, &reply);
    ck_assert_uint_eq(reply.status, 204);
    ck_assert_str_eq(reply.body, "");
    gw_handshake_answer(GW_HANDSHAKE_FITBIT, &cfg, lookup, wrong, &reply);
    ck_assert_uint_eq(reply.status, 404);
    gw_handshake_answer(GW_HANDSHAKE_FITBIT, &cfg, lookup, none, &reply);
    ck_assert_uint_eq(reply.status, 404);
    cfg.fitbit_verify_code = "";
    gw_handshake_answer(GW_HANDSHAKE_FITBIT, &cfg, lookup, empty, &reply);
    ck_assert_uint_eq(reply.status, 404);
}
END_TEST

/* ---- Strava ---- */
START_TEST(test_strava_subscribe)
{
    struct arg ok[] = {{"hub.mode", "subscribe"},
                       {"hub.verify_token", "strava-token"},
                       {"hub.challenge", "15f7d1a91c1f40f8a748fd134752feb3"},
                       {NULL, NULL}};
    struct arg bad_token[] = {{"hub.mode", "subscribe"},
                              {"hub.verify_token", "nope"},
                              {"hub.challenge", "c"},
                              {NULL, NULL}};
    struct arg bad_mode[] = {{"hub.mode", "unsubscribe"},
                             {"hub.verify_token", "strava-token"},
                             {"hub.challenge", "c"},
                             {NULL, NULL}};

    gw_handshake_answer(GW_HANDSHAKE_STRAVA, &cfg, lookup, ok, &reply);
    ck_assert_uint_eq(reply.status, 200);
    ck_assert_str_eq(reply.body, "{\"hub.challenge\":\"15f7d1a91c1f40f8a748fd134752feb3\"}");
    gw_handshake_answer(GW_HANDSHAKE_STRAVA, &cfg, lookup, bad_token, &reply);
    ck_assert_uint_eq(reply.status, 401);
    gw_handshake_answer(GW_HANDSHAKE_STRAVA, &cfg, lookup, bad_mode, &reply);
    ck_assert_uint_eq(reply.status, 400);
}
END_TEST

START_TEST(test_withings_head)
{
    struct arg none[] = {{NULL, NULL}};

    gw_handshake_answer(GW_HANDSHAKE_WITHINGS, &cfg, lookup, none, &reply);
    ck_assert_uint_eq(reply.status, 200);
}
END_TEST

/* ---- Vendor table ---- */
START_TEST(test_vendor_table)
{
    const struct gw_vendor *v;

    ck_assert_uint_eq(gw_vendor_count(), 10);
    ck_assert_ptr_null(gw_vendor_find("whoo", 4));
    ck_assert_ptr_null(gw_vendor_find("whoopx", 6));
    v = gw_vendor_find("fitbit", 6);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(v->ok_status, 204);
    for (size_t i = 0; i < gw_vendor_count(); i++) {
        v = gw_vendor_at(i);
        ck_assert_ptr_nonnull(v->verify);
        /* Exactly the vendors that do not sign are reached with a path token. */
        ck_assert_int_eq(v->path_token, strcmp(v->name, "garmin") == 0 ||
                                            strcmp(v->name, "withings") == 0 ||
                                            strcmp(v->name, "strava") == 0);
    }
    /* Secrets and signatures are never copied into the record. */
    static const char *const secret_headers[] = {
        "x-whoop-signature", "x-oura-signature", "polar-webhook-signature",
        "x-fitbit-signature", "terra-signature", "webhook-signature",
        "authorization", "cookie", "x-healthapi-signature", NULL};
    for (size_t i = 0; gw_vendor_kept_headers[i] != NULL; i++) {
        for (size_t j = 0; secret_headers[j] != NULL; j++) {
            ck_assert_str_ne(gw_vendor_kept_headers[i], secret_headers[j]);
        }
    }
}
END_TEST

START_TEST(test_vendor_enabled)
{
    const struct gw_vendor *garmin = gw_vendor_find("garmin", 6);
    const struct gw_vendor *app = gw_vendor_find("app", 3);

    ck_assert(!gw_vendor_enabled(garmin, &cfg));
    cfg.token_garmin = "tok";
    ck_assert(!gw_vendor_enabled(garmin, &cfg)); /* needs the client id too */
    cfg.garmin_client_id = "id";
    ck_assert(gw_vendor_enabled(garmin, &cfg));
    ck_assert_str_eq(gw_vendor_token(garmin, &cfg), "tok");
    ck_assert(!gw_vendor_enabled(app, &cfg));
    cfg.secret_app = "whsec_Zm9vYmFy";
    ck_assert_int_eq(gw_cfg_derive(&cfg, NULL), CM_OK);
    ck_assert(gw_vendor_enabled(app, &cfg));
}
END_TEST

START_TEST(test_content_types)
{
    ck_assert(gw_vendor_content_type_ok(GW_BODY_JSON, "application/json"));
    ck_assert(gw_vendor_content_type_ok(GW_BODY_JSON, "application/json; charset=utf-8"));
    ck_assert(gw_vendor_content_type_ok(GW_BODY_JSON, "Application/JSON;charset=UTF-8"));
    ck_assert(!gw_vendor_content_type_ok(GW_BODY_JSON, "application/jsonx"));
    ck_assert(!gw_vendor_content_type_ok(GW_BODY_JSON, "text/plain"));
    ck_assert(!gw_vendor_content_type_ok(GW_BODY_JSON, "application/x-www-form-urlencoded"));
    ck_assert(!gw_vendor_content_type_ok(GW_BODY_JSON, NULL));
    ck_assert(gw_vendor_content_type_ok(GW_BODY_FORM, "application/x-www-form-urlencoded"));
    ck_assert(!gw_vendor_content_type_ok(GW_BODY_FORM, "application/json"));
}
END_TEST

START_TEST(test_control_messages)
{
    const char *ping = "{\"event\": \"PING\", \"timestamp\": \"2018-05-15T14:22:24Z\"}";
    const char *exercise = "{\"event\":\"EXERCISE\",\"user_id\":475}";
    const char *verify = "{\"type\":\"verification\"}";

    ck_assert(gw_vendor_is_control(GW_CONTROL_POLAR_PING, (const uint8_t *)ping, strlen(ping)));
    ck_assert(!gw_vendor_is_control(GW_CONTROL_POLAR_PING, (const uint8_t *)exercise,
                                    strlen(exercise)));
    ck_assert(!gw_vendor_is_control(GW_CONTROL_POLAR_PING, (const uint8_t *)"[\"PING\"]", 8));
    ck_assert(!gw_vendor_is_control(GW_CONTROL_POLAR_PING, (const uint8_t *)"{\"event\":", 9));
    ck_assert(gw_vendor_is_control(GW_CONTROL_GOOGLE_VERIFY, (const uint8_t *)verify,
                                   strlen(verify)));
    ck_assert(!gw_vendor_is_control(GW_CONTROL_GOOGLE_VERIFY, (const uint8_t *)ping,
                                    strlen(ping)));
    ck_assert(!gw_vendor_is_control(GW_CONTROL_NONE, (const uint8_t *)verify, strlen(verify)));
}
END_TEST

/* ---- Configuration ---- */
static void clear_env(void)
{
    for (const struct cm_cfg_field *f = gw_cfg_fields; f->env != NULL; f++) {
        char name[128];
        unsetenv(f->env);
        snprintf(name, sizeof(name), "%s_FILE", f->env);
        unsetenv(name);
    }
}

START_TEST(test_cfg_defaults)
{
    struct gw_cfg c;
    struct cm_err err = {{0}};

    clear_env();
    ck_assert_int_eq(gw_cfg_load(&c, &err), CM_OK);
    ck_assert_str_eq(c.brokers, "127.0.0.1:9092");
    ck_assert_int_eq(c.http_port, 8080);
    ck_assert_uint_eq(c.max_body, 1024 * 1024);
    ck_assert_int_eq(c.max_in_flight, 40);
    ck_assert_int_eq(c.tolerance_s, 300);
    ck_assert_int_eq(c.delivery_timeout_ms, 5000);
    ck_assert(!gw_cfg_is_set(c.secret_whoop));
    ck_assert_uint_eq(c.app_key_len, 0);
    gw_cfg_fini(&c);
}
END_TEST

START_TEST(test_cfg_app_secret)
{
    struct gw_cfg c;
    struct cm_err err = {{0}};

    clear_env();
    setenv("WEBHOOK_SECRET_APP", "whsec_ZGV2LWFwcC1zdGFuZGFyZC13ZWJob29rcy1zZWNyZXQ=", 1);
    ck_assert_int_eq(gw_cfg_load(&c, &err), CM_OK);
    ck_assert_uint_eq(c.app_key_len, strlen("dev-app-standard-webhooks-secret"));
    ck_assert_int_eq(memcmp(c.app_key, "dev-app-standard-webhooks-secret", c.app_key_len), 0);
    gw_cfg_fini(&c);

    setenv("WEBHOOK_SECRET_APP", "ZGV2LWFwcC1zdGFuZGFyZC13ZWJob29rcy1zZWNyZXQ=", 1);
    ck_assert_int_eq(gw_cfg_load(&c, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "WEBHOOK_SECRET_APP"));
    ck_assert_ptr_null(strstr(err.msg, "ZGV2")); /* never the value */
    gw_cfg_fini(&c);

    setenv("WEBHOOK_SECRET_APP", "whsec_not*base64", 1);
    ck_assert_int_eq(gw_cfg_load(&c, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "WEBHOOK_SECRET_APP"));
    gw_cfg_fini(&c);
    unsetenv("WEBHOOK_SECRET_APP");
}
END_TEST

START_TEST(test_cfg_bounds)
{
    struct gw_cfg c;
    struct cm_err err = {{0}};

    clear_env();
    setenv("HTTP_PORT", "70000", 1);
    ck_assert_int_eq(gw_cfg_load(&c, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "HTTP_PORT"));
    gw_cfg_fini(&c);
    unsetenv("HTTP_PORT");
    setenv("MAX_BODY_BYTES", "2m", 1);
    setenv("MAX_CONCURRENT_WEBHOOKS", "0", 1);
    ck_assert_int_eq(gw_cfg_load(&c, &err), CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "MAX_CONCURRENT_WEBHOOKS"));
    gw_cfg_fini(&c);
    unsetenv("MAX_CONCURRENT_WEBHOOKS");
    ck_assert_int_eq(gw_cfg_load(&c, &err), CM_OK);
    ck_assert_uint_eq(c.max_body, 2u * 1024 * 1024);
    gw_cfg_fini(&c);
    unsetenv("MAX_BODY_BYTES");
}
END_TEST

/* ---- unconfigured and unknown ---- */

/* Strava without its verify token refuses the handshake; a vendor without one answers 405. */
START_TEST(test_handshake_unconfigured_and_none)
{
    struct arg ok[] = {{"hub.mode", "subscribe"},
                       {"hub.verify_token", "strava-token"},
                       {"hub.challenge", "c"},
                       {NULL, NULL}};

    cfg.strava_verify_token = NULL;
    gw_handshake_answer(GW_HANDSHAKE_STRAVA, &cfg, lookup, ok, &reply);
    ck_assert_uint_eq(reply.status, 404);
    ck_assert_str_eq(reply.reason, "handshake_not_configured");
    gw_handshake_answer(GW_HANDSHAKE_NONE, &cfg, lookup, ok, &reply);
    ck_assert_uint_eq(reply.status, 405);
    ck_assert_str_eq(reply.reason, "method_not_allowed");
}
END_TEST

/* A path-token vendor without its token answers 404 vendor_not_configured whatever the path;
 * the app vendor with a secret but no derived key is not enabled. */
START_TEST(test_unconfigured_routes)
{
    struct gw_route rt;

    gw_route_decide(&cfg, "/webhooks/garmin/anything", "POST", &rt);
    ck_assert_int_eq(rt.kind, GW_ROUTE_REJECT);
    ck_assert_uint_eq(rt.status, 404);
    ck_assert_str_eq(rt.reason, "vendor_not_configured");
    cfg.secret_app = "whsec_Zm9vYmFy"; /* not derived: app_key_len stays 0 */
    ck_assert(!gw_vendor_enabled(gw_vendor_find("app", 3), &cfg));
    gw_cfg_fini(NULL); /* NULL-safe */
}
END_TEST

/* A WEBHOOK_SECRET_APP that does not decode stops the gateway at start-up with status 2. */
START_TEST(test_cfg_bad_app_secret_exits)
{
    struct gw_cfg c;
    char prog[] = "auren-gateway";
    char *argv[] = {prog, NULL};

    clear_env();
    setenv("WEBHOOK_SECRET_APP", "whsec_!!!", 1);
    gw_cfg_load_or_exit(&c, 1, argv);
    gw_cfg_fini(&c);
}
END_TEST

static Suite *gw_handshake_suite(void)
{
    const char *fork_mode = getenv("CK_FORK");
    Suite *s = suite_create("gw_handshake");
    TCase *hs = tcase_create("handshakes");
    TCase *vendor = tcase_create("vendor_table");
    TCase *config = tcase_create("config");

    tcase_add_checked_fixture(hs, setup, NULL);
    tcase_add_test(hs, test_oura_echoes_challenge);
    tcase_add_test(hs, test_oura_escapes_challenge);
    tcase_add_test(hs, test_oura_rejects);
    tcase_add_test(hs, test_oura_unconfigured_never_matches_empty);
    tcase_add_test(hs, test_fitbit_verify);
    tcase_add_test(hs, test_strava_subscribe);
    tcase_add_test(hs, test_withings_head);
    suite_add_tcase(s, hs);

    tcase_add_checked_fixture(vendor, setup, NULL);
    tcase_add_test(vendor, test_vendor_table);
    tcase_add_test(vendor, test_vendor_enabled);
    tcase_add_test(vendor, test_content_types);
    tcase_add_test(vendor, test_control_messages);
    suite_add_tcase(s, vendor);

    tcase_add_test(config, test_cfg_defaults);
    tcase_add_test(config, test_cfg_app_secret);
    tcase_add_test(config, test_cfg_bounds);
    tcase_add_test(vendor, test_handshake_unconfigured_and_none);
    tcase_add_test(vendor, test_unconfigured_routes);
    /* exit()ing cases need Check's fork (CK_FORK=no runs every case in one process). */
    if (fork_mode == NULL || strcmp(fork_mode, "no") != 0) {
        tcase_add_exit_test(config, test_cfg_bad_app_secret_exits, 2);
    }
    suite_add_tcase(s, config);
    return s;
}

int main(void)
{
    return check_run(gw_handshake_suite());
}
