"""auren-admin's command line against the running stack: every usage and configuration error
exits 2 with one line naming the option or variable, work that fails exits 1, --help exits 0,
and the connection, key and DLQ commands do their job (README "Connection lifecycle", the
DLQ replay of tests/faults/dlq_replay.py).

Commands that change stored connections or keys run against the auren_test database (also
migrated by scripts/stack.sh), so they cannot disturb the pipeline tests on the auren database.
"""

import os
import struct
import subprocess
import sys
import uuid
import zlib

import pytest

import e2elib

sys.path.insert(0, os.path.join(e2elib.REPO_ROOT, "tests", "faults"))

import dlq_replay  # noqa: E402

TEST_DB = os.environ.get("AUREN_TEST_DATABASE_URL",
                         "postgresql://auren:auren@127.0.0.1:5432/auren_test")


def admin(env_values, *args, env=None, unset=()):
    child = dict(os.environ)
    child.update(env_values)
    child.update(env or {})
    for name in unset:
        child.pop(name, None)
    return subprocess.run([e2elib.admin_binary()] + list(args), env=child, capture_output=True,
                          text=True, timeout=120)


USAGE_ERRORS = [
    ((), "missing command"),
    (("frobnicate",), "unknown command 'frobnicate'"),
    (("topics",), "expected 'topics create'"),
    (("topics", "create", "--partitions", "0"), "--partitions must be an integer from 1"),
    (("topics", "create", "--replication-factor", "x"), "--replication-factor must be"),
    (("topics", "create", "--bogus"), "unknown option '--bogus'"),
    (("migrate", "--dir"), "option '--dir' needs a value"),
    (("migrate", "extra"), "unexpected argument 'extra'"),
    (("connections",), "expected add, list or revoke"),
    (("connections", "add", "--vendor", "whoop"), "missing a required option"),
    (("connections", "add", "--vendor", "nope", "--vendor-user-id", "x", "--user-id", "y"),
     "unknown vendor 'nope'"),
    (("connections", "list", "--user-id", "y"), "option '--user-id' does not apply"),
    (("connections", "add", "--vendor", "whoop", "--vendor-user-id", "x", "--user-id", "y",
      "--scopes", "read"), "token options need --access-token-file"),
    (("connections", "revoke", "--vendor", "whoop", "--vendor-user-id", "a\tb"),
     "ids are 1-256 printable characters"),
    (("keys",), "expected 'keys rotate'"),
    (("keys", "rotate", "now"), "expected 'keys rotate'"),
    (("dlq",), "expected list or replay"),
    (("dlq", "list", "x"), "unexpected argument 'x'"),
    (("spool",), "expected scan or replay"),
    (("spool", "scan"), "expected one FILE"),
    (("spool", "replay", "f"), "expected FILE and at least one OFFSET"),
    (("spool", "replay", "f", "-1"), "'-1' is not a byte offset"),
    (("spool", "replay", "f", "12x"), "'12x' is not a byte offset"),
]


