"""Bad-input corpus: a table of hostile requests against the running gateway, each with the
answer it must get. For every row the test also checks that nothing reached Kafka for a rejected
request (the end offsets of biometric.raw.v1 are unchanged; an accepted row adds exactly one
record) and that the gateway keeps serving (/healthz answers 200 afterwards).

Rows the gateway accepts on purpose are in the table too: it authenticates and forwards bytes
and does not parse health data, so a signed body with invalid UTF-8, deep nesting, huge numbers
or unknown fields is made durable (200) and the processor rejects what it cannot normalize (to
the dead-letter topic). Slow clients and oversized headers are answered by libmicrohttpd under
the limits of README "Security" (HTTP_CONNECTION_TIMEOUT_SECONDS, HTTP_MAX_HEADER_BYTES)."""

import socket
import time
import urllib.parse

import pytest
import requests

import e2elib
import signing

MAX_BODY = 1024 * 1024  # MAX_BODY_BYTES default (config/local.env does not change it)


def _raw_offsets(brokers):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": "auren-e2e-offsets",
                  "enable.auto.commit": False, "log_level": 3})
    try:
        md = c.list_topics(e2elib.TOPIC_RAW, timeout=10).topics[e2elib.TOPIC_RAW]
        return sum(c.get_watermark_offsets(TopicPartition(e2elib.TOPIC_RAW, p), timeout=10)[1]
                   for p in md.partitions)
    finally:
        c.close()


def _addr():
    u = urllib.parse.urlsplit(e2elib.GATEWAY_URL)
    return u.hostname, u.port or 80


def _exchange(raw, timeout=15.0):
    """Send raw bytes, return the status code of the answer (None when the server closed the
    connection without one)."""
    sock = socket.create_connection(_addr(), timeout=timeout)
    try:
        try:
            sock.sendall(raw)
        except OSError:
            pass
        return e2elib.read_status(sock, time.monotonic() + timeout)
    finally:
        sock.close()


def _request(method, path, headers, body):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: gateway", "Connection: close"]
    lines += ["%s: %s" % kv for kv in headers]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def _signed(vendor, body, env, now=None, **kw):
    path, headers, data = signing.sign(vendor, body, env=env, now=now, **kw)
    return path, list(headers.items()), data


BODY = b'{"user_id":10001,"id":"bad-input-1","type":"sleep.updated","trace_id":"t"}'
HMAC_VENDORS = ("whoop", "oura", "polar", "fitbit", "terra", "app")
SIG_HEADERS = {"whoop": "X-WHOOP-Signature", "oura": "x-oura-signature",
               "polar": "Polar-Webhook-Signature", "fitbit": "X-Fitbit-Signature",
               "terra": "terra-signature", "app": "webhook-signature"}
TIMED_VENDORS = ("whoop", "oura", "terra", "app")


def _without(headers, name):
    return [(k, v) for k, v in headers if k.lower() != name.lower()]


def _bad_signature(vendor):
    def build(env):
        path, h, data = _signed(vendor, BODY, env, secret="wrong-secret-value")
        if vendor == "app":
            path, h, data = _signed(vendor, BODY, env,
                                    secret="whsec_d3Jvbmctc2VjcmV0LXZhbHVlLXdyb25nLXNlY3JldA==")
        return _request("POST", path, h, data)
    return build


def _missing_signature(vendor):
    def build(env):
        path, h, data = _signed(vendor, BODY, env)
        return _request("POST", path, _without(h, SIG_HEADERS[vendor]), data)
    return build


def _shifted(vendor, seconds):
    def build(env):
        path, h, data = _signed(vendor, BODY, env, now=time.time() + seconds)
        return _request("POST", path, h, data)
    return build


def _signed_body(vendor, body, content_type=None):
    def build(env):
        path, h, data = _signed(vendor, body, env, content_type=content_type)
        return _request("POST", path, h, data)
    return build


def _method(method, vendor="whoop"):
    def build(env):
        path, h, data = _signed(vendor, BODY, env)
        return _request(method, path, h, data if method not in ("GET", "HEAD") else None)
    return build


def _dup_signature(env):
    path, h, data = _signed("whoop", BODY, env)
    good = [v for k, v in h if k == "X-WHOOP-Signature"][0]
    rest = _without(h, "X-WHOOP-Signature")
    return _request("POST", path, [("X-WHOOP-Signature", "AAAA" + good[4:])] + rest +
                    [("X-WHOOP-Signature", good)], data)


def _dup_content_length(env):
    path, h, data = _signed("whoop", BODY, env)
    return _request("POST", path, h + [("Content-Length", "5")], data)


def _huge_header(env):
    path, h, data = _signed("whoop", BODY, env)
    return _request("POST", path, h + [("X-Padding", "a" * (64 * 1024))], data)


