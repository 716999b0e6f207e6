#!/usr/bin/python3
"""Writes the seed inputs of every fuzz target into OUT/<target>/ (default build-fuzz/seeds):
the request bodies of tests/fixtures, signed and unsigned header blocks per vendor, routes and
handshakes, configuration lines, Avro single-object values built from the schemas/ files, and
spool segment files (intact, torn, corrupt) in the format of gateway/gw_spool.h.
tests/fuzz/run.sh merges them (libFuzzer -merge=1) into tests/fuzz/corpus/<target>/.
Usage: make_seeds.py [OUT]"""
import datetime
import io
import os
import struct
import sys
import zlib

import avro.io
import avro.schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from avro_codec import fingerprint  # noqa: E402  (the project's own PCF + CRC-64-AVRO)

NORM_VENDORS = ["garmin", "terra", "app", "whoop", "oura", "polar", "fitbit", "google_health",
                "withings", "strava"]
VERIFY_VENDORS = ["whoop", "oura", "polar", "fitbit", "terra", "app", "google_health", "garmin",
                  "path_only"]


def fixtures(vendor):
    d = os.path.join(ROOT, "tests", "fixtures", vendor)
    if not os.path.isdir(d):
        return []
    out = []
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".expected") or fn.endswith(".md"):
            continue
        with open(os.path.join(d, fn), "rb") as fh:
            out.append((fn, fh.read()))
    return out


def all_bodies():
    bodies = []
    for v in NORM_VENDORS:
        bodies.extend(b for _, b in fixtures(v))
    return bodies


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as fh:
        fh.write(data)


def norm_seeds(out):
    for v in NORM_VENDORS:
        for fn, body in fixtures(v):
            write(out, "norm_" + v, fn, body)
        if v == "garmin":
            write(out, "norm_garmin", "api_dailies",
                  b"#api:garmin.dailies\n" + b'[{"summaryId":"s1","userId":"u1",'
                  b'"calendarDate":"2026-11-20","startTimeInSeconds":1795132800,'
                  b'"durationInSeconds":86400,"steps":1200}]')
        if v == "terra":
            for fn, body in fixtures(v):
                write(out, "norm_terra", "api_" + fn, b"#api:terra.daily\n" + body)
        if v == "google_health":  # API answers as what they are: api_<resource>.json
            for fn, body in fixtures(v):
                if fn.startswith("api_") and fn.endswith(".json"):
                    rt = "google_health." + fn[len("api_"):-len(".json")]
                    write(out, "norm_google_health", "rec_" + fn,
                          b"#api:" + rt.encode() + b"\n" + body)


def verify_seeds(out):
    bodies = [b for _, b in fixtures("whoop")] + all_bodies()[:3]
    for i, v in enumerate(VERIFY_VENDORS):
        for j, body in enumerate(bodies[:3]):
            for mode in (0, 1, 2):
                head = {
                    "whoop": b"X-WHOOP-Signature: AAAA\n"
                             b"X-WHOOP-Signature-Timestamp: 1790000000000\n",
                    "oura": b"x-oura-signature: 00ff\nx-oura-timestamp: 1790000000\n",
                    "polar": b"Polar-Webhook-Signature: 00ff\n",
                    "fitbit": b"X-Fitbit-Signature: AAAA\n",
                    "terra": b"terra-signature: t=1790000000,v1=00ff,v0=11\n",
                    "app": b"webhook-id: msg_1\nwebhook-timestamp: 1790000000\n"
                           b"webhook-signature: v1,AAAA v1a,BBBB\n",
                    "google_health": b"Authorization: Bearer x\n",
                    "garmin": b"garmin-client-id: x\n",
                    "path_only": b"",
                }[v]
                write(out, "verify", "%s_%d_%d" % (v, j, mode),
                      bytes([i, mode, 7, 0]) + head + b"\n" + body)


def route_seeds(out):
    reqs = [
        b"POST\n/webhooks/whoop\nContent-Type: application/json\nContent-Length: 2\n\n{}",
        b"POST\n/webhooks/garmin/garmin-token-0123\nContent-Type: application/json; charset=utf-8"
        b"\n\n{}",
        b"POST\n/webhooks/withings/withings-token-0123\nContent-Type: "
        b"application/x-www-form-urlencoded\n\nuserid=1&appli=1",
        b"GET\n/webhooks/oura?verification_token=oura-vt&challenge=abc\n\n",
        b"GET\n/webhooks/strava/strava-token-0123?hub.mode=subscribe&hub.verify_token=strava-vt"
        b"&hub.challenge=xyz\n\n",
        b"GET\n/webhooks/fitbit?verify=fitbit-code\n\n",
        b"HEAD\n/webhooks/withings/withings-token-0123\n\n",
        b"PUT\n/webhooks/polar\n\n",
        b"POST\n/webhooks/polar\nContent-Type: application/json\n\n{\"event\":\"PING\"}",
        b"POST\n/webhooks/google_health\nContent-Type: application/json\n\n"
        b"{\"type\":\"verification\"}",
        b"POST\n/webhooks/app\n\n{}",
        b"GET\n/healthz\n\n",
        b"POST\n/webhooks/terra/extra\nContent-Length: 99999999\n\n",
    ]
    for i, r in enumerate(reqs):
        write(out, "route", "req_%02d" % i, r)


