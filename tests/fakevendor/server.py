"""A fake of the vendor REST APIs the fetcher calls, for the tests (Python stdlib only).

It speaks each vendor's documented token and data endpoints (see /work/shared/reference/vendors.md
and the README's fetch table) closely enough for the fetcher: OAuth refresh with refresh-token
rotation (the old refresh token stops working once a new one is issued), Bearer access tokens
with an expiry, and data answers taken from tests/fixtures/<vendor>/api_<resource>.json.

Layout under one origin (default 127.0.0.1:18080; config/local.env points the processor here):
  /whoop/developer/v2/activity/{sleep,workout}/{id}   /whoop/developer/v2/cycle/{id}/recovery
  /whoop/oauth/oauth2/token                           (form body client auth, scope=offline)
  /oura/v2/usercollection/{type}/{id}                 /oura/oauth/token (form body auth)
  /v3/exercises/{id}  /v3/users/{sleep,nightly-recharge,continuous-heart-rate}/{date}  (Polar)
  /polar/v2/oauth2/token                              (HTTP Basic)
  /fitbit/1.2/user/-/sleep/date/{d}.json  /fitbit/1/user/-/{body/log/weight,activities}/date/{d}.json
  /fitbit/oauth2/token                                (HTTP Basic)
  /google_health/v4/users/me/dataTypes/{type}/dataPoints   (list; the documented `filter` of the
                                                      type is required; pages of at most
                                                      min(pageSize, the control page size) points
                                                      with nextPageToken / pageToken)
  /google_health/token                                (form body client auth)
  /withings/measure  /withings/v2/sleep  /withings/v2/measure   (POST forms; {"status":0,"body"})
  /withings/v2/oauth2                                 (action=requesttoken; wrapped answer)
  /strava/api/v3/activities/{id}                      /strava/oauth/token
  /wellness-api/rest/{summary type}                   (Garmin ping callbacks)

Test control (JSON bodies), never used by the bridge:
  POST /_control/grant   {"vendor","vendor_user_id","access","refresh","expires_in"}
  POST /_control/fail    {"vendor","status":503,"seconds":S}     answer `status` for S seconds
  POST /_control/limit   {"vendor","count":N,"retry_after":S}   next N data requests get 429
  GET  /_control/stats   refreshes per vendor user, data requests (vendor, user, path, t, status)
  POST /_control/gh_points {"vendor_user_id","type","points":[DataPoint...],"page_size":N}
                                 Google Health list answers for that user and data type (instead
                                 of the fixture), paged by page_size
  POST /_control/fault   {"vendor","vendor_user_id","mode",...,"count":N}   the next N (default:
                                 every) data requests of that user, once its token is accepted:
                                 mode "status" answers {"status":S} (Withings: HTTP 200 with
                                 {"status":S}, its documented error form), "body" answers 200
                                 with the text {"body"} (garbage, truncated JSON, a record
                                 without a field), "slow" waits {"seconds"} first, "close" drops
                                 the connection without an answer
  POST /_control/token_fault {"vendor","mode",...,"count":N}   the same modes for the vendor's
                                 token endpoint (before the refresh token is checked)
  POST /_control/reset

Run: python3 tests/fakevendor/server.py [--port 18080]  (--port 0: any free port, printed on the
first line of stdout)
"""

import argparse
import base64
import json
import os
import re
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

# client credentials the fake accepts (the dev values of config/local.env)
CLIENTS = {v: ("dev-%s-client-id" % v, "dev-%s-client-secret" % v)
           for v in ("whoop", "oura", "polar", "fitbit", "withings", "strava", "garmin",
                     "google_health")}
