"""Shared plumbing for the end-to-end tests and the `make run` demo: the stack's addresses,
HTTP posting, fixtures and their golden files, per-run identity rewriting, connection
registration through auren-admin, PostgreSQL (psql), Redis (a minimal RESP client) and Kafka
topic tails that decode Avro single-object values.

Black box: everything here talks to the running stack only through its public contract
(HTTP routes, Kafka topics, tables, Redis keys, the admin command).
"""

import datetime
import glob
import json
import os
import re
import select
import socket
import subprocess
import time
import urllib.parse
import uuid

import signing
from avro_codec import SchemaSet

REPO_ROOT = signing.REPO_ROOT
FIXTURE_DIR = os.path.join(REPO_ROOT, "tests", "fixtures")
SCHEMA_DIR = os.path.join(REPO_ROOT, "schemas")

GATEWAY_URL = os.environ.get("AUREN_GATEWAY_URL", "http://127.0.0.1:8080")
PROCESSOR_OPS_URL = os.environ.get("AUREN_PROCESSOR_OPS_URL", "http://127.0.0.1:9101")
PERSISTER_OPS_URL = os.environ.get("AUREN_PERSISTER_OPS_URL", "http://127.0.0.1:9102")
BINARIES = (("gateway", GATEWAY_URL), ("processor", PROCESSOR_OPS_URL),
            ("persister", PERSISTER_OPS_URL))

# Upper bound for the pipeline to deliver what a run posted (webhook -> row / key / record).
PIPELINE_DEADLINE_S = float(os.environ.get("AUREN_E2E_DEADLINE", "60"))

TOPIC_RAW = "biometric.raw.v1"
TOPIC_NORMALIZED = "biometric.normalized.v1"
TOPIC_FETCH = "biometric.fetch.v1"
TOPIC_DLQ = "biometric.dlq.v1"

DATA_VENDORS = ("garmin", "terra", "app")
NOTIFY_VENDORS = ("whoop", "oura", "polar", "fitbit", "google_health", "withings", "strava")

# The vendor user id each vendor's bundled fixtures use, and whether the payload carries it as
# a JSON string or a number.
FIXTURE_USERS = {
    "garmin": "garmin-user-1",
    "terra": "terra-user-1",
    "app": "app-user-1",
    "whoop": 10001,
    "oura": "oura-user-1",
    "polar": 20001,
    "fitbit": "FITBIT1",
    "google_health": "gh-user-1",
    "withings": 30001,
    "strava": 40001,
}
# JSON keys / form fields under which a numeric vendor user id appears.
_NUMERIC_ID_KEYS = ("user_id", "userId", "userid", "owner_id", "ownerId")


def env():
    return signing.load_env()


# ---------------------------------------------------------------- HTTP

def http_get_status(url, timeout=2.0):
    import requests
    try:
        return requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return None


def wait_ready(deadline_s=30.0):
    """Poll /readyz of the three binaries; returns {name: last status or None}."""
    end = time.monotonic() + deadline_s
    while True:
        status = {name: http_get_status(base + "/readyz") for name, base in BINARIES}
        if all(s == 200 for s in status.values()) or time.monotonic() > end:
            return status
        time.sleep(0.5)


def post(session, vendor, body, env_values, now=None, content_type=None, secret=None,
         path=None, extra_headers=None):
    """Sign and POST `body` as `vendor`; returns the requests Response."""
    p, headers, data = signing.sign(vendor, body, env=env_values, now=now,
                                    content_type=content_type, secret=secret)
    if extra_headers:
        headers.update(extra_headers)
    return session.post(GATEWAY_URL + (path or p), data=data, headers=headers, timeout=15)


