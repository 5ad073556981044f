#!/usr/bin/python3
"""An AWS STS emulator for the tests: AssumeRole and GetCallerIdentity.

Run as a process:

    /usr/bin/python3 sts_emulator.py --port-file F --cert C --key K --state DIR

or control it from a test with ``StsEmulator`` (below).

Every request's SigV4 signature is verified with botocore, without
trusting the client: the request is rebuilt with exactly the headers the
client says it signed, the signing time is the request's X-Amz-Date, and
the signature botocore computes is compared in constant time.  Unknown keys
answer InvalidClientTokenId, bad signatures SignatureDoesNotMatch (403
<ErrorResponse>, as STS does).

State directory (all files 0600):
    principals.json  account id and the base principal it trusts
                     (written by the controller; secrets never on argv)
    issued.json      credentials it issued (so that e.g. the AWS CLI can
                     call GetCallerIdentity with them later)
    faults.json      the next faults to inject, read at request time
    requests.jsonl   one line per request: what was asked and whether the
                     signature verified (never a secret)

AssumeRole checks its parameters as STS does (RoleArn, RoleSessionName,
DurationSeconds, tags, SourceIdentity, Policy, ExternalId) and, like the
role trust policies pmpgate ships, requires a SourceIdentity and a
pmpgate:ticket session tag.
"""
import argparse
import datetime
import hmac
import json
import os
import re
import secrets
import ssl
import string
import sys
import threading
import time
import unicodedata
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
DEFAULT_ACCOUNT = "123456789012"
BASE_USER = "pmpgate-broker"
MAX_BODY = 64 * 1024
CLOCK_SKEW = 15 * 60

ROLE_ARN_RE = re.compile(r"^arn:aws:iam::(\d{12}):role/((?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})$")
SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
SOURCE_IDENTITY_RE = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,"
    r"\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$")


