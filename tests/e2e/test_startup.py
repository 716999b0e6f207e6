"""The three binaries' command line and start-up checks (README "Configuration"): --help and
--print-config exit 0, an unknown argument or a bad setting exits 2 with a message that names the
variable and never echoes its value, and a gateway that cannot bind its port exits 1.
"""

import os
import subprocess
import uuid

import pytest
import requests

import e2elib

BINARIES = ("gateway", "processor", "persister")


def run(name, env_values, *args, env=None):
    child = dict(os.environ)
    child.update(env_values)
    child.update(env or {})
    return subprocess.run([e2elib.build_binary(name)] + list(args), env=child,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", BINARIES)
def test_help_print_config_and_unknown_argument(stack, env_values, name):
    res = run(name, env_values, "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: auren-%s" % name), res.stderr
    assert "HTTP_PORT" in res.stdout
    res = run(name, env_values, "--print-config")
    assert res.returncode == 0 and "HTTP_PORT" in res.stdout, res.stderr
    res = run(name, env_values, "--bogus")
    assert res.returncode == 2 and "unknown argument --bogus" in res.stderr


@pytest.mark.parametrize("name", BINARIES)
def test_bad_value_names_the_variable(stack, env_values, name):
    res = run(name, env_values, env={"HTTP_PORT": "eighty-eighty"})
    assert res.returncode == 2, res.stderr
    assert "HTTP_PORT" in res.stderr and "eighty-eighty" not in res.stderr


@pytest.mark.parametrize("env,needle", [
    ({"WHOOP_TOKEN_AUTH": "digest"}, "WHOOP_TOKEN_AUTH must be basic or body"),
    ({"OURA_API_BASE_URL": "ftp://x"}, "OURA_API_BASE_URL must be an http(s) URL"),
    ({"POLAR_TOKEN_URL": "polar"}, "POLAR_TOKEN_URL must be an http(s) URL"),
    ({"FETCH_HTTP_TIMEOUT_MS": "20000", "FETCH_REFRESH_LOCK_MS": "25000"},
     "FETCH_REFRESH_LOCK_MS must be below FETCH_HTTP_TIMEOUT_MS"),
    ({"FETCH_RETRY_BASE_MS": "90000", "FETCH_RETRY_MAX_MS": "60000"},
     "FETCH_RETRY_BASE_MS must not exceed FETCH_RETRY_MAX_MS"),
    ({"FETCHER_ENABLED": "true", "TOKEN_ENCRYPTION_KEYS": ""},
     "TOKEN_ENCRYPTION_KEYS is required while FETCHER_ENABLED is true"),
])
def test_processor_cross_checks(stack, env_values, env, needle):
    res = run("processor", env_values, env=env)
    assert res.returncode == 2, res.stderr
    assert "auren-processor: config: " + needle in res.stderr


@pytest.mark.parametrize("env,needle", [
    # proc_loop_new() refuses it before anything starts
    ({"REDIS_URL": "http://127.0.0.1:6379"}, "auren-processor: REDIS_URL: expected redis://"),
    ({"KAFKA_NOT_A_PROPERTY": "1"}, "auren-processor: KAFKA_NOT_A_PROPERTY is not a valid"),
    # the fetcher's key ring is checked at start, its value never echoed
    ({"FETCHER_ENABLED": "true", "TOKEN_ENCRYPTION_KEYS": "k1:not-base64-secret"},
     "auren-processor: fetcher: TOKEN_ENCRYPTION_KEYS: "),
])
def test_processor_start_failures_exit_2(stack, env_values, env, needle):
    # a group and transactional id of its own: the stack's processor must not notice
    res = run("processor", env_values, env=dict(env, HTTP_PORT="0", PROCESSOR_GROUP_ID="start-fail",
                                                KAFKA_TRANSACTIONAL_ID="start-fail"))
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "not-base64-secret" not in res.stderr


@pytest.mark.parametrize("var", ["KAFKA_BROKERS", "DATABASE_URL", "PERSISTER_GROUP_ID"])
def test_persister_empty_settings(stack, env_values, var):
    res = run("persister", env_values, env={var: ""})
    assert res.returncode == 2, res.stderr
    assert var in res.stderr


def test_persister_refused_kafka_setting_exits_2(stack, env_values):
    # The DLQ producer is idempotent: librdkafka refuses acks=1 when it creates the client.
    res = run("persister", env_values, env={"KAFKA_ACKS": "1"})
    assert res.returncode == 2, res.stderr
    assert "auren-persister: config: kafka producer:" in res.stderr, res.stderr


def test_gateway_port_in_use_exits_1(stack, env_values, tmp_path):
    # The stack's gateway holds 8080; a second one with its own spool cannot bind it.
    res = run("gateway", env_values, env={"HTTP_PORT": "8080", "SPOOL_DIR": str(tmp_path)})
    assert res.returncode == 1, res.stderr
    assert "gateway.start_failed" in res.stderr


@pytest.mark.parametrize("name,env", [
    ("processor", {"HTTP_PORT": "9101", "FETCHER_ENABLED": "false",
                   "PROCESSOR_GROUP_ID": "startup-test", "KAFKA_TRANSACTIONAL_ID": "startup-test"}),
    ("persister", {"HTTP_PORT": "9102", "PERSISTER_GROUP_ID": "startup-test"}),
])
def test_ops_port_in_use_exits_1(stack, env_values, name, env):
    # The stack's own instance holds the port; a second one (its own group and transactional
    # id, so the stack's instance is not disturbed) gives up with exit 1.
    env = {k: (v + "-" + uuid.uuid4().hex[:8] if k != "HTTP_PORT" and v != "false" else v)
           for k, v in env.items()}
    res = run(name, env_values, env=env)
    assert res.returncode == 1, res.stderr
    assert "start_failed" in res.stderr or "httpd.failed" in res.stderr, res.stderr


@pytest.mark.parametrize("port", [9101, 9102])
def test_ops_routes_answer_methods_and_unknown_paths(stack, port):
    base = "http://127.0.0.1:%d" % port
    for path in ("/healthz", "/readyz", "/metrics"):
        assert requests.post(base + path, data=b"x" * 100, timeout=5).status_code == 405
        assert requests.head(base + path, timeout=5).status_code == 200
    assert requests.get(base + "/nope", timeout=5).status_code == 404
