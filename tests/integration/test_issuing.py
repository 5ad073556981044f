"""The whole issuing path through the real binaries: pmpgated with a real
slapd (TLS), the ticket-service emulator (HTTPS) and the STS emulator
(HTTPS, SigV4 verified by botocore); clients run as test uids.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import daemon  # noqa: E402
import world as worldmod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (root)")

CRED_RE = re.compile(r'^\{"Version":1,"AccessKeyId":"ASIA[A-Z0-9]{16}",'
                     r'"SecretAccessKey":"[^"]+","SessionToken":"[^"]+",'
                     r'"Expiration":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\}$')

_n = [1000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-it-")
    wd = worldmod.World(tmp)
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def restore(w):
    """Put the world back as it was after a test that changes it."""
    yield w
    for svc in (w.slapd,):
        if not svc.running():
            svc.start()
    w.sts.clear_faults()
    w.overrides = {}
    w.configure()
    if not w.daemon.running():
        w.daemon.start()
    else:
        w.daemon.reload()
        time.sleep(0.3)


def refused(r, code, rule, *words):
    """A refusal: exit code, nothing on stdout, one stderr line naming
    the rule."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pmpgate-credentials: "), lines[0]
    assert f"({rule}" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---- allowed ------------------------------------------------------------

def test_allowed_user_gets_credentials(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    r = w.credentials("alice", "procurement-manager", t)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert CRED_RE.match(r.stdout.strip()), r.stdout
    creds = json.loads(r.stdout)
    req = [x for x in w.sts.requests() if x.get("action") == "AssumeRole"][-1]
    assert req["signature_ok"] is True
    assert req["source_identity"] == "alice"
    assert req["role_arn"].endswith(":role/procurement-manager")
    assert req["session_name"] == f"alice@{t}"
    tags = {k: v for k, v in req["tags"].items()}
    assert tags["pmpgate:ticket"] == t
    assert tags["pmpgate:user"] == "alice"
    assert tags["pmpgate:approvers"] == "erin"
    assert int(req["duration"]) <= 3600
    # the secret never reaches the daemon's log
    assert creds["SecretAccessKey"] not in w.daemon.output()
    assert creds["SessionToken"] not in w.daemon.output()


def test_nested_group_member_gets_credentials(w):
    t = new_id()
    w.ticket(t, requested_for="bob", role="pmp-administrator",
             approvers=["grace"], requester="carol")
    r = w.credentials("bob", "pmp-administrator", t)
    assert r.returncode == 0, r.stderr
    assert CRED_RE.match(r.stdout.strip())


def test_requested_duration_is_honoured_and_capped(w):
    t = new_id()
    w.ticket(t)
    r = w.credentials("alice", "procurement-manager", t, "--duration", "15m")
    assert r.returncode == 0, r.stderr
    req = [x for x in w.sts.requests() if x.get("action") == "AssumeRole"][-1]
    assert int(req["duration"]) == 900
    # the window closing in 20 minutes caps the credentials
    t2 = new_id()
    w.ticket(t2, end=time.time() + 1200)
    r = w.credentials("alice", "procurement-manager", t2)
    assert r.returncode == 0, r.stderr
    req = [x for x in w.sts.requests() if x.get("action") == "AssumeRole"][-1]
    assert 1100 <= int(req["duration"]) <= 1200


def test_ticket_from_environment_and_other_formats(w):
    t = new_id()
    w.ticket(t)
    r = w.credentials("alice", "procurement-manager", None, "--format", "env",
                      env={"PMPGATE_TICKET": t})
    assert r.returncode == 0, r.stderr
    assert "export AWS_ACCESS_KEY_ID=" in r.stdout
    assert "export AWS_SESSION_TOKEN=" in r.stdout
    r = w.credentials("alice", "procurement-manager", t, "--format", "ini")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("[procurement-manager]\n")


# ---- refused by policy (exit 1) --------------------------------------------

def test_not_in_group(w):
    t = new_id()
    w.ticket(t, requested_for="carol")
    refused(w.credentials("carol", "procurement-manager", t), 1, "R1",
            "not a member")


def test_user_without_directory_entry(w):
    t = new_id()
    w.ticket(t, requested_for="nobody-in-ldap")
    refused(w.credentials("nobody-in-ldap", "procurement-manager", t), 1,
            "R1", "not in the directory")


def test_ticket_pending(w):
    t = new_id()
    w.ticket(t, state="requested")
    refused(w.credentials("alice", "procurement-manager", t), 1, "R3",
            "not approved")


def test_ticket_for_another_role(w):
    t = new_id()
    w.ticket(t, role="pmp-administrator")
    refused(w.credentials("alice", "procurement-manager", t), 1, "R3",
            "for role pmp-administrator")


def test_ticket_for_another_person(w):
    t = new_id()
    w.ticket(t, requested_for="dave")
    refused(w.credentials("alice", "procurement-manager", t), 1, "R3",
            "is for dave, not for alice")


def test_window_passed(w):
    t = new_id()
    w.ticket(t, start=time.time() - 7200, end=time.time() - 60)
    refused(w.credentials("alice", "procurement-manager", t), 1, "R3",
            "window closed")


def test_window_not_open(w):
    t = new_id()
    w.ticket(t, start=time.time() + 3600, end=time.time() + 7200)
    refused(w.credentials("alice", "procurement-manager", t), 1, "R3",
            "not opened yet")


def test_unknown_ticket(w):
    refused(w.credentials("alice", "procurement-manager", "CHG0999999"), 1,
            "R3", "not found")


@pytest.mark.parametrize("bad", ["../etc/passwd", "CHG12", "chg0000001",
                                 "CHG0000001?x=1", "CHG0000001#", "%2F",
                                 "CHG 0000001"])
def test_malformed_ticket_id_makes_no_request(w, bad):
    w.tickets.clear_log()
    refused(w.credentials("alice", "procurement-manager", bad), 1, "R3",
            "ticket id")
    assert w.tickets.requests() == []


def test_no_ticket(w):
    r = w.credentials("alice", "procurement-manager")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "ticket is required" in r.stderr


def test_request_without_ticket_is_a_usage_error(w):
    ans = w.daemon.request({"v": 1, "op": "decide", "user": "alice",
                            "role": "procurement-manager"})
    assert ans["status"] == "error" and ans["exit"] == 2, ans
    assert "ticket" in ans["reason"]


def test_self_approved_ticket(w):
    t = new_id()
    w.ticket(t, approvers=["alice"])
    refused(w.credentials("alice", "procurement-manager", t), 1, "R4",
            "four-eyes")


def test_approver_named_by_mail_case_insensitively(w, restore):
    w.configure(directory={"ticket_user_attr": "mail"})
    w.daemon.reload()
    time.sleep(0.3)
    t = new_id()
    # the seed's mhernandez has mail MHernandez@Example.com; make her an
    # approver of the procurement-manager role for this test
    w.slapd.add_member(worldmod.APPROVERS["procurement-manager"],
                       "uid=mhernandez,ou=people,dc=example,dc=com")
    try:
        w.ticket(t, requested_for="alice@example.com",
                 requester="carol@example.com",
                 approvers=["mhernandez@example.com"])
        r = w.credentials("alice", "procurement-manager", t)
        assert r.returncode == 0, r.stderr
    finally:
        w.slapd.remove_member(worldmod.APPROVERS["procurement-manager"],
                              "uid=mhernandez,ou=people,dc=example,dc=com")


def test_unknown_role(w):
    t = new_id()
    w.ticket(t)
    r = w.credentials("alice", "root-of-all-evil", t)
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""


def test_duration_below_sts_minimum(w):
    t = new_id()
    w.ticket(t, end=time.time() + 600)
    refused(w.credentials("alice", "procurement-manager", t), 1, "R8",
            "STS minimum")


# ---- identity -------------------------------------------------------------

def test_non_root_naming_another_user_gets_own_identity(w):
    """mallory asks for alice's ticket naming user=alice: the daemon acts
    for mallory (SO_PEERCRED), who is refused."""
    t = new_id()
    w.ticket(t, requested_for="alice")
    script = (
        "import json,socket,sys\n"
        "s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1])\n"
        "s.sendall((json.dumps({'v':1,'op':'issue','role':"
        "'procurement-manager','ticket':sys.argv[2],'user':'alice'})+"
        "'\\n').encode())\n"
        "b=b''\n"
        "while not b.endswith(b'\\n'):\n"
        "  c=s.recv(65536)\n"
        "  if not c: break\n"
        "  b+=c\n"
        "print(b.decode())\n")
    r = daemon.as_user("mallory", ["/usr/bin/python3", "-c", script,
                                   w.daemon.socket, t])
    ans = json.loads(r.stdout)
    assert ans["status"] == "deny", ans
    assert "credentials" not in ans
    assert "R1" in ans["rules"]
    assert "mallory" in ans["reason"]


def test_root_may_name_the_user(w):
    t = new_id()
    w.ticket(t, requested_for="alice")
    ans = w.daemon.request({"v": 1, "op": "decide",
                            "role": "procurement-manager", "ticket": t,
                            "user": "alice"})
    assert ans["status"] == "allow", ans
    assert "credentials" not in ans


# ---- dependencies down (exit 3) ----------------------------------------------

def test_directory_down(w, restore):
    t = new_id()
    w.ticket(t)
    w.slapd.stop()
    line = refused(w.credentials("alice", "procurement-manager", t), 3, "R9")
    assert "directory" in line


def test_ticket_service_down(w):
    t = new_id()
    w.ticket(t, status=503)
    line = refused(w.credentials("alice", "procurement-manager", t), 3, "R9")
    assert "ticket" in line


def test_ticket_service_slow_hits_deadline(w):
    t = new_id()
    w.ticket(t, delay=5)
    start = time.monotonic()
    refused(w.credentials("alice", "procurement-manager", t), 3, "R9")
    assert time.monotonic() - start < 8  # [tickets] timeout 3s, deadline 8s


def test_malformed_ticket_json(w):
    t = new_id()
    w.ticket(t, raw="{not json")
    refused(w.credentials("alice", "procurement-manager", t), 3, "R9")


def test_sts_access_denied(w, restore):
    t = new_id()
    w.ticket(t)
    w.sts.set_fault("AccessDenied")
    line = refused(w.credentials("alice", "procurement-manager", t), 3, "R9")
    assert "AccessDenied" in line


def test_daemon_down(w, restore):
    w.daemon.stop()
    r = w.credentials("alice", "procurement-manager", "CHG0000001")
    assert r.returncode == 3
    assert r.stdout == ""
    assert "not running" in r.stderr


def test_wrong_directory_ca_refuses(w, restore):
    other = os.path.join(w.dir, "other-ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=other", "-keyout", other + ".key",
                    "-out", other], check=True, capture_output=True)
    w.configure(directory={"ca_file": other})
    w.daemon.reload()
    time.sleep(0.3)
    t = new_id()
    w.ticket(t)
    refused(w.credentials("alice", "procurement-manager", t), 3, "R9",
            "directory")


