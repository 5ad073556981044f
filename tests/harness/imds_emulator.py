#!/usr/bin/python3
"""An EC2 instance metadata service (IMDSv2 only) for the tests.

It serves the three requests a client makes for the instance profile's
credentials, as AWS documents them:

    PUT /latest/api/token
        X-aws-ec2-metadata-token-ttl-seconds: 1..21600  -> a session token
        (400 without a valid TTL; 403 when the request carries
        X-Forwarded-For, as IMDS refuses forwarded token requests)
    GET /latest/meta-data/iam/security-credentials/
        X-aws-ec2-metadata-token: TOKEN                 -> the role name
    GET /latest/meta-data/iam/security-credentials/ROLE
        X-aws-ec2-metadata-token: TOKEN                 -> the credentials JSON

A GET without a token, with an unknown one or with an expired one answers
401 (IMDSv1 is off, as with HttpTokens = required).  Other paths answer
404, other methods 405.

Use it in-process from a test:

    imds = ImdsEmulator(key_id, secret, token).start()
    imds.url                        # http://127.0.0.1:PORT
    imds.calls["creds"]             # how many credential GETs were answered
    imds.expires_in = 240           # lifetime of the credentials handed out
    imds.set_fault("500", step="token", count=1)
    imds.tokens                     # every session token it issued
    imds.stop()

or as a process: imds_emulator.py --port-file F --key-id K (the secret and
session token are read from --secrets-file, a JSON file, never argv).

Faults (set_fault KIND, optional STEP "token" | "role" | "creds", COUNT
answers, -1 = every answer):
    500, 404, 401     that HTTP status instead of the answer
    slow:SECONDS      wait that long before answering
    not-json          credentials that are not JSON
    failure           "Code": "Failure" with a Message
    no-token          credentials without "Token"
    expired           credentials whose Expiration has passed
    bad-role          a role listing that is not a role name ("../x")
    huge              an answer of 1 MiB
"""
import argparse
import datetime
import json
import os
import re
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_PATH = "/latest/api/token"
CREDS_PATH = "/latest/meta-data/iam/security-credentials/"
DEFAULT_ROLE = "pmpgate-broker-instance"
DEFAULT_EXPIRES_IN = 6 * 3600
MAX_TTL = 21600

FAULT_KINDS = ("500", "404", "401", "not-json", "failure", "no-token",
               "expired", "bad-role", "huge")
STEPS = ("token", "role", "creds")


