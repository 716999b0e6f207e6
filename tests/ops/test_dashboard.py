"""The Grafana dashboard ops/grafana/auren-bridge.json: every query parses (promtool), selects only
metrics the live binaries expose, with label names they carry, and the dashboard covers what an
operator needs (throughput, errors, signature failures, latency, in-flight vs cap, lag, DLQ,
Redis and PostgreSQL errors, the gateway spool, delivery failures, processor transactions)."""

import json
import os
import tempfile

import pytest

import opslib

DASHBOARD = os.path.join(opslib.ROOT, "ops", "grafana", "auren-bridge.json")
# Every one of these must be queried by some panel.
REQUIRED = {
    "auren_gateway_requests_total", "auren_gateway_signature_failures_total",
    "auren_gateway_rejected_total", "auren_gateway_request_duration_seconds_bucket",
    "auren_gateway_in_flight", "auren_gateway_in_flight_limit",
    "auren_gateway_kafka_produce_errors_total", "auren_processor_consumer_lag",
    "auren_persister_consumer_lag", "auren_processor_dlq_records_total",
    "auren_persister_dlq_records_total", "auren_processor_redis_errors_total",
    "auren_processor_pg_errors_total", "auren_persister_pg_errors_total",
    "auren_pipeline_e2e_latency_seconds_bucket", "auren_processor_events_normalized_total",
    "auren_gateway_spool_bytes", "auren_gateway_spool_max_bytes", "auren_gateway_spool_records",
    "auren_gateway_spool_appends_total", "auren_gateway_spool_replayed_total",
    "auren_gateway_spool_torn_tails_total", "auren_gateway_delivery_failures_total",
    "auren_gateway_kafka_brokers_up", "auren_processor_transactions_total",
}


def _panels(items):
    for p in items:
        yield p
        yield from _panels(p.get("panels", []))


def _exprs():
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    out = []
    for p in _panels(dash["panels"]):
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return dash, out


@pytest.fixture(scope="module")
def fams():
    status = opslib.wait_all_ready(30)
    assert all(s == 200 for s in status.values()), "stack not ready (make up): %s" % status
    return opslib.live_families()


def test_dashboard_shape():
    dash, exprs = _exprs()
    assert dash["uid"] and dash["title"]
    assert exprs, "no queries"
    ids = [p["id"] for p in _panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    used = set()
    for _, e in exprs:
        used |= opslib.metric_refs(e)
    missing = sorted(REQUIRED - used)
    assert not missing, "no panel queries %s" % missing


def test_queries_parse():
    """promtool parses every query (as a recording rule, with Grafana's interval filled in)."""
    _, exprs = _exprs()
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, e) in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m")
        lines.append("      - record: dashboard:query%d" % i)
        lines.append("        expr: %s" % json.dumps(e))
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        r = opslib.run([opslib.PROMTOOL, "check", "rules", path])
    finally:
        os.unlink(path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_queries_reference_live_metrics_and_labels(fams):
    _, exprs = _exprs()
    problems = []
    for title, e in exprs:
        refs = opslib.metric_refs(e)
        for name in refs:
            if opslib.family_of(name, fams) is None:
                problems.append("%s: %s is not on any live /metrics" % (title, name))
        problems.extend(opslib.label_problems(title, e, fams))
    assert not problems, "\n".join(problems)
