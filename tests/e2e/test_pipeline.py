"""End-to-end: signed vendor webhooks in at the gateway; rows in PostgreSQL, series in Redis,
BiometricEvents / FetchJobs / DeadLetters on Kafka out. Black box against `make up`.

The bundled fixtures are rewritten to per-run vendor user ids (conftest.py), so the golden event
ids do not apply; instead each golden event must arrive with the same metric, unit, times and
value, every event id must be stored once however often its webhook was posted, and two posts of
the same body must yield the same event ids.
"""

import collections
import math
import time

import pytest

import e2elib
import signing
from e2elib import PIPELINE_DEADLINE_S


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _identity(ev):
    return (ev["metric"], ev["start_us"], ev["source_record_id"])


def _expected_identities(run):
    """user_id -> {identity: [golden events]} (an identity is one event id)."""
    out = {}
    for user, events in run.expected.items():
        per = collections.OrderedDict()
        for ev in events:
            per.setdefault(_identity(ev), []).append(ev)
        out[user] = per
    return out


def _row_matches(row, ev):
    return (row["metric"] == ev["metric"] and row["unit"] == ev["unit"]
            and row["start_us"] == ev["start_us"] and row["end_us"] == ev["end_us"]
            and _close(row["value"], ev["value"]))


def _compare(run, rows):
    """Returns (missing, extra) descriptions comparing rows with the golden events."""
    exp = _expected_identities(run)
    missing, extra = [], []
    for user in run.user_ids(e2elib.DATA_VENDORS):
        left = [r for r in rows if r["user_id"] == user]
        for ident, evs in exp.get(user, {}).items():
            hit = next((r for r in left if any(_row_matches(r, ev) for ev in evs)), None)
            if hit is None:
                missing.append("%s %s start=%d value=%s" % (user, ident[0], ident[1],
                                                             evs[0]["value"]))
            else:
                left.remove(hit)
        extra.extend("%s %s start=%d value=%s" % (user, r["metric"], r["start_us"], r["value"])
                     for r in left)
    return missing, extra


@pytest.fixture(scope="module")
def rows(run, env_values):
    """The run's rows once every golden event has arrived (polling, bounded)."""
    if run.rows is None:
        users = run.user_ids(e2elib.DATA_VENDORS)
        end = time.monotonic() + PIPELINE_DEADLINE_S
        while True:
            got = e2elib.fetch_rows(users, env_values)
            missing, _ = _compare(run, got)
            if not missing or time.monotonic() > end:
                break
            time.sleep(0.5)
        # Let stragglers (duplicates, extras) land before judging the final set.
        time.sleep(1.0)
        run.rows = e2elib.fetch_rows(users, env_values)
    return run.rows


# ------------------------------------------------------------------ acceptance

def _vendor_status_ok(post):
    """The 2xx each vendor expects: Fitbit 204, Google Health's verification 201."""
    if post["vendor"] == "fitbit":
        return post["status"] == 204
    if post["vendor"] == "google_health" and post["fixture"].handshake:
        return post["status"] == 201
    return 200 <= post["status"] < 300


def test_every_fixture_post_is_accepted(run):
    bad = ["%r copy %d -> %d" % (p["fixture"], p["copy"], p["status"]) for p in run.posts
           if not _vendor_status_ok(p)]
    assert not bad, "webhooks not accepted as the vendor expects: " + "; ".join(bad)
    assert any(run.expected.values()), "no golden events in the data-bearing fixtures"


# ------------------------------------------------------------------ PostgreSQL

def test_rows_match_golden_events(run, rows):
    missing, extra = _compare(run, rows)
    assert not missing, "%d golden events not in biometric_events within %.0f s: %s" % (
        len(missing), PIPELINE_DEADLINE_S, "; ".join(missing[:10]))
    assert not extra, "%d unexpected rows: %s" % (len(extra), "; ".join(extra[:10]))
    for r in rows:
        vendor = next(v for v in signing.VENDORS if run.ids[v]["user_id"] == r["user_id"])
        assert r["vendor"] == vendor
        assert len(r["event_id"]) >= 16


