#!/usr/bin/python3
"""Interoperability of the C record codec with a stock Avro library (Debian python3-avro).

Run by ctest as: /usr/bin/python3 avro_interop.py --dump <avro_dump> --schemas <schemas dir>

1. Fingerprints: the Parsing Canonical Form our C code computes must equal the one python-avro
   computes from the same .avsc, and our fingerprint must equal CRC-64-AVRO computed here from the
   specification (checked first against the specification's published test vectors).
2. C -> Python: every sample record avro_dump encodes must start with C3 01 and the 8-byte
   little-endian fingerprint, and avro.io.DatumReader must decode the datum (consuming it
   exactly) to the field values avro_dump reports from the struct it encoded.
3. Python -> C: datums written by avro.io.DatumWriter, framed as single objects, must decode in C
   to the same values; a frame with an unknown fingerprint must be refused.
4. Schema evolution: for every <name>.v<N>.avsc with N > 1, vN must be able to read v<N-1> data
   and every added field must have a default (the checker is itself exercised on a synthetic v2).
Exits non-zero with a message naming the failed check.
"""

import argparse
import copy
import datetime
import glob
import io
import json
import os
import re
import subprocess
import sys
import tempfile

import avro.compatibility
import avro.io
import avro.schema

# CRC-64-AVRO is shared with the end-to-end suite's codec (checked below against the
# specification's published vectors before anything relies on it).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from avro_codec import crc64_avro  # noqa: E402

TYPES = ("raw_webhook", "biometric_event", "fetch_job", "dead_letter")
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

# Canonical forms and fingerprints (as Java's signed long) published with the Avro specification's
# test data (share/test/data/schema-tests.txt).
SPEC_VECTORS = [
    ('"null"', 7195948357588979594),
    ('"int"', 8247732601305521295),
    ('"string"', -8142146995180207161),
    ('["int","boolean"]', 5392556393470105090),
    ('{"name":"foo","type":"record","fields":[]}', -4824392279771201922),
    ('{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}', -4448647247586288245),
]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def collapse_primitives(node):
    """python-avro 1.11 keeps {"type":"long"} for a primitive that had a logicalType, where the
    specification ([STRIP] then [PRIMITIVES]) and the Java reference give "long"; apply that last
    step to its output so the two forms can be compared."""
    if isinstance(node, list):
        return [collapse_primitives(n) for n in node]
    if isinstance(node, dict):
        if list(node.keys()) == ["type"] and node["type"] in PRIMITIVES:
            return node["type"]
        return {k: collapse_primitives(v) for k, v in node.items()}
    return node


def stock_canonical_form(schema):
    return json.dumps(collapse_primitives(schema.to_canonical_json()), separators=(",", ":"))


def load_schemas(schema_dir):
    schemas = {}
    for t in TYPES:
        with open(os.path.join(schema_dir, t + ".v1.avsc"), encoding="utf-8") as f:
            schemas[t] = avro.schema.parse(f.read())
    return schemas


# ---- 1. fingerprints ----

def check_fingerprints(schemas, out_dir):
    for pcf, fp in SPEC_VECTORS:
        check(signed64(crc64_avro(pcf.encode())) == fp, "CRC-64-AVRO spec vector " + pcf)
    fps = {}
    for t, schema in schemas.items():
        with open(os.path.join(out_dir, t + ".pcf"), encoding="utf-8") as f:
            ours = f.read()
        with open(os.path.join(out_dir, t + ".fp"), encoding="ascii") as f:
            our_fp = int(f.read(), 16)
        stock = stock_canonical_form(schema)
        check(ours == stock, "canonical form of %s differs from python-avro's:\n C: %s\n py: %s"
              % (t, ours, stock))
        check(our_fp == crc64_avro(stock.encode("utf-8")), "fingerprint of " + t)
        fps[t] = our_fp
        print("ok fingerprint %-16s %016x (%d)" % (t, our_fp, signed64(our_fp)))
    return fps


# ---- value normalisation for comparison ----

