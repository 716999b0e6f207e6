"""End-to-end tests of the fetcher (processor thread) against the fake vendor API server.

tests/fakevendor/server.py runs inside this test process on 127.0.0.1:18080, where
config/local.env points the stack's processor ({VENDOR}_API_BASE_URL / _TOKEN_URL). Each test
registers connections with sealed tokens through `auren-admin connections add
--access-token-file`, grants the same tokens at the fake, and then either posts a notification
to the gateway or produces FetchJobs directly to Kafka; the outcome is read from PostgreSQL, the
fake's request log, the dead-letter topic and the processors' /metrics.
"""

import datetime
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import avro.io
import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakevendor"))

import e2elib  # noqa: E402
import server as fakevendor  # noqa: E402

FAKE = "http://127.0.0.1:18080"
DEADLINE_S = 60
EXPECTED_DIR = e2elib.FIXTURE_DIR


@pytest.fixture(scope="module")
def fake(stack):
    try:
        srv = fakevendor.serve(18080)
    except OSError as exc:
        pytest.fail("cannot start the fake vendor server on 127.0.0.1:18080: %s" % exc)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def dlq(stack, env_values, schemas):
    tail = e2elib.TopicTail(env_values["KAFKA_BROKERS"], e2elib.TOPIC_DLQ, schemas)
    yield tail
    tail.close()


def control(path, **body):
    r = requests.post(FAKE + "/_control/" + path, json=body, timeout=5)
    r.raise_for_status()


def stats():
    return requests.get(FAKE + "/_control/stats", timeout=5).json()


def add_conn(env_values, vendor, vuid, user, expires_in=3600, refresh=True, grant=True,
             fake_expires_in=None):
    """A connection with fresh tokens, sealed by auren-admin and granted at the fake."""
    access, rtok = uuid.uuid4().hex, uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as d:
        af, rf = os.path.join(d, "a"), os.path.join(d, "r")
        with open(af, "w") as f:
            f.write(access + "\n")
        with open(rf, "w") as f:
            f.write(rtok + "\n")
        cmd = [e2elib.admin_binary(), "connections", "add", "--vendor", vendor,
               "--vendor-user-id", str(vuid), "--user-id", user, "--access-token-file", af,
               "--expires-in", str(expires_in), "--scopes", "read"]
        if refresh:
            cmd += ["--refresh-token-file", rf]
        env = dict(os.environ)
        env.update(env_values)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert access not in res.stdout + res.stderr and rtok not in res.stdout + res.stderr
    if grant:
        control("grant", vendor=vendor, vendor_user_id=str(vuid), access=access,
                refresh=rtok if refresh else None,
                expires_in=fake_expires_in if fake_expires_in is not None else expires_in)
    return access, rtok


def expected_metrics(vendor, resource):
    with open(os.path.join(EXPECTED_DIR, vendor, "api_%s.json.expected" % resource)) as f:
        return {line.split("|")[0] for line in f if line.strip()}


def wait_rows(user, env_values, want_metrics, deadline=DEADLINE_S, deleted=None):
    end = time.monotonic() + deadline
    while True:
        rows = e2elib.fetch_rows([user], env_values)
        if deleted is not None:
            rows = [r for r in rows if r["deleted"] == deleted]
        got = {r["metric"] for r in rows}
        if want_metrics <= got or time.monotonic() > end:
            return got
        time.sleep(0.5)


def conn_status(env_values, vendor, vuid):
    rows = e2elib.psql("SELECT status, token_generation FROM connections WHERE vendor = %s AND "
                       "vendor_user_id = %s" % (e2elib.sql_list([vendor]),
                                                e2elib.sql_list([str(vuid)])), env_values)
    return rows[0] if rows else None


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def ids(tag):
    s = uuid.uuid4().hex[:8]
    return int(time.time() * 1000) % 1000000000 + int(s[:4], 16), "e2e-fetch-%s-%s" % (tag, s)


