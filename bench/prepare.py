"""Write a request file for bench-loadgen: COUNT complete HTTP/1.1 webhook requests, each signed
as its vendor documents it (tests/e2e/signing.py) with a fresh timestamp, prepared before any
timed window starts.

Bodies are the bundled fixtures (tests/fixtures/), realistic in size (0.1 - 2.5 KB), with the
vendor user id taken from a pool of USERS per vendor (bench.py registers those connections) and,
for data-bearing vendors, every record id made unique per request (app sample ids, Garmin
summaryId, Terra metadata.summary_id), so every request yields new rows end to end.
Lifecycle fixtures (they revoke the connection) and control messages (Polar PING, Google
verification: never enqueued) are left out.

File format (read by bench/loadgen.c): b"ALG1", u32 LE count, then per request u32 LE length and
the request bytes.

    python3 bench/prepare.py --out FILE --count N [--mix gateway|data] [--users U] [--run RUN]
"""

import argparse
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

import e2elib  # noqa: E402
import signing  # noqa: E402

# Share of requests per vendor. "gateway": every vendor, as vendors send them (notify-only
# vendors dominate by count, data-bearing ones by bytes). "data": only the data-bearing vendors,
# so every request ends in rows (end-to-end latency, processor and persister throughput).
MIXES = {
    "gateway": {"app": 15, "garmin": 20, "terra": 10, "whoop": 10, "oura": 10, "polar": 10,
                "fitbit": 10, "withings": 5, "strava": 5, "google_health": 5},
    "data": {"app": 40, "garmin": 40, "terra": 20},
}
SKIP = {"terra": ("auth", "healthcheck"), "polar": ("ping",), "google_health": ("verification",)}


def pool_vid(vendor, k):
    """The k-th pooled vendor user id of `vendor` (numeric where the vendor's ids are)."""
    if isinstance(e2elib.FIXTURE_USERS[vendor], int):
        return 900000000 + k
    return "bench-%s-%d" % (vendor.replace("_", "-"), k)


def pool_user(vendor, k):
    return "bench-user-%s-%d" % (vendor.replace("_", "-"), k)


def fixtures():
    out = {}
    for vendor in signing.VENDORS:
        keep = []
        for f in e2elib.load_fixtures(vendor):
            if e2elib.is_lifecycle(f) or f.name in SKIP.get(vendor, ()):
                continue
            keep.append(f)
        out[vendor] = keep
    return out


def uniquify(vendor, body, tag):
    """Give every record of a data-bearing body a fresh id; other bodies are returned as is."""
    if vendor not in ("app", "garmin", "terra"):
        return body
    doc = json.loads(body)
    n = 0
    if vendor == "app":
        for s in doc.get("samples", []):
            s["id"] = "%s-%d" % (tag, n)
            n += 1
    elif vendor == "garmin":
        for items in doc.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "summaryId" in item:
                    item["summaryId"] = "%s-%d" % (tag, n)
                    n += 1
    else:
        for item in doc.get("data") or []:
            if isinstance(item, dict):
                item.setdefault("metadata", {})["summary_id"] = "%s-%d" % (tag, n)
                n += 1
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def http_request(path, headers, body):
    lines = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1", "Content-Length: %d" % len(body)]
    lines += ["%s: %s" % (k, v) for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--mix", choices=sorted(MIXES), default="gateway")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--run", default="run")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    env = signing.load_env()
    rnd = random.Random(args.seed)
    fx = fixtures()
    vendors = [v for v in MIXES[args.mix] if fx.get(v)]
    weights = [MIXES[args.mix][v] for v in vendors]
    sizes = []
    with open(args.out + ".tmp", "wb") as out:
        out.write(b"ALG1" + struct.pack("<I", args.count))
        for i in range(args.count):
            vendor = rnd.choices(vendors, weights)[0]
            f = rnd.choice(fx[vendor])
            k = rnd.randrange(args.users)
            body = e2elib.rewrite_user(f.body, vendor, pool_vid(vendor, k))
            body = uniquify(vendor, body, "%s-%d" % (args.run, i))
            path, headers, body = signing.sign(vendor, body, env=env)
            req = http_request(path, headers, body)
            out.write(struct.pack("<I", len(req)) + req)
            sizes.append(len(body))
    os.replace(args.out + ".tmp", args.out)
    sizes.sort()
    json.dump({"count": args.count, "mix": args.mix, "body_bytes_mean": sum(sizes) / len(sizes),
               "body_bytes_p50": sizes[len(sizes) // 2], "body_bytes_max": sizes[-1]},
              sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