@pytest.mark.parametrize("args,needle", USAGE_ERRORS, ids=[" ".join(a) or "none"
                                                           for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2_with_one_line(stack, env_values, args, needle):
    res = admin(env_values, *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert needle in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("args", [("--help",), ("help",), ("migrate", "--help"),
                                  ("topics", "--help"), ("topics", "create", "-h"),
                                  ("connections", "-h"), ("connections", "add", "--help"),
                                  ("keys", "--help"), ("dlq", "--help"),
                                  ("spool", "--help")])
def test_help_exits_0(stack, env_values, args):
    res = admin(env_values, *args)
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout and "auren-admin dlq replay" in res.stdout


def test_environment_errors_name_the_variable(stack, env_values, tmp_path):
    res = admin(env_values, "topics", "create", env={"TOPIC_PARTITIONS": "many"})
    assert res.returncode == 2 and "TOPIC_PARTITIONS must be an integer" in res.stderr
    res = admin(env_values, "topics", "create", env={"TOPIC_REPLICATION_FACTOR": "0"})
    assert res.returncode == 2 and "TOPIC_REPLICATION_FACTOR must be an integer" in res.stderr
    res = admin(env_values, "connections", "list", unset=("DATABASE_URL",),
                env={"DATABASE_URL_FILE": str(tmp_path / "missing")})
    assert res.returncode == 2 and "DATABASE_URL" in res.stderr, res.stderr
    res = admin(env_values, "keys", "rotate", env={"TOKEN_ENCRYPTION_KEYS": ""})
    assert res.returncode == 2 and "TOKEN_ENCRYPTION_KEYS is not set" in res.stderr
    res = admin(env_values, "keys", "rotate", env={"TOKEN_ENCRYPTION_KEYS": "k1:short"})
    assert res.returncode == 2 and "config: TOKEN_ENCRYPTION_KEYS:" in res.stderr
    assert "short" not in res.stderr  # the key material is never echoed


def test_token_files_are_checked(stack, env_values, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    base = ("connections", "add", "--vendor", "whoop", "--vendor-user-id", "tf-" + uuid.uuid4().hex,
            "--user-id", "u-" + uuid.uuid4().hex)
    db = {"DATABASE_URL": TEST_DB}
    res = admin(env_values, *base, "--access-token-file", str(tmp_path / "none"), env=db)
    assert res.returncode == 2 and "cannot read token file" in res.stderr
    res = admin(env_values, *base, "--access-token-file", str(empty), env=db)
    assert res.returncode == 2 and "is empty, binary or over 16 KiB" in res.stderr
    res = admin(env_values, *base, "--access-token-file", str(empty), "--expires-in", "-5",
                env=db)
    assert res.returncode == 2 and "--expires-in must be a number of seconds" in res.stderr


def test_failures_exit_1(stack, env_values, tmp_path):
    res = admin(env_values, "connections", "list",
                env={"DATABASE_URL": "postgresql://auren:auren@127.0.0.1:1/auren"})
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("auren-admin: ") and "auren:auren" not in res.stderr
    res = admin(env_values, "migrate", "--dir", str(tmp_path / "nowhere"), env={"DATABASE_URL": TEST_DB})
    assert res.returncode == 1 and str(tmp_path / "nowhere") in res.stderr
    res = admin(env_values, "connections", "revoke", "--vendor", "whoop", "--vendor-user-id",
                "never-" + uuid.uuid4().hex, env={"DATABASE_URL": TEST_DB})
    assert res.returncode == 1, res.stderr


def test_kafka_errors_exit_1(stack, env_values):
    # A KAFKA_* variable librdkafka does not know is named, its value is not echoed.
    res = admin(env_values, "dlq", "list", env={"KAFKA_NO_SUCH_PROPERTY": "s3cr3t"})
    assert res.returncode == 1, res.stderr
    assert "KAFKA_NO_SUCH_PROPERTY is not a valid librdkafka property" in res.stderr
    assert "s3cr3t" not in res.stderr
    # No broker: the DLQ's metadata never comes (after the command's 15 s timeout).
    res = admin(env_values, "dlq", "list", env={"KAFKA_BROKERS": "127.0.0.1:1"})
    assert res.returncode == 1 and "metadata unavailable" in res.stderr, res.stderr


def test_unreadable_file_variables_exit_2(stack, env_values, tmp_path):
    # A NAME_FILE that cannot be read is a configuration error naming the variable.
    missing = str(tmp_path / "missing")
    cases = [
        (("migrate",), "MIGRATIONS_DIR"),
        (("topics", "create"), "KAFKA_BROKERS"),
        (("dlq", "list"), "KAFKA_BROKERS"),
        (("keys", "rotate"), "TOKEN_ENCRYPTION_KEYS"),
    ]
    for args, var in cases:
        res = admin(env_values, *args, env={var + "_FILE": missing}, unset=(var,))
        assert res.returncode == 2, (args, res.returncode, res.stderr)
        assert var + "_FILE: cannot read file" in res.stderr, res.stderr


def test_work_failures_exit_1(stack, env_values, tmp_path):
    # Kafka settings librdkafka refuses: topics create stops before contacting anyone.
    res = admin(env_values, "topics", "create", env={"KAFKA_NO_SUCH_PROPERTY": "1"})
    assert res.returncode == 1 and "KAFKA_NO_SUCH_PROPERTY" in res.stderr, res.stderr
    # A database without the migrated tables (PostgreSQL's own "postgres" database).
    bare = TEST_DB.rsplit("/", 1)[0] + "/postgres"
    res = admin(env_values, "connections", "list", env={"DATABASE_URL": bare})
    assert res.returncode == 1 and "connections list" in res.stderr, res.stderr
    res = admin(env_values, "keys", "rotate", env={"DATABASE_URL": bare})
    assert res.returncode == 1 and "keys rotate" in res.stderr, res.stderr
    token = tmp_path / "token"
    token.write_text("secret-token")
    res = admin(env_values, "connections", "add", "--vendor", "oura", "--vendor-user-id", "v",
                "--user-id", "u", "--access-token-file", str(token),
                env={"DATABASE_URL": bare})
    assert res.returncode == 1 and "connections add" in res.stderr, res.stderr
    assert "secret-token" not in res.stderr
    # A migration that fails rolls back and exits 1 with its SQLSTATE; a recorded migration
    # whose file has another name is warned about. The unit suite's integration cases work in
    # private schemas, so auren_test is migrated here first (migration 1 is then recorded).
    res = admin(env_values, "migrate", env={"DATABASE_URL": TEST_DB})
    assert res.returncode == 0, res.stderr
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "001_renamed.sql").write_text("SELECT 1;\n")
    (sql / "999_broken.sql").write_text("CREATE TABLE broken (;\n")
    res = admin(env_values, "migrate", "--dir", str(sql), env={"DATABASE_URL": TEST_DB})
    assert res.returncode == 1, res.stderr
    assert "migration 1 is recorded as" in res.stderr, res.stderr
    assert "migration 999_broken: SQLSTATE 42601" in res.stderr, res.stderr
    assert "schema_migrations" not in admin(env_values, "migrate",
                                            env={"DATABASE_URL": TEST_DB}).stderr
    res = admin(env_values, "migrate", env={"DATABASE_URL": TEST_DB})
    assert res.returncode == 0, res.stderr


def test_topics_create_warns_about_fewer_partitions(stack, env_values):
    res = admin(env_values, "topics", "create", "--partitions", "64")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("exists  biometric.") == 5, res.stdout
    assert "fewer than the 64 asked for; partitions are never added automatically" in res.stderr


def test_connection_with_tokens_listed_rotated_revoked(stack, env_values, tmp_path):
    access, refresh = tmp_path / "access", tmp_path / "refresh"
    access.write_text("at-" + uuid.uuid4().hex + "\n")
    refresh.write_text("rt-" + uuid.uuid4().hex)
    vuid = "adm-" + uuid.uuid4().hex[:12]
    db = {"DATABASE_URL": TEST_DB}
    # The unit suite's integration cases rebuild auren_test's schema: migrate it first.
    res = admin(env_values, "migrate", env=db)
    assert res.returncode == 0 and "migrations:" in res.stdout, res.stderr
    res = admin(env_values, "connections", "add", "--vendor", "oura", "--vendor-user-id", vuid,
                "--user-id", "user-" + vuid, "--access-token-file", str(access),
                "--refresh-token-file", str(refresh), "--expires-in", "3600", "--scopes",
                "daily", env=db)
    assert res.returncode == 0, res.stderr
    assert "tokens sealed with key" in res.stdout
    assert access.read_text().strip() not in res.stdout + res.stderr
    res = admin(env_values, "connections", "list", "--vendor", "oura", env=db)
    assert res.returncode == 0, res.stderr
    mine = [line for line in res.stdout.splitlines() if vuid in line]
    assert len(mine) == 1, res.stdout
    assert access.read_text().strip() not in res.stdout
    res = admin(env_values, "keys", "rotate", env=db)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "connections re-sealed with key" in res.stdout
    res = admin(env_values, "connections", "revoke", "--vendor", "oura", "--vendor-user-id",
                vuid, env=db)
    assert res.returncode == 0 and "revoked, tokens dropped" in res.stdout, res.stderr


def test_dlq_list_and_replay_exactly_once(stack, env_values):
    res = admin(env_values, "dlq", "list")
    assert res.returncode == 0, res.stderr
    assert dlq_replay.pending_total(res.stdout) >= 0
    assert dlq_replay.main() == 0


def _spool_record(key, value):
    """One record as the gateway's spool writes it (gateway/gw_spool.h): magic "ASP1", u32
    payload length, u32 CRC-32 of the length and the payload, payload = u16 key length, key,
    value; little-endian."""
    payload = struct.pack("<H", len(key)) + key + value
    length = struct.pack("<I", len(payload))
    return b"ASP1" + length + struct.pack("<I", zlib.crc32(length + payload)) + payload


def test_spool_scan_and_replay_a_damaged_segment(stack, env_values, http, schemas, tmp_path):
    """Three webhooks the gateway really produced, written as a spool segment whose middle
    record's checksum is damaged: scan lists the records on both sides of the damage with their
    event ids (and not a byte of a body), replay sends the one behind the damage back to
    biometric.raw.v1 byte for byte."""
    raw = e2elib.TopicTail(env_values["KAFKA_BROKERS"], e2elib.TOPIC_RAW, schemas)
    marker = "spool-e2e-" + uuid.uuid4().hex
    try:
        for i in range(3):
            body = ('{"user_id": 990001, "id": "%s-%d", "type": "recovery.updated",'
                    ' "trace_id": "%s"}' % (marker, i, marker))
            assert e2elib.post(http, "whoop", body, env_values).status_code == 200

        def mine(records):
            return [r for r in records if r["datum"] is not None and
                    marker.encode() in r["datum"]["body"]]
        assert raw.wait_for(lambda recs: len(mine(recs)) == 3, 30), "raw records not seen"
        recs = sorted(mine(raw.records), key=lambda r: r["datum"]["event_id"])
        blobs = [_spool_record(r["key"], r["value"]) for r in recs]
        offsets = [0, len(blobs[0]), len(blobs[0]) + len(blobs[1])]
        data = bytearray(b"".join(blobs))
        data[offsets[1] + 9] ^= 0x40  # a bit of the middle record's CRC flips on disk
        seg = tmp_path / "damaged-7.spool"
        seg.write_bytes(bytes(data))

        res = admin(env_values, "spool", "scan", str(seg))
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        ids = [r["datum"]["event_id"] for r in recs]
        assert lines[0].startswith("record offset=0 bytes=%d after_damage=no raw_webhook=yes"
                                   " event_id=%s vendor=whoop kind=webhook"
                                   % (len(blobs[0]), ids[0])), lines
        assert lines[1] == "unreadable offset=%d bytes=%d" % (offsets[1], len(blobs[1])), lines
        assert lines[2].startswith("record offset=%d bytes=%d after_damage=yes raw_webhook=yes"
                                   " event_id=%s" % (offsets[2], len(blobs[2]), ids[2])), lines
        assert lines[3].startswith("spool scan: %d bytes, 2 records" % len(data)), lines
        assert marker not in res.stdout and marker not in res.stderr

        res = admin(env_values, "spool", "replay", str(seg), str(offsets[2]))
        assert res.returncode == 0, res.stderr
        assert res.stdout == "spool replay: 1 records delivered to biometric.raw.v1\n"
        assert raw.wait_for(lambda recs: len(mine(recs)) == 4, 30), "replayed record not seen"
        again = mine(raw.records)[3]
        assert (again["key"], again["value"]) == (recs[2]["key"], recs[2]["value"])

        res = admin(env_values, "spool", "replay", str(seg), str(offsets[1]))
        assert res.returncode == 1 and "does not start an intact record" in res.stderr
    finally:
        raw.close()
