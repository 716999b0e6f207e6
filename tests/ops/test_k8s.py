"""k8s/: kustomize builds the base, the prod overlay and the Kafka topics; every rendered
resource validates against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown
fields fail). The custom resources (Strimzi KafkaTopic, Prometheus Operator ServiceMonitor and
PrometheusRule) have no schema there: kubernetes-validate skips them with a warning, and this file
checks their important fields itself. Plus the rules of the issue: probes, resources, non-root
read-only containers, config from the ConfigMap, secrets only by reference, HPA limits within the
partition counts, a PDB per stage, the gateway's spool volume, and the container build files."""

import os
import re

import pytest
import yaml

import opslib

K8S = os.path.join(opslib.ROOT, "k8s")
KUBE_VERSION = "1.31.0"
BUILDS = ("base", "overlays/prod", "kafka")
CRD_KINDS = {"KafkaTopic", "ServiceMonitor", "PrometheusRule"}
STAGES = ("gateway", "processor", "persister")
TOPICS = ("biometric.raw.v1", "biometric.normalized.v1", "biometric.fetch.v1",
          "biometric.fetch.retry.v1", "biometric.dlq.v1")


def _build(path):
    r = opslib.run([opslib.KUSTOMIZE, "build", os.path.join(K8S, path)])
    assert r.returncode == 0, "kustomize build k8s/%s:\n%s" % (path, r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def rendered():
    assert os.access(opslib.KUSTOMIZE, os.X_OK), "kustomize missing: run scripts/deps.sh"
    return {p: _build(p) for p in BUILDS}


def _docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def _by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("path", BUILDS)
def test_schema_validation(rendered, path, tmp_path):
    f = tmp_path / "rendered.yaml"
    f.write_text(rendered[path])
    r = opslib.run([os.path.join(opslib.VENV_BIN, "kubernetes-validate"), "--strict",
                    "-k", KUBE_VERSION, str(f)])
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "ERROR" not in out, out
    skipped = set(re.findall(r"Couldn't find schema for kind (\w+)", out))
    assert skipped <= CRD_KINDS, "resources validated by no schema: %s" % (skipped - CRD_KINDS)
    kinds = {d["kind"] for d in _docs(rendered[path])}
    validated = kinds - CRD_KINDS
    assert path == "kafka" or validated, "nothing validated"


def test_spool_drain_pod(rendered, tmp_path):
    """k8s/tools/gateway-spool-drain.yaml, filled in as the runbook does, validates; it mounts a
    gateway's claim at SPOOL_DIR, stays out of the Service and inside the gateway's egress policy."""
    with open(os.path.join(K8S, "tools", "gateway-spool-drain.yaml"), encoding="utf-8") as f:
        text = f.read().replace("@ORDINAL@", "3").replace(
            "@IMAGE@", "registry.example.internal/auren/auren-gateway:0.1.0")
    f = tmp_path / "drain.yaml"
    f.write_text(text)
    r = opslib.run([os.path.join(opslib.VENV_BIN, "kubernetes-validate"), "--strict",
                    "-k", KUBE_VERSION, str(f)])
    assert r.returncode == 0 and "ERROR" not in r.stdout + r.stderr, r.stdout + r.stderr
    (pod,) = _docs(text)
    docs = _docs(rendered["overlays/prod"])
    cfg = _by_kind(docs, "ConfigMap")["auren-config"]["data"]
    (c,) = pod["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts.get(cfg["SPOOL_DIR"]) == "spool"
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["spec"]["volumes"]}
    sts = _by_kind(docs, "StatefulSet")["auren-gateway"]
    tmpl = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert claims["spool"]["claimName"] == "%s-%s-3" % (tmpl, sts["metadata"]["name"])
    labels = pod["metadata"]["labels"]
    svc = _by_kind(docs, "Service")["auren-gateway"]["spec"]["selector"]
    assert any(labels.get(k) != v for k, v in svc.items()), "the drain pod must not get webhooks"
    sel = _by_kind(docs, "NetworkPolicy")["auren-gateway"]["spec"]["podSelector"]
    (expr,) = sel["matchExpressions"]
    assert expr["operator"] == "In" and labels[expr["key"]] in expr["values"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_validation_catches_a_bad_manifest(tmp_path):
    """The validator is strict for the built-in kinds (an unknown field fails)."""
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n")
    r = opslib.run([os.path.join(opslib.VENV_BIN, "kubernetes-validate"), "--strict",
                    "-k", KUBE_VERSION, str(f)])
    assert r.returncode != 0


def _workloads(docs):
    """The three stages: the gateway a StatefulSet (its spool), the others Deployments."""
    out = dict(_by_kind(docs, "Deployment"))
    out.update(_by_kind(docs, "StatefulSet"))
    return out


def test_deployments(rendered):
    docs = _docs(rendered["overlays/prod"])
    deps = _workloads(docs)
    assert set(deps) == {"auren-" + s for s in STAGES}
    assert set(_by_kind(docs, "StatefulSet")) == {"auren-gateway"}
    for name, d in deps.items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            for k in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][k]), name
            refs = c.get("envFrom", [])
            assert {"name": "auren-config"} in [r.get("configMapRef") for r in refs], name
            assert any(r.get("secretRef") for r in refs), name
            for env in c.get("env", []):
                assert not re.search(r"SECRET|TOKEN|PASSWORD|KEY|DATABASE_URL|REDIS_URL",
                                     env["name"]) or "valueFrom" in env, (name, env["name"])
            assert re.match(r"registry\.example\.internal/auren/" + name + ":", c["image"])
    assert not _by_kind(docs, "Secret"), "no Secret (and no secret value) is committed"