def _write_private(path, data):
    """Write DATA to PATH atomically with mode 0600."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def _tag_chars_ok(s):
    """STS tag text: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]."""
    for c in s:
        cat = unicodedata.category(c)
        if cat[0] in ("L", "Z", "N") or c in "_.:/=+-@":
            continue
        return False
    return True


def _iso(ts, millis=False):
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    if millis:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _xml_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


class StsError(Exception):
    def __init__(self, status, code, message, kind="Sender"):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.kind = kind


def _validation(field, value, constraint):
    return StsError(400, "ValidationError",
                    f"1 validation error detected: Value '{value}' at '{field}' "
                    f"failed to satisfy constraint: {constraint}")


class State:
    """Principals, issued credentials, faults and the request log."""

    def __init__(self, directory):
        self.dir = directory
        self.lock = threading.Lock()
        with open(os.path.join(directory, "principals.json")) as f:
            p = json.load(f)
        self.account = p.get("account", DEFAULT_ACCOUNT)
        base = p["base"]
        self.base = {"key_id": base["key_id"], "secret": base["secret"],
                     "token": base.get("token")}
        self.issued = {}
        path = os.path.join(directory, "issued.json")
        if os.path.exists(path):
            with open(path) as f:
                self.issued = json.load(f)
        self.counter = 0

    def principal(self, key_id):
        """(secret, token, session dict or None) for KEY_ID, or None."""
        if key_id == self.base["key_id"]:
            return self.base["secret"], self.base["token"], None
        with self.lock:
            s = self.issued.get(key_id)
        if s:
            return s["secret"], s["token"], s
        return None

    def remember(self, session):
        with self.lock:
            self.issued[session["key_id"]] = session
            _write_private(os.path.join(self.dir, "issued.json"),
                           json.dumps(self.issued))

    def take_fault(self, action):
        """The fault to apply to this request (consumed), or None."""
        path = os.path.join(self.dir, "faults.json")
        with self.lock:
            try:
                with open(path) as f:
                    faults = json.load(f)
            except FileNotFoundError:
                return None
            for i, fl in enumerate(faults):
                if fl.get("action") and fl["action"] != action:
                    continue
                if fl["count"] == 0:
                    continue
                if fl["count"] > 0:
                    fl["count"] -= 1
                faults = [x for x in faults if x["count"] != 0]
                _write_private(path, json.dumps(faults))
                return fl["kind"]
        return None

    def log(self, entry):
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.lock:
            fd = os.open(os.path.join(self.dir, "requests.jsonl"),
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def next_counter(self):
        with self.lock:
            self.counter += 1
            return self.counter


def verify_sigv4(method, path, headers, body, principal_lookup, now=None):
    """Check a request's SigV4 Authorization with botocore.

    Returns (key_id, region, service, principal) or raises StsError.
    HEADERS maps lower-case names to values (as received).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers.get("authorization")
    if not auth:
        raise StsError(403, "MissingAuthenticationToken",
                       "Request is missing Authentication Token")
    m = AUTH_RE.match(auth.strip())
    if not m:
        raise StsError(400, "IncompleteSignature",
                       "Authorization header requires 'Credential', 'SignedHeaders' "
                       "and 'Signature' parameters.")
    key_id, date, region, service, signed, sig = m.groups()
    amz_date = headers.get("x-amz-date", "")
    try:
        t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        raise StsError(400, "IncompleteSignature", "X-Amz-Date is missing or malformed")
    if date != amz_date[:8]:
        raise StsError(403, "SignatureDoesNotMatch",
                       "Credential should be scoped to a valid date")
    if service != "sts":
        raise StsError(403, "SignatureDoesNotMatch",
                       "Credential should be scoped to correct service: 'sts'.")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise StsError(403, "SignatureDoesNotMatch",
                       "Credential should be scoped to a valid region.")
    now = time.time() if now is None else now
    if abs(now - t.timestamp()) > CLOCK_SKEW:
        raise StsError(403, "SignatureDoesNotMatch",
                       "Signature expired: the request time is too far from the server time")
    names = signed.split(";")
    if "host" not in names or names != sorted(set(names)):
        raise StsError(403, "SignatureDoesNotMatch",
                       "SignedHeaders must be sorted, unique and include host")
    for n in names:
        if n not in headers:
            raise StsError(403, "SignatureDoesNotMatch",
                           f"Signed header {n} is missing from the request")
    found = principal_lookup(key_id)
    if found is None:
        raise StsError(403, "InvalidClientTokenId",
                       "The security token included in the request is invalid.")
    secret, token, session = found
    if token is not None:
        if not hmac.compare_digest(headers.get("x-amz-security-token", "").encode(),
                                   token.encode()):
            raise StsError(403, "InvalidClientTokenId",
                           "The security token included in the request is invalid.")
        if session and session["expiration"] <= now:
            raise StsError(400, "ExpiredToken",
                           "The security token included in the request is expired")
    elif "x-amz-security-token" in headers:
        raise StsError(403, "InvalidClientTokenId",
                       "The security token included in the request is invalid.")

    host = headers["host"]
    req = AWSRequest(method=method, url=f"https://{host}{path}", data=body,
                     headers={n: headers[n] for n in names})
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key_id, secret, token), service, region)
    if signer.signed_headers(signer.headers_to_sign(req)) != signed:
        raise StsError(403, "SignatureDoesNotMatch",
                       "The request signature we calculated does not match the "
                       "signature you provided (signed headers).")
    canonical = signer.canonical_request(req)
    expect = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(expect.encode(), sig.encode()):
        raise StsError(403, "SignatureDoesNotMatch",
                       "The request signature we calculated does not match the "
                       "signature you provided. Check your AWS Secret Access Key "
                       "and signing method. Consult the service documentation for "
                       "details.")
    return key_id, region, service, session


def parse_form(body):
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise StsError(400, "MalformedQueryString", "The query string is malformed")
    params = {}
    for k, v in pairs:
        if k in params:
            raise StsError(400, "MalformedQueryString", f"Parameter {k} given twice")
        params[k] = v
    return params


