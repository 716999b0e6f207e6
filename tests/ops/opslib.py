"""Helpers of the operations tests: where the stack and the tools are, reading a live /metrics,
and pulling metric and label names out of PromQL text. Uses the e2e suite's stack addresses."""

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import e2elib  # noqa: E402

STATE = os.path.join(ROOT, ".state")
VENV_BIN = os.path.join(STATE, "venv", "bin")
KUSTOMIZE = os.path.join(STATE, "bin", "kustomize")
PROMTOOL = "/usr/bin/promtool"
BINARIES = e2elib.BINARIES  # [(name, base url)]

# Series Prometheus itself adds to every scrape (not exposed by the binaries).
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# PromQL words that look like metric names.
PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "and", "or",
    "unless", "on", "ignoring", "group_left", "group_right", "absent", "max", "min", "avg",
    "count", "deriv", "delta", "topk", "bottomk", "le", "offset", "bool", "vector", "clamp_min",
    "max_over_time", "min_over_time", "avg_over_time", "label_replace", "time", "scalar",
}


def get(url, timeout=5.0):
    """(status, body text) of a GET; status None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None, ""


def wait_all_ready(deadline_s=60.0):
    end = time.monotonic() + deadline_s
    while True:
        status = {name: get(base + "/readyz", 2.0)[0] for name, base in BINARIES}
        if all(s == 200 for s in status.values()) or time.monotonic() > end:
            return status
        time.sleep(0.5)


def scrape(base):
    status, text = get(base + "/metrics")
    assert status == 200, "%s/metrics answered %s" % (base, status)
    return text


def families(text):
    """{family name: {"type": t, "labels": set of label names, "series": n}} of an exposition
    text. A labelled family without series yet (no event of that kind so far) shows no label
    names: callers check labels only where "series" > 0."""
    fams = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ
            fams.setdefault(name, {"type": typ, "labels": set(), "series": 0})
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
            if not m:
                continue
            name = m.group(1)
            for suffix in ("_bucket", "_sum", "_count"):
                base = name[: -len(suffix)]
                if name.endswith(suffix) and types.get(base) == "histogram":
                    name = base
                    break
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            labels.discard("le")
            fams.setdefault(name, {"type": types.get(name, "untyped"), "labels": set(),
                                   "series": 0})
            fams[name]["labels"] |= labels
            fams[name]["series"] += 1
    return fams


def live_families():
    """Union of the families of the three binaries, with their label names."""
    out = {}
    for _, base in BINARIES:
        for name, info in families(scrape(base)).items():
            out.setdefault(name, {"type": info["type"], "labels": set(), "series": 0})
            out[name]["labels"] |= info["labels"]
            out[name]["series"] += info["series"]
    return out


def _strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_refs(expr):
    """Metric names a PromQL expression selects (histogram suffixes kept)."""
    text = _strip_strings(expr)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        word = m.group(1)
        if word in PROMQL_WORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def family_of(name, fams):
    if name in fams:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and fams.get(base, {}).get("type") == "histogram":
            return base
    return None


def label_refs(expr):
    """[(metric name, label name)] of matchers, and [label names] of by/without clauses."""
    matchers = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr):
        for lab in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"', m.group(2)):
            matchers.append((m.group(1), lab))
    grouping = []
    for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        grouping.extend(x.strip() for x in m.group(1).split(",") if x.strip())
    return matchers, grouping


def label_problems(where, expr, fams):
    """Label names that `expr` matches on or groups by and that the live series of the metrics
    it selects do not carry (families without series are not judged)."""
    problems = []
    refs = metric_refs(expr)
    matchers, grouping = label_refs(expr)
    for name, lab in matchers:
        fam = family_of(name, fams)
        if fam is not None and fams[fam]["series"] and lab not in fams[fam]["labels"]:
            problems.append("%s: %s has no label %s" % (where, name, lab))
    judged = [family_of(n, fams) for n in refs]
    judged = [f for f in judged if f is not None and fams[f]["series"]]
    if judged:
        known = set().union(*(fams[f]["labels"] for f in judged))
        for lab in grouping:
            if lab != "le" and lab not in known and len(judged) == len(refs):
                problems.append("%s: grouping label %s is on none of %s" % (where, lab,
                                                                          sorted(refs)))
    return problems


def run(cmd, stdin=None, timeout=300):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
