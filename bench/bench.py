"""The benchmark: every stage against this machine's own ceilings, in one run, on the same
machine state. `make bench` runs the full profile, `make bench-quick` a short one that only
proves the machinery works (make test calls it; nothing here asserts on speed).

Needs the local stack's Kafka, Redis and PostgreSQL (`make up`). The stack's three binaries are
stopped for the run and restarted at the end (scripts/stack.sh up); the bench starts its own
instances with the configuration each phase needs, on the same ports. The bench's consumer
groups start where the topics ended when the bench began, so the processor and persister phases
read exactly what this run put there; the stack's own groups are moved past the bench's records
before they restart, so the bench leaves no backlog behind. Rows the bench writes belong to the
pooled users `bench-user-*` (removed at the start of each run).

Phases:
  ceiling      bench-ceiling (bare libmicrohttpd, the gateway's thread model), closed loop
  gateway      signed webhooks, vendor mix, durable ack from Kafka: default cap (40 in flight,
               40 connections) and a raised cap; throughput, p50/p99/p99.9, ratio to ceiling
  processor    normalizing the raw topic the gateway phases filled (Redis on), events/s and
               events per CPU-second of the processor
  persister    rows/s loading the normalized topic the processor filled, vs psql \\copy of the
               same rows into a table of the same shape
  e2e          open loop at fixed rates through all three binaries; request -> PostgreSQL commit
               latency from auren_pipeline_e2e_latency_seconds and from the rows
  memory       peak RSS (VmHWM) of each binary under the load of its phase

`--phases` (make: BENCH_PHASES) runs a subset, e.g. `--phases processor,persister`, to re-measure
one stage; the JSON's "phases_run" lists what ran and the table shows only those rows. A phase
whose input another phase makes gets it without measuring it: the processor tops the raw topic up
through the gateway in any case, and the persister alone first has a processor normalize a top-up
("fills" in the JSON; memory comes with each phase).

Output: a table on stdout and bench/results/<profile>-<UTC stamp>.json.
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import signing  # noqa: E402

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

TOPIC_RAW = "biometric.raw.v1"
TOPIC_NORMALIZED = "biometric.normalized.v1"
GW_PORT, PROC_PORT, PERS_PORT, CEIL_PORT = 8080, 9101, 9102, 18080
BENCH_PROC_GROUP = "auren-bench-processor"
BENCH_PERS_GROUP = "auren-bench-persister"
STACK_GROUPS = {"auren-processor": TOPIC_RAW, "auren-persister": TOPIC_NORMALIZED}

PROFILES = {
    # duration/warmup of each load phase (s), requests prepared per phase, e2e rates
    "quick": {"duration": 2, "warmup": 0.5, "requests": 3000, "raised_conns": 64,
              "e2e_rates": [200], "e2e_duration": 3, "drain_s": 60, "users": 50},
    "full": {"duration": 15, "warmup": 3, "requests": 60000, "raised_conns": 256,
             "e2e_rates": [1000, 5000], "e2e_duration": 15, "drain_s": 300, "users": 200},
}
DEFAULT_CAP = 40
RAISED_CAP = 1024
PHASES = ("ceiling", "gateway", "processor", "persister", "e2e")

TARGETS = {
    "gateway_default_cap_rps": 10000,
    "gateway_default_cap_p99_ms": 20,
    "gateway_raised_cap_ratio": 0.5,
    "e2e_p99_ms_at_5000": 250,
    "processor_events_per_core_s": 100000,
    "persister_copy_ratio": 0.8,
    "gateway_rss_mib": 64,
}


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


class Bench:
    def __init__(self, profile, build_dir, phases=PHASES):
        self.phases = [ph for ph in PHASES if ph in phases]
        self.p = PROFILES[profile]
        self.profile = profile
        self.build = build_dir
        self.env = signing.load_env()
        self.tools = os.path.join(build_dir, "bench")
        self.tmp = tempfile.mkdtemp(prefix="auren-bench-")
        self.procs = {}
        self.results = {"profile": profile, "phases": {}, "phases_run": self.phases}
        self.run_id = datetime.datetime.utcnow().strftime("%Y%m%d%H%M%S")

    # ------------------------------------------------------------------ plumbing

    def binary(self, name):
        for cand in (os.path.join(self.build, "auren-" + name),
                     os.path.join(self.build, name, "auren-" + name)):
            if os.access(cand, os.X_OK):
                return cand
        raise SystemExit("bench: %s/auren-%s is missing (make build)" % (self.build, name))

    def build_tools(self):
        os.makedirs(self.tools, exist_ok=True)
        flags = ["-O2", "-g", "-std=c11", "-Wall", "-Wextra", "-Wshadow", "-Wformat=2",
                 "-Wstrict-prototypes", "-Wmissing-prototypes", "-Werror"]
        mhd = subprocess.run(["pkg-config", "--cflags", "--libs", "libmicrohttpd"],
                             check=True, capture_output=True, text=True).stdout.split()
        for out, src, extra in (("bench-loadgen", "loadgen.c", []),
                                ("bench-ceiling", "ceiling.c", mhd + ["-lpthread"])):
            dst = os.path.join(self.tools, out)
            srcp = os.path.join(HERE, src)
            if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(srcp):
                continue
            subprocess.run(["cc"] + flags + ["-o", dst, srcp] + extra, check=True)
        # bench-norm (callgrind target) links the processor's normalizers from the build tree.
        libs = [os.path.join(self.build, "processor", "libauren_proc_norm.a"),
                os.path.join(self.build, "common", "libauren_common.a")]
        dst = os.path.join(self.tools, "bench-norm")
        srcs = [os.path.join(HERE, "normbench.c")] + libs
        if all(os.path.exists(x) for x in libs) and not (
                os.path.exists(dst) and
                all(os.path.getmtime(dst) >= os.path.getmtime(x) for x in srcs)):
            deps = subprocess.run(["pkg-config", "--libs", "jansson", "openssl", "avro-c"],
                                  check=True, capture_output=True, text=True).stdout.split()
            subprocess.run(["cc"] + flags + ["-D_POSIX_C_SOURCE=200809L", "-D_DEFAULT_SOURCE",
                                             "-I" + os.path.join(ROOT, "common", "include"),
                                             "-I" + os.path.join(ROOT, "processor"),
                                             "-o", dst] + srcs + deps + ["-lm", "-lpthread"],
                           check=True)

    def psql(self, sql, db_url=None):
        res = subprocess.run(["psql", db_url or self.env["DATABASE_URL"], "-X", "-q", "-A", "-t",
                              "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise RuntimeError("psql: " + res.stderr.strip()[-400:])
        return [line.split("\t") for line in res.stdout.splitlines() if line]

    def start(self, name, extra_env, args=None):
        env = dict(os.environ)
        env.update(self.env)
        env.update(extra_env)
        logf = open(os.path.join(self.tmp, name + ".log"), "ab")
        cmd = args or [self.binary(name)]
        p = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.procs[name] = p
        return p

    def wait_http(self, port, path="/readyz", timeout=60):
        import urllib.request
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                            timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("port %d%s did not answer 200 within %ds" % (port, path, timeout))

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        rss = peak_rss_mib(p.pid)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        return rss

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def metrics(self, port):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            return parse_metrics(r.read().decode())

    def prepare(self, name, count, mix):
        out = os.path.join(self.tmp, name + ".req")
        res = subprocess.run([sys.executable, os.path.join(HERE, "prepare.py"), "--out", out,
                              "--count", str(count), "--mix", mix, "--users",
                              str(self.p["users"]), "--run", "%s-%s" % (self.run_id, name)],
                             check=True, capture_output=True, text=True)
        return out, json.loads(res.stdout)

    def loadgen(self, port, reqfile, conns, rate=0, duration=None, warmup=None):
        cmd = [os.path.join(self.tools, "bench-loadgen"), "--target", "127.0.0.1:%d" % port,
               "--requests", reqfile, "--connections", str(conns),
               "--duration", str(duration or self.p["duration"]),
               "--warmup", str(self.p["warmup"] if warmup is None else warmup),
               "--rate", str(rate)]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(res.stdout)

    # ------------------------------------------------------------------ Kafka offsets

    def kafka_consumer(self, group):
        return Consumer({"bootstrap.servers": self.env["KAFKA_BROKERS"], "group.id": group,
                         "enable.auto.commit": False})

    def commit_at_end(self, group, topic):
        """Commit `group`'s offsets at the current end of `topic` (the group must be idle)."""
        c = self.kafka_consumer(group)
        try:
            md = c.list_topics(topic, timeout=10)
            parts = sorted(md.topics[topic].partitions)
            offs = []
            for p in parts:
                _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                offs.append(TopicPartition(topic, p, high))
            c.commit(offsets=offs, asynchronous=False)
            if topic == TOPIC_NORMALIZED:
                # The persister starts from the offsets stored with its rows (consumer_offsets),
                # not from Kafka's: without this it re-read everything since its last run (the
                # full run of 2026-11-26 17:06 met 2.7 M older records in its e2e phase).
                self.psql("INSERT INTO consumer_offsets (consumer_group, topic, kafka_partition, "
                          "next_offset) VALUES %s ON CONFLICT (consumer_group, topic, "
                          "kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
                          "updated_at = now()" % ", ".join(
                              "('%s', '%s', %d, %d)" % (group, topic, o.partition, o.offset)
                              for o in offs))
            return sum(o.offset for o in offs)
        finally:
            c.close()

    def topic_end(self, topic):
        c = self.kafka_consumer("auren-bench-probe")
        try:
            md = c.list_topics(topic, timeout=10)
            return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                       for p in md.topics[topic].partitions)
        finally:
            c.close()

    # ------------------------------------------------------------------ setup

    def setup(self):
        self.build_tools()
        stop_stack_binaries()
        self.psql("DELETE FROM biometric_events WHERE user_id LIKE 'bench-user-%'")
        self.psql("DELETE FROM connections WHERE user_id LIKE 'bench-user-%'")
        values = []
        for vendor in signing.VENDORS:
            numeric = vendor in ("whoop", "polar", "withings", "strava")
            vid = ("(900000000 + k)::text" if numeric
                   else "'bench-%s-' || k" % vendor.replace("_", "-"))
            values.append("SELECT '%s', %s, 'bench-user-%s-' || k FROM generate_series(0, %d) k"
                          % (vendor, vid, vendor.replace("_", "-"), self.p["users"] - 1))
        self.psql("INSERT INTO connections (vendor, vendor_user_id, user_id) %s "
                  "ON CONFLICT DO NOTHING" % " UNION ALL ".join(values))
        self.raw_start = self.commit_at_end(BENCH_PROC_GROUP, TOPIC_RAW)
        self.norm_start = self.commit_at_end(BENCH_PERS_GROUP, TOPIC_NORMALIZED)

    def restore(self):
        self.stop_all()
        for group, topic in STACK_GROUPS.items():
            try:
                self.commit_at_end(group, topic)
            except Exception as exc:  # noqa: BLE001 - report and go on restoring
                log("could not move %s past the bench's records: %s" % (group, exc))
        subprocess.run([os.path.join(ROOT, "scripts", "stack.sh"), "up"], check=False,
                       stdout=subprocess.DEVNULL)

    # ------------------------------------------------------------------ phases

    def gw_env(self, cap):
        # A spool of its own: the stack's (.state/spool) stays with the stack, and a lock left on
        # it (e.g. by a gateway the fault suite restarted that is still exiting) cannot stop the
        # bench's gateway from starting.
        return {"MAX_CONCURRENT_WEBHOOKS": str(cap), "HTTP_PORT": str(GW_PORT),
                "SPOOL_DIR": os.path.join(self.tmp, "spool")}

    def phase_ceiling(self):
        res = self.results["phases"].setdefault("http", {})
        p = self.start("ceiling", {}, [os.path.join(self.tools, "bench-ceiling"),
                                       str(CEIL_PORT)])
        time.sleep(0.5)
        if p.poll() is not None:
            raise RuntimeError("bench-ceiling did not start")
        req, shape = self.prepare("ceiling", self.p["requests"], "gateway")
        res["request_shape"] = shape
        res["ceiling_default"] = self.loadgen(CEIL_PORT, req, DEFAULT_CAP)
        res["ceiling_raised"] = self.loadgen(CEIL_PORT, req, self.p["raised_conns"])
        self.stop("ceiling")

    def phase_gateway(self):
        res = self.results["phases"].setdefault("http", {})
        for label, cap, conns in (("gateway_default", DEFAULT_CAP, DEFAULT_CAP),
                                  ("gateway_raised", RAISED_CAP, self.p["raised_conns"])):
            self.start("gateway", self.gw_env(cap))
            self.wait_http(GW_PORT)
            req, shape = self.prepare(label, self.p["requests"], "gateway")
            res.setdefault("request_shape", shape)
            r = self.loadgen(GW_PORT, req, conns)
            r["cap"] = cap
            r["peak_rss_mib"] = self.stop("gateway")
            res[label] = r
        if "ceiling_default" in res:
            res["ratio_default"] = ratio(res["gateway_default"]["ok_throughput"],
                                         res["ceiling_default"]["ok_throughput"])
            res["ratio_raised"] = ratio(res["gateway_raised"]["ok_throughput"],
                                        res["ceiling_raised"]["ok_throughput"])

    def drain(self, name, port, counter, expect_total, min_idle_s=3.0):
        """Run until `counter` reaches expect_total (or stops moving); returns the throughput
        over the busy span, the CPU seconds the process used, and its peak RSS."""
        p = self.procs[name]
        t_first = t_last = None
        first = last = None
        cpu0 = cpu_seconds(p.pid)
        deadline = time.monotonic() + self.p["drain_s"]
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            try:
                ms = self.metrics(port)
                v = sum(metric_sum(ms, c) for c in
                        ((counter,) if isinstance(counter, str) else counter))
            except OSError:
                continue
            now = time.monotonic()
            if first is None and v > 0:
                first, t_first = v, now
            if first is None:
                continue
            if last is None or v > last:
                last, t_last, idle_since = v, now, now
            if expect_total is not None and v >= expect_total:
                break
            if now - idle_since > min_idle_s and v > first:
                break
        cpu = cpu_seconds(p.pid) - cpu0
        span = (t_last - t_first) if t_first is not None and t_last is not None else 0
        done = (last or 0) - (first or 0)
        return {"count": done, "seconds": round(span, 3), "cpu_seconds": round(cpu, 3),
                "rate": round(done / span, 1) if span > 0 else 0.0,
                "per_cpu_second": round(done / cpu, 1) if cpu > 0 else 0.0,
                "peak_rss_mib": peak_rss_mib(p.pid)}

    def phase_processor(self):
        raw = self.topic_end(TOPIC_RAW) - self.raw_start
        # A data-bearing top-up, so the phase normalizes events and not only fetch jobs.
        self.start("gateway", self.gw_env(RAISED_CAP))
        self.wait_http(GW_PORT)
        req, _ = self.prepare("processor_fill", self.p["requests"], "data")
        self.loadgen(GW_PORT, req, self.p["raised_conns"], duration=self.p["duration"] / 2,
                     warmup=0)
        self.stop("gateway")
        raw = self.topic_end(TOPIC_RAW) - self.raw_start
        self.start("processor", {"PROCESSOR_GROUP_ID": BENCH_PROC_GROUP,
                                 "HTTP_PORT": str(PROC_PORT)})
        self.wait_http(PROC_PORT, "/healthz")
        r_raw = self.drain("processor", PROC_PORT, "auren_processor_raw_consumed_total", raw)
        m = self.metrics(PROC_PORT)
        events = metric_sum(m, "auren_processor_events_normalized_total")
        self.stop("processor")
        r = {"raw_records": raw, "raw": r_raw, "events": events}
        r["events_per_s"] = round(events / r_raw["seconds"], 1) if r_raw["seconds"] else 0.0
        r["events_per_cpu_second"] = (round(events / r_raw["cpu_seconds"], 1)
                                      if r_raw["cpu_seconds"] else 0.0)
        r["dlq"] = metric_sum(m, "auren_processor_dlq_records_total")
        r["fetch_jobs"] = metric_sum(m, "auren_processor_fetch_jobs_total")
        return r

    def phase_persister(self):
        if "processor" not in self.phases:
            # Nothing normalized yet in this run: a processor fills the topic, unmeasured.
            self.results.setdefault("fills", {})["processor"] = self.phase_processor()
        norm = self.topic_end(TOPIC_NORMALIZED) - self.norm_start
        t0 = self.psql("SELECT now()")[0][0]
        self.start("persister", {"PERSISTER_GROUP_ID": BENCH_PERS_GROUP,
                                 "HTTP_PORT": str(PERS_PORT)})
        self.wait_http(PERS_PORT, "/healthz")
        # Every record the persister takes off the topic counts (a new row or a duplicate it
        # skipped): the gateway phases replay their request files, so most records repeat.
        r = self.drain("persister", PERS_PORT, ("auren_persister_rows_inserted_total",
                                                "auren_persister_rows_duplicate_total"), norm)
        m = self.metrics(PERS_PORT)
        self.stop("persister")
        r["normalized_records"] = norm
        r["inserted"] = metric_sum(m, "auren_persister_rows_inserted_total")
        r["duplicates"] = metric_sum(m, "auren_persister_rows_duplicate_total")
        r["new_rows_per_s"] = round(r["inserted"] / r["seconds"], 1) if r["seconds"] else 0.0
        # psql \copy of the same rows into a table of the same shape (indexes included).
        cols = ("event_id, user_id, vendor, metric, value, unit, loinc, start_time, end_time, "
                "utc_offset_seconds, source_record_id, raw_event_id, ingested_at, received_at, "
                "deleted")
        dump = os.path.join(self.tmp, "rows.copy")
        self.psql("DROP TABLE IF EXISTS bench_copy_target")
        self.psql("CREATE TABLE bench_copy_target (LIKE biometric_events INCLUDING ALL)")
        try:
            subprocess.run(["psql", self.env["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-c", "\\copy (SELECT %s FROM biometric_events WHERE persisted_at >= "
                            "'%s' AND user_id LIKE 'bench-user-%%') TO '%s'" % (cols, t0, dump)],
                           check=True, capture_output=True)
            with open(dump, "rb") as fh:
                nrows = sum(1 for _ in fh)
            t = time.monotonic()
            subprocess.run(["psql", self.env["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-c", "\\copy bench_copy_target (%s) FROM '%s'" % (cols, dump)],
                           check=True, capture_output=True)
            secs = time.monotonic() - t
        finally:
            self.psql("DROP TABLE IF EXISTS bench_copy_target")
        r["copy"] = {"rows": nrows, "seconds": round(secs, 3),
                     "rate": round(nrows / secs, 1) if secs > 0 else 0.0}
        r["copy_ratio"] = ratio(r["rate"], r["copy"]["rate"])
        r["copy_ratio_new_rows"] = ratio(r["new_rows_per_s"], r["copy"]["rate"])
        return r

    def phase_e2e(self):
        # No backlog from the phases before (or from those a --phases subset left out): the
        # latency is that of the offered rate alone.
        self.commit_at_end(BENCH_PROC_GROUP, TOPIC_RAW)
        self.commit_at_end(BENCH_PERS_GROUP, TOPIC_NORMALIZED)
        self.start("persister", {"PERSISTER_GROUP_ID": BENCH_PERS_GROUP,
                                 "HTTP_PORT": str(PERS_PORT)})
        self.start("processor", {"PROCESSOR_GROUP_ID": BENCH_PROC_GROUP,
                                 "HTTP_PORT": str(PROC_PORT)})
        self.start("gateway", self.gw_env(RAISED_CAP))
        for port in (PERS_PORT, PROC_PORT, GW_PORT):
            self.wait_http(port)
        out = {}
        for rate in self.p["e2e_rates"]:
            dur = self.p["e2e_duration"]
            count = int(rate * (dur + 2) * 1.05) + 10
            req, _ = self.prepare("e2e-%d" % rate, count, "data")
            h0 = self.metrics(PERS_PORT)
            rows0 = metric_sum(h0, "auren_persister_rows_inserted_total")
            t0 = self.psql("SELECT now()")[0][0]
            lg = self.loadgen(GW_PORT, req, self.p["raised_conns"], rate=rate, duration=dur,
                              warmup=1)
            # Let the pipeline drain what this rate put in.
            last, idle = -1, time.monotonic()
            end = time.monotonic() + self.p["drain_s"]
            while time.monotonic() < end and time.monotonic() - idle < 3:
                v = metric_sum(self.metrics(PERS_PORT), "auren_persister_rows_inserted_total")
                if v != last:
                    last, idle = v, time.monotonic()
                time.sleep(0.5)
            h1 = self.metrics(PERS_PORT)
            hist = hist_delta(h0, h1, "auren_pipeline_e2e_latency_seconds")
            rows = self.psql(
                "SELECT count(*), "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY d), "
                "percentile_cont(0.99) WITHIN GROUP (ORDER BY d) FROM ("
                "SELECT extract(epoch FROM persisted_at - received_at) * 1000 AS d "
                "FROM biometric_events WHERE received_at >= '%s' "
                "AND user_id LIKE 'bench-user-%%') s" % t0)[0]
            out[str(rate)] = {
                "offered_rate": rate, "http": lg,
                "rows": metric_sum(h1, "auren_persister_rows_inserted_total") - rows0,
                "histogram_p50_ms": hist_pct_ms(hist, 0.5),
                "histogram_p99_ms": hist_pct_ms(hist, 0.99),
                "rows_counted": int(rows[0]),
                "rows_p50_ms": round(float(rows[1]), 1) if rows[1] else None,
                "rows_p99_ms": round(float(rows[2]), 1) if rows[2] else None,
            }
        rss = {n: peak_rss_mib(self.procs[n].pid) for n in ("gateway", "processor", "persister")}
        self.stop_all()
        return {"rates": out, "peak_rss_mib": rss}

    # ------------------------------------------------------------------ run

    def run(self):
        self.results["machine"] = machine()
        self.results["started_at"] = datetime.datetime.utcnow().isoformat() + "Z"
        self.results["load_before"] = os.getloadavg()
        self.setup()
        try:
            for ph in self.phases:
                log(ph)
                out = getattr(self, "phase_" + ph)()
                if out is not None:
                    self.results["phases"][ph] = out
        finally:
            self.results["load_after"] = os.getloadavg()
            self.restore()
        self.results["summary"] = summarize(self.results)
        return self.results


# ---------------------------------------------------------------------- helpers

def stop_stack_binaries():
    """Stop the stack's gateway, processor and persister (their pidfiles in .state/run)."""
    for name in ("gateway", "processor", "persister"):
        pidfile = os.path.join(ROOT, ".state", "run", name + ".pid")
        try:
            with open(pidfile) as fh:
                pid = int(fh.read().split()[0])
            with open("/proc/%d/cmdline" % pid, "rb") as fh:
                if b"/auren-" + name.encode() not in fh.read():
                    continue
        except (OSError, ValueError, IndexError):
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            if not os.path.exists("/proc/%d" % pid):
                break
            time.sleep(0.2)


def peak_rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text):
    out = []
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out.append((m.group(1), m.group(2) or "", float(m.group(3))))
    return out