# ------------------------------------------------------------------ notifications -> rows

def notification(vendor, vuid):
    """(body bytes, resource whose fixture the fake answers) of one notification."""
    if vendor == "whoop":
        b = {"user_id": vuid, "id": str(uuid.uuid4()), "type": "sleep.updated",
             "trace_id": str(uuid.uuid4())}
        return json_bytes(b), "sleep"
    if vendor == "oura":
        b = {"event_type": "create", "data_type": "daily_readiness",
             "object_id": uuid.uuid4().hex, "event_time": now_iso(), "user_id": str(vuid)}
        return json_bytes(b), "daily_readiness"
    if vendor == "polar":
        b = {"event": "EXERCISE", "user_id": vuid, "entity_id": "aQlC83", "timestamp": now_iso(),
             "url": "https://www.polaraccesslink.com/v3/exercises/aQlC83"}
        return json_bytes(b), "exercise"
    if vendor == "fitbit":
        b = [{"collectionType": "sleep", "date": "2026-11-20", "ownerId": str(vuid),
              "ownerType": "user", "subscriptionId": "1"}]
        return json_bytes(b), "sleep"
    if vendor == "withings":
        t = int(time.time())
        return ("userid=%d&appli=1&startdate=%d&enddate=%d" % (vuid, t - 86400, t)).encode(), \
            "weight"
    if vendor == "strava":
        b = {"aspect_type": "create", "event_time": int(time.time()), "object_id": 1360128428,
             "object_type": "activity", "owner_id": vuid, "subscription_id": 1, "updates": {}}
        return json_bytes(b), "activity"
    raise ValueError(vendor)


def json_bytes(obj):
    import json
    return json.dumps(obj).encode()


@pytest.mark.parametrize("vendor", ["whoop", "oura", "polar", "fitbit", "withings", "strava"])
def test_notification_flows_to_postgresql_rows(fake, env_values, http, vendor):
    vuid, user = ids(vendor)
    add_conn(env_values, vendor, vuid, user)
    body, resource = notification(vendor, vuid)
    r = e2elib.post(http, vendor, body, env_values)
    assert 200 <= r.status_code < 300, r.status_code
    want = expected_metrics(vendor, resource)
    got = wait_rows(user, env_values, want)
    assert want <= got, "%s: missing %s" % (vendor, sorted(want - got))


GH_TYPES = ("steps", "heart-rate", "weight", "oxygen-saturation", "heart-rate-variability",
            "respiratory-rate-sleep-summary", "daily-resting-heart-rate",
            "daily-heart-rate-variability", "daily-respiratory-rate", "daily-oxygen-saturation",
            "daily-sleep-temperature-derivations", "sleep", "exercise")


def gh_notification(vuid, operation, types, start="2026-11-23T00:00:00Z",
                    end="2026-11-23T12:00:00Z"):
    return json_bytes([{"data": {"healthUserId": str(vuid), "operation": operation,
                                 "dataType": t,
                                 "intervals": [{"physicalTimeInterval": {
                                     "startTime": start, "endTime": end}}],
                                 "clientProvidedSubscriptionName": "auren", "version": "1"}}
                       for t in types])


def test_google_health_notification_flows_to_postgresql_rows(fake, env_values, http):
    """One batched Google Health notification naming every data type we read: each is listed
    over its interval with the documented filter and its data points become rows."""
    vuid, user = ids("google_health")
    add_conn(env_values, "google_health", vuid, user)
    r = e2elib.post(http, "google_health", gh_notification(vuid, "UPSERT", GH_TYPES), env_values)
    assert 200 <= r.status_code < 300, r.status_code
    want = set()
    for t in GH_TYPES:
        want |= expected_metrics("google_health", t.replace("-", "_"))
    got = wait_rows(user, env_values, want)
    assert want <= got, "google_health: missing %s" % sorted(want - got)
    paths = {q["path"] for q in data_requests("google_health", vuid) if q["status"] == 200}
    assert paths == {"/google_health/v4/users/me/dataTypes/%s/dataPoints" % t for t in GH_TYPES}