def cfg_seeds(out):
    with open(os.path.join(ROOT, "config", "local.env"), "rb") as fh:
        env = b"".join(l for l in fh if not l.startswith(b"#"))
    write(out, "cfg", "local_env", env)
    write(out, "cfg", "limits", b"HTTP_PORT=0\nMAX_BODY_BYTES=64k\nHTTP_MAX_CONNECTIONS=100\n"
          b"HTTP_CONNECTION_TIMEOUT_SECONDS=5\nHTTP_MAX_HEADER_BYTES=1m\n")
    write(out, "cfg", "bad_app", b"WEBHOOK_SECRET_APP=whsec_%%%\n")
    write(out, "cfg", "bad_int", b"MAX_CONCURRENT_WEBHOOKS=12x\nDELIVERY_TIMEOUT_MS=-1\n")


def single_object(schema_file, datum):
    with open(os.path.join(ROOT, "schemas", schema_file), encoding="utf-8") as fh:
        text = fh.read()
    schema = avro.schema.parse(text)
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return b"\xc3\x01" + struct.pack("<Q", fingerprint(text)) + buf.getvalue()


def avro_seeds(out):
    t = datetime.datetime.fromtimestamp(1790000000, tz=datetime.timezone.utc)
    for i, body in enumerate(all_bodies()[:6]):
        write(out, "avro_raw_webhook", "raw_%d" % i, single_object("raw_webhook.v1.avsc", {
            "event_id": "0" * 32, "vendor": "garmin", "kind": "webhook" if i % 2 else "api_record",
            "received_at": t, "method": "POST", "path": "/webhooks/garmin",
            "query": None if i % 2 else "a=b", "content_type": "application/json",
            "headers": [{"name": "user-agent", "value": "x"}] * (i % 3), "body": body,
            "vendor_user_id": None if i % 2 else "u1", "record_type": None if i % 2 else
            "garmin.dailies"}))
    for i in range(3):
        write(out, "avro_biometric_event", "ev_%d" % i, single_object("biometric_event.v1.avsc", {
            "event_id": "1" * 32, "user_id": "user-1", "vendor": "oura", "metric": "heart_rate",
            "value": 61.5 + i, "unit": "/min", "loinc": None if i else "8867-4",
            "start_time": t, "end_time": t + datetime.timedelta(microseconds=i),
            "utc_offset_seconds": None if i else 3600,
            "source_record_id": "r1", "raw_event_id": "2" * 32, "ingested_at": t,
            "received_at": t, "deleted": bool(i % 2)}))
        write(out, "avro_fetch_job", "job_%d" % i, single_object("fetch_job.v1.avsc", {
            "job_id": "3" * 32, "vendor": "oura", "vendor_user_id": "u1",
            "user_id": None if i else "user-1", "resource": "sleep",
            "event_type": None if i else "update", "object_id": "o1" if i else None,
            "url": None, "start_time": t if i else None, "end_time": None,
            "raw_event_id": "4" * 32, "attempt": i, "not_before": t, "created_at": t}))
        write(out, "avro_dead_letter", "dlq_%d" % i, single_object("dead_letter.v1.avsc", {
            "stage": "processor", "reason": "malformed_json", "detail": "missing_field: x",
            "source_topic": "biometric.raw.v1", "source_partition": i, "source_offset": 42,
            "key": None if i else b"k", "value": b"\xc3\x01" + bytes(20), "failed_at": t,
            "attempts": 1}))


def spool_record(key, value):
    """One record as gw_spool_encode writes it: "ASP1" | u32 length | u32 CRC-32 (of the length
    field and the payload) | payload = u16 key length, key, value."""
    payload = struct.pack("<H", len(key)) + key + value
    length = struct.pack("<I", len(payload))
    return b"ASP1" + length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def spool_seeds(out):
    t = datetime.datetime.fromtimestamp(1790000000, tz=datetime.timezone.utc)
    raw = single_object("raw_webhook.v1.avsc", {
        "event_id": "0" * 32, "vendor": "oura", "kind": "webhook", "received_at": t,
        "method": "POST", "path": "/webhooks/oura", "query": None,
        "content_type": "application/json", "headers": [], "body": b"{}",
        "vendor_user_id": None, "record_type": None})
    values = [raw] + all_bodies()[:3] + [b""]
    recs = [spool_record(b"oura:%d" % i, v) for i, v in enumerate(values)]
    seg = b"".join(recs)
    write(out, "spool", "empty", b"")
    write(out, "spool", "one", recs[0])
    write(out, "spool", "segment", seg)
    write(out, "spool", "empty_key", spool_record(b"", b"v") + spool_record(b"k", b""))
    for cut in (1, 11, 12, 13, len(recs[-2]) // 2, len(recs[-2]) - 1):
        write(out, "spool", "torn_%d" % cut, seg[:len(seg) - len(recs[-1]) - cut])
    write(out, "spool", "garbage_tail", seg + b"\x00" * 7 + b"ASP1")
    bad_crc = bytearray(seg)
    bad_crc[len(recs[0]) + 8] ^= 0x01
    write(out, "spool", "bad_crc", bytes(bad_crc))
    bad_key = bytearray(spool_record(b"k", b"value"))
    bad_key[12] = 0xFF
    write(out, "spool", "key_past_payload", recs[0] + bytes(bad_key))
    huge = bytearray(recs[0])
    huge[4:8] = struct.pack("<I", 0xFFFFFFFF)
    write(out, "spool", "huge_length", bytes(huge))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-fuzz", "seeds")
    norm_seeds(out)
    verify_seeds(out)
    route_seeds(out)
    cfg_seeds(out)
    avro_seeds(out)
    spool_seeds(out)


if __name__ == "__main__":
    main()