def test_each_event_stored_once_despite_double_post(run, rows, env_values):
    users = run.user_ids(e2elib.DATA_VENDORS)
    counts = e2elib.psql(
        "SELECT event_id, count(*) FROM biometric_events WHERE user_id IN (%s) "
        "GROUP BY event_id HAVING count(*) > 1" % e2elib.sql_list(users), env_values)
    assert counts == [], "event ids stored more than once: %d" % len(counts)
    expected = sum(len(v) for v in _expected_identities(run).values())
    assert len({r["event_id"] for r in rows}) == expected


# ------------------------------------------------------------------ Redis

def test_redis_series_hold_every_event(run, rows, env_values):
    assert rows, "no rows to look up"
    redis = e2elib.Redis(env_values["REDIS_URL"])
    try:
        members = {}
        problems = []
        for r in rows:
            key = "ts:%s:%s" % (r["user_id"], r["metric"])
            if key not in members:
                flat = redis.cmd("ZRANGE", key, 0, -1, "WITHSCORES") or []
                members[key] = {flat[i].decode(): float(flat[i + 1])
                                for i in range(0, len(flat), 2)}
                ttl = redis.cmd("TTL", key)
                if not isinstance(ttl, int) or ttl <= 0:
                    problems.append("%s TTL %r" % (key, ttl))
            hits = [(m, s) for m, s in members[key].items()
                    if m.split("|", 1)[0] == r["event_id"]]
            if r["deleted"]:
                # A vendor delete (tombstone) leaves no sample in the live series.
                if hits:
                    problems.append("%s: a deleted event is still a member" % key)
                continue
            if len(hits) != 1:
                problems.append("%s: %d members for one event" % (key, len(hits)))
                continue
            member, score = hits[0]
            parts = member.split("|")
            if len(parts) != 2 or not _close(float(parts[1]), r["value"]):
                problems.append("%s: member value differs from the row" % key)
            if int(score) != r["start_us"] // 1000:
                problems.append("%s: score %d != start ms %d" % (key, score,
                                                                  r["start_us"] // 1000))
        assert not problems, "; ".join(problems[:10])
    finally:
        redis.close()


# ------------------------------------------------------------------ Kafka: normalized

def _normalized_for(tail, users):
    keys = {u.encode() for u in users}
    return [rec for rec in tail.records if rec["key"] in keys]


def test_normalized_topic_carries_decodable_events(run, rows, tails, schemas):
    tail = tails[e2elib.TOPIC_NORMALIZED]
    users = run.user_ids(e2elib.DATA_VENDORS)
    want = {r["event_id"] for r in rows}
    assert want

    def ready(_records):
        seen = collections.Counter(rec["datum"]["event_id"] for rec in _normalized_for(tail, users)
                                   if rec["datum"] is not None)
        return all(seen[e] >= 2 for e in want)

    tail.wait_for(ready, PIPELINE_DEADLINE_S)
    ours = _normalized_for(tail, users)
    fp = schemas.fp("biometric_event.v1")
    for rec in ours:
        v = rec["value"]
        assert v[:2] == b"\xc3\x01", "value lacks the single-object magic"
        assert int.from_bytes(v[2:10], "little") == fp, \
            "fingerprint is not that of schemas/biometric_event.v1.avsc"
        assert rec["error"] is None, rec["error"]

    seen = collections.Counter(rec["datum"]["event_id"] for rec in ours)
    assert set(seen) == want, "event ids on Kafka differ from the rows"
    assert all(seen[e] >= 2 for e in want), "a double-posted webhook did not yield its events twice"

    exp = _expected_identities(run)
    deleted = {r["event_id"]: r["deleted"] for r in rows}
    assert any(deleted.values()), "no tombstone among the fixtures' events"
    for rec in ours:
        d = rec["datum"]
        assert rec["key"].decode() == d["user_id"]
        vendor = next(v for v in signing.VENDORS if run.ids[v]["user_id"] == d["user_id"])
        assert d["vendor"] == vendor
        ident = (d["metric"], e2elib.ts_us(d["start_time"]), d["source_record_id"])
        assert ident in exp[d["user_id"]], "event not in the golden set: %s %s" % ident[:2]
        ev = exp[d["user_id"]][ident][0]
        assert d["unit"] == ev["unit"]
        assert e2elib.ts_us(d["end_time"]) == ev["end_us"]
        assert any(_close(d["value"], g["value"]) for g in exp[d["user_id"]][ident])
        assert d["raw_event_id"]
        assert d["deleted"] is deleted[d["event_id"]]


def test_same_body_twice_yields_same_event_ids(run, rows, tails):
    tail = tails[e2elib.TOPIC_NORMALIZED]
    tail.drain()
    by_raw = collections.defaultdict(set)
    for rec in _normalized_for(tail, run.user_ids(e2elib.DATA_VENDORS)):
        by_raw[rec["datum"]["raw_event_id"]].add(rec["datum"]["event_id"])
    assert by_raw
    sets = collections.Counter(frozenset(s) for s in by_raw.values())
    once = [s for s, n in sets.items() if n < 2]
    assert not once, "%d raw webhooks whose event ids no second post reproduced" % len(once)


# ------------------------------------------------------------------ Kafka: fetch jobs

def _golden_fetches(run):
    """The fetch jobs the golden files promise for what this run posted, with the run's vendor
    user ids: {(vendor, vendor_user_id, resource, event_type, object_id, start_us): golden line}
    (the start tells apart the per-interval jobs of one Google Health DELETE)."""
    want = {}
    for n in run.notifications:
        vendor = n["vendor"]
        old = str(e2elib.FIXTURE_USERS[vendor])
        new = str(run.ids[vendor]["vendor_user_id"])
        for f in n["fixture"].fetches:
            vid = new if f["vendor_user_id"] == old else f["vendor_user_id"]
            want[(vendor, vid, f["resource"], f["event_type"], f["object_id"], f["start_us"])] = f
    return want


def test_notifications_become_fetch_jobs(run, tails):
    bad = ["%r -> %d" % (p["fixture"], p["status"]) for p in run.posts
           if not 200 <= p["status"] < 300]
    assert not bad, "webhooks not accepted: " + "; ".join(bad)
    want = _golden_fetches(run)
    vendors_with_jobs = {w[0] for w in want}
    assert set(e2elib.NOTIFY_VENDORS) <= vendors_with_jobs, \
        "no golden fetch job for: %s" % (set(e2elib.NOTIFY_VENDORS) - vendors_with_jobs)
    tail = tails[e2elib.TOPIC_FETCH]

    def jobs(records):
        out = {}
        for rec in records:
            d = rec["datum"]
            if rec["stem"] == "fetch_job.v1" and d is not None:
                start = None if d["start_time"] is None else e2elib.ts_us(d["start_time"])
                out.setdefault((d["vendor"], d["vendor_user_id"], d["resource"],
                                d["event_type"], d["object_id"], start), rec)
        return out

    tail.wait_for(lambda records: set(want) <= set(jobs(records)), PIPELINE_DEADLINE_S)
    have = jobs(tail.records)
    missing = sorted(set(want) - set(have), key=str)
    assert not missing, "fetch jobs missing for: %s" % ", ".join(
        "%s/%s/%s" % (m[0], m[2], m[3]) for m in missing)
    ours = {str(run.ids[v]["vendor_user_id"]) for v in signing.VENDORS}
    unexpected = sorted((k for k in have if k[1] in ours and k not in want), key=str)
    assert not unexpected, "unexpected fetch jobs: %s" % ", ".join(
        "%s/%s" % (k[0], k[2]) for k in unexpected)
    for key, golden in want.items():
        rec = have[key]
        d = rec["datum"]
        assert rec["key"].decode() == "%s:%s" % (key[0], key[1])
        assert d["url"] == golden["url"], key
        start = None if d["start_time"] is None else e2elib.ts_us(d["start_time"])
        end = None if d["end_time"] is None else e2elib.ts_us(d["end_time"])
        assert (start, end) == (golden["start_us"], golden["end_us"]), key
        assert d["user_id"] in (None, run.ids[key[0]]["user_id"])
        assert d["raw_event_id"] and d["job_id"]


def test_lifecycle_notices_revoke_the_connection(run, env_values):
    assert run.lifecycle, "no lifecycle_* fixtures"
    pairs = e2elib.sql_list("%s|%s" % lc for lc in run.lifecycle)
    sql = ("SELECT vendor || '|' || vendor_user_id, status FROM connections "
           "WHERE vendor || '|' || vendor_user_id IN (%s)" % pairs)
    end = time.monotonic() + PIPELINE_DEADLINE_S
    while True:
        status = dict(e2elib.psql(sql, env_values))
        if all(status.get("%s|%s" % lc) == "revoked" for lc in run.lifecycle):
            break
        if time.monotonic() > end:
            not_revoked = sorted(lc[0] for lc in run.lifecycle
                                 if status.get("%s|%s" % lc) != "revoked")
            pytest.fail("connections not revoked by the lifecycle webhook: "
                        + ", ".join(not_revoked))
        time.sleep(0.5)


# ------------------------------------------------------------------ Kafka: dead letters

def _dlq_wait(tails, schemas, body, timeout):
    tail = tails[e2elib.TOPIC_DLQ]

    def find(records):
        for rec in records:
            if rec["stem"] != "dead_letter.v1":
                continue
            try:
                _, raw = schemas.decode(rec["datum"]["value"], expect="raw_webhook.v1")
            except ValueError:
                continue
            if raw["body"] == body:
                return rec
        return None

    return tail.wait_for(find, timeout)


def test_malformed_json_is_accepted_then_dead_lettered(run, tails, schemas):
    assert 200 <= run.malformed["status"] < 300, run.malformed["status"]
    rec = _dlq_wait(tails, schemas, run.malformed["body"], PIPELINE_DEADLINE_S)
    assert rec is not None, "no DeadLetter for the malformed body on " + e2elib.TOPIC_DLQ
    assert rec["datum"]["reason"] == "malformed_json"
    assert rec["datum"]["source_topic"] == e2elib.TOPIC_RAW


def test_unregistered_vendor_user_is_dead_lettered(run, tails, schemas):
    assert 200 <= run.unknown["status"] < 300, run.unknown["status"]
    rec = _dlq_wait(tails, schemas, run.unknown["body"], PIPELINE_DEADLINE_S)
    assert rec is not None, "no DeadLetter for the unregistered user on " + e2elib.TOPIC_DLQ
    assert rec["datum"]["reason"] == "unknown_connection"


# ------------------------------------------------------------------ handshakes

def _get(http, path, **kw):
    return http.get(e2elib.GATEWAY_URL + path, timeout=10, **kw)


def test_oura_verification_challenge(stack, http, env_values):
    tok = env_values["OURA_VERIFICATION_TOKEN"]
    r = _get(http, "/webhooks/oura", params={"verification_token": tok, "challenge": "c-123"})
    assert r.status_code == 200
    assert r.json() == {"challenge": "c-123"}
    r = _get(http, "/webhooks/oura", params={"verification_token": tok + "x", "challenge": "c"})
    assert r.status_code in (401, 403)


def test_fitbit_verify(stack, http, env_values):
    r = _get(http, "/webhooks/fitbit", params={"verify": env_values["FITBIT_VERIFY_CODE"]})
    assert r.status_code == 204
    r = _get(http, "/webhooks/fitbit", params={"verify": "not-the-code"})
    assert r.status_code == 404


def test_strava_hub_challenge(stack, http, env_values):
    path = signing.vendor_path("strava", env_values)
    r = _get(http, path, params={"hub.mode": "subscribe", "hub.challenge": "h-42",
                                 "hub.verify_token": env_values["STRAVA_VERIFY_TOKEN"]})
    assert r.status_code == 200
    assert r.json() == {"hub.challenge": "h-42"}
    r = _get(http, path, params={"hub.mode": "subscribe", "hub.challenge": "h",
                                 "hub.verify_token": "wrong"})
    assert r.status_code in (401, 403)


def test_withings_head(stack, http, env_values):
    r = http.head(e2elib.GATEWAY_URL + signing.vendor_path("withings", env_values), timeout=10)
    assert 200 <= r.status_code < 300
    r = http.head(e2elib.GATEWAY_URL + "/webhooks/withings/not-the-token", timeout=10)
    assert r.status_code == 404


def test_polar_ping(stack, http, env_values):
    body = b'{"event":"PING","timestamp":"2018-05-15T14:22:24Z"}'
    r = e2elib.post(http, "polar", body, env_values)
    assert r.status_code == 200


def test_google_health_verification(stack, http, env_values):
    body = b'{"type": "verification"}'
    r = e2elib.post(http, "google_health", body, env_values)
    assert r.status_code == 201
    r = http.post(e2elib.GATEWAY_URL + "/webhooks/google_health", data=body,
                  headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code in (401, 403)


# ------------------------------------------------------------------ bad input

def _sample_body(vendor):
    fx = e2elib.load_fixtures(vendor)
    assert fx, "no fixture for " + vendor
    return fx[0].body


def test_unknown_vendor_404(stack, http):
    r = http.post(e2elib.GATEWAY_URL + "/webhooks/acme", data=b"{}",
                  headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 404
    r = http.post(e2elib.GATEWAY_URL + "/nowhere", data=b"{}",
                  headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 404


@pytest.mark.parametrize("vendor", signing.SIGNED_VENDORS)
def test_tampered_body_401(stack, http, env_values, vendor):
    body = _sample_body(vendor)
    path, headers, signed = signing.sign(vendor, body, env=env_values)
    tampered = signed.replace(b"1", b"2", 1) if b"1" in signed else signed + b" "
    assert tampered != signed
    r = http.post(e2elib.GATEWAY_URL + path, data=tampered, headers=headers, timeout=10)
    assert r.status_code == 401
    assert tampered not in r.content


@pytest.mark.parametrize("vendor", signing.SIGNED_VENDORS)
def test_missing_signature_401(stack, http, env_values, vendor):
    body = _sample_body(vendor)
    r = http.post(e2elib.GATEWAY_URL + "/webhooks/" + vendor, data=body,
                  headers={"Content-Type": signing.default_content_type(vendor, body)},
                  timeout=10)
    assert r.status_code == 401


def test_google_health_wrong_authorization_401(stack, http, env_values):
    r = e2elib.post(http, "google_health", _sample_body("google_health"), env_values,
                    secret="Bearer not-the-secret")
    assert r.status_code in (401, 403)


@pytest.mark.parametrize("vendor", signing.PATH_TOKEN_VENDORS)
def test_wrong_path_token_404(stack, http, env_values, vendor):
    body = _sample_body(vendor)
    _, headers, _ = signing.sign(vendor, body, env=env_values)
    r = http.post(e2elib.GATEWAY_URL + "/webhooks/%s/not-the-token" % vendor, data=body,
                  headers=headers, timeout=10)
    assert r.status_code == 404


@pytest.mark.parametrize("vendor", signing.TIMESTAMPED_VENDORS)
def test_stale_timestamp_401(stack, http, env_values, vendor):
    tolerance = int(env_values.get("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", "300"))
    r = e2elib.post(http, vendor, _sample_body(vendor), env_values,
                    now=time.time() - tolerance - 120)
    assert r.status_code == 401


def test_oversized_body_413(stack, env_values):
    # Above MAX_BODY_BYTES' ceiling (16 MiB); the gateway may answer before reading it all.
    path, headers, _ = signing.sign("garmin", b"{}", env=env_values)
    status = e2elib.raw_http("POST", path, headers, 17 * 1024 * 1024)
    assert status == 413


def test_wrong_content_type_415(stack, http, env_values):
    body = _sample_body("terra")
    r = e2elib.post(http, "terra", body, env_values, content_type="text/plain")
    assert r.status_code == 415
    r = e2elib.post(http, "garmin", _sample_body("garmin"), env_values,
                    content_type="application/xml")
    assert r.status_code == 415


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_wrong_method_405(stack, http, method):
    r = http.request(method, e2elib.GATEWAY_URL + "/webhooks/whoop", data=b"{}",
                     headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 405


# ------------------------------------------------------------------ operations

def _metric_families(text):
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP"):
                names.add(parts[2])
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        names.add(name)
    return names


@pytest.mark.parametrize("name,base", e2elib.BINARIES)
def test_ops_endpoints_and_metric_names(stack, http, name, base):
    assert http.get(base + "/healthz", timeout=5).status_code == 200
    assert http.get(base + "/readyz", timeout=5).status_code == 200
    r = http.get(base + "/metrics", timeout=5)
    assert r.status_code == 200
    names = _metric_families(r.text)
    assert names, "%s /metrics is empty" % name
    bad = sorted(n for n in names if not n.startswith("auren_"))
    assert not bad, "%s exposes metric names without the auren_ prefix: %s" % (name, bad[:5])