def metric_sum(metrics, name):
    return sum(v for n, _, v in metrics if n == name)


def hist_delta(before, after, name):
    """{le: count} of a histogram's buckets between two scrapes."""
    def buckets(ms):
        out = {}
        for n, labels, v in ms:
            if n == name + "_bucket":
                le = re.search(r'le="([^"]+)"', labels).group(1)
                out[float("inf") if le == "+Inf" else float(le)] = \
                    out.get(float("inf") if le == "+Inf" else float(le), 0) + v
        return out
    b0, b1 = buckets(before), buckets(after)
    return {le: b1[le] - b0.get(le, 0) for le in sorted(b1)}


def hist_pct_ms(cum, q):
    """Percentile from cumulative buckets, linear within the bucket (as Prometheus does)."""
    if not cum:
        return None
    total = cum[max(cum)]
    if total <= 0:
        return None
    want = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in sorted(cum):
        c = cum[le]
        if c >= want:
            if le == float("inf"):
                return round(prev_le * 1000, 1)
            frac = (want - prev_c) / (c - prev_c) if c > prev_c else 1.0
            return round((prev_le + (le - prev_le) * frac) * 1000, 1)
        prev_le, prev_c = le, c
    return None


def ratio(a, b):
    return round(a / b, 3) if b else None


