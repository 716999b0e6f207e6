"""Sign a webhook exactly as each vendor documents it (the vendors reference: section 0 table,
section 8d for Standard Webhooks, and each vendor's section).

sign(vendor, body) -> (path, headers, body). The secrets come from config/local.env (the dev
values the local stack runs with); a variable set in the process environment wins, so the same
code can sign for a stack started with other secrets.

Schemes:
  whoop         X-WHOOP-Signature = b64(HMAC-SHA256(secret, ts_ms || body)),
                X-WHOOP-Signature-Timestamp = ts_ms
  oura          x-oura-signature = UPPERHEX(HMAC-SHA256(secret, ts || body)), x-oura-timestamp
  polar         Polar-Webhook-Signature = hex(HMAC-SHA256(secret, body))
  fitbit        X-Fitbit-Signature = b64(HMAC-SHA1(secret + "&", body))
  terra         terra-signature: t=<unix>,v1=hex(HMAC-SHA256(secret, t + "." + body))
  app           Standard Webhooks: webhook-id, webhook-timestamp,
                webhook-signature "v1,<b64(HMAC-SHA256(key, id.ts.body))>",
                key = b64decode(secret without its whsec_ prefix)
  google_health Authorization: <the configured secret header value>
  garmin        /webhooks/garmin/<path token> + garmin-client-id header
  withings      /webhooks/withings/<path token> (form body)
  strava        /webhooks/strava/<path token>
"""

import base64
import hashlib
import hmac
import os
import time
import uuid

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENV_FILE = os.path.join(REPO_ROOT, "config", "local.env")

VENDORS = ("whoop", "oura", "polar", "fitbit", "google_health", "withings", "garmin", "strava",
           "terra", "app")
PATH_TOKEN_VENDORS = ("garmin", "withings", "strava")
SIGNED_VENDORS = ("whoop", "oura", "polar", "fitbit", "terra", "app")
TIMESTAMPED_VENDORS = ("whoop", "oura", "terra", "app")
_ENV_PREFIXES = ("WEBHOOK_", "GARMIN_", "OURA_", "FITBIT_", "STRAVA_", "GOOGLE_HEALTH_",
                 "KAFKA_", "REDIS_", "DATABASE_")
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def load_env(path=ENV_FILE):
    """config/local.env as a dict, overridden by the process environment."""
    values = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                key, val = line.split("=", 1)
                values[key.strip()] = val.strip()
    for key, val in os.environ.items():
        if key in values or key.startswith(_ENV_PREFIXES):
            values[key] = val
    return values


def default_content_type(vendor, body):
    if vendor == "withings":
        stripped = body.lstrip()
        if not stripped.startswith(b"{") and not stripped.startswith(b"["):
            return FORM
    return JSON


def _hmac(key, msg, algo=hashlib.sha256):
    return hmac.new(key, msg, algo).digest()


def vendor_path(vendor, env, token=None):
    if vendor in PATH_TOKEN_VENDORS:
        if token is None:
            token = env["WEBHOOK_PATH_TOKEN_" + vendor.upper()]
        return "/webhooks/%s/%s" % (vendor, token)
    return "/webhooks/" + vendor


def sign(vendor, body, env=None, now=None, content_type=None, secret=None, msg_id=None):
    """Return (path, headers, body) for a signed POST of `body` (bytes) as `vendor`.

    now: unix seconds (float) to sign with (default: current time) - used for stale tests.
    secret: override the signing secret (used to produce a wrong signature).
    msg_id: the Standard Webhooks message id for `app` (default: a fresh random one)."""
    if env is None:
        env = load_env()
    if isinstance(body, str):
        body = body.encode("utf-8")
    if now is None:
        now = time.time()
    headers = {"Content-Type": content_type or default_content_type(vendor, body)}
    path = vendor_path(vendor, env)

    def key():
        value = secret if secret is not None else env["WEBHOOK_SECRET_" + vendor.upper()]
        return value.encode("utf-8")

    if vendor == "whoop":
        ts = str(int(now * 1000)).encode()
        headers["X-WHOOP-Signature"] = base64.b64encode(_hmac(key(), ts + body)).decode()
        headers["X-WHOOP-Signature-Timestamp"] = ts.decode()
    elif vendor == "oura":
        ts = str(int(now)).encode()
        headers["x-oura-signature"] = _hmac(key(), ts + body).hex().upper()
        headers["x-oura-timestamp"] = ts.decode()
    elif vendor == "polar":
        headers["Polar-Webhook-Signature"] = _hmac(key(), body).hex()
    elif vendor == "fitbit":
        sig = _hmac(key() + b"&", body, hashlib.sha1)
        headers["X-Fitbit-Signature"] = base64.b64encode(sig).decode()
    elif vendor == "terra":
        ts = str(int(now)).encode()
        headers["terra-signature"] = "t=%s,v1=%s" % (ts.decode(),
                                                     _hmac(key(), ts + b"." + body).hex())
    elif vendor == "app":
        raw = key().decode()
        if raw.startswith("whsec_"):
            raw = raw[len("whsec_"):]
        if msg_id is None:
            msg_id = "msg_" + uuid.uuid4().hex
        ts = str(int(now))
        signed = msg_id.encode() + b"." + ts.encode() + b"." + body
        sig = base64.b64encode(_hmac(base64.b64decode(raw), signed)).decode()
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = ts
        headers["webhook-signature"] = "v1," + sig
    elif vendor == "google_health":
        headers["Authorization"] = (secret if secret is not None
                                    else env["GOOGLE_HEALTH_AUTHORIZATION"])
    elif vendor == "garmin":
        headers["garmin-client-id"] = secret if secret is not None else env["GARMIN_CLIENT_ID"]
    elif vendor in ("withings", "strava"):
        pass
    else:
        raise ValueError("unknown vendor " + vendor)
    return path, headers, body