def parse_assume(params, account, chained):
    """Validate AssumeRole parameters as STS does; return a dict."""
    role_arn = params.get("RoleArn")
    if role_arn is None:
        raise StsError(400, "MissingParameter",
                       "The request must contain the parameter RoleArn")
    m = ROLE_ARN_RE.match(role_arn)
    if not m or len(role_arn) > 2048:
        raise _validation("roleArn", role_arn, "Member must satisfy ARN shape")
    name = params.get("RoleSessionName")
    if name is None:
        raise StsError(400, "MissingParameter",
                       "The request must contain the parameter RoleSessionName")
    if not SESSION_NAME_RE.match(name):
        raise _validation("roleSessionName", name,
                          "Member must satisfy regular expression pattern: [\\w+=,.@-]*")
    dur_s = params.get("DurationSeconds", "3600")
    if not re.fullmatch(r"\d{1,6}", dur_s) or not 900 <= int(dur_s) <= 43200:
        raise _validation("durationSeconds", dur_s,
                          "Member must have value between 900 and 43200")
    duration = int(dur_s)
    if chained and duration > 3600:
        raise StsError(400, "ValidationError",
                       "The requested DurationSeconds exceeds the 1 hour session "
                       "limit for roles assumed by role chaining.")
    source = params.get("SourceIdentity")
    if source is not None and not SOURCE_IDENTITY_RE.match(source):
        raise _validation("sourceIdentity", source,
                          "Member must satisfy regular expression pattern: [\\w+=,.@-]*")
    tags = {}
    lower = set()
    i = 1
    while f"Tags.member.{i}.Key" in params:
        k = params[f"Tags.member.{i}.Key"]
        v = params.get(f"Tags.member.{i}.Value")
        if v is None:
            raise StsError(400, "MissingParameter", f"Tags.member.{i}.Value is missing")
        if not 1 <= len(k) <= 128 or not _tag_chars_ok(k):
            raise _validation(f"tags.{i}.member.key", k,
                              "Member must satisfy regular expression pattern: "
                              "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+")
        if len(v) > 256 or not _tag_chars_ok(v):
            raise _validation(f"tags.{i}.member.value", v,
                              "Member must satisfy regular expression pattern: "
                              "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*")
        if k.lower() in lower:
            raise StsError(400, "InvalidParameterValue", "Duplicate tag keys found.")
        lower.add(k.lower())
        tags[k] = v
        i += 1
    if len(tags) > 50:
        raise StsError(400, "ValidationError", "Too many session tags")
    stray = [k for k in params if k.startswith("Tags.member.")
             and not re.fullmatch(r"Tags\.member\.([1-9]\d*)\.(Key|Value)", k)]
    stray += [k for k in params if re.fullmatch(r"Tags\.member\.(\d+)\.(Key|Value)", k)
              and int(k.split(".")[2]) >= i]
    if stray:
        raise StsError(400, "InvalidParameterValue", f"Unexpected parameter {stray[0]}")
    transitive = []
    j = 1
    while f"TransitiveTagKeys.member.{j}" in params:
        transitive.append(params[f"TransitiveTagKeys.member.{j}"])
        j += 1
    for k in transitive:
        if k.lower() not in lower:
            raise StsError(400, "InvalidParameterValue",
                           "The specified transitive tag key must be included in the "
                           "requested tags.")
    policy = params.get("Policy")
    if policy is not None:
        if len(policy) > 2048:
            raise StsError(400, "PackedPolicyTooLarge",
                           "Serialized token too large for session")
        try:
            json.loads(policy)
        except ValueError:
            raise StsError(400, "MalformedPolicyDocument",
                           "The policy is not in the valid JSON format.")
    external_id = params.get("ExternalId")
    if external_id is not None and not EXTERNAL_ID_RE.match(external_id):
        raise _validation("externalId", external_id,
                          "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*")
    known = {"Action", "Version", "RoleArn", "RoleSessionName", "DurationSeconds",
             "SourceIdentity", "Policy", "ExternalId"}
    for k in params:
        if k in known or k.startswith("Tags.member.") or \
                re.fullmatch(r"TransitiveTagKeys\.member\.\d+", k):
            continue
        raise StsError(400, "InvalidParameterValue", f"Unknown parameter {k}")
    # The trust policy of pmpgate's roles.
    if m.group(1) != account:
        raise StsError(403, "AccessDenied",
                       f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}")
    if source is None or "pmpgate:ticket" not in tags:
        raise StsError(403, "AccessDenied",
                       "User is not authorized to perform: sts:AssumeRole on resource: "
                       f"{role_arn} (trust policy requires sts:SourceIdentity and the "
                       "pmpgate:ticket tag)")
    return {"role_arn": role_arn, "role_name": m.group(3), "session_name": name,
            "duration": duration, "source_identity": source, "tags": tags,
            "transitive_tag_keys": transitive,
            "policy": json.loads(policy) if policy is not None else None,
            "external_id": external_id}