def gh_rows(user, env_values):
    """(metric, source_record_id, start_us, deleted) of a user's rows."""
    return {(r[0], r[1], int(r[2]), r[3] == "t") for r in e2elib.psql(
        "SELECT metric, source_record_id, (extract(epoch FROM start_time) * 1000000)::bigint, "
        "deleted FROM biometric_events WHERE user_id = %s" % e2elib.sql_list([user]),
        env_values)}


def test_google_health_delete_tombstones_the_notified_interval(fake, env_values, http):
    """DELETE names a data type and intervals: our rows of that type starting inside an interval
    become deleted=true; the same type outside it and other types stay."""
    vuid, user = ids("gh-del")
    add_conn(env_values, "google_health", vuid, user)
    up = gh_notification(vuid, "UPSERT", ("heart-rate", "steps", "sleep"),
                         "2026-11-22T00:00:00Z", "2026-11-23T12:00:00Z")
    assert 200 <= e2elib.post(http, "google_health", up, env_values).status_code < 300
    want = (expected_metrics("google_health", "heart_rate") |
            expected_metrics("google_health", "steps") |
            expected_metrics("google_health", "sleep"))
    assert want <= wait_rows(user, env_values, want)
    end = time.monotonic() + DEADLINE_S
    while len(gh_rows(user, env_values)) < 2 + 2 + 9:
        assert time.monotonic() < end, "rows of the upsert missing"
        time.sleep(0.5)
    n_requests = len(data_requests("google_health", vuid))
    # heart-rate over [08:00:00, 08:01:00): the 08:00:05 sample only; sleep over the main
    # session (a named data point), not the nap at 13:00
    body = json_bytes([
        {"data": {"healthUserId": str(vuid), "operation": "DELETE", "dataType": "heart-rate",
                  "intervals": [{"physicalTimeInterval": {"startTime": "2026-11-23T08:00:00Z",
                                                          "endTime": "2026-11-23T08:01:00Z"}}]}},
        {"data": {"healthUserId": str(vuid), "operation": "DELETE", "dataType": "sleep",
                  "intervals": [{"physicalTimeInterval": {"startTime": "2026-11-22T22:30:00Z",
                                                          "endTime": "2026-11-23T06:30:00Z"}}]}},
    ])
    assert 200 <= e2elib.post(http, "google_health", body, env_values).status_code < 300
    main_sleep = "users/me/dataTypes/sleep/dataPoints/5512078000"
    end = time.monotonic() + DEADLINE_S
    while True:
        rows = gh_rows(user, env_values)
        deleted = {(m, s) for m, s, _, d in rows if d}
        if len(deleted) >= 1 + 6 or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert deleted == {("heart_rate", "heartRate@2026-11-23T08:00:05Z")} | {
        (m, main_sleep) for m, s, _, d in rows if s == main_sleep}, sorted(deleted)
    assert len([1 for _, s, _, _ in rows if s == main_sleep]) == 6
    live = {(m, s) for m, s, _, d in rows if not d}
    assert ("heart_rate", "heartRate@2026-11-23T08:01:05.500000Z") in live
    assert {m for m, s in live if s.startswith("steps@")} == {"steps"}
    assert ("sleep_duration_total", "users/me/dataTypes/sleep/dataPoints/5512078001") in live
    assert len(data_requests("google_health", vuid)) == n_requests, "a DELETE fetched data"


