"""Session fixtures for the end-to-end suite against a running stack (`make up`).

The `run` fixture does the one expensive thing once per session: it gives every vendor a fresh
per-run vendor user id and internal user id, registers those connections with auren-admin,
rewrites the bundled fixture bodies to the new vendor user ids, and posts everything (each
data-bearing fixture twice, for the idempotency checks), plus a malformed body and a webhook
from an unregistered user. The Kafka topic tails are opened before the first post, so the
tests see only records this run caused. Tests then poll for the outcomes with deadlines.
"""

import os
import random
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2elib  # noqa: E402
import signing  # noqa: E402

@pytest.fixture(scope="session")
def env_values():
    values = e2elib.env()
    for key in ("KAFKA_BROKERS", "REDIS_URL", "DATABASE_URL"):
        if key not in values:
            pytest.fail("config/local.env (or the environment) does not define " + key)
    return values


@pytest.fixture(scope="session")
def stack(env_values):
    status = e2elib.wait_ready(deadline_s=float(os.environ.get("AUREN_E2E_READY_WAIT", "30")))
    down = ["%s (%s): %s" % (name, base, status[name]) for name, base in e2elib.BINARIES
            if status[name] != 200]
    if down:
        pytest.fail("the local stack is not ready - run `make up` first. /readyz not 200 for: "
                    + "; ".join(down), pytrace=False)
    if not os.access(e2elib.admin_binary(), os.X_OK):
        pytest.fail("%s is missing - run `make up` (it builds the binaries)"
                    % e2elib.admin_binary(), pytrace=False)
    return True


@pytest.fixture(scope="session")
def schemas():
    try:
        s = e2elib.load_schemas()
        for stem in ("biometric_event.v1", "fetch_job.v1", "dead_letter.v1", "raw_webhook.v1"):
            s.fp(stem)
    except (RuntimeError, KeyError) as exc:
        pytest.fail("schemas/: %s" % exc, pytrace=False)
    return s


@pytest.fixture(scope="session")
def http():
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="session")
def tails(stack, env_values, schemas):
    out = {}
    for topic in (e2elib.TOPIC_NORMALIZED, e2elib.TOPIC_FETCH, e2elib.TOPIC_DLQ):
        out[topic] = e2elib.TopicTail(env_values["KAFKA_BROKERS"], topic, schemas)
    yield out
    for t in out.values():
        t.close()


class Run:
    """What this session posted and what it expects."""

    def __init__(self):
        self.suffix = e2elib.new_suffix()
        self.ids = e2elib.run_identities(self.suffix, random.Random())
        self.posts = []          # every fixture post: {vendor, fixture, body, status, copy}
        self.expected = {}       # user_id -> list of expected events (golden, rewritten)
        self.notifications = []  # non-lifecycle posts: {vendor, fixture, body, status}
        self.lifecycle = []      # (vendor, vendor_user_id) the lifecycle fixtures revoke
        self.malformed = None    # {body, status}
        self.unknown = None      # {body, status, vendor_user_id}
        self.rows = None         # cached once the pipeline has delivered
        self.t0 = time.monotonic()

    def user_ids(self, vendors=None):
        return [self.ids[v]["user_id"] for v in (vendors or signing.VENDORS)]


def _rewrite_expected(events, vendor, new_vid):
    old = e2elib.FIXTURE_USERS[vendor]
    out = []
    for ev in events:
        ev = dict(ev)
        if isinstance(old, str):
            ev["source_record_id"] = ev["source_record_id"].replace(old, str(new_vid))
        out.append(ev)
    return out


@pytest.fixture(scope="session")
def run(stack, env_values, tails, http):
    r = Run()
    for vendor in signing.VENDORS:
        ident = r.ids[vendor]
        e2elib.admin_add_connection(vendor, ident["vendor_user_id"], ident["user_id"], env_values)
        e2elib.admin_add_connection(vendor, ident["lc_vendor_user_id"], ident["lc_user_id"],
                                    env_values)

    missing = [v for v in signing.VENDORS if not e2elib.load_fixtures(v)]
    if missing:
        pytest.fail("no fixtures under tests/fixtures/ for: " + ", ".join(missing), pytrace=False)

    for vendor in signing.VENDORS:
        ident = r.ids[vendor]
        r.expected.setdefault(ident["user_id"], [])
        for fx in e2elib.load_fixtures(vendor):
            lifecycle = e2elib.is_lifecycle(fx)
            vid = ident["lc_vendor_user_id"] if lifecycle else ident["vendor_user_id"]
            body = e2elib.rewrite_user(fx.body, vendor, vid)
            copies = 2 if vendor in e2elib.DATA_VENDORS and not lifecycle else 1
            for copy in range(copies):
                resp = e2elib.post(http, vendor, body, env_values)
                r.posts.append({"vendor": vendor, "fixture": fx, "body": body,
                                "status": resp.status_code, "copy": copy,
                                "lifecycle": lifecycle})
            if lifecycle:
                r.lifecycle.append((vendor, str(vid)))
                continue
            if vendor in e2elib.DATA_VENDORS:
                r.expected[ident["user_id"]].extend(
                    _rewrite_expected(fx.expected, vendor, ident["vendor_user_id"]))
            r.notifications.append({"vendor": vendor, "fixture": fx, "body": body,
                                    "status": r.posts[-1]["status"]})

    # A body that is not JSON, correctly signed, for a data-bearing vendor.
    terra_vid = r.ids["terra"]["vendor_user_id"]
    bad = ('{"type":"sleep","user":{"user_id":"%s","provider":"GARMIN"},"data":[{"nonce":"%s"'
           % (terra_vid, r.suffix)).encode()
    resp = e2elib.post(http, "terra", bad, env_values)
    r.malformed = {"body": bad, "status": resp.status_code}

    # A Garmin push for a vendor user nobody registered.
    garmin_fx = [fx for fx in e2elib.load_fixtures("garmin") if fx.expected]
    if not garmin_fx:
        pytest.fail("no garmin fixture with golden events", pytrace=False)
    unknown_vid = "garmin-unregistered-" + r.suffix
    body = e2elib.rewrite_user(garmin_fx[0].body, "garmin", unknown_vid)
    resp = e2elib.post(http, "garmin", body, env_values)
    r.unknown = {"body": body, "status": resp.status_code, "vendor_user_id": unknown_vid}
    return r
