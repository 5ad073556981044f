#!/usr/bin/python3
"""A ticket service emulator: ServiceNow, Jira and a generic JSON API.

Run standalone:

    /usr/bin/python3 ticket_emulator.py --port-file F --cert C --key K \
        --fixtures DIR [--token T] [--basic USER:PASS] [--log F] [--port P]

It serves, over HTTPS (plain HTTP without --cert):

  ServiceNow  GET /api/now/table/change_request?sysparm_query=number=ID&...
              -> the fixture's body, or {"result": []} for an unknown ID
  Jira        GET /rest/api/2/issue/ID
              -> the fixture's body, or 404 {"errorMessages": [...]}
  generic     GET /tickets/ID -> the fixture's body, or 404

Fixtures are files DIR/KIND/NAME.json (KIND servicenow | jira | generic,
NAME = fixture_name(ID)), read at request time, holding one object:

  {"status": 200, "delay": 0.0, "body": {...}}   the body served as JSON
  {"status": 200, "raw": "not json"}             the raw text served as is
  {"status": 503}                                 a status with no body

"headers" (an object) adds response headers.  With --token the request
must carry "Authorization: Bearer T"; with --basic, Basic USER:PASS (either
is accepted when both are given); otherwise 401.  Each request is logged
to --log as one JSON line: method, path (as received), kind, id, auth (was
the presented authorization right), status.  Credentials are never logged.

The controller class TicketService starts this script as a child process
on a free port and writes fixtures for tests.
"""
import argparse
import base64
import hmac
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("servicenow", "jira", "generic")
SN_PATH = "/api/now/table/change_request"
JIRA_PREFIX = "/rest/api/2/issue/"
GENERIC_PREFIX = "/tickets/"


def fixture_name(ticket_id):
    """A file name for a ticket id: every byte but [A-Za-z0-9_~-] escaped,
    so that no id can name a path outside the fixture directory."""
    return urllib.parse.quote(ticket_id, safe="").replace(".", "%2E") + ".json"


def fixture_path(root, kind, ticket_id):
    if kind not in KINDS:
        raise ValueError(f"unknown ticket kind {kind!r}")
    return os.path.join(root, kind, fixture_name(ticket_id))


# ---- the server -------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "ticket-emulator/1"
    sys_version = ""

    def log_message(self, fmt, *args):  # noqa: D401 - silence stderr access log
        pass

    # -- request parsing --

    def _route(self):
        """(kind, id) for a known path, else (None, None)."""
        u = urllib.parse.urlsplit(self.path)
        if u.path == SN_PATH:
            q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            for cond in q.get("sysparm_query", [""])[0].split("^"):
                if cond.startswith("number="):
                    return "servicenow", cond[len("number="):]
            return "servicenow", None
        if u.path.startswith(JIRA_PREFIX):
            raw = u.path[len(JIRA_PREFIX):]
            return "jira", urllib.parse.unquote(raw, errors="strict")
        if u.path.startswith(GENERIC_PREFIX):
            raw = u.path[len(GENERIC_PREFIX):]
            return "generic", urllib.parse.unquote(raw, errors="strict")
        return None, None

    def _auth_ok(self):
        cfg = self.server.cfg
        if cfg.token is None and cfg.basic is None:
            return True
        got = self.headers.get("Authorization", "")
        ok = False
        if cfg.token is not None:
            ok |= hmac.compare_digest(got.encode(),
                                      f"Bearer {cfg.token}".encode())
        if cfg.basic is not None:
            want = "Basic " + base64.b64encode(cfg.basic.encode()).decode()
            ok |= hmac.compare_digest(got.encode(), want.encode())
        return ok

    # -- answers --

    def _send(self, status, body=b"", ctype="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _log(self, **rec):
        rec.update(method=self.command, path=self.path)
        self.server.log(rec)

    def _not_found(self, kind):
        if kind == "servicenow":
            return 200, {"result": []}
        if kind == "jira":
            return 404, {"errorMessages": ["Issue does not exist"],
                         "errors": {}}
        return 404, {"error": "not found"}

    def do_GET(self):  # noqa: N802 - http.server naming
        try:
            kind, tid = self._route()
        except UnicodeDecodeError:
            kind, tid = None, None
        auth = self._auth_ok()
        if not auth:
            self._log(kind=kind, id=tid, auth=False, status=401)
            self._send_json(401, {"error": "unauthorized"},
                            headers={"WWW-Authenticate": 'Bearer realm="tickets"'})
            return
        if kind is None or tid is None or tid == "":
            self._log(kind=kind, id=tid, auth=True, status=404)
            self._send_json(404, {"error": "no such resource"})
            return
        fx = None
        try:
            with open(fixture_path(self.server.cfg.fixtures, kind, tid),
                      encoding="utf-8") as f:
                fx = json.load(f)
        except FileNotFoundError:
            pass
        if fx is None:
            status, obj = self._not_found(kind)
            self._log(kind=kind, id=tid, auth=True, status=status)
            self._send_json(status, obj)
            return
        status = int(fx.get("status", 200))
        delay = float(fx.get("delay", 0.0))
        self._log(kind=kind, id=tid, auth=True, status=status, delay=delay)
        if delay > 0:
            time.sleep(delay)
        headers = fx.get("headers") or {}
        if "raw" in fx:
            self._send(status, fx["raw"].encode("utf-8"), headers=headers)
        elif "body" in fx:
            self._send_json(status, fx["body"], headers=headers)
        else:
            self._send(status, b"", headers=headers)

    def do_POST(self):  # noqa: N802
        self._log(kind=None, id=None, auth=self._auth_ok(), status=405)
        self._send_json(405, {"error": "method not allowed"})

    do_PUT = do_POST
    do_DELETE = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, cfg, ctx):
        super().__init__(addr, Handler)
        self.cfg = cfg
        self.ctx = ctx
        self._log_lock = threading.Lock()
        self._log_file = open(cfg.log, "a", encoding="utf-8") if cfg.log else None

    def log(self, rec):
        if not self._log_file:
            return
        with self._log_lock:
            self._log_file.write(json.dumps(rec, sort_keys=True) + "\n")
            self._log_file.flush()

    def finish_request(self, request, client_address):
        # Runs in the request's own thread: the TLS handshake of one slow
        # client does not hold up the others.
        if self.ctx is not None:
            request.settimeout(30)
            request = self.ctx.wrap_socket(request, server_side=True)
            request.settimeout(None)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        # Clients that hang up (timeouts under test) or fail the handshake
        # (wrong CA under test) are expected; say one line, not a trace.
        exc = sys.exc_info()[1]
        print(f"ticket-emulator: {client_address[0]}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="ticket service emulator")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--token")
    ap.add_argument("--basic", help="USER:PASS")
    ap.add_argument("--log")
    cfg = ap.parse_args(argv)
    if cfg.basic is not None and ":" not in cfg.basic:
        ap.error("--basic takes USER:PASS")
    for k in KINDS:
        os.makedirs(os.path.join(cfg.fixtures, k), exist_ok=True)
    ctx = None
    if cfg.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cfg.cert, cfg.key)
    srv = Server(("127.0.0.1", cfg.port), cfg, ctx)
    port = srv.server_address[1]
    tmp = cfg.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, cfg.port_file)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