def machine():
    def read(path):
        try:
            with open(path) as fh:
                return fh.read()
        except OSError:
            return ""
    cpu = re.search(r"model name\s*:\s*(.*)", read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+)", read("/proc/meminfo"))
    return {"cpu": cpu.group(1) if cpu else platform.processor(), "cores": os.cpu_count(),
            "mem_gib": round(int(mem.group(1)) / 1048576, 1) if mem else None,
            "kernel": platform.release(), "host": platform.node()}


def summarize(r):
    """The headline figures of the phases that ran, and which targets they meet."""
    ph = r["phases"]
    http, e2e = ph.get("http", {}), ph.get("e2e")
    proc, pers = ph.get("processor"), ph.get("persister")
    s = {}
    if "ceiling_default" in http:
        s["ceiling_default_rps"] = http["ceiling_default"]["ok_throughput"]
        s["ceiling_raised_rps"] = http["ceiling_raised"]["ok_throughput"]
    for label, key in (("gateway_default", "gateway_default_cap"),
                       ("gateway_raised", "gateway_raised_cap")):
        if label in http:
            g = http[label]
            s[key + "_rps"] = g["ok_throughput"]
            for pct in ("p50", "p99", "p999"):
                s["%s_%s_ms" % (key, pct)] = g["latency_ok"][pct + "_us"] / 1000
    if "ratio_raised" in http:
        s["gateway_raised_cap_ratio"] = http["ratio_raised"]
    if proc:
        s["processor_events_per_s"] = proc["events_per_s"]
        s["processor_events_per_core_s"] = proc["events_per_cpu_second"]
        s["processor_raw_per_s"] = proc["raw"]["rate"]
    if pers:
        s["persister_rows_per_s"] = pers["rate"]
        s["persister_new_rows_per_s"] = pers.get("new_rows_per_s")
        s["persister_duplicate_share"] = ratio(pers.get("duplicates", 0),
                                               pers.get("inserted", 0) + pers.get("duplicates", 0))
        s["copy_rows_per_s"] = pers["copy"]["rate"]
        s["persister_copy_ratio"] = pers["copy_ratio"]
    if e2e:
        rates = e2e["rates"]
        top = rates[str(max(int(k) for k in rates))]
        s["e2e_top_rate"] = top["offered_rate"]
        s["e2e_p50_ms"] = top["histogram_p50_ms"]
        s["e2e_p99_ms"] = top["histogram_p99_ms"]
    e2e_rss = e2e["peak_rss_mib"] if e2e else {}
    for name, seen in (("gateway", [http.get(x, {}).get("peak_rss_mib")
                                    for x in ("gateway_default", "gateway_raised")]),
                       ("processor", [proc["raw"]["peak_rss_mib"] if proc else None]),
                       ("persister", [pers["peak_rss_mib"] if pers else None])):
        seen = [x for x in seen + [e2e_rss.get(name)] if x is not None]
        if seen:
            s[name + "_rss_mib"] = max(seen)
    checks = {
        "gateway_default_cap_rps": lambda: s["gateway_default_cap_rps"] >= TARGETS[
            "gateway_default_cap_rps"],
        "gateway_default_cap_p99_ms": lambda: s["gateway_default_cap_p99_ms"] <= TARGETS[
            "gateway_default_cap_p99_ms"],
        "gateway_raised_cap_ratio": lambda: (s["gateway_raised_cap_ratio"] or 0) >= TARGETS[
            "gateway_raised_cap_ratio"],
        "e2e_p99_ms_at_5000": lambda: (s["e2e_top_rate"] >= 5000 and s["e2e_p99_ms"] is not None
                                       and s["e2e_p99_ms"] <= TARGETS["e2e_p99_ms_at_5000"]),
        "processor_events_per_core_s": lambda: s["processor_events_per_core_s"] >= TARGETS[
            "processor_events_per_core_s"],
        "persister_copy_ratio": lambda: (s["persister_copy_ratio"] or 0) >= TARGETS[
            "persister_copy_ratio"],
        "gateway_rss_mib": lambda: s["gateway_rss_mib"] <= TARGETS["gateway_rss_mib"],
    }
    met = {}
    for key, check in checks.items():
        try:
            met[key] = check()
        except KeyError:
            pass  # the phase that measures it did not run
    s["targets_met"] = met
    return s


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float) and v >= 100:
        return "{:,.0f}{}".format(v, unit)
    if isinstance(v, float):
        return "{:.3g}{}".format(v, unit)
    return "{:,}{}".format(v, unit)


