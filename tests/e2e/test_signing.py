"""Offline checks of signing.py against the published Standard Webhooks vector and the
self-computed vectors of vendors.md sec. 14 (no stack needed)."""

import signing


def _env(**kw):
    return dict(kw)


def test_standard_webhooks_published_vector():
    env = _env(WEBHOOK_SECRET_APP="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    _, headers, _ = signing.sign("app", b'{"test": 2432232314}', env=env, now=1614265330,
                                 msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek")
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-timestamp"] == "1614265330"
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"


def test_whoop_vector():
    body = (b'{"user_id":456,"id":"550e8400-e29b-41d4-a716-446655440000","type":"sleep.updated",'
            b'"trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}')
    _, h, _ = signing.sign("whoop", body, env=_env(WEBHOOK_SECRET_WHOOP="whoop_test_client_secret"),
                           now=1748241241.0)
    assert h["X-WHOOP-Signature-Timestamp"] == "1748241241000"
    assert h["X-WHOOP-Signature"] == "XG2kqpMPyVHZIJkfKYu42jnMb+P7Q19fXxb9qzBLCKQ="


def test_oura_vector():
    body = (b'{"event_type":"create","data_type":"sleep","object_id":'
            b'"8f9a5221-639e-4a6e-8e4b-1b4f1a2b3c4d","event_time":"2024-01-01T08:00:00+00:00",'
            b'"user_id":"abc123"}')
    _, h, _ = signing.sign("oura", body, env=_env(WEBHOOK_SECRET_OURA="oura_test_client_secret"),
                           now=1704096000)
    assert h["x-oura-timestamp"] == "1704096000"
    assert h["x-oura-signature"] == ("7EF58E49B3B3629E453D83E4282E7B3E"
                                     "9024CFB488642A5B8D8D15B8ACC4DC1F")


def test_fitbit_vector():
    body = (b'[{"collectionType":"foods","date":"2010-03-01","ownerId":"228S74",'
            b'"ownerType":"user","subscriptionId":"1234"}]')
    _, h, _ = signing.sign("fitbit", body,
                           env=_env(WEBHOOK_SECRET_FITBIT="fitbit_test_client_secret"))
    assert h["X-Fitbit-Signature"] == "MOZ+ikjIpVt8rCDgVLKp61yszq4="


def test_polar_vector():
    body = (b'{"event":"EXERCISE","user_id":475,"entity_id":"aQlC83",'
            b'"timestamp":"2018-05-15T14:22:24Z",'
            b'"url":"https://www.polaraccesslink.com/v3/exercises/aQlC83"}')
    _, h, _ = signing.sign("polar", body,
                           env=_env(WEBHOOK_SECRET_POLAR="abe1f3ae-fd33-11e8-8eb2-f2801f1b9fd1"))
    assert h["Polar-Webhook-Signature"] == ("443ec69698c1de6d326902d7d942be1e"
                                            "83f0395f685b8c040cee609660d006d6")


def test_terra_vector():
    body = (b'{"type":"auth","user":{"user_id":"23dc2540-7139-44c6-8158-f81196e2cf2e",'
            b'"provider":"GARMIN"},"status":"success","reference_id":"user-1"}')
    _, h, _ = signing.sign("terra", body,
                           env=_env(WEBHOOK_SECRET_TERRA="terra_test_signing_secret"),
                           now=1723808700)
    assert h["terra-signature"] == ("t=1723808700,v1=baf235030dd4e143e8f0a3227cc867a6"
                                    "efee598d4981bb04d235efee8e7db52a")


def test_path_token_vendors():
    env = _env(WEBHOOK_PATH_TOKEN_GARMIN="g-tok", WEBHOOK_PATH_TOKEN_WITHINGS="w-tok",
               WEBHOOK_PATH_TOKEN_STRAVA="s-tok", GARMIN_CLIENT_ID="gcid")
    path, h, _ = signing.sign("garmin", b"{}", env=env)
    assert path == "/webhooks/garmin/g-tok" and h["garmin-client-id"] == "gcid"
    path, h, _ = signing.sign("withings", b"userid=1&appli=1", env=env)
    assert path == "/webhooks/withings/w-tok"
    assert h["Content-Type"] == "application/x-www-form-urlencoded"
    path, h, _ = signing.sign("strava", b"{}", env=env)
    assert path == "/webhooks/strava/s-tok" and h["Content-Type"] == "application/json"


def test_google_health_authorization():
    path, h, _ = signing.sign("google_health", b"[]",
                              env=_env(GOOGLE_HEALTH_AUTHORIZATION="Bearer abc"))
    assert path == "/webhooks/google_health" and h["Authorization"] == "Bearer abc"