def _random_key(prefix):
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(16))


BILLION_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
                  + "".join(f' <!ENTITY lol{i} "' + f"&lol{i - 1 if i > 1 else ''};" * 10 + '">\n'
                            for i in range(1, 10))
                  + ']>\n<AssumeRoleResponse xmlns="' + NS + '"><AssumeRoleResult>'
                  '<Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId>'
                  '<SessionToken>&lol9;</SessionToken></Credentials>'
                  '</AssumeRoleResult></AssumeRoleResponse>\n')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "sts-emulator"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet; the JSON log is the record
        pass

    # -- answers ----------------------------------------------------------
    def _send(self, status, body, ctype="text/xml"):
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", self.request_id)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def _error(self, e):
        self._send(e.status,
                   f'<ErrorResponse xmlns="{NS}">\n  <Error>\n'
                   f'    <Type>{e.kind}</Type>\n    <Code>{_xml_escape(e.code)}</Code>\n'
                   f'    <Message>{_xml_escape(e.message)}</Message>\n  </Error>\n'
                   f'  <RequestId>{self.request_id}</RequestId>\n</ErrorResponse>\n')

    def do_GET(self):
        self.request_id = str(uuid.uuid4())
        self._error(StsError(405, "InvalidAction", "Use POST"))

    def do_POST(self):
        st = self.server.state
        self.request_id = str(uuid.uuid4())
        entry = {"time": time.time(), "request_id": self.request_id,
                 "signature_ok": False}
        try:
            n = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            entry["error"] = "LengthRequired"
            st.log(entry)
            self.close_connection = True
            return self._error(StsError(411, "MissingContentLength",
                                        "Content-Length required (at most 64 KiB)"))
        body = self.rfile.read(n)
        headers = {}
        for k, v in self.headers.items():
            lk = k.lower()
            headers[lk] = f"{headers[lk]},{v}" if lk in headers else v
        status = 200
        try:
            params = parse_form(body)
            entry["action"] = params.get("Action")
            key_id, region, _svc, session = verify_sigv4(
                "POST", self.path, headers, body, st.principal)
            entry.update(signature_ok=True, caller_key_id=key_id, region=region,
                         session_token=("x-amz-security-token" in headers))
            if session:
                entry["caller_role_arn"] = session["role_arn"]
                entry["caller_session_name"] = session["session_name"]
                entry["caller_source_identity"] = session["source_identity"]
            if params.get("Version") != "2011-06-15":
                raise StsError(400, "InvalidAction", "Unsupported Version")
            action = params.get("Action")
            if action == "AssumeRole":
                a = parse_assume(params, st.account, chained=session is not None)
                entry.update({k: a[k] for k in ("role_arn", "session_name", "duration",
                                                "source_identity", "tags",
                                                "transitive_tag_keys", "policy",
                                                "external_id")})
                fault = st.take_fault("AssumeRole")
                entry["fault"] = fault
                body_out = self._assume(a, fault, session)
            elif action == "GetCallerIdentity":
                fault = st.take_fault("GetCallerIdentity")
                entry["fault"] = fault
                body_out = self._caller(key_id, session, fault)
            else:
                raise StsError(400, "InvalidAction",
                               f"Could not find operation {action} for version 2011-06-15")
            if isinstance(body_out, tuple):
                status, body_out = body_out
            entry["status"] = status
            st.log(entry)
            self._send(status, body_out)
        except StsError as e:
            entry.update(status=e.status, error=e.code)
            st.log(entry)
            self._error(e)

    # -- actions ------------------------------------------------------------
    def _common_fault(self, fault):
        if fault is None:
            return None
        if fault == "AccessDenied":
            raise StsError(403, "AccessDenied",
                           "User is not authorized to perform: sts:AssumeRole")
        if fault == "Throttling":
            raise StsError(400, "Throttling", "Rate exceeded")
        if fault == "500":
            raise StsError(500, "InternalFailure",
                           "An internal error has occurred", kind="Receiver")
        if fault == "503":
            return (503, "<html><body>Service Unavailable</body></html>")
        if fault.startswith("slow:"):
            time.sleep(float(fault.split(":", 1)[1]))
            return None
        if fault == "malformed":
            return (200, "this is not XML {\"Credentials\": null")
        if fault == "doctype":
            return (200, BILLION_LAUGHS)
        return None

    def _assume(self, a, fault, parent):
        st = self.server.state
        early = self._common_fault(fault)
        if early is not None:
            return early
        now = time.time()
        n = st.next_counter()
        if fault == "expired":
            exp = now - 60
        else:
            exp = now + a["duration"]
        key_id = _random_key("ASIA")
        secret = secrets.token_urlsafe(30)[:40]
        token = "IQoJb3JpZ2luX2Vj" + secrets.token_urlsafe(600)
        arn = f"arn:aws:sts::{st.account}:assumed-role/{a['role_name']}/{a['session_name']}"
        role_id = "AROA" + _random_key("")[:17]
        st.remember({"key_id": key_id, "secret": secret, "token": token,
                     "expiration": exp, "role_arn": a["role_arn"], "arn": arn,
                     "user_id": f"{role_id}:{a['session_name']}",
                     "session_name": a["session_name"],
                     "source_identity": a["source_identity"],
                     "tags": a["tags"], "parent": parent["key_id"] if parent else None})
        creds = ("    <Credentials>\n"
                 f"      <AccessKeyId>{key_id}</AccessKeyId>\n"
                 f"      <SecretAccessKey>{secret}</SecretAccessKey>\n"
                 f"      <SessionToken>{token}</SessionToken>\n"
                 f"      <Expiration>{_iso(exp, millis=(n % 2 == 0))}</Expiration>\n"
                 "    </Credentials>\n")
        if fault == "no-credentials":
            creds = ""
        src = (f"    <SourceIdentity>{_xml_escape(a['source_identity'])}</SourceIdentity>\n"
               if a["source_identity"] else "")
        return (f'<AssumeRoleResponse xmlns="{NS}">\n  <AssumeRoleResult>\n{src}'
                "    <AssumedRoleUser>\n"
                f"      <AssumedRoleId>{role_id}:{_xml_escape(a['session_name'])}</AssumedRoleId>\n"
                f"      <Arn>{_xml_escape(arn)}</Arn>\n"
                f"    </AssumedRoleUser>\n{creds}"
                "    <PackedPolicySize>6</PackedPolicySize>\n"
                "  </AssumeRoleResult>\n  <ResponseMetadata>\n"
                f"    <RequestId>{self.request_id}</RequestId>\n"
                "  </ResponseMetadata>\n</AssumeRoleResponse>\n")

    def _caller(self, key_id, session, fault):
        st = self.server.state
        early = self._common_fault(fault)
        if early is not None:
            return early
        if session:
            arn, user_id = session["arn"], session["user_id"]
        else:
            arn = f"arn:aws:iam::{st.account}:user/{BASE_USER}"
            user_id = "AIDA" + key_id[4:]
        return (f'<GetCallerIdentityResponse xmlns="{NS}">\n'
                "  <GetCallerIdentityResult>\n"
                f"    <Arn>{_xml_escape(arn)}</Arn>\n"
                f"    <UserId>{_xml_escape(user_id)}</UserId>\n"
                f"    <Account>{st.account}</Account>\n"
                "  </GetCallerIdentityResult>\n  <ResponseMetadata>\n"
                f"    <RequestId>{self.request_id}</RequestId>\n"
                "  </ResponseMetadata>\n</GetCallerIdentityResponse>\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, state, ctx):
        self.state = state
        self.ctx = ctx
        super().__init__(addr, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.settimeout(30)
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass  # a client that went away (timeouts, wrong CA) is not an error here


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    srv = Server(("127.0.0.1", args.port), State(args.state), ctx)
    _write_private(args.port_file + ".tmp", str(srv.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


# ---- the controller used by tests ---------------------------------------------

class StsEmulator:
    """Start and drive an emulator process from a test.

        emu = StsEmulator(tmpdir, ca)       # ca: common.TestCA
        emu.start()
        emu.url, emu.base_key_id, emu.base_secret, emu.base_token
        emu.set_fault("Throttling", count=2)
        emu.requests()                      # the JSON log, as dicts
        emu.stop()
    """

    FAULTS = ("AccessDenied", "Throttling", "500", "503", "expired", "malformed",
              "no-credentials", "doctype")

    def __init__(self, workdir, ca, account=DEFAULT_ACCOUNT, base_token=False,
                 name="sts"):
        import common  # the harness is imported flat
        self._common = common
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.ca = ca
        self.account = account
        self.base_key_id = _random_key("AKIA")
        self.base_secret = secrets.token_urlsafe(30)[:40]
        self.base_token = ("FwoGZXIvYXdzEBase" + secrets.token_urlsafe(300)
                           if base_token else None)
        self.cert, self.key = ca.server_cert("sts-emulator")
        self.port_file = os.path.join(self.dir, "port")
        self.proc = None
        self.port = None
        _write_private(os.path.join(self.dir, "principals.json"), json.dumps({
            "account": account,
            "base": {"key_id": self.base_key_id, "secret": self.base_secret,
                     "token": self.base_token}}))
        _write_private(os.path.join(self.dir, "faults.json"), "[]")

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    @property
    def base_arn(self):
        return f"arn:aws:iam::{self.account}:user/{BASE_USER}"

    def role_arn(self, name):
        return f"arn:aws:iam::{self.account}:role/{name}"

    def start(self, timeout=10.0):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.proc = self._common.Proc(
            ["/usr/bin/python3", os.path.abspath(__file__), "--port-file", self.port_file,
             "--cert", self.cert, "--key", self.key, "--state", self.dir,
             "--port", str(self._common.free_port())],
            os.path.join(self.dir, "emulator.log"))

        def ready():
            if not self.proc.alive():
                raise RuntimeError("STS emulator exited:\n" + self.proc.output())
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    return int(f.read().strip() or 0)
            return None
        self.port = self._common.wait_for(ready, timeout=timeout, what="STS emulator")
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def set_fault(self, kind, count=1, action=None):
        """Inject KIND into the next COUNT answers (count=-1: every answer),
        optionally only for ACTION ("AssumeRole", "GetCallerIdentity").
        Kinds: AccessDenied, Throttling, 500, 503, slow:SECONDS, expired,
        malformed, no-credentials, doctype."""
        if kind not in self.FAULTS and not re.fullmatch(r"slow:\d+(\.\d+)?", kind):
            raise ValueError(f"unknown fault {kind}")
        path = os.path.join(self.dir, "faults.json")
        with open(path) as f:
            faults = json.load(f)
        faults.append({"kind": kind, "count": count, "action": action})
        _write_private(path, json.dumps(faults))

    def clear_faults(self):
        _write_private(os.path.join(self.dir, "faults.json"), "[]")

    def requests(self):
        path = os.path.join(self.dir, "requests.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def clear_requests(self):
        path = os.path.join(self.dir, "requests.jsonl")
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
