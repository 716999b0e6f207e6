#!/usr/bin/python3
"""Runs the ctest suite of a build tree (default build/) under valgrind memcheck: every test whose
command is one of our executables runs under valgrind with the test's environment and working
directory (python-driven tests such as avro_interop are skipped: they exercise no C of ours
beyond what the C tests run). A test fails on any memcheck report (invalid access, use of
uninitialised values, definite or indirect leaks) as well as on its own failure.
Suppressions: tests/memcheck/valgrind.supp, third-party libraries only, each explained there.
Usage: run.py [BUILD_DIR] [-j N] [-R REGEX]; prints per-test time and the total."""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
VALGRIND = ["valgrind", "--tool=memcheck", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
            "--track-origins=no", "--num-callers=30", "--trace-children=no",
            "--suppressions=" + os.path.join(HERE, "valgrind.supp"), "--quiet"]


def tests_of(build, regex):
    out = subprocess.run(["ctest", "--test-dir", build, "--show-only=json-v1"], check=True,
                         capture_output=True, text=True).stdout
    for t in json.loads(out)["tests"]:
        cmd = t.get("command") or []
        if not cmd or not os.path.realpath(cmd[0]).startswith(os.path.realpath(build)):
            continue
        if regex and not re.search(regex, t["name"]):
            continue
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        yield t["name"], cmd, props


def run_one(name, cmd, props, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    for kv in props.get("ENVIRONMENT", []):
        k, _, v = kv.partition("=")
        env[k] = v
    # Check forks each test by default; under valgrind keep one process so leaks are attributed.
    env.setdefault("CK_FORK", "no")
    timeout = float(props.get("TIMEOUT", 300)) * 10
    start = time.monotonic()
    try:
        p = subprocess.run(VALGRIND + cmd, cwd=props.get("WORKING_DIRECTORY"), env=env,
                           capture_output=True, text=True, timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, out = -1, "timeout after %.0fs" % timeout
    return name, rc, out, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("-j", type=int, default=2)
    ap.add_argument("-R", default="")
    a = ap.parse_args()
    start = time.monotonic()
    failed = []
    with ThreadPoolExecutor(max_workers=a.j) as ex:
        found = list(tests_of(a.build, a.R))
        props_of = {n: p for n, _, p in found}
        futs = [ex.submit(run_one, n, c, p, {}) for n, c, p in found]
        for f in futs:
            name, rc, out, secs = f.result()
            skip = props_of[name].get("SKIP_RETURN_CODE")
            if skip is not None and rc == int(skip):
                print("memcheck: %-40s %6.1fs skipped" % (name, secs), flush=True)
                continue
            status = "ok" if rc == 0 else ("MEMCHECK" if rc == 99 else "FAILED rc=%d" % rc)
            print("memcheck: %-40s %6.1fs %s" % (name, secs, status), flush=True)
            if rc != 0:
                failed.append(name)
                sys.stderr.write(out[-6000:] + "\n")
    print("memcheck: %d failed, total %.0fs" % (len(failed), time.monotonic() - start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
