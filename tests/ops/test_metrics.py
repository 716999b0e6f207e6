"""`promtool check metrics` on the live /metrics of the three binaries (run after the e2e suite
in `make test`, so the labelled series exist), plus the naming rules of the README."""

import pytest

import opslib

# The families the README's Observability table and the dashboard rely on, per binary.
EXPECTED = {
    "gateway": {
        "auren_gateway_requests_total", "auren_gateway_signature_failures_total",
        "auren_gateway_rejected_total", "auren_gateway_in_flight", "auren_gateway_in_flight_limit",
        "auren_gateway_request_duration_seconds", "auren_gateway_request_body_bytes",
        "auren_gateway_kafka_produce_errors_total",
    },
    "processor": {
        "auren_processor_raw_consumed_total", "auren_processor_events_normalized_total",
        "auren_processor_fetch_jobs_total", "auren_processor_dlq_records_total",
        "auren_processor_redis_errors_total", "auren_processor_redis_skipped_writes_total",
        "auren_processor_pg_errors_total", "auren_processor_kafka_produce_errors_total",
        "auren_processor_batch_size", "auren_processor_batch_duration_seconds",
        "auren_processor_consumer_lag",
    },
    "persister": {
        "auren_persister_rows_inserted_total", "auren_persister_rows_duplicate_total",
        "auren_persister_rows_tombstoned_total", "auren_persister_batches_total",
        "auren_persister_batch_size", "auren_persister_batch_duration_seconds",
        "auren_persister_pg_errors_total", "auren_persister_dlq_records_total",
        "auren_persister_consumer_lag", "auren_pipeline_e2e_latency_seconds",
    },
}
# Labels that would carry ids (unbounded, PHI): never allowed.
FORBIDDEN_LABELS = {"user", "user_id", "vendor_user_id", "event_id", "id", "request_id", "req"}


@pytest.fixture(scope="module", autouse=True)
def ready():
    status = opslib.wait_all_ready(30)
    assert all(s == 200 for s in status.values()), "stack not ready (make up): %s" % status


@pytest.mark.parametrize("name,base", opslib.BINARIES, ids=[n for n, _ in opslib.BINARIES])
def test_promtool_check_metrics(name, base):
    text = opslib.scrape(base)
    r = opslib.run([opslib.PROMTOOL, "check", "metrics"], stdin=text)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", (
        "promtool check metrics on %s/metrics:\n%s%s" % (base, r.stdout, r.stderr))


@pytest.mark.parametrize("name,base", opslib.BINARIES, ids=[n for n, _ in opslib.BINARIES])
def test_names_labels_and_expected_families(name, base):
    fams = opslib.families(opslib.scrape(base))
    assert fams, "no metric families on %s/metrics" % base
    bad = sorted(n for n in fams if not n.startswith("auren_"))
    assert not bad, "families without the auren_ prefix: %s" % bad
    missing = sorted(EXPECTED[name] - set(fams))
    assert not missing, "%s/metrics lacks %s" % (base, missing)
    for fam, info in fams.items():
        leaked = info["labels"] & FORBIDDEN_LABELS
        assert not leaked, "%s has id labels %s" % (fam, sorted(leaked))
        if info["type"] == "counter":
            assert fam.endswith("_total"), "counter %s does not end in _total" % fam


def test_in_flight_limit_is_the_configured_cap():
    cap = float(opslib.e2elib.env().get("MAX_CONCURRENT_WEBHOOKS", "40"))
    text = opslib.scrape(dict(opslib.BINARIES)["gateway"])
    values = [float(line.split()[1]) for line in text.splitlines()
              if line.startswith("auren_gateway_in_flight_limit ")]
    assert values == [cap]
