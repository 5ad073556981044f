"""Fault injection against the real daemon: every dependency failing in
every way we can make it fail, and the daemon itself killed mid-issue.

Each fault must end in a refusal (never an allow, never a hang), within
the bound the configuration promises, and the daemon must carry on.  The
observed refusal time of each fault class is printed at the end of the
module (the lead quotes them).

    first directory URI down      the second answers
    all directory URIs down       refusal within [directory] timeout
    directory dropped between     the worker reconnects
    ticket service silent         refusal within [tickets] timeout
    STS throttling, 5xx           retried with backoff, then refused
    wrong CA / wrong host name    refusal, per service
    audit log cannot grow         refusal, nothing issued
    ledger corrupted              refusal
    kill -9 during issuance (50x) restarted daemon works, ledger and
                                  audit chain consistent
    SIGHUP with a broken config   the old configuration is kept
"""
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import daemon  # noqa: E402
import world as worldmod  # noqa: E402

# With PMPGATE_BUILD pointing at build-asan/ the daemon runs under ASan and
# UBSan: nss_wrapper must then not dlopen with RTLD_DEEPBIND.
SANITIZER_ENV = {"NSS_WRAPPER_DISABLE_DEEPBIND": "1"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (setpriv)")

PM = "procurement-manager"
TIMES = {}

_n = [8000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


# ---- listeners that misbehave ---------------------------------------------------

class Listener:
    """A TCP listener on 127.0.0.1 that accepts and then: "silent" reads
    and never answers; "tls" completes a TLS handshake with CERT/KEY and
    then says nothing."""

    def __init__(self, mode="silent", cert=None, key=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.ctx = None
        if mode == "tls":
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        self.conns = []
        self.stopped = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.ctx is not None:
                threading.Thread(target=self._tls, args=(c,),
                                 daemon=True).start()

    def _tls(self, c):
        try:
            c.settimeout(10)
            s = self.ctx.wrap_socket(c, server_side=True)
            self.conns.append(s)
            s.recv(65536)
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def closed_port():
    return common.free_port()


def other_ca(w, name):
    """A CA the services were not signed by, and a server certificate of
    it (SAN 127.0.0.1)."""
    return common.TestCA(w.dir, name=name)


def wrong_name_cert(w, name):
    """A certificate from the world's own CA for another host name only."""
    d = os.path.join(w.dir, "wrong-name")
    os.makedirs(d, exist_ok=True)
    key, csr, cert = (os.path.join(d, f"{name}.{x}") for x in
                      ("key", "csr", "pem"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:wrong.example.net\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj",
                    "/CN=wrong.example.net", "-keyout", key, "-out", csr],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", w.ca.cert,
                    "-CAkey", w.ca.key, "-CAcreateserial", "-days", "1",
                    "-extfile", ext, "-out", cert], check=True,
                   capture_output=True)
    return cert, key


# ---- fixtures and helpers ----------------------------------------------------------

@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-faults-")
    wd = worldmod.World(tmp)
    wd.daemon.extra_env.update(SANITIZER_ENV)
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def restore(w):
    yield w
    w.sts.clear_faults()
    if not w.slapd.running():
        w.slapd.start()
    w.overrides = {}
    w.configure()
    if not w.daemon.running():
        w.daemon.start()
    else:
        reload(w)


def reload(w, expect="configuration reloaded"):
    before = w.daemon.output().count(expect)
    w.daemon.reload()
    end = time.monotonic() + 10
    while w.daemon.output().count(expect) <= before:
        assert time.monotonic() < end, w.daemon.output()[-2000:]
        time.sleep(0.02)


def reconfigure(w, **sections):
    w.configure(**sections)
    reload(w)


def issue(w, user="alice", ticket=None, **tk):
    if ticket is None:
        ticket = new_id()
        w.ticket(ticket, requested_for=user, approvers=["erin"], **tk)
    start = time.monotonic()
    r = w.credentials(user, PM, ticket)
    return r, time.monotonic() - start


def refused(r, code, rule="R9", *words):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    line = r.stderr.strip().splitlines()[-1]
    assert f"({rule} " in line, line
    for word in words:
        assert word in line, line
    return line


def record(name, seconds, outcome):
    TIMES[name] = (seconds, outcome)


def assume_requests(w):
    return [x for x in w.sts.requests() if x.get("action") == "AssumeRole"]


# ---- the directory ---------------------------------------------------------------

def test_first_uri_down_second_answers(w, restore):
    reconfigure(w, directory={"uri": f"ldaps://127.0.0.1:{closed_port()}/ "
                                     f"{w.slapd.ldaps_uri}"})
    r, t = issue(w)
    assert r.returncode == 0, r.stderr
    record("directory: first URI down, second answers", t, "issued")


def test_all_uris_down_refused_fast(w, restore):
    reconfigure(w, directory={"uri": f"ldaps://127.0.0.1:{closed_port()}/ "
                                     f"ldaps://127.0.0.1:{closed_port()}/"})
    r, t = issue(w)
    refused(r, 3, "R9", "directory")
    assert t < 3 + 1.5, t
    record("directory: all URIs refuse connections", t, "refused exit 3")


def test_all_uris_silent_refused_within_timeout(w, restore):
    a, b = Listener(), Listener()
    try:
        reconfigure(w, directory={"uri": f"ldaps://127.0.0.1:{a.port}/ "
                                         f"ldaps://127.0.0.1:{b.port}/",
                                  "timeout": "2s"})
        r, t = issue(w)
    finally:
        a.close()
        b.close()
    refused(r, 3, "R9", "directory")
    # [directory] timeout bounds each URI's attempt (so two silent URIs
    # cost two timeouts); [daemon] deadline (8 s) bounds the request
    assert t < 2 * 2 + 1, t
    record("directory: all URIs accept and never answer (timeout 2s)", t,
           "refused exit 3")


def test_directory_dropped_between_requests_reconnects(w, restore):
    r, _ = issue(w)
    assert r.returncode == 0, r.stderr
    w.slapd.kill()          # connections drop without a goodbye
    w.slapd.start()
    r, t = issue(w)
    assert r.returncode == 0, r.stderr
    record("directory: connection dropped between requests", t,
           "reconnected, issued")


def test_directory_down_then_back(w, restore):
    w.slapd.stop()
    r, t = issue(w)
    refused(r, 3, "R9", "directory")
    record("directory: server stopped", t, "refused exit 3")
    w.slapd.start()
    r, _ = issue(w)
    assert r.returncode == 0, r.stderr


# ---- the ticket service ------------------------------------------------------------

def test_ticket_service_silent_refused_within_timeout(w, restore):
    lst = Listener()
    try:
        url = w.tickets.url_servicenow.replace(f":{w.tickets.port}/",
                                               f":{lst.port}/")
        reconfigure(w, tickets={"url": url})
        r, t = issue(w)
    finally:
        lst.close()
    refused(r, 3, "R9", "ticket")
    assert t < 3 + 1.5, t     # [tickets] timeout 3s
    record("tickets: accepts and never answers (timeout 3s)", t,
           "refused exit 3")


def test_ticket_service_slow_answer(w, restore):
    t0 = new_id()
    w.ticket(t0, delay=6)
    r, t = issue(w, ticket=t0)
    refused(r, 3, "R9", "ticket")
    assert t < 3 + 1.5, t
    record("tickets: answers after 6 s (timeout 3s)", t, "refused exit 3")


def test_ticket_service_down(w, restore):
    url = w.tickets.url_servicenow.replace(f":{w.tickets.port}/",
                                           f":{closed_port()}/")
    reconfigure(w, tickets={"url": url})
    r, t = issue(w)
    refused(r, 3, "R9", "ticket")
    record("tickets: connection refused", t, "refused exit 3")


# ---- STS -----------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["Throttling", "500", "503"])
def test_sts_retried_then_refused(w, restore, fault):
    w.sts.clear_requests()
    w.sts.set_fault(fault, count=-1, action="AssumeRole")
    r, t = issue(w)
    refused(r, 3, "R9", "STS")
    tries = len(assume_requests(w))
    assert tries >= 2, tries                # retried ...
    assert t < 8 + 1.5, t                   # ... inside the deadline
    record(f"sts: {fault} on every try ({tries} tries)", t, "refused exit 3")


@pytest.mark.parametrize("fault", ["Throttling", "503"])
def test_sts_transient_fault_is_retried_to_success(w, restore, fault):
    w.sts.clear_requests()
    w.sts.set_fault(fault, count=2, action="AssumeRole")
    r, t = issue(w)
    assert r.returncode == 0, r.stderr
    assert len(assume_requests(w)) == 3
    record(f"sts: {fault} twice, then success", t, "issued after retries")


def test_sts_silent_refused_within_deadline(w, restore):
    lst = Listener()
    try:
        reconfigure(w, aws={"sts_endpoint": f"https://127.0.0.1:{lst.port}",
                            "timeout": "2s"})
        r, t = issue(w)
    finally:
        lst.close()
    refused(r, 3, "R9", "STS")
    assert t < 8 + 1.5, t
    record("sts: accepts and never answers (timeout 2s)", t,
           "refused exit 3")


# ---- TLS: wrong CA or wrong host name for each service ------------------------------

def tls_case(w, service, how):
    if how == "wrong-ca":
        ca = other_ca(w, f"other-{service}")
        cert, key = ca.server_cert(service)
    else:
        cert, key = wrong_name_cert(w, service)
    lst = Listener("tls", cert, key)
    try:
        if service == "directory":
            reconfigure(w, directory={"uri": f"ldaps://127.0.0.1:{lst.port}/"})
        elif service == "tickets":
            url = w.tickets.url_servicenow.replace(f":{w.tickets.port}/",
                                                   f":{lst.port}/")
            reconfigure(w, tickets={"url": url})
        else:
            reconfigure(w, aws={"sts_endpoint":
                                f"https://127.0.0.1:{lst.port}"})
        return issue(w)
    finally:
        lst.close()


@pytest.mark.parametrize("service,word", [("directory", "directory"),
                                          ("tickets", "ticket"),
                                          ("sts", "STS")])
@pytest.mark.parametrize("how", ["wrong-ca", "wrong-host"])
def test_tls_peer_not_trusted(w, restore, service, word, how):
    r, t = tls_case(w, service, how)
    refused(r, 3, "R9", word)
    record(f"tls: {service} with a {how} certificate", t, "refused exit 3")


def test_trusted_ca_wrong_name_configured_ca(w, restore):
    """The configured CA file is another CA: the real services are then
    untrusted too (the CA file is the only trust anchor)."""
    ca = other_ca(w, "other-for-all")
    reconfigure(w, directory={"ca_file": ca.cert})
    r, t = issue(w)
    refused(r, 3, "R9", "directory")
    record("tls: directory ca_file names another CA", t, "refused exit 3")


# ---- the audit trail and the ledger ----------------------------------------------------

def test_audit_log_cannot_grow_refuses_and_issues_nothing(w, restore):
    r, _ = issue(w)
    assert r.returncode == 0, r.stderr
    # the audit file system is full: the daemon may not add a byte to its
    # log (RLIMIT_FSIZE at the log's size; SIGXFSZ is ignored, so the
    # write fails with EFBIG as on a full disk)
    w.daemon.stop()
    size = os.path.getsize(w.daemon.audit_log)
    w.daemon.wrapper = ["prlimit", f"--fsize={size}", "--"]
    try:
        w.daemon.start()
        w.sts.clear_requests()
        r, t = issue(w)
    finally:
        w.daemon.stop()
        w.daemon.wrapper = []
        w.daemon.start()
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "audit" in r.stderr
    assert assume_requests(w) == [], "credentials were issued"
    record("audit: log cannot grow (file system full)", t,
           "refused exit 4, no AssumeRole")
    r, _ = issue(w)
    assert r.returncode == 0, r.stderr
    v = w.daemon.verify_audit()
    assert v.returncode == 0, (v.stdout, v.stderr)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-shape",
                                    "empty"])