BASIC_AUTH = {"polar", "fitbit"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.access = {}      # token -> (vendor, vuid, expires_at)
        self.refresh = {}     # token -> (vendor, vuid)
        self.refreshes = {}   # "vendor:vuid" -> count
        self.requests = []    # dicts
        self.fail = {}        # vendor -> (status, until)
        self.limit = {}       # vendor -> [count, retry_after]
        self.gh_points = {}   # (vuid, data type) -> (points, page size)
        self.faults = {}      # (vendor, vuid) -> fault dict (data requests)
        self.token_faults = {}  # vendor -> fault dict (token endpoint)


def take_fault(table, key):
    """The fault armed for key (its count decremented), or None."""
    f = table.get(key)
    if f is None:
        return None
    if f.get("count") is not None:
        if f["count"] <= 0:
            return None
        f["count"] -= 1
    return f


STATE = State()

# Google Health list filters (developers.google.com/health/filters): the field of each data type's
# record type (interval, sample, daily, session), a range with >= and <, and its literal form.
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"
DATE = r"\d{4}-\d\d-\d\d"
CIVIL = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
GH_FILTERS = {"steps": ("steps.interval.start_time", RFC3339),
              "heart-rate": ("heart_rate.sample_time.physical_time", RFC3339),
              "weight": ("weight.sample_time.physical_time", RFC3339),
              "oxygen-saturation": ("oxygen_saturation.sample_time.physical_time", RFC3339),
              "heart-rate-variability": ("heart_rate_variability.sample_time.physical_time",
                                         RFC3339),
              "respiratory-rate-sleep-summary": (
                  "respiratory_rate_sleep_summary.sample_time.physical_time", RFC3339),
              "daily-resting-heart-rate": ("daily_resting_heart_rate.date", DATE),
              "daily-heart-rate-variability": ("daily_heart_rate_variability.date", DATE),
              "daily-respiratory-rate": ("daily_respiratory_rate.date", DATE),
              "daily-oxygen-saturation": ("daily_oxygen_saturation.date", DATE),
              "daily-sleep-temperature-derivations": ("daily_sleep_temperature_derivations.date",
                                                      DATE),
              "sleep": ("sleep.interval.end_time", RFC3339),
              "exercise": ("exercise.interval.civil_start_time", CIVIL)}
GH_MAX_PAGE = 10000


def gh_filter_ok(data_type, flt):
    if data_type not in GH_FILTERS:
        return False
    field, lit = GH_FILTERS[data_type]
    f = re.escape(field)
    return re.fullmatch(r'%s >= "%s" AND %s < "%s"' % (f, lit, f, lit), flt) is not None


def gh_page(points, query, cap):
    """One page of a list answer: pageSize (at most `cap`) points from the offset in pageToken,
    which also binds the filter (the API wants every other field unchanged)."""
    size = min(int(query.get("pageSize") or GH_MAX_PAGE), cap, GH_MAX_PAGE)
    tag = "%08x" % (hash(query.get("filter", "")) & 0xffffffff)
    tok = query.get("pageToken")
    start = 0
    if tok:
        m = re.fullmatch(r"o(\d+)\.([0-9a-f]{8})", tok)
        if not m or m.group(2) != tag:
            return None
        start = int(m.group(1))
    page = points[start:start + size]
    nxt = "o%d.%s" % (start + size, tag) if start + size < len(points) else ""
    return json.dumps({"dataPoints": page, "nextPageToken": nxt}, indent=2).encode()


def fixture(vendor, resource):
    with open(os.path.join(FIXTURES, vendor, "api_%s.json" % resource), "rb") as f:
        return f.read()


def with_id(body, object_id):
    """The fixture record answered as the object that was asked for (its "id")."""
    rec = json.loads(body)
    rec["id"] = urllib.parse.unquote(object_id)
    return json.dumps(rec, indent=2).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read /_control/stats
        pass

    def _send(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # ---- control
    def _control(self, method):
        path = urllib.parse.urlsplit(self.path).path
        if method == "GET" and path == "/_control/stats":
            with STATE.lock:
                return self._send(200, {"refreshes": STATE.refreshes,
                                        "requests": STATE.requests})
        data = json.loads(self._body() or b"{}")
        with STATE.lock:
            if path == "/_control/reset":
                STATE.reset()
            elif path == "/_control/grant":
                STATE.access[data["access"]] = (data["vendor"], str(data["vendor_user_id"]),
                                                time.time() + float(data.get("expires_in", 3600)))
                if data.get("refresh"):
                    STATE.refresh[data["refresh"]] = (data["vendor"], str(data["vendor_user_id"]))
            elif path == "/_control/fail":
                STATE.fail[data["vendor"]] = (int(data.get("status", 503)),
                                              time.time() + float(data["seconds"]))
            elif path == "/_control/limit":
                STATE.limit[data["vendor"]] = [int(data["count"]), int(data["retry_after"])]
            elif path == "/_control/fault":
                STATE.faults[(data["vendor"], str(data["vendor_user_id"]))] = data
            elif path == "/_control/token_fault":
                STATE.token_faults[data["vendor"]] = data
            elif path == "/_control/gh_points":
                STATE.gh_points[(str(data["vendor_user_id"]), data["type"])] = (
                    data["points"], int(data.get("page_size", GH_MAX_PAGE)))
            else:
                return self._send(404, {"error": "unknown control"})
        return self._send(200, {"ok": True})

    # ---- OAuth
    def _fault(self, fault, vendor):
        """Answer as the armed fault says; False when the request goes on normally."""
        mode = fault.get("mode")
        if mode == "slow":
            time.sleep(float(fault.get("seconds", 1)))
            return False
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if mode == "body":
            self._send(200, fault.get("body", "").encode(), ctype=fault.get("ctype",
                                                                              "application/json"))
            return True
        status = int(fault.get("status", 500))
        if vendor == "withings" and status != 200 and fault.get("http") is None:
            self._send(200, {"status": status, "error": "fault"})
        else:
            self._send(int(fault.get("http") or status), {"error": "fault"},
                       headers=fault.get("headers"))
        return True

    def _token(self, vendor):
        form = dict(urllib.parse.parse_qsl(self._body().decode()))
        with STATE.lock:
            fault = take_fault(STATE.token_faults, vendor)
        if fault is not None and self._fault(fault, vendor):
            return None
        cid, secret = CLIENTS[vendor]
        if vendor in BASIC_AUTH:
            want = "Basic " + base64.b64encode(("%s:%s" % (cid, secret)).encode()).decode()
            ok = self.headers.get("Authorization") == want
        else:
            ok = form.get("client_id") == cid and form.get("client_secret") == secret
        if vendor == "withings" and form.get("action") != "requesttoken":
            ok = False
        if vendor == "whoop" and form.get("scope") != "offline":
            ok = False
        if not ok or form.get("grant_type") != "refresh_token":
            return self._send(401, {"error": "invalid_client"})
        with STATE.lock:
            owner = STATE.refresh.pop(form.get("refresh_token", ""), None)
            if owner is None:
                if vendor == "withings":
                    return self._send(200, {"status": 503, "error": "Invalid refresh_token"})
                return self._send(400, {"error": "invalid_grant"})
            key = "%s:%s" % owner
            STATE.refreshes[key] = STATE.refreshes.get(key, 0) + 1
            access, refresh = secrets.token_hex(16), secrets.token_hex(16)
            STATE.access[access] = (owner[0], owner[1], time.time() + 3600)
            STATE.refresh[refresh] = owner  # rotation: the old one was popped
        time.sleep(0.3)  # a real token endpoint takes a moment: widens the race window
        answer = {"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                  "token_type": "Bearer", "scope": "offline"}
        if vendor == "withings":
            answer = {"status": 0, "body": dict(answer, userid=owner[1])}
        return self._send(200, answer)

    # ---- data
    def _route(self, method, path, form, query):
        m = re.fullmatch(r"/whoop/developer/v2/activity/(sleep|workout)/([^/]+)", path)
        if m:
            return "whoop", with_id(fixture("whoop", m.group(1)), m.group(2))
        if re.fullmatch(r"/whoop/developer/v2/cycle/\d+/recovery", path):
            return "whoop", fixture("whoop", "recovery")
        m = re.fullmatch(r"/oura/v2/usercollection/(\w+)/([^/]+)", path)
        if m:
            return "oura", with_id(fixture("oura", m.group(1)), m.group(2))
        if re.fullmatch(r"/v3/exercises/[^/]+", path):
            return "polar", fixture("polar", "exercise")
        m = re.fullmatch(r"/v3/users/(sleep|nightly-recharge|continuous-heart-rate)/[\d-]+", path)
        if m:
            return "polar", fixture("polar", m.group(1).replace("-", "_"))
        m = re.fullmatch(r"/fitbit/1(?:\.2)?/user/-/(sleep|body/log/weight|activities)/date/"
                         r"[\d-]+\.json", path)
        if m:
            return "fitbit", fixture("fitbit", {"body/log/weight": "body"}.get(m.group(1),
                                                                             m.group(1)))
        m = re.fullmatch(r"/google_health/v4/users/me/dataTypes/([a-z-]+)/dataPoints", path)
        if m and gh_filter_ok(m.group(1), query.get("filter", "")):
            # the user's points are chosen once the token names the caller (_data)
            return "google_health", ("gh", m.group(1), query)
        if path == "/withings/measure" and form.get("action") == "getmeas":
            types = form.get("meastypes", "")
            res = "blood_pressure" if "9" in types.split(",") else \
                "temperature" if "71" in types.split(",") else "weight"
            return "withings", fixture("withings", res)
        if path == "/withings/v2/sleep" and form.get("action") == "getsummary":
            return "withings", fixture("withings", "sleep")
        if path == "/withings/v2/measure" and form.get("action") == "getactivity":
            return "withings", fixture("withings", "activity")
        if re.fullmatch(r"/strava/api/v3/activities/\d+", path):
            return "strava", fixture("strava", "activity")
        m = re.fullmatch(r"/wellness-api/rest/(\w+)", path)
        if m:
            return "garmin", fixture("garmin", m.group(1))
        return None, None

    def _data(self, method):
        url = urllib.parse.urlsplit(self.path)
        form = dict(urllib.parse.parse_qsl(self._body().decode())) if method == "POST" else {}
        try:
            vendor, body = self._route(method, url.path, form,
                                       dict(urllib.parse.parse_qsl(url.query)))
        except FileNotFoundError:
            vendor, body = None, None
        if vendor is None:
            return self._send(404, {"error": "not found"})
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        now = time.time()
        with STATE.lock:
            owner = STATE.access.get(token)
            entry = {"vendor": vendor, "user": owner[1] if owner else None, "path": url.path,
                     "t": now}
            STATE.requests.append(entry)
            if owner is None or owner[0] != vendor or owner[2] < now:
                entry["status"] = 401
                if vendor == "withings":
                    entry["status"] = 200
                    return self._send(200, {"status": 401, "error": "invalid_token"})
                return self._send(401, {"error": "invalid_token"})
            fail = STATE.fail.get(vendor)
            if fail and fail[1] > now:
                entry["status"] = fail[0]
                return self._send(fail[0], {"error": "unavailable"})
            lim = STATE.limit.get(vendor)
            if lim and lim[0] > 0:
                lim[0] -= 1
                entry["status"] = 429
                hdr = {"Retry-After": str(lim[1]), "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": str(lim[1]), "X-RateLimit-Limit": "100"}
                return self._send(429, {"error": "rate limited"}, headers=hdr)
            fault = take_fault(STATE.faults, (vendor, owner[1]))
            entry["status"] = fault.get("status", 200) if fault is not None else 200
        if fault is not None and self._fault(fault, vendor):
            return None
        if vendor == "garmin":  # Garmin summaries name their user: answer as the caller's
            body = body.replace(b'"garmin-user-1"', json.dumps(owner[1]).encode())
        if vendor == "google_health":
            _, data_type, query = body
            with STATE.lock:
                points, cap = STATE.gh_points.get((owner[1], data_type), (None, GH_MAX_PAGE))
            if points is None:
                try:
                    points = json.loads(fixture("google_health",
                                                data_type.replace("-", "_")))["dataPoints"]
                except FileNotFoundError:
                    points = []
            body = gh_page(points, query, cap)
            if body is None:
                entry["status"] = 400
                return self._send(400, {"error": {"status": "INVALID_ARGUMENT",
                                                  "message": "bad pageToken"}})
        return self._send(200, body, headers={"X-RateLimit-Remaining": "99",
                                              "X-RateLimit-Reset": "60"})

    def do_GET(self):
        if self.path.startswith("/_control/"):
            return self._control("GET")
        return self._data("GET")

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_control/"):
            return self._control("POST")
        tokens = {"/whoop/oauth/oauth2/token": "whoop", "/oura/oauth/token": "oura",
                  "/polar/v2/oauth2/token": "polar", "/fitbit/oauth2/token": "fitbit",
                  "/withings/v2/oauth2": "withings", "/strava/oauth/token": "strava",
                  "/garmin/oauth/token": "garmin", "/google_health/token": "google_health"}
        if path in tokens:
            return self._token(tokens[path])
        return self._data("POST")


def serve(port=18080, host="127.0.0.1"):
    """Start in a daemon thread; returns the server (call .shutdown())."""
    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=18080)
    args = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    srv.serve_forever()
