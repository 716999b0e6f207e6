#!/usr/bin/python3
"""The `make run` demo: send the bundled sample webhooks through the running local stack and
show what came out, as counts only (the samples are synthetic, but the demo still never prints
a payload or a measured value).

Steps: register a connection for each vendor's sample user (an upsert, so reruns are fine),
post every bundled fixture signed the way its vendor signs, wait until the stores stop
changing (bounded), then print a summary: webhooks by vendor and HTTP status, events
normalized by vendor and metric, rows in PostgreSQL, Redis series, fetch jobs, dead letters.

Run with Debian's /usr/bin/python3 (python3-avro, python3-confluent-kafka, python3-requests).
"""

import collections
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

import e2elib  # noqa: E402
import signing  # noqa: E402

SETTLE_S = 3.0      # the stores must be unchanged this long
MAX_WAIT_S = 60.0   # ... but never wait longer than this


def demo_user(vendor):
    return "demo-%s-user" % vendor.replace("_", "-")


def table(title, header, rows):
    print()
    print(title)
    if not rows:
        print("  (none)")
        return
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    line = "  " + "  ".join("%-*s" % (w, h) for w, h in zip(widths, header))
    print(line)
    print("  " + "  ".join("-" * w for w in widths))
    for r in cols[1:]:
        print("  " + "  ".join(("%*s" if c.isdigit() or c == "." else "%-*s") % (w, c)
                               for w, c in zip(widths, r)))