def _many_headers(env):
    path, h, data = _signed("whoop", BODY, env)
    return _request("POST", path, h + [("X-H%d" % i, "v" * 64) for i in range(2000)], data)


def _declared_too_large(env):
    path, h, _ = _signed("whoop", BODY, env)
    lines = ["POST %s HTTP/1.1" % path, "Host: gateway", "Connection: close",
             "Content-Length: %d" % (MAX_BODY + 1)] + ["%s: %s" % kv for kv in h]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b"{"


def _chunked_over_limit(env):
    path, h, _ = _signed("whoop", b"{}", env)
    lines = ["POST %s HTTP/1.1" % path, "Host: gateway", "Connection: close",
             "Transfer-Encoding: chunked"] + ["%s: %s" % kv for kv in h]
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // 65536 + 2))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body + b"0\r\n\r\n"


def _chunked_signed(env):
    path, h, data = _signed("whoop", BODY, env)
    lines = ["POST %s HTTP/1.1" % path, "Host: gateway", "Connection: close",
             "Transfer-Encoding: chunked"] + ["%s: %s" % kv for kv in h]
    half = len(data) // 2
    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, data[:half], len(data) - half,
                                                     data[half:])
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _wrong_token(vendor):
    def build(env):
        path, h, data = _signed(vendor, BODY, env)
        return _request("POST", "/webhooks/%s/not-the-token" % vendor, h, data)
    return build


def _literal(raw):
    return lambda env: raw


NESTED = b'{"a":' * 5000 + b"1" + b"}" * 5000
HUGE = b'{"user_id":10001,"pad":"' + b"x" * (MAX_BODY - 100) + b'"}'

# (id, request builder, expected status, reaches Kafka)
CASES = []
for _v in HMAC_VENDORS:
    CASES.append(("bad_signature_" + _v, _bad_signature(_v), 401, False))
    CASES.append(("missing_signature_" + _v, _missing_signature(_v), 401, False))
for _v in TIMED_VENDORS:
    CASES.append(("replayed_timestamp_" + _v, _shifted(_v, -3600), 401, False))
    CASES.append(("future_timestamp_" + _v, _shifted(_v, 3600), 401, False))
CASES += [
    ("bad_authorization_google_health",
     lambda env: _request("POST", "/webhooks/google_health",
                          [("Authorization", "Bearer wrong"),
                           ("Content-Type", "application/json")], BODY), 401, False),
    ("missing_authorization_google_health",
     lambda env: _request("POST", "/webhooks/google_health",
                          [("Content-Type", "application/json")], BODY), 401, False),
    ("bad_client_id_garmin",
     lambda env: _request("POST", signing.vendor_path("garmin", env),
                          [("garmin-client-id", "someone-else"),
                           ("Content-Type", "application/json")], BODY), 401, False),
    ("wrong_token_garmin", _wrong_token("garmin"), 404, False),
    ("wrong_token_withings", _wrong_token("withings"), 404, False),
    ("wrong_token_strava", _wrong_token("strava"), 404, False),
    ("missing_token_strava",
     lambda env: _request("POST", "/webhooks/strava", [("Content-Type", "application/json")],
                          BODY), 404, False),
    ("unknown_vendor", _literal(_request("POST", "/webhooks/dexcom", [], BODY)), 404, False),
    ("path_traversal",
     _literal(_request("POST", "/webhooks/../webhooks/whoop", [], BODY)), 404, False),
    ("duplicate_signature_header_first_wrong", _dup_signature, 401, False),
    # libmicrohttpd 0.9.75 reads the first Content-Length: the body is cut short and its
    # signature no longer matches (ingress controllers answer 400 before it gets here).
    ("duplicate_content_length", _dup_content_length, 401, False),
    ("oversized_header", _huge_header, 431, False),
    ("too_many_headers", _many_headers, 431, False),
    ("declared_body_over_limit", _declared_too_large, 413, False),
    ("chunked_body_over_limit", _chunked_over_limit, 413, False),
    ("chunked_body_signed", _chunked_signed, 200, True),
    ("empty_body", _signed_body("whoop", b""), 400, False),
    ("wrong_content_type_signed", _signed_body("whoop", BODY, content_type="text/xml"), 415,
     False),
    ("invalid_utf8_signed", _signed_body("whoop", b'{"user_id":10001,"x":"\xff\xfe\xc0"}'),
     200, True),
    ("invalid_utf8_unsigned",
     _literal(_request("POST", "/webhooks/whoop", [("Content-Type", "application/json")],
                       b'{"x":"\xff\xfe"}')), 401, False),
    ("invalid_utf8_header_value",
     _literal(_request("POST", "/webhooks/whoop",
                       [("X-WHOOP-Signature", "\xff\xfe"),
                        ("X-WHOOP-Signature-Timestamp", "\xff")], BODY)), 401, False),
    ("deeply_nested_json_signed", _signed_body("whoop", NESTED), 200, True),
    ("deeply_nested_json_polar_unsigned",
     _literal(_request("POST", "/webhooks/polar", [("Content-Type", "application/json")],
                       b"[" * 2100 + b"]" * 2100)), 401, False),
    ("huge_json_signed", _signed_body("whoop", HUGE), 200, True),
    ("numbers_out_of_range_signed",
     _signed_body("whoop", b'{"user_id":1e999999,"id":-99999999999999999999999999}'), 200, True),
    ("unknown_fields_signed",
     _signed_body("whoop", b'{"user_id":10001,"id":"x","type":"sleep.updated","zzz":[1,2]}'),
     200, True),
    ("method_put", _method("PUT"), 405, False),
    ("method_delete", _method("DELETE"), 405, False),
    ("method_patch", _method("PATCH"), 405, False),
    ("method_get_without_handshake", _method("GET"), 405, False),
    ("method_get_oura_bad_token",
     _literal(_request("GET", "/webhooks/oura?verification_token=nope&challenge=c", [], None)),
     401, False),
    # A TLS ClientHello on the plain-HTTP port: closed without an answer (None).
    ("not_http", _literal(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64), None,
     False),
    ("bad_request_line", _literal(b"POST /webhooks/whoop HTTP/9.9\r\n\r\n"), 505, False),
]