def test_ledger_corrupted_refuses(w, restore, damage):
    r, _ = issue(w)
    assert r.returncode == 0, r.stderr
    path = os.path.join(w.daemon.state, "ledger.json")
    with open(path, "rb") as f:
        good = f.read()
    bad = {"garbage": b"\x00\xffnot json at all",
           "truncated": good[:len(good) // 2],
           "wrong-shape": b'{"issuances": "none", "bindings": 7}',
           "empty": b""}[damage]
    with open(path, "wb") as f:
        f.write(bad)
    try:
        w.sts.clear_requests()
        r, t = issue(w)
        line = refused(r, 3, "R9")
        assert "ledger" in line, line
        assert assume_requests(w) == []
        record(f"ledger: {damage}", t, "refused exit 3")
    finally:
        with open(path, "wb") as f:
            f.write(good)


# ---- the daemon killed mid-issue ---------------------------------------------------------

def kill_daemon(w):
    proc = w.daemon.proc
    proc.kill()
    proc.log.close()
    w.daemon.proc = None


def ledger_ok(w, ticket):
    """The ledger parses and answers for TICKET: (bound user, uses)."""
    uid = str(daemon.DAEMON_UID)
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                        "--clear-groups", "--",
                        os.path.join(daemon.build_dir(), "probe",
                                     "ledgerprobe"), w.daemon.config,
                        "facts", "alice", PM, ticket],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
    facts = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    return facts["bound_user"], int(facts["uses"])