def fail(msg):
    print("demo: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    import requests

    env_values = e2elib.env()
    status = e2elib.wait_ready(deadline_s=30.0)
    down = [name for name, _ in e2elib.BINARIES if status[name] != 200]
    if down:
        fail("the stack is not ready (%s); start it with `make up`" % ", ".join(down))

    schemas = e2elib.load_schemas()
    tails = {t: e2elib.TopicTail(env_values["KAFKA_BROKERS"], t, schemas)
             for t in (e2elib.TOPIC_NORMALIZED, e2elib.TOPIC_FETCH, e2elib.TOPIC_DLQ)}
    users = {v: demo_user(v) for v in signing.VENDORS}

    # Each vendor has a sample user whose data flows, and a second one whose account the
    # lifecycle samples (deregistration, deauthorization) close, so reruns keep working.
    leaving = {}
    for vendor in signing.VENDORS:
        old = e2elib.FIXTURE_USERS[vendor]
        leaving[vendor] = old + 1 if isinstance(old, int) else old + "-leaving"
    print("Auren Biometric Bridge demo: registering %d sample connections" % (2 * len(users)))
    for vendor in signing.VENDORS:
        try:
            e2elib.admin_add_connection(vendor, e2elib.FIXTURE_USERS[vendor], users[vendor],
                                        env_values)
            e2elib.admin_add_connection(vendor, leaving[vendor], users[vendor] + "-leaving",
                                        env_values)
        except RuntimeError as exc:
            fail(str(exc))

    plan = []
    for vendor in signing.VENDORS:
        for fx in e2elib.load_fixtures(vendor):
            if e2elib.is_lifecycle(fx):
                plan.append((1, vendor, e2elib.rewrite_user(fx.body, vendor, leaving[vendor])))
            else:
                plan.append((0, vendor, fx.body))
    plan.sort(key=lambda p: p[0])  # lifecycle samples last

    statuses = collections.defaultdict(collections.Counter)
    posted = 0
    with requests.Session() as http:
        for _, vendor, body in plan:
            try:
                code = e2elib.post(http, vendor, body, env_values).status_code
            except requests.RequestException:
                code = "error"
            statuses[vendor][code] += 1
            posted += 1
    if posted == 0:
        fail("no fixtures found under tests/fixtures/")
    print("posted %d sample webhooks; waiting for the pipeline to settle (at most %.0f s)"
          % (posted, MAX_WAIT_S))

    user_list = list(users.values()) + [u + "-leaving" for u in users.values()]

    def snapshot():
        for t in tails.values():
            t.drain(max_seconds=0.5)
        n_rows = e2elib.psql("SELECT count(*) FROM biometric_events WHERE user_id IN (%s)"
                             % e2elib.sql_list(user_list), env_values)[0][0]
        return (n_rows,) + tuple(len(t.records) for t in tails.values())

    start = time.monotonic()
    last, stable_since = None, time.monotonic()
    while time.monotonic() - start < MAX_WAIT_S:
        snap = snapshot()
        if snap != last:
            last, stable_since = snap, time.monotonic()
        elif time.monotonic() - stable_since >= SETTLE_S:
            break
        time.sleep(0.5)
    waited = time.monotonic() - start

    # Webhooks by vendor and status.
    codes = sorted({c for cnt in statuses.values() for c in cnt}, key=str)
    table("Webhooks accepted (HTTP status counts per vendor)",
          ["vendor"] + [str(c) for c in codes] + ["total"],
          [[v] + [statuses[v].get(c, 0) for c in codes] + [sum(statuses[v].values())]
           for v in signing.VENDORS if statuses[v]])

    # Events normalized during this run (from biometric.normalized.v1).
    normalized = collections.Counter()
    for rec in tails[e2elib.TOPIC_NORMALIZED].records:
        d = rec["datum"]
        if d is not None and d["user_id"] in user_list:
            normalized[(d["vendor"], d["metric"])] += 1
    norm_vendors = sorted({v for v, _ in normalized})
    metrics = sorted({m for _, m in normalized})
    rows = [[m] + [normalized.get((v, m), 0) or "." for v in norm_vendors]
            + [sum(normalized.get((v, m), 0) for v in norm_vendors)] for m in metrics]
    rows.append(["all metrics"] + [sum(n for (v2, _), n in normalized.items() if v2 == v)
                                   for v in norm_vendors] + [sum(normalized.values())])
    table("Events normalized this run (biometric.normalized.v1, by metric and vendor)",
          ["metric"] + norm_vendors + ["total"], rows)

    # Rows in PostgreSQL.
    per_vendor = e2elib.psql(
        "SELECT vendor, count(*), count(DISTINCT metric) FROM biometric_events "
        "WHERE user_id IN (%s) GROUP BY vendor ORDER BY vendor" % e2elib.sql_list(user_list),
        env_values)
    total = e2elib.psql("SELECT count(*) FROM biometric_events", env_values)[0][0]
    table("Rows in PostgreSQL biometric_events (demo users)", ["vendor", "rows", "metrics"],
          per_vendor)
    print("  all rows in the table: %s (events are idempotent: a rerun adds none)" % total)

    # Redis series.
    redis = e2elib.Redis(env_values["REDIS_URL"])
    try:
        all_keys = redis.scan_keys("ts:*")
        demo_keys = [k for k in all_keys if k.split(":")[1] in user_list]
        sizes = {k: redis.cmd("ZCARD", k) for k in demo_keys}
        # The largest series of each demo user, largest first: a few readable examples.
        best = {}
        for key in sorted(demo_keys, key=lambda k: (-sizes[k], k)):
            best.setdefault(key.split(":")[1], key)
        examples = [[k, sizes[k], redis.cmd("TTL", k)]
                    for k in sorted(best.values(), key=lambda k: (-sizes[k], k))[:4]]
    finally:
        redis.close()
    print()
    print("Redis time series: %d ts:* keys in all, %d for the demo users"
          % (len(all_keys), len(demo_keys)))
    table("  example series (demo user ids are synthetic)", ["key", "members", "ttl_s"], examples)

    # Fetch jobs and dead letters emitted during this run.
    jobs = collections.defaultdict(collections.Counter)
    for rec in tails[e2elib.TOPIC_FETCH].records:
        if rec["datum"] is not None and rec["stem"] == "fetch_job.v1":
            kind = "new" if rec["datum"]["attempt"] == 0 else "requeued"
            jobs[rec["datum"]["vendor"]][kind] += 1
    table("FetchJobs emitted this run (biometric.fetch.v1: notify-only vendors, Garmin ping mode)",
          ["vendor", "new", "requeued"],
          [[v, c["new"], c["requeued"]] for v, c in sorted(jobs.items())])
    dlq = collections.Counter()
    for rec in tails[e2elib.TOPIC_DLQ].records:
        if rec["datum"] is not None and rec["stem"] == "dead_letter.v1":
            dlq[(rec["datum"]["stage"], rec["datum"]["reason"])] += 1
        elif rec["error"] is not None:
            dlq[("?", "undecodable")] += 1
    table("Dead letters this run (biometric.dlq.v1, by stage and reason)",
          ["stage", "reason", "records"], [[s, r, n] for (s, r), n in sorted(dlq.items())])

    for t in tails.values():
        t.close()
    print()
    print("settled after %.1f s. Metrics: gateway %s/metrics, processor %s/metrics, "
          "persister %s/metrics" % (waited, e2elib.GATEWAY_URL, e2elib.PROCESSOR_OPS_URL,
                                    e2elib.PERSISTER_OPS_URL))
    print("stack is running; `make down` stops it")


if __name__ == "__main__":
    main()
