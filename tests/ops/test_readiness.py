"""/healthz and /readyz follow the real dependencies, checked with real outages on the local stack:
PostgreSQL stopped -> the processor (connection lookups) and the persister (its sink) answer 503
naming PostgreSQL, while the gateway (which needs only Kafka) stays ready; Kafka stopped -> the
processor answers 503, and the gateway, whose durable spool (`make up` sets SPOOL_DIR) takes the
records Kafka cannot, stays ready (README, SPOOL_DIR: without a spool it would answer 503). Everything is restarted with
`scripts/stack.sh up` and must be ready again. /healthz (liveness) stays 200 throughout: an
outage of a dependency is no reason to restart a pod. Runs last in `make test` (test_readiness.py
sorts after the other tests/ops files); it leaves the stack up."""

import os
import subprocess
import time

import pytest

import opslib

URL = dict(opslib.BINARIES)
PG_DATA = os.path.join(opslib.STATE, "pg", "data")
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
KAFKA_PID = os.path.join(opslib.STATE, "run", "kafka.pid")
STACK = os.path.join(opslib.ROOT, "scripts", "stack.sh")
WAIT = 60.0


def _ready(name):
    return opslib.get(URL[name] + "/readyz", 2.0)


def _wait(name, want_status, text=None, deadline=WAIT):
    end = time.monotonic() + deadline
    status, body = None, ""
    while time.monotonic() < end:
        status, body = _ready(name)
        if status == want_status and (text is None or text in body.lower()):
            return status, body
        time.sleep(0.5)
    pytest.fail("%s /readyz: wanted %s%s, last %s %r" % (
        name, want_status, " mentioning %r" % text if text else "", status, body))


def _alive():
    for name, base in opslib.BINARIES:
        assert opslib.get(base + "/healthz", 2.0)[0] == 200, "%s /healthz not 200" % name


def _restart_stack():
    r = subprocess.run([STACK, "up"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "scripts/stack.sh up failed:\n" + r.stdout + r.stderr
    status = opslib.wait_all_ready(WAIT)
    assert all(s == 200 for s in status.values()), "not ready after restart: %s" % status


@pytest.fixture(autouse=True)
def stack_ready():
    status = opslib.wait_all_ready(30)
    assert all(s == 200 for s in status.values()), "stack not ready (make up): %s" % status
    yield
    # Whatever happened, leave the stack as we found it.
    if not all(s == 200 for s in opslib.wait_all_ready(1).values()):
        _restart_stack()


def test_postgresql_down():
    cmd = [PG_CTL, "-D", PG_DATA, "-m", "fast", "-w", "-t", "60", "-s", "stop"]
    if os.getuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, timeout=90)
    try:
        _wait("persister", 503, "postgres")
        _wait("processor", 503, "postgres")
        assert _ready("gateway")[0] == 200, "the gateway does not need PostgreSQL"
        _alive()
    finally:
        _restart_stack()
    for name in URL:
        _wait(name, 200)


def test_kafka_down():
    with open(KAFKA_PID) as f:
        pid = int(f.read().split()[0])
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert opslib.STATE.encode() in f.read(), "kafka.pid is not this checkout's broker"
    os.kill(pid, 15)
    end = time.monotonic() + 60
    while time.monotonic() < end and os.path.exists("/proc/%d" % pid):
        time.sleep(0.2)
    try:
        _wait("processor", 503, "kafka")
        status, body = _ready("gateway")
        assert status == 200, "gateway with a spool: /readyz %s %r while Kafka is down" % (
            status, body)
        _alive()
    finally:
        _restart_stack()
    for name in URL:
        _wait(name, 200)