def test_kill_9_during_issuance(w, restore):
    rng = random.Random(int(os.environ.get("PMPGATE_SEED", "7")))
    issued, refused_n, restarts = {}, 0, []
    for i in range(50):
        t = new_id()
        w.ticket(t, requested_for="alice", approvers=["erin"])
        helper = subprocess.Popen(
            ["setpriv", f"--reuid={daemon.USERS['alice']}",
             f"--regid={daemon.USERS['alice']}", "--clear-groups", "--"] +
            w.helper_argv(PM, t), env={"PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.0, 0.08))
        kill_daemon(w)
        out, err = helper.communicate(timeout=30)
        if helper.returncode == 0:
            issued[t] = json.loads(out)["AccessKeyId"]
        else:
            refused_n += 1
            assert helper.returncode == 3, (helper.returncode, out, err)
            assert out == ""
        start = time.monotonic()
        w.daemon.start()
        restarts.append(time.monotonic() - start)
    # the restarted daemon works: a fresh ticket, and every ticket whose
    # issuance was cut short, can be used now (no reservation is left
    # blocking it)
    r, _ = issue(w)
    assert r.returncode == 0, r.stderr
    # the ledger is consistent: every ticket that reached the client is
    # bound to alice; none is bound to anyone else
    for t, key in issued.items():
        user, uses = ledger_ok(w, t)
        assert user == "alice" and uses >= 1, (t, user, uses)
    # the audit chain verifies (a torn last line only with the signed
    # recovered record naming it) and holds an issued record for every
    # access key a client received
    v = w.daemon.verify_audit()
    assert v.returncode == 0, (v.stdout, v.stderr)
    keys = {rec.get("access_key_id") for rec in w.daemon.audit_records()
            if rec.get("event") == "issued"}
    missing = [k for k in issued.values() if k not in keys]
    assert missing == [], missing
    record(f"kill -9 during issuance x50 ({len(issued)} issued, "
           f"{refused_n} refused; restart max {max(restarts):.2f} s)",
           max(restarts), "ledger and audit chain consistent")


# ---- configuration reload ---------------------------------------------------------------

@pytest.mark.parametrize("broken", [
    "[daemon]\nbogus = 1\n",
    "",
    "\x00\xff\xfe",
    None,          # the file removed
])
def test_sighup_with_broken_config_keeps_the_old_one(w, restore, broken):
    if broken is None:
        os.unlink(w.daemon.config)
    else:
        w.daemon.write_config(broken)
    start = time.monotonic()
    reload(w, expect="keeping the running configuration")
    t = time.monotonic() - start
    assert w.daemon.running()
    r, _ = issue(w)
    assert r.returncode == 0, r.stderr
    record("reload: broken config (%s)" % ("removed" if broken is None else
                                           repr(broken[:12])), t,
           "old configuration kept")


def test_zz_report(capsys):
    with capsys.disabled():
        print("\nfault injection: observed times")
        for name, (secs, outcome) in TIMES.items():
            print(f"  {secs:6.2f} s  {name}: {outcome}")