def _iso(ts):
    return datetime.datetime.fromtimestamp(
        ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Handler(BaseHTTPRequestHandler):
    server_version = "EC2ws"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # else answers leave ~40 ms late

    def log_message(self, fmt, *args):  # noqa: D401 - quiet
        pass

    # ---- plumbing ----------------------------------------------------------

    def _send(self, status, body=b"", ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drain(self):
        n = self.headers.get("Content-Length")
        if n and n.isdigit() and int(n) <= 65536:
            self.rfile.read(int(n))

    def _record(self, step, status):
        emu = self.server.emu
        with emu.lock:
            emu.log.append({
                "method": self.command, "path": self.path, "step": step,
                "status": status,
                "ttl": self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"),
                "had_token": "X-aws-ec2-metadata-token" in self.headers,
                "forwarded": "X-Forwarded-For" in self.headers,
                "user_agent": self.headers.get("User-Agent"),
            })
            if status == 200:
                emu.calls[step] += 1

    def _fault(self, step):
        """Apply a slow fault here; return another fault kind or None."""
        kind = self.server.emu._take_fault(step)
        while kind and kind.startswith("slow:"):
            time.sleep(float(kind[5:]))
            kind = self.server.emu._take_fault(step)
        return kind

    def _token_ok(self):
        tok = self.headers.get("X-aws-ec2-metadata-token")
        emu = self.server.emu
        with emu.lock:
            exp = emu._live.get(tok) if tok else None
        return exp is not None and exp > time.time()

    # ---- methods -----------------------------------------------------------

    def do_PUT(self):
        self._drain()
        if self.path != TOKEN_PATH:
            self._record("other", 404)
            return self._send(404, "Not Found")
        if "X-Forwarded-For" in self.headers:
            self._record("token", 403)
            return self._send(403, "Forbidden")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not re.fullmatch(r"[0-9]{1,5}", ttl) or not 1 <= int(ttl) <= MAX_TTL:
            self._record("token", 400)
            return self._send(400, "Bad Request")
        fault = self._fault("token")
        if fault in ("500", "404", "401"):
            self._record("token", int(fault))
            return self._send(int(fault), "fault")
        if fault == "huge":
            self._record("token", 200)
            return self._send(200, "A" * (1 << 20))
        tok = "AQAEA" + secrets.token_urlsafe(42)
        emu = self.server.emu
        with emu.lock:
            emu._live[tok] = time.time() + int(ttl)
            emu.tokens.append(tok)
        self._record("token", 200)
        self._send(200, tok)

    def do_GET(self):
        emu = self.server.emu
        if self.path == TOKEN_PATH:
            self._record("token", 405)
            return self._send(405, "Method Not Allowed")
        if not self.path.startswith(CREDS_PATH):
            self._record("other", 404)
            return self._send(404, "Not Found")
        step = "role" if self.path == CREDS_PATH else "creds"
        if not self._token_ok():
            self._record(step, 401)
            return self._send(401, "Unauthorized")
        fault = self._fault(step)
        if fault in ("500", "404", "401"):
            self._record(step, int(fault))
            return self._send(int(fault), "fault")
        if fault == "huge":
            self._record(step, 200)
            return self._send(200, "x" * (1 << 20))
        if step == "role":
            if emu.role is None:
                self._record(step, 404)
                return self._send(404, "Not Found")
            self._record(step, 200)
            return self._send(200, "../x" if fault == "bad-role" else emu.role)
        if emu.role is None or self.path[len(CREDS_PATH):] != emu.role:
            self._record(step, 404)
            return self._send(404, "Not Found")
        self._record(step, 200)
        self._send(200, emu._credentials(fault), "text/plain")

    def do_POST(self):
        self._drain()
        self._record("other", 405)
        self._send(405, "Method Not Allowed")

    do_DELETE = do_POST
    do_PATCH = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (timeouts) is not an error here


class ImdsEmulator:
    """The emulator in a thread of the test process."""

    def __init__(self, key_id, secret, token, role=DEFAULT_ROLE,
                 expires_in=DEFAULT_EXPIRES_IN, port=0):
        self.key_id = key_id
        self.secret = secret
        self.token = token
        self.role = role
        self.expires_in = expires_in
        self.lock = threading.Lock()
        self.calls = {s: 0 for s in STEPS}
        self.calls["other"] = 0
        self.log = []
        self.tokens = []        # every IMDS session token issued
        self._live = {}
        self._faults = []
        self._port = port
        self.srv = None
        self.thread = None

    # ---- lifecycle ---------------------------------------------------------

    def start(self):
        self.srv = _Server(("127.0.0.1", self._port), _Handler)
        self.srv.emu = self
        self._port = self.srv.server_address[1]   # a restart keeps it
        self.thread = threading.Thread(target=self.srv.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.srv is not None:
            self.srv.shutdown()
            self.srv.server_close()
            self.thread.join(timeout=5)
            self.srv = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # ---- knobs and observations --------------------------------------------

    def set_fault(self, kind, step=None, count=1):
        if kind not in FAULT_KINDS and not re.fullmatch(r"slow:\d+(\.\d+)?", kind):
            raise ValueError(f"unknown fault {kind}")
        if step is not None and step not in STEPS:
            raise ValueError(f"unknown step {step}")
        with self.lock:
            self._faults.append({"kind": kind, "step": step, "count": count})

    def clear_faults(self):
        with self.lock:
            self._faults = []

    def reset_counts(self):
        with self.lock:
            for k in self.calls:
                self.calls[k] = 0
            self.log = []

    def counts(self):
        with self.lock:
            return dict(self.calls)

    def _take_fault(self, step):
        with self.lock:
            for f in self._faults:
                if f["step"] not in (None, step) or f["count"] == 0:
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                self._faults = [x for x in self._faults if x["count"] != 0]
                return f["kind"]
        return None

    def _credentials(self, fault):
        now = time.time()
        if fault == "not-json":
            return "<html><body>Service Unavailable</body></html>"
        if fault == "failure":
            return json.dumps({"Code": "Failure",
                               "Message": "Instance profile is not ready",
                               "LastUpdated": _iso(now)}, indent=2)
        doc = {
            "Code": "Success",
            "LastUpdated": _iso(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": self.key_id,
            "SecretAccessKey": self.secret,
            "Token": self.token,
            "Expiration": _iso(now - 60 if fault == "expired"
                               else now + self.expires_in),
        }
        if fault == "no-token":
            del doc["Token"]
        return json.dumps(doc, indent=2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secrets-file", required=True,
                    help='JSON {"secret": ..., "token": ...}')
    ap.add_argument("--role", default=DEFAULT_ROLE)
    ap.add_argument("--expires-in", type=int, default=DEFAULT_EXPIRES_IN)
    args = ap.parse_args(argv)
    with open(args.secrets_file) as f:
        s = json.load(f)
    emu = ImdsEmulator(args.key_id, s["secret"], s["token"], role=args.role,
                       expires_in=args.expires_in, port=args.port).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(emu.port))
    os.replace(tmp, args.port_file)
    try:
        emu.thread.join()
    except KeyboardInterrupt:
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