def test_wrong_ticket_ca_refuses(w, restore):
    other = os.path.join(w.dir, "other-ca2.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=other", "-keyout", other + ".key",
                    "-out", other], check=True, capture_output=True)
    w.configure(tickets={"ca_file": other})
    w.daemon.reload()
    time.sleep(0.3)
    t = new_id()
    w.ticket(t)
    refused(w.credentials("alice", "procurement-manager", t), 3, "R9",
            "ticket")


# ---- daemon behaviour -------------------------------------------------------

def test_bad_reload_keeps_old_config(w, restore):
    w.daemon.write_config("[daemon]\nbogus = 1\n")
    w.daemon.reload()
    time.sleep(0.3)
    assert w.daemon.running()
    assert "keeping the running configuration" in w.daemon.output()
    t = new_id()
    w.ticket(t)
    r = w.credentials("alice", "procurement-manager", t)
    assert r.returncode == 0, r.stderr


def test_status(w):
    r = subprocess.run([daemon.binary("pmpgate"), "status", "--socket",
                        w.daemon.socket, "--json"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["status"] == "allow"
    assert "procurement-manager" in st["roles"]


def test_daemon_runs_unprivileged_without_core_dumps(w):
    pid = w.daemon.proc.pid
    # setpriv execs pmpgated in place: this pid is the daemon
    status = open(f"/proc/{pid}/status").read()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    assert set(uids) == {str(daemon.DAEMON_UID)}
    limits = open(f"/proc/{pid}/limits").read()
    assert re.search(r"Max core file size\s+0\s+0", limits)


def test_root_start_drops_privileges():
    tmp = tempfile.mkdtemp(prefix="pmpgate-root-")
    wd = worldmod.World(tmp, as_root=True)
    try:
        wd.start()
        pid = wd.daemon.proc.pid
        status = open(f"/proc/{pid}/status").read()
        for field in ("Uid", "Gid"):
            ids = re.search(rf"^{field}:\s+(.*)$", status, re.M).group(1)
            assert set(ids.split()) == {str(daemon.DAEMON_UID)}, status
        groups = re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split()
        assert groups in ([], [str(daemon.DAEMON_UID)])
        assert re.search(r"^CapEff:\s+0+$", status, re.M)
        t = "CHG0000777"
        wd.ticket(t)
        r = wd.credentials("alice", "procurement-manager", t)
        assert r.returncode == 0, r.stderr
        # SIGTERM: clean exit, socket removed
        assert wd.daemon.stop() == 0
        assert not os.path.exists(wd.daemon.socket)
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_config_check_flag(w):
    r = w.daemon.check_config()
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def test_bad_config_refuses_to_start(w):
    tmp = tempfile.mkdtemp(prefix="pmpgate-bad-")
    os.chmod(tmp, 0o755)
    try:
        d = daemon.Pmpgated(tmp, "[daemon]\nworkers = many\n")
        r = d.check_config()
        assert r.returncode == 2
        assert re.search(r"pmpgate\.conf:2: ", r.stderr), r.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the real AWS CLI -------------------------------------------------------

def test_aws_cli_end_to_end(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin", "frank"])
    r = w.aws("alice", "sts", "get-caller-identity", "--output", "json",
              ticket=t)
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)
    assert ident["Arn"] == (f"arn:aws:sts::{worldmod.ACCOUNT}:assumed-role/"
                            f"procurement-manager/alice@{t}")
    calls = [x for x in w.sts.requests()
             if x.get("action") == "GetCallerIdentity"]
    assert calls and calls[-1]["signature_ok"] is True
    assert calls[-1]["caller_source_identity"] == "alice"


def test_aws_cli_shows_refusal(w):
    t = new_id()
    w.ticket(t, state="requested")
    r = w.aws("alice", "sts", "get-caller-identity", ticket=t)
    assert r.returncode == 255
    assert "R3 ticket-not-approved" in r.stderr
