"""Fault-injection suite: zero loss and no duplicates while components crash under load.

For each scenario a load generator posts signed companion-app webhooks (one heart-rate sample
each, a fresh user per scenario) at a steady rate and behaves like a vendor: an answer other than
2xx, or no answer, is retried after Retry-After (1 s when absent) until a 2xx comes. Meanwhile
the driver injects one fault through scripts/stack.sh (kill -9 and restart a component, or stop
Kafka for a while), then stops the load and reconciles:

  rows expected  the samples whose webhook got a 2xx (each maps to one deterministic event_id)
  rows found     rows of the scenario's user in biometric_events
  lost           expected but not found
  duplicated     rows beyond one per event_id, rows no 2xx'd webhook explains, and normalized
                 events the processor committed twice to Kafka for the same raw record
                 (read_committed), which exactly-once transactions must prevent
  recover        seconds from the restart until the last row of a webhook accepted before the
                 restart was committed (persisted_at), 0 when nothing waited

and checks that every attempt that did not end in a 2xx got a non-2xx status or no answer at all
(never a silent drop), and that after each scenario the three binaries run from $BUILD_DIR
(scripts/stack.sh restarts them from there). The table goes to --out (Markdown) and, with
--readme, between the markers of the README's reliability section.

Run through `make test-faults` (writes the table) or `make fault-tests` on the dev build, or by
`make test` inside the coverage pass (scripts/coverage.sh: BUILD_DIR=build-coverage, so the
restarted binaries carry gcov and ASan/UBSan); `--profile short` is a quicker subset. The stack
must be up (`make up`); every component is running again after each scenario.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import e2elib  # noqa: E402
import requests  # noqa: E402

REPO = e2elib.REPO_ROOT
STACK = os.path.join(REPO, "scripts", "stack.sh")
RUN_DIR = os.path.join(REPO, ".state", "run")
OUR_BINARIES = ("gateway", "processor", "persister")
MARK_BEGIN = "<!-- fault-suite-results:begin -->"
MARK_END = "<!-- fault-suite-results:end -->"

# name, action, component, seconds down
FULL = [
    ("gateway kill -9", "kill9", "gateway", 2),
    ("processor kill -9", "kill9", "processor", 2),
    ("persister kill -9", "kill9", "persister", 2),
    ("Kafka broker kill -9", "kill9", "kafka", 2),
    ("Redis kill -9", "kill9", "redis", 2),
    ("PostgreSQL kill -9", "kill9", "postgresql", 2),
    ("Kafka stopped 60 s", "stop", "kafka", 60),
]
SHORT = [
    ("gateway kill -9", "kill9", "gateway", 2),
    ("processor kill -9", "kill9", "processor", 2),
    ("persister kill -9", "kill9", "persister", 2),
    ("Kafka stopped 10 s", "stop", "kafka", 10),
]


def log(msg):
    print("[faults %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def stack(*args, retries=1):
    for attempt in range(retries):
        res = subprocess.run([STACK] + list(args), capture_output=True, text=True, timeout=300)
        if res.returncode == 0:
            return
        time.sleep(2)
    raise RuntimeError("stack.sh %s failed: %s" % (" ".join(args),
                                                   (res.stderr or res.stdout)[-500:]))


class Load:
    """Posts one webhook every 1/rate seconds from a small pool; retries like a vendor."""

    def __init__(self, env_values, vendor_user_id, rate, workers=16):
        self.env = env_values
        self.vid = vendor_user_id
        self.rate = rate
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        self.lock = threading.Lock()
        self.webhooks = {}    # sample id -> {"ok": bool, "attempts": n}
        self.non2xx = 0       # attempts answered with a non-2xx status
        self.no_answer = 0    # attempts with no HTTP answer (connection refused, reset, timeout)
        self.bad = []         # attempts that are neither a 2xx, nor a non-2xx, nor no answer
        self.stop_new = threading.Event()
        self.stop_all = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.local = threading.local()

    def start(self):
        self.thread.start()

    def _session(self):
        s = getattr(self.local, "s", None)
        if s is None:
            s = self.local.s = requests.Session()
        return s

    def _body(self, sample_id, value):
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        ts = now.isoformat().replace("+00:00", "Z")
        return json.dumps({
            "schema": "auren.app.v1", "user_id": self.vid,
            "device": {"platform": "ios", "source": "healthkit"},
            "samples": [{"id": sample_id, "type": "heart_rate", "value": value,
                         "unit": "count/min", "start": ts, "end": ts}],
        }).encode()

    def _one(self, sample_id, value):
        body = self._body(sample_id, value)
        while not self.stop_all.is_set():
            try:
                resp = e2elib.post(self._session(), "app", body, self.env)
                status = resp.status_code
            except requests.RequestException:
                status = None
            with self.lock:
                w = self.webhooks[sample_id]
                w["attempts"] += 1
                if status is not None and 200 <= status < 300:
                    w["ok"] = True
                    return
                if status is None:
                    self.no_answer += 1
                elif status >= 300:
                    self.non2xx += 1
                else:
                    self.bad.append(status)
            wait = 1.0
            if status == 503:
                try:
                    wait = float(resp.headers.get("Retry-After", "1"))
                except ValueError:
                    wait = 1.0
            self.stop_all.wait(min(wait, 2.0))

    def _run(self):
        i = 0
        t0 = time.monotonic()
        while not self.stop_new.is_set():
            sample_id = "fault-%s-%06d" % (self.vid, i)
            with self.lock:
                self.webhooks[sample_id] = {"ok": False, "attempts": 0}
            self.pool.submit(self._one, sample_id, 50 + i % 100)
            i += 1
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                self.stop_new.wait(delay)

    def finish(self, retry_deadline_s):
        """Stop new webhooks; give retries until the deadline to get their 2xx."""
        self.stop_new.set()
        self.thread.join()
        end = time.monotonic() + retry_deadline_s
        while time.monotonic() < end:
            with self.lock:
                if all(w["ok"] for w in self.webhooks.values()):
                    break
            time.sleep(0.5)
        self.stop_all.set()
        self.pool.shutdown(wait=True)


def query_rows(env_values, user_id):
    sql = ("SELECT source_record_id, event_id, "
           "(extract(epoch FROM persisted_at))::float8 FROM biometric_events "
           "WHERE user_id = %s" % e2elib.sql_list([user_id]))
    return e2elib.psql(sql, env_values)


def wait_rows(env_values, user_id, expected, deadline_s):
    end = time.monotonic() + deadline_s
    rows = []
    while True:
        try:
            rows = query_rows(env_values, user_id)
        except (RuntimeError, subprocess.TimeoutExpired):
            rows = rows or []
        if expected <= {r[0] for r in rows} or time.monotonic() > end:
            return rows
        time.sleep(1.0)


def kafka_duplicates(tail, user_id):
    """Normalized events committed more than once for the same (raw record, event)."""
    seen = {}
    for rec in tail.records:
        d = rec.get("datum")
        if not d or d.get("user_id") != user_id:
            continue
        k = (d.get("raw_event_id"), d.get("event_id"))
        seen[k] = seen.get(k, 0) + 1
    return sum(n - 1 for n in seen.values() if n > 1)


def run_scenario(name, action, component, down_s, args, env_values, schemas):
    suffix = uuid.uuid4().hex[:8]
    user_id = "fault-%s" % suffix
    vid = "fault-vid-%s" % suffix
    e2elib.admin_add_connection("app", vid, user_id, env_values)
    tail = e2elib.TopicTail(env_values["KAFKA_BROKERS"], e2elib.TOPIC_NORMALIZED, schemas)
    load = Load(env_values, vid, args.rate)
    log("%s: load at %.0f/s" % (name, args.rate))
    load.start()
    time.sleep(args.warmup)
    if action == "kill9":
        stack("kill9", component)
    else:
        stack("stop", component)
    log("%s: %s down for %ss" % (name, component, down_s))
    time.sleep(down_s)
    restart = time.time()
    stack("start", component, retries=5)
    with load.lock:
        accepted_before = {k for k, w in load.webhooks.items() if w["ok"]}
    log("%s: %s restarted" % (name, component))
    time.sleep(args.after)
    load.finish(retry_deadline_s=args.deadline)
    with load.lock:
        sent = len(load.webhooks)
        ok = {k for k, w in load.webhooks.items() if w["ok"]}
        attempts = sum(w["attempts"] for w in load.webhooks.values())
        non2xx, no_answer, bad = load.non2xx, load.no_answer, list(load.bad)
    rows = wait_rows(env_values, user_id, ok, args.deadline)
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if tail.drain(1.0) == 0 and len([r for r in tail.records if r.get("datum") and
                                         r["datum"].get("user_id") == user_id]) >= len(ok):
            break
    kdup = kafka_duplicates(tail, user_id)
    tail.close()
    found_ids = [r[0] for r in rows]
    found = set(found_ids)
    lost = len(ok - found)
    dup = (len(found_ids) - len(found)) + len(found - set(load.webhooks)) + kdup
    waited = [float(r[2]) for r in rows if r[0] in accepted_before]
    recover = max(0.0, max(waited) - restart) if waited else 0.0
    result = {"scenario": name, "sent": sent, "ok": len(ok), "expected": len(ok),
              "found": len(found & set(load.webhooks)), "lost": lost, "duplicated": dup,
              "recover_s": recover, "attempts": attempts, "non2xx": non2xx,
              "no_answer": no_answer, "bad": bad, "kafka_dup": kdup,
              "unanswered": sent - len(ok)}
    log("%s: %s" % (name, json.dumps({k: v for k, v in result.items() if k != "scenario"})))
    return result


def foreign_binaries():
    """Problems with our running binaries: not running, or not the executable of $BUILD_DIR (a
    coverage pass would neither count nor sanitize a restart from another build)."""
    problems = []
    for name in OUR_BINARIES:
        want = os.path.realpath(e2elib.build_binary(name))
        try:
            with open(os.path.join(RUN_DIR, name + ".pid"), encoding="ascii") as fh:
                pid = int(fh.read().split()[0])
            exe = os.readlink("/proc/%d/exe" % pid)
        except (OSError, ValueError, IndexError):
            problems.append("%s is not running" % name)
            continue
        exe = exe[: -len(" (deleted)")] if exe.endswith(" (deleted)") else exe
        if os.path.realpath(exe) != want:
            problems.append("%s runs %s, not %s" % (name, exe, want))
    return problems


def table(results, profile, rate):
    lines = [
        "| scenario | webhooks sent | 2xx | rows expected | rows found | lost | duplicated "
        "| time to recover |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append("| %s | %d | %d | %d | %d | %d | %d | %.1f s |" % (
            r["scenario"], r["sent"], r["ok"], r["expected"], r["found"], r["lost"],
            r["duplicated"], r["recover_s"]))
    retried = sum(r["non2xx"] + r["no_answer"] for r in results)
    lines.append("")
    lines.append("Profile `%s`, %.0f webhooks/s, %s, on this repository's local stack. Attempts "
                 "answered non-2xx or not at all (then retried like a vendor): %d."
                 % (profile, rate, time.strftime("%Y-%m-%d"), retried))
    return "\n".join(lines) + "\n"


def update_readme(path, text):
    with open(path, encoding="utf-8") as fh:
        content = fh.read()
    if MARK_BEGIN not in content or MARK_END not in content:
        raise RuntimeError("%s has no fault-suite markers" % path)
    head, rest = content.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + MARK_BEGIN + "\n" + text + MARK_END + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=("short", "full"), default="full")
    ap.add_argument("--rate", type=float, default=20.0, help="webhooks per second")
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds of load before the fault")
    ap.add_argument("--after", type=float, default=6.0, help="seconds of load after the restart")
    ap.add_argument("--deadline", type=float, default=180.0,
                    help="longest wait for retries and for rows")
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    ap.add_argument("--readme", default=None, help="also put the table into this README")
    ap.add_argument("--only", default=None, help="run the scenarios whose name contains this")
    args = ap.parse_args()

    env_values = e2elib.env()
    status = e2elib.wait_ready(deadline_s=60)
    if any(s != 200 for s in status.values()):
        log("stack not ready (%s); run `make up` first" % status)
        return 2
    schemas = e2elib.load_schemas()
    scenarios = FULL if args.profile == "full" else SHORT
    if args.only:
        scenarios = [s for s in scenarios if args.only.lower() in s[0].lower()]
    results = []
    t0 = time.monotonic()
    for sc in scenarios:
        results.append(run_scenario(*sc, args=args, env_values=env_values, schemas=schemas))
        e2elib.wait_ready(deadline_s=120)
        results[-1]["binaries"] = foreign_binaries()
        for problem in results[-1]["binaries"]:
            log("%s: %s" % (sc[0], problem))
    text = table(results, args.profile, args.rate)
    print(text)
    log("total %.0f s" % (time.monotonic() - t0))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    if args.readme:
        update_readme(args.readme, text)
    failed = [r for r in results if r["lost"] or r["duplicated"] or r["bad"] or
              r["found"] < r["expected"] or r["unanswered"] or r["binaries"]]
    for r in failed:
        log("FAILED: %s" % r["scenario"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
