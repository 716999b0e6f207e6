"""Alert rules ops/prometheus/auren-rules.yml: promtool check and unit tests, every selected metric
exists on the live binaries, every alert has a runbook section, and k8s/base/prometheusrule.yaml
is the generated copy (one source)."""

import os
import re

import pytest
import yaml

import opslib

RULES = os.path.join(opslib.ROOT, "ops", "prometheus", "auren-rules.yml")
RULES_TEST = os.path.join(opslib.ROOT, "ops", "prometheus", "auren-rules.test.yml")
PROMRULE = os.path.join(opslib.ROOT, "k8s", "base", "prometheusrule.yaml")
RUNBOOK = os.path.join(opslib.ROOT, "docs", "RUNBOOK.md")


def _rules():
    with open(RULES, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_check_rules():
    r = opslib.run([opslib.PROMTOOL, "check", "rules", RULES])
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_promtool_test_rules():
    r = opslib.run([opslib.PROMTOOL, "test", "rules", RULES_TEST])
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_prometheusrule_is_generated_from_the_rules():
    r = opslib.run(["/usr/bin/python3", os.path.join(opslib.ROOT, "ops", "gen-prometheusrule.py"),
                    "--check"])
    assert r.returncode == 0, r.stderr
    with open(PROMRULE, encoding="utf-8") as f:
        pr = yaml.safe_load(f)
    with open(RULES, encoding="utf-8") as f:
        src = yaml.safe_load(f)
    assert pr["kind"] == "PrometheusRule" and pr["spec"]["groups"] == src["groups"]


def test_every_alert_has_a_runbook_section():
    with open(RUNBOOK, encoding="utf-8") as f:
        headings = {m.group(1).strip().lower()
                    for m in re.finditer(r"^#{2,4}\s+`?([A-Za-z]+)`?\s*$", f.read(), re.M)}
    for rule in _rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == "docs/RUNBOOK.md#" + name.lower()
        assert name.lower() in headings, "docs/RUNBOOK.md has no section '### %s'" % name
        assert rule["labels"]["severity"] in ("critical", "warning")


def test_rules_reference_live_metrics():
    status = opslib.wait_all_ready(30)
    assert all(s == 200 for s in status.values()), "stack not ready (make up): %s" % status
    fams = opslib.live_families()
    problems = []
    for rule in _rules():
        for name in opslib.metric_refs(rule["expr"]):
            if name in opslib.PROMETHEUS_SYNTHETIC:
                continue
            if opslib.family_of(name, fams) is None:
                problems.append("%s: %s is not on any live /metrics" % (rule["alert"], name))
        problems.extend(opslib.label_problems(rule["alert"], rule["expr"], fams))
    assert not problems, "\n".join(problems)