def gh_points(n, start_s):
    return [{"dataSource": {"platform": "FITBIT"},
             "heartRate": {"beatsPerMinute": str(60 + i % 40), "sampleTime": {
                 "physicalTime": datetime.datetime.fromtimestamp(
                     start_s + 60 * i, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}}
            for i in range(n)]


def gh_paged_upsert(env_values, http, tag, n, page_size):
    """A user whose heart-rate list holds n points answered page_size per page, notified."""
    vuid, user = ids(tag)
    add_conn(env_values, "google_health", vuid, user)
    control("gh_points", vendor_user_id=str(vuid), type="heart-rate",
            points=gh_points(n, 1795420800), page_size=page_size)
    body = gh_notification(vuid, "UPSERT", ("heart-rate",), "2026-11-23T08:00:00Z",
                           "2026-11-23T09:00:00Z")
    assert 200 <= e2elib.post(http, "google_health", body, env_values).status_code < 300
    return vuid, user


def test_google_health_window_over_several_pages_lands_completely(fake, env_values, http):
    """25 points answered 10 per page: the fetcher follows nextPageToken and all 25 land."""
    vuid, user = gh_paged_upsert(env_values, http, "gh-pages", 25, 10)
    end = time.monotonic() + DEADLINE_S
    while True:
        rows = [r for r in e2elib.fetch_rows([user], env_values) if r["metric"] == "heart_rate"]
        if len(rows) >= 25 or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert sorted(r["start_us"] for r in rows) == [
        (1795420800 + 60 * i) * 1000000 for i in range(25)]
    reqs = [q for q in data_requests("google_health", vuid) if q["status"] == 200]
    assert len(reqs) == 3, "%d list requests for 3 pages" % len(reqs)


def test_google_health_page_limit_is_dead_lettered(fake, env_values, http, dlq):
    """Past FETCH_MAX_PAGES (5 in config/local.env) the pages read are published and the job is
    dead-lettered `page_limit`, so an operator can replay it with a larger limit."""
    vuid, user = gh_paged_upsert(env_values, http, "gh-limit", 7, 1)
    recs = dlq_reason(dlq, "google_health", vuid, "page_limit")
    assert recs and recs[0]["datum"]["detail"] == "pages=5", recs
    end = time.monotonic() + DEADLINE_S
    while len(e2elib.fetch_rows([user], env_values)) < 5 and time.monotonic() < end:
        time.sleep(0.5)
    assert sorted(r["start_us"] for r in e2elib.fetch_rows([user], env_values)) == [
        (1795420800 + 60 * i) * 1000000 for i in range(5)]
    assert len([q for q in data_requests("google_health", vuid) if q["status"] == 200]) == 5


def test_garmin_ping_callback_is_fetched(fake, env_values, http):
    vuid, user = ids("garmin")
    add_conn(env_values, "garmin", str(vuid), user)
    body = json_bytes({"dailies": [{"userId": str(vuid), "callbackURL":
                       "https://apis.garmin.com/wellness-api/rest/dailies?"
                       "uploadStartTimeInSeconds=1&uploadEndTimeInSeconds=2&token=XYZ"}]})
    r = e2elib.post(http, "garmin", body, env_values)
    assert 200 <= r.status_code < 300
    want = expected_metrics("garmin", "dailies")
    assert want <= wait_rows(user, env_values, want)


def test_vendor_delete_becomes_tombstones(fake, env_values, http):
    vuid, user = ids("whoop-del")
    add_conn(env_values, "whoop", vuid, user)
    sleep_id = str(uuid.uuid4())
    for typ in ("sleep.updated", "sleep.deleted"):
        b = {"user_id": vuid, "id": sleep_id, "type": typ, "trace_id": str(uuid.uuid4())}
        assert e2elib.post(http, "whoop", json_bytes(b), env_values).status_code == 200
        if typ == "sleep.updated":
            want = expected_metrics("whoop", "sleep")
            assert want <= wait_rows(user, env_values, want)
    want = expected_metrics("whoop", "sleep")
    got = wait_rows(user, env_values, want, deleted=True)
    assert want <= got, "not tombstoned: %s" % sorted(want - got)


# ------------------------------------------------------------------ jobs produced directly

def fetch_job(schemas, vendor, vuid, resource, object_id, event_type=None, url=None):
    entry = schemas.by_name["fetch_job.v1"]
    now = datetime.datetime.now(datetime.timezone.utc)
    datum = {"job_id": uuid.uuid4().hex, "vendor": vendor, "vendor_user_id": str(vuid),
             "user_id": None, "resource": resource, "event_type": event_type,
             "object_id": object_id, "url": url, "start_time": None, "end_time": None,
             "raw_event_id": uuid.uuid4().hex, "attempt": 0, "not_before": now,
             "created_at": now}
    buf = io.BytesIO()
    avro.io.DatumWriter(entry["schema"]).write(datum, avro.io.BinaryEncoder(buf))
    return b"\xc3\x01" + entry["fp"].to_bytes(8, "little") + buf.getvalue()


def produce_jobs(env_values, values, key, spread=True):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": env_values["KAFKA_BROKERS"], "enable.idempotence": True})
    for i, v in enumerate(values):
        if spread:
            p.produce(e2elib.TOPIC_FETCH, v, key=key, partition=i % 6)
        else:
            p.produce(e2elib.TOPIC_FETCH, v, key=key)
    assert p.flush(30) == 0


def data_requests(vendor, user):
    return [r for r in stats()["requests"] if r["vendor"] == vendor and r["user"] == str(user)]


def metric_value(text, name, labels):
    pat = re.compile(r"^%s\{([^}]*)\} ([0-9.e+-]+)$" % re.escape(name), re.M)
    total = 0.0
    for m in pat.finditer(text):
        if all('%s="%s"' % kv in m.group(1) for kv in labels.items()):
            total += float(m.group(2))
    return total


@pytest.fixture(scope="module")
def second_processor(stack, env_values):
    """Another processor process (ops port 9111): a second replica of both consumer groups."""
    build = os.environ.get("BUILD_DIR", "build")
    if not os.path.isabs(build):
        build = os.path.join(e2elib.REPO_ROOT, build)
    env = dict(os.environ)
    env.update(env_values)
    env["HTTP_PORT"] = "9111"
    # Replicas on one host need their own transactional.id, or the newer one fences the stack's
    # processor (README, Reliability: KAFKA_TRANSACTIONAL_ID).
    env["KAFKA_TRANSACTIONAL_ID"] = "auren-processor-e2e-replica-2"
    log = open(os.path.join(e2elib.REPO_ROOT, ".state", "logs", "processor-2.log"), "ab")
    proc = subprocess.Popen([os.path.join(build, "auren-processor")], env=env, stdout=log,
                            stderr=log, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while e2elib.http_get_status("http://127.0.0.1:9111/readyz") != 200:
            assert proc.poll() is None, "second processor exited"
            assert time.monotonic() < end, "second processor not ready"
            time.sleep(0.5)
        time.sleep(8)  # let the fetcher group rebalance over both members
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_expired_token_refreshed_once_across_two_processes(fake, env_values, schemas,
                                                            second_processor):
    vuid, user = ids("whoop-16")
    add_conn(env_values, "whoop", vuid, user, expires_in=0)
    gen0 = int(conn_status(env_values, "whoop", vuid)[1])
    jobs = [fetch_job(schemas, "whoop", vuid, "workout", str(uuid.uuid4())) for _ in range(16)]
    produce_jobs(env_values, jobs, ("whoop:%d" % vuid).encode())
    end = time.monotonic() + DEADLINE_S
    while len([r for r in data_requests("whoop", vuid) if r["status"] == 200]) < 16:
        assert time.monotonic() < end, "only %d of 16 jobs fetched" % len(
            [r for r in data_requests("whoop", vuid) if r["status"] == 200])
        time.sleep(0.5)
    assert stats()["refreshes"].get("whoop:%d" % vuid) == 1
    assert int(conn_status(env_values, "whoop", vuid)[1]) == gen0 + 1
    text = requests.get("http://127.0.0.1:9111/metrics", timeout=5).text
    assert metric_value(text, "auren_fetcher_jobs_total", {"vendor": "whoop"}) > 0, \
        "the second processor fetched nothing: the test did not span two processes"
    # Rotation: the fake invalidated the first refresh token. Expire the access token again:
    # the next refresh must use the rotated one stored in PostgreSQL, and succeed.
    control("grant", vendor="whoop", vendor_user_id=str(vuid), access="unused-" + uuid.uuid4().hex,
            expires_in=0)
    psql_expire(env_values, "whoop", vuid)
    produce_jobs(env_values, [fetch_job(schemas, "whoop", vuid, "sleep", str(uuid.uuid4()))],
                 ("whoop:%d" % vuid).encode(), spread=False)
    end = time.monotonic() + DEADLINE_S
    while stats()["refreshes"].get("whoop:%d" % vuid) != 2:
        assert time.monotonic() < end, "rotated refresh token not used"
        time.sleep(0.5)
    assert conn_status(env_values, "whoop", vuid)[0] == "active"


def psql_expire(env_values, vendor, vuid):
    e2elib.psql("UPDATE connections SET expires_at = now() - interval '1 minute' WHERE vendor = "
                "%s AND vendor_user_id = %s" % (e2elib.sql_list([vendor]),
                                               e2elib.sql_list([str(vuid)])), env_values)


def dlq_reason(dlq, vendor, vuid, reason, deadline=DEADLINE_S):
    key = ("%s:%s" % (vendor, vuid)).encode()
    return dlq.wait_for(lambda recs: [r for r in recs if r["key"] == key and r["datum"] and
                                      r["datum"]["stage"] == "fetcher" and
                                      r["datum"]["reason"] == reason], deadline)


def test_invalid_grant_marks_reconsent(fake, env_values, schemas, dlq):
    vuid, user = ids("oura-ig")
    add_conn(env_values, "oura", vuid, user, expires_in=0, grant=False)  # fake knows no token
    produce_jobs(env_values, [fetch_job(schemas, "oura", vuid, "daily_spo2", "x1")],
                 ("oura:%d" % vuid).encode(), spread=False)
    assert dlq_reason(dlq, "oura", vuid, "reconsent_required"), "no dead letter"
    assert conn_status(env_values, "oura", vuid)[0] == "reconsent_required"


def test_revoked_connection_is_not_fetched(fake, env_values, schemas, dlq):
    vuid, user = ids("strava-rv")
    add_conn(env_values, "strava", vuid, user)
    res = subprocess.run([e2elib.admin_binary(), "connections", "revoke", "--vendor", "strava",
                          "--vendor-user-id", str(vuid)], env=dict(os.environ, **env_values),
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    produce_jobs(env_values, [fetch_job(schemas, "strava", vuid, "activity", "1360128428")],
                 ("strava:%d" % vuid).encode(), spread=False)
    assert dlq_reason(dlq, "strava", vuid, "connection_revoked")
    assert not data_requests("strava", vuid)


def test_429_is_retried_after_the_reset_not_before(fake, env_values, schemas):
    vuid, user = ids("fitbit-429")
    add_conn(env_values, "fitbit", vuid, user)
    control("limit", vendor="fitbit", count=1, retry_after=3)
    produce_jobs(env_values, [fetch_job(schemas, "fitbit", vuid, "body", "2026-11-20")],
                 ("fitbit:%d" % vuid).encode(), spread=False)
    end = time.monotonic() + DEADLINE_S
    while not [r for r in data_requests("fitbit", vuid) if r["status"] == 200]:
        assert time.monotonic() < end, "never fetched after the 429"
        time.sleep(0.3)
    reqs = data_requests("fitbit", vuid)
    assert reqs[0]["status"] == 429
    ok = [r for r in reqs if r["status"] == 200][0]
    assert ok["t"] - reqs[0]["t"] >= 3.0, "retried %.2fs after a 3 s reset" % (
        ok["t"] - reqs[0]["t"])
    assert all(r["t"] - reqs[0]["t"] >= 3.0 for r in reqs[1:])
    want = expected_metrics("fitbit", "body")
    assert want <= wait_rows(user, env_values, want)


def breaker_opens():
    """Breaker openings for Oura summed over the processors that answer (the second replica of
    the two-process test may still own the job's partition)."""
    total = 0.0
    for base in (e2elib.PROCESSOR_OPS_URL, "http://127.0.0.1:9111"):
        try:
            text = requests.get(base + "/metrics", timeout=5).text
        except requests.RequestException:
            continue
        total += metric_value(text, "auren_fetcher_breaker_transitions_total",
                              {"vendor": "oura", "state": "open"})
    return total


def test_5xx_storm_opens_the_breaker_and_loses_no_job(fake, env_values, schemas):
    vuid, user = ids("oura-5xx")
    add_conn(env_values, "oura", vuid, user)
    before = breaker_opens()
    control("fail", vendor="oura", status=503, seconds=6)
    objs = ["storm-%d-%s" % (i, uuid.uuid4().hex[:6]) for i in range(8)]
    produce_jobs(env_values, [fetch_job(schemas, "oura", vuid, "daily_activity", o)
                              for o in objs], ("oura:%d" % vuid).encode(), spread=False)
    end = time.monotonic() + 90
    while True:
        ok = {r["path"].rsplit("/", 1)[1] for r in data_requests("oura", vuid)
              if r["status"] == 200}
        if set(objs) <= ok:
            break
        assert time.monotonic() < end, "jobs lost: %s" % sorted(set(objs) - ok)
        time.sleep(0.5)
    assert breaker_opens() - before >= 1, "the breaker never opened"
    fails = [r for r in data_requests("oura", vuid) if r["status"] == 503]
    assert len(fails) < 8 * 6, "no request was held back while the breaker was open"
    want = expected_metrics("oura", "daily_activity")
    assert want <= wait_rows(user, env_values, want)


def run_admin(env_values, args, keys):
    env = dict(os.environ)
    env.update(env_values)
    env["TOKEN_ENCRYPTION_KEYS"] = keys
    return subprocess.run([e2elib.admin_binary()] + args, env=env, capture_output=True,
                          text=True, timeout=60)


def test_keys_rotate_reseals_every_row_without_downtime(fake, env_values, http):
    old = env_values["TOKEN_ENCRYPTION_KEYS"]
    new = "rot2:" + "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
    vuid, user = ids("strava-rot")
    add_conn(env_values, "strava", vuid, user)
    res = run_admin(env_values, ["keys", "rotate"], new + "," + old)
    assert res.returncode == 0, res.stderr
    assert "re-sealed with key rot2" in res.stdout
    kids = {r[0] for r in e2elib.psql("SELECT DISTINCT key_id FROM connections WHERE key_id IS "
                                      "NOT NULL", env_values)}
    assert kids == {"rot2"}, kids
    # back under the stack's key (the running processors only hold that one)
    res = run_admin(env_values, ["keys", "rotate"], old + "," + new)
    assert res.returncode == 0, res.stderr
    kids = {r[0] for r in e2elib.psql("SELECT DISTINCT key_id FROM connections WHERE key_id IS "
                                      "NOT NULL", env_values)}
    assert kids == {old.split(":")[0]}, kids
    # a key that is not loaded is reported, and nothing is lost
    res = run_admin(env_values, ["keys", "rotate"], new)
    assert res.returncode == 1 and "not in TOKEN_ENCRYPTION_KEYS" in res.stdout
    body, resource = notification("strava", vuid)
    assert e2elib.post(http, "strava", body, env_values).status_code == 200
    want = expected_metrics("strava", resource)
    assert want <= wait_rows(user, env_values, want)