def raw_http(method, path, headers, body_len, chunk=b"x" * 65536, timeout=15.0):
    """Send a request with a declared body of `body_len` bytes, streaming it while watching for
    an early answer (a server may reply 413 before reading the whole body). Returns the
    status code, or raises OSError when the server answers nothing."""
    u = urllib.parse.urlsplit(GATEWAY_URL)
    sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
    try:
        head = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % u.netloc,
                "Content-Length: %d" % body_len, "Connection: close"]
        head += ["%s: %s" % kv for kv in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        end = time.monotonic() + timeout
        while sent < body_len and time.monotonic() < end:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            piece = chunk[: min(len(chunk), body_len - sent)]
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
        status = read_status(sock, end)
        if status is None:
            raise OSError("no HTTP answer")
        return status
    finally:
        sock.close()


def read_status(sock, end):
    """Read until the status line of an HTTP answer has arrived (or the peer closes, or the
    monotonic deadline `end` passes); returns the status code, or None without an answer."""
    data = b""
    while b"\r\n" not in data and time.monotonic() < end:
        try:
            got = sock.recv(4096)
        except OSError:
            break
        if not got:
            break
        data += got
    if not data.startswith(b"HTTP/"):
        return None
    return int(data.split(b" ", 2)[1])


# ---------------------------------------------------------------- fixtures

def parse_iso_us(text):
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


class Fixture:
    """One bundled webhook body and, when present, its golden file `<file>.expected`:
    events (metric|unit|start|end|value|source_record_id|event_id), fetch jobs
    (fetch|vendor_user_id|resource|event_type|object_id|url|start|end), lifecycle notices
    (lifecycle|vendor_user_id|action) and handshakes (handshake)."""

    def __init__(self, vendor, path):
        self.vendor = vendor
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        with open(path, "rb") as fh:
            self.body = fh.read()
        self.has_golden = False
        self.expected = []
        self.fetches = []
        self.lifecycle = []
        self.handshake = False
        for cand in (path + ".expected",
                     os.path.join(os.path.dirname(path), self.name + ".expected")):
            if os.path.exists(cand):
                self.has_golden = True
                self.expected, self.fetches, self.lifecycle, self.handshake = \
                    parse_expected(cand)
                break

    def is_json(self):
        try:
            json.loads(self.body)
            return True
        except ValueError:
            return False

    def __repr__(self):
        return "%s/%s" % (self.vendor, os.path.basename(self.path))


def _opt_time(text):
    return parse_iso_us(text) if text else None


def parse_expected(path):
    """Returns (events, fetches, lifecycle, handshake) from a golden file."""
    events, fetches, lifecycle, handshake = [], [], [], False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("|")
            if parts[0] == "handshake" and len(parts) == 1:
                handshake = True
            elif parts[0] == "lifecycle" and len(parts) == 3:
                lifecycle.append({"vendor_user_id": parts[1], "action": parts[2]})
            elif parts[0] == "fetch" and len(parts) == 8:
                fetches.append({"vendor_user_id": parts[1], "resource": parts[2],
                                "event_type": parts[3] or None, "object_id": parts[4] or None,
                                "url": parts[5] or None, "start_us": _opt_time(parts[6]),
                                "end_us": _opt_time(parts[7])})
            elif len(parts) == 7:
                metric, unit, start, end, value, srid, eid = parts
                events.append({"metric": metric, "unit": unit, "start_us": parse_iso_us(start),
                               "end_us": parse_iso_us(end), "value": float(value),
                               "source_record_id": srid, "event_id": eid})
            else:
                raise ValueError("%s: unrecognised golden line" % path)
    return events, fetches, lifecycle, handshake


def load_fixtures(vendor):
    """The vendor's bundled webhook bodies (tests/fixtures/<vendor>/*.json plus, for Withings,
    form bodies), sorted by name."""
    out = []
    for path in sorted(glob.glob(os.path.join(FIXTURE_DIR, vendor, "*"))):
        base = os.path.basename(path)
        if base.endswith(".expected") or base.lower().startswith("readme") or base.startswith("."):
            continue
        if base.startswith("api_"):
            continue  # vendor API responses (served by tests/fakevendor), not webhooks
        if not os.path.isfile(path):
            continue
        if not (base.endswith(".json") or base.endswith(".form") or base.endswith(".txt")):
            continue
        out.append(Fixture(vendor, path))
    return out


def rewrite_user(body, vendor, new_vid):
    """Replace the fixture's vendor user id with `new_vid` in a raw body, byte for byte
    otherwise (the signature covers the exact bytes we send)."""
    old = FIXTURE_USERS[vendor]
    text = body.decode("utf-8")
    if isinstance(old, str):
        text = text.replace(json.dumps(old), json.dumps(str(new_vid)))
        # Form bodies and ids embedded in URLs (e.g. Polar's fetch url) carry it unquoted.
        text = re.sub(r"(?<![A-Za-z0-9_-])%s(?![A-Za-z0-9_-])" % re.escape(old), str(new_vid),
                      text)
    else:
        keys = "|".join(re.escape(k) for k in _NUMERIC_ID_KEYS)
        text = re.sub(r'("(?:%s)"\s*:\s*"?)%d(?!\d)' % (keys, old),
                      lambda m: m.group(1) + str(new_vid), text)
        text = re.sub(r"((?:^|&)(?:%s)=)%d(?!\d)" % (keys, old),
                      lambda m: m.group(1) + str(new_vid), text)
    return text.encode("utf-8")


def run_identities(suffix, rnd):
    """Per-run vendor user ids and internal user ids for every vendor: the main identity, and a
    second one ("lc") that the lifecycle fixtures (deregistration, deauthorization) revoke."""
    ids = {}
    for vendor in signing.VENDORS:
        old = FIXTURE_USERS[vendor]
        user = "e2e-%s-%s" % (suffix, vendor.replace("_", "-"))
        if isinstance(old, str):
            vid, lc_vid = "%s-%s" % (old, suffix), "%s-%s-lc" % (old, suffix)
        else:
            vid = rnd.randrange(100000000, 2000000000)
            lc_vid = vid + 1
        ids[vendor] = {"vendor_user_id": vid, "user_id": user,
                       "lc_vendor_user_id": lc_vid, "lc_user_id": user + "-lc"}
    return ids


def is_lifecycle(fixture):
    """Fixtures that end the vendor user's connection (named lifecycle_*, or golden
    lifecycle lines)."""
    return fixture.name.startswith("lifecycle_") or bool(fixture.lifecycle)


def new_suffix():
    return uuid.uuid4().hex[:10]


# ---------------------------------------------------------------- admin

def build_binary(name):
    """auren-NAME in $BUILD_DIR (default build/), at its root or in NAME/."""
    build = os.environ.get("BUILD_DIR", "build")
    if not os.path.isabs(build):
        build = os.path.join(REPO_ROOT, build)
    exe = "auren-" + name
    for cand in (os.path.join(build, exe), os.path.join(build, name, exe)):
        if os.access(cand, os.X_OK):
            return cand
    return os.path.join(build, exe)


def admin_binary():
    """AUREN_ADMIN, else auren-admin in $BUILD_DIR (see build_binary)."""
    if os.environ.get("AUREN_ADMIN"):
        return os.environ["AUREN_ADMIN"]
    return build_binary("admin")


def admin_add_connection(vendor, vendor_user_id, user_id, env_values):
    """Register (vendor, vendor_user_id) -> user_id. Raises RuntimeError on failure."""
    cmd = [admin_binary(), "connections", "add", "--vendor", vendor,
           "--vendor-user-id", str(vendor_user_id), "--user-id", user_id]
    child_env = dict(os.environ)
    child_env.update(env_values)
    res = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError("auren-admin connections add --vendor %s failed (exit %d): %s"
                           % (vendor, res.returncode, res.stderr.strip()[-300:]))


# ---------------------------------------------------------------- PostgreSQL

def psql(sql, env_values):
    """Run one query with psql; returns rows as lists of strings (tab separated, NULL = '').
    Callers quote literals with sql_list()."""
    cmd = ["psql", env_values["DATABASE_URL"], "-X", "-q", "-A", "-t", "-F", "\t",
           "-v", "ON_ERROR_STOP=1", "-c", sql]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError("psql failed: " + res.stderr.strip()[-300:])
    return [line.split("\t") for line in res.stdout.splitlines() if line]


def sql_list(values):
    return ",".join("'" + str(v).replace("'", "''") + "'" for v in values)


def fetch_rows(user_ids, env_values):
    """biometric_events rows of these users as dicts."""
    if not user_ids:
        return []
    sql = ("SELECT event_id, user_id, vendor, metric, unit, value::text, "
           "(extract(epoch FROM start_time) * 1000000)::bigint, "
           "(extract(epoch FROM end_time) * 1000000)::bigint, deleted "
           "FROM biometric_events WHERE user_id IN (%s)" % sql_list(user_ids))
    rows = []
    for r in psql(sql, env_values):
        rows.append({"event_id": r[0], "user_id": r[1], "vendor": r[2], "metric": r[3],
                     "unit": r[4], "value": float(r[5]), "start_us": int(r[6]),
                     "end_us": int(r[7]), "deleted": r[8] == "t"})
    return rows


# ---------------------------------------------------------------- Redis

class Redis:
    """Just enough RESP2 for the checks: one connection, one command at a time."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379),
                                             timeout=10)
        self.buf = b""
        if u.password:
            self.cmd("AUTH", *([u.username, u.password] if u.username else [u.password]))
        db = (u.path or "/0").lstrip("/") or "0"
        self.cmd("SELECT", db)

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            got = self.sock.recv(65536)
            if not got:
                raise OSError("redis closed the connection")
            self.buf += got
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            got = self.sock.recv(65536)
            if not got:
                raise OSError("redis closed the connection")
            self.buf += got
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis error: " + rest.decode()[:80])
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("unexpected redis reply")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def scan_keys(self, pattern):
        cursor, keys = b"0", []
        while True:
            cursor, batch = self.cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys.extend(k.decode() for k in batch)
            if cursor in (b"0", "0"):
                return sorted(set(keys))


# ---------------------------------------------------------------- Kafka

class TopicTail:
    """Reads a topic from the offsets it had when created (so a test sees only what it
    caused), with a fresh consumer group, and keeps every record it has read."""

    def __init__(self, brokers, topic, schemas):
        from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
        self.topic = topic
        self.schemas = schemas
        self.records = []
        self.consumer = Consumer({
            "bootstrap.servers": brokers,
            "group.id": "auren-e2e-" + uuid.uuid4().hex,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "log_level": 3,
        })
        md = self.consumer.list_topics(topic, timeout=10)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            # Not created yet: everything it will ever hold is new.
            self.consumer.subscribe([topic])
            return
        assignment = []
        for p in sorted(tmd.partitions):
            tp = TopicPartition(topic, p)
            _, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            assignment.append(TopicPartition(topic, p, high if high >= 0 else OFFSET_BEGINNING))
        self.consumer.assign(assignment)

    def close(self):
        self.consumer.close()

    def drain(self, max_seconds=1.0):
        """Read what is available now (up to max_seconds); returns the number of new records."""
        end = time.monotonic() + max_seconds
        n = 0
        while time.monotonic() < end:
            msgs = self.consumer.consume(num_messages=500, timeout=0.2)
            if not msgs:
                break
            for m in msgs:
                if m.error() is not None:
                    continue
                rec = {"key": m.key(), "value": m.value(), "partition": m.partition(),
                       "offset": m.offset(), "stem": None, "datum": None, "error": None}
                try:
                    rec["stem"], rec["datum"] = self.schemas.decode(m.value())
                except Exception as exc:  # kept for the assertion message
                    rec["error"] = str(exc)
                self.records.append(rec)
                n += 1
        return n

    def wait_for(self, predicate, timeout_s):
        """Drain until predicate(records) is true or the timeout passes; returns the last
        predicate result."""
        end = time.monotonic() + timeout_s
        while True:
            self.drain()
            result = predicate(self.records)
            if result or time.monotonic() > end:
                return result
            time.sleep(0.2)


def load_schemas():
    return SchemaSet(SCHEMA_DIR)


def ts_us(value):
    """An Avro timestamp-micros as decoded by python3-avro (datetime) or raw (int) -> int us."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds
    return int(value)