# ---- the controller for tests -------------------------------------------------

class TicketService:
    """Start the emulator as a child process and manage its fixtures.

        svc = TicketService(tmpdir, ca, token="s3cret").start()
        svc.put_ticket("jira", "PROC-1", {"fields": {...}})
        ... svc.url_jira ... svc.requests() ...
        svc.stop()

    ca is a common.TestCA (its server_cert is used) or None for plain HTTP.
    """

    def __init__(self, directory, ca=None, token=None, basic=None,
                 name="tickets"):
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir, exist_ok=True)
        self.fixtures = os.path.join(self.dir, "fixtures")
        for k in KINDS:
            os.makedirs(os.path.join(self.fixtures, k), exist_ok=True)
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "requests.jsonl")
        self.out_path = os.path.join(self.dir, "emulator.out")
        self.ca = ca
        self.token = token
        self.basic = basic
        self.proc = None
        self.port = None

    def start(self, timeout=10.0):
        import common  # harness modules are imported flat

        args = ["/usr/bin/python3", os.path.abspath(__file__),
                "--port-file", self.port_file, "--fixtures", self.fixtures,
                "--log", self.log_path]
        if self.ca is not None:
            cert, key = self.ca.server_cert("tickets")
            args += ["--cert", cert, "--key", key]
        if self.token is not None:
            args += ["--token", self.token]
        if self.basic is not None:
            args += ["--basic", self.basic]
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.proc = common.Proc(args, self.out_path)

        def ready():
            if not self.proc.alive():
                raise RuntimeError("ticket emulator exited: " + self.proc.output())
            if not os.path.exists(self.port_file):
                return None
            with open(self.port_file) as f:
                port = int(f.read().strip())
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return port

        self.port = common.wait_for(ready, timeout=timeout,
                                    what="ticket emulator port")
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base(self):
        scheme = "https" if self.ca is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def url_servicenow(self):
        return (self.base + SN_PATH +
                "?sysparm_query=number={ticket}&sysparm_display_value=true"
                "&sysparm_limit=2")

    @property
    def url_jira(self):
        return self.base + JIRA_PREFIX + "{ticket}"

    @property
    def url_generic(self):
        return self.base + GENERIC_PREFIX + "{ticket}"

    def put_ticket(self, kind, ticket_id, body=None, status=200, delay=0,
                   raw=None, headers=None):
        """Write (or replace) a fixture; the next request sees it."""
        fx = {"status": status, "delay": float(delay)}
        if raw is not None:
            fx["raw"] = raw
        elif body is not None:
            fx["body"] = body
        if headers:
            fx["headers"] = headers
        path = fixture_path(self.fixtures, kind, ticket_id)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(fx, f)
        os.replace(tmp, path)
        return path

    def remove_ticket(self, kind, ticket_id):
        try:
            os.unlink(fixture_path(self.fixtures, kind, ticket_id))
        except FileNotFoundError:
            pass

    def requests(self):
        """Every request logged so far, oldest first."""
        try:
            with open(self.log_path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def clear_log(self):
        with open(self.log_path, "w", encoding="utf-8"):
            pass


if __name__ == "__main__":
    sys.exit(main())