@pytest.fixture(scope="module")
def brokers(stack, env_values):
    return env_values["KAFKA_BROKERS"]


@pytest.fixture(scope="module")
def dlq_tail(brokers, schemas):
    """biometric.dlq.v1 from before the first row: accepted rows the processor cannot
    normalize must come out there."""
    tail = e2elib.TopicTail(brokers, e2elib.TOPIC_DLQ, schemas)
    yield tail
    tail.close()


def _wait_offsets(brokers, want, timeout=5.0):
    end = time.monotonic() + timeout
    got = _raw_offsets(brokers)
    while got != want and time.monotonic() < end:
        time.sleep(0.1)
        got = _raw_offsets(brokers)
    return got


@pytest.mark.parametrize("name,build,status,durable", CASES, ids=[c[0] for c in CASES])
def test_hostile_request(name, build, status, durable, brokers, env_values, dlq_tail):
    before = _raw_offsets(brokers)
    got = _exchange(build(env_values))
    assert got == status, "%s: expected %s, got %s" % (name, status, got)
    after = _wait_offsets(brokers, before + (1 if durable else 0))
    assert after == before + (1 if durable else 0), \
        "%s: biometric.raw.v1 grew by %d" % (name, after - before)
    assert requests.get(e2elib.GATEWAY_URL + "/healthz", timeout=5).status_code == 200


def test_slow_clients_are_cut_off_and_others_served(stack, env_values, http):
    """Slowloris: connections that stall inside the request head are closed after
    HTTP_CONNECTION_TIMEOUT_SECONDS (default 10) of silence, and while they hang the gateway
    answers everyone else."""
    timeout_s = int(env_values.get("HTTP_CONNECTION_TIMEOUT_SECONDS", "10"))
    slow = []
    for _ in range(50):
        s = socket.create_connection(_addr(), timeout=timeout_s + 15)
        s.sendall(b"POST /webhooks/whoop HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        slow.append(s)
    try:
        start = time.monotonic()
        path, h, data = _signed("whoop", BODY, env_values)
        r = http.post(e2elib.GATEWAY_URL + path, data=data, headers=dict(h), timeout=10)
        assert r.status_code == 200
        for s in slow:
            try:
                s.recv(4096)  # returns on close (b"") or an error answer; times out otherwise
            except ConnectionResetError:
                pass
        took = time.monotonic() - start
        assert took <= timeout_s + 10, "stalled connections held %.1fs" % took
    finally:
        for s in slow:
            s.close()
    assert requests.get(e2elib.GATEWAY_URL + "/healthz", timeout=5).status_code == 200


def test_accepted_garbage_reaches_the_dead_letter_topic(dlq_tail):
    """The processor dead-letters what the gateway accepted but nobody can normalize, even the
    largest body (a dead letter wraps the whole raw record: it once exceeded the producer's
    message size and stopped the processor)."""
    def has_huge(records):
        return any(r["datum"] is not None and len(r["datum"]["value"]) > MAX_BODY - 1000
                   for r in records)
    assert dlq_tail.wait_for(has_huge, e2elib.PIPELINE_DEADLINE_S), \
        "no dead letter for the ~1 MB body within %ss" % e2elib.PIPELINE_DEADLINE_S
    assert all(r["error"] is None for r in dlq_tail.records)