def table(r):
    s = r["summary"]
    m = r["machine"]
    met = s["targets_met"]

    def mark(k):
        return "met" if met.get(k) else "NOT met"

    def f(key, unit=""):
        return fmt(s[key], unit)
    http = r["phases"].get("http", {})
    # (summary keys the row needs, measure, result, target): rows of phases that did not run
    # are left out.
    rows = [
        (("ceiling_default_rps",), "HTTP ceiling (bare libmicrohttpd), 40 / %s conns" % (
            http.get("ceiling_raised", {}).get("connections")),
         lambda: "%s / %s req/s" % (f("ceiling_default_rps"), f("ceiling_raised_rps")), ""),
        (("gateway_default_cap_rps",), "gateway, cap 40: durable webhooks/s",
         lambda: f("gateway_default_cap_rps"), ">= 10,000: " + mark("gateway_default_cap_rps")),
        (("gateway_default_cap_rps",), "gateway, cap 40: p50 / p99 / p99.9",
         lambda: "%s / %s / %s ms" % (f("gateway_default_cap_p50_ms"),
                                      f("gateway_default_cap_p99_ms"),
                                      f("gateway_default_cap_p999_ms")),
         "p99 <= 20 ms: " + mark("gateway_default_cap_p99_ms")),
        (("gateway_raised_cap_rps",), "gateway, cap %d: durable webhooks/s" % RAISED_CAP,
         lambda: f("gateway_raised_cap_rps"), ""),
        (("gateway_raised_cap_rps",), "gateway, cap %d: p50 / p99 / p99.9" % RAISED_CAP,
         lambda: "%s / %s / %s ms" % (f("gateway_raised_cap_p50_ms"),
                                      f("gateway_raised_cap_p99_ms"),
                                      f("gateway_raised_cap_p999_ms")), ""),
        (("gateway_raised_cap_ratio",), "gateway / ceiling, raised cap",
         lambda: f("gateway_raised_cap_ratio"), ">= 0.5: " + mark("gateway_raised_cap_ratio")),
    ]
    e2e = r["phases"].get("e2e", {"rates": {}})
    for k, e in sorted(e2e["rates"].items(), key=lambda x: int(x[0])):
        rows.append(((), "end to end at %s/s offered: p50 / p99 (histogram)" % k,
                     lambda e=e: "%s / %s ms" % (fmt(e["histogram_p50_ms"]),
                                                 fmt(e["histogram_p99_ms"])),
                     ("p99 <= 250 ms at 5,000/s: " + mark("e2e_p99_ms_at_5000"))
                     if int(k) == 5000 else ""))
        rows.append(((), "  rows: persisted_at - received_at p50 / p99",
                     lambda e=e: "%s / %s ms (%s rows)" % (
                         fmt(e["rows_p50_ms"]), fmt(e["rows_p99_ms"]), fmt(e["rows_counted"])),
                     ""))
        rows.append(((), "  HTTP at that rate: 2xx/s, p99",
                     lambda e=e: "%s/s, %s ms" % (fmt(e["http"]["ok_throughput"]),
                                                  fmt(e["http"]["latency"]["p99_us"] / 1000)),
                     ""))
    rows += [
        (("processor_events_per_s",), "processor: events/s (raw/s)",
         lambda: "%s (%s)" % (f("processor_events_per_s"), f("processor_raw_per_s")), ""),
        (("processor_events_per_core_s",), "processor: events per CPU-second",
         lambda: f("processor_events_per_core_s"),
         ">= 100,000: " + mark("processor_events_per_core_s")),
        (("persister_rows_per_s",),
         "persister: records/s (new rows/s; duplicate share) vs psql \\copy",
         lambda: "%s (%s; %s) vs %s" % (f("persister_rows_per_s"),
                                        f("persister_new_rows_per_s"),
                                        f("persister_duplicate_share"), f("copy_rows_per_s")),
         ""),
        (("persister_copy_ratio",), "persister / \\copy", lambda: f("persister_copy_ratio"),
         ">= 0.8: " + mark("persister_copy_ratio")),
        ((), "peak RSS gateway / processor / persister",
         lambda: "%s / %s / %s MiB" % tuple(fmt(s.get(n + "_rss_mib"))
                                           for n in ("gateway", "processor", "persister")),
         ("gateway <= 64 MiB: " + mark("gateway_rss_mib")) if "gateway_rss_mib" in s else ""),
    ]
    out = ["machine: %s, %s cores, %s GiB; load average before/after: %s / %s" % (
        m["cpu"], m["cores"], m["mem_gib"],
        " ".join("%.2f" % x for x in r["load_before"]),
        " ".join("%.2f" % x for x in r["load_after"])),
        "profile: %s, %s; phases: %s" % (r["profile"], r["started_at"],
                                         ",".join(r["phases_run"])), "",
        "| measure | result | target |", "| --- | --- | --- |"]
    out += ["| %s | %s | %s |" % (measure, result(), target)
            for need, measure, result, target in rows if all(k in s for k in need)]
    return "\n".join(out)


def parse_phases(text):
    phases = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in phases if x not in PHASES]
    if unknown or not phases:
        raise argparse.ArgumentTypeError("phases are a comma-separated subset of %s" %
                                         ",".join(PHASES))
    return phases


def main():
    ap = argparse.ArgumentParser(description="Auren benchmark (see bench/README.md)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--build-dir", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--phases", type=parse_phases, default=list(PHASES),
                    help="comma-separated subset of %s (default: all)" % ",".join(PHASES))
    args = ap.parse_args()
    build = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(ROOT,
                                                                               args.build_dir)
    b = Bench(args.profile, build, args.phases)
    res = b.run()
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.out_dir, "%s-%s.json" % (args.profile, stamp))
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(table(res))
    print("\nresults: %s" % os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
