"""pmpgate-credentials and pmpgate against the protocol, without pmpgated.

A fake daemon on a unix socket in a temporary directory records the
request line it receives and answers with canned bytes (or closes, or
never answers).  This tests the clients' side of the protocol: what they
send, what they accept, what they print and how they exit.

Binaries come from $PMPGATE_BUILD (default: the repository's build/),
built with `make build/pmpgate-credentials build/pmpgate`.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("PMPGATE_BUILD", os.path.join(REPO, "build"))
HELPER = os.path.join(BUILD, "pmpgate-credentials")
CLI = os.path.join(BUILD, "pmpgate")

ROLE = "procurement-manager"
TICKET = "CHG0012345"
AKID = "ASIAPMPGATETEST00001"
SECRET = "pmpgateTESTsecret/Key+0123456789abcdefXYZ"
TOKEN = "FwoGZXIvYXdzEPMPGATE+test/session=token=="
EXPIRATION = "2030-06-01T12:00:00Z"

CREDS = {"AccessKeyId": AKID, "SecretAccessKey": SECRET,
         "SessionToken": TOKEN, "Expiration": EXPIRATION}

CLOSE = object()  # close the connection without answering
HANG = object()   # never answer; wait until the client gives up


def line(obj):
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def allow(**extra):
    a = {"v": 1, "status": "allow", "rules": [], "reason": "", "exit": 0,
         "role": ROLE, "user": "alice", "ticket": TICKET, "duration": 900,
         "credentials": dict(CREDS)}
    a.update(extra)
    return a


def deny(reason, rules=("R3",), code=1, status="deny"):
    return {"v": 1, "status": status, "rules": list(rules),
            "reason": reason, "exit": code}


class FakeDaemon:
    """A unix socket server that answers every connection the same way."""

    def __init__(self, action):
        self.dir = tempfile.mkdtemp(prefix="pgfake.")
        self.path = os.path.join(self.dir, "socket")
        self.action = action
        self.requests = []
        self.stop_event = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, conn):
        data = b""
        conn.settimeout(5)
        while b"\n" not in data and len(data) < 70000:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def _serve(self):
        while not self.stop_event.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    self.requests.append(self._read_request(conn))
                    if self.action is CLOSE:
                        continue
                    if self.action is HANG:
                        conn.settimeout(0.1)
                        while not self.stop_event.is_set():
                            try:
                                if not conn.recv(1):
                                    break
                            except socket.timeout:
                                continue
                        continue
                    conn.sendall(self.action)
                except OSError:
                    pass

    def close(self):
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self):
        """The one request received, checked to be one line, as JSON."""
        assert len(self.requests) == 1, self.requests
        raw = self.requests[0]
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw
        return json.loads(raw)


@pytest.fixture
def fake():
    daemons = []

    def start(action):
        if isinstance(action, dict):
            action = line(action)
        d = FakeDaemon(action)
        daemons.append(d)
        return d

    yield start
    for d in daemons:
        d.close()


@pytest.fixture(scope="module", autouse=True)
def binaries():
    for b in (HELPER, CLI):
        if not os.access(b, os.X_OK):
            pytest.fail(f"{b} is missing: run `make build/pmpgate-credentials "
                        f"build/pmpgate` (or set PMPGATE_BUILD)")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMPGATE_")}
    env.update(extra)
    return env


def run(binary, args, env=None, timeout=30):
    t0 = time.monotonic()
    p = subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, env=env if env is not None
                       else clean_env(), timeout=timeout)
    p.elapsed = time.monotonic() - t0
    return p


def helper(args, sock=None, **envextra):
    if sock is not None:
        envextra.setdefault("PMPGATE_SOCKET", sock)
    return run(HELPER, args, env=clean_env(**envextra))


def one_stderr_line(p):
    err = p.stderr.decode()
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    return err[:-1]


def assert_no_secret(p):
    for out in (p.stdout, p.stderr):
        assert SECRET.encode() not in out
        assert TOKEN.encode() not in out


# ---- the binary itself ------------------------------------------------------

def test_helper_links_only_libc_and_jansson():
    out = subprocess.run(["readelf", "-d", HELPER], capture_output=True,
                         check=True, text=True).stdout
    needed = {l.split("[", 1)[1].rstrip("]")
              for l in out.splitlines() if "(NEEDED)" in l}
    assert needed == {"libc.so.6", "libjansson.so.4"}


def test_cli_links_no_ldap_curl_or_tls():
    # The admin CLI is a client too; it adds only libcrypto, for the
    # audit chain's hashes and Ed25519 signatures (pmpgate audit verify).
    out = subprocess.run(["readelf", "-d", CLI], capture_output=True,
                         check=True, text=True).stdout
    needed = {l.split("[", 1)[1].rstrip("]")
              for l in out.splitlines() if "(NEEDED)" in l}
    assert needed <= {"libc.so.6", "libjansson.so.4", "libcrypto.so.3"}


def test_help_and_version():
    p = helper(["--help"])
    assert p.returncode == 0
    assert b"--role ROLE" in p.stdout and p.stderr == b""
    p = helper(["--version"])
    assert p.returncode == 0
    assert p.stdout.startswith(b"pmpgate-credentials ")


# ---- usage errors: exit 2, one line, nothing on stdout ----------------------

USAGE = [
    ([], {}),
    (["--role"], {}),
    (["--ticket", TICKET], {}),
    (["--role", ROLE], {}),                               # no ticket at all
    (["--role", ROLE, "--ticket", ""], {}),
    (["--role", "Procurement-Manager", "--ticket", TICKET], {}),
    (["--role", "procurement manager", "--ticket", TICKET], {}),
    (["--role", "x" * 65, "--ticket", TICKET], {}),
    (["--role", ROLE, "--ticket", "CHG\n1"], {}),
    (["--role", ROLE, "--ticket", "T" * 257], {}),
    (["--role", ROLE, "--ticket", TICKET, "--duration", "abc"], {}),
    (["--role", ROLE, "--ticket", TICKET, "--duration", "13h"], {}),
    (["--role", ROLE, "--ticket", TICKET, "--duration", "0"], {}),
    (["--role", ROLE, "--ticket", TICKET, "--duration", "-900"], {}),
    (["--role", ROLE, "--ticket", TICKET, "--duration", "1d"], {}),
    (["--role", ROLE, "--ticket", TICKET, "--format", "yaml"], {}),
    (["--role", ROLE, "--ticket", TICKET, "--bogus"], {}),
    (["--role", ROLE, "--ticket", TICKET, "extra"], {}),
    (["--role", ROLE, "--ticket", TICKET], {"PMPGATE_TIMEOUT": "soon"}),
    (["--role", ROLE, "--ticket", TICKET], {"PMPGATE_TIMEOUT": "0"}),
]


@pytest.mark.parametrize("args,env", USAGE)
def test_usage_errors(args, env, fake):
    d = fake(line(allow()))
    p = helper(args, sock=d.path, **env)
    assert p.returncode == 2, p.stderr
    assert p.stdout == b""
    assert one_stderr_line(p).startswith("pmpgate-credentials: usage: ")
    assert d.requests == []  # nothing was sent


# ---- daemon not running -------------------------------------------------------

def test_no_daemon():
    d = tempfile.mkdtemp(prefix="pgnone.")
    try:
        sock = os.path.join(d, "socket")
        p = helper(["--role", ROLE, "--ticket", TICKET], sock=sock)
        assert p.returncode == 3
        assert p.stdout == b""
        assert one_stderr_line(p) == (
            f"pmpgate-credentials: error: pmpgated is not running "
            f"(no daemon at {sock})")
        # --socket wins over PMPGATE_SOCKET
        p = helper(["--role", ROLE, "--ticket", TICKET, "--socket", sock],
                   sock="/nonexistent/elsewhere")
        assert p.returncode == 3
        assert sock in p.stderr.decode()
    finally:
        shutil.rmtree(d)


def test_stale_socket_file():
    d = tempfile.mkdtemp(prefix="pgstale.")
    try:
        sock = os.path.join(d, "socket")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sock)
        s.close()  # the file stays, nobody listens
        p = helper(["--role", ROLE, "--ticket", TICKET], sock=sock)
        assert p.returncode == 3
        assert "not running" in one_stderr_line(p)
        assert p.stdout == b""
    finally:
        shutil.rmtree(d)


# ---- allow: each format -------------------------------------------------------

def test_allow_process_format(fake):
    d = fake(allow())
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode == 0, p.stderr
    assert p.stderr == b""
    assert p.stdout == (
        b'{"Version":1,"AccessKeyId":"' + AKID.encode() +
        b'","SecretAccessKey":"' + SECRET.encode() +
        b'","SessionToken":"' + TOKEN.encode() +
        b'","Expiration":"' + EXPIRATION.encode() + b'"}\n')
    assert json.loads(p.stdout) == dict(CREDS, Version=1)


def test_allow_env_format(fake):
    d = fake(allow())
    p = helper(["--role", ROLE, "--ticket", TICKET, "--format", "env"],
               sock=d.path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == (
        f"export AWS_ACCESS_KEY_ID='{AKID}'\n"
        f"export AWS_SECRET_ACCESS_KEY='{SECRET}'\n"
        f"export AWS_SESSION_TOKEN='{TOKEN}'\n"
        f"export AWS_CREDENTIAL_EXPIRATION='{EXPIRATION}'\n")
    # and a shell reads it back
    sh = subprocess.run(["sh", "-c", p.stdout.decode() +
                         'printf "%s|%s" "$AWS_SECRET_ACCESS_KEY" '
                         '"$AWS_CREDENTIAL_EXPIRATION"'],
                        capture_output=True, text=True, check=True)
    assert sh.stdout == f"{SECRET}|{EXPIRATION}"


def test_allow_ini_format(fake):
    d = fake(allow())
    p = helper(["--role", ROLE, "--ticket", TICKET, "--format=ini"],
               sock=d.path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == (
        f"[{ROLE}]\n"
        f"aws_access_key_id = {AKID}\n"
        f"aws_secret_access_key = {SECRET}\n"
        f"aws_session_token = {TOKEN}\n")


# ---- what the helper sends ----------------------------------------------------

def test_request_line(fake):
    d = fake(allow())
    p = helper(["--role", ROLE, "--ticket", TICKET, "--duration", "15m"],
               sock=d.path)
    assert p.returncode == 0, p.stderr
    req = d.request()
    assert req["v"] == 1 and isinstance(req["v"], int)
    assert req["op"] == "issue"
    assert req["role"] == ROLE
    assert req["ticket"] == TICKET
    assert req["duration"] == 900
    assert "user" not in req
    assert req["context"] == {"service": "credential_process"}  # no tty
    assert set(req) == {"v", "op", "role", "ticket", "duration", "context"}


@pytest.mark.parametrize("given,want", [
    ("900", 900), ("900s", 900), ("1h", 3600), ("12h", 43200),
    ("43200", 43200)])
def test_duration_forms(fake, given, want):
    d = fake(allow())
    p = helper(["-r", ROLE, "-t", TICKET, "-d", given], sock=d.path)
    assert p.returncode == 0, p.stderr
    assert d.request()["duration"] == want


def test_no_duration_is_left_out(fake):
    d = fake(allow())
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode == 0
    assert "duration" not in d.request()


def test_ticket_from_environment(fake):
    d = fake(allow())
    p = helper(["--role", ROLE], sock=d.path, PMPGATE_TICKET="RITM0042")
    assert p.returncode == 0, p.stderr
    assert d.request()["ticket"] == "RITM0042"


def test_ticket_option_wins_over_environment(fake):
    d = fake(allow())
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path,
               PMPGATE_TICKET="RITM0042")
    assert p.returncode == 0, p.stderr
    assert d.request()["ticket"] == TICKET


def test_socket_option(fake):
    d = fake(allow())
    p = run(HELPER, ["--role", ROLE, "--ticket", TICKET, "--socket", d.path])
    assert p.returncode == 0, p.stderr
    assert len(d.requests) == 1


# ---- refusals and errors from the daemon --------------------------------------

def test_deny(fake):
    reason = "ticket CHG0012345 is not approved (R3 ticket-not-approved)"
    d = fake(deny(reason))
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode == 1
    assert p.stdout == b""
    assert one_stderr_line(p) == f"pmpgate-credentials: refused: {reason}"


def test_deny_reason_is_sanitised(fake):
    d = fake(deny("bad\nnews\x1b[2J \u202eevil (R1 not-in-group)",
                  rules=["R1"]))
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode == 1
    assert p.stdout == b""
    assert one_stderr_line(p) == (
        "pmpgate-credentials: refused: bad?news?[2J ?evil (R1 not-in-group)")


def test_deny_without_reason(fake):
    d = fake(deny(""))
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode == 1
    assert one_stderr_line(p) == ("pmpgate-credentials: refused: "
                                  "(no reason given)")


@pytest.mark.parametrize("code,status", [
    (2, "error"), (3, "error"), (4, "error"), (3, "deny")])
def test_error_answers(fake, code, status):
    reason = "the directory is unreachable (R9 unavailable)"
    d = fake(deny(reason, rules=["R9"], code=code, status=status))
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode == code
    assert p.stdout == b""
    word = "refused" if status == "deny" else "error"
    assert one_stderr_line(p) == f"pmpgate-credentials: {word}: {reason}"


# ---- malformed answers: never exit 0, nothing on stdout -------------------------

def _bad_creds(**change):
    c = dict(CREDS)
    for k, v in change.items():
        if v is None:
            del c[k]
        else:
            c[k] = v
    return line(allow(credentials=c))


MALFORMED = {
    "not json": b"this is not json\n",
    "json array": b"[1,2,3]\n",
    "empty line": b"\n",
    "missing status": line({"v": 1, "reason": "", "exit": 0,
                            "credentials": CREDS}),
    "missing exit": line({"v": 1, "status": "allow", "reason": "",
                          "credentials": CREDS}),
    "missing reason": line({"v": 1, "status": "allow", "exit": 0,
                            "credentials": CREDS}),
    "missing v": line({"status": "allow", "reason": "", "exit": 0,
                       "credentials": CREDS}),
    "v 2": line(dict(allow(), v=2)),
    "unknown status": line(dict(allow(), status="ok")),
    "exit 0 with status deny": line(dict(deny("x"), exit=0)),
    "exit 1 with status allow": line(dict(allow(), exit=1)),
    "exit 7": line(deny("x", code=7, status="error")),
    "exit a string": line(dict(deny("x"), exit="1")),
    "credentials missing": line({k: v for k, v in allow().items()
                                 if k != "credentials"}),
    "credentials null": line(allow(credentials=None)),
    "AccessKeyId missing": _bad_creds(AccessKeyId=None),
    "SecretAccessKey missing": _bad_creds(SecretAccessKey=None),
    "SessionToken missing": _bad_creds(SessionToken=None),
    "Expiration missing": _bad_creds(Expiration=None),
    "Expiration with milliseconds": _bad_creds(
        Expiration="2030-06-01T12:00:00.000Z"),
    "Expiration with offset": _bad_creds(
        Expiration="2030-06-01T12:00:00+00:00"),
    "Expiration garbage": _bad_creds(Expiration="tomorrow"),
    "Expiration a number": _bad_creds(Expiration=1906459200),
    "secret with a quote": _bad_creds(SecretAccessKey=SECRET + "'; rm -rf ~"),
    "token with a newline": _bad_creds(SessionToken=TOKEN + "\nx"),
    "key id a number": _bad_creds(AccessKeyId=12345678901234567890),
    "extra credential member": _bad_creds(Version=1),
    "credentials for another role": line(allow(role="pmp-administrator")),
    "duplicate status": (b'{"v":1,"status":"deny","status":"allow",'
                         b'"reason":"","exit":0,"credentials":' +
                         json.dumps(CREDS).encode() + b"}\n"),
    "over 64 KiB": line(allow(padding="x" * 70000)),
    "no newline then close": line(allow())[:-1],
    "half a line then close": line(allow())[:40],
    "NUL byte in the line": line(allow()).replace(b'"reason":""',
                                                  b'"reason":"\x00"'),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_answers(fake, name):
    d = fake(MALFORMED[name])
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode != 0
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert p.stdout == b""
    msg = one_stderr_line(p)
    assert msg.startswith("pmpgate-credentials: error: malformed answer "
                          "from pmpgated"), msg
    assert_no_secret(p)


def test_closed_without_answer(fake):
    d = fake(CLOSE)
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path)
    assert p.returncode == 3
    assert p.stdout == b""
    assert "closed the connection" in one_stderr_line(p)


def test_never_answering_times_out(fake):
    d = fake(HANG)
    p = helper(["--role", ROLE, "--ticket", TICKET], sock=d.path,
               PMPGATE_TIMEOUT="1")
    assert p.returncode == 3
    assert p.stdout == b""
    assert "timed out" in one_stderr_line(p)
    assert 0.9 <= p.elapsed < 5


# ---- pmpgate ------------------------------------------------------------------

STATUS = {"v": 1, "status": "allow", "rules": [], "reason": "", "exit": 0,
          "version": "0.1.0", "workers": 4,
          "config": "/etc/pmpgate/pmpgate.conf", "uptime": 93}


def cli(args, sock=None, **envextra):
    if sock is not None:
        envextra.setdefault("PMPGATE_SOCKET", sock)
    return run(CLI, args, env=clean_env(**envextra))


def test_cli_status(fake):
    d = fake(STATUS)
    p = cli(["status"], sock=d.path)
    assert p.returncode == 0, p.stderr
    assert p.stderr == b""
    out = p.stdout.decode()
    assert "version: 0.1.0\n" in out
    assert "workers: 4\n" in out
    assert "config: /etc/pmpgate/pmpgate.conf\n" in out
    assert "uptime: 93\n" in out
    assert d.request() == {"v": 1, "op": "status"}


def test_cli_status_json(fake):
    d = fake(STATUS)
    p = cli(["status", "--json", "--socket", d.path])
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(b"\n") and p.stdout.count(b"\n") == 1
    assert json.loads(p.stdout) == STATUS


def test_cli_status_refused(fake):
    d = fake(deny("status is for admins only", rules=[]))
    p = cli(["status"], sock=d.path)
    assert p.returncode == 1
    assert p.stdout == b""
    assert one_stderr_line(p) == "pmpgate: refused: status is for admins only"


def test_cli_status_no_daemon():
    p = cli(["status", "--socket", "/nonexistent/pmpgate/socket"])
    assert p.returncode == 3
    assert p.stdout == b""
    assert one_stderr_line(p) == (
        "pmpgate: error: pmpgated is not running "
        "(no daemon at /nonexistent/pmpgate/socket)")


def test_cli_status_malformed(fake):
    d = fake(b"{\"v\":1}\n")
    p = cli(["status"], sock=d.path)
    assert p.returncode == 4
    assert p.stdout == b""
    assert "malformed answer" in one_stderr_line(p)


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["--bogus"], ["status", "extra"],
    ["status", "--bogus"], ["status", "--socket"]])
def test_cli_usage(args):
    p = cli(args)
    assert p.returncode == 2
    assert p.stdout == b""
    assert one_stderr_line(p).startswith("pmpgate: usage: ")


def test_cli_help_and_version():
    p = cli(["--help"])
    assert p.returncode == 0
    assert b"status" in p.stdout
    p = cli(["--version"])
    assert p.returncode == 0
    assert p.stdout.startswith(b"pmpgate ")


# ---- a real credential_process client -------------------------------------------

AWS = "/usr/bin/aws"


def _aws(tmp_path, sock):
    cfg = tmp_path / "config"
    cfg.write_text(f"[profile pg]\n"
                   f"credential_process = {HELPER} --role {ROLE} "
                   f"--ticket {TICKET} --duration 15m\n"
                   f"region = eu-west-1\n")
    env = clean_env(PMPGATE_SOCKET=sock, HOME=str(tmp_path),
                    AWS_CONFIG_FILE=str(cfg),
                    AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        env.pop(k, None)
    return subprocess.run([AWS, "configure", "export-credentials",
                           "--profile", "pg", "--format", "process"],
                          capture_output=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.skipif(not os.access(AWS, os.X_OK), reason="no /usr/bin/aws")
def test_aws_cli_reads_the_helper(fake, tmp_path):
    d = fake(allow())
    p = _aws(tmp_path, d.path)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["AccessKeyId"] == AKID
    assert got["SecretAccessKey"] == SECRET
    assert got["SessionToken"] == TOKEN
    assert got["Expiration"].startswith("2030-06-01T12:00:00")
    assert d.request()["duration"] == 900


@pytest.mark.skipif(not os.access(AWS, os.X_OK), reason="no /usr/bin/aws")
def test_aws_cli_shows_the_refusal(fake, tmp_path):
    reason = "ticket CHG0012345 was approved only by its requester (R4 four-eyes)"
    d = fake(deny(reason, rules=["R4"]))
    p = _aws(tmp_path, d.path)
    assert p.returncode != 0
    assert p.stdout == b""
    assert f"pmpgate-credentials: refused: {reason}".encode() in p.stderr