def to_plain(value):
    """Decoded python-avro datum -> the JSON shape avro_dump prints."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def from_micros(us):
    return EPOCH + datetime.timedelta(microseconds=us)


# ---- 2. C -> Python ----

def check_c_to_python(schemas, fps, out_dir):
    count = 0
    for path in sorted(glob.glob(os.path.join(out_dir, "*.bin"))):
        name = os.path.basename(path)[:-4]
        t = name.split(".")[0]
        with open(path, "rb") as f:
            data = f.read()
        with open(path[:-4] + ".json", encoding="utf-8") as f:
            expected = json.load(f)
        check(data[:2] == b"\xc3\x01", name + ": magic")
        check(int.from_bytes(data[2:10], "little") == fps[t], name + ": fingerprint bytes")
        buf = io.BytesIO(data[10:])
        datum = avro.io.DatumReader(schemas[t]).read(avro.io.BinaryDecoder(buf))
        check(buf.tell() == len(data) - 10, name + ": datum not consumed exactly")
        got = to_plain(datum)
        check(got == expected, "%s: python-avro decoded different values\n got: %s\n want: %s"
              % (name, str(got)[:2000], str(expected)[:2000]))
        count += 1
    check(count >= 2 * len(TYPES), "avro_dump wrote too few samples (%d)" % count)
    print("ok C -> python-avro: %d records" % count)


# ---- 3. Python -> C ----

def python_samples():
    hdrs = [{"name": "content-type", "value": "text/plain"},
            {"name": "x-note", "value": "gr\u00fc\u00dfe \U0001F493"}]
    return {
        "raw_webhook": [
            {"event_id": "py-1", "vendor": "fitbit", "kind": "webhook",
             "received_at": from_micros(1764160000654321), "method": "POST",
             "path": "/webhooks/fitbit", "query": None, "content_type": "application/json",
             "headers": hdrs, "body": bytes(range(256)) * 300, "vendor_user_id": None,
             "record_type": None},
            {"event_id": "py-2", "vendor": "terra", "kind": "api_record",
             "received_at": from_micros(-123), "method": "GET", "path": "", "query": "",
             "content_type": None, "headers": [], "body": b"", "vendor_user_id": "t-1",
             "record_type": "terra.sleep"},
        ],
        "biometric_event": [
            {"event_id": "a" * 32, "user_id": "u-9", "vendor": "withings", "metric": "body_mass",
             "value": 72.4, "unit": "kg", "loinc": "29463-7",
             "start_time": from_micros(1764160000000000),
             "end_time": from_micros(1764160000000000), "utc_offset_seconds": 3600,
             "source_record_id": "w-1", "raw_event_id": "r", "ingested_at": from_micros(1),
             "received_at": from_micros(2), "deleted": False},
            {"event_id": "b", "user_id": "u", "vendor": "v", "metric": "m", "value": -0.5,
             "unit": "1", "loinc": None, "start_time": from_micros(-1),
             "end_time": from_micros(0), "utc_offset_seconds": None, "source_record_id": "",
             "raw_event_id": "", "ingested_at": from_micros(0), "received_at": from_micros(0),
             "deleted": True},
        ],
        "fetch_job": [
            {"job_id": "j", "vendor": "strava", "vendor_user_id": "s", "user_id": None,
             "resource": "activity", "event_type": "create", "object_id": "123", "url": None,
             "start_time": None, "end_time": from_micros(1764160000000000),
             "raw_event_id": "r", "attempt": 2147483647, "not_before": from_micros(5),
             "created_at": from_micros(6)},
        ],
        "dead_letter": [
            {"stage": "gateway", "reason": "spool_replay", "detail": "d",
             "source_topic": "biometric.raw.v1", "source_partition": -2147483648,
             "source_offset": -9223372036854775808, "key": None, "value": b"\x00\x01",
             "failed_at": from_micros(7), "attempts": 1},
            {"stage": "persister", "reason": "r", "detail": "", "source_topic": "t",
             "source_partition": 0, "source_offset": 9223372036854775807, "key": b"",
             "value": b"", "failed_at": from_micros(8), "attempts": 0},
        ],
    }


def run_dump_read(dump, t, path):
    return subprocess.run([dump, "read", t, path], capture_output=True, text=True, check=False)


def check_python_to_c(dump, schemas, fps, out_dir):
    count = 0
    for t, samples in python_samples().items():
        for i, datum in enumerate(samples):
            buf = io.BytesIO()
            avro.io.DatumWriter(schemas[t]).write(datum, avro.io.BinaryEncoder(buf))
            frame = b"\xc3\x01" + fps[t].to_bytes(8, "little") + buf.getvalue()
            path = os.path.join(out_dir, "py.%s.%d.bin" % (t, i))
            with open(path, "wb") as f:
                f.write(frame)
            res = run_dump_read(dump, t, path)
            check(res.returncode == 0, "C decoder refused python %s #%d: %s"
                  % (t, i, res.stderr.strip()))
            got = json.loads(res.stdout)
            want = to_plain(datum)
            check(got == want, "%s #%d: C decoded different values\n got: %s\n want: %s"
                  % (t, i, str(got)[:2000], str(want)[:2000]))
            # The same datum under a fingerprint nobody has must be refused.
            bad = b"\xc3\x01" + (fps[t] ^ 1).to_bytes(8, "little") + buf.getvalue()
            with open(path, "wb") as f:
                f.write(bad)
            res = run_dump_read(dump, t, path)
            check(res.returncode == 1 and "fingerprint" in res.stderr,
                  "C decoder accepted an unknown fingerprint for " + t)
            count += 1
    print("ok python-avro -> C: %d records" % count)


# ---- 4. schema evolution ----

def evolution_problems(old_json, new_json):
    """Reasons why records written with old_json cannot be read with new_json."""
    problems = []
    old_names = {f["name"] for f in old_json.get("fields", [])}
    for f in new_json.get("fields", []):
        if f["name"] not in old_names and "default" not in f:
            problems.append("new field %s has no default" % f["name"])
    old_s = avro.schema.parse(json.dumps(old_json))
    new_s = avro.schema.parse(json.dumps(new_json))
    res = avro.compatibility.ReaderWriterCompatibilityChecker().get_compatibility(new_s, old_s)
    if res.compatibility != avro.compatibility.SchemaCompatibilityType.compatible:
        problems.append("python-avro: %s" % "; ".join(str(m) for m in res.messages))
    return problems


def check_evolution(schema_dir):
    # The checker must catch a bad change and pass a good one before its verdicts count.
    with open(os.path.join(schema_dir, "biometric_event.v1.avsc"), encoding="utf-8") as f:
        v1 = json.load(f)
    bad = copy.deepcopy(v1)
    bad["fields"].append({"name": "device", "type": "string", "doc": "x"})
    good = copy.deepcopy(v1)
    good["fields"].append({"name": "device", "type": ["null", "string"], "default": None,
                           "doc": "x"})
    check(evolution_problems(v1, bad), "evolution checker missed a field without default")
    check(not evolution_problems(v1, good), "evolution checker refused a compatible change")

    versions = {}
    for path in glob.glob(os.path.join(schema_dir, "*.v*.avsc")):
        m = re.match(r"(.+)\.v(\d+)\.avsc$", os.path.basename(path))
        check(m is not None, "schema file name not <name>.v<N>.avsc: " + path)
        versions.setdefault(m.group(1), {})[int(m.group(2))] = path
    pairs = 0
    for name, by_version in versions.items():
        nums = sorted(by_version)
        check(nums == list(range(1, len(nums) + 1)), "version gap for " + name)
        for old, new in zip(nums, nums[1:]):
            with open(by_version[old], encoding="utf-8") as f:
                old_json = json.load(f)
            with open(by_version[new], encoding="utf-8") as f:
                new_json = json.load(f)
            problems = evolution_problems(old_json, new_json)
            check(not problems, "%s v%d -> v%d: %s" % (name, old, new, "; ".join(problems)))
            pairs += 1
    print("ok schema evolution: %d schemas, %d version steps" % (len(versions), pairs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump", required=True, help="path to the avro_dump helper")
    ap.add_argument("--schemas", required=True, help="the schemas/ directory")
    args = ap.parse_args()

    schemas = load_schemas(args.schemas)
    try:
        with tempfile.TemporaryDirectory(prefix="avro_interop.") as out_dir:
            res = subprocess.run([args.dump, "write", out_dir], capture_output=True, text=True,
                                 check=False)
            check(res.returncode == 0, "avro_dump write failed: " + res.stderr.strip())
            fps = check_fingerprints(schemas, out_dir)
            check_c_to_python(schemas, fps, out_dir)
            check_python_to_c(args.dump, schemas, fps, out_dir)
        check_evolution(args.schemas)
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    print("avro interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
