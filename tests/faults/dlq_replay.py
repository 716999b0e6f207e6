"""DLQ replay, exactly once, on the running stack.

A companion-app webhook for a vendor user nobody registered is accepted (2xx) and dead-lettered
by the processor (unknown_connection). `auren-admin dlq list` must count it as pending. After the
connection is registered, `auren-admin dlq replay` sends the original raw record back to
biometric.raw.v1: the sample lands in PostgreSQL, the normalized topic carries it exactly once,
and a second replay does not send it again (the cursor moved in the same transaction). Exit 0 on success.
"""

import datetime
import json
import os
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import e2elib  # noqa: E402
import requests  # noqa: E402


def admin(env_values, *args):
    child = dict(os.environ)
    child.update(env_values)
    res = subprocess.run([e2elib.admin_binary()] + list(args), env=child, capture_output=True,
                         text=True, timeout=120)
    if res.returncode != 0:
        raise AssertionError("auren-admin %s failed: %s" % (" ".join(args), res.stderr[-400:]))
    return res.stdout


def pending_total(listing):
    for line in listing.splitlines():
        if line.startswith("# "):
            return int(line.split()[4])  # "# N dead letters, P pending replay"
    raise AssertionError("no summary line in: " + listing)


def main():
    env_values = e2elib.env()
    schemas = e2elib.load_schemas()
    suffix = uuid.uuid4().hex[:8]
    vid, user = "dlq-vid-" + suffix, "dlq-user-" + suffix
    sample = "dlq-sample-" + suffix
    ts = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    ts = ts.isoformat().replace("+00:00", "Z")
    body = json.dumps({"schema": "auren.app.v1", "user_id": vid,
                       "device": {"platform": "ios", "source": "healthkit"},
                       "samples": [{"id": sample, "type": "heart_rate", "value": 61,
                                    "unit": "count/min", "start": ts, "end": ts}]}).encode()
    dlq = e2elib.TopicTail(env_values["KAFKA_BROKERS"], e2elib.TOPIC_DLQ, schemas)
    norm = e2elib.TopicTail(env_values["KAFKA_BROKERS"], e2elib.TOPIC_NORMALIZED, schemas)
    raw = e2elib.TopicTail(env_values["KAFKA_BROKERS"], e2elib.TOPIC_RAW, schemas)
    with requests.Session() as s:
        resp = e2elib.post(s, "app", body, env_values)
    assert 200 <= resp.status_code < 300, resp.status_code

    def dead_lettered(records):
        return any(r.get("datum") and r["datum"].get("value") and
                   sample.encode() in r["datum"]["value"] for r in records)
    assert dlq.wait_for(dead_lettered, 60), "the webhook was not dead-lettered"

    before = pending_total(admin(env_values, "dlq", "list"))
    assert before >= 1, before
    e2elib.admin_add_connection("app", vid, user, env_values)
    time.sleep(6)  # the processor remembers an unknown user for 5 s (connection cache)
    out = admin(env_values, "dlq", "replay")
    print(out.strip())

    end = time.monotonic() + 60
    rows = []
    while time.monotonic() < end:
        rows = e2elib.fetch_rows([user], env_values)
        if rows:
            break
        time.sleep(1)
    assert len(rows) == 1, rows

    # Other dead letters (earlier test runs) may still be pending and come back; ours must not.
    print(admin(env_values, "dlq", "replay").strip())
    time.sleep(5)
    raw.drain(5)
    copies = [r for r in raw.records if r["value"] and sample.encode() in r["value"]]
    assert len(copies) == 2, "raw copies of the sample (original + one replay): %d" % len(copies)
    norm.drain(5)
    mine = [r for r in norm.records if r.get("datum") and r["datum"].get("user_id") == user]
    assert len(mine) == 1, "normalized events for the replayed sample: %d" % len(mine)
    assert len(e2elib.fetch_rows([user], env_values)) == 1
    dlq.close()
    norm.close()
    raw.close()
    print("dlq replay: dead-lettered, listed, replayed once, stored once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