def test_gateway_spool_volume(rendered):
    """The gateway's spool: a claim per replica mounted at SPOOL_DIR (the only writable path
    besides /tmp under a read-only root), kept on scale-down, and a grace period that covers the
    preStop pause plus the SIGTERM drain (DELIVERY_TIMEOUT_MS + 2 s, flush 2 s)."""
    docs = _docs(rendered["overlays/prod"])
    cfg = _by_kind(docs, "ConfigMap")["auren-config"]["data"]
    sts = _by_kind(docs, "StatefulSet")["auren-gateway"]["spec"]
    assert sts["serviceName"] in _by_kind(docs, "Service")
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain",
                                                           "whenDeleted": "Retain"}
    claims = {c["metadata"]["name"]: c for c in sts["volumeClaimTemplates"]}
    assert set(claims) == {"spool"}
    assert claims["spool"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    size = claims["spool"]["spec"]["resources"]["requests"]["storage"]
    units = {"Mi": 1 << 20, "Gi": 1 << 30}
    limit = cfg["SPOOL_MAX_BYTES"]
    limit_bytes = int(limit[:-1]) * {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[limit[-1]]
    assert int(size[:-2]) * units[size[-2:]] > limit_bytes, "claim smaller than SPOOL_MAX_BYTES"
    pod = sts["template"]["spec"]
    (c,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts.get(cfg["SPOOL_DIR"]) == "spool"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(cfg["DELIVERY_TIMEOUT_MS"]) / 1000 + 2 + 2
    assert pod["terminationGracePeriodSeconds"] > pre + drain
    hpa = _by_kind(docs, "HorizontalPodAutoscaler")["auren-gateway"]["spec"]["scaleTargetRef"]
    assert hpa == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "auren-gateway"}


def test_services_and_monitoring(rendered):
    docs = _docs(rendered["overlays/prod"])
    svcs = _by_kind(docs, "Service")
    assert set(svcs) == {"auren-" + s for s in STAGES}
    sm = _by_kind(docs, "ServiceMonitor")["auren-bridge"]
    ports = {e["port"] for e in sm["spec"]["endpoints"]}
    for name, svc in svcs.items():
        labels = svc["metadata"]["labels"]
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            assert labels.get(k) == v, "ServiceMonitor does not select %s" % name
        assert {p["name"] for p in svc["spec"]["ports"]} & ports, name
    pr = _by_kind(docs, "PrometheusRule")["auren-bridge"]
    assert pr["spec"]["groups"], "empty PrometheusRule"


def test_autoscaling_within_partitions(rendered):
    topics = {t["spec"]["topicName"]: t for t in _docs(rendered["kafka"])}
    inputs = {"auren-processor": "biometric.raw.v1", "auren-persister": "biometric.normalized.v1"}
    for path in ("base", "overlays/prod"):
        docs = _docs(rendered[path])
        hpas = _by_kind(docs, "HorizontalPodAutoscaler")
        assert {"auren-gateway", "auren-processor"} <= set(hpas)
        gw = hpas["auren-gateway"]["spec"]
        kinds = {m["type"] for m in gw["metrics"]}
        assert {"Resource", "Pods"} <= kinds, "gateway HPA needs CPU and in-flight"
        assert any(m.get("pods", {}).get("metric", {}).get("name") == "auren_gateway_in_flight"
                   for m in gw["metrics"])
        for dep, topic in inputs.items():
            limit = topics[topic]["spec"]["partitions"]
            if dep in hpas:
                assert hpas[dep]["spec"]["maxReplicas"] <= limit, (path, dep)
            replicas = _workloads(docs)[dep]["spec"].get("replicas", 1)
            assert replicas <= limit, (path, dep)
        pdbs = _by_kind(docs, "PodDisruptionBudget")
        assert set(pdbs) == {"auren-" + s for s in STAGES}
        nps = _by_kind(docs, "NetworkPolicy")
        assert "auren-default-deny" in nps and all("auren-" + s in nps for s in STAGES)


def test_kafka_topics(rendered):
    topics = {t["spec"]["topicName"]: t for t in _docs(rendered["kafka"])}
    assert set(topics) == set(TOPICS)
    for name, t in topics.items():
        assert t["kind"] == "KafkaTopic" and t["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert t["metadata"]["labels"]["strimzi.io/cluster"]
        assert t["spec"]["replicas"] == 3, name
        assert str(t["spec"]["config"]["min.insync.replicas"]) == "2", name
        assert t["spec"]["partitions"] >= 1, name


@pytest.mark.parametrize("stage", STAGES)
def test_container_build_files(stage):
    path = os.path.join(opslib.ROOT, stage, "Dockerfile")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) >= 2 and all(f.startswith("debian:12") for f in froms), froms
    assert re.search(r"^USER 10001", text, re.M)
    assert "--target auren-%s" % stage in text
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/auren-%s"\]' % stage, text, re.M)
